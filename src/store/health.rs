//! Whether the database answered lately, as this process saw it: the
//! running edge keeps serving from its last registry snapshot while the
//! database is away, and `/health`, the log and the API say so.
//!
//! Owns the reachability mark (set by whoever talks to the database on a
//! schedule: the heartbeat and the registry watcher), the test of whether
//! an error means "the database is unreachable" rather than "the request
//! was wrong", and the outage-only memory of API tokens verified while the
//! database answered. It never retries a query and never decides what the
//! edge does without its database (the callers do).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Store, StoreError};
use crate::model::account::Account;

/// How long an API token verified against the database is still taken,
/// from memory, while the database is unreachable (read-only use: every
/// change needs the database anyway).
pub const OUTAGE_TOKEN_MEMORY: Duration = Duration::from_secs(3600);

/// What `/health` shows of the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreHealth {
    pub reachable: bool,
    /// When it last changed from reachable to unreachable or back (RFC 3339).
    pub since: Option<String>,
    /// The last error seen while it is unreachable.
    pub last_error: Option<String>,
}

/// The shared mark behind every clone of a [`Store`].
#[derive(Debug)]
pub(super) struct Health {
    reachable: AtomicBool,
    detail: Mutex<(Option<String>, Option<String>)>,
    tokens: Mutex<HashMap<String, (Account, Instant)>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            reachable: AtomicBool::new(true),
            detail: Mutex::new((None, None)),
            tokens: Mutex::new(HashMap::new()),
        }
    }
}

impl StoreError {
    /// True when the database could not be reached (connection refused or
    /// lost, no connection within the acquire timeout), as opposed to a
    /// query it answered with an error.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Db(e) | StoreError::Open { source: e, .. } => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ),
            _ => false,
        }
    }
}

impl Store {
    /// The database's reachability as last seen.
    pub fn health(&self) -> StoreHealth {
        let reachable = self.health.reachable.load(Ordering::Relaxed);
        let d = self.health.detail.lock().unwrap_or_else(|p| p.into_inner());
        StoreHealth {
            reachable,
            since: d.0.clone(),
            last_error: if reachable { None } else { d.1.clone() },
        }
    }

    /// Records a query that reached the database. True when the database
    /// was marked unreachable until now (the caller logs the return).
    pub fn mark_reachable(&self) -> bool {
        let was = self.health.reachable.swap(true, Ordering::Relaxed);
        if !was {
            let mut d = self.health.detail.lock().unwrap_or_else(|p| p.into_inner());
            *d = (Some(super::now_rfc3339()), None);
        }
        !was
    }

    /// Records `e` if it means the database is unreachable. True when it
    /// was marked reachable until now (the caller logs the loss once).
    pub fn mark_failed(&self, e: &StoreError) -> bool {
        if !e.is_unreachable() {
            return false;
        }
        let was = self.health.reachable.swap(false, Ordering::Relaxed);
        let mut d = self.health.detail.lock().unwrap_or_else(|p| p.into_inner());
        if was {
            d.0 = Some(super::now_rfc3339());
        }
        d.1 = Some(e.to_string());
        was
    }

    /// The account behind an API token; while the database is unreachable,
    /// the account the same token had when last verified (within
    /// [`OUTAGE_TOKEN_MEMORY`]), so that an operator can still read
    /// `/health` and the node's state. A revoked token stays refused: the
    /// memory is filled by successful look-ups only and is never used
    /// while the database answers.
    pub async fn account_by_token_or_remembered(
        &self,
        token: &str,
    ) -> Result<Option<Account>, StoreError> {
        let key = super::secret_hash(token);
        if !self.health.reachable.load(Ordering::Relaxed) {
            // Known unreachable: answer from memory at once rather than
            // after the acquire timeout (the heartbeat notices the return).
            let m = self.health.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((a, at)) = m.get(&key)
                && at.elapsed() < OUTAGE_TOKEN_MEMORY
            {
                return Ok(Some(a.clone()));
            }
        }
        match self.account_by_token(token).await {
            Ok(found) => {
                let mut m = self.health.tokens.lock().unwrap_or_else(|p| p.into_inner());
                match &found {
                    Some(a) => {
                        if m.len() > 1024 {
                            m.retain(|_, (_, at)| at.elapsed() < OUTAGE_TOKEN_MEMORY);
                        }
                        m.insert(key, (a.clone(), Instant::now()));
                    }
                    None => {
                        m.remove(&key);
                    }
                }
                Ok(found)
            }
            Err(e) if e.is_unreachable() => {
                self.mark_failed(&e);
                let m = self.health.tokens.lock().unwrap_or_else(|p| p.into_inner());
                match m.get(&key) {
                    Some((a, at)) if at.elapsed() < OUTAGE_TOKEN_MEMORY => Ok(Some(a.clone())),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reachability_transitions_are_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/h.db", dir.path().display()))
            .await
            .unwrap();
        assert!(store.health().reachable);
        assert!(!store.mark_reachable(), "already reachable");
        let lost = StoreError::Db(sqlx::Error::PoolTimedOut);
        assert!(store.mark_failed(&lost), "first loss is reported");
        assert!(!store.mark_failed(&lost), "the second is not");
        let h = store.health();
        assert!(!h.reachable);
        assert!(h.since.is_some());
        assert!(h.last_error.unwrap().contains("timed out"));
        assert!(
            !store.mark_failed(&StoreError::Invalid("x".into())),
            "a refused request is not an outage"
        );
        assert!(store.mark_reachable(), "the return is reported");
        assert!(store.health().reachable);
        assert!(store.health().last_error.is_none());
    }
}
