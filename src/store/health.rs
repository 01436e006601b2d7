//! Whether the database answered lately, as this process saw it: the
//! running edge keeps serving from its last registry snapshot while the
//! database is away, and `/health`, the log and the API say so.
//!
//! Owns the reachability mark (set by whoever talks to the database on a
//! schedule: the heartbeat and the registry watcher), the test of whether
//! an error means "the database is unreachable" rather than "the request
//! was wrong" or "the pool is busy", and the outage-only memory of API
//! tokens verified while the database answered (capped at the token's
//! expiry and [`OUTAGE_TOKEN_MEMORY`], forgotten on every account change
//! made through this process, never holding the node's own CLI tokens).
//! It never retries a query, never decides what the edge does without its
//! database (the callers do), and never lets a remembered token pass as a
//! verified one ([`TokenAccount::remembered`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Store, StoreError};
use crate::model::account::{Account, NODE_ACCOUNT};

/// The longest an API token verified against the database is still taken,
/// from memory, while the database is unreachable (never past the token's
/// own expiry). A remembered token may only read
/// ([`TokenAccount::remembered`]).
pub const OUTAGE_TOKEN_MEMORY: Duration = Duration::from_secs(600);

/// The most tokens remembered at once (the oldest are dropped past it).
const MEMORY_BOUND: usize = 1024;

/// The account behind an API token, and whether it came from the outage
/// memory rather than from the database.
#[derive(Debug, Clone)]
pub struct TokenAccount {
    pub account: Account,
    /// True when the database was unreachable and the account is the one
    /// the token had when last verified: the caller must refuse changes.
    pub remembered: bool,
}

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
    /// When the database was last marked reachable again: a call that
    /// began before it and failed late (it waited out the acquire
    /// timeout during the outage) does not mark it unreachable again.
    back_at: Mutex<Option<Instant>>,
    detail: Mutex<(Option<String>, Option<String>)>,
    tokens: Mutex<Memory>,
}

/// Tokens verified lately (by hash), and a count of the forgettings: a
/// look-up that began before the last one does not store its answer.
#[derive(Debug, Default)]
struct Memory {
    entries: HashMap<String, Remembered>,
    generation: u64,
}

#[derive(Debug)]
struct Remembered {
    account: Account,
    until: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            reachable: AtomicBool::new(true),
            back_at: Mutex::new(None),
            detail: Mutex::new((None, None)),
            tokens: Mutex::new(Memory::default()),
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

/// How long a token verified now may be remembered: until its expiry
/// (`expires_at`, RFC 3339; `None` for none) or [`OUTAGE_TOKEN_MEMORY`],
/// whichever comes first. `None` (do not remember) for a token already
/// expired or an expiry that does not parse.
fn remember_until(
    now: Instant,
    now_utc: OffsetDateTime,
    expires_at: Option<&str>,
) -> Option<Instant> {
    let mut life = OUTAGE_TOKEN_MEMORY;
    if let Some(at) = expires_at {
        let left = OffsetDateTime::parse(at, &Rfc3339).ok()? - now_utc;
        if left <= time::Duration::ZERO {
            return None;
        }
        life = life.min(left.unsigned_abs());
    }
    Some(now + life)
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

    /// True when `e` means the database is away, not merely busy: an
    /// unreachable error ([`StoreError::is_unreachable`]), except a pool
    /// time-out while every connection of the pool is open (the pool was
    /// busy; it did not fail to connect). sqlx reports a refused connect
    /// as a time-out too, so a time-out with room in the pool is an outage.
    pub fn is_outage(&self, e: &StoreError) -> bool {
        match e {
            StoreError::Db(sqlx::Error::PoolTimedOut) => {
                self.pool.size() < self.pool.options().get_max_connections()
            }
            _ => e.is_unreachable(),
        }
    }

    /// Records a query that reached the database. True when the database
    /// was marked unreachable until now (the caller logs the return).
    pub fn mark_reachable(&self) -> bool {
        let was = self.health.reachable.swap(true, Ordering::Relaxed);
        if !was {
            *self
                .health
                .back_at
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            let mut d = self.health.detail.lock().unwrap_or_else(|p| p.into_inner());
            *d = (Some(super::now_rfc3339()), None);
        }
        !was
    }

    /// Records `e`, from a call that began at `began`, if it means the
    /// database is unreachable ([`Self::is_outage`]: a busy pool is not)
    /// and the database was not marked reachable again since the call
    /// began (a call stuck in the outage that gave up after the return
    /// says nothing about now). True when it was marked reachable until
    /// now (the caller logs the loss once).
    pub fn mark_failed(&self, e: &StoreError, began: Instant) -> bool {
        if !self.is_outage(e) {
            return false;
        }
        let back_at = *self
            .health
            .back_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if back_at.is_some_and(|back| back > began) {
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

    /// Forgets every remembered token: called after each account change
    /// (a token issued or revoked, an account disabled or enabled, a
    /// password set or reset), so that no stale account outlives it here.
    pub fn forget_remembered_tokens(&self) {
        let mut m = self.memory();
        m.entries.clear();
        m.generation = m.generation.wrapping_add(1);
    }

    /// How many tokens are remembered now (for tests and the log).
    pub fn remembered_tokens(&self) -> usize {
        self.memory().entries.len()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.health.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remembered account of a token hash, if still within its life.
    fn recall(&self, key: &str) -> Option<TokenAccount> {
        let m = self.memory();
        m.entries
            .get(key)
            .filter(|r| Instant::now() < r.until)
            .map(|r| TokenAccount {
                account: r.account.clone(),
                remembered: true,
            })
    }

    /// Stores the database's answer for a token hash: the account and
    /// its expiry, or nothing (unknown, revoked, expired, disabled). The
    /// node's own CLI tokens are never remembered, and an answer from a
    /// look-up that began before the last forgetting is not stored.
    fn remember(&self, key: String, began: u64, found: Option<&(Account, Option<String>)>) {
        let mut m = self.memory();
        let until = found.and_then(|(a, exp)| {
            (a.name != NODE_ACCOUNT)
                .then(|| remember_until(Instant::now(), OffsetDateTime::now_utc(), exp.as_deref()))
                .flatten()
        });
        match (found, until) {
            (Some((a, _)), Some(until)) if m.generation == began => {
                let now = Instant::now();
                if m.entries.len() >= MEMORY_BOUND {
                    m.entries.retain(|_, r| now < r.until);
                }
                if m.entries.len() >= MEMORY_BOUND
                    && let Some(oldest) = m
                        .entries
                        .iter()
                        .min_by_key(|(_, r)| r.until)
                        .map(|(k, _)| k.clone())
                {
                    m.entries.remove(&oldest);
                }
                m.entries.insert(
                    key,
                    Remembered {
                        account: a.clone(),
                        until,
                    },
                );
            }
            _ => {
                m.entries.remove(&key);
            }
        }
    }

    /// The account behind an API token; while the database is unreachable,
    /// the account the same token had when last verified on this process
    /// (for at most [`OUTAGE_TOKEN_MEMORY`] and never past the token's
    /// expiry), marked [`TokenAccount::remembered`] so that the caller
    /// serves only reads. A token refused by the database, or verified
    /// before an account change made through this process, is not
    /// remembered; the node's own CLI tokens never are.
    pub async fn account_by_token_or_remembered(
        &self,
        token: &str,
    ) -> Result<Option<TokenAccount>, StoreError> {
        let key = super::secret_hash(token);
        if !self.health.reachable.load(Ordering::Relaxed)
            && let Some(found) = self.recall(&key)
        {
            // Known unreachable: answer from memory at once rather than
            // after the acquire timeout (the heartbeat notices the return).
            return Ok(Some(found));
        }
        let began = self.memory().generation;
        let started = Instant::now();
        match self.token_lookup(token).await {
            Ok(found) => {
                self.remember(key, began, found.as_ref());
                Ok(found.map(|(account, _)| TokenAccount {
                    account,
                    remembered: false,
                }))
            }
            Err(e) if self.is_outage(&e) => {
                self.mark_failed(&e, started);
                self.recall(&key).map(Some).ok_or(e)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::account::Role;

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(&format!("sqlite://{}/h.db", dir.path().display()))
            .await
            .unwrap()
    }

    fn io_error() -> StoreError {
        StoreError::Db(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )))
    }

    #[tokio::test]
    async fn reachability_transitions_are_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        assert!(store.health().reachable);
        assert!(!store.mark_reachable(), "already reachable");
        let lost = io_error();
        assert!(
            store.mark_failed(&lost, Instant::now()),
            "first loss is reported"
        );
        assert!(
            !store.mark_failed(&lost, Instant::now()),
            "the second is not"
        );
        let stuck = Instant::now();
        assert!(store.mark_reachable(), "the return is reported");
        assert!(
            !store.mark_failed(&lost, stuck),
            "a call that began before the return and failed late is no new loss"
        );
        assert!(store.health().reachable);
        assert!(store.mark_failed(&lost, Instant::now()), "a new loss is");
        let h = store.health();
        assert!(!h.reachable);
        assert!(h.since.is_some());
        assert!(h.last_error.unwrap().contains("refused"));
        assert!(
            !store.mark_failed(&StoreError::Invalid("x".into()), Instant::now()),
            "a refused request is not an outage"
        );
        assert!(store.mark_reachable(), "the return is reported");
        assert!(store.health().reachable);
        assert!(store.health().last_error.is_none());
    }

    #[tokio::test]
    async fn a_pool_timeout_is_an_outage_only_when_the_pool_had_room() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let timed_out = StoreError::Db(sqlx::Error::PoolTimedOut);
        // Every connection open and in use: the pool was busy.
        let max = store.pool.options().get_max_connections();
        let mut held = Vec::new();
        for _ in 0..max {
            held.push(store.pool.acquire().await.unwrap());
        }
        assert_eq!(store.pool.size(), max);
        assert!(!store.is_outage(&timed_out));
        assert!(
            !store.mark_failed(&timed_out, Instant::now()),
            "a busy pool is no outage"
        );
        assert!(store.health().reachable);
        // With room left, a time-out means the pool could not connect.
        held.clear();
        store.pool.close().await;
        assert!(store.pool.size() < max);
        assert!(store.is_outage(&timed_out));
        assert!(store.mark_failed(&timed_out, Instant::now()));
        assert!(!store.health().reachable);
    }

    #[test]
    fn a_token_is_remembered_until_its_expiry_or_the_cap() {
        let now = Instant::now();
        let utc = OffsetDateTime::now_utc();
        let fmt = |d: time::Duration| (utc + d).format(&Rfc3339).unwrap();
        assert_eq!(
            remember_until(now, utc, None),
            Some(now + OUTAGE_TOKEN_MEMORY)
        );
        assert_eq!(
            remember_until(now, utc, Some(&fmt(time::Duration::days(30)))),
            Some(now + OUTAGE_TOKEN_MEMORY),
            "a long-lived token: the cap"
        );
        let soon = remember_until(now, utc, Some(&fmt(time::Duration::seconds(60)))).unwrap();
        assert!(soon <= now + Duration::from_secs(60), "its expiry first");
        assert!(soon > now + Duration::from_secs(59));
        assert_eq!(
            remember_until(now, utc, Some(&fmt(time::Duration::seconds(-1)))),
            None,
            "an expired token is not remembered"
        );
        assert_eq!(remember_until(now, utc, Some("not a time")), None);
    }

    #[tokio::test]
    async fn the_memory_serves_reads_only_and_forgets_on_account_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let op = store
            .add_token_account("ops", Role::Operator, None, "t", "test")
            .await
            .unwrap();
        let verified = store
            .account_by_token_or_remembered(&op.token)
            .await
            .unwrap()
            .unwrap();
        assert!(!verified.remembered);
        assert_eq!(store.remembered_tokens(), 1);
        // The node's own CLI token is never remembered.
        let node = store.node_token(time::Duration::seconds(60)).await.unwrap();
        let n = store
            .account_by_token_or_remembered(&node)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n.account.name, NODE_ACCOUNT);
        assert_eq!(store.remembered_tokens(), 1, "no node token in memory");

        // During an outage the operator token comes from memory, marked.
        store.mark_failed(&io_error(), Instant::now());
        let r = store
            .account_by_token_or_remembered(&op.token)
            .await
            .unwrap()
            .unwrap();
        assert!(r.remembered);
        assert_eq!(r.account.name, "ops");
        store.mark_reachable();

        // An account change forgets everything; so does a disable.
        store
            .issue_token("ops", "second", None, "test")
            .await
            .unwrap();
        assert_eq!(store.remembered_tokens(), 0, "a token issued forgets");
        store
            .account_by_token_or_remembered(&op.token)
            .await
            .unwrap();
        assert_eq!(store.remembered_tokens(), 1);
        store
            .set_account_state(
                "ops",
                crate::model::account::AccountState::Disabled,
                "test",
                None,
            )
            .await
            .unwrap();
        assert_eq!(store.remembered_tokens(), 0, "a disable forgets");
        store.mark_failed(&io_error(), Instant::now());
        assert!(
            store
                .recall(&crate::store::secret_hash(&op.token))
                .is_none(),
            "the disabled account's token is not served from memory"
        );
    }
}
