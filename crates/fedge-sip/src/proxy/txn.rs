//! Transactions of a stateful proxy (RFC 3261 §17, with RFC 6026's
//! Accepted state): server transactions for requests received, client
//! transactions for requests forwarded, their timers, and the tables that
//! match messages to them. `ClientTxn` is the crate's only client
//! transaction: `crate::ua` drives it for a user agent's own requests.
//!
//! Owns retransmission (UDP only), timeouts (Timer B/F, C for INVITE),
//! hop-by-hop ACK for non-2xx answers, CANCEL towards the next hop, and the
//! cleanup of transaction state. Transactions have no tasks of their own:
//! responses and one shared timer queue drive them, and they return what
//! to send. Decides nothing about where a request goes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

use super::topology::ResponseEdit;
use crate::message::{Method, SipMessage};
use crate::request::RequestBuilder;
use crate::transport::{Capture, Connection, SendError, Source};
use crate::validate::MAGIC_COOKIE;

/// Transaction timers. T1, T2 and T4 as in RFC 3261 §17; `timer_c` is the
/// proxy's INVITE timer (§16.6), more than three minutes by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    pub timer_c: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(181),
        }
    }
}

impl Timers {
    /// 64*T1: Timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// How a forwarded request (and its retransmissions, ACK or CANCEL) travels.
#[derive(Debug, Clone)]
pub enum SendPath {
    Udp {
        sock: Arc<UdpSocket>,
        to: SocketAddr,
        /// Where a copy of each datagram sent goes (HEP capture).
        capture: Option<Capture>,
    },
    Stream(Connection),
}

/// What a client transaction needs to know of the way its request
/// travels: whether it retransmits (UDP) or not (a stream).
pub trait Reliability {
    fn reliable(&self) -> bool;
}

impl Reliability for SendPath {
    fn reliable(&self) -> bool {
        SendPath::reliable(self)
    }
}

impl SendPath {
    pub fn reliable(&self) -> bool {
        matches!(self, SendPath::Stream(_))
    }

    pub async fn send(&self, data: Bytes) -> Result<(), SendError> {
        match self {
            SendPath::Udp { sock, to, capture } => {
                crate::transport::udp::send_to(sock, &data, *to, capture.as_ref())
                    .await
                    .map_err(|e| SendError::Udp(*to, e))
            }
            SendPath::Stream(c) => c.send(data),
        }
    }
}

/// The key of a server transaction (RFC 3261 §17.2.3; RFC 2543 fallback).
pub fn server_key(msg: &SipMessage) -> Option<String> {
    let via = msg.top_via()?;
    let method = match msg.method()? {
        Method::Ack => "INVITE",
        m => m.as_str(),
    };
    use std::fmt::Write as _;
    let mut sent_by = String::with_capacity(48);
    let _ = write!(sent_by, "{}:{}", via.host, via.port.unwrap_or(0));
    sent_by.make_ascii_lowercase();
    match via.branch() {
        Some(b) if b.starts_with(MAGIC_COOKIE) => {
            // One allocation for the key (it is built for every request).
            let mut key = String::with_capacity(b.len() + sent_by.len() + method.len() + 2);
            key.push_str(b);
            key.push('|');
            key.push_str(&sent_by);
            key.push('|');
            key.push_str(method);
            Some(key)
        }
        _ => {
            // RFC 2543 peers: no usable branch. Match on what identifies the
            // request instead (the To tag is left out so the ACK matches).
            let from_tag = msg
                .from()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default();
            let cseq = msg.cseq().map(|c| c.seq).unwrap_or(0);
            Some(format!(
                "2543|{}|{from_tag}|{cseq}|{sent_by}|{method}",
                msg.call_id().unwrap_or("")
            ))
        }
    }
}

/// The key of a client transaction: our branch and the CSeq method.
pub fn client_key(branch: &str, method: &str) -> String {
    let method = if method == "ACK" { "INVITE" } else { method };
    let mut key = String::with_capacity(branch.len() + method.len() + 1);
    key.push_str(branch);
    key.push('|');
    key.push_str(method);
    key
}

#[derive(Debug, Default)]
struct ServerState {
    last: Option<Bytes>,
    final_status: Option<u16>,
    client: Option<String>,
    cancelled: bool,
}

/// A request we received and must answer.
#[derive(Debug)]
pub struct ServerTxn {
    pub key: String,
    pub invite: bool,
    pub source: Source,
    /// When the request arrived (a drain waits only for the older ones).
    pub born: Instant,
    /// The proxy judged the request in a dialog it knows.
    in_dialog: AtomicBool,
    target: SocketAddr,
    state: Mutex<ServerState>,
    table: Weak<Tables>,
    timers: Timers,
}

impl ServerTxn {
    fn lock(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a response upstream and moves the transaction on.
    pub async fn respond(&self, data: Bytes, status: u16) {
        {
            let mut st = self.lock();
            match st.final_status {
                // After a final answer only 2xx retransmissions of an INVITE pass.
                Some(f)
                    if !(self.invite
                        && (200..300).contains(&f)
                        && (200..300).contains(&status)) =>
                {
                    return;
                }
                _ => {}
            }
            // Only a UDP peer retransmits: over a stream, nothing is kept.
            st.last = (!self.source.transport.is_stream()).then(|| data.clone());
            if status >= 200 && st.final_status.is_none() {
                st.final_status = Some(status);
                st.client = None;
                self.schedule_end(status);
            }
        }
        if let Err(e) = self.source.send_back(data, Some(self.target)).await {
            warn!(role = %self.source.tag, remote = %self.source.remote, error = %e, "response not sent upstream");
        }
    }

    fn schedule_end(&self, status: u16) {
        let reliable = self.source.transport.is_stream();
        let wait = match (self.invite, (200..300).contains(&status), reliable) {
            (false, _, true) => Duration::ZERO,       // Timer J, reliable
            (false, _, false) => self.timers.t1x64(), // Timer J
            (true, true, _) => self.timers.t1x64(),   // Timer L (RFC 6026)
            // Timer H, ended early by the ACK; over a stream the ACK comes
            // at once or not at all, so a refused INVITE is not kept 64*T1.
            (true, false, true) => self.timers.t4,
            (true, false, false) => self.timers.t1x64(),
        };
        let Some(table) = self.table.upgrade() else {
            return;
        };
        if wait.is_zero() {
            table.remove_server(&self.key);
        } else {
            table
                .wheel
                .schedule(Instant::now() + wait, TimerKey::ServerEnd(self.key.clone()));
        }
    }

    /// A retransmission of the request arrived: repeat the last response.
    pub async fn retransmission(&self) {
        let last = self.lock().last.clone();
        if let Some(data) = last {
            let _ = self.source.send_back(data, Some(self.target)).await;
        }
    }

    /// The hop-by-hop ACK for a non-2xx final answer: the transaction is done.
    pub fn ack(&self) -> bool {
        let absorbed = matches!(self.lock().final_status, Some(s) if s >= 300);
        if let (true, Some(t)) = (absorbed, self.table.upgrade()) {
            t.remove_server(&self.key);
        }
        absorbed
    }

    pub fn final_sent(&self) -> bool {
        self.lock().final_status.is_some()
    }

    /// Marks the request as one in a dialog the proxy knows (its own
    /// judgement, made after the transaction began).
    pub fn set_in_dialog(&self) {
        self.in_dialog.store(true, Ordering::Relaxed);
    }

    /// Whether [`ServerTxn::set_in_dialog`] was called.
    pub fn in_dialog(&self) -> bool {
        self.in_dialog.load(Ordering::Relaxed)
    }

    /// Links the client transaction forwarding this request. Returns
    /// `None` when a final answer already went up, else whether upstream
    /// has cancelled in the meantime.
    pub fn attach(&self, client_key: &str) -> Option<bool> {
        let mut st = self.lock();
        if st.final_status.is_some() {
            return None;
        }
        st.client = Some(client_key.to_string());
        Some(st.cancelled)
    }

    /// Upstream cancelled: returns the client transaction to pass it to.
    pub fn cancel(&self) -> Option<String> {
        let mut st = self.lock();
        st.cancelled = true;
        st.client.clone()
    }
}

/// What a timer entry refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerKey {
    Client(String),
    ServerEnd(String),
}

/// Timers fire on multiples of this, so the timer task wakes at most a
/// hundred times a second however many transactions there are.
pub const TICK: Duration = Duration::from_millis(10);

/// One timer queue for every transaction: entries are cheap to add, a
/// single task fires them in batches, and an entry that became stale does
/// nothing.
#[derive(Debug)]
pub struct Wheel {
    base: Instant,
    due: Mutex<BTreeMap<(Instant, u64), TimerKey>>,
    seq: AtomicU64,
    notify: Notify,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            base: Instant::now(),
            due: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }
}

impl Wheel {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Instant, u64), TimerKey>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rounds up to the next tick.
    fn round(&self, at: Instant) -> Instant {
        let tick = TICK.as_nanos();
        let since = at.saturating_duration_since(self.base).as_nanos();
        let ticks = since.div_ceil(tick);
        self.base + Duration::from_nanos(u64::try_from(ticks * tick).unwrap_or(u64::MAX))
    }

    pub fn schedule(&self, at: Instant, key: TimerKey) {
        let at = self.round(at);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut due = self.lock();
        let earlier = due.keys().next().is_none_or(|(first, _)| at < *first);
        due.insert((at, seq), key);
        drop(due);
        if earlier {
            self.notify.notify_one();
        }
    }

    /// Entries due by `now`, removed from the queue.
    pub fn take_due(&self, now: Instant) -> Vec<TimerKey> {
        let mut due = self.lock();
        let later = due.split_off(&(now, u64::MAX));
        let fired = std::mem::replace(&mut *due, later);
        fired.into_values().collect()
    }

    pub fn next(&self) -> Option<Instant> {
        self.lock().keys().next().map(|(t, _)| *t)
    }

    /// Waits until the earliest entry is due or an earlier one is added.
    pub async fn wait(&self) {
        match self.next() {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = self.notify.notified() => {}
                }
            }
            None => self.notify.notified().await,
        }
    }
}

/// Transaction tables hash with foldhash: seeded per process, and several
/// times cheaper than SipHash on these short keys.
type Map<V> = foldhash::HashMap<String, V>;

/// The transaction tables and their timers.
#[derive(Debug, Default)]
pub struct Tables {
    servers: Mutex<Map<Arc<ServerTxn>>>,
    /// Live server transactions per source address of the outside side.
    per_source: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    clients: Mutex<Map<Arc<ClientTxn>>>,
    pub wheel: Wheel,
}

impl Tables {
    pub fn new() -> Arc<Tables> {
        Arc::new(Tables::default())
    }

    fn servers(&self) -> std::sync::MutexGuard<'_, Map<Arc<ServerTxn>>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, Map<Arc<ClientTxn>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn server(&self, key: &str) -> Option<Arc<ServerTxn>> {
        self.servers().get(key).cloned()
    }

    /// Creates a server transaction, or returns the existing one (a retransmission).
    pub fn server_or_insert(
        self: &Arc<Self>,
        key: String,
        invite: bool,
        source: &Source,
        target: SocketAddr,
        timers: Timers,
    ) -> (Arc<ServerTxn>, bool) {
        let mut map = self.servers();
        if let Some(t) = map.get(&key) {
            return (t.clone(), false);
        }
        let t = Arc::new(ServerTxn {
            key: key.clone(),
            invite,
            source: source.clone(),
            born: Instant::now(),
            in_dialog: AtomicBool::new(false),
            target,
            state: Mutex::new(ServerState::default()),
            table: Arc::downgrade(self),
            timers,
        });
        map.insert(key, t.clone());
        drop(map);
        if source.tag.side == crate::transport::Side::Outside {
            *self.sources().entry(source.remote.ip()).or_insert(0) += 1;
        }
        (t, true)
    }

    fn sources(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, usize>> {
        self.per_source.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live server transactions of requests from `ip` on the outside side.
    pub fn server_count_of(&self, ip: std::net::IpAddr) -> usize {
        self.sources().get(&ip).copied().unwrap_or(0)
    }

    pub fn remove_server(&self, key: &str) {
        let removed = self.servers().remove(key);
        if let Some(t) = removed
            && t.source.tag.side == crate::transport::Side::Outside
        {
            let ip = t.source.remote.ip();
            let mut per = self.sources();
            if let Some(n) = per.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per.remove(&ip);
                }
            }
        }
    }

    pub fn client(&self, key: &str) -> Option<Arc<ClientTxn>> {
        self.clients().get(key).cloned()
    }

    pub fn insert_client(&self, t: Arc<ClientTxn>) {
        self.clients().insert(t.key.clone(), t);
    }

    pub fn remove_client(&self, key: &str) {
        self.clients().remove(key);
    }

    pub fn counts(&self) -> (usize, usize) {
        (self.servers().len(), self.clients().len())
    }

    /// Server transactions whose final answer has not gone upstream yet.
    pub fn pending(&self) -> usize {
        // Each transaction's own lock is taken after the table's is let go
        // (`respond` takes them in the other order).
        let all: Vec<Arc<ServerTxn>> = self.servers().values().cloned().collect();
        all.iter().filter(|t| !t.final_sent()).count()
    }

    /// As [`Tables::pending`], counting only the transactions begun at or
    /// before `at`.
    pub fn pending_since(&self, at: Instant) -> usize {
        let all: Vec<Arc<ServerTxn>> = self.servers().values().cloned().collect();
        all.iter()
            .filter(|t| t.born <= at && !t.final_sent())
            .count()
    }

    /// Live client transactions (one lock, for the per-request load signal).
    pub fn client_count(&self) -> usize {
        self.clients().len()
    }
}

/// Builds the ACK for a non-2xx answer from that answer.
pub type AckBuilder = Box<dyn Fn(&SipMessage) -> Bytes + Send + Sync>;

/// Where a client transaction's answers go.
#[derive(Debug)]
pub enum Upstream {
    /// A request we are proxying: its server transaction.
    Server(Arc<ServerTxn>),
    /// A request the edge sent itself: the final answer goes to its waiter.
    Local(Mutex<Option<tokio::sync::oneshot::Sender<SipMessage>>>),
}

/// Everything a client transaction starts with. `P` is how its request
/// travels: the proxy's `SendPath`, or a user agent's own path.
pub struct ClientSpec<P = SendPath> {
    pub key: String,
    pub method: Method,
    /// The request as forwarded (for retransmissions).
    pub request: Bytes,
    /// For INVITE: the CANCEL to send if asked.
    pub cancel: Option<Bytes>,
    /// For INVITE: builds the ACK for a non-2xx final answer.
    pub ack_for: Option<AckBuilder>,
    pub path: P,
    pub timers: Timers,
    /// Where answers go.
    pub upstream: Upstream,
    /// The request as received, to answer upstream on a timeout.
    pub received: SipMessage,
    /// What to do to responses before they go upstream (topology hiding).
    pub response_edit: ResponseEdit,
}

/// Something the proxy must do for a client transaction.
#[derive(Debug)]
pub enum Action {
    /// Send these bytes to the next hop (a retransmission, ACK or CANCEL).
    Downstream(Bytes),
    /// Pass this response upstream.
    Upstream(SipMessage),
    /// No final answer came: answer upstream (to this request) with this status and reason.
    Timeout(SipMessage, u16, &'static str),
}

enum Phase {
    /// Waiting for any answer (Calling / Trying).
    Waiting,
    /// A provisional answer came (Proceeding).
    Proceeding,
    /// A final answer came; absorbing retransmissions until the deadline.
    Done,
}

struct ClientState {
    phase: Phase,
    /// The request as received, kept until a final answer (for a 408).
    received: Option<SipMessage>,
    request: Option<Bytes>,
    every: Duration,
    next_retransmit: Option<Instant>,
    deadline: Instant,
    cancel: Option<Bytes>,
    cancel_wanted: bool,
    cancel_sent: bool,
    ack_for: Option<AckBuilder>,
    ack: Option<Bytes>,
    scheduled: Option<Instant>,
}

/// A request we forwarded (or, for a user agent, sent), waiting for its
/// answers. It has no task of its own: responses and timers drive it, and
/// it returns what to do.
pub struct ClientTxn<P = SendPath> {
    pub key: String,
    pub invite: bool,
    pub path: P,
    pub upstream: Upstream,
    pub response_edit: ResponseEdit,
    timers: Timers,
    st: Mutex<ClientState>,
}

impl<P> std::fmt::Debug for ClientTxn<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTxn")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The outcome of driving a client transaction once.
pub struct Step {
    pub actions: Vec<Action>,
    /// When to wake it next; `None` when it has ended.
    pub next: Option<Instant>,
}

impl<P: Reliability> ClientTxn<P> {
    pub fn new(spec: ClientSpec<P>) -> Arc<ClientTxn<P>> {
        let now = Instant::now();
        let reliable = spec.path.reliable();
        let t = spec.timers;
        Arc::new(ClientTxn {
            key: spec.key,
            invite: spec.method == Method::Invite,
            path: spec.path,
            upstream: spec.upstream,
            response_edit: spec.response_edit,
            timers: t,
            st: Mutex::new(ClientState {
                phase: Phase::Waiting,
                received: Some(spec.received),
                request: (!reliable).then_some(spec.request),
                every: t.t1,
                next_retransmit: (!reliable).then(|| now + t.t1),
                // Timer B (INVITE) or F; for INVITE, Timer C replaces it after a provisional.
                deadline: now + t.t1x64(),
                cancel: spec.cancel,
                cancel_wanted: false,
                cancel_sent: false,
                ack_for: spec.ack_for,
                ack: None,
                scheduled: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClientState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next wake-up, if it is not already scheduled; marks it scheduled.
    pub fn wake_to_schedule(&self, next: Instant) -> Option<Instant> {
        let mut st = self.lock();
        if st.scheduled.is_some_and(|s| s <= next) {
            return None;
        }
        st.scheduled = Some(next);
        Some(next)
    }

    fn next_wake(st: &ClientState) -> Instant {
        st.next_retransmit
            .map_or(st.deadline, |r| r.min(st.deadline))
    }

    fn cancel_now(&self, st: &mut ClientState, now: Instant, out: &mut Vec<Action>) -> bool {
        match &st.cancel {
            Some(c) => {
                out.push(Action::Downstream(c.clone()));
                st.cancel_sent = true;
                // Give the INVITE 64*T1 more for its 487.
                st.deadline = now + self.timers.t1x64();
                true
            }
            None => false,
        }
    }

    /// A response from the next hop.
    pub fn on_response(&self, resp: SipMessage, now: Instant) -> Step {
        let t = self.timers;
        let reliable = self.path.reliable();
        let status = resp.status().unwrap_or(0);
        let mut st = self.lock();
        let mut out = Vec::new();
        match st.phase {
            Phase::Done => {
                // A retransmitted final: repeat our ACK, or pass a 2xx on.
                if (200..300).contains(&status) && self.invite {
                    out.push(Action::Upstream(resp));
                } else if let Some(a) = &st.ack {
                    out.push(Action::Downstream(a.clone()));
                }
            }
            _ if status < 200 => {
                st.phase = Phase::Proceeding;
                if self.invite {
                    st.next_retransmit = None; // Timer A stops
                    st.deadline = now + t.timer_c;
                    if st.cancel_wanted && !st.cancel_sent {
                        self.cancel_now(&mut st, now, &mut out);
                    }
                } else if !reliable {
                    st.every = t.t2;
                }
                if status != 100 {
                    out.push(Action::Upstream(resp));
                }
            }
            _ => {
                st.phase = Phase::Done;
                st.next_retransmit = None;
                st.request = None;
                st.received = None;
                let success = (200..300).contains(&status);
                if self.invite
                    && !success
                    && let Some(build) = &st.ack_for
                {
                    let a = build(&resp);
                    out.push(Action::Downstream(a.clone()));
                    st.ack = Some(a);
                }
                out.push(Action::Upstream(resp));
                let linger = match (self.invite, success, reliable) {
                    (true, true, _) => t.t1x64(), // Timer M: pass 2xx retransmissions
                    (true, false, false) => Duration::from_secs(32), // Timer D
                    (false, _, false) => t.t4,    // Timer K
                    _ => Duration::ZERO,
                };
                if linger.is_zero() {
                    return Step {
                        actions: out,
                        next: None,
                    };
                }
                st.deadline = now + linger;
            }
        }
        let next = Self::next_wake(&st);
        Step {
            actions: out,
            next: Some(next),
        }
    }

    /// Upstream cancelled the INVITE.
    pub fn on_cancel(&self, now: Instant) -> Step {
        let mut st = self.lock();
        let mut out = Vec::new();
        if self.invite && !matches!(st.phase, Phase::Done) {
            st.cancel_wanted = true;
            if matches!(st.phase, Phase::Proceeding) && !st.cancel_sent {
                self.cancel_now(&mut st, now, &mut out);
            }
        }
        let next = Self::next_wake(&st);
        Step {
            actions: out,
            next: Some(next),
        }
    }

    fn timeout(st: &mut ClientState, why: &'static str, out: &mut Vec<Action>) {
        if let Some(r) = st.received.take() {
            out.push(Action::Timeout(r, 408, why));
        }
    }

    /// A timer fired (possibly a stale one).
    pub fn on_timer(&self, now: Instant) -> Step {
        let t = self.timers;
        let mut st = self.lock();
        st.scheduled = None;
        let mut out = Vec::new();
        if now >= st.deadline {
            match st.phase {
                Phase::Done => {
                    return Step {
                        actions: out,
                        next: None,
                    };
                }
                Phase::Proceeding if self.invite && !st.cancel_sent => {
                    // Timer C: give up on the callee politely.
                    if !self.cancel_now(&mut st, now, &mut out) {
                        Self::timeout(&mut st, "no final answer before Timer C", &mut out);
                        return Step {
                            actions: out,
                            next: None,
                        };
                    }
                }
                Phase::Waiting => {
                    Self::timeout(&mut st, "no answer from the next hop", &mut out);
                    return Step {
                        actions: out,
                        next: None,
                    };
                }
                Phase::Proceeding => {
                    Self::timeout(&mut st, "no final answer from the next hop", &mut out);
                    return Step {
                        actions: out,
                        next: None,
                    };
                }
            }
        }
        if let Some(r) = st.next_retransmit
            && now >= r
        {
            if let Some(req) = &st.request {
                out.push(Action::Downstream(req.clone()));
            }
            st.every = if self.invite {
                st.every * 2
            } else {
                (st.every * 2).min(t.t2)
            };
            st.next_retransmit = Some(now + st.every);
        }
        let next = Self::next_wake(&st);
        Step {
            actions: out,
            next: Some(next),
        }
    }
}

/// Builds the CANCEL for a forwarded INVITE (RFC 3261 §9.1).
pub fn build_cancel(invite: &SipMessage) -> Option<Bytes> {
    RequestBuilder::cancel_for(invite).map(|b| b.build())
}

/// Builds the ACK for a non-2xx answer to a forwarded INVITE (§17.1.1.3).
pub fn build_ack(invite: &SipMessage, resp: &SipMessage) -> Option<Bytes> {
    RequestBuilder::ack_for_failure(invite, resp).map(|b| b.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Limits, find_head_end, parse_framed};
    use crate::transport::{Side, Tag, Transport};

    fn msg(s: &str) -> SipMessage {
        let raw = Bytes::copy_from_slice(s.as_bytes());
        let he = find_head_end(&raw, 0).unwrap();
        parse_framed(raw, he, &Limits::default()).unwrap()
    }

    fn req(method: &str) -> SipMessage {
        msg(&format!(
            "{method} sip:bob@home.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-up\r\nMax-Forwards: 70\r\n\
             From: <sip:a@p.test>;tag=1\r\nTo: <sip:bob@home.test>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    fn resp(status: u16, method: &str) -> SipMessage {
        msg(&format!(
            "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5065;branch=z9hG4bK-fe00000000-1\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-up\r\n\
             From: <sip:a@p.test>;tag=1\r\nTo: <sip:bob@home.test>;tag=2\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    const T: Timers = Timers {
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        t4: Duration::from_secs(5),
        timer_c: Duration::from_secs(181),
    };

    async fn txn(method: &str) -> (Arc<ClientTxn>, Instant) {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let source = Source {
            tag: Tag::new("federation", Side::Outside),
            transport: Transport::Udp,
            remote: "192.0.2.1:5060".parse().unwrap(),
            local: "127.0.0.1:5065".parse().unwrap(),
            identity: None,
            conn: None,
            udp: Some(sock.clone()),
            capture: None,
        };
        let tables = Tables::new();
        let r = req(method);
        let (server, _) = tables.server_or_insert(
            server_key(&r).unwrap(),
            method == "INVITE",
            &source,
            source.remote,
            T,
        );
        let path = SendPath::Udp {
            sock,
            to: "127.0.0.1:9".parse().unwrap(),
            capture: None,
        };
        let start = Instant::now();
        let c = ClientTxn::new(ClientSpec {
            key: client_key("z9hG4bK-fe00000000-1", method),
            method: Method::from_token(method),
            request: Bytes::from_static(b"REQ"),
            cancel: Some(Bytes::from_static(b"CANCEL")),
            ack_for: Some(Box::new(|_| Bytes::from_static(b"ACK"))),
            path,
            timers: T,
            upstream: Upstream::Server(server),
            received: r,
            response_edit: ResponseEdit::Nothing,
        });
        (c, start)
    }

    fn sent(step: &Step) -> Vec<&[u8]> {
        step.actions
            .iter()
            .filter_map(|a| match a {
                Action::Downstream(b) => Some(&b[..]),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn non_invite_over_udp_retransmits_then_times_out() {
        let (c, t0) = txn("MESSAGE").await;
        // Timer E: first after T1, then 2*T1, 4*T1, ..., capped at T2.
        let mut at = t0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            let step = c.on_timer(at);
            let next = step.next.unwrap();
            gaps.push((next - at).as_millis());
            at = next;
        }
        assert_eq!(gaps, [500, 1000, 2000, 4000, 4000, 4000]);
        // Timer F at 64*T1: a 408 upstream, and the transaction ends.
        let step = c.on_timer(t0 + T.t1x64() + Duration::from_millis(1));
        assert!(step.next.is_none());
        assert!(matches!(
            step.actions.last(),
            Some(Action::Timeout(_, 408, _))
        ));
    }

    #[tokio::test]
    async fn non_invite_final_lingers_for_timer_k_and_absorbs_retransmissions() {
        let (c, t0) = txn("MESSAGE").await;
        let step = c.on_response(resp(200, "MESSAGE"), t0);
        assert!(matches!(step.actions[..], [Action::Upstream(_)]));
        assert_eq!(step.next, Some(t0 + T.t4));
        // The same final again: nothing goes anywhere.
        let step = c.on_response(resp(200, "MESSAGE"), t0 + Duration::from_secs(1));
        assert!(step.actions.is_empty());
        assert!(c.on_timer(t0 + T.t4).next.is_none());
    }

    #[tokio::test]
    async fn invite_provisional_stops_retransmission_and_cancel_waits_for_it() {
        let (c, t0) = txn("INVITE").await;
        // Cancelled before any answer: nothing is sent yet (RFC 3261 §9.1).
        let step = c.on_cancel(t0);
        assert!(sent(&step).is_empty());
        // The 180 arrives: it goes upstream and the pending CANCEL goes down.
        let step = c.on_response(resp(180, "INVITE"), t0 + Duration::from_millis(100));
        assert_eq!(sent(&step), [&b"CANCEL"[..]]);
        assert!(
            step.actions
                .iter()
                .any(|a| matches!(a, Action::Upstream(_)))
        );
        // No more INVITE retransmissions after a provisional.
        let step = c.on_timer(t0 + Duration::from_secs(3));
        assert!(sent(&step).is_empty());
        // The 487: ACKed hop by hop and passed upstream.
        let step = c.on_response(resp(487, "INVITE"), t0 + Duration::from_secs(4));
        assert_eq!(sent(&step), [&b"ACK"[..]]);
        // A retransmitted 487 gets the same ACK again.
        let step = c.on_response(resp(487, "INVITE"), t0 + Duration::from_secs(5));
        assert_eq!(sent(&step), [&b"ACK"[..]]);
    }

    #[tokio::test]
    async fn invite_2xx_passes_retransmissions_upstream() {
        let (c, t0) = txn("INVITE").await;
        let step = c.on_response(resp(200, "INVITE"), t0);
        assert!(
            sent(&step).is_empty(),
            "a 2xx is ACKed end to end, not by the proxy"
        );
        assert_eq!(step.next, Some(t0 + T.t1x64()));
        let step = c.on_response(resp(200, "INVITE"), t0 + Duration::from_secs(1));
        assert!(matches!(step.actions[..], [Action::Upstream(_)]));
    }

    #[tokio::test]
    async fn timer_c_cancels_a_ringing_invite() {
        let (c, t0) = txn("INVITE").await;
        c.on_response(resp(180, "INVITE"), t0);
        let step = c.on_timer(t0 + T.timer_c);
        assert_eq!(sent(&step), [&b"CANCEL"[..]]);
        // If even the CANCEL gets no answer, 408 after 64*T1 more.
        let step = c.on_timer(t0 + T.timer_c + T.t1x64());
        assert!(matches!(
            step.actions.last(),
            Some(Action::Timeout(_, 408, _))
        ));
    }

    #[test]
    fn keys_keep_their_shape() {
        let r = req("MESSAGE");
        assert_eq!(server_key(&r).unwrap(), "z9hG4bK-up|192.0.2.1:5060|MESSAGE");
        assert_eq!(client_key("z9hG4bK-fe1", "MESSAGE"), "z9hG4bK-fe1|MESSAGE");
        assert_eq!(client_key("z9hG4bK-fe1", "ACK"), "z9hG4bK-fe1|INVITE");
    }

    #[test]
    fn loop_hash_is_the_one_of_copied_tags() {
        use std::hash::{Hash, Hasher};
        let r = msg(
            "MESSAGE sip:bob@home.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-up\r\nMax-Forwards: 70\r\n\
             From: <sip:a@p.test>;tag=1\r\nTo: <sip:bob@home.test>;tag=9\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
        );
        // What the hash was when the tags were copied into Strings: a
        // Via of an edge that has not been upgraded must still match.
        let mut h = std::hash::DefaultHasher::new();
        r.to()
            .and_then(|t| t.tag().map(str::to_string))
            .hash(&mut h);
        r.from()
            .and_then(|f| f.tag().map(str::to_string))
            .hash(&mut h);
        r.call_id().hash(&mut h);
        r.cseq().map(|c| c.seq).hash(&mut h);
        r.request_uri_str().hash(&mut h);
        r.first(crate::headers::HeaderName::Route).hash(&mut h);
        assert_eq!(crate::proxy::loop_hash(&r), h.finish() as u32);
    }

    #[test]
    fn wheel_rounds_to_ticks_and_returns_due_entries_in_order() {
        let w = Wheel::default();
        let t0 = Instant::now();
        w.schedule(t0 + Duration::from_millis(25), TimerKey::Client("b".into()));
        w.schedule(t0 + Duration::from_millis(3), TimerKey::Client("a".into()));
        w.schedule(t0 + Duration::from_secs(9), TimerKey::ServerEnd("z".into()));
        let first = w.next().unwrap();
        assert!(
            first >= t0 + Duration::from_millis(3) && first <= t0 + Duration::from_millis(3) + TICK
        );
        let due = w.take_due(t0 + Duration::from_millis(40));
        assert_eq!(
            due,
            [TimerKey::Client("a".into()), TimerKey::Client("b".into())]
        );
        assert_eq!(w.take_due(t0 + Duration::from_millis(50)), []);
    }
}
