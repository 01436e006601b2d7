//! A media thread's io_uring loop (issue 18, goal 1; `[media] io =
//! "io_uring"`): the same work as the epoll loop in `engine.rs`, with no
//! system call per packet.
//!
//! Owns one ring per media thread, its provided-buffer ring, and which
//! stream each registered socket belongs to. Each relay socket has one
//! multishot `recvmsg` in the ring: the kernel receives each datagram into
//! a provided buffer and posts it; the stream decides (`Stream::on_udp`);
//! a relayed packet goes back as a `send` entry naming the destination,
//! from the same buffer, which returns to the kernel once the send has
//! completed. One `io_uring_enter` submits every send of a round and
//! waits for the next completions, where the epoll loop makes an
//! `epoll_wait`, a `recvmmsg` and a `sendto` per packet.
//!
//! It never decides anything about a packet itself, never closes a socket
//! that still has a request in the ring (a removed stream's receives are
//! cancelled and its entry kept until the kernel says they ended), never
//! hands the kernel memory it may free (the buffers live as long as the
//! ring), and never gives Rust code a buffer the kernel may still write.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::Cell;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;

use io_uring::squeue::Entry as Sqe;
use io_uring::types::{BufRingEntry, Fd, Fixed, RecvMsgOut};
use io_uring::{IoUring, cqueue, opcode};
use nix::sys::socket::{SockaddrLike, SockaddrStorage};
use tracing::{error, warn};

mod connect;

use super::Side;
use super::engine::{Command, Worker};
use super::stream::{Component, Stream, UdpOut};

/// Provided buffers per thread (a power of two): packets received and
/// not yet sent on. The crate's unit tests run with 8, so that their
/// bursts exhaust the pool and every receive ended for want of buffers
/// must be armed again (`Uring::rearm`) for the test to pass.
const NBUF: u16 = if cfg!(test) { 8 } else { 1024 };
/// The largest datagram relayed whole (as the epoll loop's).
const PAYLOAD: usize = 8192;
/// Room before the payload: `io_uring_recvmsg_out` and the source address.
const HEAD: usize = 16 + NAME;
/// The source address field (a `sockaddr_in6`; IPv4 fits in it).
const NAME: usize = std::mem::size_of::<libc::sockaddr_in6>();
const BUF: usize = HEAD + PAYLOAD;
/// The provided-buffer group.
const BGID: u16 = 7;
const SQ_ENTRIES: u32 = 4096;
const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;

// user_data: kind in the top 4 bits, then a 20-bit generation, a 24-bit
// slot and a 16-bit buffer id.
const RECV: u64 = 1;
const SEND: u64 = 2;
const WAKE: u64 = 3;
const CANCEL: u64 = 4;

fn tag(kind: u64, generation: u32, slot: usize, bid: u16) -> u64 {
    (kind << 60)
        | ((u64::from(generation) & 0xF_FFFF) << 40)
        | ((slot as u64 & 0xFF_FFFF) << 16)
        | u64::from(bid)
}

fn untag(t: u64) -> (u64, u32, usize, u16) {
    (
        t >> 60,
        ((t >> 40) & 0xF_FFFF) as u32,
        ((t >> 16) & 0xFF_FFFF) as usize,
        (t & 0xFFFF) as u16,
    )
}

/// The provided buffers and their ring, registered with the kernel.
///
/// Never freed: the thread that owns them serves for the life of the
/// process, and a ring torn down may still be cancelling receives that
/// write into them.
struct Buffers {
    ring: *mut BufRingEntry,
    data: *mut u8,
    /// Our producer index (published to the kernel by `publish`).
    tail: u16,
}

impl Buffers {
    fn new(uring: &IoUring) -> std::io::Result<Buffers> {
        let ring_layout =
            Layout::from_size_align(usize::from(NBUF) * 16, 4096).map_err(std::io::Error::other)?;
        let data_layout =
            Layout::from_size_align(usize::from(NBUF) * BUF, 64).map_err(std::io::Error::other)?;
        // SAFETY: both layouts have a non-zero size.
        let (ring, data) = unsafe { (alloc_zeroed(ring_layout), alloc_zeroed(data_layout)) };
        if ring.is_null() || data.is_null() {
            // SAFETY: each pointer came from `alloc_zeroed` with its layout.
            unsafe {
                if !ring.is_null() {
                    dealloc(ring, ring_layout);
                }
                if !data.is_null() {
                    dealloc(data, data_layout);
                }
            }
            return Err(std::io::Error::other("no memory for the media buffers"));
        }
        let mut b = Buffers {
            ring: ring.cast(),
            data,
            tail: 0,
        };
        // SAFETY: the ring memory is page aligned, NBUF entries long, and
        // never freed.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, NBUF, BGID, 0)?;
        }
        for bid in 0..NBUF {
            b.recycle(bid);
        }
        b.publish();
        Ok(b)
    }

    /// Gives buffer `bid` back to the kernel (seen at the next `publish`).
    fn recycle(&mut self, bid: u16) {
        let i = usize::from(self.tail & (NBUF - 1));
        // SAFETY: `i` < NBUF, inside the ring; the kernel reads entries only
        // up to the published tail, and this one is past it.
        let e = unsafe { &mut *self.ring.add(i) };
        e.set_addr(self.data as u64 + u64::from(bid) * BUF as u64);
        e.set_len(BUF as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail is the first entry's reserved field, which the
        // kernel reads; it is a u16 at an aligned address.
        unsafe {
            let tail = BufRingEntry::tail(self.ring).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Buffer `bid`'s first `len` bytes, which the kernel has filled and
    /// handed over (its completion was seen, it is not yet recycled).
    fn filled(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid % NBUF);
        // SAFETY: inside the allocation; the kernel does not write a buffer
        // between handing it over and its `recycle`.
        unsafe { std::slice::from_raw_parts(self.data.add(bid * BUF), len.min(BUF)) }
    }
}

/// How the ring names a socket: by its place in the ring's table of
/// registered files (no file lookup per request), or by its descriptor
/// where the table is full or missing.
#[derive(Debug, Clone, Copy)]
enum File {
    Fixed(u32),
    Fd(i32),
}

/// Entries in a ring's table of registered files (at most the process's
/// open-files limit).
const FILES: u32 = 16384;

/// One registered socket.
struct Entry {
    stream: Arc<Stream>,
    /// The stream's id in `Table::streams`.
    id: u64,
    side: Side,
    c: Component,
    file: File,
    /// A relay socket's connected sibling (its slot), and the peer it is
    /// connected to: sends to that peer go through it.
    conn: Cell<Option<(usize, SocketAddr)>>,
    /// Sends in a row to one destination, which earn a connected sibling
    /// at `connect::AFTER`.
    run: Cell<(Option<SocketAddr>, u32)>,
    /// A connected sibling: the socket it owns, and its relay socket's slot.
    sibling: Option<(std::net::UdpSocket, usize)>,
    /// The stream's four slots, by side and component (A RTP, A RTCP,
    /// B RTP, B RTCP): where its packets are sent from.
    peers: [usize; 4],
    generation: u32,
    /// Its receive was cancelled (the stream is going); the entry goes when
    /// the kernel says the receive ended.
    closing: bool,
}

impl Entry {
    /// Side `at.0`'s socket `at.1` of stream `id` (or its connected
    /// sibling), not yet in the table (`Uring::install` names it).
    fn new(
        stream: Arc<Stream>,
        id: u64,
        at: (Side, Component),
        peers: [usize; 4],
        sibling: Option<(std::net::UdpSocket, usize)>,
    ) -> Entry {
        Entry {
            stream,
            id,
            side: at.0,
            c: at.1,
            file: File::Fd(-1),
            conn: Cell::new(None),
            run: Cell::new((None, 0)),
            sibling,
            peers,
            generation: 0,
            closing: false,
        }
    }
}

/// The registered sockets of one thread, by slot.
#[derive(Default)]
struct Table {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    streams: std::collections::HashMap<u64, Vec<usize>>,
    generation: u32,
}

/// A ring, its buffers and its sockets (the ring is dropped first).
struct Uring {
    ring: IoUring,
    bufs: Buffers,
    table: Table,
    /// The `msghdr` every receive names (only its name and control lengths
    /// count: the kernel copies it when the request starts).
    msghdr: Box<libc::msghdr>,
    /// Where each buffer's send goes, kept until the send completes,
    /// and its length (a failed send is taken off the counters).
    dest: Vec<(SockaddrStorage, usize)>,
    /// Slots whose receive ended for want of buffers: armed again once
    /// buffers are back.
    rearm: Vec<usize>,
    /// Entries in the table of registered files (0: none).
    files: u32,
    /// When the slice of completions being handled was taken: one clock
    /// read per slice, not per packet.
    now: tokio::time::Instant,
    /// Relay sockets (by slot) whose sends earned a connected sibling, and
    /// the peer it is for: made once the slice is done.
    to_connect: Vec<(usize, SocketAddr)>,
    /// The highest descriptor a connected sibling may have (three quarters
    /// of the open-files limit: the rest is kept for new calls' ports); -1
    /// when siblings are off (`[media] connect_peers = false`).
    sibling_fds: i32,
}

/// Why a media thread has no ring (it serves with epoll instead).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RingError {
    #[error("io_uring: {0}")]
    Ring(std::io::Error),
    #[error("io_uring buffers: {0}")]
    Buffers(std::io::Error),
}

/// Tries to build a media thread's ring; an error (saying why) where the
/// kernel has no io_uring or refuses it (a sandbox), so that the thread
/// serves with epoll instead.
pub(crate) fn start(
    wake_fd: i32,
) -> Result<impl FnOnce(&Worker, mpsc::Receiver<Command>), RingError> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
        .map_err(RingError::Ring)?;
    let bufs = Buffers::new(&ring).map_err(RingError::Buffers)?;
    // SAFETY: an all-zero msghdr is a valid (empty) one.
    let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    msghdr.msg_namelen = NAME as u32;
    let mut u = Uring {
        ring,
        bufs,
        table: Table::default(),
        msghdr,
        dest: vec![
            (
                SockaddrStorage::from(SocketAddr::from(([0, 0, 0, 0], 0))),
                0
            );
            usize::from(NBUF)
        ],
        rearm: Vec::new(),
        files: 0,
        now: tokio::time::Instant::now(),
        to_connect: Vec::new(),
        sibling_fds: if super::engine::connect_peers() {
            i32::try_from(u64::from(open_files_limit()) * 3 / 4).unwrap_or(i32::MAX)
        } else {
            -1
        },
    };
    // A table of registered files saves a file lookup per request; without
    // one (a low open-files limit) sockets are named by descriptor.
    let files = FILES.min(open_files_limit());
    if files > 0 && u.ring.submitter().register_files_sparse(files).is_ok() {
        u.files = files;
    }
    u.push(
        opcode::PollAdd::new(Fd(wake_fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(tag(WAKE, 0, 0, 0)),
    )
    .map_err(RingError::Ring)?;
    Ok(move |w: &Worker, rx: mpsc::Receiver<Command>| u.run(w, rx, wake_fd))
}

impl Uring {
    /// Queues one entry, submitting what is queued first if the queue is full.
    fn push(&mut self, e: Sqe) -> std::io::Result<()> {
        loop {
            // SAFETY: every entry queued names memory that outlives its
            // request: the ring's buffers, `dest`, the boxed `msghdr`
            // (copied at submission), or nothing.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn run(mut self, w: &Worker, rx: mpsc::Receiver<Command>, wake_fd: i32) {
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(256);
        loop {
            let waited = self.ring.submit_and_wait(1);
            if let Err(e) = waited {
                // Interrupted, or the completion queue full for a moment:
                // go round again.
                if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) {
                    continue;
                }
                error!(error = %e, "media thread: io_uring_enter failed; its streams stop");
                return;
            }
            let mut commands = false;
            // Completions are taken in slices; each slice's sends go to the
            // kernel (and its buffers back) before the next slice.
            loop {
                let mut returned = false;
                cqes.clear();
                cqes.extend(self.ring.completion().take(256));
                if cqes.is_empty() {
                    break;
                }
                self.now = tokio::time::Instant::now();
                for cqe in &cqes {
                    let (kind, generation, slot, bid) = untag(cqe.user_data());
                    match kind {
                        RECV => returned |= self.on_recv(cqe, generation, slot),
                        SEND => {
                            if cqe.result() < 0 {
                                self.send_failed(generation, slot, bid);
                            }
                            self.bufs.recycle(bid);
                            returned = true;
                        }
                        WAKE => {
                            commands = true;
                            if !cqueue::more(cqe.flags()) {
                                self.rearm_wake(wake_fd);
                            }
                        }
                        _ => {} // CANCEL: its target's completion says the rest
                    }
                }
                if returned {
                    self.bufs.publish();
                    for slot in std::mem::take(&mut self.rearm) {
                        self.arm(slot);
                    }
                }
                if let Err(e) = self.ring.submit() {
                    warn!(error = %e, "media thread: io_uring submit failed");
                }
                // After the submit: a sibling may take a slot freed in this
                // slice, which no queued send may still name.
                for (slot, to) in std::mem::take(&mut self.to_connect) {
                    self.connect(slot, to);
                }
            }
            if commands {
                // Every send queued above is with the kernel already (each
                // slice ends with a submit), so a stream removed here has
                // no send of ours left that names its sockets by number.
                let _ = w.wake.read();
                loop {
                    match rx.try_recv() {
                        Ok(Command::Add(id, s)) => self.add(id, s),
                        Ok(Command::Remove(id)) => self.remove(id),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => return,
                    }
                }
            }
        }
    }

    /// A receive's completion; true when a buffer went back to the kernel.
    fn on_recv(&mut self, cqe: &cqueue::Entry, generation: u32, slot: usize) -> bool {
        let more = cqueue::more(cqe.flags());
        let bid = cqueue::buffer_select(cqe.flags());
        let live =
            matches!(self.table.slots.get(slot), Some(Some(e)) if e.generation == generation);
        let mut returned = false;
        if let (Some(bid), true) = (bid, cqe.result() >= 0) {
            let len = usize::try_from(cqe.result()).unwrap_or(0);
            let sent = live && self.relay(slot, bid, len);
            if !sent {
                self.bufs.recycle(bid);
                returned = true;
            }
        } else if let Some(bid) = bid {
            self.bufs.recycle(bid);
            returned = true;
        }
        if !more && live {
            let closing = matches!(self.table.slots.get(slot), Some(Some(e)) if e.closing);
            if closing {
                self.free(slot); // the stream's last request here ended
            } else if cqe.result() == -libc::ENOBUFS {
                self.rearm.push(slot);
            } else {
                if cqe.result() < 0 && cqe.result() != -libc::ECONNREFUSED {
                    warn!(error = %std::io::Error::from_raw_os_error(-cqe.result()), "media receive ended; armed again");
                }
                self.arm(slot);
            }
        }
        returned
    }

    /// Frees a slot whose last request ended: its registered file goes
    /// (the socket closes once the stream is dropped).
    fn free(&mut self, slot: usize) {
        if let Some(Some(e)) = self.table.slots.get(slot)
            && let Some((_, primary)) = &e.sibling
            && let Some(Some(p)) = self.table.slots.get(*primary)
            && p.conn.get().is_some_and(|(s, _)| s == slot)
        {
            p.conn.set(None);
        }
        if let Some(Some(e)) = self.table.slots.get(slot)
            && let File::Fixed(i) = e.file
            && let Err(err) = self.ring.submitter().register_files_update(i, &[-1])
        {
            warn!(error = %err, "media socket could not be taken out of the ring");
        }
        if let Some(s) = self.table.slots.get_mut(slot) {
            *s = None;
        }
        self.table.free.push(slot);
    }

    /// Hands a received packet to its stream; true when a send took the buffer.
    fn relay(&mut self, slot: usize, bid: u16, len: usize) -> bool {
        let Uring {
            ring,
            bufs,
            table,
            msghdr,
            dest,
            now,
            to_connect,
            sibling_fds,
            ..
        } = self;
        let Some(Some(e)) = table.slots.get(slot) else {
            return false;
        };
        if e.closing {
            return false; // the stream is going: nothing more is relayed
        }
        let Ok(msg) = RecvMsgOut::parse(bufs.filled(bid, len), msghdr) else {
            return false;
        };
        let Some(from) = source(msg.name_data()) else {
            return false;
        };
        let mut out = Queue {
            sq: ring,
            table,
            peers: e.peers,
            to_connect,
            connect: *sibling_fds >= 0,
            dest,
            user_data: tag(SEND, e.generation, slot, bid),
            bid,
            queued: false,
        };
        e.stream
            .on_udp(e.side, e.c, msg.payload_data(), from, *now, &mut out);
        out.queued
    }

    fn send_failed(&mut self, generation: u32, slot: usize, bid: u16) {
        if let Some(Some(e)) = self.table.slots.get(slot)
            && e.generation == generation
        {
            let len = self.dest.get(usize::from(bid)).map_or(0, |d| d.1);
            e.stream.send_failed(e.side, len);
        }
    }

    fn rearm_wake(&mut self, wake_fd: i32) {
        let e = opcode::PollAdd::new(Fd(wake_fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(tag(WAKE, 0, 0, 0));
        if let Err(e) = self.push(e) {
            error!(error = %e, "media thread: cannot watch its commands");
        }
    }

    /// Starts (again) the multishot receive of `slot`'s socket.
    fn arm(&mut self, slot: usize) {
        let Some(Some(e)) = self.table.slots.get(slot) else {
            return;
        };
        let sqe = match e.file {
            File::Fixed(i) => opcode::RecvMsgMulti::new(Fixed(i), &*self.msghdr, BGID).build(),
            File::Fd(fd) => opcode::RecvMsgMulti::new(Fd(fd), &*self.msghdr, BGID).build(),
        }
        .user_data(tag(RECV, e.generation, slot, 0));
        if let Err(err) = self.push(sqe) {
            error!(error = %err, "media socket could not be watched");
        }
    }

    /// A free slot of the table.
    fn take_slot(&mut self) -> usize {
        self.table.free.pop().unwrap_or_else(|| {
            self.table.slots.push(None);
            self.table.slots.len() - 1
        })
    }

    /// Puts `e` (socket `fd`) in `slot` under a new generation, named as a
    /// registered file where the table has room, and arms its receive.
    fn install(&mut self, slot: usize, fd: i32, mut e: Entry) {
        e.file = match u32::try_from(slot) {
            Ok(n) if n < self.files => {
                match self.ring.submitter().register_files_update(n, &[fd]) {
                    Ok(_) => File::Fixed(n),
                    Err(_) => File::Fd(fd),
                }
            }
            _ => File::Fd(fd),
        };
        self.table.generation = self.table.generation.wrapping_add(1) & 0xF_FFFF;
        e.generation = self.table.generation;
        if let Some(s) = self.table.slots.get_mut(slot) {
            *s = Some(e);
        }
        self.arm(slot);
    }

    fn add(&mut self, id: u64, stream: Arc<Stream>) {
        let mut peers = [0usize; 4];
        for p in &mut peers {
            *p = self.take_slot();
        }
        let mut i = 0;
        for side in [Side::A, Side::B] {
            for c in [Component::Rtp, Component::Rtcp] {
                let slot = peers[i];
                i += 1;
                let fd = stream.end(side).socket(c).as_raw_fd();
                let e = Entry::new(stream.clone(), id, (side, c), peers, None);
                self.install(slot, fd, e);
            }
        }
        self.table.streams.insert(id, peers.to_vec());
    }

    fn remove(&mut self, id: u64) {
        for slot in self.table.streams.remove(&id).unwrap_or_default() {
            if let Some(i) = self.rearm.iter().position(|s| *s == slot) {
                // Its receive already ended (no buffers): nothing to cancel.
                self.rearm.swap_remove(i);
                self.free(slot);
                continue;
            }
            let Some(Some(e)) = self.table.slots.get_mut(slot) else {
                continue;
            };
            e.closing = true;
            let target = tag(RECV, e.generation, slot, 0);
            let cancel = opcode::AsyncCancel::new(target)
                .build()
                .user_data(tag(CANCEL, 0, 0, 0));
            if let Err(err) = self.push(cancel) {
                warn!(error = %err, "media receive could not be cancelled");
            }
        }
    }
}

/// A relayed packet's way out: a `send` entry from the buffer it came in.
struct Queue<'a> {
    sq: &'a mut IoUring,
    table: &'a Table,
    /// The stream's four slots (see `Entry::peers`).
    peers: [usize; 4],
    to_connect: &'a mut Vec<(usize, SocketAddr)>,
    /// Whether latched peers get connected siblings.
    connect: bool,
    dest: &'a mut [(SockaddrStorage, usize)],
    user_data: u64,
    bid: u16,
    queued: bool,
}

impl UdpOut for Queue<'_> {
    fn send(
        &mut self,
        side: Side,
        c: Component,
        sock: &std::net::UdpSocket,
        pkt: &[u8],
        to: SocketAddr,
    ) -> bool {
        let Some(d) = self.dest.get_mut(usize::from(self.bid)) else {
            return false;
        };
        *d = (SockaddrStorage::from(to), pkt.len());
        let k = side.index() * 2 + c as usize;
        let (ptr, len) = (pkt.as_ptr(), pkt.len() as u32);
        let primary = self.peers[k];
        let relay_socket = match self.table.slots.get(primary) {
            Some(Some(r)) => Some(r),
            _ => None,
        };
        let connected = relay_socket
            .and_then(|r| r.conn.get())
            .filter(|(_, peer)| *peer == to)
            .and_then(|(sib, _)| match self.table.slots.get(sib) {
                Some(Some(s)) if !s.closing => Some(s.file),
                _ => None,
            });
        let e = if let Some(file) = connected {
            match file {
                File::Fixed(i) => opcode::Send::new(Fixed(i), ptr, len),
                File::Fd(fd) => opcode::Send::new(Fd(fd), ptr, len),
            }
            .build()
        } else {
            if let Some(r) = relay_socket.filter(|_| self.connect) {
                let (last, n) = r.run.get();
                let n = if last == Some(to) {
                    n.saturating_add(1)
                } else {
                    1
                };
                r.run.set((Some(to), n));
                if n == connect::AFTER {
                    self.to_connect.push((primary, to));
                }
            }
            // How the ring names the relay socket (by descriptor once its
            // slot has gone).
            let file = relay_socket.map_or(File::Fd(sock.as_raw_fd()), |r| r.file);
            match file {
                File::Fixed(i) => opcode::Send::new(Fixed(i), ptr, len),
                File::Fd(fd) => opcode::Send::new(Fd(fd), ptr, len),
            }
            .dest_addr(d.0.as_ptr())
            .dest_addr_len(sockaddr_len(&to))
            .build()
        }
        .user_data(self.user_data);
        loop {
            // SAFETY: `pkt` is in a provided buffer and `d` in `dest`, both
            // kept until this send's completion recycles the buffer.
            if unsafe { self.sq.submission().push(&e) }.is_ok() {
                self.queued = true;
                return true;
            }
            if self.sq.submit().is_err() {
                return false;
            }
        }
    }
}

/// The process's open-files limit (soft), which bounds a ring's table of
/// registered files.
fn open_files_limit() -> u32 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    u32::try_from(r.rlim_cur).unwrap_or(u32::MAX)
}

/// The length of `a` as a C socket address (a `SockaddrStorage` says 128).
fn sockaddr_len(a: &SocketAddr) -> libc::socklen_t {
    let n = match a {
        SocketAddr::V4(_) => std::mem::size_of::<libc::sockaddr_in>(),
        SocketAddr::V6(_) => std::mem::size_of::<libc::sockaddr_in6>(),
    };
    n as libc::socklen_t
}

/// The source address the kernel wrote before the payload.
fn source(name: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*name.first()?, *name.get(1)?]));
    let port = u16::from_be_bytes([*name.get(2)?, *name.get(3)?]);
    if family == libc::AF_INET {
        let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
        return Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)));
    }
    if family == libc::AF_INET6 {
        let flow = u32::from_be_bytes(name.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
        return Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flow,
            scope,
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let t = tag(SEND, 0xABCDE, 0x123456, 0xBEEF);
        assert_eq!(untag(t), (SEND, 0xABCDE, 0x123456, 0xBEEF));
        let t = tag(RECV, 0x1_00000 + 5, 7, 0);
        assert_eq!(untag(t), (RECV, 5, 7, 0));
    }

    #[test]
    fn source_addresses_are_read_as_the_kernel_writes_them() {
        let v4 = SocketAddr::from(([192, 0, 2, 7], 5004));
        let s = SockaddrStorage::from(v4);
        // SAFETY: `s` is `len()` bytes long at `as_ptr()`.
        let raw = unsafe {
            std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), sockaddr_len(&v4) as usize)
        };
        let mut name = [0u8; NAME];
        name[..raw.len()].copy_from_slice(raw);
        assert_eq!(source(&name), Some(v4));
        let v6: SocketAddr = "[2001:db8::9]:40000".parse().unwrap();
        let s = SockaddrStorage::from(v6);
        // SAFETY: as above.
        let raw = unsafe {
            std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), sockaddr_len(&v6) as usize)
        };
        assert_eq!(source(raw), Some(v6));
        assert_eq!(source(&[0u8; 4]), None);
    }
}
