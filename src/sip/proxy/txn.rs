//! Transactions of a stateful proxy (RFC 3261 §17, with RFC 6026's
//! Accepted state): server transactions for requests received, client
//! transactions for requests forwarded, their timers, and the tables that
//! match messages to them.
//!
//! Owns retransmission (UDP only), timeouts (Timer B/F, C for INVITE),
//! hop-by-hop ACK for non-2xx answers, CANCEL towards the next hop, and the
//! cleanup of transaction state. Decides nothing about where a request goes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::sip::headers::HeaderName;
use crate::sip::message::{Method, SipMessage};
use crate::sip::transport::{Connection, SendError, Source};
use crate::sip::validate::MAGIC_COOKIE;

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
    },
    Stream(Connection),
}

impl SendPath {
    pub fn reliable(&self) -> bool {
        matches!(self, SendPath::Stream(_))
    }

    pub async fn send(&self, data: Bytes) -> Result<(), SendError> {
        match self {
            SendPath::Udp { sock, to } => sock
                .send_to(&data, *to)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Udp(*to, e)),
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
    let sent_by = format!("{}:{}", via.host, via.port.unwrap_or(0)).to_ascii_lowercase();
    match via.branch() {
        Some(b) if b.starts_with(MAGIC_COOKIE) => Some(format!("{b}|{sent_by}|{method}")),
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
    format!(
        "{branch}|{}",
        if method == "ACK" { "INVITE" } else { method }
    )
}

#[derive(Debug, Default)]
struct ServerState {
    last: Option<Bytes>,
    final_status: Option<u16>,
    client: Option<mpsc::UnboundedSender<ClientEvent>>,
    cancelled: bool,
}

/// A request we received and must answer.
#[derive(Debug)]
pub struct ServerTxn {
    pub key: String,
    pub invite: bool,
    pub source: Source,
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
    pub async fn respond(self: &Arc<Self>, data: Bytes, status: u16) {
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
            st.last = Some(data.clone());
            if status >= 200 && st.final_status.is_none() {
                st.final_status = Some(status);
                st.client = None;
                self.schedule_end(status);
            }
        }
        if let Err(e) = self.source.send_back(data, Some(self.target)).await {
            warn!(role = %self.source.role, remote = %self.source.remote, error = %e, "response not sent upstream");
        }
    }

    fn schedule_end(self: &Arc<Self>, status: u16) {
        let reliable = self.source.transport.is_stream();
        let wait = match (self.invite, (200..300).contains(&status), reliable) {
            (false, _, true) => Duration::ZERO,       // Timer J, reliable
            (false, _, false) => self.timers.t1x64(), // Timer J
            (true, true, _) => self.timers.t1x64(),   // Timer L (RFC 6026)
            (true, false, _) => self.timers.t1x64(),  // Timer H, ended early by the ACK
        };
        let Some(table) = self.table.upgrade() else {
            return;
        };
        let key = self.key.clone();
        if wait.is_zero() {
            table.remove_server(&key);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                table.remove_server(&key);
            });
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
        let st = self.lock();
        let absorbed = matches!(st.final_status, Some(s) if s >= 300);
        drop(st);
        if absorbed && let Some(t) = self.table.upgrade() {
            t.remove_server(&self.key);
        }
        absorbed
    }

    pub fn final_sent(&self) -> bool {
        self.lock().final_status.is_some()
    }

    /// Links the client transaction forwarding this request.
    pub fn attach(&self, client: mpsc::UnboundedSender<ClientEvent>) -> bool {
        let mut st = self.lock();
        if st.cancelled {
            let _ = client.send(ClientEvent::Cancel);
        }
        if st.final_status.is_some() {
            return false;
        }
        st.client = Some(client);
        true
    }

    /// Upstream cancelled: pass it to the client transaction.
    pub fn cancel(&self) {
        let mut st = self.lock();
        st.cancelled = true;
        if let Some(c) = &st.client {
            let _ = c.send(ClientEvent::Cancel);
        }
    }
}

/// What a client transaction reacts to.
#[derive(Debug)]
pub enum ClientEvent {
    Response(SipMessage),
    Cancel,
}

/// The transaction tables.
#[derive(Debug, Default)]
pub struct Tables {
    servers: Mutex<HashMap<String, Arc<ServerTxn>>>,
    clients: Mutex<HashMap<String, mpsc::UnboundedSender<ClientEvent>>>,
}

impl Tables {
    pub fn new() -> Arc<Tables> {
        Arc::new(Tables::default())
    }

    fn servers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ServerTxn>>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn clients(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<ClientEvent>>> {
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
            target,
            state: Mutex::new(ServerState::default()),
            table: Arc::downgrade(self),
            timers,
        });
        map.insert(key, t.clone());
        (t, true)
    }

    pub fn remove_server(&self, key: &str) {
        self.servers().remove(key);
    }

    /// Hands a response to its client transaction; false when none matches.
    pub fn deliver(&self, key: &str, resp: SipMessage) -> bool {
        match self.clients().get(key) {
            Some(tx) => tx.send(ClientEvent::Response(resp)).is_ok(),
            None => false,
        }
    }

    pub fn counts(&self) -> (usize, usize) {
        (self.servers().len(), self.clients().len())
    }
}

/// What a client transaction does with an answer it receives.
pub trait Upstream: Send + Sync + 'static {
    /// Forward a response (already stripped of our Via) upstream.
    fn forward(&self, resp: SipMessage) -> impl std::future::Future<Output = ()> + Send;
    /// No final answer came: answer upstream with this status.
    fn timeout(&self, status: u16, reason: &str) -> impl std::future::Future<Output = ()> + Send;
}

/// Builds the ACK for a non-2xx answer from that answer.
pub type AckBuilder = Box<dyn Fn(&SipMessage) -> Bytes + Send + Sync>;

/// Everything a client transaction needs to run.
pub struct ClientSpec {
    pub key: String,
    pub method: Method,
    /// The request as forwarded (for retransmissions).
    pub request: Bytes,
    /// For INVITE: the CANCEL to send if asked.
    pub cancel: Option<Bytes>,
    /// For INVITE: builds the ACK for a non-2xx final answer.
    pub ack_for: Option<AckBuilder>,
    pub path: SendPath,
    pub timers: Timers,
}

/// Registers and runs a client transaction; returns the sender of its events.
pub fn start_client<U: Upstream>(
    tables: &Arc<Tables>,
    spec: ClientSpec,
    upstream: U,
) -> mpsc::UnboundedSender<ClientEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tables.clients().insert(spec.key.clone(), tx.clone());
    let tables = tables.clone();
    tokio::spawn(async move {
        let key = spec.key.clone();
        run_client(spec, rx, upstream).await;
        tables.clients().remove(&key);
    });
    tx
}

enum Wake {
    Event(ClientEvent),
    Timer,
}

enum Phase {
    /// Waiting for any answer (Calling / Trying).
    Waiting,
    /// A provisional answer came (Proceeding).
    Proceeding,
    /// A final answer came; absorbing retransmissions until this time.
    Done,
}

async fn run_client<U: Upstream>(
    spec: ClientSpec,
    mut rx: mpsc::UnboundedReceiver<ClientEvent>,
    upstream: U,
) {
    let invite = spec.method == Method::Invite;
    let t = spec.timers;
    let reliable = spec.path.reliable();
    let start = Instant::now();
    let mut phase = Phase::Waiting;
    let mut retransmit_every = t.t1;
    let mut next_retransmit = (!reliable).then(|| start + t.t1);
    // Timer B (INVITE) or F (others); for INVITE, Timer C replaces it once a provisional arrives.
    let mut deadline = start + t.t1x64();
    let mut cancel_wanted = false;
    let mut cancel_sent = false;
    let mut ack: Option<Bytes> = None;
    loop {
        let wake = next_retransmit.map_or(deadline, |r| r.min(deadline));
        let ev = tokio::select! {
            ev = rx.recv() => match ev {
                Some(e) => Wake::Event(e),
                None => return, // nobody can reach this transaction any more
            },
            _ = tokio::time::sleep_until(wake) => Wake::Timer,
        };
        let now = Instant::now();
        match ev {
            Wake::Event(ClientEvent::Response(resp)) => {
                let status = resp.status().unwrap_or(0);
                match phase {
                    Phase::Done => {
                        // Retransmitted final: repeat our ACK, or pass a 2xx on.
                        if (200..300).contains(&status) && invite {
                            upstream.forward(resp).await;
                        } else if let Some(a) = &ack {
                            let _ = spec.path.send(a.clone()).await;
                        }
                        continue;
                    }
                    _ if status < 200 => {
                        if matches!(phase, Phase::Waiting) {
                            phase = Phase::Proceeding;
                        }
                        if invite {
                            next_retransmit = None; // Timer A stops
                            deadline = now + t.timer_c;
                            if cancel_wanted && !cancel_sent {
                                cancel_sent = send_cancel(&spec, &mut deadline).await;
                            }
                        } else if !reliable {
                            retransmit_every = t.t2;
                        }
                        if status != 100 {
                            upstream.forward(resp).await;
                        }
                    }
                    _ => {
                        phase = Phase::Done;
                        next_retransmit = None;
                        let success = (200..300).contains(&status);
                        if invite
                            && !success
                            && let Some(build) = &spec.ack_for
                        {
                            let a = build(&resp);
                            let _ = spec.path.send(a.clone()).await;
                            ack = Some(a);
                        }
                        upstream.forward(resp).await;
                        let linger = match (invite, success, reliable) {
                            (true, true, _) => t.t1x64(), // Timer M: pass 2xx retransmissions
                            (true, false, false) => Duration::from_secs(32), // Timer D
                            (false, _, false) => t.t4,    // Timer K
                            _ => Duration::ZERO,
                        };
                        if linger.is_zero() {
                            return;
                        }
                        deadline = now + linger;
                    }
                }
            }
            Wake::Event(ClientEvent::Cancel) => {
                if !invite || matches!(phase, Phase::Done) {
                    continue;
                }
                cancel_wanted = true;
                if matches!(phase, Phase::Proceeding) && !cancel_sent {
                    cancel_sent = send_cancel(&spec, &mut deadline).await;
                }
            }
            Wake::Timer => {
                if matches!(phase, Phase::Done) && now >= deadline {
                    return;
                }
                if now >= deadline {
                    match phase {
                        Phase::Proceeding if invite && !cancel_sent => {
                            // Timer C: give up on the callee politely.
                            debug!(key = %spec.key, "Timer C fired; cancelling");
                            cancel_sent = send_cancel(&spec, &mut deadline).await;
                            if !cancel_sent {
                                upstream
                                    .timeout(408, "no final answer before Timer C")
                                    .await;
                                return;
                            }
                        }
                        _ => {
                            let why = match phase {
                                Phase::Waiting => "no answer from the next hop",
                                _ => "no final answer from the next hop",
                            };
                            upstream.timeout(408, why).await;
                            return;
                        }
                    }
                    continue;
                }
                if let Some(r) = next_retransmit
                    && now >= r
                {
                    let _ = spec.path.send(spec.request.clone()).await;
                    retransmit_every = if invite {
                        retransmit_every * 2
                    } else {
                        (retransmit_every * 2).min(t.t2)
                    };
                    next_retransmit = Some(now + retransmit_every);
                }
            }
        }
    }
}

/// Sends the prepared CANCEL; gives the INVITE 64*T1 more for its 487.
async fn send_cancel(spec: &ClientSpec, deadline: &mut Instant) -> bool {
    let Some(c) = &spec.cancel else { return false };
    if spec.path.send(c.clone()).await.is_err() {
        return false;
    }
    *deadline = Instant::now() + spec.timers.t1x64();
    true
}

/// Builds the CANCEL for a forwarded INVITE (RFC 3261 §9.1): same
/// Request-URI, Call-ID, From, To, CSeq number and Route, our Via only.
pub fn build_cancel(invite: &SipMessage) -> Option<Bytes> {
    derived_request(invite, "CANCEL", None)
}

/// Builds the ACK for a non-2xx answer to a forwarded INVITE (§17.1.1.3).
pub fn build_ack(invite: &SipMessage, resp: &SipMessage) -> Option<Bytes> {
    derived_request(invite, "ACK", resp.first(HeaderName::To))
}

fn derived_request(invite: &SipMessage, method: &str, to_override: Option<&str>) -> Option<Bytes> {
    use std::fmt::Write as _;
    let uri = invite.request_uri_str()?;
    let via = invite.first(HeaderName::Via)?;
    let cseq = invite.cseq()?.seq;
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "{method} {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
    );
    for r in invite.values(HeaderName::Route) {
        let _ = write!(out, "Route: {r}\r\n");
    }
    let _ = write!(out, "From: {}\r\n", invite.first(HeaderName::From)?);
    let _ = write!(
        out,
        "To: {}\r\n",
        to_override.or_else(|| invite.first(HeaderName::To))?
    );
    let _ = write!(
        out,
        "Call-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        invite.call_id()?
    );
    Some(Bytes::from(out))
}
