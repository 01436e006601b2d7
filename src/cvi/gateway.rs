//! The CVI gateway: a back-to-back user agent between a video room system
//! and the connector (the Teams side). A room system dials the reception
//! (`teams@<domain>`), which answers, plays a prompt and collects the
//! meeting's conference ID (RFC 4733 telephone-events or SIP INFO); or it
//! dials `<id>@<domain>` (or `<tenant>.<id>@<domain>`) directly; or the
//! test call, which echoes its media. A valid ID is connected to the
//! connector with a call of the gateway's own; media of both legs runs
//! through the shared relay (the room system is side A, the connector side
//! B, and during the reception the gateway's own player is side B).
//!
//! Owns the two dialogs of each call and their transactions (retransmission
//! over UDP, ACK, CANCEL, BYE on either side ending both). It knows SIP and
//! SDP; whether a meeting exists is the store's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Trust;
use super::audio::{self, Codec, Prompt};
use super::dtmf::{self, Collected, Collector};
use super::meetings::is_conference_id;
use crate::media::sdp;
use crate::media::{MediaError, Relay, Side};
use crate::role::Role;
use crate::sip::body::leaves;
use crate::sip::headers::{HeaderName, NameAddr};
use crate::sip::message::{Method, SipMessage};
use crate::sip::parse::{Limits, find_head_end, parse_framed};
use crate::sip::response::{ResponseBuilder, quote, random_token};
use crate::sip::transport::outbound::{Pool, StreamTarget};
use crate::sip::transport::{Connection, Handler, Inbound, Source, Transport};
use crate::sip::uri::Uri;
use crate::store::Store;

/// Static settings, from `[cvi]`.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub domain: String,
    pub reception: String,
    pub test_call: String,
    pub test_call_time: Duration,
    pub tenant_key: Option<String>,
    /// URI template with `{id}` and `{tenant}`.
    pub connector: String,
    pub connector_address: Option<(String, u16)>,
    pub max_calls: usize,
    pub trusted: Vec<Trust>,
    pub digit_pause: Duration,
    pub tries: u32,
    /// Our UDP/TCP listener, for Via and Contact.
    pub local: SocketAddr,
    /// Our TLS listener, for Via and Contact on TLS legs.
    pub local_tls: Option<SocketAddr>,
    /// Where the gateway's own media sockets (reception, echo) bind.
    pub player_address: IpAddr,
    pub t1: Duration,
    pub t2: Duration,
    /// How long a connector may ring before the gateway gives up.
    pub ring_timeout: Duration,
    /// The Server/User-Agent value.
    pub agent: String,
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicU64,
    pub refused_full: AtomicU64,
    pub refused_draining: AtomicU64,
    pub not_found: AtomicU64,
    pub connected: AtomicU64,
    pub connector_failed: AtomicU64,
    pub test_calls: AtomicU64,
}

/// How a request is sent on a leg.
#[derive(Debug, Clone)]
enum Path {
    Udp(SocketAddr),
    /// The connection the room system called in on.
    Stream(Connection),
    /// A connection of ours to the connector, opened again from the pool
    /// when it has closed (idle timeout, the peer's restart).
    Pooled(Arc<Pooled>),
}

#[derive(Debug)]
struct Pooled {
    target: StreamTarget,
    conn: Mutex<Connection>,
}

impl Path {
    fn reliable(&self) -> bool {
        !matches!(self, Path::Udp(_))
    }
}

/// One dialog the gateway takes part in.
#[derive(Debug)]
struct Leg {
    call_id: String,
    /// Our party as a header value, with our tag.
    local: String,
    /// Theirs, with their tag once known.
    remote: Mutex<String>,
    target: Mutex<String>,
    route: Mutex<Vec<String>>,
    cseq: AtomicU32,
    path: Path,
    via: String,
    contact: String,
}

impl Leg {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request in this dialog; returns it with its response key.
    fn request(
        &self,
        method: &str,
        headers: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> (Bytes, String, u32) {
        let cseq = self.cseq.fetch_add(1, Ordering::Relaxed) + 1;
        self.build(
            method,
            cseq,
            &format!("z9hG4bK-cvi{}", random_token()),
            headers,
            body,
        )
    }

    fn build(
        &self,
        method: &str,
        cseq: u32,
        branch: &str,
        headers: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> (Bytes, String, u32) {
        let mut m = format!(
            "{method} {} SIP/2.0\r\nVia: {};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            Leg::lock(&self.target),
            self.via
        );
        for r in Leg::lock(&self.route).iter() {
            m.push_str(&format!("Route: {r}\r\n"));
        }
        m.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: {}\r\n",
            self.local,
            Leg::lock(&self.remote),
            self.call_id,
            self.contact
        ));
        for (n, v) in headers {
            m.push_str(&format!("{n}: {v}\r\n"));
        }
        let mut out = m.into_bytes();
        match body {
            Some((ct, b)) => {
                out.extend_from_slice(
                    format!("Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes(),
                );
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        (
            Bytes::from(out),
            format!("{}|{cseq}|{method}", self.call_id),
            cseq,
        )
    }
}

/// What the room system dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialled {
    Reception,
    TestCall,
    Meeting(String),
    Unknown(String),
}

/// `next` (an SDP for the room) as the next version of the session the
/// room already has from us in `previous`: `previous`'s o= line with its
/// version raised by one (RFC 3264 §8). Unchanged when either has no o=.
fn continue_origin(previous: &[u8], next: &[u8]) -> Vec<u8> {
    let origin = |b: &[u8]| {
        let text = std::str::from_utf8(b).ok()?;
        let at = if text.starts_with("o=") {
            0
        } else {
            text.find("\no=")? + 1
        };
        let end = text[at..].find(['\r', '\n']).map_or(text.len(), |e| at + e);
        Some((at, end, text[at..end].to_string()))
    };
    let (Some((_, _, prev)), Some((at, end, _))) = (origin(previous), origin(next)) else {
        return next.to_vec();
    };
    let mut f: Vec<&str> = prev.split(' ').collect();
    let Some(version) = f.get(2).and_then(|v| v.parse::<u64>().ok()) else {
        return next.to_vec();
    };
    let bumped = version.saturating_add(1).to_string();
    if let Some(v) = f.get_mut(2) {
        *v = &bumped;
    }
    let mut out = next[..at].to_vec();
    out.extend_from_slice(f.join(" ").as_bytes());
    out.extend_from_slice(&next[end..]);
    out
}

/// Reads the Request-URI's user part.
pub fn dialled(user: &str, reception: &str, test_call: &str, tenant: Option<&str>) -> Dialled {
    if user.eq_ignore_ascii_case(reception) {
        return Dialled::Reception;
    }
    if user.eq_ignore_ascii_case(test_call) {
        return Dialled::TestCall;
    }
    if is_conference_id(user) {
        return Dialled::Meeting(user.to_string());
    }
    if let Some((key, id)) = user.split_once('.')
        && is_conference_id(id)
        && tenant.is_some_and(|t| t == key)
    {
        return Dialled::Meeting(id.to_string());
    }
    Dialled::Unknown(user.to_string())
}

/// One gateway call.
struct Call {
    key: String,
    room: Arc<Leg>,
    invite: SipMessage,
    source: Source,
    tag: String,
    /// A final answer went to the room's INVITE (200 or an error).
    answered: AtomicBool,
    /// The last response to the room's INVITE, for its retransmissions.
    last: Mutex<Option<Bytes>>,
    acked: Notify,
    acked_flag: AtomicBool,
    ended: CancellationToken,
    /// Key presses for the reception (bounded: a peer cannot queue more).
    keys: mpsc::Sender<char>,
    keys_rx: Mutex<Option<mpsc::Receiver<char>>>,
    connector: Mutex<Option<Arc<Leg>>>,
    /// What the relay offers the connector (SDP for side B).
    offer_b: Mutex<Vec<u8>>,
    /// The SDP last sent to each leg (for re-INVITEs we answer).
    last_sdp: Mutex<[Vec<u8>; 2]>,
    /// Our re-INVITE to the room is in progress (its own gets 491).
    reinviting: AtomicBool,
    counted: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a conference ID cannot be joined.
#[derive(Debug)]
enum Refused {
    /// The meeting has ended.
    Ended(String),
    /// Unknown, or its organiser withdrawn.
    NotFound(String),
    /// The database could not say.
    Store(String),
}

/// Room key presses queued for the reception at most.
const KEY_QUEUE: usize = 64;

/// The methods the gateway takes, for Allow headers.
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, INFO, OPTIONS, UPDATE";

/// The longest one attempt at the reception may take.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(60);

/// Removes a key from a set when dropped (whatever path a task leaves by).
struct Forget<'a>(&'a Mutex<std::collections::HashSet<String>>, String);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(&self.1);
    }
}

/// Removes a transaction's entry from `pending` when dropped.
struct Unpend<'a>(
    &'a Mutex<HashMap<String, mpsc::UnboundedSender<SipMessage>>>,
    String,
);

impl Drop for Unpend<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(&self.1);
    }
}

/// The first SDP of a message body.
fn sdp_of(msg: &SipMessage) -> Option<Vec<u8>> {
    leaves(
        msg.first(HeaderName::ContentType),
        msg.first(HeaderName::ContentDisposition),
        msg.body(),
    )
    .into_iter()
    .find(|p| p.media_type == "application/sdp")
    .map(|p| p.body.to_vec())
}

/// The gateway.
pub struct Gateway {
    me: Weak<Gateway>,
    cfg: GatewayConfig,
    store: Store,
    pub relay: Arc<Relay>,
    udp: Arc<UdpSocket>,
    pool: Arc<Pool>,
    calls: Mutex<HashMap<String, Arc<Call>>>,
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<SipMessage>>>,
    /// Error answers to INVITEs of calls that never started, by Call-ID,
    /// for the INVITE's retransmissions (kept 32 s, RFC 3261 Timer H).
    finals: Mutex<HashMap<String, (Bytes, tokio::time::Instant)>>,
    /// ACKs the gateway sent for final answers to its INVITEs, by
    /// transaction key, to answer the final answer's retransmissions
    /// (RFC 3261 §17.1.1.2 and §13.2.2.4; kept 64*T1).
    acks: Mutex<HashMap<String, (Path, Bytes, tokio::time::Instant)>>,
    /// Call-IDs of room INVITEs being set up (not yet in `calls`).
    starting: Mutex<std::collections::HashSet<String>>,
    live: AtomicUsize,
    draining: AtomicBool,
    pub stats: Stats,
    seq: AtomicU64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("domain", &self.cfg.domain)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(
        cfg: GatewayConfig,
        store: Store,
        relay: Arc<Relay>,
        udp: Arc<UdpSocket>,
        pool: Arc<Pool>,
    ) -> Arc<Gateway> {
        Arc::new_cyclic(|me| Gateway {
            me: me.clone(),
            cfg,
            store,
            relay,
            udp,
            pool,
            calls: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            finals: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            starting: Mutex::new(std::collections::HashSet::new()),
            live: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            stats: Stats::default(),
            seq: AtomicU64::new(1),
        })
    }

    /// Gateway calls up now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn max_calls(&self) -> usize {
        self.cfg.max_calls
    }

    /// No new calls while on; calls up finish.
    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Relaxed);
        info!(draining = on, calls = self.live(), "CVI gateway drain mode");
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ends calls whose media the relay closed (no packet for its
    /// timeout): both legs get a BYE. Runs until shutdown, then hangs up
    /// every call.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let horizon = self.cfg.t1 * 64;
            lock(&self.finals).retain(|_, (_, at)| at.elapsed() < horizon);
            lock(&self.acks).retain(|_, (_, _, at)| at.elapsed() < horizon);
            let calls: Vec<Arc<Call>> = lock(&self.calls).values().cloned().collect();
            for call in calls {
                if call.answered.load(Ordering::Relaxed)
                    && !call.ended.is_cancelled()
                    && !self.relay.has(&call.key)
                {
                    let me = self.clone();
                    tokio::spawn(async move { me.hang_up_both(&call, "no media").await });
                }
            }
        }
        let calls: Vec<Arc<Call>> = lock(&self.calls).values().cloned().collect();
        let mut byes = tokio::task::JoinSet::new();
        for call in calls {
            let me = self.clone();
            byes.spawn(async move { me.hang_up_both(&call, "the gateway is shutting down").await });
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while byes.join_next().await.is_some() {}
        })
        .await;
    }

    fn call(&self, call_id: &str) -> Option<Arc<Call>> {
        lock(&self.calls).get(call_id).cloned()
    }

    async fn send(&self, path: &Path, data: Bytes) {
        match path {
            Path::Udp(to) => {
                let _ = self.udp.send_to(&data, to).await;
            }
            Path::Stream(c) => {
                if let Err(e) = c.send(data) {
                    debug!(error = %e, "the room system's connection is gone");
                }
            }
            Path::Pooled(p) => {
                let c = lock(&p.conn).clone();
                match c.send(data.clone()) {
                    Ok(()) => return,
                    Err(e @ crate::sip::transport::SendError::Full(_)) => {
                        warn!(error = %e, "the connector is not reading");
                        return;
                    }
                    Err(_) => {}
                }
                let Some(me) = self.me.upgrade() else { return };
                match self.pool.get(&p.target, me).await {
                    Ok(n) => {
                        let _ = n.send(data);
                        *lock(&p.conn) = n;
                    }
                    Err(e) => {
                        warn!(target = %p.target, error = %e, "the connector cannot be reached again")
                    }
                }
            }
        }
    }

    async fn respond(&self, req: &SipMessage, source: &Source, data: Bytes) {
        if let Err(e) = source
            .send_back(data, Some(source.response_target(req)))
            .await
        {
            debug!(error = %e, "CVI response not sent");
        }
    }

    /// A response that creates the room's dialog (18x, 2xx): the INVITE's
    /// Record-Route set comes back in it (RFC 3261 §12.1.1), so proxies and
    /// SBCs in front of the room stay in its path.
    fn dialog_response<'a>(
        &self,
        req: &'a SipMessage,
        status: u16,
        tag: &str,
    ) -> ResponseBuilder<'a> {
        let mut b = self.response(req, status, Some(tag), None);
        for rr in req.values(HeaderName::RecordRoute) {
            b = b.header("Record-Route", rr);
        }
        b
    }

    fn response<'a>(
        &self,
        req: &'a SipMessage,
        status: u16,
        tag: Option<&str>,
        reason: Option<&str>,
    ) -> ResponseBuilder<'a> {
        let mut b = ResponseBuilder::new(req, status).header("Server", self.cfg.agent.clone());
        if let Some(t) = tag {
            b = b.to_tag(t);
        }
        if let Some(r) = reason {
            b = b.warning(399, &self.cfg.domain, r);
        }
        b
    }

    /// Sends a request and waits for its final answer, retransmitting over
    /// UDP (RFC 3261 Timers A/B and E/F); provisional answers go to `prov`.
    /// An INVITE is CANCELled when `abort` fires or when it has rung for
    /// the ring timeout (Timer C), and its final answer (a 487, or a 2xx
    /// that crossed the CANCEL) is still awaited and returned, for the
    /// caller to ACK (and BYE).
    async fn transact(
        &self,
        path: &Path,
        data: Bytes,
        key: &str,
        invite: bool,
        prov: Option<&mpsc::UnboundedSender<SipMessage>>,
        abort: Option<&CancellationToken>,
    ) -> Result<SipMessage, String> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(key.to_string(), tx);
        let _pending = Unpend(&self.pending, key.to_string());
        self.send(path, data.clone()).await;
        let t1 = self.cfg.t1;
        let mut every = t1;
        let mut next = tokio::time::Instant::now() + every;
        let mut deadline = tokio::time::Instant::now() + t1 * 64;
        let mut heard = false;
        let mut cancelled = false;
        let never = CancellationToken::new();
        let abort = abort.unwrap_or(&never);
        loop {
            let retransmit = !path.reliable() && !heard;
            tokio::select! {
                m = rx.recv() => match m {
                    Some(resp) if resp.status().is_some_and(|s| s >= 200) => return Ok(resp),
                    Some(resp) => {
                        heard = true;
                        if invite && !cancelled {
                            deadline = tokio::time::Instant::now() + self.cfg.ring_timeout;
                        }
                        if let Some(p) = prov {
                            let _ = p.send(resp);
                        }
                    }
                    None => return Err("the transaction was dropped".into()),
                },
                _ = tokio::time::sleep_until(next), if retransmit => {
                    self.send(path, data.clone()).await;
                    every = if invite { every * 2 } else { (every * 2).min(self.cfg.t2) };
                    next += every;
                }
                _ = abort.cancelled(), if invite && !cancelled => {
                    cancelled = true;
                    self.cancel(path, &data);
                    deadline = tokio::time::Instant::now() + t1 * 64;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if invite && heard && !cancelled {
                        // Rang too long (Timer C): CANCEL, then wait for the 487.
                        cancelled = true;
                        self.cancel(path, &data);
                        deadline = tokio::time::Instant::now() + t1 * 64;
                        continue;
                    }
                    return Err("no answer in time".into());
                }
            }
        }
    }

    /// Sends the CANCEL of an INVITE we sent, as its own transaction.
    fn cancel(&self, path: &Path, invite: &Bytes) {
        let Some(inv) = parse(invite) else { return };
        let Some(c) = crate::sip::proxy::txn::build_cancel(&inv) else {
            return;
        };
        let (Some(call_id), Some(cseq)) = (inv.call_id(), inv.cseq()) else {
            return;
        };
        let key = format!("{call_id}|{}|CANCEL", cseq.seq);
        if let Some(me) = self.me.upgrade() {
            let path = path.clone();
            tokio::spawn(async move {
                let _ = me.transact(&path, c, &key, false, None, None).await;
            });
        }
    }

    fn new_call_key(&self) -> String {
        format!(
            "cvi-{}-{}",
            self.seq.fetch_add(1, Ordering::Relaxed),
            random_token()
        )
    }

    /// The listener a leg over `transport` names in Via and Contact.
    fn local_for(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tls => self.cfg.local_tls.unwrap_or(self.cfg.local),
            _ => self.cfg.local,
        }
    }

    fn via_for(&self, transport: Transport) -> String {
        let t = match transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        };
        format!("SIP/2.0/{t} {}", self.local_for(transport))
    }

    fn contact_for(&self, transport: Transport) -> String {
        let t = match transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        let local = self.local_for(transport);
        format!(
            "<sip:gateway@{}:{};transport={t}>",
            fmt_host(local.ip()),
            local.port()
        )
    }

    /// Sends the ACK for a final answer to our INVITE `key` and keeps it for
    /// that answer's retransmissions.
    async fn ack(&self, key: &str, path: &Path, ack: Bytes) {
        self.send(path, ack.clone()).await;
        lock(&self.acks).insert(
            key.to_string(),
            (path.clone(), ack, tokio::time::Instant::now()),
        );
    }

    fn remember_final(&self, call_id: &str, r: &Bytes) {
        lock(&self.finals).insert(
            call_id.to_string(),
            (r.clone(), tokio::time::Instant::now()),
        );
    }

    /// Ends a call: both legs' media, its table entries, its tasks.
    fn end(&self, call: &Arc<Call>, reason: &str) {
        if call.ended.is_cancelled() {
            return;
        }
        call.ended.cancel();
        self.relay.close(&call.key, reason);
        let mut t = lock(&self.calls);
        let mine = |t: &mut HashMap<String, Arc<Call>>, id: &str| {
            if t.get(id).is_some_and(|c| Arc::ptr_eq(c, call)) {
                t.remove(id);
            }
        };
        mine(&mut t, &call.room.call_id);
        if let Some(c) = lock(&call.connector).as_ref() {
            mine(&mut t, &c.call_id);
        }
        drop(t);
        if call.counted.swap(false, Ordering::Relaxed) {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        info!(call_id = %call.room.call_id, reason, "CVI call ended");
    }

    /// Hangs up the leg that did not hang up, then ends the call.
    async fn hang_up(&self, call: &Arc<Call>, from_room: bool, reason: &str) {
        if call.ended.is_cancelled() {
            return;
        }
        let other = if from_room {
            lock(&call.connector).clone()
        } else {
            Some(call.room.clone())
        };
        self.end(call, reason);
        if let Some(leg) = other {
            self.bye(&leg, reason).await;
        }
    }

    /// Ends the call and sends a BYE on both legs (neither hung up).
    async fn hang_up_both(&self, call: &Arc<Call>, reason: &str) {
        if call.ended.is_cancelled() {
            return;
        }
        let connector = lock(&call.connector).clone();
        self.end(call, reason);
        let to_connector = async {
            if let Some(leg) = &connector {
                self.bye(leg, reason).await;
            }
        };
        tokio::join!(self.bye(&call.room, reason), to_connector);
    }

    async fn bye(&self, leg: &Leg, reason: &str) {
        let (data, key, _) = leg.request(
            "BYE",
            &[("Reason".into(), format!("SIP;text={}", quote(reason)))],
            None,
        );
        let _ = self
            .transact(&leg.path, data, &key, false, None, None)
            .await;
    }

    /// A room system's new INVITE.
    async fn new_call(self: Arc<Self>, invite: SipMessage, source: Source) {
        let call_id = invite.call_id().unwrap_or("").to_string();
        let _starting = Forget(&self.starting, call_id.clone());
        if self.draining() {
            self.stats.refused_draining.fetch_add(1, Ordering::Relaxed);
            let r = self
                .response(
                    &invite,
                    503,
                    Some(&random_token()),
                    Some("this gateway is draining: it takes no new calls"),
                )
                .header("Retry-After", "60")
                .build();
            self.remember_final(&call_id, &r);
            self.respond(&invite, &source, r).await;
            return;
        }
        if self.live.fetch_add(1, Ordering::Relaxed) >= self.cfg.max_calls {
            self.live.fetch_sub(1, Ordering::Relaxed);
            self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
            let why = format!(
                "this gateway carries its maximum of {} calls",
                self.cfg.max_calls
            );
            let r = self
                .response(&invite, 503, Some(&random_token()), Some(&why))
                .header("Retry-After", "30")
                .build();
            self.remember_final(&call_id, &r);
            self.respond(&invite, &source, r).await;
            warn!(call_id = %call_id, remote = %source.remote, "CVI call refused: {why}");
            return;
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let tag = random_token();
        let to = invite.first(HeaderName::To).unwrap_or("").to_string();
        let room = Arc::new(Leg {
            call_id: call_id.clone(),
            local: format!("{to};tag={tag}"),
            remote: Mutex::new(invite.first(HeaderName::From).unwrap_or("").to_string()),
            target: Mutex::new(
                invite
                    .first(HeaderName::Contact)
                    .and_then(|c| NameAddr::parse(c).ok().map(|na| na.uri.raw.to_string()))
                    .unwrap_or_else(|| format!("sip:{}", source.remote)),
            ),
            route: Mutex::new(
                invite
                    .values(HeaderName::RecordRoute)
                    .map(str::to_string)
                    .collect(),
            ),
            cseq: AtomicU32::new(100),
            path: match &source.conn {
                Some(c) => Path::Stream(c.clone()),
                None => Path::Udp(source.response_target(&invite)),
            },
            via: self.via_for(source.transport),
            contact: self.contact_for(source.transport),
        });
        let (keys, keys_rx) = mpsc::channel(KEY_QUEUE);
        let call = Arc::new(Call {
            key: self.new_call_key(),
            room,
            invite: invite.clone(),
            source: source.clone(),
            tag: tag.clone(),
            answered: AtomicBool::new(false),
            last: Mutex::new(None),
            acked: Notify::new(),
            acked_flag: AtomicBool::new(false),
            ended: CancellationToken::new(),
            keys,
            keys_rx: Mutex::new(Some(keys_rx)),
            connector: Mutex::new(None),
            offer_b: Mutex::new(Vec::new()),
            last_sdp: Mutex::new([Vec::new(), Vec::new()]),
            reinviting: AtomicBool::new(false),
            counted: AtomicBool::new(true),
        });
        lock(&self.calls).insert(call_id.clone(), call.clone());
        let trying = self.response(&invite, 100, None, None).build();
        *lock(&call.last) = Some(trying.clone());
        self.respond(&invite, &source, trying).await;

        let user = invite
            .request_uri()
            .and_then(|u| u.user.map(str::to_string))
            .unwrap_or_default();
        let what = dialled(
            &user,
            &self.cfg.reception,
            &self.cfg.test_call,
            self.cfg.tenant_key.as_deref(),
        );
        info!(call_id = %call_id, remote = %source.remote, dialled = %user, "CVI call");
        if let Dialled::Unknown(u) = &what {
            let why = format!(
                "{u}@{d} is not an address here: dial {}@{d} and enter the conference ID, or <ID>@{d}",
                self.cfg.reception,
                d = self.cfg.domain
            );
            self.fail(&call, 404, &why).await;
            return;
        }
        let Some(offer) = sdp_of(&invite) else {
            self.fail(&call, 488, "the gateway needs an SDP offer in the INVITE")
                .await;
            return;
        };
        // The room system is side A; what the relay offers the connector is side B's.
        let offer_b = match self.relay.update(&call.key, Side::A, &[&offer], true) {
            Ok(mut v) => v.pop().unwrap_or_default(),
            Err(e) => {
                let status = if matches!(e, MediaError::Sdp(_) | MediaError::TooManyStreams(_)) {
                    488
                } else {
                    503
                };
                self.fail(&call, status, &format!("media cannot be relayed: {e}"))
                    .await;
                return;
            }
        };
        *lock(&call.offer_b) = offer_b;
        match what {
            Dialled::Meeting(id) => match self.check_meeting(&id).await {
                Ok(()) => self.clone().connect(call, id).await,
                // The database failing is ours, not a wrong ID.
                Err(Refused::Store(why)) => self.fail(&call, 503, &why).await,
                Err(Refused::Ended(why) | Refused::NotFound(why)) => {
                    self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                    self.fail(&call, 404, &why).await;
                }
            },
            Dialled::Reception => self.clone().reception(call, &offer).await,
            Dialled::TestCall => self.clone().test_call(call, &offer).await,
            Dialled::Unknown(_) => {}
        }
    }

    /// Whether a conference ID names a meeting that can be joined now.
    async fn check_meeting(&self, id: &str) -> Result<(), Refused> {
        match self.store.cvi_meeting(id).await {
            Ok(Some((m, enrolled))) => {
                m.joinable(enrolled, &crate::store::now_rfc3339())
                    .map_err(|why| {
                        let why_id = format!("conference ID {id}: {why}");
                        if why == crate::model::cvi::Unjoinable::Ended {
                            Refused::Ended(why_id)
                        } else {
                            Refused::NotFound(why_id)
                        }
                    })
            }
            Ok(None) => Err(Refused::NotFound(format!(
                "no meeting has conference ID {id}"
            ))),
            Err(e) => Err(Refused::Store(format!(
                "the meeting could not be looked up: {e}"
            ))),
        }
    }

    /// Answers the room's INVITE with an error and ends the call.
    async fn fail(&self, call: &Arc<Call>, status: u16, why: &str) {
        if !call.answered.swap(true, Ordering::Relaxed) {
            let r = self
                .response(&call.invite, status, Some(&call.tag), Some(why))
                .build();
            self.remember_final(&call.room.call_id, &r);
            *lock(&call.last) = Some(r.clone());
            self.respond(&call.invite, &call.source, r).await;
        }
        info!(call_id = %call.room.call_id, status, reason = why, "CVI call refused");
        self.end(call, why);
    }

    /// Answers the room's INVITE with 200 and `sdp`, retransmitting over UDP
    /// until the ACK (RFC 3261 §13.3.1.4); false when no ACK came.
    async fn answer(&self, call: &Arc<Call>, sdp: &[u8]) -> bool {
        if call.answered.swap(true, Ordering::Relaxed) || call.ended.is_cancelled() {
            // Already answered (a CANCEL's 487 went first): no 200 now.
            return false;
        }
        // From now on only a BYE or the media timeout ends the relay session.
        self.relay.mark_answered(&call.key);
        lock(&call.last_sdp)[0] = sdp.to_vec();
        let ok = self
            .dialog_response(&call.invite, 200, &call.tag)
            .header("Contact", call.room.contact.clone())
            .body("application/sdp", Bytes::copy_from_slice(sdp))
            .build();
        *lock(&call.last) = Some(ok.clone());
        self.respond(&call.invite, &call.source, ok.clone()).await;
        let mut every = self.cfg.t1;
        let deadline = tokio::time::Instant::now() + self.cfg.t1 * 64;
        loop {
            if call.acked_flag.load(Ordering::Relaxed) {
                return true;
            }
            tokio::select! {
                _ = call.acked.notified() => return true,
                _ = call.ended.cancelled() => return false,
                _ = tokio::time::sleep(every) => {
                    if tokio::time::Instant::now() >= deadline {
                        warn!(call_id = %call.room.call_id, "no ACK for the 200: hanging up");
                        return false;
                    }
                    if !call.room.path.reliable() {
                        self.respond(&call.invite, &call.source, ok.clone()).await;
                    }
                    every = (every * 2).min(self.cfg.t2);
                }
            }
        }
    }

    /// Puts the gateway's own media (`own_sdp`: the prompt player or the
    /// echo) on the relay's side B and answers the room with side A's SDP.
    /// False when the call is over (refused, or no ACK: hung up).
    async fn answer_locally(&self, call: &Arc<Call>, own_sdp: &str) -> bool {
        let answer = match self
            .relay
            .update(&call.key, Side::B, &[own_sdp.as_bytes()], false)
        {
            Ok(mut v) => v.pop().unwrap_or_default(),
            Err(e) => {
                self.fail(call, 503, &format!("media cannot be relayed: {e}"))
                    .await;
                return false;
            }
        };
        if !self.answer(call, &answer).await {
            self.hang_up(call, false, "no ACK").await;
            return false;
        }
        true
    }

    /// Where the relay's side-B port of stream `i` is (what the connector,
    /// or the gateway's own player, sends to).
    fn relay_b(&self, call: &Call, i: usize) -> Option<SocketAddr> {
        let d = sdp::describe(&lock(&call.offer_b)).ok()?;
        let s = d.streams.get(i)?;
        Some(SocketAddr::new(s.address?, s.port))
    }

    /// The reception: prompts and a conference ID, then the meeting.
    async fn reception(self: Arc<Self>, call: Arc<Call>, offer: &[u8]) {
        let Ok(desc) = sdp::describe(offer) else {
            return;
        };
        let Some((audio_i, codec, te_pt)) = choose_audio(offer, &desc) else {
            self.fail(
                &call,
                488,
                "the reception speaks G.711 (PCMU or PCMA) audio",
            )
            .await;
            return;
        };
        let sock = match UdpSocket::bind((self.cfg.player_address, 0)).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.fail(
                    &call,
                    503,
                    &format!("no media socket for the reception: {e}"),
                )
                .await;
                return;
            }
        };
        let Ok(local) = sock.local_addr() else { return };
        let player_sdp = player_sdp(&desc, offer, audio_i, local, codec, te_pt);
        if !self.answer_locally(&call, &player_sdp).await {
            return;
        }
        let Some(to) = self.relay_b(&call, audio_i) else {
            return;
        };
        // Key presses in RTP reach the collector with those from SIP INFO.
        if let Some(pt) = te_pt {
            let (s2, keys, ended) = (sock.clone(), call.keys.clone(), call.ended.clone());
            tokio::spawn(async move {
                let mut b = vec![0u8; 2048];
                let mut presses = Presses::default();
                loop {
                    tokio::select! {
                        _ = ended.cancelled() => return,
                        r = s2.recv_from(&mut b) => match r {
                            Ok((n, _)) => {
                                if let Some(e) = dtmf::rtp_event(&b[..n], pt)
                                    && let Some(d) = presses.packet(e, tokio::time::Instant::now())
                                {
                                                                        let _ = keys.try_send(d);
                                }
                            }
                            Err(_) => return,
                        },
                    }
                }
            });
        }
        let Some(mut keys) = lock(&call.keys_rx).take() else {
            return;
        };
        let ssrc: u32 = rand::random();
        let mut rtp = (rand::random::<u16>(), rand::random::<u32>());
        let mut collector = Collector::new(self.cfg.digit_pause, 10);

        let mut prompt = Prompt::Welcome;
        for attempt in 0..self.cfg.tries {
            // The prompt plays until the first key (barge-in).
            let stop = CancellationToken::new();
            let samples = audio::prompt(prompt, codec);
            let playing = {
                let (sock, stop) = (sock.clone(), stop.clone());
                tokio::spawn(async move {
                    audio::play(&sock, to, codec, ssrc, rtp, &samples, &stop).await
                })
            };
            // Each attempt ends within a minute whatever keys arrive (a
            // room sending `*` for ever must not hold a call slot).
            let give_up = tokio::time::Instant::now() + ATTEMPT_LIMIT;
            let entry = loop {
                let wait = if collector.started() {
                    self.cfg.digit_pause
                } else {
                    Duration::from_secs(20) + self.cfg.digit_pause
                };
                tokio::select! {
                    _ = call.ended.cancelled() => { stop.cancel(); return; }
                    k = keys.recv() => {
                                                let Some(k) = k else { stop.cancel(); return };
                        stop.cancel();
                        if let Collected::Entry(e) = collector.key(k) { break e; }
                    }
                                        _ = tokio::time::sleep(wait) => {
                        if let Collected::Entry(e) = collector.timeout() { break e; }
                        if !collector.started() { break String::new(); }
                    }
                    _ = tokio::time::sleep_until(give_up) => {
                        match collector.timeout() {
                            Collected::Entry(e) => break e,
                            Collected::More => break String::new(),
                        }
                    }
                }
            };
            stop.cancel();
            if let Ok(next) = playing.await {
                rtp = next;
            }
            info!(call_id = %call.room.call_id, attempt = attempt + 1, entered = %entry, "conference ID entered");
            match self.check_meeting(&entry).await {
                Ok(()) => {
                    let stop = call.ended.child_token();
                    audio::play(
                        &sock,
                        to,
                        codec,
                        ssrc,
                        rtp,
                        &audio::prompt(Prompt::Connecting, codec),
                        &stop,
                    )
                    .await;
                    drop(sock);
                    self.clone().connect(call, entry).await;
                    return;
                }
                Err(refused) => {
                    let (Refused::Ended(why) | Refused::NotFound(why) | Refused::Store(why)) =
                        &refused;
                    if !matches!(refused, Refused::Store(_)) {
                        self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                    }
                    info!(call_id = %call.room.call_id, reason = %why, "conference ID not accepted");
                    prompt = if matches!(refused, Refused::Ended(_)) {
                        Prompt::Ended
                    } else {
                        Prompt::Invalid
                    };
                }
            }
        }
        let stop = call.ended.child_token();
        audio::play(
            &sock,
            to,
            codec,
            ssrc,
            rtp,
            &audio::prompt(Prompt::Goodbye, codec),
            &stop,
        )
        .await;
        self.hang_up(&call, false, "no valid conference ID").await;
    }

    /// The test call: a prompt, then the room system's own media back.
    async fn test_call(self: Arc<Self>, call: Arc<Call>, offer: &[u8]) {
        self.stats.test_calls.fetch_add(1, Ordering::Relaxed);
        lock(&call.keys_rx).take();
        let Ok(desc) = sdp::describe(offer) else {
            return;
        };
        let mut socks = Vec::new();
        for s in &desc.streams {
            if !s.relayed || s.port == 0 {
                socks.push(None);
                continue;
            }
            match UdpSocket::bind((self.cfg.player_address, 0)).await {
                Ok(x) => socks.push(Some(Arc::new(x))),
                Err(e) => {
                    self.fail(
                        &call,
                        503,
                        &format!("no media socket for the test call: {e}"),
                    )
                    .await;
                    return;
                }
            }
        }
        if !self.answer_locally(&call, &echo_sdp(offer, &socks)).await {
            return;
        }
        // The prompt first, on the first audio stream, in the codec offered first.
        if let Some((i, codec, _)) = choose_audio(offer, &desc)
            && let (Some(Some(sock)), Some(to)) = (socks.get(i), self.relay_b(&call, i))
        {
            let stop = call.ended.child_token();
            audio::play(
                sock,
                to,
                codec,
                rand::random(),
                (1, 0),
                &audio::prompt(Prompt::TestCall, codec),
                &stop,
            )
            .await;
        }
        for sock in socks.into_iter().flatten() {
            let ended = call.ended.clone();
            tokio::spawn(async move {
                let mut b = vec![0u8; 8192];
                loop {
                    tokio::select! {
                        _ = ended.cancelled() => return,
                        r = sock.recv_from(&mut b) => match r {
                            Ok((n, from)) => { let _ = sock.send_to(&b[..n], from).await; }
                            Err(_) => return,
                        },
                    }
                }
            });
        }
        tokio::select! {
            _ = call.ended.cancelled() => {}
            _ = tokio::time::sleep(self.cfg.test_call_time) => {
                self.hang_up(&call, false, "the test call's time is up").await;
            }
        }
    }

    /// Where the connector is: its URI for this meeting and how to reach it.
    async fn connector_path(&self, id: &str) -> Result<(String, Path, Transport), String> {
        let uri_text = self
            .cfg
            .connector
            .replace("{id}", id)
            .replace("{tenant}", self.cfg.tenant_key.as_deref().unwrap_or(""));
        let uri = Uri::parse(&uri_text)
            .map_err(|e| format!("the connector URI {uri_text:?} is not a SIP URI: {e}"))?;
        let transport = match uri.transport().map(|t| t.to_ascii_lowercase()).as_deref() {
            Some("tls") => Transport::Tls,
            Some("tcp") => Transport::Tcp,
            Some("udp") | None if uri.scheme_str.eq_ignore_ascii_case("sip") => Transport::Udp,
            _ => Transport::Tls,
        };
        let host = uri
            .domain()
            .map(str::to_string)
            .or_else(|| uri.host.map(|h| h.to_string()))
            .unwrap_or_default();
        let default_port = if transport == Transport::Tls {
            5061
        } else {
            5060
        };
        let (conn_host, port) = self
            .cfg
            .connector_address
            .clone()
            .unwrap_or((host.clone(), uri.port.unwrap_or(default_port)));
        let path = match transport {
            Transport::Udp => {
                let addr = tokio::net::lookup_host((conn_host.as_str(), port))
                    .await
                    .map_err(|e| {
                        format!("the connector {conn_host}:{port} cannot be resolved: {e}")
                    })?
                    .next()
                    .ok_or_else(|| format!("the connector {conn_host} has no address"))?;
                Path::Udp(addr)
            }
            t => {
                let target = StreamTarget {
                    transport: t,
                    host: conn_host,
                    port,
                    server_name: (t == Transport::Tls).then(|| host.clone()),
                    tag: Role::Cvi.tag(),
                    max_conns: 4,
                };
                let me = self.me.upgrade().ok_or("shutting down")?;
                let conn = self
                    .pool
                    .get(&target, me)
                    .await
                    .map_err(|e| format!("the connector cannot be reached: {e}"))?;
                Path::Pooled(Arc::new(Pooled {
                    target,
                    conn: Mutex::new(conn),
                }))
            }
        };
        Ok((uri_text, path, transport))
    }

    /// Calls the connector for meeting `id` and bridges the room system to it.
    async fn connect(self: Arc<Self>, call: Arc<Call>, id: String) {
        // Key presses matter only at the reception.
        lock(&call.keys_rx).take();
        if call.ended.is_cancelled() {
            return;
        }
        let answered_before = call.answered.load(Ordering::Relaxed);
        let (uri, path, transport) = match self.connector_path(&id).await {
            Ok(x) => x,
            Err(why) => {
                self.stats.connector_failed.fetch_add(1, Ordering::Relaxed);
                warn!(call_id = %call.room.call_id, reason = %why, "connector unreachable");
                if answered_before {
                    self.hang_up(&call, false, &why).await;
                } else {
                    self.fail(&call, 503, &why).await;
                }
                return;
            }
        };
        let from = call
            .invite
            .from()
            .map(|f| f.uri.raw.to_string())
            .unwrap_or_else(|| format!("sip:gateway@{}", self.cfg.domain));
        let local_tag = random_token();
        let leg = Arc::new(Leg {
            call_id: format!("{}@{}", random_token(), self.cfg.domain),
            local: format!("<{from}>;tag={local_tag}"),
            remote: Mutex::new(format!("<{uri}>")),
            target: Mutex::new(uri.clone()),
            route: Mutex::new(Vec::new()),
            cseq: AtomicU32::new(0),
            path: path.clone(),
            via: self.via_for(transport),
            contact: self.contact_for(transport),
        });
        *lock(&call.connector) = Some(leg.clone());
        lock(&self.calls).insert(leg.call_id.clone(), call.clone());
        if call.ended.is_cancelled() {
            // Ended meanwhile: `end` may have run before the entry existed.
            lock(&self.calls).remove(&leg.call_id);
            return;
        }
        let trusted = self.trusted(&call);
        let mut headers = vec![
            ("X-Fedge-Conference-Id".to_string(), id.clone()),
            ("User-Agent".to_string(), self.cfg.agent.clone()),
        ];
        if trusted {
            headers.push(("X-Fedge-Trusted-Device".into(), "yes".into()));
        }
        let offer_b = lock(&call.offer_b).clone();
        let (invite, key, cseq) =
            leg.request("INVITE", &headers, Some(("application/sdp", &offer_b)));
        info!(call_id = %call.room.call_id, connector = %uri, trusted, "calling the connector");
        // Ringing reaches a room system not yet answered.
        let (prov_tx, mut prov_rx) = mpsc::unbounded_channel::<SipMessage>();
        if !answered_before {
            let (gw, call2) = (self.clone(), call.clone());
            tokio::spawn(async move {
                while let Some(p) = prov_rx.recv().await {
                    if (p.status() == Some(180) || p.status() == Some(183))
                        && !call2.answered.load(Ordering::Relaxed)
                    {
                        let r = gw.dialog_response(&call2.invite, 180, &call2.tag).build();
                        gw.respond(&call2.invite, &call2.source, r).await;
                    }
                }
            });
        }
        // The room leaving while the connector rings CANCELs the INVITE;
        // its final answer still comes back here to be ACKed.
        let outcome = self
            .transact(
                &path,
                invite.clone(),
                &key,
                true,
                Some(&prov_tx),
                Some(&call.ended),
            )
            .await;
        drop(prov_tx);
        let resp = match outcome {
            Err(_) if call.ended.is_cancelled() => return,
            Err(why) => {
                self.stats.connector_failed.fetch_add(1, Ordering::Relaxed);
                let why = format!("the meeting service did not answer: {why}");
                if answered_before {
                    self.hang_up(&call, false, &why).await;
                } else {
                    self.fail(&call, 408, &why).await;
                }
                return;
            }
            Ok(r) => r,
        };
        let status = resp.status().unwrap_or(500);
        if !(200..300).contains(&status) {
            // The client transaction's ACK (RFC 3261 §17.1.1.3).
            if let Some(ack) = parse(&invite)
                .as_ref()
                .and_then(|inv| crate::sip::proxy::txn::build_ack(inv, &resp))
            {
                self.ack(&key, &path, ack).await;
            }
            if call.ended.is_cancelled() {
                return;
            }
            self.stats.connector_failed.fetch_add(1, Ordering::Relaxed);
            let (to_room, why) = match status {
                // Only our own CANCEL (Timer C) draws a 487 here.
                487 => (
                    480,
                    "the meeting service did not answer in time".to_string(),
                ),
                401 | 407 => (
                    503,
                    format!(
                        "the meeting service answered {status} {}",
                        resp.reason_phrase().unwrap_or("")
                    ),
                ),
                s if (500..600).contains(&s) => (
                    503,
                    format!(
                        "the meeting service answered {status} {}",
                        resp.reason_phrase().unwrap_or("")
                    ),
                ),
                s => (
                    s,
                    format!(
                        "the meeting service answered {status} {}",
                        resp.reason_phrase().unwrap_or("")
                    ),
                ),
            };
            if answered_before {
                self.hang_up(&call, false, &why).await;
            } else {
                self.fail(&call, to_room, &why).await;
            }
            return;
        }
        // The connector answered: its dialog, our ACK.
        if let Some(t) = resp.to().and_then(|t| t.tag().map(str::to_string)) {
            *lock(&leg.remote) = format!("<{uri}>;tag={t}");
        }
        if let Some(c) = resp
            .first(HeaderName::Contact)
            .and_then(|c| NameAddr::parse(c).ok().map(|na| na.uri.raw.to_string()))
        {
            *lock(&leg.target) = c;
        }
        let mut rr: Vec<String> = resp
            .values(HeaderName::RecordRoute)
            .map(str::to_string)
            .collect();
        rr.reverse();
        *lock(&leg.route) = rr;
        let (ack, _, _) = leg.build(
            "ACK",
            cseq,
            &format!("z9hG4bK-cvi{}", random_token()),
            &[],
            None,
        );
        self.ack(&key, &path, ack).await;
        if call.ended.is_cancelled() {
            // Its 200 crossed our CANCEL (or the room left): leave the meeting.
            self.bye(&leg, "the room system left").await;
            return;
        }
        let relayed = match sdp_of(&resp) {
            None => Err("the meeting service answered without SDP".to_string()),
            Some(answer_b) => self
                .relay
                .update(&call.key, Side::B, &[&answer_b], false)
                .map(|mut v| v.pop().unwrap_or_default())
                .map_err(|e| format!("the meeting service's SDP cannot be relayed: {e}")),
        };
        let for_a = match relayed {
            Ok(x) => x,
            Err(why) => {
                self.stats.connector_failed.fetch_add(1, Ordering::Relaxed);
                if answered_before {
                    self.hang_up_both(&call, &why).await;
                } else {
                    self.fail(&call, 502, &why).await;
                    self.bye(&leg, &why).await;
                }
                return;
            }
        };
        lock(&call.last_sdp)[1] = offer_b;
        self.relay.mark_answered(&call.key);
        self.stats.connected.fetch_add(1, Ordering::Relaxed);
        if !answered_before {
            if self.answer(&call, &for_a).await {
                info!(call_id = %call.room.call_id, meeting = %id, "room system joined the meeting");
            } else {
                self.hang_up_both(&call, "no ACK from the room system")
                    .await;
            }
            return;
        }
        // The room system was answered by the reception: a re-INVITE offers
        // it the meeting's media (the connector's answer, through the
        // relay), as a new version of the session it has (RFC 3264 §8).
        let previous = lock(&call.last_sdp)[0].clone();
        let for_a = continue_origin(&previous, &for_a);
        for attempt in 1..=3 {
            let (reinvite, key, cseq) =
                call.room
                    .request("INVITE", &[], Some(("application/sdp", &for_a)));
            call.reinviting.store(true, Ordering::Relaxed);
            let outcome = self
                .transact(&call.room.path, reinvite.clone(), &key, true, None, None)
                .await;
            call.reinviting.store(false, Ordering::Relaxed);
            match outcome {
                Ok(r) if r.status().is_some_and(|s| (200..300).contains(&s)) => {
                    let (ack, _, _) = call.room.build(
                        "ACK",
                        cseq,
                        &format!("z9hG4bK-cvi{}", random_token()),
                        &[],
                        None,
                    );
                    self.ack(&key, &call.room.path, ack).await;
                    if let Some(room_answer) = sdp_of(&r) {
                        let _ = self
                            .relay
                            .update(&call.key, Side::A, &[&room_answer], false);
                    }
                    lock(&call.last_sdp)[0] = for_a;
                    info!(call_id = %call.room.call_id, meeting = %id, "room system joined the meeting");
                    return;
                }
                Ok(r) => {
                    if let Some(ack) = parse(&reinvite)
                        .as_ref()
                        .and_then(|inv| crate::sip::proxy::txn::build_ack(inv, &r))
                    {
                        self.ack(&key, &call.room.path, ack).await;
                    }
                    if r.status() == Some(491) && attempt < 3 && !call.ended.is_cancelled() {
                        // Glare: the room re-INVITEd at the same time. The
                        // room owns the Call-ID, so we wait 0-2 s (RFC 3261
                        // §14.1) and offer again.
                        let wait = Duration::from_millis(rand::random_range(0..2000));
                        debug!(call_id = %call.room.call_id, ?wait, "re-INVITE glare: offering again");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => continue,
                            _ = call.ended.cancelled() => return,
                        }
                    }
                    let why = format!(
                        "the room system refused the meeting's media ({})",
                        r.status().unwrap_or(0)
                    );
                    self.hang_up_both(&call, &why).await;
                    return;
                }
                Err(why) => {
                    self.hang_up_both(
                        &call,
                        &format!("the room system did not answer the re-INVITE: {why}"),
                    )
                    .await;
                    return;
                }
            }
        }
    }

    /// Trusted by source address, or by a domain its verified TLS client
    /// certificate names. The From domain is the caller's to choose, so it
    /// is never taken as proof.
    fn trusted(&self, call: &Call) -> bool {
        let ip = call.source.remote.ip();
        let names = call.source.identity.as_deref().map(|i| i.names.as_slice());
        self.cfg.trusted.iter().any(|t| {
            t.matches(ip, None)
                || names
                    .unwrap_or_default()
                    .iter()
                    .any(|n| t.matches(ip, Some(n)))
        })
    }

    async fn on_request(self: Arc<Self>, msg: SipMessage, source: Source) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let call_id = msg.call_id().unwrap_or("").to_string();
        let in_dialog = msg.to().is_some_and(|t| t.tag().is_some());
        match method {
            Method::Invite if !in_dialog => {
                let done = lock(&self.finals).get(&call_id).map(|(r, _)| r.clone());
                if let Some(r) = done {
                    self.respond(&msg, &source, r).await;
                    return;
                }
                if let Some(call) = self.call(&call_id) {
                    // A retransmission: the last answer again.
                    let last = lock(&call.last).clone();
                    if let Some(r) = last {
                        self.respond(&msg, &source, r).await;
                    }
                    return;
                }
                // A copy arriving while the first is still being set up
                // (its 100 Trying is on the way) starts nothing.
                if !lock(&self.starting).insert(call_id.clone()) {
                    return;
                }
                tokio::spawn(self.clone().new_call(msg, source));
            }
            Method::Ack => {
                if let Some(call) = self.call(&call_id)
                    && call_id == call.room.call_id
                {
                    call.acked_flag.store(true, Ordering::Relaxed);
                    call.acked.notify_waiters();
                }
            }
            Method::Cancel => {
                let call = self.call(&call_id).filter(|c| c.room.call_id == call_id);
                let (status, why) = match call {
                    Some(_) => (200, None),
                    None => (481, Some("no call in progress here has this Call-ID")),
                };
                let r = self.response(&msg, status, None, why).build();
                self.respond(&msg, &source, r).await;
                if let Some(call) = call
                    && !call.answered.swap(true, Ordering::Relaxed)
                {
                    let r = self
                        .response(&call.invite, 487, Some(&call.tag), None)
                        .build();
                    self.remember_final(&call_id, &r);
                    *lock(&call.last) = Some(r.clone());
                    self.respond(&call.invite, &call.source, r).await;
                    self.end(&call, "cancelled by the room system");
                }
            }
            // Room systems and load balancers ping with OPTIONS.
            Method::Options if !in_dialog || self.call(&call_id).is_none() => {
                let r = self
                    .response(&msg, 200, Some(&random_token()), None)
                    .header("Allow", ALLOW)
                    .header(
                        "Accept",
                        "application/sdp, application/dtmf-relay, application/dtmf",
                    )
                    .build();
                self.respond(&msg, &source, r).await;
            }
            _ => {
                let Some(call) = self.call(&call_id) else {
                    let r = self
                        .response(&msg, 481, None, Some("no call here has this Call-ID"))
                        .build();
                    self.respond(&msg, &source, r).await;
                    return;
                };
                let from_room = call_id == call.room.call_id;
                match method {
                    Method::Bye => {
                        let r = self.response(&msg, 200, None, None).build();
                        self.respond(&msg, &source, r).await;
                        let who = if from_room {
                            "the room system hung up"
                        } else {
                            "the meeting service hung up"
                        };
                        // The other leg's BYE waits for its answer, which
                        // may arrive on this very socket or connection: not
                        // on the reader's time.
                        let me = self.clone();
                        tokio::spawn(async move { me.hang_up(&call, from_room, who).await });
                    }
                    Method::Info => {
                        let r = self.response(&msg, 200, None, None).build();
                        self.respond(&msg, &source, r).await;
                        if from_room
                            && let Some(d) = dtmf::info_digit(
                                msg.first(HeaderName::ContentType).unwrap_or(""),
                                msg.body(),
                            )
                        {
                            let _ = call.keys.try_send(d);
                        }
                    }
                    Method::Invite if from_room && call.reinviting.load(Ordering::Relaxed) => {
                        // Glare with our own re-INVITE (RFC 3261 §14.2).
                        let r = self
                            .response(&msg, 491, None, None)
                            .header("Retry-After", "2")
                            .build();
                        self.respond(&msg, &source, r).await;
                    }
                    Method::Invite | Method::Update => {
                        // A refresh or a change of address: follow it, answer with what we sent last.
                        let offer = sdp_of(&msg);
                        let last = lock(&call.last_sdp)[if from_room { 0 } else { 1 }].clone();
                        let streams = |b: &[u8]| sdp::describe(b).map(|d| d.streams.len()).ok();
                        if let Some(s) = &offer
                            && !last.is_empty()
                            && streams(s) != streams(&last)
                        {
                            // Our answer must keep the offer's m= lines
                            // (RFC 3264 §8); the other leg cannot follow a
                            // stream added or removed here.
                            let r = self
                                .response(&msg, 488, None, Some("the gateway cannot add or remove media streams during a call"))
                                .build();
                            self.respond(&msg, &source, r).await;
                            return;
                        }
                        if let Some(s) = &offer {
                            let side = if from_room { Side::A } else { Side::B };
                            let _ = self.relay.update(&call.key, side, &[s], false);
                        }
                        let contact = if from_room {
                            call.room.contact.clone()
                        } else {
                            lock(&call.connector)
                                .as_ref()
                                .map(|l| l.contact.clone())
                                .unwrap_or_default()
                        };
                        let mut b = self
                            .response(&msg, 200, None, None)
                            .header("Contact", contact);
                        // An INVITE gets an answer (or our offer, if it had
                        // none); an UPDATE only when it made an offer.
                        if !last.is_empty() && (method == Method::Invite || offer.is_some()) {
                            b = b.body("application/sdp", Bytes::from(last));
                        }
                        let r = b.build();
                        self.respond(&msg, &source, r).await;
                    }
                    Method::Options => {
                        let r = self
                            .response(&msg, 200, None, None)
                            .header("Allow", ALLOW)
                            .build();
                        self.respond(&msg, &source, r).await;
                    }
                    _ => {
                        let r = self
                            .response(&msg, 405, None, None)
                            .header("Allow", ALLOW)
                            .build();
                        self.respond(&msg, &source, r).await;
                    }
                }
            }
        }
    }

    async fn on_response(&self, msg: SipMessage) {
        let (Some(call_id), Some(cseq)) = (msg.call_id(), msg.cseq()) else {
            return;
        };
        let key = format!("{call_id}|{}|{}", cseq.seq, cseq.method);
        let tx = lock(&self.pending).get(&key).cloned();
        if let Some(tx) = tx {
            let _ = tx.send(msg);
            return;
        }
        // A retransmitted final answer to an INVITE already answered: the
        // same ACK again.
        if msg.status().is_some_and(|s| s >= 200) {
            let again = lock(&self.acks)
                .get(&key)
                .map(|(p, a, _)| (p.clone(), a.clone()));
            if let Some((path, ack)) = again {
                self.send(&path, ack).await;
            }
        }
    }
}

impl Handler for Gateway {
    async fn on_message(&self, inbound: Inbound) {
        let Inbound { msg, source } = inbound;
        if msg.is_request() {
            if let Some(me) = self.me.upgrade() {
                me.on_request(msg, source).await;
            }
        } else {
            self.on_response(msg).await;
        }
    }
}

/// Turns the RTP packets of telephone-events into key presses: every
/// packet of one press carries the same digit and timestamp (RFC 4733
/// §2.5.1.2), so a press is counted once. A press replayed with the same
/// timestamp counts again after a silence (recorded key presses do this).
#[derive(Debug, Default)]
struct Presses {
    last: Option<(char, u32, tokio::time::Instant)>,
}

impl Presses {
    const SILENCE: Duration = Duration::from_millis(150);

    fn packet(&mut self, e: dtmf::Event, now: tokio::time::Instant) -> Option<char> {
        let digit = e.digit.to_ascii_uppercase();
        let same = self.last.is_some_and(|(d, ts, at)| {
            d == digit && ts == e.timestamp && now.duration_since(at) < Self::SILENCE
        });
        self.last = Some((digit, e.timestamp, now));
        // The end packets of a press that was never heard still count it.
        (!same).then_some(digit)
    }
}

fn parse(data: &Bytes) -> Option<SipMessage> {
    let he = find_head_end(data, 0)?;
    parse_framed(data.clone(), he, &Limits::default()).ok()
}

fn fmt_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The offer's first audio stream the reception can speak: its index, the
/// G.711 codec (the first of PCMU/PCMA offered) and the telephone-event
/// payload type if offered.
fn choose_audio(offer: &[u8], desc: &sdp::Description) -> Option<(usize, Codec, Option<u8>)> {
    let text = std::str::from_utf8(offer).ok()?;
    let sections: Vec<&str> = text.split("\nm=").skip(1).collect();
    for (i, s) in desc.streams.iter().enumerate() {
        if s.media != "audio" || s.port == 0 || !s.relayed {
            continue;
        }
        let section = sections.get(i)?;
        let fmts: Vec<&str> = section
            .lines()
            .next()?
            .split_ascii_whitespace()
            .skip(2)
            .collect();
        let codec = fmts.iter().find_map(|f| match *f {
            "0" => Some(Codec::Pcmu),
            "8" => Some(Codec::Pcma),
            _ => None,
        })?;
        let te = section.lines().find_map(|l| {
            let v = l.trim_end_matches('\r').strip_prefix("a=rtpmap:")?;
            let (pt, name) = v.split_once(' ')?;
            name.to_ascii_lowercase()
                .starts_with("telephone-event/8000")
                .then(|| pt.parse().ok())
                .flatten()
        });
        return Some((i, codec, te));
    }
    None
}

fn sdp_head(addr: IpAddr) -> String {
    let kind = if addr.is_ipv4() { "IP4" } else { "IP6" };
    format!("v=0\r\no=fedge 1 1 IN {kind} {addr}\r\ns=fedge\r\nc=IN {kind} {addr}\r\nt=0 0\r\n")
}

/// The reception's SDP: G.711 (and telephone-event) on its socket for the
/// chosen audio stream; every other stream declined (port 0).
fn player_sdp(
    desc: &sdp::Description,
    offer: &[u8],
    audio_i: usize,
    local: SocketAddr,
    codec: Codec,
    te: Option<u8>,
) -> String {
    let mut s = sdp_head(local.ip());
    let text = String::from_utf8_lossy(offer);
    let m_lines: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.trim_end_matches('\r')
                .strip_prefix("m=")
                .map(str::to_string)
        })
        .collect();
    for (i, st) in desc.streams.iter().enumerate() {
        if i == audio_i {
            let mut fmts = codec.payload_type().to_string();
            if let Some(pt) = te {
                fmts.push_str(&format!(" {pt}"));
            }
            s.push_str(&format!("m=audio {} {} {fmts}\r\n", local.port(), st.proto));
            s.push_str(&format!(
                "a=rtpmap:{} {}/8000\r\n",
                codec.payload_type(),
                codec.name()
            ));
            if let Some(pt) = te {
                s.push_str(&format!(
                    "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-15\r\n"
                ));
            }
            s.push_str("a=sendrecv\r\n");
        } else {
            let fmts = m_lines
                .get(i)
                .map(|l| {
                    l.split_ascii_whitespace()
                        .skip(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| "0".into());
            s.push_str(&format!(
                "m={} 0 {} {}\r\n",
                st.media,
                st.proto,
                if fmts.is_empty() { "0".into() } else { fmts }
            ));
        }
    }
    s
}

/// The test call's SDP: every relayed stream of the offer, as offered,
/// pointing at an echo socket.
fn echo_sdp(offer: &[u8], socks: &[Option<Arc<UdpSocket>>]) -> String {
    let text = String::from_utf8_lossy(offer);
    let ip = socks
        .iter()
        .flatten()
        .find_map(|s| s.local_addr().ok().map(|a| a.ip()))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut out = sdp_head(ip);
    let mut i = 0usize;
    let mut in_media = false;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_ascii_whitespace();
            let media = parts.next().unwrap_or("audio");
            let _port = parts.next();
            let rest: Vec<&str> = parts.collect();
            let port = socks
                .get(i)
                .cloned()
                .flatten()
                .and_then(|s| s.local_addr().ok())
                .map(|a| a.port())
                .unwrap_or(0);
            out.push_str(&format!("m={media} {port} {}\r\n", rest.join(" ")));
            i += 1;
            in_media = true;
            continue;
        }
        // Keep codec and format lines; the relay owns addresses and ICE.
        if in_media
            && (line.starts_with("a=rtpmap:")
                || line.starts_with("a=fmtp:")
                || line.starts_with("a=rtcp-fb:"))
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_presses_from_rtp() {
        let t0 = tokio::time::Instant::now();
        let ev = |digit, timestamp, end| dtmf::Event {
            timestamp,
            digit,
            end,
        };
        let mut p = Presses::default();
        let mut got = String::new();
        let mut at = |p: &mut Presses, e, ms: u64| {
            if let Some(d) = p.packet(e, t0 + Duration::from_millis(ms)) {
                got.push(d);
            }
        };
        // One press: seven packets and three end packets, 20 ms apart.
        for i in 0..10u64 {
            at(&mut p, ev('1', 13280, i >= 7), i * 20);
        }
        // The same recording again after a pause: a second press.
        for i in 0..10u64 {
            at(&mut p, ev('1', 13280, i >= 7), 500 + i * 20);
        }
        // Another digit right after, then one with a new timestamp.
        at(&mut p, ev('2', 13280, false), 700);
        at(&mut p, ev('2', 16000, false), 720);
        at(&mut p, ev('2', 16000, true), 740);
        assert_eq!(got, "1122");
    }

    #[test]
    fn the_meetings_sdp_continues_the_rooms_session() {
        let prev = b"v=0\r\no=fedge 7 3 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n";
        let next = b"v=0\r\no=pexip 99 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 4000 RTP/AVP 8\r\n";
        assert_eq!(
            continue_origin(prev, next),
            b"v=0\r\no=fedge 7 4 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 4000 RTP/AVP 8\r\n".to_vec()
        );
        // Nothing to continue (or garbage): unchanged, no panic.
        assert_eq!(continue_origin(b"", next), next.to_vec());
        assert_eq!(continue_origin(b"o=x y z", next), next.to_vec());
        assert_eq!(continue_origin(prev, b"\xff\xfe"), b"\xff\xfe".to_vec());
        assert_eq!(
            continue_origin(
                b"o=a 1 18446744073709551615 IN IP4 h\n",
                b"o=b 2 2 IN IP4 h\n"
            ),
            b"o=a 1 18446744073709551615 IN IP4 h\n".to_vec()
        );
    }

    #[test]
    fn what_was_dialled() {
        let d = |u: &str| dialled(u, "teams", "test_call", Some("12345678"));
        assert_eq!(d("teams"), Dialled::Reception);
        assert_eq!(d("TEAMS"), Dialled::Reception);
        assert_eq!(d("test_call"), Dialled::TestCall);
        assert_eq!(d("1234567890"), Dialled::Meeting("1234567890".into()));
        assert_eq!(
            d("12345678.1234567890"),
            Dialled::Meeting("1234567890".into())
        );
        assert_eq!(
            d("99999999.1234567890"),
            Dialled::Unknown("99999999.1234567890".into())
        );
        assert_eq!(d("123"), Dialled::Unknown("123".into()));
    }

    #[test]
    fn reception_and_echo_sdp() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                     m=audio 5000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
                     m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f\r\n";
        let d = sdp::describe(offer.as_bytes()).unwrap();
        assert_eq!(
            choose_audio(offer.as_bytes(), &d),
            Some((0, Codec::Pcma, Some(101)))
        );
        let local: SocketAddr = "127.0.0.2:6000".parse().unwrap();
        let p = player_sdp(&d, offer.as_bytes(), 0, local, Codec::Pcma, Some(101));
        assert!(p.contains("m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000"), "{p}");
        assert!(p.contains("m=video 0 RTP/AVP 96\r\n"), "{p}");
        let pd = sdp::describe(p.as_bytes()).unwrap();
        assert_eq!(pd.streams.len(), 2);
        assert_eq!(pd.streams[0].address, Some(local.ip()));
        let no_g711 = offer.replace("9 8 0 101", "9 101");
        assert_eq!(
            choose_audio(
                no_g711.as_bytes(),
                &sdp::describe(no_g711.as_bytes()).unwrap()
            ),
            None
        );
        let e = echo_sdp(offer.as_bytes(), &[None, None]);
        assert!(
            e.contains("m=audio 0 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000")
                && e.contains("m=video 0 RTP/AVP 96"),
            "{e}"
        );
    }
}
