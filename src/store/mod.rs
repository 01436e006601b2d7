//! The database: SQLite embedded by default, PostgreSQL for several edge
//! nodes, one set of portable migrations applied at open.
//!
//! The only module that contains SQL. Callers get typed values and
//! [`StoreError`]s, never rows or query strings. Writes are committed (and,
//! on SQLite, synced to disk) before a call returns.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

pub mod cvi;
mod partners;

pub use partners::{Change, now_rfc3339, today};

use crate::model::partner::TransitionError;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot create the database directory {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("no partner has the domain {0}")]
    NotFound(String),
    #[error("domain {domain} already belongs to {holder}")]
    DomainTaken { domain: String, holder: String },
    #[error("{0}")]
    Transition(TransitionError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the database holds something this version cannot read: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True for mistakes in what the operator asked (exit code 2), as opposed
    /// to failures of the database itself.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound(_)
                | StoreError::DomainTaken { .. }
                | StoreError::Transition(_)
                | StoreError::Invalid(_)
        )
    }
}

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations");

impl Store {
    /// Opens (creating a SQLite file and its directory when missing) and migrates.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut conn_url = url.to_string();
        if backend == Backend::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or("");
            if !path.is_empty()
                && !path.starts_with(':')
                && let Some(dir) = Path::new(path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                    dir: dir.display().to_string(),
                    source,
                })?;
            }
            if !conn_url.contains('?') {
                conn_url.push_str("?mode=rwc");
            }
        }
        let opts = AnyConnectOptions::from_str(&conn_url).map_err(|source| StoreError::Open {
            url: url.to_string(),
            source,
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the edge read while the CLI writes; FULL makes
                        // every commit durable before it is acknowledged.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open {
                url: url.to_string(),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database: SQLite's own integrity check, then the registry's
    /// invariants (every partner has an audit trail that ends in its current
    /// state, and its domains are claimed unless it is revoked). Returns the
    /// problems found; empty means healthy.
    pub async fn verify(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        if self.backend == Backend::Sqlite {
            let rows = sqlx::query("PRAGMA integrity_check")
                .fetch_all(&self.pool)
                .await?;
            for r in rows {
                let v: String = r.try_get(0)?;
                if v != "ok" {
                    problems.push(format!("sqlite integrity: {v}"));
                }
            }
        }
        for p in self.partners().await? {
            let trail = self.trail(&p.id).await?;
            match trail.last() {
                None => problems.push(format!(
                    "partner {} ({}) has no audit trail",
                    p.name(),
                    p.id
                )),
                Some(last) if last.to_state != p.state => problems.push(format!(
                    "partner {} is {} but its audit trail ends in {}",
                    p.name(),
                    p.state,
                    last.to_state
                )),
                Some(_) => {}
            }
            if p.details.domains.is_empty() {
                problems.push(format!("partner {} has no domains", p.id));
            }
        }
        Ok(problems)
    }

    /// A named 32-byte secret shared by every node on this database, made
    /// (from `fresh`) the first time it is asked for and the same ever after.
    pub async fn secret(&self, name: &str, fresh: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let key = format!("secret:{name}");
        let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        sqlx::query(
            "INSERT INTO store_info (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&key)
        .bind(&hex)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM store_info WHERE name = $1")
            .bind(&key)
            .fetch_one(&self.pool)
            .await?;
        let value: String = row.try_get(0)?;
        let mut out = [0u8; 32];
        let bytes = value.as_bytes();
        if bytes.len() != 64 {
            return Err(StoreError::Corrupt(format!("{key} is not 32 hex bytes")));
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = std::str::from_utf8(&bytes[2 * i..2 * i + 2])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("{key} is not 32 hex bytes")))?;
        }
        Ok(out)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
