//! One relayed media stream: the relay's sockets facing each side, where
//! each side receives (as its SDP said, then as learned from its packets),
//! and how packets move between them.
//!
//! Owns forwarding. A UDP packet is read into its media thread's buffers
//! and sent on from there, never copied otherwise and never parsed beyond telling STUN
//! from media and RTCP from RTP: RTP, RTCP (feedback included), SRTP and
//! DTLS pass as they came. Each side is latched: its first packet from a
//! host it signalled (its SDP address, or the host its SIP came from), or an
//! ICE check it nominates, fixes where it is sent to, so NAT works; packets
//! from any other host are dropped, and never to an address the operator's
//! networks refuse. RFC 4571 connections are taken only from those hosts,
//! and must carry a packet the side is accepted for within seconds.
//!
//! UDP packets are read by the media threads (`engine`), which hand each
//! one to `Stream::on_udp`; RFC 4571 connections run as tokio tasks.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::engine::{Registration, engine};
use super::networks::Networks;
use super::ports::PortLease;
use super::sdp::IceCredentials;
use super::stun;
use super::{Side, Totals};

/// A side that went quiet this long may be re-learned from a new source
/// (a NAT rebinding, a moved endpoint).
const RELATCH_AFTER_MS: u64 = 2_000;
/// Frames queued towards one RFC 4571 connection before drops.
const TCP_QUEUE: usize = 512;
const BUF: usize = 8192;
/// RFC 4571 connections one relay port accepts at once.
const TCP_CONNECTIONS: usize = 4;
/// How long a new RFC 4571 connection may take to send its first packet
/// the side is accepted for (or a verified ICE check).
pub const TCP_FIRST_FRAME: std::time::Duration = std::time::Duration::from_secs(5);
/// An RFC 4571 connection that carries nothing accepted this long goes.
pub const TCP_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// How a relayed UDP packet leaves: at once with `send_to` ([`Direct`]),
/// or queued on a media thread's io_uring (`uring.rs`).
pub(crate) trait UdpOut {
    /// Sends (or queues) `pkt` from `sock` (side `side`'s socket `c`) to
    /// `to`; false if it could not.
    fn send(
        &mut self,
        side: Side,
        c: Component,
        sock: &std::net::UdpSocket,
        pkt: &[u8],
        to: SocketAddr,
    ) -> bool;
}

/// Sends at once, with `send_to`.
pub(crate) struct Direct;

impl UdpOut for Direct {
    fn send(
        &mut self,
        _: Side,
        _: Component,
        sock: &std::net::UdpSocket,
        pkt: &[u8],
        to: SocketAddr,
    ) -> bool {
        sock.send_to(pkt, to).is_ok()
    }
}

/// Which socket of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Rtp,
    Rtcp,
}

/// RFC 5761 §4: payload types 64-95 in the second byte are RTCP.
pub fn is_rtcp(p: &[u8]) -> bool {
    p.len() >= 2 && (192..=223).contains(&p[1])
}

/// Counters of what one side sent to the relay (and what was dropped).
#[derive(Debug, Default)]
pub struct Counters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Packets from an unlatched source, or that could not be sent on.
    pub drops: AtomicU64,
    /// Milliseconds since the relay started, of the last packet; 0 = none.
    pub last_ms: AtomicU64,
    pub stun: AtomicU64,
}

/// Where a side receives.
#[derive(Debug, Default)]
struct Target {
    /// The side has described its media (before that, nothing from it is taken).
    announced: bool,
    sdp_rtp: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    /// RTCP on the RTP port (both sides asked for rtcp-mux).
    mux: bool,
    /// Old-style hold or rejected: nothing is sent to it.
    silent: bool,
    learned: [Option<SocketAddr>; 2],
    learned_ms: [u64; 2],
    /// The host the side's signalling came from (its NAT's public
    /// address, when its SDP names a private one).
    peer: Option<IpAddr>,
    /// The operator's opt-out (`latch_any_host`): the first source from
    /// any allowed host may latch, as before issue 14.
    any_host: bool,
    /// An RFC 4571 connection the side sends on; replies go the same way.
    tcp: Option<mpsc::Sender<Bytes>>,
    /// A BFCP stream's connection with this side: cancelled to close it
    /// when the other side's closes.
    tcp_close: Option<CancellationToken>,
    /// The side said `a=setup:passive` (the relay connects to it).
    passive: bool,
    /// The relay is connecting to this (passive) side.
    connecting: bool,
}

impl Target {
    fn latch(&mut self, c: usize, from: SocketAddr, now: u64) {
        self.learned[c] = Some(from);
        self.learned_ms[c] = now;
    }

    /// A host the side signalled: its SDP addresses, where its SIP came
    /// from, or a source already latched.
    fn expected_host(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let same = |a: Option<IpAddr>| a.is_some_and(|a| a.to_canonical() == ip);
        same(self.sdp_rtp.map(|a| a.ip()))
            || same(self.sdp_rtcp.map(|a| a.ip()))
            || same(self.peer)
            || self.learned.iter().any(|l| same(l.map(|a| a.ip())))
    }

    /// Whether a packet from `from` on component `c` is this side's, and
    /// where to send to it from now on (RFC 3550 symmetric RTP, with NAT):
    /// - never a source in a network the operator refuses;
    /// - nothing before the side described its media;
    /// - the address its SDP announced is always its own, and wins;
    /// - otherwise the first source from a host the side signalled (its
    ///   SDP's, or its SIP's: a NAT shows another port, or its public
    ///   address) is learned; any other host is dropped, so a stranger who
    ///   guesses the port cannot take the stream;
    /// - a learned source silent for a while may be replaced by another
    ///   port of the same host (a NAT rebinding), never by another host:
    ///   that takes a new SDP or an ICE check (`force`).
    fn accept(
        &mut self,
        c: usize,
        from: SocketAddr,
        now: u64,
        force: bool,
        nets: &Networks,
    ) -> bool {
        // Port 0 is no source anything can be sent back to (RFC 768).
        if from.port() == 0 || !nets.allows(from.ip()) {
            return false;
        }
        if force {
            self.latch(c, from, now);
            return true;
        }
        if !self.announced {
            // Only a source a verified ICE check latched (the answerer's
            // media overtaking its answer).
            return self.learned[c] == Some(from);
        }
        let sdp = if c == 0 { self.sdp_rtp } else { self.sdp_rtcp };
        if sdp == Some(from) {
            self.latch(c, from, now);
            return true;
        }
        let ok = match self.learned[c] {
            Some(l) if l == from => true,
            Some(l) => {
                l.ip() == from.ip() && now.saturating_sub(self.learned_ms[c]) > RELATCH_AFTER_MS
            }
            None => self.any_host || self.expected_host(from.ip()),
        };
        if ok {
            self.latch(c, from, now);
        }
        ok
    }
}

/// The relay's sockets facing one side, and what it knows of that side.
#[derive(Debug)]
pub struct End {
    /// Non-blocking; read by a media thread, written from wherever the
    /// packet for this side was read.
    rtp: std::net::UdpSocket,
    rtcp: std::net::UdpSocket,
    pub rtp_port: u16,
    pub rtcp_port: u16,
    pub tcp: bool,
    target: Mutex<Target>,
    ice: Arc<IceCredentials>,
    /// Where the relay may send this side's media.
    networks: Arc<Networks>,
    pub counters: Counters,
    /// Given back to the range at close, before the tasks have ended (their
    /// sockets then only keep the ports busy until they do).
    lease: Mutex<Option<PortLease>>,
}

fn lock(t: &Mutex<Target>) -> std::sync::MutexGuard<'_, Target> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a packet arrived.
pub(crate) enum Via<'a> {
    Udp,
    Tcp(&'a mpsc::Sender<Bytes>),
}

enum Out {
    Udp(Component, SocketAddr),
    Tcp(mpsc::Sender<Bytes>),
}

impl End {
    pub(crate) fn socket(&self, c: Component) -> &std::net::UdpSocket {
        match c {
            Component::Rtp => &self.rtp,
            Component::Rtcp => &self.rtcp,
        }
    }

    /// Where a packet for this side goes.
    fn out(&self, rtcp: bool) -> Option<Out> {
        let t = lock(&self.target);
        if t.silent {
            return None;
        }
        if let Some(tx) = &t.tcp
            && !tx.is_closed()
        {
            return Some(Out::Tcp(tx.clone()));
        }
        let separate = rtcp && !t.mux;
        let (c, sdp, comp) = if separate {
            (1, t.sdp_rtcp, Component::Rtcp)
        } else {
            (0, t.sdp_rtp, Component::Rtp)
        };
        t.learned[c].or(sdp).map(|a| Out::Udp(comp, a))
    }
}

/// One relayed stream: ends facing side A and side B.
#[derive(Debug)]
pub struct Stream {
    ends: [End; 2],
    totals: Arc<Totals>,
    epoch: tokio::time::Instant,
    closed: AtomicBool,
    /// Its place on a media thread, taken off when the session's token
    /// is cancelled (or its runtime goes).
    registration: Mutex<Option<Registration>>,
    /// BFCP (RFC 8855): opaque messages, no STUN, no RTCP, and TCP
    /// without RFC 4571 framing (`bfcp`).
    bfcp: bool,
    /// The session's token (ends the stream's tasks).
    cancel: CancellationToken,
}

/// What a side's SDP says about one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
    pub mux: bool,
    pub silent: bool,
    /// A TCP stream's side said `a=setup:passive`.
    pub passive: bool,
}

/// The sockets of one end, before its tasks start.
pub struct EndSockets {
    pub rtp: std::net::UdpSocket,
    pub rtcp: std::net::UdpSocket,
    pub tcp: Option<std::net::TcpListener>,
    pub lease: PortLease,
    pub ice: Arc<IceCredentials>,
    pub networks: Arc<Networks>,
    /// See `Target::any_host`.
    pub latch_any_host: bool,
}

impl Stream {
    /// Starts relaying between two ends until `cancel`.
    pub fn start(
        a: EndSockets,
        b: EndSockets,
        totals: Arc<Totals>,
        epoch: tokio::time::Instant,
        cancel: CancellationToken,
    ) -> std::io::Result<Arc<Stream>> {
        Stream::start_as(a, b, totals, epoch, cancel, false)
    }

    /// As [`Stream::start`]; with `bfcp`, a BFCP stream (RFC 8855).
    pub fn start_as(
        a: EndSockets,
        b: EndSockets,
        totals: Arc<Totals>,
        epoch: tokio::time::Instant,
        cancel: CancellationToken,
        bfcp: bool,
    ) -> std::io::Result<Arc<Stream>> {
        let mut listeners = Vec::new();
        let mut end = |s: EndSockets| -> std::io::Result<End> {
            listeners.push(s.tcp);
            Ok(End {
                rtp_port: s.lease.rtp_port(),
                rtcp_port: s.lease.rtcp_port(),
                tcp: listeners.last().is_some_and(Option::is_some),
                rtp: nonblocking(s.rtp)?,
                rtcp: nonblocking(s.rtcp)?,
                target: Mutex::new(Target {
                    any_host: s.latch_any_host,
                    ..Target::default()
                }),
                ice: s.ice,
                networks: s.networks,
                counters: Counters::default(),
                lease: Mutex::new(Some(s.lease)),
            })
        };
        let ends = [end(a)?, end(b)?];
        let stream = Arc::new(Stream {
            ends,
            totals,
            epoch,
            closed: AtomicBool::new(false),
            registration: Mutex::new(None),
            bfcp,
            cancel: cancel.clone(),
        });
        let reg = engine().add(stream.clone())?;
        *stream
            .registration
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reg);
        // The media thread lets go of the stream when the session ends, or
        // when the runtime that started it does (the task is dropped).
        let gone = Unregister(stream.clone());
        let token = cancel.clone();
        tokio::spawn(async move {
            let _gone = gone;
            token.cancelled().await;
        });
        for (i, l) in listeners.into_iter().enumerate() {
            if let Some(l) = l {
                let side = if i == 0 { Side::A } else { Side::B };
                let l = TcpListener::from_std(l)?;
                if bfcp {
                    tokio::spawn(crate::bfcp::accept(stream.clone(), side, l));
                } else {
                    tokio::spawn(accept_tcp(stream.clone(), side, l, cancel.clone()));
                }
            }
        }
        Ok(stream)
    }

    pub fn end(&self, side: Side) -> &End {
        &self.ends[side.index()]
    }

    fn now_ms(&self) -> u64 {
        self.ms_at(tokio::time::Instant::now())
    }

    /// `now` in this stream's milliseconds; never 0, which means "no
    /// packet yet".
    fn ms_at(&self, now: tokio::time::Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    /// A side's SDP said this about the stream. A new address lets the side
    /// be re-learned at once; the same address keeps what was learned, so a
    /// re-INVITE that changes nothing causes no gap.
    pub fn announce(&self, side: Side, a: Announce) {
        let mut t = lock(&self.end(side).target);
        // Before its first SDP, only a verified ICE check can have latched
        // the side (an answerer's checks may overtake its answer): keep it.
        if t.announced && (t.sdp_rtp != a.rtp || t.sdp_rtcp != a.rtcp) {
            t.learned = [None, None];
            t.learned_ms = [0, 0];
            t.tcp = None;
        }
        t.announced = true;
        t.sdp_rtp = a.rtp;
        t.sdp_rtcp = a.rtcp;
        t.mux = a.mux;
        t.silent = a.silent;
        t.passive = a.passive;
    }

    /// What `side` last announced, if it has.
    pub fn announced(&self, side: Side) -> Option<Announce> {
        let t = lock(&self.end(side).target);
        t.announced.then_some(Announce {
            rtp: t.sdp_rtp,
            rtcp: t.sdp_rtcp,
            mux: t.mux,
            silent: t.silent,
            passive: t.passive,
        })
    }

    /// The host `side`'s signalling comes from: its media may come from
    /// there too (behind a NAT).
    pub fn set_peer(&self, side: Side, peer: Option<IpAddr>) {
        if peer.is_some() {
            lock(&self.end(side).target).peer = peer;
        }
    }

    /// Whether this is a BFCP stream.
    pub fn is_bfcp(&self) -> bool {
        self.bfcp
    }

    /// The session's token.
    pub(crate) fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// A BFCP connection with `side` is up: messages for that side go on
    /// it, and `close` ends it when the other side's connection ends.
    pub(crate) fn attach_tcp(&self, side: Side, tx: mpsc::Sender<Bytes>, close: CancellationToken) {
        let mut t = lock(&self.end(side).target);
        t.tcp = Some(tx);
        if let Some(old) = t.tcp_close.replace(close) {
            old.cancel();
        }
    }

    /// `side`'s BFCP connection (`close` its token) ended: the other
    /// side's connection ends too.
    pub(crate) fn detach_tcp(&self, side: Side, close: &CancellationToken) {
        {
            let mut t = lock(&self.end(side).target);
            if t.tcp_close.as_ref().is_some_and(|c| c == close) {
                t.tcp = None;
                t.tcp_close = None;
            } else {
                return;
            }
        }
        let mut o = lock(&self.end(side.other()).target);
        o.tcp = None;
        if let Some(c) = o.tcp_close.take() {
            c.cancel();
        }
    }

    /// Whether `side` said `a=setup:passive` (the relay connects to it).
    pub(crate) fn passive(&self, side: Side) -> bool {
        let t = lock(&self.end(side).target);
        t.passive && !t.silent
    }

    /// Where the relay connects to reach a passive `side`, unless it has a
    /// connection or is making one; the caller then makes it and says
    /// when it is over ([`Stream::connect_over`]).
    pub(crate) fn to_connect(&self, side: Side) -> Option<SocketAddr> {
        let mut t = lock(&self.end(side).target);
        if !t.passive || t.silent || t.tcp_close.is_some() || t.connecting {
            return None;
        }
        let to = t.sdp_rtp?;
        t.connecting = true;
        Some(to)
    }

    /// The relay's connection to a passive `side` ended (or never was).
    pub(crate) fn connect_over(&self, side: Side) {
        lock(&self.end(side).target).connecting = false;
    }

    /// Whether a new RFC 4571 connection from `from` may be `side`'s.
    pub(crate) fn tcp_welcome(&self, side: Side, from: SocketAddr) -> bool {
        let end = self.end(side);
        let t = lock(&end.target);
        t.announced && end.networks.allows(from.ip()) && (t.any_host || t.expected_host(from.ip()))
    }

    /// Whether RTCP shares the RTP port towards `side`.
    pub fn set_mux(&self, side: Side, mux: bool) {
        lock(&self.end(side).target).mux = mux;
    }

    /// Marks the stream closed (its tasks stop through the session's token).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        for e in &self.ends {
            e.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Closes the stream now, within a session that goes on: off its
    /// media thread, its ports back to the range.
    pub fn stop(&self) {
        self.close();
        self.registration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        for side in [Side::A, Side::B] {
            let mut t = lock(&self.end(side).target);
            t.tcp = None;
            if let Some(c) = t.tcp_close.take() {
                c.cancel();
            }
        }
    }

    /// The latest packet from either side (ms since the relay started).
    pub fn last_ms(&self) -> u64 {
        self.ends
            .iter()
            .map(|e| e.counters.last_ms.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// A UDP packet a media thread read from `x`'s socket `c` at `now`
    /// (read once per batch of packets, not per packet); a packet relayed
    /// over UDP goes out through `out`.
    pub(crate) fn on_udp(
        &self,
        x: Side,
        c: Component,
        pkt: &[u8],
        from: SocketAddr,
        now: tokio::time::Instant,
        out: &mut dyn UdpOut,
    ) {
        self.on_packet_via(x, c, pkt, from, Via::Udp, self.ms_at(now), out);
    }

    /// A relayed packet from side `x` that `out` took but could not send
    /// after all (an io_uring send that failed): counted as dropped.
    pub(crate) fn send_failed(&self, x: Side, len: usize) {
        self.end(x).counters.drops.fetch_add(1, Ordering::Relaxed);
        self.totals.drops.fetch_add(1, Ordering::Relaxed);
        self.totals.packets.fetch_sub(1, Ordering::Relaxed);
        self.totals.bytes.fetch_sub(len as u64, Ordering::Relaxed);
    }

    /// Relays one packet from side `x`; true when it was that side's (a
    /// verified ICE check counts).
    pub(crate) fn on_packet(
        &self,
        x: Side,
        c: Component,
        pkt: &[u8],
        from: SocketAddr,
        via: Via<'_>,
    ) -> bool {
        self.on_packet_via(x, c, pkt, from, via, self.now_ms(), &mut Direct)
    }

    #[allow(clippy::too_many_arguments)]
    fn on_packet_via(
        &self,
        x: Side,
        c: Component,
        pkt: &[u8],
        from: SocketAddr,
        via: Via<'_>,
        now: u64,
        out: &mut dyn UdpOut,
    ) -> bool {
        let end = self.end(x);
        if !self.bfcp && stun::is_stun(pkt) {
            return self.on_stun(x, c, pkt, from, via, now);
        }
        let accepted = {
            let mut t = lock(&end.target);
            let ok = t.accept(c as usize, from, now, false, &end.networks);
            if ok {
                match via {
                    Via::Tcp(tx) => t.tcp = Some(tx.clone()),
                    // The side sends over UDP now: answer it there too.
                    Via::Udp => t.tcp = None,
                }
            }
            ok
        };
        if !accepted {
            end.counters.drops.fetch_add(1, Ordering::Relaxed);
            self.totals.drops.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        end.counters.packets.fetch_add(1, Ordering::Relaxed);
        end.counters
            .bytes
            .fetch_add(pkt.len() as u64, Ordering::Relaxed);
        end.counters.last_ms.store(now, Ordering::Relaxed);
        let rtcp = !self.bfcp && (c == Component::Rtcp || is_rtcp(pkt));
        let other = self.end(x.other());
        let sent = match other.out(rtcp) {
            Some(Out::Udp(comp, to)) => out.send(x.other(), comp, other.socket(comp), pkt, to),
            // BFCP messages carry their own length (RFC 8855 §5.1).
            Some(Out::Tcp(tx)) if self.bfcp => tx.try_send(Bytes::copy_from_slice(pkt)).is_ok(),
            Some(Out::Tcp(tx)) => tx.try_send(frame(pkt)).is_ok(),
            None => false,
        };
        if sent {
            self.totals.packets.fetch_add(1, Ordering::Relaxed);
            self.totals
                .bytes
                .fetch_add(pkt.len() as u64, Ordering::Relaxed);
        } else {
            end.counters.drops.fetch_add(1, Ordering::Relaxed);
            self.totals.drops.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// ICE-lite: answer a Binding request with our credentials for that
    /// side; a nominating one (USE-CANDIDATE) latches the side there.
    fn on_stun(
        &self,
        x: Side,
        c: Component,
        pkt: &[u8],
        from: SocketAddr,
        via: Via<'_>,
        now: u64,
    ) -> bool {
        let end = self.end(x);
        let Some(req) = stun::parse_binding_request(pkt) else {
            return false; // responses, indications, legacy STUN: not ours to answer
        };
        // Only checks naming our username fragment get any answer, so the
        // relay is no reflector for strangers' spoofed requests; nor does
        // a source the operator's networks refuse.
        if req.ufrags().map(|(o, _)| o) != Some(end.ice.ufrag.as_bytes())
            || !end.networks.allows(from.ip())
        {
            end.counters.drops.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let verified = req.verify(pkt, end.ice.pwd.as_bytes());
        let reply = if verified {
            end.counters.stun.fetch_add(1, Ordering::Relaxed);
            self.totals.stun.fetch_add(1, Ordering::Relaxed);
            if req.use_candidate {
                let mut t = lock(&end.target);
                t.accept(c as usize, from, now, true, &end.networks);
                if let Via::Tcp(tx) = via {
                    t.tcp = Some(tx.clone());
                }
            }
            stun::binding_success(&req.transaction, from, end.ice.pwd.as_bytes())
        } else {
            debug!(%from, "STUN check with wrong credentials");
            stun::binding_error(&req.transaction, 401, "Unauthorized")
        };
        match via {
            Via::Udp => {
                let _ = end.socket(c).send_to(&reply, from);
            }
            Via::Tcp(tx) => {
                let _ = tx.try_send(frame(&reply));
            }
        }
        verified
    }
}

/// RFC 4571 framing: a 16-bit length, then the packet.
fn frame(pkt: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(pkt.len() + 2);
    b.extend_from_slice(&(pkt.len().min(u16::MAX as usize) as u16).to_be_bytes());
    b.extend_from_slice(&pkt[..pkt.len().min(u16::MAX as usize)]);
    b.freeze()
}

/// Takes a stream off its media thread when dropped.
struct Unregister(Arc<Stream>);

impl Drop for Unregister {
    fn drop(&mut self) {
        self.0
            .registration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

fn nonblocking(s: std::net::UdpSocket) -> std::io::Result<std::net::UdpSocket> {
    s.set_nonblocking(true)?;
    Ok(s)
}

async fn accept_tcp(stream: Arc<Stream>, side: Side, l: TcpListener, cancel: CancellationToken) {
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = l.accept() => match r {
                Ok((s, from)) => {
                    // Only the hosts the side signalled may connect.
                    if !stream.tcp_welcome(side, from) {
                        debug!(%from, "media TCP connection refused: not a host this side signalled");
                        stream.end(side).counters.drops.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    // A side needs one connection (two with RTCP apart): a
                    // few more allow for retries, not a pile of idle ones.
                    if live.load(Ordering::Relaxed) >= TCP_CONNECTIONS {
                        debug!(%from, "media TCP connection refused: too many on this port");
                        continue;
                    }
                    live.fetch_add(1, Ordering::Relaxed);
                    let (stream, cancel, live) = (stream.clone(), cancel.clone(), live.clone());
                    tokio::spawn(async move {
                        tcp_conn(stream, side, s, from, cancel).await;
                        live.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                // Out of descriptors and the like: try again shortly.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            },
        }
    }
}

async fn tcp_conn(
    stream: Arc<Stream>,
    side: Side,
    s: TcpStream,
    from: SocketAddr,
    cancel: CancellationToken,
) {
    let _ = s.set_nodelay(true);
    let (mut rd, mut wr) = s.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(TCP_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    let mut buf = BytesMut::with_capacity(BUF);
    // A connection must carry a packet the side is accepted for within its
    // first seconds, and keep doing so: bytes alone (a length, a frame of
    // garbage, a stranger's packets) do not hold a slot.
    let deadline = tokio::time::sleep(TCP_FIRST_FRAME);
    tokio::pin!(deadline);
    'conn: loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = &mut deadline => {
                debug!(%from, "media TCP connection closed: nothing accepted in time");
                break;
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
        loop {
            if buf.len() < 2 {
                break;
            }
            let n = u16::from_be_bytes([buf[0], buf[1]]) as usize;
            if n == 0 {
                break 'conn; // framing lost: this connection alone ends
            }
            if buf.len() < 2 + n {
                break;
            }
            let pkt = buf.split_to(2 + n);
            if stream.on_packet(side, Component::Rtp, &pkt[2..], from, Via::Tcp(&tx)) {
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + TCP_IDLE);
            }
        }
    }
    drop(tx);
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_is_told_from_rtp() {
        assert!(is_rtcp(&[0x80, 200, 0, 6])); // SR
        assert!(is_rtcp(&[0x81, 206, 0, 2])); // PSFB (PLI/FIR)
        assert!(is_rtcp(&[0x81, 205, 0, 3])); // RTPFB (NACK, TMMBR)
        assert!(!is_rtcp(&[0x80, 0, 0, 1])); // PCMU
        assert!(!is_rtcp(&[0x80, 0xe0, 0, 1])); // PT 96 with marker bit
    }

    #[test]
    fn latching_follows_the_sdp_nat_and_ice_but_not_strangers() {
        let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let (sdp, sdp_rtcp) = (addr("192.0.2.1:4000"), addr("192.0.2.1:4001"));
        let (nat, nat2) = (addr("198.51.100.7:31000"), addr("198.51.100.7:31002"));
        let stranger = addr("203.0.113.9:4000");
        let any = Networks::any();
        let mut t = Target::default();
        assert!(
            !t.accept(0, nat, 10, false, &any),
            "nothing before the side's SDP"
        );
        t.announced = true;
        t.sdp_rtp = Some(sdp);
        t.sdp_rtcp = Some(sdp_rtcp);
        assert!(
            !t.accept(0, nat, 12, false, &any),
            "not a host the side signalled"
        );
        // The operator's opt-out lets any allowed host be latched first.
        let mut loose = Target {
            announced: true,
            sdp_rtp: Some(sdp),
            any_host: true,
            ..Target::default()
        };
        assert!(loose.accept(0, stranger, 12, false, &any));
        t.peer = Some(nat.ip());
        assert!(
            !t.accept(0, addr("198.51.100.7:0"), 15, false, &any) && t.learned[0].is_none(),
            "source port 0 is never latched"
        );
        let no_nat = Networks::new(&["0.0.0.0/0"], &["198.51.100.0/24"]).unwrap();
        assert!(
            !t.accept(0, nat, 18, false, &no_nat) && t.learned[0].is_none(),
            "a refused network is never latched"
        );
        assert!(
            t.accept(0, nat, 20, false, &any),
            "the first source from the signalling host (behind a NAT)"
        );
        assert!(t.accept(0, nat, 30, false, &any));
        assert!(
            !t.accept(0, stranger, 40, false, &any),
            "another host while the first is live"
        );
        assert!(
            !t.accept(0, stranger, 40 + RELATCH_AFTER_MS + 1, false, &any),
            "nor after silence"
        );
        assert!(
            t.accept(0, nat2, 40 + RELATCH_AFTER_MS + 1, false, &any),
            "a NAT rebinding after silence"
        );
        assert_eq!(t.learned[0], Some(nat2));
        assert!(
            t.accept(0, sdp, 50 + RELATCH_AFTER_MS, false, &any),
            "the announced address always"
        );
        assert_eq!(t.learned[0], Some(sdp));
        // RTCP comes from a host the side signalled or sent RTP from.
        assert!(!t.accept(
            1,
            addr("203.0.113.9:4001"),
            60 + RELATCH_AFTER_MS,
            false,
            &any
        ));
        assert!(t.accept(
            1,
            addr("192.0.2.1:4101"),
            60 + RELATCH_AFTER_MS,
            false,
            &any
        ));
        // A pair an ICE check nominated wins.
        assert!(t.accept(0, stranger, 70 + RELATCH_AFTER_MS, true, &any));
        assert_eq!(t.learned[0], Some(stranger));
    }

    #[test]
    fn frames_carry_their_length() {
        assert_eq!(&frame(b"abc")[..], b"\x00\x03abc");
    }
}
