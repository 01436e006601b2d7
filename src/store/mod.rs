//! The database: SQLite embedded by default, PostgreSQL for several edge
//! nodes, one set of portable migrations applied at open.
//!
//! The only module that contains SQL. Callers get typed values and
//! [`StoreError`]s, never rows or query strings. Writes are committed (and,
//! on SQLite, synced to disk) before a call returns. A SQLite file is
//! readable by its owner only (it holds the topology-hiding keys), and a
//! database URL is never shown with its password ([`redact_url`]).

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

mod accounts;
pub mod audit;
mod certs;
pub mod cvi;
mod health;
mod keys;
mod nodes;
mod partners;
mod verdicts;

pub use accounts::{Credentials, SESSION_LIFETIME, Session, new_secret, secret_hash};
pub use certs::{PartnerCert, StoredPartnerCert};
pub use health::{OUTAGE_TOKEN_MEMORY, StoreHealth, TokenAccount};
pub use keys::{KeyEvent, KeyInfo, Rotation, StoredKey};
pub use nodes::NodeRecord;
pub use partners::{Change, now_rfc3339, today};
pub use verdicts::VerdictCount;

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
    /// The URL it was opened with (PostgreSQL's LISTEN needs a connection
    /// of its own); never logged as is ([`redact_url`]).
    url: String,
    /// Whether the database answered lately (shared by every clone).
    health: std::sync::Arc<health::Health>,
}

/// The PostgreSQL notification channel every registry change is announced
/// on (payload: the new registry version), in the transaction that makes it.
pub const REGISTRY_CHANNEL: &str = "fedge_registry";

/// How long a request waits for a database connection before it fails
/// (and a node without its database answers at once rather than in 30 s).
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let masked = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        user.to_string()
    };
    format!("{}{masked}{}", &url[..scheme_end + 3], &rest[at..])
}

/// The SQLite file path of a `sqlite:` URL (none for in-memory databases).
fn sqlite_path(url: &str) -> Option<&Path> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or("");
    (!path.is_empty() && !path.starts_with(':')).then(|| Path::new(path))
}

/// Creates the SQLite file readable and writable by its owner only (0600),
/// or makes an existing one so, along with its WAL and shared-memory files
/// (SQLite gives those the database file's mode when it creates them).
fn restrict_sqlite_file(url: &str) -> Result<(), StoreError> {
    #[cfg(unix)]
    if let Some(path) = sqlite_path(url) {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let perm_err = |p: &Path, source| StoreError::Dir {
            dir: format!("{} (setting owner-only permissions)", p.display()),
            source,
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| perm_err(path, e))?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = Path::new(&p);
            if p.exists() {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| perm_err(p, e))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = url;
    Ok(())
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
            if let Some(dir) = sqlite_path(url)
                .and_then(Path::parent)
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
        if backend == Backend::Sqlite {
            restrict_sqlite_file(url)?;
        }
        let opts = AnyConnectOptions::from_str(&conn_url).map_err(|source| StoreError::Open {
            url: redact_url(url),
            source,
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            // A connection is checked before it is handed out, so the pool
            // drops the dead ones itself after a PostgreSQL restart.
            .test_before_acquire(true)
            .acquire_timeout(if backend == Backend::Sqlite {
                std::time::Duration::from_secs(30)
            } else {
                ACQUIRE_TIMEOUT
            })
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
                url: redact_url(url),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        let store = Store {
            pool,
            backend,
            url: url.to_string(),
            health: Default::default(),
        };
        store.chain_history().await?;
        Ok(store)
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`), waiting up to the busy timeout for
    /// another writer (the running edge's heartbeat, say): a deferred
    /// transaction that read first would instead fail "database is locked"
    /// when a write landed between its read and its own write.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL the store was opened with (for a LISTEN connection of its
    /// own; redact it before showing it).
    pub fn url(&self) -> &str {
        &self.url
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
        if let Err(b) = self.audit_verify().await? {
            problems.push(format!("audit chain broken: {b}"));
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

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_in_database_urls_are_masked() {
        assert_eq!(
            redact_url("postgres://fedge:s3cr%40t@db.local:5432/fedge?sslmode=require"),
            "postgres://fedge:***@db.local:5432/fedge?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://fedge@db.local/fedge"),
            "postgres://fedge@db.local/fedge"
        );
        assert_eq!(redact_url("sqlite://var/fedge.db"), "sqlite://var/fedge.db");
        assert_eq!(redact_url("postgres://u:p@h/x@y"), "postgres://u:***@h/x@y");
    }
}
