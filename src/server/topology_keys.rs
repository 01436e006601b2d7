//! Topology-hiding keys in a running edge: read from the store at start,
//! then re-read every few seconds so that a `fedge keys rotate-topology`
//! (on this node or another sharing the database) takes effect, and a key
//! whose grace period is over stops opening tokens.
//!
//! Owns that watch. It never makes or rotates a key itself (the store and
//! the CLI do) and never logs a secret.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::sip::proxy::{Topology, TopologyKey};
use crate::store::{Store, StoredKey};

/// How often the keys are re-read.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The keys as topology hiding takes them.
pub fn ring(keys: &[StoredKey]) -> Vec<TopologyKey> {
    keys.iter()
        .map(|k| TopologyKey {
            id: k.id,
            secret: k.secret,
            retire_at: k.retire_at,
        })
        .collect()
}

fn fresh() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::fill(&mut k);
    k
}

/// The keys to start with (the first one made when the database has none).
pub async fn load(store: &Store) -> Result<Vec<StoredKey>, crate::store::StoreError> {
    store.topology_keys(fresh()).await
}

/// Re-reads the keys until `shutdown`, installing them when they change.
pub fn spawn(
    store: Store,
    topology: Arc<Topology>,
    mut current: Vec<StoredKey>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let keys = match store.topology_keys(fresh()).await {
                Ok(k) => k,
                Err(e) => {
                    warn!(error = %e, "cannot re-read the topology-hiding keys; keeping the ones in use");
                    continue;
                }
            };
            if keys == current {
                continue;
            }
            match topology.set_keys(&ring(&keys)) {
                Ok(()) => {
                    let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
                    info!(
                        current = topology.current_key(),
                        accepted = %ids.join(","),
                        "topology-hiding keys changed"
                    );
                    current = keys;
                }
                Err(e) => warn!(error = %e, "topology-hiding keys not changed"),
            }
        }
    })
}
