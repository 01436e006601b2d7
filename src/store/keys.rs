//! The topology-hiding keys: the current one, the ones still in their grace
//! period after a rotation, rotation itself (committed before it returns)
//! and the audit trail of every key created, rotated in or retired.
//!
//! Owns the SQL of `topology_keys` and `key_audit`. It never logs or
//! returns a secret except to the caller that seals with it, and never
//! keeps a retired key past its grace period.

use std::time::{Duration, SystemTime};

use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Store, StoreError, now_rfc3339};

/// A key as the edge uses it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: u32,
    pub secret: [u8; 32],
    /// When it stops opening tokens (`None` for the current key).
    pub retire_at: Option<SystemTime>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("retire_at", &self.retire_at)
            .finish_non_exhaustive()
    }
}

/// A key as the operator sees it: no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: u32,
    pub created_at: String,
    pub retire_at: Option<String>,
}

/// One audited key event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub key_id: u32,
    pub detail: Option<String>,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub new_id: u32,
    /// The key it replaced, and until when that key still opens tokens.
    pub previous: Option<(u32, String)>,
}

fn hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(what: &str, s: &str) -> Result<[u8; 32], StoreError> {
    let bad = || StoreError::Corrupt(format!("{what} is not 32 hex bytes"));
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = std::str::from_utf8(&bytes[2 * i..2 * i + 2])
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(bad)?;
    }
    Ok(out)
}

fn parse_time(s: &str) -> Result<SystemTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|_| StoreError::Corrupt(format!("{s:?} is not an RFC 3339 time")))
}

/// `now` plus `d`, as the store writes times.
fn later(d: Duration) -> String {
    let t = OffsetDateTime::now_utc() + d;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

fn key_id(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("topology key id {v}")))
}

const LEGACY: &str = "secret:topology";

impl Store {
    /// The keys that open tokens now (current first seals), creating the
    /// first one when there is none: from the key of earlier versions
    /// (kept in `store_info`, then removed from there) or from `fresh`.
    pub async fn topology_keys(&self, fresh: [u8; 32]) -> Result<Vec<StoredKey>, StoreError> {
        let keys = self.live_keys().await?;
        if !keys.is_empty() {
            return Ok(keys);
        }
        let mut tx = self.begin_write().await?;
        let legacy = sqlx::query("SELECT value FROM store_info WHERE name = $1")
            .bind(LEGACY)
            .fetch_optional(&mut *tx)
            .await?;
        let (secret, detail) = match legacy {
            Some(row) => {
                let v: String = row.try_get(0)?;
                (
                    unhex(LEGACY, &v)?,
                    "the key of earlier versions, moved here",
                )
            }
            None => (fresh, "first key"),
        };
        let now = now_rfc3339();
        let done = sqlx::query(
            "INSERT INTO topology_keys (id, secret, created_at, retire_at) VALUES (1, $1, $2, NULL) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(hex(&secret))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            audit(&mut tx, &now, "fedge", "created", 1, Some(detail)).await?;
            sqlx::query("DELETE FROM store_info WHERE name = $1")
                .bind(LEGACY)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.live_keys().await
    }

    /// The keys not yet retired, newest first.
    async fn live_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, secret, retire_at FROM topology_keys \
             WHERE retire_at IS NULL OR retire_at > $1 ORDER BY id DESC",
        )
        .bind(now_rfc3339())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id = key_id(r.try_get("id")?)?;
                let secret: String = r.try_get("secret")?;
                let retire: Option<String> = r.try_get("retire_at")?;
                Ok(StoredKey {
                    id,
                    secret: unhex(&format!("topology key {id}"), &secret)?,
                    retire_at: retire.as_deref().map(parse_time).transpose()?,
                })
            })
            .collect()
    }

    /// Every key still stored, newest first, without secrets.
    pub async fn topology_key_list(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows =
            sqlx::query("SELECT id, created_at, retire_at FROM topology_keys ORDER BY id DESC")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    id: key_id(r.try_get("id")?)?,
                    created_at: r.try_get("created_at")?,
                    retire_at: r.try_get("retire_at")?,
                })
            })
            .collect()
    }

    /// The key audit trail, oldest first.
    pub async fn key_audit(&self) -> Result<Vec<KeyEvent>, StoreError> {
        let rows =
            sqlx::query("SELECT at, actor, action, key_id, detail FROM key_audit ORDER BY at, id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyEvent {
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    key_id: key_id(r.try_get("key_id")?)?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Makes `fresh` the current key; the previous one opens tokens for
    /// `grace` more. Keys whose grace is over are deleted. Committed (and
    /// on SQLite synced) before it returns; audited under `actor`.
    pub async fn rotate_topology_key(
        &self,
        fresh: [u8; 32],
        grace: Duration,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Rotation, StoreError> {
        // A database of an earlier version gets its first key first.
        self.topology_keys(fresh).await?;
        let mut tx = self.begin_write().await?;
        let now = now_rfc3339();
        let current: Option<i64> =
            sqlx::query("SELECT MAX(id) FROM topology_keys WHERE retire_at IS NULL")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        let top: Option<i64> = sqlx::query("SELECT MAX(id) FROM topology_keys")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let new_id = key_id(top.unwrap_or(0) + 1)?;
        let until = later(grace);
        let mut previous = None;
        if let Some(prev) = current {
            sqlx::query("UPDATE topology_keys SET retire_at = $1 WHERE retire_at IS NULL")
                .bind(&until)
                .execute(&mut *tx)
                .await?;
            let prev = key_id(prev)?;
            let detail = format!("replaced by key {new_id}; opens tokens until {until}");
            audit(&mut tx, &now, actor, "retiring", prev, Some(&detail)).await?;
            previous = Some((prev, until.clone()));
        }
        let gone = sqlx::query(
            "SELECT id FROM topology_keys WHERE retire_at IS NOT NULL AND retire_at <= $1",
        )
        .bind(&now)
        .fetch_all(&mut *tx)
        .await?;
        for r in gone {
            let id = key_id(r.try_get(0)?)?;
            sqlx::query("DELETE FROM topology_keys WHERE id = $1")
                .bind(id as i64)
                .execute(&mut *tx)
                .await?;
            audit(
                &mut tx,
                &now,
                actor,
                "deleted",
                id,
                Some("grace period over"),
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO topology_keys (id, secret, created_at, retire_at) VALUES ($1, $2, $3, NULL)",
        )
        .bind(new_id as i64)
        .bind(hex(&fresh))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        let detail = match reason {
            Some(r) => format!("rotated in: {r}"),
            None => "rotated in".to_string(),
        };
        audit(&mut tx, &now, actor, "rotated", new_id, Some(&detail)).await?;
        tx.commit().await?;
        Ok(Rotation { new_id, previous })
    }
}

async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    at: &str,
    actor: &str,
    action: &str,
    key: u32,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO key_audit (id, at, actor, action, key_id, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(format!("{key}:{action}"))
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(key as i64)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_earlier_key_is_moved_then_rotated_out_after_its_grace() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/k.db", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        // A database of an earlier version: the key as hex in store_info.
        sqlx::query("INSERT INTO store_info (name, value) VALUES ($1, $2)")
            .bind(LEGACY)
            .bind(hex(&[5u8; 32]))
            .execute(&store.pool)
            .await
            .unwrap();
        let keys = store.topology_keys([9u8; 32]).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!((keys[0].id, keys[0].secret), (1, [5u8; 32]));
        let left = sqlx::query("SELECT value FROM store_info WHERE name = $1")
            .bind(LEGACY)
            .fetch_optional(&store.pool)
            .await
            .unwrap();
        assert!(left.is_none(), "the old copy of the key is gone");
        // The same key ever after.
        assert_eq!(store.topology_keys([7u8; 32]).await.unwrap(), keys);

        let r = store
            .rotate_topology_key([6u8; 32], Duration::from_secs(3600), "ops", Some("drill"))
            .await
            .unwrap();
        assert_eq!(r.new_id, 2);
        assert_eq!(r.previous.as_ref().map(|p| p.0), Some(1));
        let keys = store.topology_keys([7u8; 32]).await.unwrap();
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), vec![2, 1]);
        assert!(keys[0].retire_at.is_none() && keys[1].retire_at.is_some());

        // A zero grace: key 2 stops at once; key 1 keeps its own hour.
        store
            .rotate_topology_key([4u8; 32], Duration::ZERO, "ops", None)
            .await
            .unwrap();
        let ids: Vec<u32> = store
            .topology_keys([7u8; 32])
            .await
            .unwrap()
            .iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ids, vec![3, 1]);
        // The next rotation deletes the key whose grace is over.
        store
            .rotate_topology_key([3u8; 32], Duration::from_secs(60), "ops", None)
            .await
            .unwrap();
        let listed: Vec<u32> = store
            .topology_key_list()
            .await
            .unwrap()
            .iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(listed, vec![4, 3, 1]);
        let trail = store.key_audit().await.unwrap();
        let actions: Vec<(u32, &str)> = trail
            .iter()
            .map(|e| (e.key_id, e.action.as_str()))
            .collect();
        for want in [
            (1, "created"),
            (1, "retiring"),
            (2, "rotated"),
            (2, "retiring"),
            (2, "deleted"),
            (3, "rotated"),
            (4, "rotated"),
        ] {
            assert!(actions.contains(&want), "{want:?} missing from {actions:?}");
        }
        assert!(
            trail
                .iter()
                .any(|e| e.actor == "ops" && e.detail.as_deref() == Some("rotated in: drill"))
        );
        store.close().await;
    }
}
