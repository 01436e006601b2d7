//! What this node knows of the other nodes sharing its database: how many
//! are alive, each partner's share of its rate this node holds (D126:
//! shares that follow the partner's traffic), and whether this node is
//! draining (which its heartbeat publishes).
//!
//! Owns the live-node count and the per-partner weights the heartbeat task
//! keeps up to date (`server::cluster`) and the policy's limits read, the
//! per-partner count of requests offered to the rate check since the last
//! heartbeat (which the heartbeat turns into this node's published demand),
//! the pure rules that turn offered counts into a smoothed demand
//! ([`smooth`]) and the live nodes' demands into this node's weight
//! ([`weights`]), and the drain mark the drain sets. Reading any of them
//! is one atomic load or a short lock: it never touches the store on the
//! message path. A change of the count is logged once.
//!
//! Also owns what a node row means to a reader ([`node_views`]: up,
//! draining, stopped or gone, from the heartbeat's age and `[cluster]
//! gone_after`), which `fedge nodes` and `GET /api/v1/nodes` share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::store::NodeRecord;

/// The floor of D126: each live node's demand for a partner counts
/// `FLOOR x total / live nodes` more than it is, so a node that begins to
/// see a partner can admit its first requests, and a node carrying all of
/// a partner's traffic holds at least `1 / (1 + FLOOR)` of its rate.
pub const FLOOR: f64 = 0.1;

/// Demand is smoothed with this time constant, in heartbeats (D126).
pub const SMOOTHING_BEATS: f64 = 2.0;

/// A smoothed demand below this (requests per second) is dropped: the
/// partner is no longer reported by this node.
pub const MIN_DEMAND: f64 = 0.01;

/// Partner id -> requests per second, or -> this node's weight.
pub type PerPartner = HashMap<String, f64>;

/// The live nodes, this one included (never below 1), and this node's
/// share of each partner's limits.
#[derive(Debug)]
pub struct ClusterView {
    live: AtomicU32,
    /// Partner id -> this node's weight (D126), for partners some live
    /// node reports demand for; the others' weight is `1 / live`.
    weights: ArcSwap<PerPartner>,
    /// Partner id -> requests offered to the rate check since the last
    /// heartbeat took them.
    offered: Mutex<HashMap<String, u64>>,
    /// When this node began to drain (RFC 3339), if it is draining.
    draining: Mutex<Option<String>>,
    /// `[cluster] gone_after` in milliseconds (for readers of the table).
    gone_after_ms: AtomicU64,
}

impl Default for ClusterView {
    fn default() -> Self {
        ClusterView {
            live: AtomicU32::new(1),
            weights: ArcSwap::from_pointee(PerPartner::new()),
            offered: Mutex::new(HashMap::new()),
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
                "live nodes changed: {n} nodes now share each partner's rate, burst and enumeration limit by where its traffic lands"
            );
        }
    }

    /// This node's weight for `partner`: the fraction of its rate, burst
    /// and enumeration limit it holds (D126). One load and a look-up.
    pub fn weight(&self, partner: &str) -> f64 {
        match self.weights.load().get(partner) {
            Some(w) => w.clamp(0.0, 1.0),
            None => 1.0 / f64::from(self.live_nodes()),
        }
    }

    /// Sets the weights the heartbeat computed ([`weights`]).
    pub fn set_weights(&self, w: PerPartner) {
        self.weights.store(Arc::new(w));
    }

    /// Counts one request of `partner` offered to the rate check.
    pub fn offer(&self, partner: &str) {
        let mut map = self.offered.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(partner) {
            Some(n) => *n += 1,
            None => {
                map.insert(partner.to_string(), 1);
            }
        }
    }

    /// The requests offered since the last call, per partner (and resets).
    pub fn take_offered(&self) -> HashMap<String, u64> {
        std::mem::take(&mut *self.offered.lock().unwrap_or_else(|p| p.into_inner()))
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
    1 + live_others(rows, me, now_ms, gone_after).count() as u32
}

fn live_others<'a>(
    rows: &'a [NodeRecord],
    me: &'a str,
    now_ms: i64,
    gone_after: Duration,
) -> impl Iterator<Item = &'a NodeRecord> {
    let horizon = now_ms - gone_after.as_millis() as i64;
    rows.iter()
        .filter(move |r| r.name != me && r.stopped_at.is_none() && r.heartbeat_ms >= horizon)
}

/// A row's published demand (none if absent or unreadable: a node
/// writing something else is treated as reporting nothing).
pub fn demand_of(row: &NodeRecord) -> PerPartner {
    row.demand
        .as_deref()
        .and_then(|d| serde_json::from_str::<PerPartner>(d).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, d)| d.is_finite() && *d > 0.0)
        .collect()
}

/// This node's new smoothed demand per partner (D126): each partner's
/// offered requests over the `elapsed` time since the last heartbeat, as
/// requests per second, averaged exponentially with `prev` over
/// [`SMOOTHING_BEATS`] heartbeats of `every`. Partners falling below
/// [`MIN_DEMAND`] are dropped, so the map holds only partners this node
/// saw lately.
pub fn smooth(
    prev: &PerPartner,
    offered: &HashMap<String, u64>,
    elapsed: Duration,
    every: Duration,
) -> PerPartner {
    let dt = elapsed.as_secs_f64();
    if dt <= 0.0 {
        return prev.clone();
    }
    let tau = every.as_secs_f64().max(1e-3) * SMOOTHING_BEATS;
    let a = 1.0 - (-dt / tau).exp();
    let mut out = PerPartner::new();
    for id in prev.keys().chain(offered.keys()) {
        if out.contains_key(id) {
            continue;
        }
        let old = prev.get(id).copied().unwrap_or(0.0);
        let now = offered.get(id).copied().unwrap_or(0) as f64 / dt;
        let d = (1.0 - a) * old + a * now;
        if d >= MIN_DEMAND {
            out.insert(id.clone(), d);
        }
    }
    out
}

/// This node's weight for every partner some live node reports demand
/// for (D126), from the node rows as read (this node's own row included,
/// as it last wrote it, so that every node judges from the table alone):
/// `w = (d_me + e) / sum over live nodes j of (d_j + e)`, where `e =
/// FLOOR x sum_j d_j / N` and N is the live count (this node counted once
/// whatever its row says). The weights of the live nodes for one partner
/// sum to 1. Partners absent from the result keep `1 / N`.
pub fn weights(rows: &[NodeRecord], me: &str, now_ms: i64, gone_after: Duration) -> PerPartner {
    let mine = rows
        .iter()
        .find(|r| r.name == me)
        .map(demand_of)
        .unwrap_or_default();
    let others: Vec<PerPartner> = live_others(rows, me, now_ms, gone_after)
        .map(demand_of)
        .collect();
    let n = 1.0 + others.len() as f64;
    let mut total = mine.clone();
    for o in &others {
        for (id, d) in o {
            *total.entry(id.clone()).or_insert(0.0) += d;
        }
    }
    total
        .into_iter()
        .filter(|(_, t)| *t > 0.0)
        .map(|(id, t)| {
            let e = FLOOR * t / n;
            let d = mine.get(&id).copied().unwrap_or(0.0);
            let w = (d + e) / (t + n * e);
            (id, w.clamp(0.0, 1.0))
        })
        .collect()
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
    let views = node_views(store.nodes().await?, store.db_now_ms().await?, gone_after);
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
            demand: None,
        }
    }

    fn with_demand(name: &str, hb: i64, demand: &[(&str, f64)]) -> NodeRecord {
        let map: PerPartner = demand.iter().map(|(p, d)| (p.to_string(), *d)).collect();
        NodeRecord {
            demand: Some(serde_json::to_string(&map).unwrap()),
            ..row(name, hb, false, false)
        }
    }

    const GONE: Duration = Duration::from_secs(1);

    #[test]
    fn a_node_carrying_all_of_a_partners_traffic_gets_nearly_all_its_rate() {
        for n in 2..=5usize {
            let mut rows = vec![with_demand("n0", 10_000, &[("p", 40.0)])];
            for k in 1..n {
                rows.push(row(&format!("n{k}"), 10_000, false, false));
            }
            let w0 = weights(&rows, "n0", 10_000, GONE)["p"];
            let nf = n as f64;
            // (d + d/(10N)) / (d + d/10), whatever d is.
            let want = (1.0 + FLOOR / nf) / (1.0 + FLOOR);
            assert!((w0 - want).abs() < 1e-12, "{n}: {w0} != {want}");
            assert!(w0 >= 1.0 / 1.1 - 1e-12, "at least ~91% on any N: {w0}");
            let mut sum = w0;
            for k in 1..n {
                let wk = weights(&rows, &format!("n{k}"), 10_000, GONE)["p"];
                assert!(
                    (wk - FLOOR / nf / (1.0 + FLOOR)).abs() < 1e-12,
                    "the floor: {wk}"
                );
                sum += wk;
            }
            assert!((sum - 1.0).abs() < 1e-12, "weights sum to 1: {sum}");
        }
        // Two nodes: 95.5% and 4.5%.
        let rows = [
            with_demand("a", 10_000, &[("p", 3.0)]),
            row("b", 10_000, false, false),
        ];
        assert!((weights(&rows, "a", 10_000, GONE)["p"] - 1.05 / 1.1).abs() < 1e-12);
    }

    #[test]
    fn weights_follow_the_demand_and_sum_to_one_over_the_live_nodes() {
        let rows = [
            with_demand("a", 10_000, &[("p", 30.0), ("q", 1.0)]),
            with_demand("b", 10_000, &[("p", 10.0)]),
            with_demand("c", 9_900, &[("q", 1.0)]),
            // Gone and stopped nodes' demand is left out.
            with_demand("gone", 8_000, &[("p", 1000.0), ("r", 5.0)]),
            NodeRecord {
                stopped_at: Some("t".into()),
                ..with_demand("stopped", 10_000, &[("p", 1000.0)])
            },
            // Unreadable demand counts as none, the node still live.
            NodeRecord {
                demand: Some("not json".into()),
                ..row("d", 10_000, false, false)
            },
        ];
        let live = ["a", "b", "c", "d"];
        for p in ["p", "q"] {
            let sum: f64 = live
                .iter()
                .map(|me| weights(&rows, me, 10_000, GONE)[p])
                .sum();
            assert!((sum - 1.0).abs() < 1e-12, "{p}: {sum}");
        }
        let wa = weights(&rows, "a", 10_000, GONE);
        // e = 0.1 x 40 / 4 = 1: (30 + 1) / (40 + 4).
        assert!((wa["p"] - 31.0 / 44.0).abs() < 1e-12, "{wa:?}");
        assert!(!wa.contains_key("r"), "only a gone node reports r: {wa:?}");
        // A partner no live node reports keeps 1/N.
        let v = ClusterView::new();
        v.set_live_nodes(4);
        v.set_weights(wa);
        assert!((v.weight("p") - 31.0 / 44.0).abs() < 1e-12);
        assert_eq!(v.weight("r"), 0.25);
        assert!(weights(&[], "a", 10_000, GONE).is_empty());
    }

    #[test]
    fn demand_is_the_offered_rate_smoothed_over_a_few_heartbeats() {
        let every = Duration::from_millis(200);
        let offered = |n: u64| HashMap::from([("p".to_string(), n)]);
        // 8 requests in 200 ms: 40/s, reached exponentially.
        let mut d = PerPartner::new();
        let a = 1.0 - (-1.0 / SMOOTHING_BEATS).exp();
        d = smooth(&d, &offered(8), every, every);
        assert!((d["p"] - 40.0 * a).abs() < 1e-9, "{d:?}");
        for _ in 0..20 {
            d = smooth(&d, &offered(8), every, every);
        }
        assert!((d["p"] - 40.0).abs() < 0.01, "{d:?}");
        // The time actually elapsed counts, not the nominal heartbeat.
        let late = smooth(&PerPartner::new(), &offered(8), every * 2, every);
        let a2 = 1.0 - (-2.0 / SMOOTHING_BEATS).exp();
        assert!((late["p"] - 20.0 * a2).abs() < 1e-9, "{late:?}");
        // No more traffic: it decays and is dropped.
        let mut beats = 0;
        while d.contains_key("p") {
            d = smooth(&d, &HashMap::new(), every, every);
            beats += 1;
            assert!(beats < 100, "never dropped: {d:?}");
        }
        assert!(beats > 10, "not dropped at once: {beats}");
        assert_eq!(smooth(&d, &offered(0), every, every), PerPartner::new());
    }

    #[test]
    fn offered_requests_are_counted_until_the_heartbeat_takes_them() {
        let v = ClusterView::new();
        assert_eq!(v.weight("p"), 1.0);
        for _ in 0..3 {
            v.offer("p");
        }
        v.offer("q");
        let got = v.take_offered();
        assert_eq!((got["p"], got["q"]), (3, 1));
        assert!(v.take_offered().is_empty());
    }

    /// Two nodes, heartbeats half a period apart, each computing its
    /// weight from the table as read and then writing its own demand:
    /// while the traffic shifts, the weights in force sum to more than 1
    /// by at most (1 - sqrt(c)) / (1 + sqrt(c)), c = 1 - a, and to 1 once
    /// the demand is steady.
    #[test]
    fn while_traffic_shifts_two_nodes_weights_overshoot_by_a_bounded_amount() {
        let every = Duration::from_millis(200);
        let c = (-1.0 / SMOOTHING_BEATS).exp();
        let bound = 1.0 + (1.0 - c.sqrt()) / (1.0 + c.sqrt());
        // Requests per heartbeat offered to a and b in each phase.
        let phases: [(u64, u64); 6] = [(8, 8), (0, 8), (8, 0), (8, 8), (1, 30), (30, 0)];
        let mut table: [PerPartner; 2] = Default::default();
        let mut w = [0.5, 0.5];
        let (mut worst, mut last) = (0.0f64, 0.0);
        let mut t = 0i64;
        for (offer_a, offer_b) in phases {
            for _ in 0..40 {
                for (k, offer) in [(0usize, offer_a), (1, offer_b)] {
                    t += 100;
                    let rows = [
                        NodeRecord {
                            demand: Some(serde_json::to_string(&table[0]).unwrap()),
                            ..row("a", t, false, false)
                        },
                        NodeRecord {
                            demand: Some(serde_json::to_string(&table[1]).unwrap()),
                            ..row("b", t, false, false)
                        },
                    ];
                    let me = ["a", "b"][k];
                    w[k] = weights(&rows, me, t, GONE).get("p").copied().unwrap_or(0.5);
                    let offered = HashMap::from([("p".to_string(), offer)]);
                    table[k] = smooth(&table[k], &offered, every, every);
                    worst = worst.max(w[0] + w[1]);
                    last = w[0] + w[1];
                }
            }
        }
        println!("worst sum of weights {worst:.4} (bound {bound:.4})");
        assert!(worst <= bound + 1e-9, "{worst} > {bound}");
        assert!(worst > 1.0, "the simulation shifts traffic: {worst}");
        assert!((last - 1.0).abs() < 0.01, "steady again: {last}");
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
