//! Draining this node (`fedge drain`, `POST /api/v1/node/drain`,
//! SIGTERM): it stops taking new dialogs and leaves once the calls and
//! the transactions that began before it are done, or at `[drain]
//! deadline`.
//!
//! Owns the drain's start (the node's drain mark in [`ClusterView`],
//! which the policy reads to answer new INVITEs, SUBSCRIBEs and REFERs
//! with 503 and the heartbeat publishes; the media relay's and the CVI
//! gateway's own drains; systemd's STOPPING=1), the watch of what is left
//! (the proxy's calls and unanswered transactions, the gateway's calls),
//! its log lines, and the moment it cancels the node's shutdown token.
//! It never closes a listener or a connection itself (in-dialog requests
//! may arrive on new connections while it drains): `server::stop` does
//! after it, as for any stop. It never refuses a request itself either.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::service::{DrainProgress, NodeDrain};
use crate::config::Config;
use crate::cvi::gateway::Gateway;
use crate::federation::Edge;
use crate::federation::cluster::ClusterView;
use crate::media::Relay;
use crate::sip::proxy::Proxy;

/// How often the drain looks at what is left.
const POLL: Duration = Duration::from_millis(100);
/// How often it logs its progress.
const REPORT: Duration = Duration::from_secs(5);
/// After the last call and old transaction: at most this long for the
/// transactions then in flight (begun during the drain) to be answered.
const TAIL: Duration = Duration::from_secs(2);
/// Then: time for the last answers to leave the send queues before the
/// listeners close.
const SETTLE: Duration = Duration::from_millis(300);
/// Call-IDs named in the deadline's log line, at most.
const NAMED: usize = 20;

/// When the drain began.
#[derive(Debug, Clone)]
struct Started {
    at: Instant,
    since: String,
}

/// A node's drain: what it switches off, what it waits for.
#[derive(Debug)]
pub struct Drain {
    node: String,
    deadline: Duration,
    proxy: Arc<Proxy<Edge>>,
    cluster: Arc<ClusterView>,
    media: Option<Arc<Relay>>,
    cvi: Option<Arc<Gateway>>,
    started: Mutex<Option<Started>>,
    /// Cancelled when the drain starts (the watch wakes up).
    go: CancellationToken,
}

impl Drain {
    /// `node` is this node's name in the node table
    /// (`server::cluster::node_name`, as the heartbeat writes it).
    pub(super) fn new(
        cfg: &Config,
        node: String,
        proxy: Arc<Proxy<Edge>>,
        cluster: Arc<ClusterView>,
        media: Option<Arc<Relay>>,
        cvi: Option<Arc<Gateway>>,
    ) -> Arc<Drain> {
        Arc::new(Drain {
            node,
            deadline: cfg.drain.deadline,
            proxy,
            cluster,
            media,
            cvi,
            started: Mutex::new(None),
            go: CancellationToken::new(),
        })
    }

    fn started(&self) -> Option<Started> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Nothing left: no call, no transaction begun before the drain still
    /// waiting for its answer, no CVI call. Single transactions begun
    /// since (MESSAGE, OPTIONS... which a draining node still carries) do
    /// not hold it: under steady traffic there is always one in flight.
    fn done(p: &DrainProgress) -> bool {
        p.calls == 0 && p.transactions == 0 && p.cvi_calls == 0
    }

    /// Gives the transactions in flight now (single requests begun during
    /// the drain) up to [`TAIL`] to be answered; returns how many were not
    /// (the stop closes their connections: their senders time out).
    async fn tail(&self) -> usize {
        let at = Instant::now();
        loop {
            let left = self.proxy.in_progress_since(at);
            if left == 0 || at.elapsed() >= TAIL {
                return left;
            }
            tokio::time::sleep(POLL / 2).await;
        }
    }

    /// Waits for the drain to start (through [`NodeDrain::start`] or
    /// `request`, SIGTERM's token), then for nothing to be left or the
    /// deadline, and cancels `shutdown`. Returns at once if `shutdown`
    /// comes first.
    pub(super) async fn watch(
        self: Arc<Self>,
        request: CancellationToken,
        shutdown: CancellationToken,
    ) {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = request.cancelled() => { self.start("SIGTERM"); }
            _ = self.go.cancelled() => {}
        }
        let Some(started) = self.started() else {
            return;
        };
        let mut reported = Instant::now();
        loop {
            let p = self.progress();
            if Drain::done(&p) {
                let unanswered = self.tail().await;
                info!(node = %self.node, waited_ms = started.at.elapsed().as_millis() as u64,
                    unanswered, "drain complete: no call or transaction left; stopping");
                tokio::time::sleep(SETTLE).await;
                break;
            }
            if started.at.elapsed() >= self.deadline {
                let open = self.proxy.dialogs.calls.open(NAMED);
                let ids = open
                    .iter()
                    .map(|(id, up)| format!("{id} ({})", if *up { "up" } else { "ringing" }))
                    .collect::<Vec<_>>()
                    .join(", ");
                warn!(node = %self.node, deadline = %humantime::format_duration(self.deadline),
                    calls = p.calls, transactions = p.transactions, cvi_calls = p.cvi_calls,
                    open_calls = %ids,
                    "drain deadline reached with calls or transactions still open; stopping anyway");
                break;
            }
            if reported.elapsed() >= REPORT {
                reported = Instant::now();
                info!(node = %self.node, calls = p.calls, transactions = p.transactions,
                    cvi_calls = p.cvi_calls, deadline_secs = p.deadline_secs.unwrap_or(0), "draining");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        shutdown.cancel();
    }
}

impl NodeDrain for Drain {
    fn start(&self, by: &str) -> DrainProgress {
        let first = {
            let mut s = self.started.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_none() {
                let since = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                *s = Some(Started {
                    at: Instant::now(),
                    since,
                });
                true
            } else {
                false
            }
        };
        if first {
            self.cluster.set_draining(self.started().map(|s| s.since));
            if let Some(r) = &self.media {
                r.set_draining(true);
            }
            if let Some(g) = &self.cvi {
                g.set_draining(true);
            }
            super::systemd::stopping();
            let p = self.progress();
            info!(node = %self.node, by = %by, deadline = %humantime::format_duration(self.deadline),
                calls = p.calls, transactions = p.transactions, cvi_calls = p.cvi_calls,
                "drain started: new dialogs are refused with 503; calls in progress finish");
            self.go.cancel();
            return p;
        }
        self.progress()
    }

    fn progress(&self) -> DrainProgress {
        let started = self.started();
        DrainProgress {
            node: self.node.clone(),
            draining: started.is_some(),
            deadline_secs: started
                .as_ref()
                .map(|s| self.deadline.saturating_sub(s.at.elapsed()).as_secs()),
            since: started.as_ref().map(|s| s.since.clone()),
            calls: self.proxy.calls(),
            // Draining: only what began before the drain (what it waits for).
            transactions: match &started {
                Some(s) => self.proxy.in_progress_since(s.at),
                None => self.proxy.in_progress(),
            },
            cvi_calls: self.cvi.as_ref().map_or(0, |g| g.live()),
            media_sessions: self.media.as_ref().map_or(0, |r| r.len()),
        }
    }
}
