//! The media relay core, shared by federation A/V and (later) the CVI
//! gateway: sessions of relayed streams between two sides, ports from a
//! range, SDP rewritten so that both sides send to the relay.
//!
//! Knows SDP; knows no SIP and no policy. The caller names a session (a
//! call), says which side an SDP came from, and gets the SDP to pass to the
//! other side; it closes the session when the call ends. Whether an SDP is
//! an offer or an answer does not change what the relay does with it: the
//! side's addresses are learned and the relay's are written in. Sessions
//! also end after `timeout` without a packet. `sdp` reads and writes SDP,
//! `stun` answers ICE checks, `ports` hands out port pairs, `stream` moves
//! packets, `networks` says where media may go, `exchanges` ties a
//! caller's offer/answer exchanges to their sessions.
//!
//! A session may belong to an owner (for federation, the partner): each
//! owner holds at most `max_sessions_per_owner` sessions and
//! `max_pairs_per_owner` port pairs, so that no one owner takes the relay.
//! Media never goes to an address the side's `networks` refuse.

pub mod bfcp;
pub mod engine;
pub mod exchanges;
pub mod networks;
pub mod ports;
pub mod sdp;
pub mod stream;
pub mod stun;
mod uring;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use networks::Networks;
use ports::{PortError, PortRange};
use sdp::{Description, IceCredentials, Rewrite, SdpError, StreamPorts};
use stream::{Announce, EndSockets, Stream};

/// One of the two sides of a relayed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// Why the relay cannot carry a call (or an SDP of it).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{0}")]
    Ports(#[from] PortError),
    #[error("the media relay carries its maximum of {0} sessions")]
    Full(usize),
    #[error("the media relay is draining: it takes no new calls")]
    Draining,
    #[error("{0}")]
    Sdp(#[from] SdpError),
    #[error("media socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the SDP has {0} media streams; the relay carries at most {MAX_STREAMS} per call")]
    TooManyStreams(usize),
    #[error("no media session for this call")]
    NoSession,
    #[error("this partner already holds its maximum of {max} media sessions on the relay")]
    OwnerSessions { owner: String, max: usize },
    #[error("this partner already holds its maximum of {max} media port pairs on the relay")]
    OwnerPorts { owner: String, max: usize },
}

/// Who a session is for, as its caller knows: the owner it counts against
/// and the host the side's signalling came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Who<'a> {
    /// Per-owner caps apply to a session with an owner.
    pub owner: Option<&'a str>,
    /// The side's media may come from this host (its NAT's address).
    pub peer: Option<IpAddr>,
}

/// Streams (m= lines) one call may have relayed.
pub const MAX_STREAMS: usize = 16;

/// The relay's address on one side: where it binds, and what it writes
/// into SDP (different behind a 1:1 NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideAddress {
    pub bind: IpAddr,
    pub advertise: IpAddr,
}

/// Static relay settings.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Indexed by `Side::index`.
    pub addresses: [SideAddress; 2],
    pub port_min: u16,
    pub port_max: u16,
    pub max_sessions: usize,
    /// A session with no packet for this long is closed.
    pub timeout: Duration,
    /// How long a call not yet answered may go without a packet (it may
    /// ring for minutes without early media); at least `timeout`.
    pub ring_timeout: Duration,
    /// Where media may go, per side (indexed by `Side::index`).
    pub networks: [Arc<Networks>; 2],
    /// Sessions one owner may hold at once.
    pub max_sessions_per_owner: usize,
    /// Port pairs one owner's sessions may hold at once (each stream takes
    /// one pair per side).
    pub max_pairs_per_owner: usize,
    /// Latch a side's first packet from any allowed host, not only from
    /// the hosts it signalled (an operator's opt-out; hijackable).
    pub latch_any_host: bool,
}

/// Counters over all sessions since start.
#[derive(Debug, Default)]
pub struct Totals {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub drops: AtomicU64,
    pub stun: AtomicU64,
    pub sessions: AtomicU64,
    pub refused: AtomicU64,
    /// SDP addresses not used because the side's networks refuse them.
    pub refused_addresses: AtomicU64,
}

/// A side, what it had announced per stream before its latest offer, and
/// the streams that offer added.
type Undo = (Side, Vec<(usize, stream::Announce)>, Vec<usize>);

#[derive(Debug)]
struct Session {
    id: String,
    started: SystemTime,
    started_ms: u64,
    streams: Mutex<Vec<Option<Arc<Stream>>>>,
    seen: [AtomicBool; 2],
    /// The call was answered (so a failed re-offer does not end it).
    answered: AtomicBool,
    /// What the latest SDP replaced on its side, to put back if the
    /// offer it made is refused.
    undo: Mutex<Option<Undo>>,
    mux: Mutex<HashMap<(usize, usize), bool>>,
    ice: [Arc<IceCredentials>; 2],
    cancel: CancellationToken,
    owner: Option<String>,
    /// Per side: the host its signalling came from.
    peers: Mutex<[Option<IpAddr>; 2]>,
    /// Per side: a refused SDP address was logged.
    refused_logged: [AtomicBool; 2],
}

/// What one owner holds.
#[derive(Debug, Default, Clone, Copy)]
struct OwnerUse {
    sessions: usize,
    pairs: usize,
}

/// What one side sent in one stream, for reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EndReport {
    /// The relay's port facing that side.
    pub port: u16,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub stun: u64,
    /// Seconds since that side's last packet, if it sent any.
    pub idle_secs: Option<u64>,
}

/// A session as reported by `list` and `close`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionReport {
    pub id: String,
    pub started: String,
    pub confirmed: bool,
    /// Per stream: side A's and side B's counters.
    pub streams: Vec<[EndReport; 2]>,
}

impl SessionReport {
    pub fn packets(&self) -> (u64, u64) {
        self.streams
            .iter()
            .fold((0, 0), |(a, b), s| (a + s[0].packets, b + s[1].packets))
    }
}

/// The relay.
#[derive(Debug)]
pub struct Relay {
    cfg: MediaConfig,
    ports: Arc<PortRange>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    draining: AtomicBool,
    pub totals: Arc<Totals>,
    epoch: tokio::time::Instant,
    owners: Mutex<HashMap<String, OwnerUse>>,
    /// Offer/answer exchanges in flight, for callers that track them.
    pub exchanges: exchanges::Exchanges,
}

fn token(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Relay {
    pub fn new(cfg: MediaConfig) -> Arc<Relay> {
        Arc::new(Relay {
            ports: PortRange::new(cfg.port_min, cfg.port_max),
            cfg,
            sessions: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            totals: Arc::new(Totals::default()),
            epoch: tokio::time::Instant::now(),
            owners: Mutex::new(HashMap::new()),
            exchanges: exchanges::Exchanges::default(),
        })
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, OwnerUse>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every owner's sessions and port pairs now, by owner.
    pub fn owners_use(&self) -> Vec<(String, usize, usize)> {
        let mut v: Vec<_> = self
            .owners()
            .iter()
            .map(|(o, u)| (o.clone(), u.sessions, u.pairs))
            .collect();
        v.sort();
        v
    }

    /// Sessions and port pairs `owner` holds now.
    pub fn owner_use(&self, owner: &str) -> (usize, usize) {
        self.owners()
            .get(owner)
            .map_or((0, 0), |u| (u.sessions, u.pairs))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn has(&self, id: &str) -> bool {
        self.table().contains_key(id)
    }

    /// The call was answered: from now on only `close` or the timeout end it.
    pub fn mark_answered(&self, id: &str) {
        if let Some(s) = self.table().get(id) {
            s.answered.store(true, Ordering::Relaxed);
        }
    }

    pub fn answered(&self, id: &str) -> bool {
        self.table()
            .get(id)
            .is_some_and(|s| s.answered.load(Ordering::Relaxed))
    }

    /// Port pairs in use.
    pub fn ports_in_use(&self) -> usize {
        self.ports.in_use()
    }

    /// No new sessions while on; the existing ones finish.
    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Relaxed);
        info!(
            draining = on,
            sessions = self.len(),
            "media relay drain mode"
        );
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// True when SDP describes a stream the relay would carry.
    pub fn wants(sdps: &[&[u8]]) -> bool {
        sdps.iter()
            .filter_map(|s| sdp::describe(s).ok())
            .any(|d| d.streams.iter().any(|s| s.relayed && s.port != 0))
    }

    /// An SDP (or the alternatives of one, e.g. Lync's two-SDP
    /// multipart/alternative) from side `from` of call `id`: learns where
    /// that side receives and returns the same SDPs pointing at the relay,
    /// for the other side. With `open`, a call without a session gets one
    /// (an offer in a request); otherwise that is `NoSession`. Must run on
    /// a tokio runtime (it starts the stream's tasks).
    pub fn update(
        &self,
        id: &str,
        from: Side,
        sdps: &[&[u8]],
        open: bool,
    ) -> Result<Vec<Vec<u8>>, MediaError> {
        self.update_as(id, from, sdps, open, Who::default())
    }

    /// As [`Relay::update`], for a session of `who.owner` (per-owner caps)
    /// whose side `from` signals from `who.peer`.
    pub fn update_as(
        &self,
        id: &str,
        from: Side,
        sdps: &[&[u8]],
        open: bool,
        who: Who<'_>,
    ) -> Result<Vec<Vec<u8>>, MediaError> {
        let descs: Vec<Description> = sdps
            .iter()
            .map(|s| sdp::describe(s))
            .collect::<Result<_, _>>()?;
        if !descs
            .iter()
            .any(|d| d.streams.iter().any(|s| s.relayed && s.port != 0))
            && !self.has(id)
        {
            return Ok(sdps.iter().map(|s| s.to_vec()).collect());
        }
        if let Some(n) = descs.iter().map(|d| d.streams.len()).max()
            && n > MAX_STREAMS
        {
            return Err(MediaError::TooManyStreams(n));
        }
        if !open && !self.has(id) {
            return Err(MediaError::NoSession);
        }
        let (session, created) = self.session(id, who.owner)?;
        if let Some(p) = who.peer {
            lock(&session.peers)[from.index()] = Some(p);
        }
        let result = self.apply(&session, from, sdps, &descs, open);
        if result.is_err() && created {
            self.close(id, "media could not be set up");
        }
        result
    }

    /// Holds a session (and a place under `max_sessions`) for a call whose
    /// offer will come in its answer (an INVITE without SDP).
    pub fn reserve(&self, id: &str) -> Result<(), MediaError> {
        self.session(id, None).map(|_| ())
    }

    /// As [`Relay::reserve`], for a session of `owner`.
    pub fn reserve_as(&self, id: &str, owner: Option<&str>) -> Result<(), MediaError> {
        self.session(id, owner).map(|_| ())
    }

    /// The offer/answer exchange of `id` completed (a 2xx): nothing to undo.
    pub fn commit(&self, id: &str) {
        if let Some(s) = self.table().get(id) {
            s.undo.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Puts back what the latest SDP of `id` changed on its side: the offer
    /// it carried was refused (a re-INVITE or UPDATE failed).
    pub fn rollback(&self, id: &str) {
        let Some(s) = self.table().get(id).cloned() else {
            return;
        };
        let Some((side, prev, added)) = s.undo.lock().unwrap_or_else(|p| p.into_inner()).take()
        else {
            return;
        };
        let mut streams = s.streams.lock().unwrap_or_else(|p| p.into_inner());
        for (i, a) in prev {
            if let Some(Some(st)) = streams.get(i) {
                st.announce(side, a);
            }
        }
        // Streams the refused offer added go again (their ports too).
        let mut gone = 0;
        for i in added {
            if let Some(st) = streams.get_mut(i).and_then(Option::take) {
                st.stop();
                gone += 1;
            }
        }
        drop(streams);
        self.give_pairs(&s, gone);
        info!(session = id, "refused offer undone");
    }

    fn session(&self, id: &str, owner: Option<&str>) -> Result<(Arc<Session>, bool), MediaError> {
        let mut t = self.table();
        if let Some(s) = t.get(id) {
            return Ok((s.clone(), false));
        }
        if let Some(o) = owner
            && self.owner_use(o).0 >= self.cfg.max_sessions_per_owner
        {
            self.totals.refused.fetch_add(1, Ordering::Relaxed);
            warn!(
                session = id,
                owner = o,
                max = self.cfg.max_sessions_per_owner,
                "media session refused: the owner holds its maximum of sessions"
            );
            return Err(MediaError::OwnerSessions {
                owner: o.to_string(),
                max: self.cfg.max_sessions_per_owner,
            });
        }
        if self.draining() {
            self.totals.refused.fetch_add(1, Ordering::Relaxed);
            return Err(MediaError::Draining);
        }
        if t.len() >= self.cfg.max_sessions {
            self.totals.refused.fetch_add(1, Ordering::Relaxed);
            return Err(MediaError::Full(self.cfg.max_sessions));
        }
        let ice = || {
            Arc::new(IceCredentials {
                ufrag: token(8),
                pwd: token(24),
            })
        };
        let s = Arc::new(Session {
            id: id.to_string(),
            started: SystemTime::now(),
            started_ms: self.now_ms(),
            streams: Mutex::new(Vec::new()),
            seen: [AtomicBool::new(false), AtomicBool::new(false)],
            answered: AtomicBool::new(false),
            undo: Mutex::new(None),
            mux: Mutex::new(HashMap::new()),
            ice: [ice(), ice()],
            cancel: CancellationToken::new(),
            owner: owner.map(str::to_string),
            peers: Mutex::new([None, None]),
            refused_logged: [AtomicBool::new(false), AtomicBool::new(false)],
        });
        t.insert(id.to_string(), s.clone());
        if let Some(o) = owner {
            self.owners().entry(o.to_string()).or_default().sessions += 1;
        }
        self.totals.sessions.fetch_add(1, Ordering::Relaxed);
        info!(session = id, "media session opened");
        Ok((s, true))
    }

    fn apply(
        &self,
        session: &Session,
        from: Side,
        sdps: &[&[u8]],
        descs: &[Description],
        offer: bool,
    ) -> Result<Vec<Vec<u8>>, MediaError> {
        let count = descs.iter().map(|d| d.streams.len()).max().unwrap_or(0);
        let mut undo = Vec::new();
        let mut added = Vec::new();
        let mut streams = session.streams.lock().unwrap_or_else(|p| p.into_inner());
        if streams.len() < count {
            streams.resize(count, None);
        }
        for i in 0..count {
            let of_i: Vec<&sdp::Stream> = descs.iter().filter_map(|d| d.streams.get(i)).collect();
            let relayed = of_i.iter().any(|s| s.relayed && s.port != 0);
            if relayed && streams[i].is_none() {
                self.take_pairs(session)?;
                let tcp = of_i.iter().any(|s| s.tcp_proto || s.tcp_candidates);
                let bfcp = of_i.iter().any(|s| s.bfcp);
                let end = |side: Side| -> Result<EndSockets, MediaError> {
                    let p = self
                        .ports
                        .allocate(self.cfg.addresses[side.index()].bind, tcp)?;
                    Ok(EndSockets {
                        rtp: p.rtp,
                        rtcp: p.rtcp,
                        tcp: p.tcp,
                        lease: p.lease,
                        ice: session.ice[side.index()].clone(),
                        networks: self.cfg.networks[side.index()].clone(),
                        latch_any_host: self.cfg.latch_any_host,
                    })
                };
                let started = end(Side::A).and_then(|a| {
                    let b = end(Side::B)?;
                    Ok(Stream::start_as(
                        a,
                        b,
                        self.totals.clone(),
                        self.epoch,
                        session.cancel.clone(),
                        bfcp,
                    )?)
                });
                match started {
                    Ok(st) => {
                        let peers = *lock(&session.peers);
                        st.set_peer(Side::A, peers[0]);
                        st.set_peer(Side::B, peers[1]);
                        streams[i] = Some(st);
                        added.push(i);
                    }
                    Err(e) => {
                        self.give_pairs(session, 1);
                        return Err(e);
                    }
                }
            }
            let Some(st) = &streams[i] else { continue };
            st.set_peer(from, lock(&session.peers)[from.index()]);
            // Where this side receives: the first alternative that says.
            let primary = of_i.iter().find(|s| s.address.is_some()).or(of_i.first());
            if let Some(s) = primary {
                let mut mux = session.mux.lock().unwrap_or_else(|p| p.into_inner());
                mux.insert((i, from.index()), s.rtcp_mux);
                let other = mux.get(&(i, from.other().index())).copied();
                // rtcp-mux holds only when both sides asked for it.
                let both = s.rtcp_mux && other.unwrap_or(true);
                // An address the side's networks refuse is never sent to:
                // the side is reached once it sends from a host it
                // signalled, or passes an ICE check.
                let nets = &self.cfg.networks[from.index()];
                let to_sock = |addr: Option<IpAddr>, port: u16| match addr {
                    Some(a) if !a.is_unspecified() && !nets.allows(a) => {
                        self.totals
                            .refused_addresses
                            .fetch_add(1, Ordering::Relaxed);
                        if !session.refused_logged[from.index()].swap(true, Ordering::Relaxed) {
                            warn!(session = %session.id, side = ?from, address = %a,
                                "media address refused by [media] networks: nothing is sent there");
                        }
                        None
                    }
                    a => a.map(|a| SocketAddr::new(a, port)),
                };
                if let Some(prev) = st.announced(from) {
                    undo.push((i, prev));
                }
                st.announce(
                    from,
                    Announce {
                        rtp: to_sock(s.address, s.port),
                        rtcp: to_sock(s.rtcp_address, s.rtcp_port),
                        mux: both,
                        silent: s.silent(),
                        passive: s.tcp_proto && s.setup == Some(sdp::Setup::Passive),
                    },
                );
                if let Some(o) = other {
                    // The other side learns the outcome of the negotiation too.
                    st.set_mux(from.other(), o && s.rtcp_mux);
                }
            }
        }
        // Ports the other side must send to, per stream.
        let to = from.other();
        let ports: Vec<Option<StreamPorts>> = streams
            .iter()
            .map(|s| {
                s.as_ref().map(|st| {
                    let e = st.end(to);
                    // A passive BFCP side is connected to by the relay.
                    let active = st.is_bfcp() && st.passive(to);
                    if let Some(addr) = st.to_connect(to).filter(|_| active) {
                        bfcp::connect(st.clone(), to, addr);
                    }
                    StreamPorts {
                        rtp: e.rtp_port,
                        rtcp: e.rtcp_port,
                        tcp: e.tcp,
                        active,
                    }
                })
            })
            .collect();
        drop(streams);
        // An offer may be refused and undone; an answer settles the exchange.
        *session.undo.lock().unwrap_or_else(|p| p.into_inner()) =
            offer.then_some((from, undo, added));
        let rw = Rewrite {
            address: self.cfg.addresses[to.index()].advertise,
            ports: &ports,
            ice: &session.ice[to.index()],
        };
        let out = sdps
            .iter()
            .map(|s| sdp::rewrite(s, &rw))
            .collect::<Result<Vec<_>, _>>()?;
        let first = !session.seen[from.index()].swap(true, Ordering::Relaxed);
        if first && session.seen[to.index()].load(Ordering::Relaxed) {
            info!(session = %session.id, "media session confirmed (both sides described their media)");
        }
        Ok(out)
    }

    fn report(&self, s: &Session) -> SessionReport {
        let now = self.now_ms();
        let streams = s.streams.lock().unwrap_or_else(|p| p.into_inner());
        let end = |st: &Stream, side: Side| {
            let e = st.end(side);
            let last = e.counters.last_ms.load(Ordering::Relaxed);
            EndReport {
                port: e.rtp_port,
                packets: e.counters.packets.load(Ordering::Relaxed),
                bytes: e.counters.bytes.load(Ordering::Relaxed),
                drops: e.counters.drops.load(Ordering::Relaxed),
                stun: e.counters.stun.load(Ordering::Relaxed),
                idle_secs: (last > 0).then(|| now.saturating_sub(last) / 1000),
            }
        };
        SessionReport {
            id: s.id.clone(),
            started: rfc3339(s.started),
            confirmed: s.seen.iter().all(|b| b.load(Ordering::Relaxed)),
            streams: streams
                .iter()
                .flatten()
                .map(|st| [end(st, Side::A), end(st, Side::B)])
                .collect(),
        }
    }

    /// Counts a new stream's pairs (one per side) against the session's
    /// owner, or says it holds its maximum.
    fn take_pairs(&self, s: &Session) -> Result<(), MediaError> {
        let Some(o) = &s.owner else { return Ok(()) };
        let mut owners = self.owners();
        let u = owners.entry(o.clone()).or_default();
        if u.pairs + 2 > self.cfg.max_pairs_per_owner {
            self.totals.refused.fetch_add(1, Ordering::Relaxed);
            warn!(session = %s.id, owner = %o, max = self.cfg.max_pairs_per_owner,
                "media stream refused: the owner holds its maximum of port pairs");
            return Err(MediaError::OwnerPorts {
                owner: o.clone(),
                max: self.cfg.max_pairs_per_owner,
            });
        }
        u.pairs += 2;
        Ok(())
    }

    /// Gives back `streams` streams' pairs (and, with `session`, the
    /// session itself) of `s`'s owner.
    fn give_pairs(&self, s: &Session, streams: usize) {
        self.release(s, streams, false);
    }

    fn release(&self, s: &Session, streams: usize, session: bool) {
        let Some(o) = &s.owner else { return };
        let mut owners = self.owners();
        if let Some(u) = owners.get_mut(o) {
            u.pairs = u.pairs.saturating_sub(2 * streams);
            if session {
                u.sessions = u.sessions.saturating_sub(1);
            }
            if u.sessions == 0 && u.pairs == 0 {
                owners.remove(o);
            }
        }
    }

    /// Ends a session: its tasks stop and its ports go back to the range.
    pub fn close(&self, id: &str, reason: &str) -> Option<SessionReport> {
        let s = self.table().remove(id)?;
        s.cancel.cancel();
        let n = s
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .count();
        self.release(&s, n, true);
        let report = self.report(&s);
        for st in s
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
        {
            st.close();
        }
        let (a, b) = report.packets();
        let drops: u64 = report.streams.iter().map(|x| x[0].drops + x[1].drops).sum();
        let bytes: u64 = report.streams.iter().map(|x| x[0].bytes + x[1].bytes).sum();
        info!(
            session = id,
            reason,
            packets_from_a = a,
            packets_from_b = b,
            bytes,
            drops,
            confirmed = report.confirmed,
            "media session closed"
        );
        if self.draining() && self.is_empty() {
            info!("media relay drained: no sessions left");
        }
        Some(report)
    }

    /// Every live session.
    pub fn list(&self) -> Vec<SessionReport> {
        let sessions: Vec<Arc<Session>> = self.table().values().cloned().collect();
        let mut out: Vec<SessionReport> = sessions.iter().map(|s| self.report(s)).collect();
        out.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
        out
    }

    /// Closes sessions without a packet for `timeout` (counted from their
    /// start when they never had one). Returns how many.
    pub fn sweep(&self) -> usize {
        let now = self.now_ms();
        let answered_limit = self.cfg.timeout.as_millis() as u64;
        let ringing_limit = self.cfg.ring_timeout.max(self.cfg.timeout).as_millis() as u64;
        let idle: Vec<String> = self
            .table()
            .values()
            .filter(|s| {
                let last = s
                    .streams
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .flatten()
                    .map(|st| st.last_ms())
                    .max()
                    .unwrap_or(0)
                    .max(s.started_ms);
                let limit = if s.answered.load(Ordering::Relaxed) {
                    answered_limit
                } else {
                    ringing_limit
                };
                now.saturating_sub(last) > limit
            })
            .map(|s| s.id.clone())
            .collect();
        for id in &idle {
            let why = format!(
                "no media for {}",
                humantime::format_duration(self.cfg.timeout)
            );
            warn!(session = %id, "{why}");
            self.close(id, &why);
        }
        idle.len()
    }

    /// Runs `sweep` until shutdown.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let every = (self.cfg.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        let ids: Vec<String> = me.table().keys().cloned().collect();
                        for id in ids {
                            me.close(&id, "shutdown");
                        }
                        return;
                    }
                    _ = tick.tick() => { me.sweep(); }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn relay(lo: u16, hi: u16, max: usize, timeout_ms: u64) -> Arc<Relay> {
        let side = SideAddress {
            bind: LO,
            advertise: LO,
        };
        Relay::new(MediaConfig {
            addresses: [side, side],
            port_min: lo,
            port_max: hi,
            max_sessions: max,
            timeout: Duration::from_millis(timeout_ms),
            ring_timeout: Duration::from_millis(timeout_ms),
            networks: [Arc::new(Networks::any()), Arc::new(Networks::any())],
            max_sessions_per_owner: max,
            max_pairs_per_owner: usize::MAX,
            latch_any_host: false,
        })
    }

    /// A range of `n` pairs no other test uses (see `ports::test_range`).
    fn range(n: u16) -> (u16, u16) {
        ports::test_range(n)
    }

    fn sdp(port: u16, extra: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n{extra}"
        )
    }

    fn relay_port(rewritten: &[u8]) -> (u16, u16) {
        let d = sdp::describe(rewritten).unwrap();
        (d.streams[0].port, d.streams[0].rtcp_port)
    }

    async fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut b = vec![0u8; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut b))
            .await
            .expect("a packet within 2 s")
            .unwrap();
        b.truncate(n);
        (b, from)
    }

    async fn nothing(s: &UdpSocket) {
        let mut b = vec![0u8; 2048];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), s.recv_from(&mut b))
                .await
                .is_err(),
            "no packet expected"
        );
    }

    async fn bind() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    fn rtp(seq: u8) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, seq, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        p.extend_from_slice(&[seq; 160]);
        p
    }

    #[tokio::test]
    async fn media_crosses_both_ways_with_latching_rtcp_and_feedback() {
        let (lo, hi) = range(8);
        let r = relay(lo, hi, 10, 60_000);
        let a_sock = bind().await; // A's real socket (behind a NAT: not what its SDP says)
        let a_rtcp = bind().await;
        let b_sock = bind().await;
        let b_rtcp = bind().await;
        let b_port = b_sock.local_addr().unwrap().port();
        // A's SDP names a port nobody listens on; B's names its sockets.
        let offer = sdp(9, "");
        let to_b = r
            .update("call-1", Side::A, &[offer.as_bytes()], true)
            .unwrap();
        let (relay_b, relay_b_rtcp) = relay_port(&to_b[0]);
        assert!((lo..=hi).contains(&relay_b) && relay_b % 2 == 0 && relay_b_rtcp == relay_b + 1);
        let answer = sdp(
            b_port,
            &format!("a=rtcp:{}\r\n", b_rtcp.local_addr().unwrap().port()),
        );
        let to_a = r
            .update("call-1", Side::B, &[answer.as_bytes()], true)
            .unwrap();
        let (relay_a, relay_a_rtcp) = relay_port(&to_a[0]);
        assert_ne!(relay_a, relay_b);
        let ra = SocketAddr::new(LO, relay_a);
        let rb = SocketAddr::new(LO, relay_b);

        // A -> B: B gets it from the relay's B-facing port, byte for byte.
        a_sock.send_to(&rtp(1), ra).await.unwrap();
        let (got, from) = recv(&b_sock).await;
        assert_eq!(got, rtp(1));
        assert_eq!(from, rb);
        // B -> A goes to where A really sent from (latched), not its SDP port.
        b_sock.send_to(&rtp(2), rb).await.unwrap();
        let (got, from) = recv(&a_sock).await;
        assert_eq!((got, from), (rtp(2), ra));
        // RTCP feedback (PSFB PLI) on the RTCP ports, untouched.
        let pli = [0x81u8, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        b_rtcp
            .send_to(&pli, SocketAddr::new(LO, relay_b_rtcp))
            .await
            .unwrap();
        a_rtcp
            .send_to(&pli, SocketAddr::new(LO, relay_a_rtcp))
            .await
            .unwrap();
        assert_eq!(recv(&b_rtcp).await.0, pli);
        // A's RTCP went nowhere it said (port 10): it reached no one yet...
        // ...but B's PLI reaches A's learned RTCP source once A has sent RTCP.
        b_rtcp
            .send_to(&pli, SocketAddr::new(LO, relay_b_rtcp))
            .await
            .unwrap();
        assert_eq!(recv(&a_rtcp).await.0, pli);
        // A stranger's packets to A's port are dropped while A is live.
        let stranger = bind().await;
        stranger.send_to(&rtp(9), ra).await.unwrap();
        nothing(&b_sock).await;
        let report = r.list();
        assert_eq!(report.len(), 1);
        assert!(report[0].confirmed);
        let s = &report[0].streams[0];
        assert_eq!((s[0].packets, s[1].packets), (2, 3), "{report:?}"); // A: RTP + RTCP; B: RTP + 2 RTCP
        assert_eq!(s[0].drops, 1);
        assert_eq!(r.ports_in_use(), 2);
        let closed = r.close("call-1", "BYE").unwrap();
        assert_eq!(closed.id, "call-1");
        assert!(r.close("call-1", "again").is_none());
        assert_eq!(r.ports_in_use(), 0, "ports go back at close");
        tokio::time::sleep(Duration::from_millis(50)).await;
        a_sock.send_to(&rtp(3), ra).await.unwrap();
        nothing(&b_sock).await;
    }

    /// Bursts both ways, each more datagrams than a media thread has
    /// receive buffers in these tests (8): every datagram is relayed, in
    /// order, so a receive that ran out of buffers was armed again.
    #[tokio::test]
    async fn bursts_larger_than_the_receive_buffers_are_relayed_whole() {
        let (lo, hi) = range(4);
        let r = relay(lo, hi, 10, 60_000);
        let (a, b) = (bind().await, bind().await);
        let offer = sdp(a.local_addr().unwrap().port(), "a=rtcp-mux\r\n");
        let to_b = r
            .update("burst", Side::A, &[offer.as_bytes()], true)
            .unwrap();
        let answer = sdp(b.local_addr().unwrap().port(), "a=rtcp-mux\r\n");
        let to_a = r
            .update("burst", Side::B, &[answer.as_bytes()], true)
            .unwrap();
        let ra = SocketAddr::new(LO, relay_port(&to_a[0]).0);
        let rb = SocketAddr::new(LO, relay_port(&to_b[0]).0);
        for round in 0..4u8 {
            for seq in 0..64u8 {
                a.send_to(&rtp(seq), ra).await.unwrap();
                b.send_to(&rtp(seq), rb).await.unwrap();
            }
            for (to, from) in [(&b, rb), (&a, ra)] {
                let mut got = Vec::new();
                for _ in 0..64u8 {
                    let (p, src) = recv(to).await;
                    assert_eq!(src, from);
                    got.push(p[3]);
                }
                if round == 0 {
                    // The io_uring loop connects a sibling socket to each
                    // side during this round (`uring::connect`): datagrams
                    // still queued on the relay socket then may come after
                    // the sibling's first ones. Each arrives once.
                    got.sort_unstable();
                }
                assert_eq!(got, (0..64u8).collect::<Vec<_>>(), "round {round}");
            }
        }
        let s = &r.list()[0].streams[0];
        assert_eq!(
            (s[0].packets, s[1].packets, s[0].drops, s[1].drops),
            (256, 256, 0, 0)
        );
    }

    /// The local ports of this network namespace's connected UDP sockets
    /// on `port` and the remote ports they are connected to
    /// (`/proc/net/udp`, state 01).
    fn connected_to(port: u16) -> Vec<u16> {
        let table = std::fs::read_to_string("/proc/self/net/udp").unwrap();
        table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let local = u16::from_str_radix(f.get(1)?.split(':').nth(1)?, 16).ok()?;
                let remote = u16::from_str_radix(f.get(2)?.split(':').nth(1)?, 16).ok()?;
                (local == port && *f.get(3)? == "01").then_some(remote)
            })
            .collect()
    }

    /// `n` packets A to B and B to A through the relay, each checked.
    async fn both_ways(a: &UdpSocket, b: &UdpSocket, ra: SocketAddr, rb: SocketAddr, n: u8) {
        for seq in 0..n {
            a.send_to(&rtp(seq), ra).await.unwrap();
            assert_eq!(recv(b).await, (rtp(seq), rb));
            b.send_to(&rtp(seq), rb).await.unwrap();
            assert_eq!(recv(a).await, (rtp(seq), ra));
        }
    }

    /// On the io_uring loop (the default), a latched side gets a socket
    /// connected to it on the relay's port; a stranger still reaches the
    /// relay socket and is dropped; a NAT rebinding after silence is
    /// followed, and the connected socket follows it.
    #[tokio::test]
    async fn a_latched_peer_gets_a_connected_socket_that_follows_a_rebinding() {
        let (lo, hi) = range(4);
        let r = relay(lo, hi, 10, 60_000);
        let (a, b) = (bind().await, bind().await);
        // A is behind a NAT: its SDP names a port it does not send from.
        let offer = sdp(9, "a=rtcp-mux\r\n");
        let to_b = r
            .update("conn", Side::A, &[offer.as_bytes()], true)
            .unwrap();
        let answer = sdp(b.local_addr().unwrap().port(), "a=rtcp-mux\r\n");
        let to_a = r
            .update("conn", Side::B, &[answer.as_bytes()], true)
            .unwrap();
        let ra = SocketAddr::new(LO, relay_port(&to_a[0]).0);
        let rb = SocketAddr::new(LO, relay_port(&to_b[0]).0);
        assert!(connected_to(ra.port()).is_empty());
        both_ways(&a, &b, ra, rb, 20).await;
        let a_port = a.local_addr().unwrap().port();
        let b_port = b.local_addr().unwrap().port();
        assert_eq!(connected_to(ra.port()), vec![a_port], "A side");
        assert_eq!(connected_to(rb.port()), vec![b_port], "B side");
        // Through the connected sockets, both ways, in order.
        both_ways(&a, &b, ra, rb, 20).await;
        // Another host, to A's relay port: the relay socket takes it, the
        // stream drops it.
        let stranger = UdpSocket::bind("127.0.0.9:0").await.unwrap();
        stranger.send_to(&rtp(99), ra).await.unwrap();
        nothing(&b).await;
        // A's NAT gives it another port after a silence: followed, and the
        // connected socket with it once B's media has gone there a while.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let a2 = bind().await;
        both_ways(&a2, &b, ra, rb, 20).await;
        let a2_port = a2.local_addr().unwrap().port();
        assert_eq!(
            connected_to(ra.port()),
            vec![a2_port],
            "A side after the rebinding"
        );
        // The old port is no longer A's.
        a.send_to(&rtp(98), ra).await.unwrap();
        nothing(&b).await;
        let s = &r.list()[0].streams[0];
        assert_eq!((s[0].packets, s[1].packets), (60, 60), "{s:?}");
        assert_eq!(s[0].drops, 2, "the stranger's and the old port's: {s:?}");
        r.close("conn", "BYE");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(connected_to(ra.port()).is_empty() && connected_to(rb.port()).is_empty());
    }

    #[tokio::test]
    async fn ice_lite_answers_checks_with_its_own_credentials() {
        let (lo, hi) = range(4);
        let r = relay(lo, hi, 10, 60_000);
        let b = bind().await;
        let offer = sdp(
            7000,
            "a=ice-ufrag:peerA\r\na=ice-pwd:peerApasswordpeerApassword\r\na=candidate:1 1 UDP 2130706431 10.9.9.9 7000 typ host\r\n",
        );
        let to_b = r.update("c2", Side::A, &[offer.as_bytes()], true).unwrap();
        let text = String::from_utf8(to_b[0].clone()).unwrap();
        assert!(!text.contains("10.9.9.9") && text.contains("a=ice-lite"));
        let d = sdp::describe(&to_b[0]).unwrap();
        let ufrag = d.streams[0].ice_ufrag.clone().unwrap();
        let pwd = text
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-pwd:"))
            .unwrap()
            .to_string();
        let relay_b = SocketAddr::new(LO, d.streams[0].port);
        // A Binding request as B's full ICE agent would send it.
        let req = |user: &str, key: &str, nominate: bool| {
            let mut m = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
            m.extend_from_slice(&[5u8; 12]);
            let mut attr = |t: u16, v: &[u8]| {
                m.extend_from_slice(&t.to_be_bytes());
                m.extend_from_slice(&(v.len() as u16).to_be_bytes());
                m.extend_from_slice(v);
                m.resize(m.len() + (4 - v.len() % 4) % 4, 0);
            };
            attr(0x0006, user.as_bytes());
            if nominate {
                attr(0x0025, &[]);
            }
            let at = m.len();
            let len = (at + 24 - 20) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key.as_bytes());
            let tag = ring::hmac::sign(&k, &m);
            m.extend_from_slice(&[0, 8, 0, 20]);
            m.extend_from_slice(tag.as_ref());
            m
        };
        b.send_to(&req(&format!("{ufrag}:peerB"), &pwd, true), relay_b)
            .await
            .unwrap();
        let (resp, from) = recv(&b).await;
        assert_eq!(from, relay_b);
        assert_eq!(&resp[..2], &[1, 1], "Binding success");
        assert_eq!(stun::mapped_address(&resp), Some(b.local_addr().unwrap()));
        assert!(stun::response_verifies(&resp, pwd.as_bytes()));
        // Wrong password: 401, no success.
        b.send_to(
            &req(&format!("{ufrag}:peerB"), "not-the-password", false),
            relay_b,
        )
        .await
        .unwrap();
        let (resp, _) = recv(&b).await;
        assert_eq!(&resp[..2], &[1, 0x11], "Binding error");
        // A check that does not name our username fragment gets nothing:
        // the relay reflects nothing to strangers.
        b.send_to(&req("someoneelse:peerB", &pwd, false), relay_b)
            .await
            .unwrap();
        nothing(&b).await;
        assert_eq!(r.totals.stun.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn rfc4571_tcp_media_is_relayed_to_and_from_udp() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (lo, hi) = range(4);
        let r = relay(lo, hi, 10, 60_000);
        let a = bind().await;
        // B offers TCP media (RFC 4571); the relay listens on both ends.
        let tcp_offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 TCP/RTP/AVP 0\r\na=setup:active\r\n";
        let to_a2 = r
            .update("c4", Side::B, &[tcp_offer.as_bytes()], true)
            .unwrap();
        let text = String::from_utf8(to_a2[0].clone()).unwrap();
        assert!(text.contains("a=setup:passive"), "{text}");
        let relay_for_a = SocketAddr::new(LO, relay_port(&to_a2[0]).0);
        let udp_answer = sdp(a.local_addr().unwrap().port(), "");
        let to_b2 = r
            .update("c4", Side::A, &[udp_answer.as_bytes()], true)
            .unwrap();
        let relay_for_b = SocketAddr::new(LO, relay_port(&to_b2[0]).0);
        let mut tcp = tokio::net::TcpStream::connect(relay_for_b).await.unwrap();
        // B -> A over TCP (framed), arriving as plain UDP.
        let mut framed = vec![0, rtp(4).len() as u8];
        framed.extend_from_slice(&rtp(4));
        tcp.write_all(&framed).await.unwrap();
        let (got, from) = recv(&a).await;
        assert_eq!((got, from), (rtp(4), relay_for_a));
        // A -> B goes back over B's TCP connection, framed.
        a.send_to(&rtp(5), relay_for_a).await.unwrap();
        let mut head = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        let mut body = vec![0u8; u16::from_be_bytes(head) as usize];
        tcp.read_exact(&mut body).await.unwrap();
        assert_eq!(body, rtp(5));
    }

    #[tokio::test]
    async fn limits_drain_timeout_and_reoffers() {
        let (lo, hi) = range(2);
        let r = relay(lo, hi, 1, 150);
        let offer = sdp(7000, "");
        // Not relayed at all: an IM session's SDP passes untouched.
        let im = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=message 5060 sip null\r\n";
        assert_eq!(
            r.update("im", Side::A, &[im.as_bytes()], true).unwrap()[0],
            im.as_bytes()
        );
        assert!(!r.has("im"));
        r.update("one", Side::A, &[offer.as_bytes()], true).unwrap();
        // Full at one session.
        assert!(matches!(
            r.update("two", Side::A, &[offer.as_bytes()], true),
            Err(MediaError::Full(1))
        ));
        r.close("one", "test");
        // Two pairs in the range: a session takes both (one per side); a
        // second stream finds none and the new session is undone.
        let two_streams = format!("{offer}m=video 7002 RTP/AVP 96\r\n");
        let e = r
            .update("three", Side::A, &[two_streams.as_bytes()], true)
            .unwrap_err();
        assert!(matches!(e, MediaError::Ports(_)), "{e}");
        assert!(!r.has("three"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(r.ports_in_use(), 0);
        // Drain: no new sessions; existing ones still take SDP.
        r.update("four", Side::A, &[offer.as_bytes()], true)
            .unwrap();
        r.set_draining(true);
        r.close("four", "test");
        assert!(matches!(
            r.update("five", Side::A, &[offer.as_bytes()], true),
            Err(MediaError::Draining)
        ));
        r.set_draining(false);
        // (The closed session's sockets are released when its tasks end.)
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Lync's two alternatives get the same relay ports.
        let alt1 = sdp(7000, "a=candidate:x 1 user UDP 0.830 10.0.0.1 7000\r\n");
        let alt2 = sdp(
            7000,
            "a=ice-ufrag:u\r\na=ice-pwd:pppppppppppppppppppppppp\r\na=candidate:1 1 UDP 1 10.0.0.1 7000 typ host\r\n",
        );
        let out = r
            .update("six", Side::A, &[alt1.as_bytes(), alt2.as_bytes()], true)
            .unwrap();
        assert_eq!(relay_port(&out[0]), relay_port(&out[1]));
        // A session that carries nothing is swept after the timeout.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(r.sweep(), 1);
        assert!(!r.has("six"));
    }

    /// A STUN Binding request as a full ICE agent sends it.
    fn binding_request(user: &str, key: &str, nominate: bool) -> Vec<u8> {
        let mut m = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[7u8; 12]);
        let mut attr = |t: u16, v: &[u8]| {
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&(v.len() as u16).to_be_bytes());
            m.extend_from_slice(v);
            m.resize(m.len() + (4 - v.len() % 4) % 4, 0);
        };
        attr(0x0006, user.as_bytes());
        if nominate {
            attr(0x0025, &[]);
        }
        let len = (m.len() + 24 - 20) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key.as_bytes());
        let tag = ring::hmac::sign(&k, &m);
        m.extend_from_slice(&[0, 8, 0, 20]);
        m.extend_from_slice(tag.as_ref());
        m
    }

    /// An answerer's ICE checks, and its media, may overtake its answer
    /// (the 200 crosses proxies, the checks go straight to the relay): the
    /// pair it nominated holds once the answer arrives, though its SDP
    /// names another host, and nothing it sent is dropped. Found with real
    /// user agents (baresip, tests/interop_baresip.rs): the answer's SDP
    /// used to wipe the latch, and the answerer's media was dropped until
    /// something else latched it (one-way audio if nothing did).
    #[tokio::test]
    async fn an_ice_check_that_overtakes_the_answer_keeps_its_latch() {
        let (lo, hi) = range(4);
        let r = relay(lo, hi, 10, 60_000);
        let a = bind().await;
        let b = bind().await; // B's real socket; its SDP names 127.0.0.2
        let offer = sdp(
            a.local_addr().unwrap().port(),
            "a=ice-ufrag:peerA\r\na=ice-pwd:peerApasswordpeerApassword\r\n",
        );
        let to_b = r.update("c9", Side::A, &[offer.as_bytes()], true).unwrap();
        let text = String::from_utf8(to_b[0].clone()).unwrap();
        let d = sdp::describe(&to_b[0]).unwrap();
        let ufrag = d.streams[0].ice_ufrag.clone().unwrap();
        let pwd = text
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-pwd:"))
            .unwrap()
            .to_string();
        let rb = SocketAddr::new(LO, d.streams[0].port);
        b.send_to(&binding_request(&format!("{ufrag}:peerB"), &pwd, true), rb)
            .await
            .unwrap();
        assert_eq!(&recv(&b).await.0[..2], &[1, 1], "Binding success");
        // B's first packet overtakes its answer too.
        b.send_to(&rtp(1), rb).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
            m=audio 9 RTP/AVP 0\r\na=ice-ufrag:peerB\r\na=ice-pwd:peerBpasswordpeerBpassword\r\n";
        let to_a = r.update("c9", Side::B, &[answer.as_bytes()], true).unwrap();
        let ra = SocketAddr::new(LO, relay_port(&to_a[0]).0);
        assert_eq!(recv(&a).await.0, rtp(1), "B's media before its answer");
        b.send_to(&rtp(2), rb).await.unwrap();
        assert_eq!(recv(&a).await.0, rtp(2), "B's media after its answer");
        a.send_to(&rtp(3), ra).await.unwrap();
        assert_eq!(
            recv(&b).await.0,
            rtp(3),
            "A's media to the pair B nominated"
        );
        let s = &r.list()[0].streams[0];
        assert_eq!((s[0].drops, s[1].drops), (0, 0), "{s:?}");
    }

    #[tokio::test]
    async fn a_reinvite_that_changes_nothing_keeps_the_learned_address_and_a_move_is_followed_at_once()
     {
        let (lo, hi) = range(4);
        let r = relay(lo, hi, 10, 60_000);
        let a_real = bind().await;
        let b = bind().await;
        let offer = sdp(9, "");
        let to_b = r.update("c5", Side::A, &[offer.as_bytes()], true).unwrap();
        let rb = SocketAddr::new(LO, relay_port(&to_b[0]).0);
        let to_a = r
            .update(
                "c5",
                Side::B,
                &[sdp(b.local_addr().unwrap().port(), "").as_bytes()],
                true,
            )
            .unwrap();
        let ra = SocketAddr::new(LO, relay_port(&to_a[0]).0);
        a_real.send_to(&rtp(1), ra).await.unwrap();
        recv(&b).await;
        // Same SDP again (a session refresh): B -> A still reaches A's real socket.
        let to_b = r.update("c5", Side::A, &[offer.as_bytes()], true).unwrap();
        assert_eq!(
            SocketAddr::new(LO, relay_port(&to_b[0]).0),
            rb,
            "same ports on a re-offer"
        );
        b.send_to(&rtp(2), rb).await.unwrap();
        assert_eq!(recv(&a_real).await.0, rtp(2));
        // A moves: its new SDP address is used at once, before it sends.
        let a_new = bind().await;
        r.update(
            "c5",
            Side::A,
            &[sdp(a_new.local_addr().unwrap().port(), "").as_bytes()],
            true,
        )
        .unwrap();
        b.send_to(&rtp(3), rb).await.unwrap();
        assert_eq!(recv(&a_new).await.0, rtp(3));
    }

    #[tokio::test]
    async fn owners_hold_their_share_and_refused_addresses_get_nothing() {
        let (lo, hi) = range(8);
        let side = SideAddress {
            bind: LO,
            advertise: LO,
        };
        let no_loopback = Networks::new(&["0.0.0.0/0"], &["127.0.0.66/32"]).unwrap();
        let r = Relay::new(MediaConfig {
            addresses: [side, side],
            port_min: lo,
            port_max: hi,
            max_sessions: 10,
            timeout: Duration::from_secs(60),
            ring_timeout: Duration::from_secs(60),
            networks: [Arc::new(no_loopback.clone()), Arc::new(no_loopback)],
            max_sessions_per_owner: 2,
            max_pairs_per_owner: 4,
            latch_any_host: false,
        });
        let p = |o| Who {
            owner: Some(o),
            peer: None,
        };
        let offer = sdp(7000, "");
        r.update_as("a1", Side::A, &[offer.as_bytes()], true, p("one"))
            .unwrap();
        // Two streams would take 4 more pairs: over the share of 4.
        let two = format!("{offer}m=video 7002 RTP/AVP 96\r\n");
        let e = r
            .update_as("a2", Side::A, &[two.as_bytes()], true, p("one"))
            .unwrap_err();
        assert!(matches!(e, MediaError::OwnerPorts { max: 4, .. }), "{e}");
        assert!(!r.has("a2"));
        assert_eq!(
            r.owner_use("one"),
            (1, 2),
            "a failed session gives back all"
        );
        r.update_as("a3", Side::A, &[offer.as_bytes()], true, p("one"))
            .unwrap();
        let e = r
            .update_as("a4", Side::A, &[offer.as_bytes()], true, p("one"))
            .unwrap_err();
        assert!(matches!(e, MediaError::OwnerSessions { max: 2, .. }), "{e}");
        assert!(
            !e.to_string().contains("one"),
            "the owner's id is not told: {e}"
        );
        // Another owner is still served.
        r.update_as("b1", Side::A, &[offer.as_bytes()], true, p("two"))
            .unwrap();
        assert_eq!(
            r.owners_use(),
            vec![("one".into(), 2, 4), ("two".into(), 1, 2)]
        );
        r.close("a1", "test");
        r.close("a3", "test");
        assert_eq!(r.owner_use("one"), (0, 0));
        // B answers at a refused address: A's packets go nowhere.
        let refused = UdpSocket::bind("127.0.0.66:0").await.unwrap();
        let a = bind().await;
        let to_a = r
            .update(
                "b1",
                Side::B,
                &[sdp(refused.local_addr().unwrap().port(), "")
                    .replace("127.0.0.1", "127.0.0.66")
                    .as_bytes()],
                false,
            )
            .unwrap();
        let b1 = r.list().into_iter().find(|s| s.id == "b1").unwrap();
        let ra = SocketAddr::new(LO, b1.streams[0][0].port);
        assert_eq!(relay_port(&to_a[0]).0, ra.port());
        // (A's SDP names 127.0.0.1: its packets are A's.)
        a.send_to(&rtp(1), ra).await.unwrap();
        nothing(&refused).await;
        // Its RTP and RTCP addresses were both refused.
        assert_eq!(r.totals.refused_addresses.load(Ordering::Relaxed), 2);
        assert_eq!(
            r.list().into_iter().find(|s| s.id == "b1").unwrap().streams[0][0].packets,
            1
        );
    }

    #[tokio::test]
    async fn answers_need_a_session_offers_are_bounded_and_refused_offers_undone() {
        let (lo, hi) = range(4);
        let r = relay(lo, hi, 10, 60_000);
        // An answer (a response, an ACK) for a call the relay does not carry.
        let e = r
            .update("x", Side::B, &[sdp(7000, "").as_bytes()], false)
            .unwrap_err();
        assert!(matches!(e, MediaError::NoSession), "{e}");
        assert!(!r.has("x"));
        // An offer with more streams than a call may have.
        let many: String = (0..=MAX_STREAMS)
            .map(|i| format!("m=audio {} RTP/AVP 0\r\n", 7000 + 2 * i))
            .collect();
        let e = r
            .update("y", Side::A, &[sdp(6000, &many).as_bytes()], true)
            .unwrap_err();
        assert!(matches!(e, MediaError::TooManyStreams(18)), "{e}");
        // A late offer: the session is reserved first, the offer comes in the answer.
        r.reserve("late").unwrap();
        assert!(r.has("late"));
        r.update("late", Side::B, &[sdp(7000, "").as_bytes()], false)
            .unwrap();
        // A re-offer to hold is refused: what it changed is put back.
        let (a, b) = (bind().await, bind().await);
        let to_b = r
            .update(
                "c6",
                Side::A,
                &[sdp(a.local_addr().unwrap().port(), "").as_bytes()],
                true,
            )
            .unwrap();
        let to_a = r
            .update(
                "c6",
                Side::B,
                &[sdp(b.local_addr().unwrap().port(), "").as_bytes()],
                false,
            )
            .unwrap();
        r.commit("c6");
        let (ra, rb) = (
            SocketAddr::new(LO, relay_port(&to_a[0]).0),
            SocketAddr::new(LO, relay_port(&to_b[0]).0),
        );
        let held = sdp(b.local_addr().unwrap().port(), "")
            .replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        r.update("c6", Side::B, &[held.as_bytes()], true).unwrap();
        // While B says it is held, nothing is sent to it...
        a.send_to(&rtp(1), ra).await.unwrap();
        nothing(&b).await;
        // ...and once its offer is refused, media flows as before.
        r.rollback("c6");
        a.send_to(&rtp(2), ra).await.unwrap();
        assert_eq!(recv(&b).await.0, rtp(2));
        b.send_to(&rtp(3), rb).await.unwrap();
        assert_eq!(recv(&a).await.0, rtp(3));
    }
}
