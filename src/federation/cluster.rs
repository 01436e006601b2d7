//! What this node knows of the other nodes sharing its database: how many
//! are alive (each takes its share of a partner's rate from that count),
//! and whether this node is draining (which its heartbeat publishes).
//!
//! Owns the live-node count the heartbeat task keeps up to date
//! (`server::cluster`) and the policy's limits read (D110: each node takes
//! `1 / live_nodes` of a partner's rate, burst and enumeration limit), and
//! the drain mark the drain sets. Reading either is one atomic load or a
//! short lock: it never touches the store on the message path. A change
//! of the count is logged once.
//!
//! Also owns what a node row means to a reader ([`node_views`]: up,
//! draining, stopped or gone, from the heartbeat's age and `[cluster]
//! gone_after`), which `fedge nodes` and `GET /api/v1/nodes` share.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::store::NodeRecord;

/// The live nodes, this one included (never below 1).
#[derive(Debug)]
pub struct ClusterView {
    live: AtomicU32,
    /// When this node began to drain (RFC 3339), if it is draining.
    draining: Mutex<Option<String>>,
    /// `[cluster] gone_after` in milliseconds (for readers of the table).
    gone_after_ms: AtomicU64,
}

impl Default for ClusterView {
    fn default() -> Self {
        ClusterView {
            live: AtomicU32::new(1),
            draining: Mutex::new(None),
            gone_after_ms: AtomicU64::new(5000),
        }
    }
}

impl ClusterView {
    pub fn new() -> ClusterView {
        ClusterView::default()
    }

    /// The live nodes, this one included.
    pub fn live_nodes(&self) -> u32 {
        self.live.load(Ordering::Relaxed).max(1)
    }

    /// Sets the count read from the node table (at least 1: this node);
    /// a change is logged, since every partner's share changes with it.
    pub fn set_live_nodes(&self, n: u32) {
        let n = n.max(1);
        let was = self.live.swap(n, Ordering::Relaxed);
        if was != n {
            tracing::info!(
                live_nodes = n,
                was,
                "live nodes changed: this node now holds each partner to 1/{n} of its rate, burst and enumeration limit"
            );
        }
    }

    /// Marks this node draining since `since` (RFC 3339), or not (`None`).
    pub fn set_draining(&self, since: Option<String>) {
        *self.draining.lock().unwrap_or_else(|p| p.into_inner()) = since;
    }

    /// `[cluster] gone_after`: a heartbeat older than this is gone.
    pub fn gone_after(&self) -> Duration {
        Duration::from_millis(self.gone_after_ms.load(Ordering::Relaxed))
    }

    pub fn set_gone_after(&self, d: Duration) {
        self.gone_after_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// When this node began to drain, if it is draining.
    pub fn draining(&self) -> Option<String> {
        self.draining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Now, in Unix milliseconds (the clock heartbeats are written with).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The live nodes in `rows` (heartbeat within `gone_after` of `now_ms`,
/// not stopped), counting `me` once whatever its row says.
pub fn live_nodes(rows: &[NodeRecord], me: &str, now_ms: i64, gone_after: Duration) -> u32 {
    let horizon = now_ms - gone_after.as_millis() as i64;
    let others = rows
        .iter()
        .filter(|r| r.name != me && r.stopped_at.is_none() && r.heartbeat_ms >= horizon)
        .count();
    1 + others as u32
}

/// What a node row says to a reader.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeating.
    Up,
    /// Heartbeating, and draining (taking no new dialogs).
    Draining,
    /// Stopped cleanly.
    Stopped,
    /// No heartbeat within `[cluster] gone_after` and not stopped: it
    /// crashed, hangs, or lost the database.
    Gone,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Draining => "draining",
            NodeState::Stopped => "stopped",
            NodeState::Gone => "gone",
        }
    }
}

/// One listener of a node, as its heartbeat published it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeListener {
    pub role: String,
    pub transport: String,
    pub addr: String,
}

/// A node as `fedge nodes` and `GET /api/v1/nodes` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    pub name: String,
    pub state: NodeState,
    /// Milliseconds since its last heartbeat (by the reader's clock).
    pub heartbeat_age_ms: i64,
    /// The registry version it enforced at its last heartbeat.
    pub registry_version: i64,
    /// The fedge version it runs.
    pub version: String,
    pub started_at: String,
    /// Random per start of its process.
    pub instance: String,
    /// When it began to drain (RFC 3339), while it drains.
    pub draining_since: Option<String>,
    /// When it stopped cleanly (RFC 3339).
    pub stopped_at: Option<String>,
    pub listeners: Vec<NodeListener>,
}

/// The node rows as readers see them at `now_ms`.
pub fn node_views(rows: Vec<NodeRecord>, now_ms: i64, gone_after: Duration) -> Vec<NodeView> {
    rows.into_iter()
        .map(|r| {
            let age = now_ms - r.heartbeat_ms;
            let state = if r.stopped_at.is_some() {
                NodeState::Stopped
            } else if age > gone_after.as_millis() as i64 {
                NodeState::Gone
            } else if r.draining.is_some() {
                NodeState::Draining
            } else {
                NodeState::Up
            };
            NodeView {
                listeners: serde_json::from_str(&r.listeners).unwrap_or_default(),
                name: r.name,
                state,
                heartbeat_age_ms: age.max(0),
                registry_version: r.registry_version,
                version: r.version,
                started_at: r.started_at,
                instance: r.instance,
                draining_since: r.draining,
                stopped_at: r.stopped_at,
            }
        })
        .collect()
}

/// Why a node was not forgotten.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error("no node is named {0:?} in the node table")]
    NotFound(String),
    #[error(
        "node {name} is {state} (last heartbeat {age_ms} ms ago): only a gone or stopped node can be forgotten"
    )]
    Live {
        name: String,
        state: &'static str,
        age_ms: i64,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Removes node `name`'s row, if it is gone or stopped (a live node would
/// only write it again; refusing says so).
pub async fn forget(
    store: &crate::store::Store,
    name: &str,
    gone_after: Duration,
) -> Result<NodeView, ForgetError> {
    let views = node_views(store.nodes().await?, now_ms(), gone_after);
    let Some(v) = views.into_iter().find(|v| v.name == name) else {
        return Err(ForgetError::NotFound(name.to_string()));
    };
    if matches!(v.state, NodeState::Up | NodeState::Draining) {
        return Err(ForgetError::Live {
            name: v.name,
            state: v.state.as_str(),
            age_ms: v.heartbeat_age_ms,
        });
    }
    if !store.forget_node(name).await? {
        return Err(ForgetError::NotFound(name.to_string()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_count_is_never_below_this_node() {
        let v = ClusterView::new();
        assert_eq!(v.live_nodes(), 1);
        v.set_live_nodes(3);
        assert_eq!(v.live_nodes(), 3);
        v.set_live_nodes(0);
        assert_eq!(v.live_nodes(), 1);
    }

    fn row(name: &str, hb: i64, stopped: bool, draining: bool) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            instance: "i".into(),
            version: "0".into(),
            started_at: "t".into(),
            heartbeat_ms: hb,
            registry_version: 1,
            listeners: r#"[{"role":"federation","transport":"tls","addr":"127.0.0.1:5061"}]"#
                .into(),
            draining: draining.then(|| "t".into()),
            stopped_at: stopped.then(|| "t".into()),
        }
    }

    #[test]
    fn live_count_leaves_out_gone_and_stopped_nodes() {
        let rows = [
            row("a", 10_000, false, false),
            row("b", 9_500, false, true),
            row("c", 8_000, false, false),
            row("d", 10_000, true, false),
        ];
        let gone = Duration::from_secs(1);
        assert_eq!(live_nodes(&rows, "a", 10_000, gone), 2, "a and b");
        assert_eq!(live_nodes(&rows, "z", 10_000, gone), 3, "me, a and b");
        assert_eq!(live_nodes(&[], "a", 10_000, gone), 1, "never below me");
        let states: Vec<_> = node_views(rows.to_vec(), 10_000, gone)
            .into_iter()
            .map(|v| (v.name, v.state))
            .collect();
        assert_eq!(
            states,
            [
                ("a".to_string(), NodeState::Up),
                ("b".to_string(), NodeState::Draining),
                ("c".to_string(), NodeState::Gone),
                ("d".to_string(), NodeState::Stopped),
            ]
        );
        let v = &node_views(rows[..1].to_vec(), 10_250, gone)[0];
        assert_eq!(v.heartbeat_age_ms, 250);
        assert_eq!(v.listeners[0].addr, "127.0.0.1:5061");
    }
}
