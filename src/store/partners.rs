//! Partners in the database: records, domains, the audit trail and the
//! registry version counter.
//!
//! Every change runs in one transaction that writes the partner, appends
//! its audit entry and bumps the registry version, and returns only after
//! the commit. The lifecycle rules themselves come from
//! `model::partner`; this module only persists their outcome.

use rand::Rng as _;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError};
use crate::model::partner::{
    AuditEntry, FIELDS, Partner, PartnerDetails, PartnerState, TransitionError, UnknownState, Verb,
    check_enableable, transition,
};

/// One field change for [`Store::update_partner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Set(String, Option<String>),
    AddDomain(String),
    RemoveDomain(String),
}

/// The time now, RFC 3339 UTC with milliseconds (sorts as text).
pub fn now_rfc3339() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

/// Today's date (UTC), `YYYY-MM-DD`.
pub fn today() -> String {
    now_rfc3339().get(..10).unwrap_or_default().to_string()
}

fn new_id(prefix: &str) -> String {
    let v: u64 = rand::rng().random();
    format!("{prefix}_{v:016x}")
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// The partner columns, as a literal so queries stay static strings.
macro_rules! partner_columns {
    () => {
        "id, org_name, org_reg_number, org_address, edge_fqdn, address, usage_statement, \
         spoc_name, spoc_email, spoc_phone, tech_name, tech_email, tech_phone, tech_sip, ig_level, ig_expires, \
         comment, rate_limit, product_check, ca_pin, state, requested_at, federated_at, suspended_at, revoked_at, \
         im_test_at, im_test_from, created_at, updated_at"
    };
}

fn partner_from_row(row: &AnyRow, domains: Vec<String>) -> Result<Partner, StoreError> {
    let g = |c: &str| -> Result<Option<String>, StoreError> {
        Ok(row.try_get::<Option<String>, _>(c)?)
    };
    let state: String = row.try_get("state")?;
    let state: PartnerState = state
        .parse()
        .map_err(|e: UnknownState| StoreError::Corrupt(format!("partner state: {e}")))?;
    let mut details = PartnerDetails {
        org_name: row.try_get("org_name")?,
        domains,
        ..PartnerDetails::default()
    };
    for f in FIELDS.iter().filter(|f| **f != "org_name") {
        details.set(f, g(f)?);
    }
    Ok(Partner {
        id: row.try_get("id")?,
        details,
        state,
        requested_at: row.try_get("requested_at")?,
        federated_at: g("federated_at")?,
        suspended_at: g("suspended_at")?,
        revoked_at: g("revoked_at")?,
        im_test_at: g("im_test_at")?,
        im_test_from: g("im_test_from")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    async fn domains_of(
        &self,
        tx: &mut Transaction<'_, Any>,
        partner_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT domain FROM partner_domains WHERE partner_id = $1 ORDER BY pos")
                .bind(partner_id)
                .fetch_all(&mut **tx)
                .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("domain")?))
            .collect()
    }

    async fn load(
        &self,
        tx: &mut Transaction<'_, Any>,
        partner_id: &str,
    ) -> Result<Partner, StoreError> {
        let sql = concat!(
            "SELECT ",
            partner_columns!(),
            " FROM partners WHERE id = $1"
        );
        let row = sqlx::query(sql)
            .bind(partner_id)
            .fetch_one(&mut **tx)
            .await?;
        let domains = self.domains_of(tx, partner_id).await?;
        partner_from_row(&row, domains)
    }

    /// The partner a domain names: its live holder, or else the latest
    /// revoked partner that held it (so history stays reachable).
    async fn id_by_domain(
        &self,
        tx: &mut Transaction<'_, Any>,
        domain: &str,
    ) -> Result<String, StoreError> {
        let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let row = sqlx::query(
            "SELECT partner_id FROM partner_domains WHERE domain = $1 \
             ORDER BY CASE WHEN released_at IS NULL THEN 0 ELSE 1 END, released_at DESC LIMIT 1",
        )
        .bind(&d)
        .fetch_optional(&mut **tx)
        .await?;
        match row {
            Some(r) => Ok(r.try_get("partner_id")?),
            None => Err(StoreError::NotFound(d)),
        }
    }

    /// The live partner holding `domain`, if any.
    async fn holder(
        &self,
        tx: &mut Transaction<'_, Any>,
        domain: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT partner_id FROM partner_domains WHERE domain = $1 AND released_at IS NULL",
        )
        .bind(domain)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("partner_id")?),
            None => None,
        })
    }

    /// Refuses domains that a live partner already holds, naming it.
    async fn ensure_unclaimed<'d>(
        &self,
        tx: &mut Transaction<'_, Any>,
        domains: impl IntoIterator<Item = &'d String>,
    ) -> Result<(), StoreError> {
        for d in domains {
            if let Some(holder) = self.holder(tx, d).await? {
                let other = self.load(tx, &holder).await?;
                return Err(StoreError::DomainTaken {
                    domain: d.clone(),
                    holder: format!("{} ({})", other.details.org_name, other.state),
                });
            }
        }
        Ok(())
    }

    /// Records a partner's domains in order; the unique index catches a
    /// concurrent claim that `ensure_unclaimed` could not see.
    async fn claim_domains(
        &self,
        tx: &mut Transaction<'_, Any>,
        partner_id: &str,
        domains: &[String],
    ) -> Result<(), StoreError> {
        for (pos, d) in domains.iter().enumerate() {
            sqlx::query("INSERT INTO partner_domains (partner_id, domain, pos, released_at) VALUES ($1, $2, $3, NULL)")
                .bind(partner_id)
                .bind(d)
                .bind(pos as i64)
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::DomainTaken {
                            domain: d.clone(),
                            holder: "another partner (added concurrently)".into(),
                        }
                    } else {
                        e.into()
                    }
                })?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        tx: &mut Transaction<'_, Any>,
        partner_id: &str,
        at: &str,
        actor: &str,
        action: &str,
        from: Option<PartnerState>,
        to: PartnerState,
        reason: Option<&str>,
        detail: Option<String>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO partner_audit (id, partner_id, seq, at, actor, action, from_state, to_state, reason, detail) \
             VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM partner_audit WHERE partner_id = $2), \
             $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(new_id("a"))
        .bind(partner_id)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(from.map(|s| s.as_str().to_string()))
        .bind(to.as_str())
        .bind(reason.map(str::to_string))
        .bind(&detail)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE registry_version SET version = version + 1 WHERE id = 1")
            .execute(&mut **tx)
            .await?;
        if self.backend == super::Backend::Postgres {
            // Delivered to every node's LISTEN when this transaction
            // commits (never before, never if it rolls back).
            sqlx::query(
                "SELECT 1 FROM (SELECT pg_notify($1, \
                 (SELECT version FROM registry_version WHERE id = 1)::text)) AS n",
            )
            .bind(super::REGISTRY_CHANNEL)
            .execute(&mut **tx)
            .await?;
        }
        let detail_json: Option<serde_json::Value> = detail.as_deref().map(|d| {
            serde_json::from_str(d).unwrap_or_else(|_| serde_json::Value::String(d.into()))
        });
        let chain_detail = serde_json::json!({
            "from_state": from.map(|s| s.as_str()),
            "to_state": to.as_str(),
            "reason": reason,
            "detail": detail_json,
        });
        super::audit::append(
            tx,
            self.backend,
            super::audit::NewEntry {
                at,
                actor,
                kind: super::audit::Kind::Partner,
                subject: partner_id,
                action,
                detail: Some(chain_detail),
            },
        )
        .await?;
        Ok(())
    }

    fn check_details(details: &PartnerDetails) -> Result<(), StoreError> {
        let problems = details.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Invalid(
                problems
                    .into_iter()
                    .map(|(f, m)| format!("{f}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ))
        }
    }

    /// Adds a partner in `state` (normally `requested`; another state imports
    /// an existing federation and needs a reason).
    pub async fn add_partner(
        &self,
        mut details: PartnerDetails,
        state: PartnerState,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Partner, StoreError> {
        details.normalise();
        Self::check_details(&details)?;
        let name = details.domains.first().cloned().unwrap_or_default();
        if state != PartnerState::Requested && reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(StoreError::Invalid(format!(
                "adding partner {name} as {state} imports an existing federation: --reason is required"
            )));
        }
        if state == PartnerState::Revoked {
            return Err(StoreError::Invalid(
                "a partner cannot be added as revoked".into(),
            ));
        }
        let today = today();
        if state == PartnerState::Enabled {
            check_enableable(&details, &name, Verb::Enable, &today)
                .map_err(StoreError::Transition)?;
        }
        let now = now_rfc3339();
        let id = new_id("p");
        let mut tx = self.begin_write().await?;
        self.ensure_unclaimed(&mut tx, &details.domains).await?;
        let federated =
            matches!(state, PartnerState::Enabled | PartnerState::Suspended).then(|| now.clone());
        let suspended = (state == PartnerState::Suspended).then(|| now.clone());
        let mut q = sqlx::query(
            "INSERT INTO partners (id, org_name, org_reg_number, org_address, edge_fqdn, address, usage_statement, \
             spoc_name, spoc_email, spoc_phone, tech_name, tech_email, tech_phone, tech_sip, ig_level, ig_expires, \
             comment, rate_limit, product_check, ca_pin, state, requested_at, federated_at, suspended_at, revoked_at, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, \
             NULL, $22, $22)",
        )
        .bind(&id)
        .bind(&details.org_name);
        for f in FIELDS.iter().filter(|f| **f != "org_name") {
            q = q.bind(details.get(f).flatten().map(str::to_string));
        }
        q.bind(state.as_str())
            .bind(&now)
            .bind(federated)
            .bind(suspended)
            .execute(&mut *tx)
            .await?;
        self.claim_domains(&mut tx, &id, &details.domains).await?;
        let detail = serde_json::to_string(&details).ok();
        self.audit(
            &mut tx, &id, &now, actor, "add", None, state, reason, detail,
        )
        .await?;
        let p = self.load(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(p)
    }

    /// The partner a domain names.
    pub async fn partner_by_domain(&self, domain: &str) -> Result<Partner, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = self.id_by_domain(&mut tx, domain).await?;
        let p = self.load(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(p)
    }

    /// Every partner, revoked ones included, oldest first.
    pub async fn partners(&self) -> Result<Vec<Partner>, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = concat!(
            "SELECT ",
            partner_columns!(),
            " FROM partners ORDER BY created_at, id"
        );
        let rows = sqlx::query(sql).fetch_all(&mut *tx).await?;
        let drows =
            sqlx::query("SELECT partner_id, domain FROM partner_domains ORDER BY partner_id, pos")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut domains: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for r in &drows {
            domains
                .entry(r.try_get("partner_id")?)
                .or_default()
                .push(r.try_get("domain")?);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                partner_from_row(r, domains.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    /// Applies a lifecycle verb to the partner named by `domain`.
    /// Returns the partner after the change and the state it left.
    pub async fn apply_verb(
        &self,
        domain: &str,
        verb: Verb,
        actor: &str,
        reason: Option<&str>,
        skip_im_test: bool,
    ) -> Result<(Partner, PartnerState), StoreError> {
        let mut tx = self.begin_write().await?;
        let id = self.id_by_domain(&mut tx, domain).await?;
        let p = self.load(&mut tx, &id).await?;
        let to =
            transition(&p, verb, reason, &today(), skip_im_test).map_err(StoreError::Transition)?;
        let skipped = (verb == Verb::Enable && p.im_test_at.is_none())
            .then(|| r#"{"im_test":"skipped"}"#.to_string());
        let now = now_rfc3339();
        let federated = if to == PartnerState::Enabled && p.federated_at.is_none() {
            Some(now.clone())
        } else {
            p.federated_at.clone()
        };
        let suspended = if to == PartnerState::Suspended {
            Some(now.clone())
        } else {
            p.suspended_at.clone()
        };
        let revoked = (to == PartnerState::Revoked).then(|| now.clone());
        let done = sqlx::query(
            "UPDATE partners SET state = $1, federated_at = $2, suspended_at = $3, revoked_at = $4, updated_at = $5 \
             WHERE id = $6 AND state = $7",
        )
        .bind(to.as_str())
        .bind(federated)
        .bind(suspended)
        .bind(revoked)
        .bind(&now)
        .bind(&id)
        .bind(p.state.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "partner {} changed meanwhile; try again",
                p.name()
            )));
        }
        if to == PartnerState::Revoked {
            sqlx::query("UPDATE partner_domains SET released_at = $1 WHERE partner_id = $2 AND released_at IS NULL")
                .bind(&now)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        self.audit(
            &mut tx,
            &id,
            &now,
            actor,
            verb.as_str(),
            Some(p.state),
            to,
            reason,
            skipped,
        )
        .await?;
        let after = self.load(&mut tx, &id).await?;
        tx.commit().await?;
        Ok((after, p.state))
    }

    /// Changes a partner's details (not its state).
    pub async fn update_partner(
        &self,
        domain: &str,
        changes: &[Change],
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Partner, StoreError> {
        if changes.is_empty() {
            return Err(StoreError::Invalid("nothing to change".into()));
        }
        let mut tx = self.begin_write().await?;
        let id = self.id_by_domain(&mut tx, domain).await?;
        let before = self.load(&mut tx, &id).await?;
        if before.state == PartnerState::Revoked {
            return Err(StoreError::Invalid(format!(
                "partner {} is revoked; a revoked partner is not edited, it applies again as a new request",
                before.name()
            )));
        }
        let mut details = before.details.clone();
        for c in changes {
            match c {
                Change::Set(f, v) => {
                    if !details.set(f, v.clone()) {
                        return Err(StoreError::Invalid(format!(
                            "unknown field {f:?}; fields are {}",
                            FIELDS.join(", ")
                        )));
                    }
                }
                Change::AddDomain(d) => details.domains.push(d.clone()),
                Change::RemoveDomain(d) => {
                    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
                    let n = details.domains.len();
                    details.domains.retain(|x| *x != d);
                    if details.domains.len() == n {
                        return Err(StoreError::Invalid(format!(
                            "partner {} has no domain {d}",
                            before.name()
                        )));
                    }
                }
            }
        }
        details.normalise();
        Self::check_details(&details)?;
        // (A lapsed IG date may be recorded: the edge then suspends the
        // partner itself, audited. Without an edge FQDN a partner is found
        // by DNS SRV.)

        let mut diff = serde_json::Map::new();
        for f in FIELDS {
            let (a, b) = (before.details.get(f).flatten(), details.get(f).flatten());
            if a != b {
                diff.insert(f.to_string(), serde_json::json!([a, b]));
            }
        }
        if before.details.domains != details.domains {
            diff.insert(
                "domains".into(),
                serde_json::json!([before.details.domains, details.domains]),
            );
        }
        if diff.is_empty() {
            return Err(StoreError::Invalid(
                "the changes leave the partner as it was".into(),
            ));
        }
        let now = now_rfc3339();
        let mut q = sqlx::query(
            "UPDATE partners SET org_name = $1, org_reg_number = $2, org_address = $3, edge_fqdn = $4, address = $5, \
             usage_statement = $6, spoc_name = $7, spoc_email = $8, spoc_phone = $9, tech_name = $10, tech_email = $11, \
             tech_phone = $12, tech_sip = $13, ig_level = $14, ig_expires = $15, comment = $16, rate_limit = $17, \
             product_check = $18, ca_pin = $19, updated_at = $20 WHERE id = $21 AND updated_at = $22",
        )
        .bind(&details.org_name);
        for f in FIELDS.iter().filter(|f| **f != "org_name") {
            q = q.bind(details.get(f).flatten().map(str::to_string));
        }
        let done = q
            .bind(&now)
            .bind(&id)
            .bind(&before.updated_at)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "partner {} changed meanwhile; try again",
                before.name()
            )));
        }
        if before.details.domains != details.domains {
            let added: Vec<&String> = details
                .domains
                .iter()
                .filter(|d| !before.details.domains.contains(d))
                .collect();
            self.ensure_unclaimed(&mut tx, added).await?;
            sqlx::query(
                "DELETE FROM partner_domains WHERE partner_id = $1 AND released_at IS NULL",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            self.claim_domains(&mut tx, &id, &details.domains).await?;
        }
        let detail = serde_json::to_string(&diff).ok();
        self.audit(
            &mut tx,
            &id,
            &now,
            actor,
            "update",
            Some(before.state),
            before.state,
            reason,
            detail,
        )
        .await?;
        let after = self.load(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// A partner's audit trail, oldest first, by any of its domains.
    pub async fn history(&self, domain: &str) -> Result<(Partner, Vec<AuditEntry>), StoreError> {
        let mut tx = self.begin_write().await?;
        let id = self.id_by_domain(&mut tx, domain).await?;
        let p = self.load(&mut tx, &id).await?;
        tx.commit().await?;
        let trail = self.trail(&id).await?;
        Ok((p, trail))
    }

    /// The audit trail of the partner with this id, oldest first.
    pub async fn trail(&self, partner_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, from_state, to_state, reason, detail FROM partner_audit \
             WHERE partner_id = $1 ORDER BY seq",
        )
        .bind(partner_id)
        .fetch_all(&self.pool)
        .await?;
        let state = |s: Option<String>| -> Result<Option<PartnerState>, StoreError> {
            s.map(|s| {
                s.parse()
                    .map_err(|e: UnknownState| StoreError::Corrupt(format!("audit state: {e}")))
            })
            .transpose()
        };
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    from_state: state(r.try_get("from_state")?)?,
                    to_state: state(Some(r.try_get("to_state")?))?
                        .unwrap_or(PartnerState::Requested),
                    reason: r.try_get("reason")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Records a passed onboarding IM test on a partner (audited).
    pub async fn record_im_test(
        &self,
        partner_id: &str,
        from: &str,
        actor: &str,
    ) -> Result<Partner, StoreError> {
        let mut tx = self.begin_write().await?;
        let p = self.load(&mut tx, partner_id).await?;
        let now = now_rfc3339();
        sqlx::query(
            "UPDATE partners SET im_test_at = $1, im_test_from = $2, updated_at = $1 WHERE id = $3",
        )
        .bind(&now)
        .bind(from)
        .bind(partner_id)
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({ "im_test_from": from }).to_string();
        self.audit(
            &mut tx,
            partner_id,
            &now,
            actor,
            "im-test",
            Some(p.state),
            p.state,
            None,
            Some(detail),
        )
        .await?;
        let after = self.load(&mut tx, partner_id).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// The registry version; it moves on every change.
    pub async fn registry_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM registry_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("version")?)
    }
}

impl From<TransitionError> for StoreError {
    fn from(e: TransitionError) -> Self {
        StoreError::Transition(e)
    }
}
