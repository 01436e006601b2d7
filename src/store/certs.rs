//! Partners' edge certificates as submitted with the FPA: the PEM, its
//! expiry, subject and names, for the console's expiry warnings.
//!
//! Owns the `partner_certs` table. Storing one is audited in the chain,
//! in the same transaction. It never checks a certificate (the FPA intake
//! in `admin::intake` does before it stores one).

use sqlx::Row;

use super::audit::{self, Kind, NewEntry};
use super::{Store, StoreError, now_rfc3339};

/// A partner's edge certificate as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartnerCert {
    pub partner_id: String,
    /// The PEM text as submitted (the edge's certificate, then intermediates).
    pub pem: String,
    /// RFC 3339 UTC.
    pub not_after: String,
    pub subject: String,
    /// The SAN DNS names, comma-separated.
    pub names: String,
}

/// A stored certificate with when and by whom it was submitted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredPartnerCert {
    #[serde(flatten)]
    pub cert: PartnerCert,
    pub submitted_at: String,
    pub submitted_by: String,
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<StoredPartnerCert, StoreError> {
    Ok(StoredPartnerCert {
        cert: PartnerCert {
            partner_id: r.try_get("partner_id")?,
            pem: r.try_get("pem")?,
            not_after: r.try_get("not_after")?,
            subject: r.try_get("subject")?,
            names: r.try_get("names")?,
        },
        submitted_at: r.try_get("submitted_at")?,
        submitted_by: r.try_get("submitted_by")?,
    })
}

macro_rules! cert_select {
    () => {
        "SELECT partner_id, pem, not_after, subject, names, submitted_at, submitted_by FROM partner_certs"
    };
}

impl Store {
    /// Stores (or replaces) a partner's edge certificate, audited as
    /// `certificate` on the partner.
    pub async fn set_partner_cert(
        &self,
        cert: &PartnerCert,
        actor: &str,
    ) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO partner_certs (partner_id, pem, not_after, subject, names, submitted_at, submitted_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (partner_id) DO UPDATE SET pem = excluded.pem, not_after = excluded.not_after, \
             subject = excluded.subject, names = excluded.names, submitted_at = excluded.submitted_at, \
             submitted_by = excluded.submitted_by",
        )
        .bind(&cert.partner_id)
        .bind(&cert.pem)
        .bind(&cert.not_after)
        .bind(&cert.subject)
        .bind(&cert.names)
        .bind(&now)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            self.backend,
            NewEntry {
                at: &now,
                actor,
                kind: Kind::Partner,
                subject: &cert.partner_id,
                action: "certificate",
                detail: Some(serde_json::json!({
                    "not_after": cert.not_after,
                    "subject": cert.subject,
                    "names": cert.names,
                })),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A partner's stored edge certificate, if one was submitted.
    pub async fn partner_cert(
        &self,
        partner_id: &str,
    ) -> Result<Option<StoredPartnerCert>, StoreError> {
        let row = sqlx::query(concat!(cert_select!(), " WHERE partner_id = $1"))
            .bind(partner_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every stored partner certificate, the soonest to expire first.
    pub async fn partner_certs(&self) -> Result<Vec<StoredPartnerCert>, StoreError> {
        let rows = sqlx::query(concat!(cert_select!(), " ORDER BY not_after, partner_id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }
}
