//! BFCP (RFC 8855) floor control over TCP for the relay (RFC 8856
//! `TCP/BFCP` streams): the relay's connection with each side, accepted on
//! the stream's port (the relay wrote `a=setup:passive`) or opened by the
//! relay (the side wrote `a=setup:passive`), and whole BFCP messages
//! copied between the two. UDP/BFCP needs nothing here: its datagrams go
//! through `stream` like any other packet.
//!
//! Reads only the common header (its version and length) to find where a
//! message ends; never interprets floor control, and never holds more than
//! one message per connection in memory. A connection from a host the
//! side did not signal, or with a broken header, is closed (that
//! connection alone); when one side's connection ends, the other's does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Side;
use super::stream::{Component, Stream, Via};

/// The common header (RFC 8855 §5.1).
const HEADER: usize = 12;
/// The longest message taken (a floor request with a few attributes is
/// well under 1 KiB; the header allows 256 KiB).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Messages queued towards one connection before drops.
const QUEUE: usize = 64;
/// Connections one relay port accepts at once.
const CONNECTIONS: usize = 2;
/// How long the relay tries to reach a passive side.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The length of the BFCP message at the start of `buf`: `Ok(None)` when
/// more bytes are needed, `Err` when it is no BFCP (version 1 or 2) or
/// longer than [`MAX_MESSAGE`].
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, &'static str> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let version = buf[0] >> 5;
    if version != 1 && version != 2 {
        return Err("not a BFCP version 1 or 2 header");
    }
    // Payload length in 4-octet units, after the 12-octet header.
    let n = HEADER + 4 * usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if n > MAX_MESSAGE {
        return Err("BFCP message too long");
    }
    Ok((buf.len() >= n).then_some(n))
}

/// Accepts `side`'s BFCP connections on the stream's port until the
/// session ends.
pub(crate) async fn accept(stream: Arc<Stream>, side: Side, l: TcpListener) {
    let cancel = stream.cancelled();
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = l.accept() => match r {
                Ok((s, from)) => {
                    if !stream.tcp_welcome(side, from) {
                        debug!(%from, "BFCP connection refused: not a host this side signalled");
                        stream.end(side).counters.drops.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if live.load(Ordering::Relaxed) >= CONNECTIONS {
                        debug!(%from, "BFCP connection refused: too many on this port");
                        continue;
                    }
                    live.fetch_add(1, Ordering::Relaxed);
                    let (stream, live) = (stream.clone(), live.clone());
                    tokio::spawn(async move {
                        conn(stream, side, s, from).await;
                        live.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
}

/// Opens the relay's connection to a passive `side` at `to`.
pub(crate) fn connect(stream: Arc<Stream>, side: Side, to: SocketAddr) {
    let cancel = stream.cancelled();
    tokio::spawn(async move {
        let s = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)) => r,
        };
        match s {
            Ok(Ok(s)) => conn(stream.clone(), side, s, to).await,
            Ok(Err(e)) => debug!(%to, error = %e, "BFCP connection to the side failed"),
            Err(_) => debug!(%to, "BFCP connection to the side timed out"),
        }
        // The next SDP exchange with that side may try again.
        stream.connect_over(side);
    });
}

/// One BFCP connection with `side`: its messages to the other side, the
/// other side's to it, until either closes or the session ends.
async fn conn(stream: Arc<Stream>, side: Side, s: TcpStream, from: SocketAddr) {
    let _ = s.set_nodelay(true);
    let (mut rd, mut wr) = s.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    let mine: CancellationToken = stream.cancelled().child_token();
    stream.attach_tcp(side, tx.clone(), mine.clone());
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    let mut buf = BytesMut::with_capacity(1024);
    'conn: loop {
        tokio::select! {
            _ = mine.cancelled() => break,
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
        loop {
            match message_len(&buf) {
                Ok(Some(n)) => {
                    let msg = buf.split_to(n);
                    stream.on_packet(side, Component::Rtp, &msg, from, Via::Tcp(&tx));
                }
                Ok(None) => break,
                Err(why) => {
                    debug!(%from, why, "BFCP connection closed");
                    break 'conn;
                }
            }
        }
    }
    stream.detach_tcp(side, &mine);
    drop(tx);
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_by_their_header() {
        // Hello (primitive 11), version 1, no payload.
        let hello = [0x20, 11, 0, 0, 0, 0, 0, 1, 0, 1, 0, 2];
        assert_eq!(message_len(&hello), Ok(Some(12)));
        assert_eq!(message_len(&hello[..5]), Ok(None));
        // FloorRequest with 8 octets of payload, version 2.
        let mut fr = vec![0x40, 1, 0, 2, 0, 0, 0, 1, 0, 1, 0, 2];
        assert_eq!(message_len(&fr), Ok(None));
        fr.extend_from_slice(&[0; 8]);
        assert_eq!(message_len(&fr), Ok(Some(20)));
        assert!(message_len(&[0x80; 12]).is_err());
        assert!(message_len(&[0x20, 1, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
