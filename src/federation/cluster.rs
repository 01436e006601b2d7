//! What this node knows of the other nodes sharing its database: how many
//! are alive (each takes its share of a partner's rate from that count).
//!
//! Owns the live-node count the heartbeat task keeps up to date
//! (`server::cluster`) and the policy's limits read. Reading it is one
//! atomic load: it never touches the store on the message path.

use std::sync::atomic::{AtomicU32, Ordering};

/// The live nodes, this one included (never below 1).
#[derive(Debug)]
pub struct ClusterView {
    live: AtomicU32,
}

impl Default for ClusterView {
    fn default() -> Self {
        ClusterView {
            live: AtomicU32::new(1),
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

    /// Sets the count read from the node table (at least 1: this node).
    pub fn set_live_nodes(&self, n: u32) {
        self.live.store(n.max(1), Ordering::Relaxed);
    }
}
