//! This node's heartbeat in the shared database: every `[cluster]
//! heartbeat` it reads everyone's row of the node table, sets the
//! live-node count and this node's per-partner weights (D126) of the
//! [`ClusterView`] the rate limits read, then writes its own row (name,
//! instance, version, registry version, listeners, drain mark, and its
//! smoothed per-partner demand from the requests the limits counted since
//! the last beat). At shutdown it marks its row stopped.
//!
//! Owns the heartbeat loop, this node's name and instance id, and noticing
//! a rival (another process heartbeating under the same name). It is also
//! the regular probe of the database: a failure marks the store
//! unreachable (logged once by the registry) and the next success brings
//! the registry up to date. It never decides policy and never blocks the
//! message path (the count is an atomic the limits read).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::federation::cluster::{ClusterView, PerPartner, live_nodes, smooth, weights};
use crate::federation::registry::Registry;
use crate::store::{NodeRecord, Store, StoreError, now_rfc3339};

/// What the heartbeat needs.
pub(super) struct Heartbeat {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub view: Arc<ClusterView>,
    /// `[cluster] node`, or the default name (see [`node_name`]).
    pub name: String,
    /// This node's listeners as JSON.
    pub listeners: String,
    pub every: Duration,
    pub gone_after: Duration,
    pub shutdown: CancellationToken,
}

/// `[cluster] node`, or else the host name and the federation port.
pub(super) fn node_name(configured: &str, federation_port: u16) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "fedge".to_string());
    format!("{host}:{federation_port}")
}

impl Heartbeat {
    /// Starts the loop; the handle ends after the row is marked stopped.
    pub(super) fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut me = NodeRecord {
            name: self.name.clone(),
            instance: format!("{:016x}", rand::random::<u64>()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: now_rfc3339(),
            heartbeat_ms: 0,
            registry_version: 0,
            listeners: self.listeners.clone(),
            draining: None,
            stopped_at: None,
            demand: None,
        };
        let mut demand = Demand {
            smoothed: PerPartner::new(),
            since: Instant::now(),
        };
        info!(node = %me.name, instance = %me.instance, "cluster heartbeat every {:?}", self.every);
        let mut rivals = HashSet::new();
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let began = std::time::Instant::now();
            match self.beat(&mut me, &mut rivals, &mut demand).await {
                Ok(()) => self.registry.store_answered(&self.store).await,
                Err(e) => self.registry.store_failed(&self.store, &e, began),
            }
        }
        if let Err(e) = self
            .store
            .node_stopped(&me.name, &me.instance, &now_rfc3339())
            .await
        {
            warn!(node = %me.name, error = %e, "cannot mark this node stopped in the node table");
        }
    }

    /// One heartbeat: read the table, note rivals, count the live nodes
    /// and set this node's weights from the table as read (its own row as
    /// it last wrote it, so every node judges from the table alone), then
    /// write this node's row with its new demand.
    async fn beat(
        &self,
        me: &mut NodeRecord,
        rivals: &mut HashSet<String>,
        demand: &mut Demand,
    ) -> Result<(), StoreError> {
        // The demand is counted whether or not the store answers, so an
        // outage does not lose or pile up what was offered.
        demand.update(&self.view, self.every);
        me.demand = demand.json();
        let rows = self.store.nodes().await?;
        // The database's clock, not this node's (nodes may disagree).
        let now = self.store.db_now_ms().await?;
        if me.heartbeat_ms > 0
            && let Some(row) = rows.iter().find(|r| r.name == me.name)
            && row.instance != me.instance
            && row.heartbeat_ms > me.heartbeat_ms
            && rivals.insert(row.instance.clone())
        {
            warn!(
                node = %me.name,
                instance = %me.instance,
                rival = %row.instance,
                rival_started_at = %row.started_at,
                "another fedge process heartbeats under this node's name: give each node its own [cluster] node"
            );
        }
        self.view
            .set_live_nodes(live_nodes(&rows, &me.name, now, self.gone_after));
        self.view
            .set_weights(weights(&rows, &me.name, now, self.gone_after));
        me.heartbeat_ms = now;
        me.registry_version = self.registry.snapshot().version;
        me.draining = self.view.draining();
        self.store.node_heartbeat(me).await
    }
}

/// This node's smoothed demand per partner and when it last took the
/// offered counts.
struct Demand {
    smoothed: PerPartner,
    since: Instant,
}

impl Demand {
    /// Takes the requests offered since the last beat into the average.
    fn update(&mut self, view: &ClusterView, every: Duration) {
        let now = Instant::now();
        let offered = view.take_offered();
        self.smoothed = smooth(&self.smoothed, &offered, now - self.since, every);
        self.since = now;
    }

    /// The demand as the node row holds it (`None` when there is none).
    fn json(&self) -> Option<String> {
        if self.smoothed.is_empty() {
            return None;
        }
        // Rounded to 0.001 requests per second: the row stays short.
        let rounded: PerPartner = self
            .smoothed
            .iter()
            .map(|(id, d)| (id.clone(), (d * 1000.0).round() / 1000.0))
            .collect();
        serde_json::to_string(&rounded).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_is_host_and_port() {
        assert_eq!(node_name("edge-1", 5061), "edge-1");
        assert!(node_name("", 5061).ends_with(":5061"));
    }
}
