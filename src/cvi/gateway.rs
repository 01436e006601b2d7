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
//! This file owns calls and dispatch: the `Handler`, the call table,
//! capacity and drain, a new call's start, the room's answers and the end
//! of a call. The rest sits beside it: `call` (a call's state), `leg`
//! (dialog state and requests), `txn` (its requests, through
//! `sip::ua`'s client transactions), `reception`,
//! `test_call`, `connector` (the connector leg), `dialog` (in-dialog
//! requests) and `sdp` (SDP helpers). It knows SIP and SDP; whether a
//! meeting exists is the store's, and it never decides that itself.

mod admit;
mod call;
mod connector;
mod dialog;
mod leg;
mod matching;
mod reception;
mod sdp;
mod share;
mod test_call;
mod txn;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Trust;
use super::guard::{FirstMessage, GuessLimits, Guesses, PerSource, Proven};
use crate::media::{MediaError, Relay, Side};
use crate::sip::headers::HeaderName;
use crate::sip::log_limit;
use crate::sip::message::{Method, SipMessage};
use crate::sip::proxy::txn::{Reliability, Timers};
use crate::sip::response::{ResponseBuilder, random_token};
use crate::sip::transport::outbound::Pool;
use crate::sip::transport::{Handler, Inbound, Source};
use crate::sip::ua::Agent;
use crate::store::Store;
use call::{Call, Refused};
pub use call::{Dialled, dialled};
use leg::{Leg, Path};
use sdp::sdp_of;

/// The log budget kind shared by the lines a room's call writes (an
/// unauthenticated source can start calls at line rate).
pub(super) const CALL_LOG: &str = "CVI call";

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
    /// Calls one source may hold at once.
    pub max_calls_per_source: usize,
    /// How long our own 200 waits for the room's ACK.
    pub ack_timeout: Duration,
    /// Probe new UDP sources with OPTIONS before their INVITE commits anything.
    pub udp_probe: bool,
    pub udp_probe_timeout: Duration,
    pub udp_proven_for: Duration,
    /// Trust by address for UDP calls too (spoofable; the operator's choice).
    pub trust_udp: bool,
    pub guesses: GuessLimits,
    /// Ends a meeting that has no `expires_at` this long after its creation.
    pub meeting_lifetime: Duration,
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
    /// New calls refused because their source holds its most calls.
    pub refused_source: AtomicU64,
    /// UDP INVITEs dropped because their source did not answer the probe.
    pub unproven: AtomicU64,
    /// In-dialog requests refused because they did not match the dialog
    /// (another peer, wrong tags or CSeq).
    pub mismatched: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
/// Error answers kept for INVITE retransmissions at most.
const MAX_FINALS: usize = 4096;

/// The methods the gateway takes, for Allow headers.
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, INFO, OPTIONS, UPDATE";

/// Removes a key from a set when dropped (whatever path a task leaves by).
struct Forget<'a>(&'a Mutex<std::collections::HashSet<String>>, String);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(&self.1);
    }
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
    /// The client transactions of both legs.
    agent: Arc<Agent<Path>>,
    /// Error answers to INVITEs of calls that never started, by Call-ID,
    /// for the INVITE's retransmissions (kept 32 s, RFC 3261 Timer H).
    finals: Mutex<HashMap<String, (Bytes, tokio::time::Instant)>>,
    /// Call-IDs of room INVITEs being set up (not yet in `calls`).
    starting: Mutex<std::collections::HashSet<String>>,
    live: AtomicUsize,
    draining: AtomicBool,
    pub stats: Stats,
    seq: AtomicU64,
    /// Wrong conference IDs per source (also the instructions page's).
    pub guesses: Arc<Guesses>,
    /// UDP sources that answered the probe.
    proven: Proven,
    /// Calls and probes each source holds.
    per_source: PerSource,
    /// UDP probes in flight.
    probing: AtomicUsize,
    /// Room connections that have (not yet) sent a message.
    pub first_message: FirstMessage,
    started: tokio::time::Instant,
    /// The second (since `started`, plus one) of the last "did not answer
    /// the probe" log line.
    unproven_logged: AtomicU64,
    /// The H.323 front end's counters, when H.323 is on (for metrics).
    pub h323_stats: std::sync::OnceLock<Arc<super::h323::Stats>>,
    /// The WebRTC front end, when browsers may join (issue 20).
    pub webrtc: std::sync::OnceLock<Arc<super::webrtc::WebRtc>>,
    /// In-process connections of browser calls: never trusted.
    pub browsers: Mutex<std::collections::HashSet<u64>>,
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
        let timers = Timers {
            t1: cfg.t1,
            t2: cfg.t2,
            // Timer C: how long the connector may ring.
            timer_c: cfg.ring_timeout,
            ..Timers::default()
        };
        let guesses = Arc::new(Guesses::new(cfg.guesses));
        Arc::new_cyclic(|me| Gateway {
            me: me.clone(),
            cfg,
            store,
            relay,
            udp,
            pool,
            calls: Mutex::new(HashMap::new()),
            agent: Agent::new(timers),
            finals: Mutex::new(HashMap::new()),
            starting: Mutex::new(std::collections::HashSet::new()),
            live: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            stats: Stats::default(),
            seq: AtomicU64::new(1),
            guesses,
            proven: Proven::default(),
            per_source: PerSource::default(),
            probing: AtomicUsize::new(0),
            first_message: FirstMessage::default(),
            started: tokio::time::Instant::now(),
            unproven_logged: AtomicU64::new(0),
            h323_stats: std::sync::OnceLock::new(),
            webrtc: std::sync::OnceLock::new(),
            browsers: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Gateway calls up now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn max_calls(&self) -> usize {
        self.cfg.max_calls
    }

    /// The gateway's listeners: UDP+TCP, and TLS when configured.
    pub fn listeners(&self) -> (SocketAddr, Option<SocketAddr>) {
        (self.cfg.local, self.cfg.local_tls)
    }

    /// How long a meeting without an end of its own lasts.
    pub fn meeting_lifetime(&self) -> Duration {
        self.cfg.meeting_lifetime
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

    fn new_call_key(&self) -> String {
        format!(
            "cvi-{}-{}",
            self.seq.fetch_add(1, Ordering::Relaxed),
            random_token()
        )
    }

    fn remember_final(&self, call_id: &str, r: &Bytes) {
        let mut f = lock(&self.finals);
        // Bounded: a flood of INVITEs with new Call-IDs cannot grow it
        // (a retransmission whose answer was not kept starts nothing new:
        // it is refused again the same way).
        if f.len() < MAX_FINALS {
            f.insert(
                call_id.to_string(),
                (r.clone(), tokio::time::Instant::now()),
            );
        }
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
            self.per_source.release(call.source.remote.ip());
        }
        if log_limit::allow(call.source.remote.ip(), CALL_LOG) {
            info!(call_id = %call.room.call_id, reason, "CVI call ended");
        }
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

    /// A room system's new INVITE.
    async fn new_call(self: Arc<Self>, invite: SipMessage, source: Source) {
        let call_id = invite.call_id().unwrap_or("").to_string();
        let _starting = Forget(&self.starting, call_id.clone());
        if !self.proven_source(&invite, &source, &call_id).await
            || !self.admit(&invite, &source, &call_id).await
        {
            return;
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let tag = random_token();
        let room = Leg::room(&self, &invite, &source, &tag);
        let call = Arc::new(Call::new(
            self.new_call_key(),
            room,
            invite.clone(),
            source.clone(),
            tag,
        ));
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
        if log_limit::allow(source.remote.ip(), CALL_LOG) {
            info!(call_id = %call_id, remote = %source.remote, dialled = %user, "CVI call");
        }
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
        if let Dialled::Meeting(id) = what {
            // The ID first: nothing (no media ports) for a wrong one.
            match self.try_id(&call, &id).await {
                Ok(()) => {
                    if self.relay_room(&call, &offer).await {
                        self.clone().connect(call, id).await;
                    }
                }
                Err((status, why, retry)) => self.fail_retry(&call, status, &why, retry).await,
            }
            return;
        }
        if !self.relay_room(&call, &offer).await {
            return;
        }
        match what {
            Dialled::Reception => self.clone().reception(call, &offer).await,
            Dialled::TestCall => self.clone().test_call(call, &offer).await,
            Dialled::Meeting(_) | Dialled::Unknown(_) => {}
        }
    }

    /// Puts the room's offer on the relay (the room system is side A) and
    /// keeps what the relay offers side B; false (the room refused) when
    /// it cannot be relayed.
    async fn relay_room(&self, call: &Arc<Call>, offer: &[u8]) -> bool {
        // The room's media may come from where its SIP did (behind a NAT).
        let who = crate::media::Who {
            owner: None,
            peer: Some(call.source.remote.ip()),
        };
        match self
            .relay
            .update_as(&call.key, Side::A, &[offer], true, who)
        {
            Ok(mut v) => {
                *lock(&call.offer_b) = v.pop().unwrap_or_default();
                true
            }
            Err(e) => {
                let status = if matches!(e, MediaError::Sdp(_) | MediaError::TooManyStreams(_)) {
                    488
                } else {
                    503
                };
                self.fail(call, status, &format!("media cannot be relayed: {e}"))
                    .await;
                false
            }
        }
    }

    /// Whether a conference ID names a meeting that can be joined now.
    /// The reason (ended, withdrawn, unknown) is for the log only: the
    /// room is told the same for every ID it cannot join.
    async fn check_meeting(&self, id: &str) -> Result<(), Refused> {
        match self.store.cvi_meeting(id).await {
            Ok(Some((m, enrolled))) => m
                .joinable(
                    enrolled,
                    &crate::store::now_rfc3339(),
                    self.cfg.meeting_lifetime,
                )
                .map_err(|why| {
                    let why_id = format!("conference ID {id}: {why}");
                    if why == crate::model::cvi::Unjoinable::Ended {
                        Refused::Ended(why_id)
                    } else {
                        Refused::NotFound(why_id)
                    }
                }),
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
        self.fail_retry(call, status, why, None).await;
    }

    /// `fail`, with a Retry-After of `retry` seconds.
    async fn fail_retry(&self, call: &Arc<Call>, status: u16, why: &str, retry: Option<u64>) {
        if !call.answered.swap(true, Ordering::Relaxed) {
            let mut b = self.response(&call.invite, status, Some(&call.tag), Some(why));
            if let Some(s) = retry {
                b = b.header("Retry-After", s.to_string());
            }
            let r = b.build();
            self.remember_final(&call.room.call_id, &r);
            *lock(&call.last) = Some(r.clone());
            self.respond(&call.invite, &call.source, r).await;
        }
        if log_limit::allow(call.source.remote.ip(), CALL_LOG) {
            info!(call_id = %call.room.call_id, status, reason = why, "CVI call refused");
        }
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
        call.ok_sent.store(true, Ordering::Relaxed);
        self.respond(&call.invite, &call.source, ok.clone()).await;
        let mut every = self.cfg.t1;
        let deadline = tokio::time::Instant::now() + self.cfg.ack_timeout.min(self.cfg.t1 * 64);
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
        let d = crate::media::sdp::describe(&lock(&call.offer_b)).ok()?;
        let s = d.streams.get(i)?;
        Some(SocketAddr::new(s.address?, s.port))
    }

    async fn on_request(self: Arc<Self>, msg: SipMessage, source: Source) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let call_id = msg.call_id().unwrap_or("").to_string();
        let in_dialog = msg.to().is_some_and(|t| t.tag().is_some());
        match method {
            Method::Invite if !in_dialog => self.on_invite(msg, source, call_id).await,
            Method::Ack => {
                // Only the room's own ACK of the 200 we sent counts: from
                // its transport peer, with the dialog's tags and the
                // INVITE's CSeq.
                let Some((call, from_room)) = self.dialog_of(&msg, &source, &call_id) else {
                    return;
                };
                if from_room
                    && call.ok_sent.load(Ordering::Relaxed)
                    && msg.cseq().map(|c| c.seq) == call.invite.cseq().map(|c| c.seq)
                {
                    call.acked_flag.store(true, Ordering::Relaxed);
                    call.acked.notify_waiters();
                    if source.conn.is_none() {
                        // It came back with our tag: the address is real.
                        self.proven.prove(source.remote, self.cfg.udp_proven_for);
                    }
                } else {
                    // The ACK of a re-INVITE's 2xx passed through (`share`).
                    share::acked(&call, from_room, &msg);
                }
            }
            Method::Cancel => self.on_cancel(msg, source, call_id).await,
            // Room systems and load balancers ping with OPTIONS.
            Method::Options if !in_dialog || self.dialog_of(&msg, &source, &call_id).is_none() => {
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
                // The same answer whether no call has this Call-ID or the
                // request is not the dialog's (another peer, other tags).
                let Some((call, from_room)) = self.dialog_of(&msg, &source, &call_id) else {
                    let r = self
                        .response(&msg, 481, None, Some("no dialog here matches this request"))
                        .build();
                    self.respond(&msg, &source, r).await;
                    return;
                };
                if !self.fresh_cseq(&call, from_room, &msg, &source).await {
                    return;
                }
                self.in_dialog(call, method, msg, source, from_room).await;
            }
        }
    }

    /// An INVITE outside a dialog: a retransmission gets the last answer
    /// again; a new one starts a call.
    async fn on_invite(self: Arc<Self>, msg: SipMessage, source: Source, call_id: String) {
        let done = lock(&self.finals).get(&call_id).map(|(r, _)| r.clone());
        if let Some(r) = done {
            self.respond(&msg, &source, r).await;
            return;
        }
        if let Some(call) = self.call(&call_id) {
            // A retransmission (from the room itself: nobody else learns
            // our answer): the last answer again.
            let last = lock(&call.last).clone();
            if let Some(r) = last
                && call.room.call_id == call_id
                && matching::same_peer(&call.source, &source)
            {
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

    /// The room's CANCEL of its INVITE: 200, then 487 to the INVITE if it
    /// was not answered yet, and the call ends.
    async fn on_cancel(&self, msg: SipMessage, source: Source, call_id: String) {
        let call = self
            .call(&call_id)
            .filter(|c| c.room.call_id == call_id && matching::cancels(c, &msg, &source));
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
}

impl Handler for Gateway {
    async fn on_message(&self, inbound: Inbound) {
        let Inbound { msg, source } = inbound;
        if let Some(c) = &source.conn {
            self.first_message.heard(c.id);
        }
        if msg.is_request() {
            if let Some(me) = self.me.upgrade() {
                me.on_request(msg, source).await;
            }
        } else {
            self.on_response(msg);
        }
    }
}
