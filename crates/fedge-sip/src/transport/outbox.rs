//! A connection's send queue, and its writer, which runs only while there
//! is something to write (issue 18, goal 2).
//!
//! Owns the bytes queued for one connection, their count against
//! [`MAX_QUEUED_BYTES`](super::MAX_QUEUED_BYTES) and a bound on the number
//! of chunks, and the hand-over between the senders (any task, without
//! waiting) and the one writer. While nothing is queued a stream
//! connection has no writer task, no queue storage and no channel: its
//! write half waits, parked here, until the next `push` spawns the writer
//! again; the writer parks itself once the queue is empty and flushed. An
//! in-process connection has no writer; its [`InProcess`](super::InProcess)
//! end takes the chunks with [`Outbox::pop`].
//!
//! It never blocks a sender, never reorders chunks, and never writes
//! after the connection was closed: `shut` drops what is queued and the
//! parked writer, so the socket closes with the connection's reader.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Capture, Transport};

/// Why a chunk was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    Closed,
}

/// A parked writer: started again (spawned) when something is queued.
trait Park: Send {
    fn start(self: Box<Self>, out: Arc<Outbox>);
}

#[derive(Default)]
struct State {
    queue: VecDeque<Bytes>,
    /// No more chunks are taken (the writer ended, or the connection closed).
    closed: bool,
    /// The writer while nothing is queued; `None` while it runs (or for
    /// an in-process connection).
    parked: Option<Box<dyn Park>>,
    /// The writer has shut the stream down (or gave up): the reader's
    /// last wait is over.
    done: bool,
}

/// One connection's send queue.
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    /// Chunks the queue holds at most.
    limit: usize,
    /// Wakes an in-process receiver, and the reader waiting for `done`.
    notify: Notify,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("limit", &self.limit)
            .finish()
    }
}

impl Outbox {
    pub(crate) fn new(limit: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(State::default()),
            queued: AtomicUsize::new(0),
            limit,
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under this lock is a single step; a panic elsewhere
        // cannot leave it half done, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `len` bytes in; returns the count before.
    pub(crate) fn count_in(&self, len: usize) -> usize {
        self.queued.fetch_add(len, Ordering::AcqRel)
    }

    pub(crate) fn count_out(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
    }

    /// Queues a chunk (an empty one is the reader's "flush and shut the
    /// stream down" marker, taken beyond the bound) and starts the writer
    /// if it was parked.
    pub(crate) fn push(self: &Arc<Self>, data: Bytes) -> Result<(), Refused> {
        let starter = {
            let mut s = self.lock();
            if s.closed {
                return Err(Refused::Closed);
            }
            if !data.is_empty() && s.queue.len() >= self.limit {
                return Err(Refused::Full);
            }
            s.queue.push_back(data);
            s.parked.take()
        };
        match starter {
            Some(w) => w.start(self.clone()),
            None => self.notify.notify_one(),
        }
        Ok(())
    }

    /// The next chunk, for an in-process end; `None` once closed.
    pub(crate) async fn pop(&self, close: &CancellationToken) -> Option<Bytes> {
        loop {
            {
                let mut s = self.lock();
                if let Some(d) = s.queue.pop_front() {
                    if s.queue.is_empty() {
                        s.queue = VecDeque::new();
                    }
                    drop(s);
                    self.count_out(d.len());
                    return Some(d);
                }
                if s.closed {
                    return None;
                }
            }
            tokio::select! {
                _ = close.cancelled() => return None,
                _ = self.notify.notified() => {}
            }
        }
    }

    /// True when more than half of the queue's chunks are waiting.
    pub(crate) fn is_busy(&self) -> bool {
        self.lock().queue.len() > self.limit / 2
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Takes nothing more, drops what is queued and the parked writer
    /// (its half of the stream).
    pub(crate) fn shut(&self) {
        let parked = {
            let mut s = self.lock();
            s.closed = true;
            s.queue = VecDeque::new();
            s.parked.take()
        };
        drop(parked);
        self.queued.store(0, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Waits until the writer has shut the stream down after the
    /// reader's marker (or gave up).
    pub(crate) async fn done(&self) {
        loop {
            let waiting = self.notify.notified();
            if self.lock().done {
                return;
            }
            waiting.await;
        }
    }

    fn finish(&self) {
        {
            let mut s = self.lock();
            s.closed = true;
            s.done = true;
            s.queue = VecDeque::new();
        }
        self.notify.notify_waiters();
    }
}

/// The capture tap of a connection's writer: the tap, our address, the
/// peer's, the transport.
pub(crate) type WriteTap = (
    Capture,
    std::net::SocketAddr,
    std::net::SocketAddr,
    Transport,
);

/// A stream connection's writer: its write half and what writing needs.
pub(crate) struct Writer<W> {
    pub wr: W,
    pub close: CancellationToken,
    pub tap: Option<WriteTap>,
    pub runtime: tokio::runtime::Handle,
    pub span: tracing::Span,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Writer<W> {
    /// Parks the writer on `out` until something is queued.
    pub(crate) fn park(self, out: &Outbox) {
        let mut s = out.lock();
        if !s.closed {
            s.parked = Some(Box::new(self));
        }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> Park for Writer<W> {
    fn start(self: Box<Self>, out: Arc<Outbox>) {
        let runtime = self.runtime.clone();
        let span = self.span.clone();
        runtime.spawn(tracing::Instrument::instrument(write(self, out), span));
    }
}

/// Writes until the queue is empty, then parks the writer again.
async fn write<W: AsyncWrite + Unpin + Send + 'static>(mut w: Box<Writer<W>>, out: Arc<Outbox>) {
    loop {
        let batch = {
            let mut s = out.lock();
            if s.closed {
                return;
            }
            if s.queue.is_empty() {
                s.queue = VecDeque::new(); // no storage while idle
                s.parked = Some(w);
                return;
            }
            std::mem::take(&mut s.queue)
        };
        for data in batch {
            if data.is_empty() {
                // The reader's marker: flush, shut down, and end.
                let close = w.close.clone();
                tokio::select! {
                    _ = close.cancelled() => {}
                    _ = async { let _ = w.wr.flush().await; let _ = w.wr.shutdown().await; } => {}
                }
                out.finish();
                return;
            }
            let ok = tokio::select! {
                _ = w.close.cancelled() => false,
                r = w.wr.write_all(&data) => r.is_ok(),
            };
            if !ok {
                w.close.cancel();
                out.finish();
                return;
            }
            if let Some((c, local, remote, transport)) = &w.tap {
                c.seen(*local, *remote, *transport, &data);
            }
            out.count_out(data.len());
        }
        let flushed = tokio::select! {
            _ = w.close.cancelled() => false,
            r = w.wr.flush() => r.is_ok(),
        };
        if !flushed {
            w.close.cancel();
            out.finish();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn writer<W: AsyncWrite + Unpin + Send + 'static>(
        wr: W,
        close: &CancellationToken,
    ) -> Writer<W> {
        Writer {
            wr,
            close: close.clone(),
            tap: None,
            runtime: tokio::runtime::Handle::current(),
            span: tracing::Span::none(),
        }
    }

    fn parked(out: &Outbox) -> bool {
        out.lock().parked.is_some()
    }

    #[tokio::test]
    async fn the_writer_runs_only_while_something_is_queued() {
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let close = CancellationToken::new();
        let out = Outbox::new(8);
        writer(ours, &close).park(&out);
        assert!(parked(&out), "idle: the write half waits, no task");
        for i in 0..5u8 {
            let chunk = Bytes::from(vec![b'a' + i; 3]);
            out.count_in(chunk.len());
            out.push(chunk).unwrap();
        }
        let mut got = vec![0u8; 15];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"aaabbbcccdddeee", "in order, nothing lost");
        for _ in 0..100 {
            if parked(&out) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(parked(&out), "the writer parked itself again");
        assert_eq!(out.queued.load(Ordering::Acquire), 0);
        assert_eq!(
            out.lock().queue.capacity(),
            0,
            "no queue storage while idle"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_shut_one_closes_the_stream() {
        let (ours, mut peer) = tokio::io::duplex(8);
        let close = CancellationToken::new();
        let out = Outbox::new(2);
        // No writer yet: the queue fills.
        out.push(Bytes::from_static(b"1")).unwrap();
        out.push(Bytes::from_static(b"2")).unwrap();
        assert_eq!(out.push(Bytes::from_static(b"3")), Err(Refused::Full));
        // The reader's close marker goes past the bound.
        assert!(out.push(Bytes::new()).is_ok());
        writer(ours, &close).park(&out);
        out.push(Bytes::from_static(b"x")).ok();
        out.shut();
        assert!(out.is_closed());
        assert_eq!(out.push(Bytes::from_static(b"4")), Err(Refused::Closed));
        assert!(!parked(&out), "the write half is dropped");
        let mut rest = Vec::new();
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            peer.read_to_end(&mut rest),
        )
        .await
        .expect("the stream closes")
        .unwrap();
        assert_eq!(n, rest.len());
        assert!(!rest.contains(&b'x'), "nothing is written after shut");
    }

    #[tokio::test]
    async fn the_close_marker_flushes_shuts_down_and_reports_done() {
        let (ours, mut peer) = tokio::io::duplex(1 << 10);
        let close = CancellationToken::new();
        let out = Outbox::new(8);
        writer(ours, &close).park(&out);
        out.push(Bytes::from_static(b"SIP/2.0 400 Bad Request\r\n\r\n"))
            .unwrap();
        out.push(Bytes::new()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(2), out.done())
            .await
            .expect("the writer says it is done");
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"SIP/2.0 400 Bad Request\r\n\r\n");
        assert!(out.is_closed());
    }

    #[tokio::test]
    async fn an_in_process_end_pops_in_order_and_ends_when_closed() {
        let close = CancellationToken::new();
        let out = Outbox::new(4);
        out.count_in(2);
        out.push(Bytes::from_static(b"m1")).unwrap();
        out.count_in(2);
        out.push(Bytes::from_static(b"m2")).unwrap();
        assert_eq!(out.pop(&close).await.as_deref(), Some(&b"m1"[..]));
        assert_eq!(out.pop(&close).await.as_deref(), Some(&b"m2"[..]));
        assert_eq!(out.queued.load(Ordering::Acquire), 0);
        let waiter = {
            let out = out.clone();
            let close = close.clone();
            tokio::spawn(async move { out.pop(&close).await })
        };
        tokio::task::yield_now().await;
        out.push(Bytes::from_static(b"m3")).unwrap();
        assert_eq!(waiter.await.unwrap().as_deref(), Some(&b"m3"[..]));
        out.shut();
        assert_eq!(out.pop(&close).await, None);
    }
}
