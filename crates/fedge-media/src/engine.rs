//! The media threads: the relay's UDP sockets are served by one or more
//! dedicated threads, each with its own event loop, outside the tokio
//! runtime that carries the signalling (issue 18, D136, D257).
//!
//! Owns the threads and, for the epoll loop, their epoll sets and which
//! stream each registered socket belongs to. Each thread runs one of two
//! loops (`[media] io`): io_uring (`uring.rs`, the default since issue 18:
//! no system call per packet), or this file's epoll loop, which a thread
//! also falls back to when the kernel refuses it a ring.
//!
//! The epoll loop waits in `epoll_wait` (level-triggered), then
//! reads each ready socket once per round (a batch with `recvmmsg` when
//! several packets wait: no read that finds the socket empty, and every
//! ready socket gets its turn before any gets a second, so a flooded port
//! cannot starve the others) and hands each packet to its stream, which
//! checks and forwards it. It never decides anything about a packet itself
//! (latching, networks, STUN are the stream's) and never blocks on anything
//! but `epoll_wait`: sockets are non-blocking, commands come through a
//! channel and an eventfd.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use tracing::{error, info, warn};

use super::Side;
use super::stream::{Component, Direct, Stream};

/// Packets one read takes from one socket at most (then the other ready
/// sockets have their turn).
const BATCH: usize = 8;
/// The largest datagram relayed whole (longer ones are cut, as before).
const BUF: usize = 8192;
/// Events one `epoll_wait` returns at most.
const EVENTS: usize = 512;
/// The token of a thread's eventfd (commands waiting).
const WAKE: u64 = u64::MAX;

/// Media threads the relay starts with, unless configured.
pub const DEFAULT_THREADS: usize = 1;

static THREADS: AtomicUsize = AtomicUsize::new(DEFAULT_THREADS);
static ENGINE: OnceLock<Engine> = OnceLock::new();

/// Sets how many media threads the process's relays share; effective only
/// before the first stream starts (`[media] threads`, read at start-up).
pub fn set_threads(n: usize) {
    THREADS.store(n.clamp(1, 64), Ordering::Relaxed);
}

/// The process's media threads, started on first use.
pub fn engine() -> &'static Engine {
    ENGINE.get_or_init(|| Engine::start(THREADS.load(Ordering::Relaxed)))
}

pub(crate) enum Command {
    Add(u64, Arc<Stream>),
    Remove(u64),
}

pub(crate) struct Worker {
    tx: Mutex<mpsc::Sender<Command>>,
    pub(crate) wake: EventFd,
}

/// How the media threads wait for and move packets (`[media] io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// `epoll_wait`, then `recvmmsg` and `sendto` per socket and packet.
    Epoll,
    /// One io_uring per thread: multishot receives into provided buffers,
    /// sends queued and submitted together (`uring.rs`); a thread whose
    /// ring cannot be set up (an old kernel, a sandbox) uses epoll.
    IoUring,
}

/// The media threads' I/O unless configured.
pub const DEFAULT_IO: Io = Io::IoUring;

static IO_URING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(matches!(DEFAULT_IO, Io::IoUring));

/// Sets how the media threads move packets; effective only before the
/// first stream starts (`[media] io`, read at start-up).
pub fn set_io(io: Io) {
    IO_URING.store(io == Io::IoUring, Ordering::Relaxed);
}

static CONNECT_PEERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether io_uring threads give latched peers connected sibling sockets
/// (`[media] connect_peers`, D258; on unless configured); effective only
/// before the first stream starts.
pub fn set_connect_peers(on: bool) {
    CONNECT_PEERS.store(on, Ordering::Relaxed);
}

pub(crate) fn connect_peers() -> bool {
    CONNECT_PEERS.load(Ordering::Relaxed)
}

/// The media threads.
pub struct Engine {
    workers: Vec<Arc<Worker>>,
    next: AtomicUsize,
    ids: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("threads", &self.workers.len())
            .finish()
    }
}

/// A stream's place on a media thread; dropping it takes the stream off.
#[derive(Debug)]
pub struct Registration {
    worker: usize,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(e) = ENGINE.get() {
            e.send(self.worker, Command::Remove(self.id));
        }
    }
}

impl Engine {
    fn start(threads: usize) -> Engine {
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            match spawn(i) {
                Ok(w) => workers.push(w),
                Err(e) => error!(error = %e, "media thread could not start"),
            }
        }
        Engine {
            workers,
            next: AtomicUsize::new(0),
            ids: AtomicU64::new(0),
        }
    }

    fn send(&self, worker: usize, c: Command) {
        if let Some(w) = self.workers.get(worker) {
            let sent =
                w.tx.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .send(c)
                    .is_ok();
            if sent && w.wake.write(1).is_err() {
                warn!("media thread could not be woken");
            }
        }
    }

    /// Serves `stream`'s UDP sockets on one of the threads until the
    /// registration is dropped.
    pub fn add(&self, stream: Arc<Stream>) -> std::io::Result<Registration> {
        if self.workers.is_empty() {
            return Err(std::io::Error::other("no media thread is running"));
        }
        let worker = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.send(worker, Command::Add(id, stream));
        Ok(Registration { worker, id })
    }
}

fn spawn(i: usize) -> std::io::Result<Arc<Worker>> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
    let (tx, rx) = mpsc::channel();
    let w = Arc::new(Worker {
        tx: Mutex::new(tx),
        wake,
    });
    let mine = w.clone();
    let uring = IO_URING.load(Ordering::Relaxed);
    std::thread::Builder::new()
        .name(format!("fedge-media-{i}"))
        .spawn(move || {
            if uring {
                // Built on this thread: the ring has a single submitter.
                match super::uring::start(mine.wake.as_fd().as_raw_fd()) {
                    Ok(serve) => {
                        info!(thread = i, "media thread serving with io_uring");
                        return serve(&mine, rx);
                    }
                    Err(why) => {
                        warn!(thread = i, %why, "media thread: io_uring unavailable; serving with epoll")
                    }
                }
            }
            info!(thread = i, "media thread serving with epoll");
            run(epoll, &mine, rx)
        })?;
    Ok(w)
}

/// One registered socket.
struct Entry {
    stream: Arc<Stream>,
    side: Side,
    c: Component,
    /// Packets the next read asks for: 1 while the socket holds one packet
    /// per round (a larger batch would make the kernel try, and fail, to
    /// take a second), doubled up to `BATCH` while reads come back full.
    batch: usize,
}

/// The registered sockets of one thread, by token.
#[derive(Default)]
struct Table {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Stream id to its tokens.
    streams: HashMap<u64, Vec<usize>>,
}

impl Table {
    fn add(&mut self, epoll: &Epoll, id: u64, stream: Arc<Stream>) {
        let mut tokens = Vec::with_capacity(4);
        for side in [Side::A, Side::B] {
            for c in [Component::Rtp, Component::Rtcp] {
                let t = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(None);
                    self.slots.len() - 1
                });
                let sock = stream.end(side).socket(c);
                match epoll.add(sock.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, t as u64)) {
                    Ok(()) => {
                        self.slots[t] = Some(Entry {
                            stream: stream.clone(),
                            side,
                            c,
                            batch: 1,
                        });
                        tokens.push(t);
                    }
                    Err(e) => {
                        error!(error = %e, "media socket could not be watched");
                        self.free.push(t);
                    }
                }
            }
        }
        self.streams.insert(id, tokens);
    }

    fn remove(&mut self, epoll: &Epoll, id: u64) {
        for t in self.streams.remove(&id).unwrap_or_default() {
            if let Some(e) = self.slots.get_mut(t).and_then(Option::take) {
                let _ = epoll.delete(e.stream.end(e.side).socket(e.c).as_fd());
                self.free.push(t);
            }
        }
    }
}

fn run(epoll: Epoll, w: &Worker, rx: mpsc::Receiver<Command>) {
    let mut table = Table::default();
    let mut events = vec![EpollEvent::empty(); EVENTS];
    let mut bufs: Box<[[u8; BUF]; BATCH]> = Box::new([[0u8; BUF]; BATCH]);
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    loop {
        let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                error!(error = %e, "media thread: epoll_wait failed; its streams stop");
                return;
            }
        };
        for ev in &events[..n] {
            if ev.data() == WAKE {
                let _ = w.wake.read();
                loop {
                    match rx.try_recv() {
                        Ok(Command::Add(id, s)) => table.add(&epoll, id, s),
                        Ok(Command::Remove(id)) => table.remove(&epoll, id),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => return,
                    }
                }
                continue;
            }
            // A socket removed earlier in this round has no entry any more.
            let Some(Some(e)) = table.slots.get_mut(ev.data() as usize) else {
                continue;
            };
            read(e, &mut bufs, &mut headers);
        }
    }
}

/// One read of one ready socket: up to `e.batch` packets, each handed to
/// the stream in turn.
fn read(e: &mut Entry, bufs: &mut [[u8; BUF]; BATCH], headers: &mut MultiHeaders<SockaddrStorage>) {
    let sock = e.stream.end(e.side).socket(e.c);
    let mut got: [(usize, Option<SocketAddr>); BATCH] = [(0, None); BATCH];
    let n = {
        let mut slices = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
        match recvmmsg(
            sock.as_raw_fd(),
            headers,
            slices.iter_mut().take(e.batch),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(r) => {
                let mut n = 0;
                for (slot, m) in got.iter_mut().zip(r) {
                    *slot = (m.bytes, m.address.as_ref().and_then(to_std));
                    n += 1;
                }
                n
            }
            Err(_) => 0, // nothing waiting, or an error report: nothing to relay
        }
    };
    e.batch = if n >= e.batch {
        (e.batch * 2).min(BATCH)
    } else {
        1
    };
    // One clock read per batch, not per packet.
    let now = tokio::time::Instant::now();
    for (i, (len, from)) in got.iter().take(n).enumerate() {
        if let (Some(from), Some(b)) = (from, bufs.get(i)) {
            e.stream
                .on_udp(e.side, e.c, &b[..(*len).min(BUF)], *from, now, &mut Direct);
        }
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}
