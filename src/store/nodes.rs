//! The node table: every edge node sharing this database writes its
//! heartbeat, the registry version it enforces, its listeners and its
//! drain state, and its recent demand per partner (D126: requests per
//! second offered to its rate check, smoothed, as a JSON object); `fedge
//! nodes` and the other nodes read them.
//!
//! Owns the `nodes` table. It never decides whether a node is alive (the
//! reader compares `heartbeat_ms` with the database's clock and `[cluster]
//! gone_after`) and never deletes a row (a gone node stays listed until an
//! operator forgets it with [`Store::forget_node`]).

use sqlx::Row;

use super::{Store, StoreError};

/// What one node says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRecord {
    /// The node's name (`[cluster] node`), unique in the database.
    pub name: String,
    /// Random per start of the process: tells a restart from a rival node
    /// configured with the same name.
    pub instance: String,
    /// The fedge version it runs.
    pub version: String,
    /// RFC 3339.
    pub started_at: String,
    /// Its last heartbeat, Unix milliseconds on its own clock.
    pub heartbeat_ms: i64,
    /// The registry version it enforces.
    pub registry_version: i64,
    /// Its listeners as JSON (`[{"role","transport","addr"}]`).
    pub listeners: String,
    /// Set while it drains: when the drain began (RFC 3339).
    pub draining: Option<String>,
    /// Set when it stopped cleanly (RFC 3339).
    pub stopped_at: Option<String>,
    /// Its recent demand per partner as JSON (`{"partner id": requests
    /// per second}`, only partners above zero); `None` before migration
    /// 0012 or before its first heartbeat with demand.
    pub demand: Option<String>,
}

impl Store {
    /// Writes `node`'s heartbeat (creating its row, or taking over the row
    /// of an earlier start with the same name). Clears `stopped_at`.
    pub async fn node_heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO nodes (name, instance, version, started_at, heartbeat_ms, \
             registry_version, listeners, draining, stopped_at, demand) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9) \
             ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, \
             version = excluded.version, started_at = excluded.started_at, \
             heartbeat_ms = excluded.heartbeat_ms, \
             registry_version = excluded.registry_version, \
             listeners = excluded.listeners, draining = excluded.draining, \
             stopped_at = NULL, demand = excluded.demand",
        )
        .bind(&node.name)
        .bind(&node.instance)
        .bind(&node.version)
        .bind(&node.started_at)
        .bind(node.heartbeat_ms)
        .bind(node.registry_version)
        .bind(&node.listeners)
        .bind(&node.draining)
        .bind(&node.demand)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks `name` stopped, if `instance` still owns its row.
    pub async fn node_stopped(
        &self,
        name: &str,
        instance: &str,
        at: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE nodes SET stopped_at = $1 WHERE name = $2 AND instance = $3")
            .bind(at)
            .bind(name)
            .bind(instance)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every node that ever wrote a heartbeat, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, instance, version, started_at, heartbeat_ms, registry_version, \
             listeners, draining, stopped_at, demand FROM nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeRecord {
                    name: r.try_get(0)?,
                    instance: r.try_get(1)?,
                    version: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    heartbeat_ms: r.try_get(4)?,
                    registry_version: r.try_get(5)?,
                    listeners: r.try_get(6)?,
                    draining: r.try_get(7)?,
                    stopped_at: r.try_get(8)?,
                    demand: r.try_get(9)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The database's clock, in Unix milliseconds: heartbeats are written
    /// and judged by it, so nodes whose own clocks disagree still agree on
    /// which nodes are alive.
    pub async fn db_now_ms(&self) -> Result<i64, StoreError> {
        let sql = match self.backend {
            super::Backend::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
            }
            super::Backend::Sqlite => {
                "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
            }
        };
        let row = sqlx::query(sql).fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Removes a node's row (a node retired for good). True if there was one.
    pub async fn forget_node(&self, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM nodes WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;

    #[tokio::test]
    async fn the_database_clock_is_unix_milliseconds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/n.db", dir.path().display()))
            .await
            .unwrap();
        let db = store.db_now_ms().await.unwrap();
        let here = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // The same machine: the two clocks agree within a few seconds.
        assert!((db - here).abs() < 5_000, "db {db} here {here}");
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_in_two_processes_wait_for_each_other() {
        // The edge's heartbeat writes every second while an operator's CLI
        // (another Store on the same file) writes an account with its audit
        // entry: a transaction that reads before it writes must wait for
        // the other writer, never fail "database is locked".
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/w.db", dir.path().display());
        let edge = Store::open(&url).await.unwrap();
        let cli = Store::open(&url).await.unwrap();
        let beats = tokio::spawn(async move {
            let mut row = super::NodeRecord {
                name: "n".into(),
                instance: "i".into(),
                version: "0".into(),
                started_at: "t".into(),
                heartbeat_ms: 0,
                registry_version: 0,
                listeners: "[]".into(),
                draining: None,
                stopped_at: None,
                demand: None,
            };
            for i in 0..400 {
                row.heartbeat_ms = i;
                edge.node_heartbeat(&row).await.unwrap();
            }
        });
        for i in 0..40 {
            cli.add_token_account(
                &format!("op{i}"),
                crate::model::account::Role::Viewer,
                None,
                "t",
                "tester",
            )
            .await
            .unwrap_or_else(|e| panic!("write {i} failed beside the heartbeat: {e}"));
        }
        beats.await.unwrap();
    }
}
