//! Partners' verdict counts per hour, summed over the nodes: what the
//! partner-scoped console view shows "over time".
//!
//! Owns the `partner_verdicts` table: adding a node's counts to an hour's
//! row (an upsert that adds), and reading one partner's rows. It never
//! counts anything itself (`federation::verdicts` samples the metrics) and
//! keeps no per-request data, only totals per hour.

use sqlx::Row;

use super::{Store, StoreError};

/// One partner's count of one verdict in one hour (`YYYY-MM-DDTHH`, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictCount {
    pub hour: String,
    pub partner: String,
    /// `refused` or `im_test`.
    pub kind: String,
    /// The refusal's rule, or the IM test's result.
    pub rule: String,
    /// `inbound`, `outbound` or `-`.
    pub direction: String,
    pub count: i64,
}

impl Store {
    /// Adds `rows` to their hours' totals in one transaction.
    pub async fn add_verdict_counts(&self, rows: &[VerdictCount]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO partner_verdicts (hour, partner, kind, rule, direction, count) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (hour, partner, kind, rule, direction) \
                 DO UPDATE SET count = partner_verdicts.count + excluded.count",
            )
            .bind(&r.hour)
            .bind(&r.partner)
            .bind(&r.kind)
            .bind(&r.rule)
            .bind(&r.direction)
            .bind(r.count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One partner's rows from `since_hour` on, newest hour first.
    pub async fn verdict_history(
        &self,
        partner: &str,
        since_hour: &str,
    ) -> Result<Vec<VerdictCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT hour, partner, kind, rule, direction, count FROM partner_verdicts \
             WHERE partner = $1 AND hour >= $2 ORDER BY hour DESC, kind, rule, direction",
        )
        .bind(partner)
        .bind(since_hour)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VerdictCount {
                    hour: r.try_get(0)?,
                    partner: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    rule: r.try_get(3)?,
                    direction: r.try_get(4)?,
                    count: r.try_get(5)?,
                })
            })
            .collect()
    }
}
