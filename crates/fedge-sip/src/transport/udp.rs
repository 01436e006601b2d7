//! The UDP listener: one message per datagram, syntax rejections answered
//! to the sender, keep-alive datagrams ignored.
//!
//! Owns the receive loop of one socket. A bad datagram costs only itself.
//! Every SIP datagram received (well-formed or rejected) and every one sent
//! through [`send_to`] is copied to the capture tap when there is one.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Capture, Handler, Inbound, Source, Tag, Transport, TransportSettings};
use crate::framing::{DatagramItem, parse_datagram};
use crate::message::Method;

/// Largest datagram accepted (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

/// Receives on `socket` until shutdown.
pub async fn run<H: Handler>(
    tag: Tag,
    socket: Arc<UdpSocket>,
    settings: Arc<TransportSettings>,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(role = %tag, error = %e, "UDP socket has no local address");
            return;
        }
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors surface here on some systems; they concern one peer only.
                    warn!(role = %tag, error = %e, "UDP receive failed");
                    continue;
                }
            },
        };
        // A source this listener never takes: dropped unanswered (an
        // answer to a spoofable source would make the edge a reflector).
        if !handler.admits(tag, remote, Transport::Udp) {
            continue;
        }
        let data = Bytes::copy_from_slice(&buf[..n]);
        let source = Source {
            tag,
            transport: Transport::Udp,
            remote,
            local,
            identity: None,
            conn: None,
            udp: Some(socket.clone()),
            capture: settings.capture.clone(),
        };
        if let Some(c) = &settings.capture {
            c.seen(remote, local, Transport::Udp, &data);
        }
        match parse_datagram(data, &settings.limits) {
            DatagramItem::KeepAlive => {}
            DatagramItem::Message(msg) => handler.on_message(Inbound { msg, source }).await,
            DatagramItem::Rejected(r) => {
                let what = r
                    .partial
                    .as_ref()
                    .map(|m| m.start_line_str().chars().take(120).collect::<String>())
                    .unwrap_or_default();
                if crate::log_limit::allow(remote.ip(), "malformed message") {
                    warn!(role = %tag, %remote, status = r.error.status, reason = %r.error.reason, message = %what, "malformed datagram rejected");
                }
                if let (Some(req), true) = (&r.partial, r.is_request())
                    && req.method() != Some(&Method::Ack)
                {
                    let resp = super::stream::build_rejection(req, &r, &settings);
                    let target = source.response_target(req);
                    if let Err(e) = source.send_back(resp, Some(target)).await {
                        warn!(role = %tag, %remote, error = %e, "could not send rejection");
                    }
                }
            }
        }
    }
    info!(role = %tag, "UDP listener stopped");
}

/// Sends one datagram and, once sent, hands a copy to the capture tap.
pub async fn send_to(
    sock: &UdpSocket,
    data: &Bytes,
    to: SocketAddr,
    capture: Option<&Capture>,
) -> std::io::Result<()> {
    sock.send_to(data, to).await?;
    if let Some(c) = capture {
        // The bound address; a socket bound to a wildcard shows 0.0.0.0.
        if let Ok(local) = sock.local_addr() {
            c.seen(local, to, Transport::Udp, data);
        }
    }
    Ok(())
}
