//! Browsers into the CVI gateway over WebRTC (issue 20). A participant on
//! a meeting's instructions page joins with camera and microphone: the
//! page POSTs its SDP offer (WHIP-style) with a single-use join token;
//! fedge terminates ICE-lite, DTLS-SRTP and RTCP with str0m, and presents
//! the call to `cvi::gateway::Gateway` as a SIP INVITE on an in-process
//! connection whose SDP names a local plain-RTP port pair per stream (the
//! bridge). The gateway then applies reception, capacity, drain, unknown
//! meetings, metrics and the relay exactly as for a room system; the
//! bridge only moves RTP between the browser's SRTP and the relay.
//!
//! Owns the join tokens, the browser calls' registry and their sockets.
//! It never decides about a meeting (the gateway does), never transcodes
//! (the browser is offered only what the connector leg takes: PCMU and
//! H.264), never marks a browser call trusted, and never panics on a
//! browser's input.

mod bridge;
mod rtp;
pub mod sdp;
pub mod tcp;
mod tokens;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::gateway::Gateway;
use crate::sip::transport::ConnectionTable;

pub use tokens::Tokens;

/// Where browser calls' sockets live and how they are presented.
#[derive(Debug, Clone)]
pub struct WebRtcConfig {
    /// The gateway's SIP domain (the INVITE's Request-URI).
    pub domain: String,
    /// The address browser ICE candidates and bridge sockets bind to.
    pub bind: IpAddr,
    /// The address the browser is told (ICE host candidate).
    pub advertise: IpAddr,
    /// The CVI media port range (shared with the relay: a port taken is
    /// skipped).
    pub port_min: u16,
    pub port_max: u16,
    /// How long a join token from the page stays valid.
    pub token_ttl: Duration,
    /// How long a join waits for the gateway's final answer.
    pub answer_timeout: Duration,
    /// The shared ICE-TCP port (`[cvi] webrtc_tcp`), when configured.
    pub tcp: Option<Arc<tcp::IceTcp>>,
}

/// Counters since start (for metrics and tests).
#[derive(Debug, Default)]
pub struct Stats {
    /// Offers taken and presented to the gateway.
    pub calls: AtomicU64,
    /// Offers refused before the gateway (token, SDP, ports).
    pub refused: AtomicU64,
    /// Calls the gateway answered 200.
    pub connected: AtomicU64,
    /// RTP packets browser to connector, and connector to browser.
    pub packets_up: AtomicU64,
    pub packets_down: AtomicU64,
}

/// Why a join was refused: the HTTP status and a sentence for the page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// What the page is told about its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallState {
    Connected,
    Ended(String),
}

struct Entry {
    meeting: String,
    hangup: CancellationToken,
    state: Arc<Mutex<CallState>>,
    /// When the call ended (the entry is kept a while for the page).
    ended: Option<Instant>,
}

/// The WebRTC front end of one gateway.
pub struct WebRtc {
    cfg: WebRtcConfig,
    gateway: Weak<Gateway>,
    table: Arc<ConnectionTable>,
    pub tokens: Tokens,
    calls: Mutex<HashMap<String, Entry>>,
    seq: AtomicU64,
    /// Offers being answered now (ports bound, gateway not yet answered).
    pending: AtomicUsize,
    pub stats: Arc<Stats>,
}

/// Offers answered at once at most: each binds five ports before the
/// gateway's capacity check, so their number is bounded here.
pub const MAX_PENDING: usize = 64;

/// Counts one pending offer while alive.
struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Ended calls are remembered this long for the page's last poll.
const KEEP_ENDED: Duration = Duration::from_secs(120);

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WebRtc {
    pub fn new(
        cfg: WebRtcConfig,
        gateway: &Arc<Gateway>,
        table: Arc<ConnectionTable>,
    ) -> Arc<WebRtc> {
        let w = Arc::new(WebRtc {
            tokens: Tokens::new(cfg.token_ttl),
            cfg,
            gateway: Arc::downgrade(gateway),
            table,
            calls: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(1),
            pending: AtomicUsize::new(0),
            stats: Arc::new(Stats::default()),
        });
        let _ = gateway.webrtc.set(w.clone());
        w
    }

    pub fn config(&self) -> &WebRtcConfig {
        &self.cfg
    }

    /// Browser calls up now.
    pub fn live(&self) -> usize {
        lock(&self.calls)
            .values()
            .filter(|e| e.ended.is_none())
            .count()
    }

    /// A browser's offer to join `meeting` with `token`: the SDP answer
    /// and the call's session name, once the gateway answered 200; else
    /// the refusal (nothing left allocated).
    pub async fn join(
        self: &Arc<Self>,
        meeting: &str,
        token: &str,
        offer: &str,
        remote: SocketAddr,
        user: &str,
    ) -> Result<(String, String), Refusal> {
        let refused = |r: Refusal| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            Err(r)
        };
        if !self.tokens.take(meeting, token) {
            return refused(Refusal::new(
                403,
                "this join link is not valid (used or expired): reload the page",
            ));
        }
        let checked = match sdp::check_offer(offer) {
            Ok(o) => o,
            Err(e) => return refused(Refusal::new(400, e.to_string())),
        };
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return refused(Refusal::new(
                503,
                "too many browsers are joining at once: try again in a moment",
            ));
        }
        let _pending = Pending(&self.pending);
        let Some(gateway) = self.gateway.upgrade() else {
            return refused(Refusal::new(503, "the gateway is stopping"));
        };
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let session = format!("{n}-{}", crate::sip::response::random_token());
        let prepared = match bridge::Prepared::new(&self.cfg, self.cfg.tcp.as_ref(), checked).await
        {
            Ok(p) => p,
            Err(r) => return refused(r),
        };
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let hangup = CancellationToken::new();
        let state = Arc::new(Mutex::new(CallState::Connected));
        let ctx = bridge::Context {
            gateway,
            table: self.table.clone(),
            domain: self.cfg.domain.clone(),
            meeting: meeting.to_string(),
            user: user.to_string(),
            remote,
            call_id: format!("{session}@webrtc.{}", self.cfg.domain),
            hangup: hangup.clone(),
            state: state.clone(),
            stats: self.stats.clone(),
            answer_timeout: self.cfg.answer_timeout,
        };
        let (answer, run) = prepared.start(ctx).await?;
        self.stats.connected.fetch_add(1, Ordering::Relaxed);
        self.prune();
        lock(&self.calls).insert(
            session.clone(),
            Entry {
                meeting: meeting.to_string(),
                hangup,
                state,
                ended: None,
            },
        );
        let me = Arc::downgrade(self);
        let name = session.clone();
        tokio::spawn(async move {
            run.await;
            if let Some(w) = me.upgrade()
                && let Some(e) = lock(&w.calls).get_mut(&name)
            {
                e.ended = Some(Instant::now());
            }
        });
        Ok((session, answer))
    }

    /// The page's Leave: hangs up `session` of `meeting`. False when no
    /// such call.
    pub fn leave(&self, meeting: &str, session: &str) -> bool {
        match lock(&self.calls).get(session) {
            Some(e) if e.meeting == meeting => {
                e.hangup.cancel();
                true
            }
            _ => false,
        }
    }

    /// What the page is told about `session` of `meeting`.
    pub fn state(&self, meeting: &str, session: &str) -> Option<CallState> {
        let calls = lock(&self.calls);
        let e = calls.get(session).filter(|e| e.meeting == meeting)?;
        Some(lock(&e.state).clone())
    }

    /// Hangs up every browser call (shutdown).
    pub fn hang_up_all(&self) {
        for e in lock(&self.calls).values() {
            e.hangup.cancel();
        }
    }

    fn prune(&self) {
        lock(&self.calls).retain(|_, e| e.ended.is_none_or(|t| t.elapsed() < KEEP_ENDED));
    }
}

/// The browser side's figures for `/metrics` (name, help, value); the
/// calls themselves are counted with the gateway's.
pub fn gauges(w: &WebRtc) -> Vec<(&'static str, &'static str, f64)> {
    let s = &w.stats;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut g = vec![
        (
            "fedge_cvi_browser_calls",
            "Browser offers presented to the gateway",
            n(&s.calls),
        ),
        (
            "fedge_cvi_browser_refused",
            "Browser offers refused before the gateway (token, SDP, ports)",
            n(&s.refused),
        ),
        (
            "fedge_cvi_browser_connected",
            "Browser calls the meeting answered",
            n(&s.connected),
        ),
        (
            "fedge_cvi_browser_live",
            "Browser calls up now",
            w.live() as f64,
        ),
        (
            "fedge_cvi_browser_packets_up",
            "RTP packets from browsers to the relay",
            n(&s.packets_up),
        ),
        (
            "fedge_cvi_browser_packets_down",
            "RTP packets from the relay to browsers",
            n(&s.packets_down),
        ),
    ];
    if let Some(t) = &w.cfg.tcp {
        g.push((
            "fedge_cvi_browser_tcp_connections",
            "ICE-TCP connections from browsers held now",
            t.connections() as f64,
        ));
    }
    g
}
