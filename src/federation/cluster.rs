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

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// The live nodes, this one included (never below 1).
#[derive(Debug)]
pub struct ClusterView {
    live: AtomicU32,
    /// When this node began to drain (RFC 3339), if it is draining.
    draining: Mutex<Option<String>>,
}

impl Default for ClusterView {
    fn default() -> Self {
        ClusterView {
            live: AtomicU32::new(1),
            draining: Mutex::new(None),
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

    /// When this node began to drain, if it is draining.
    pub fn draining(&self) -> Option<String> {
        self.draining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
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
}
