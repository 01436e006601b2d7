//! The public listener's connection guard: at most `max` connections at
//! once (further ones wait in the kernel's backlog), at most
//! `per_source` from one address (an IPv6 /64; more are closed at once),
//! a connection that moves no byte for `IDLE` is closed, and every
//! connection is closed `lifetime` after it was accepted whatever it does
//! (restarting the idle timer with a byte now and then does not hold a
//! slot for ever), so that anonymous clients trickling or holding
//! connections cannot starve the listener.
//!
//! Owns admission to the public listener. It never reads or answers a
//! request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tracing::debug;

use super::super::throttle::source_key;

/// A connection that moves no byte this long is closed.
pub const IDLE: Duration = Duration::from_secs(20);

type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The guarded listener.
pub struct Guarded {
    tcp: TcpListener,
    all: Arc<Semaphore>,
    per_source: usize,
    lifetime: Duration,
    counts: Counts,
}

impl Guarded {
    /// At most `max` connections, `per_source` from one source, each
    /// closed `lifetime` after it was accepted.
    pub fn new(tcp: TcpListener, max: usize, per_source: usize, lifetime: Duration) -> Guarded {
        Guarded {
            tcp,
            all: Arc::new(Semaphore::new(max.max(1))),
            per_source: per_source.max(1),
            lifetime: lifetime.max(Duration::from_millis(100)),
            counts: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// One admitted connection; dropping it frees its slots.
pub struct GuardedIo {
    inner: TcpStream,
    idle: Pin<Box<Sleep>>,
    /// When the connection is closed whatever it is doing.
    end: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
    counts: Counts,
    key: IpAddr,
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock()
            && let Some(n) = c.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&self.key);
            }
        }
    }
}

impl GuardedIo {
    fn progress<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if self.end.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "public connection reached its lifetime",
            )));
        }
        match r {
            Poll::Ready(v) => {
                self.idle.as_mut().reset(Instant::now() + IDLE);
                Poll::Ready(v)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "idle public connection",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.progress(cx, r)
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for Guarded {
    type Io = GuardedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok(permit) = self.all.clone().acquire_owned().await else {
                return std::future::pending().await;
            };
            let (sock, peer) = match self.tcp.accept().await {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "public accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let key = source_key(peer.ip());
            let admitted = match self.counts.lock() {
                Ok(mut c) => {
                    let n = c.entry(key).or_insert(0);
                    if *n < self.per_source {
                        *n += 1;
                        true
                    } else {
                        false
                    }
                }
                Err(_) => false,
            };
            if !admitted {
                debug!(%peer, "public connection refused: too many from this source");
                continue;
            }
            let _ = sock.set_nodelay(true);
            return (
                GuardedIo {
                    inner: sock,
                    idle: Box::pin(tokio::time::sleep(IDLE)),
                    end: Box::pin(tokio::time::sleep(self.lifetime)),
                    _permit: permit,
                    counts: self.counts.clone(),
                    key,
                },
                peer,
            );
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl super::super::AdminListener for Guarded {}
