//! The tamper-evident audit chain: every partner, account and CVI change,
//! appended in the same transaction as the change, each entry sealed with
//! SHA-256 over the previous entry's hash and its own fields.
//!
//! Owns the chain's encoding, appending and checking. It never edits or
//! deletes an entry, and it never decides what is worth auditing (the
//! store's writers call [`append`]). The encoding is documented here and in
//! docs/operations.md so that an auditor can check an export with any tool:
//!
//! `hash = hex(SHA-256(JSON array of the strings
//!   [seq, at, actor, kind, subject, action, detail, prev_hash]))`
//!
//! with `seq` in decimal, the JSON written without spaces (serde_json's
//! compact form), and the first entry's `prev_hash` 64 zeros.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

use super::{Backend, Store, StoreError};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What kind of object an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Partner,
    Account,
    Cvi,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Partner => "partner",
            Kind::Account => "account",
            Kind::Cvi => "cvi",
        }
    }
}

/// One entry of the chain, as stored and as exported (one JSON line each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub subject: String,
    pub action: String,
    /// A JSON document (object) with what changed; `{}` when nothing more.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl ChainEntry {
    /// The hash this entry's fields and `prev_hash` seal to.
    pub fn compute_hash(&self) -> String {
        seal(
            self.seq,
            &self.at,
            &self.actor,
            &self.kind,
            &self.subject,
            &self.action,
            &self.detail,
            &self.prev_hash,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn seal(
    seq: i64,
    at: &str,
    actor: &str,
    kind: &str,
    subject: &str,
    action: &str,
    detail: &str,
    prev_hash: &str,
) -> String {
    let seq = seq.to_string();
    let fields = [
        seq.as_str(),
        at,
        actor,
        kind,
        subject,
        action,
        detail,
        prev_hash,
    ];
    // Serialising an array of &str cannot fail.
    let text = serde_json::to_string(&fields).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The first place a sequence of entries stops being an unbroken chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {what}")]
pub struct ChainBreak {
    /// The sequence number of the first entry that does not hold.
    pub seq: i64,
    pub what: String,
}

/// Checks that `entries` (in the order given) form an unbroken chain:
/// consecutive sequence numbers, each `prev_hash` the previous entry's
/// hash, each hash its own fields' seal. `start` is the `prev_hash` the
/// first entry must carry (`Some(GENESIS)` for a whole chain; `None`
/// accepts the first entry's own, for an export that starts later).
/// Returns the number of entries checked and the last hash.
pub fn check<'a>(
    entries: impl IntoIterator<Item = &'a ChainEntry>,
    start: Option<&str>,
) -> Result<(u64, String), ChainBreak> {
    let mut prev: Option<(i64, String)> = None;
    let mut n = 0u64;
    for e in entries {
        match &prev {
            None => {
                if let Some(s) = start
                    && e.prev_hash != s
                {
                    return Err(ChainBreak {
                        seq: e.seq,
                        what: if s == GENESIS {
                            format!(
                                "the chain starts at entry {} whose prev_hash is not the genesis value: earlier entries were deleted or this one edited",
                                e.seq
                            )
                        } else {
                            "its prev_hash is not the expected starting hash".into()
                        },
                    });
                }
                if start == Some(GENESIS) && e.seq != 1 {
                    return Err(ChainBreak {
                        seq: e.seq,
                        what: format!(
                            "the chain starts at {} instead of 1: entries before it were deleted",
                            e.seq
                        ),
                    });
                }
            }
            Some((pseq, phash)) => {
                if e.seq != pseq + 1 {
                    return Err(ChainBreak {
                        seq: e.seq,
                        what: if e.seq > pseq + 1 {
                            format!(
                                "follows entry {pseq}: entries {}..{} were deleted",
                                pseq + 1,
                                e.seq - 1
                            )
                        } else {
                            format!("follows entry {pseq}: the chain was reordered")
                        },
                    });
                }
                if &e.prev_hash != phash {
                    return Err(ChainBreak {
                        seq: e.seq,
                        what: format!(
                            "its prev_hash does not match entry {pseq}'s hash: entries were reordered, replaced or {pseq} edited"
                        ),
                    });
                }
            }
        }
        if e.compute_hash() != e.hash {
            return Err(ChainBreak {
                seq: e.seq,
                what: "its fields do not match its hash: the entry was edited".into(),
            });
        }
        prev = Some((e.seq, e.hash.clone()));
        n += 1;
    }
    Ok((n, prev.map(|(_, h)| h).unwrap_or_else(|| GENESIS.into())))
}

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub at: &'a str,
    pub actor: &'a str,
    pub kind: Kind,
    pub subject: &'a str,
    pub action: &'a str,
    /// A JSON object; `None` stores `{}`.
    pub detail: Option<serde_json::Value>,
}

/// Appends `entry` to the chain inside the caller's transaction, so that
/// the change and its audit entry commit together or not at all.
/// Appenders are serialised: on PostgreSQL by a table lock held to the
/// end of the transaction, on SQLite by its single writer (the caller's
/// transaction has written, or this function writes first).
pub async fn append(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    entry: NewEntry<'_>,
) -> Result<ChainEntry, StoreError> {
    match backend {
        Backend::Postgres => {
            sqlx::query("LOCK TABLE audit_chain IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut **tx)
                .await?;
        }
        Backend::Sqlite => {
            // A no-op write takes SQLite's write lock before the head is read.
            sqlx::query("UPDATE registry_version SET version = version WHERE id = 1")
                .execute(&mut **tx)
                .await?;
        }
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    let (seq, prev_hash) = match head {
        Some(r) => (r.try_get::<i64, _>(0)? + 1, r.try_get::<String, _>(1)?),
        None => (1, GENESIS.to_string()),
    };
    let detail = entry
        .detail
        .map(|d| d.to_string())
        .unwrap_or_else(|| "{}".into());
    let mut e = ChainEntry {
        seq,
        at: entry.at.to_string(),
        actor: entry.actor.to_string(),
        kind: entry.kind.as_str().to_string(),
        subject: entry.subject.to_string(),
        action: entry.action.to_string(),
        detail,
        prev_hash,
        hash: String::new(),
    };
    e.hash = e.compute_hash();
    sqlx::query(
        "INSERT INTO audit_chain (seq, at, actor, kind, subject, action, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(e.seq)
    .bind(&e.at)
    .bind(&e.actor)
    .bind(&e.kind)
    .bind(&e.subject)
    .bind(&e.action)
    .bind(&e.detail)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut **tx)
    .await?;
    // The log journals every head: a later head's hash covers every entry
    // before it, so a collector keeping these lines is an outside anchor
    // (`fedge audit verify --expect-head SEQ:HASH`).
    tracing::info!(
        seq = e.seq,
        hash = %e.hash,
        kind = %e.kind,
        subject = %e.subject,
        action = %e.action,
        actor = %e.actor,
        "audit entry appended"
    );
    Ok(e)
}

/// The chain's columns, as a literal so queries stay static strings.
macro_rules! chain_cols {
    () => {
        "SELECT seq, at, actor, kind, subject, action, detail, prev_hash, hash FROM audit_chain"
    };
}

fn entry_from_row(r: &sqlx::any::AnyRow) -> Result<ChainEntry, StoreError> {
    Ok(ChainEntry {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        actor: r.try_get(2)?,
        kind: r.try_get(3)?,
        subject: r.try_get(4)?,
        action: r.try_get(5)?,
        detail: r.try_get(6)?,
        prev_hash: r.try_get(7)?,
        hash: r.try_get(8)?,
    })
}

impl Store {
    /// Seals the history a database held before the chain existed (an
    /// upgrade): when the chain is empty, every `partner_audit` entry, CVI
    /// enrolment and meeting is appended in time order, marked
    /// `"imported": true`. Runs at open; does nothing on a chained database.
    pub(super) async fn chain_history(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        // Once started, a chain is never sealed again from the older
        // tables: an emptied chain must show as broken, not be rebuilt.
        let started =
            sqlx::query("SELECT value FROM store_info WHERE name = 'audit_chain_started'")
                .fetch_optional(&mut *tx)
                .await?;
        if started.is_some() {
            return Ok(());
        }
        // Accounts exist only since the chain does: with accounts and no
        // record of the chain's start, the record was deleted; never seal
        // the older tables again then (verify reports the emptied chain).
        let accounts: i64 = sqlx::query("SELECT COUNT(*) FROM accounts")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if accounts > 0 {
            return Ok(());
        }
        sqlx::query("INSERT INTO store_info (name, value) VALUES ('audit_chain_started', $1)")
            .bind(super::now_rfc3339())
            .execute(&mut *tx)
            .await?;
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM audit_chain")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if n > 0 {
            tx.commit().await?;
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT partner_id, at, actor, action, from_state, to_state, reason FROM partner_audit ORDER BY at, seq",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut old: Vec<(String, String, Kind, String, String, serde_json::Value)> = Vec::new();
        for r in &rows {
            old.push((
                r.try_get(1)?,
                r.try_get(2)?,
                Kind::Partner,
                r.try_get(0)?,
                r.try_get(3)?,
                serde_json::json!({
                    "imported": true,
                    "from_state": r.try_get::<Option<String>, _>(4)?,
                    "to_state": r.try_get::<String, _>(5)?,
                    "reason": r.try_get::<Option<String>, _>(6)?,
                }),
            ));
        }
        let rows =
            sqlx::query("SELECT email, enrolled_at, enrolled_by, org_name FROM cvi_organisers")
                .fetch_all(&mut *tx)
                .await?;
        for r in &rows {
            old.push((
                r.try_get(1)?,
                r.try_get(2)?,
                Kind::Cvi,
                r.try_get(0)?,
                "enrol".into(),
                serde_json::json!({"imported": true, "org_name": r.try_get::<String, _>(3)?}),
            ));
        }
        let rows = sqlx::query("SELECT conference_id, created_at, organiser FROM cvi_meetings")
            .fetch_all(&mut *tx)
            .await?;
        for r in &rows {
            old.push((
                r.try_get(1)?,
                "unknown".into(),
                Kind::Cvi,
                r.try_get(0)?,
                "meeting".into(),
                serde_json::json!({"imported": true, "organiser": r.try_get::<String, _>(2)?}),
            ));
        }
        if old.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        old.sort_by(|a, b| a.0.cmp(&b.0));
        for (at, actor, kind, subject, action, detail) in &old {
            append(
                &mut tx,
                self.backend,
                NewEntry {
                    at,
                    actor,
                    kind: *kind,
                    subject,
                    action,
                    detail: Some(detail.clone()),
                },
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(
            entries = old.len(),
            "sealed the earlier history into the audit chain"
        );
        Ok(())
    }

    /// The chain's last entry (`seq`, `hash`), `None` when it is empty.
    pub async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
            None => Ok(None),
        }
    }

    /// The chain's entries with `at >= since` (all when `None`), in order.
    pub async fn audit_entries(&self, since: Option<&str>) -> Result<Vec<ChainEntry>, StoreError> {
        let rows = match since {
            Some(since) => {
                sqlx::query(concat!(chain_cols!(), " WHERE at >= $1 ORDER BY seq"))
                    .bind(since)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(concat!(chain_cols!(), " ORDER BY seq"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(entry_from_row).collect()
    }

    /// The entries about one subject (a partner id, an account name, a CVI
    /// organiser or meeting), in order.
    pub async fn audit_of(&self, kind: Kind, subject: &str) -> Result<Vec<ChainEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, kind, subject, action, detail, prev_hash, hash FROM audit_chain \
             WHERE kind = $1 AND subject = $2 ORDER BY seq",
        )
        .bind(kind.as_str())
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Walks the whole chain from the genesis. `Ok((entries, head hash))`
    /// when it holds; the first break otherwise.
    pub async fn audit_verify(&self) -> Result<Result<(u64, String), ChainBreak>, StoreError> {
        let entries = self.audit_entries(None).await?;
        if entries.is_empty() {
            let started =
                sqlx::query("SELECT value FROM store_info WHERE name = 'audit_chain_started'")
                    .fetch_optional(&self.pool)
                    .await?;
            let any_change: i64 = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM partners) + (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM cvi_organisers)",
            )
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
            let accounts: i64 = sqlx::query("SELECT COUNT(*) FROM accounts")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            if any_change > 0 && (started.is_some() || accounts > 0) {
                let since = match started {
                    Some(r) => format!("started {}", r.try_get::<String, _>(0)?),
                    None => "its start record deleted too".into(),
                };
                return Ok(Err(ChainBreak {
                    seq: 1,
                    what: format!(
                        "the chain ({since}) is empty although partners, accounts or organisers exist: every entry was deleted"
                    ),
                }));
            }
        }
        Ok(check(&entries, Some(GENESIS)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainEntry> {
        let mut out: Vec<ChainEntry> = Vec::new();
        for seq in 1..=n {
            let prev_hash = out.last().map(|e| e.hash.clone()).unwrap_or(GENESIS.into());
            let mut e = ChainEntry {
                seq,
                at: format!("2026-12-03T10:00:0{seq}Z"),
                actor: "ops".into(),
                kind: "partner".into(),
                subject: "p_1".into(),
                action: "suspend".into(),
                detail: "{\"reason\":\"x\"}".into(),
                prev_hash,
                hash: String::new(),
            };
            e.hash = e.compute_hash();
            out.push(e);
        }
        out
    }

    #[test]
    fn an_unbroken_chain_holds() {
        let c = chain(5);
        assert_eq!(check(&c, Some(GENESIS)).map(|r| r.0), Ok(5));
        // An export from entry 3 checks on its own.
        assert_eq!(check(&c[2..], None).map(|r| r.0), Ok(3));
    }

    #[test]
    fn edits_deletions_and_reorders_name_the_entry() {
        let mut c = chain(5);
        c[2].actor = "mallory".into();
        assert_eq!(check(&c, Some(GENESIS)).map_err(|b| b.seq), Err(3));

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(check(&c, Some(GENESIS)).map_err(|b| b.seq), Err(3));

        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(check(&c, Some(GENESIS)).map_err(|b| b.seq), Err(3));

        let c = chain(5);
        assert_eq!(check(&c[1..], Some(GENESIS)).map_err(|b| b.seq), Err(2));
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        let e = &chain(1)[0];
        let text = format!(
            "[\"1\",\"{}\",\"ops\",\"partner\",\"p_1\",\"suspend\",\"{{\\\"reason\\\":\\\"x\\\"}}\",\"{}\"]",
            e.at, GENESIS
        );
        let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(e.hash, hex);
    }
}
