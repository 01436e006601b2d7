//! The running edge's view of the partner registry: an immutable snapshot
//! swapped atomically when the store's registry version moves, and events
//! when a partner leaves `enabled`.
//!
//! Owns propagation. The CLI writes to the store; every edge node polls the
//! store's version counter (every 250 ms by default), reloads, and swaps the
//! snapshot, so a change reaches every node, SQLite or PostgreSQL, without
//! a restart and without the CLI knowing where the edges are. On PostgreSQL
//! each write also sends a NOTIFY and each node LISTENs on a connection of
//! its own, reloading at once (the poll stays the fallback). Readers on
//! the hot path take the current snapshot without locking. It also says,
//! once each way, when the store becomes unreachable and when it is back
//! (the node serves from its last snapshot meanwhile).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::model::partner::{Partner, PartnerState};
use crate::store::{Backend, REGISTRY_CHANNEL, Store, StoreError};

/// An immutable view of the registry at one version.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    /// Live partners (revoked ones are left out), by id.
    partners: HashMap<String, Arc<Partner>>,
    /// Lower-case SIP domain to partner id.
    by_domain: HashMap<String, String>,
    /// Lower-case edge FQDN to partner ids (hosted edges serve several).
    by_edge: HashMap<String, Vec<String>>,
}

impl Snapshot {
    pub fn build(version: i64, partners: Vec<Partner>) -> Snapshot {
        let mut s = Snapshot {
            version,
            ..Snapshot::default()
        };
        for p in partners
            .into_iter()
            .filter(|p| p.state != PartnerState::Revoked)
        {
            for d in &p.details.domains {
                s.by_domain.insert(d.to_ascii_lowercase(), p.id.clone());
            }
            if let Some(f) = &p.details.edge_fqdn {
                s.by_edge
                    .entry(f.to_ascii_lowercase())
                    .or_default()
                    .push(p.id.clone());
            }
            s.partners.insert(p.id.clone(), Arc::new(p));
        }
        s
    }

    /// The live partner holding `domain`.
    pub fn by_domain(&self, domain: &str) -> Option<&Arc<Partner>> {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        self.by_domain.get(&d).and_then(|id| self.partners.get(id))
    }

    /// Live partners whose edge FQDN is `fqdn`.
    pub fn by_edge(&self, fqdn: &str) -> Vec<&Arc<Partner>> {
        let f = fqdn.trim_end_matches('.').to_ascii_lowercase();
        self.by_edge
            .get(&f)
            .map(|ids| ids.iter().filter_map(|id| self.partners.get(id)).collect())
            .unwrap_or_default()
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Partner>> {
        self.partners.get(id)
    }

    pub fn partners(&self) -> impl Iterator<Item = &Arc<Partner>> {
        self.partners.values()
    }

    pub fn enabled_count(&self) -> usize {
        self.partners
            .values()
            .filter(|p| p.state == PartnerState::Enabled)
            .count()
    }
}

/// Something the proxy must act on.
#[derive(Debug, Clone)]
pub enum RegistryEvent {
    /// A partner that was enabled no longer is (suspended, revoked, or its
    /// edge FQDN changed): close its connections.
    LeftEnabled {
        partner: Arc<Partner>,
        /// The edge FQDN it had while enabled.
        edge_fqdn: Option<String>,
        /// Its state now (`revoked` also when it vanished).
        now: PartnerState,
    },
}

/// The live registry of one edge node.
#[derive(Debug)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
    events: broadcast::Sender<RegistryEvent>,
    /// Serialises installs, so that a slower reload that read an older
    /// version cannot replace a newer snapshot.
    installing: std::sync::Mutex<()>,
    /// The last older version refused, so that it is logged once.
    refused_older: std::sync::atomic::AtomicI64,
}

impl Registry {
    /// Loads the current registry from the store.
    pub async fn load(store: &Store) -> Result<Arc<Registry>, StoreError> {
        let version = store.registry_version().await?;
        let partners = store.partners().await?;
        let (events, _) = broadcast::channel(256);
        Ok(Arc::new(Registry {
            current: ArcSwap::from_pointee(Snapshot::build(version, partners)),
            events,
            installing: std::sync::Mutex::new(()),
            refused_older: std::sync::atomic::AtomicI64::new(i64::MIN),
        }))
    }

    /// A registry with no partners (for tests of the layers above).
    pub fn empty() -> Arc<Registry> {
        let (events, _) = broadcast::channel(16);
        Arc::new(Registry {
            current: ArcSwap::from_pointee(Snapshot::default()),
            events,
            installing: std::sync::Mutex::new(()),
            refused_older: std::sync::atomic::AtomicI64::new(i64::MIN),
        })
    }

    /// The current snapshot (cheap; no lock).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    /// Installs a new snapshot and announces partners that left `enabled`.
    pub fn install(&self, next: Snapshot) {
        let _one_at_a_time = self.installing.lock().unwrap_or_else(|p| p.into_inner());
        let seen = self.current.load().version;
        if next.version < seen {
            // A reload that read the store before a newer one installed
            // (or a database restored from an older backup: a restart
            // loads it).
            let v = next.version;
            if self
                .refused_older
                .swap(v, std::sync::atomic::Ordering::Relaxed)
                != v
            {
                warn!(
                    version = v,
                    enforced = seen,
                    "registry snapshot older than the one enforced; kept the newer (a database restored from a backup needs a restart of the node)"
                );
            }
            return;
        }
        let prev = self.current.swap(Arc::new(next));
        let next = self.current.load();
        for old in prev.partners().filter(|p| p.state == PartnerState::Enabled) {
            let still = next.get(&old.id);
            let same = still.is_some_and(|p| {
                p.state == PartnerState::Enabled && p.details.edge_fqdn == old.details.edge_fqdn
            });
            if !same {
                let now = still.map_or(PartnerState::Revoked, |p| p.state);
                info!(partner = old.name(), org = %old.details.org_name, %now, "partner left enabled");
                let _ = self.events.send(RegistryEvent::LeftEnabled {
                    partner: still.cloned().unwrap_or_else(|| old.clone()),
                    edge_fqdn: old.details.edge_fqdn.clone(),
                    now,
                });
            }
        }
    }

    /// Reads the store's version and, when it moved, the partners, and
    /// installs them now; returns the version this node enforces after.
    /// The poll below does the same; `POST /registry/reload` calls this so
    /// that an operator's change is enforced before the CLI returns.
    pub async fn reload(&self, store: &Store) -> Result<i64, StoreError> {
        let seen = self.snapshot().version;
        let v = store.registry_version().await?;
        if v != seen {
            let snap = Snapshot::build(v, store.partners().await?);
            info!(
                version = v,
                partners = snap.partners.len(),
                enabled = snap.enabled_count(),
                "registry reloaded"
            );
            self.install(snap);
        }
        Ok(self.snapshot().version)
    }

    /// Notes a failed store call that began at `began`: the first one that
    /// finds the database unreachable says, once, that the node serves
    /// from this snapshot ([`Store::mark_failed`]).
    pub fn store_failed(&self, store: &Store, e: &StoreError, began: std::time::Instant) {
        if store.mark_failed(e, began) {
            warn!(
                error = %e,
                version = self.snapshot().version,
                "store unreachable; serving from the last registry snapshot (version {})",
                self.snapshot().version
            );
        }
    }

    /// Notes a store call that succeeded: when the database was marked
    /// unreachable, reloads the registry now and says, once, that it is back.
    pub async fn store_answered(&self, store: &Store) {
        if store.mark_reachable() {
            let began = std::time::Instant::now();
            match self.reload(store).await {
                Ok(v) => info!(
                    version = v,
                    "store reachable again; registry caught up to version {v}"
                ),
                Err(e) => {
                    warn!(error = %e, "store reachable again, but the registry reload failed");
                    self.store_failed(store, &e, began);
                }
            }
        }
    }

    /// Polls the store's version every `every` and reloads on change; on
    /// PostgreSQL with `notify`, also reloads as soon as a change is
    /// announced on [`crate::store::REGISTRY_CHANNEL`] (the poll stays the
    /// fallback, and carries on while the LISTEN connection is down).
    pub fn watch(
        self: &Arc<Self>,
        store: Store,
        every: Duration,
        notify: bool,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let wake = Arc::new(Notify::new());
        let listener = (notify && store.backend() == Backend::Postgres).then(|| {
            tokio::spawn(listen(
                store.url().to_string(),
                wake.clone(),
                shutdown.clone(),
            ))
        });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                    _ = wake.notified() => {}
                }
                let began = std::time::Instant::now();
                match me.poll_once(&store).await {
                    // The return of the database is the heartbeat's to
                    // declare (one full read and write), not this poll's.
                    Ok(()) => failing = false,
                    Err(e) if e.is_unreachable() => me.store_failed(&store, &e, began),
                    Err(e) => {
                        if !failing {
                            warn!(error = %e, "registry reload failed; keeping the last snapshot");
                        }
                        failing = true;
                    }
                }
            }
            if let Some(l) = listener {
                let _ = l.await;
            }
        })
    }

    /// One look at the store's version, and a reload when it moved.
    async fn poll_once(&self, store: &Store) -> Result<(), StoreError> {
        let seen = self.snapshot().version;
        let v = store.registry_version().await?;
        if v == seen {
            return Ok(());
        }
        // A change landing between these two reads is loaded now and
        // loaded again on the next tick, since the stored version will
        // have moved past `v`: never lost.
        let partners = store.partners().await?;
        let snap = Snapshot::build(v, partners);
        info!(
            version = v,
            partners = snap.partners.len(),
            enabled = snap.enabled_count(),
            "registry reloaded"
        );
        self.install(snap);
        Ok(())
    }
}

/// Keeps a LISTEN connection on the registry channel and wakes the watcher
/// on every notification, and once after each (re)connection (changes
/// made while it was down are picked up then, or by the poll meanwhile).
async fn listen(url: String, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut down_since_logged = false;
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        let connect = async {
            let mut l = PgListener::connect(&url).await?;
            l.listen(REGISTRY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(5), connect) => match r {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the connection timed out".to_string()),
            },
        };
        let mut l = match connected {
            Ok(l) => l,
            Err(why) => {
                if !down_since_logged {
                    warn!(error = %why, "registry notifications unavailable; polling meanwhile");
                    down_since_logged = true;
                }
                if !pause(&mut backoff, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        info!(
            channel = REGISTRY_CHANNEL,
            "listening for registry notifications"
        );
        if down_since_logged {
            info!("registry notifications back");
        }
        backoff = Duration::from_millis(250);
        wake.notify_one();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = l.try_recv() => match r {
                    Ok(Some(n)) => {
                        debug!(version = n.payload(), "registry notification");
                        wake.notify_one();
                    }
                    // The connection dropped and was made again: some
                    // notifications may have been missed.
                    Ok(None) => wake.notify_one(),
                    Err(e) => {
                        warn!(error = %e, "registry notifications lost; polling meanwhile");
                        down_since_logged = true;
                        if !pause(&mut backoff, &shutdown).await {
                            return;
                        }
                        break;
                    }
                },
            }
        }
    }
}

/// Waits `backoff` (then doubles it, up to 5 s) before the next LISTEN
/// attempt; false when the edge is stopping.
async fn pause(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    let stopping = tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(*backoff) => false,
    };
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    !stopping
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, domains: &[&str], edge: &str, state: PartnerState) -> Partner {
        let mut p = crate::model::partner::sample(id, domains, Some(edge), state);
        p.details.org_name = id.into();
        p
    }

    #[test]
    fn lookups_and_shared_edges() {
        let s = Snapshot::build(
            3,
            vec![
                p("a", &["a.test"], "edge.host.test", PartnerState::Enabled),
                p(
                    "b",
                    &["b.test", "b2.test"],
                    "EDGE.host.test",
                    PartnerState::Suspended,
                ),
                p("c", &["c.test"], "sip.c.test", PartnerState::Revoked),
            ],
        );
        assert_eq!(s.by_domain("B2.TEST.").map(|p| p.id.as_str()), Some("b"));
        assert!(
            s.by_domain("c.test").is_none(),
            "revoked partners are not live"
        );
        let mut ids: Vec<&str> = s
            .by_edge("edge.host.test")
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(s.enabled_count(), 1);
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let r = Registry::empty();
        let enabled = p("a", &["a.test"], "sip.a.test", PartnerState::Enabled);
        let suspended = p("a", &["a.test"], "sip.a.test", PartnerState::Suspended);
        r.install(Snapshot::build(6, vec![suspended]));
        // A slower reload that read version 5 (still enabled) comes late.
        r.install(Snapshot::build(5, vec![enabled]));
        let now = r.snapshot();
        assert_eq!(now.version, 6);
        assert_eq!(now.get("a").map(|p| p.state), Some(PartnerState::Suspended));
    }

    #[tokio::test]
    async fn leaving_enabled_is_announced_once() {
        let r = Registry::empty();
        let mut rx = r.subscribe();
        r.install(Snapshot::build(
            1,
            vec![p("a", &["a.test"], "sip.a.test", PartnerState::Enabled)],
        ));
        assert!(rx.try_recv().is_err(), "becoming enabled is not an event");
        r.install(Snapshot::build(
            2,
            vec![p("a", &["a.test"], "sip.a.test", PartnerState::Suspended)],
        ));
        match rx.try_recv() {
            Ok(RegistryEvent::LeftEnabled {
                partner,
                now,
                edge_fqdn,
            }) => {
                assert_eq!(partner.id, "a");
                assert_eq!(now, PartnerState::Suspended);
                assert_eq!(edge_fqdn.as_deref(), Some("sip.a.test"));
            }
            other => panic!("{other:?}"),
        }
        r.install(Snapshot::build(
            3,
            vec![p("a", &["a.test"], "sip.a.test", PartnerState::Suspended)],
        ));
        assert!(rx.try_recv().is_err());
        // An enabled partner whose edge FQDN changes leaves its old edge.
        r.install(Snapshot::build(
            4,
            vec![p("a", &["a.test"], "sip.a.test", PartnerState::Enabled)],
        ));
        r.install(Snapshot::build(
            5,
            vec![p("a", &["a.test"], "new.a.test", PartnerState::Enabled)],
        ));
        assert!(
            matches!(rx.try_recv(), Ok(RegistryEvent::LeftEnabled { edge_fqdn: Some(f), .. }) if f == "sip.a.test")
        );
    }
}
