//! CVI organisers and meetings in the database: enrolment (all rows in one
//! transaction), withdrawal, and meetings with their unique conference IDs.
//! The records and the joinable rule are `model::cvi`; this module only
//! reads and writes them.

use sqlx::Row;

use super::audit::{self, Kind, NewEntry};
use super::{Store, StoreError, now_rfc3339};
use crate::model::cvi::{Enrolment, Meeting, Organiser};

fn organiser_of(r: &sqlx::any::AnyRow) -> Result<Organiser, sqlx::Error> {
    Ok(Organiser {
        email: r.try_get("email")?,
        org_name: r.try_get("org_name")?,
        ods_code: r.try_get("ods_code")?,
        enrolled_at: r.try_get("enrolled_at")?,
        enrolled_by: r.try_get("enrolled_by")?,
        withdrawn_at: r.try_get("withdrawn_at")?,
    })
}

impl Store {
    /// Enrols (or re-enrols) every row in one transaction.
    pub async fn cvi_enrol(&self, rows: &[Enrolment], actor: &str) -> Result<usize, StoreError> {
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO cvi_organisers (email, org_name, ods_code, enrolled_at, enrolled_by, withdrawn_at, withdrawn_by) \
                 VALUES ($1, $2, $3, $4, $5, NULL, NULL) \
                 ON CONFLICT (email) DO UPDATE SET org_name = excluded.org_name, ods_code = excluded.ods_code, \
                 enrolled_at = excluded.enrolled_at, enrolled_by = excluded.enrolled_by, withdrawn_at = NULL, withdrawn_by = NULL",
            )
            .bind(&r.email)
            .bind(&r.org_name)
            .bind(&r.ods_code)
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
                    kind: Kind::Cvi,
                    subject: &r.email,
                    action: "enrol",
                    detail: Some(
                        serde_json::json!({"org_name": r.org_name, "ods_code": r.ods_code}),
                    ),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Ends an enrolment: the organiser's meetings can no longer be joined.
    pub async fn cvi_withdraw(&self, email: &str, actor: &str) -> Result<Organiser, StoreError> {
        let email = email.trim().to_ascii_lowercase();
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE cvi_organisers SET withdrawn_at = $1, withdrawn_by = $2 WHERE email = $3 AND withdrawn_at IS NULL",
        )
        .bind(&now)
        .bind(actor)
        .bind(&email)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() > 0 {
            audit::append(
                &mut tx,
                self.backend,
                NewEntry {
                    at: &now,
                    actor,
                    kind: Kind::Cvi,
                    subject: &email,
                    action: "withdraw",
                    detail: None,
                },
            )
            .await?;
        }
        tx.commit().await?;
        if r.rows_affected() == 0 {
            return match self.cvi_organiser(&email).await? {
                Some(o) => Err(StoreError::Invalid(format!(
                    "{email} was already withdrawn on {}",
                    o.withdrawn_at.unwrap_or_default()
                ))),
                None => Err(StoreError::Invalid(format!(
                    "{email} is not enrolled for CVI"
                ))),
            };
        }
        self.cvi_organiser(&email)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("{email} vanished")))
    }

    pub async fn cvi_organiser(&self, email: &str) -> Result<Option<Organiser>, StoreError> {
        let row = sqlx::query(
            "SELECT email, org_name, ods_code, enrolled_at, enrolled_by, withdrawn_at FROM cvi_organisers WHERE email = $1",
        )
        .bind(email.trim().to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(organiser_of).transpose()?)
    }

    /// Every organiser, enrolled or withdrawn, by address (the API's and
    /// the console's list).
    pub async fn cvi_organisers(&self) -> Result<Vec<Organiser>, StoreError> {
        let rows = sqlx::query(
            "SELECT email, org_name, ods_code, enrolled_at, enrolled_by, withdrawn_at FROM cvi_organisers ORDER BY email",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(organiser_of)
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// A new meeting for an enrolled organiser, with an ID from `new_id`
    /// that no other meeting has.
    pub async fn cvi_create_meeting(
        &self,
        actor: &str,
        organiser: &str,
        subject: Option<&str>,
        subject_public: bool,
        expires_at: Option<&str>,
        mut new_id: impl FnMut() -> String,
    ) -> Result<Meeting, StoreError> {
        let email = organiser.trim().to_ascii_lowercase();
        match self.cvi_organiser(&email).await? {
            None => {
                return Err(StoreError::Invalid(format!(
                    "{email} is not enrolled for CVI: a local administrator enrols organisers with `fedge cvi enrol`"
                )));
            }
            Some(o) if o.withdrawn_at.is_some() => {
                return Err(StoreError::Invalid(format!(
                    "{email}'s CVI enrolment was withdrawn on {}",
                    o.withdrawn_at.unwrap_or_default()
                )));
            }
            Some(_) => {}
        }
        let now = now_rfc3339();
        for _ in 0..16 {
            let id = new_id();
            let mut tx = self.begin_write().await?;
            let r = sqlx::query(
                "INSERT INTO cvi_meetings (conference_id, organiser, subject, created_at, expires_at, subject_public) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(&email)
            .bind(subject)
            .bind(&now)
            .bind(expires_at)
            .bind(i64::from(subject_public))
            .execute(&mut *tx)
            .await;
            match r {
                Ok(_) => {
                    audit::append(
                        &mut tx,
                        self.backend,
                        NewEntry {
                            at: &now,
                            actor,
                            kind: Kind::Cvi,
                            subject: &id,
                            action: "meeting",
                            detail: Some(serde_json::json!({
                                "organiser": email, "subject": subject, "expires_at": expires_at,
                            })),
                        },
                    )
                    .await?;
                    tx.commit().await?;
                    return Ok(Meeting {
                        conference_id: id,
                        organiser: email,
                        subject: subject.map(str::to_string),
                        subject_public,
                        created_at: now,
                        expires_at: expires_at.map(str::to_string),
                    });
                }
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(
            "no free conference ID after 16 tries".into(),
        ))
    }

    /// A meeting by its conference ID, with whether its organiser is still enrolled.
    pub async fn cvi_meeting(&self, id: &str) -> Result<Option<(Meeting, bool)>, StoreError> {
        let row = sqlx::query(
            "SELECT m.conference_id, m.organiser, m.subject, m.subject_public, m.created_at, m.expires_at, o.withdrawn_at \
             FROM cvi_meetings m JOIN cvi_organisers o ON o.email = m.organiser WHERE m.conference_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let withdrawn: Option<String> = r.try_get("withdrawn_at")?;
        Ok(Some((
            Meeting {
                conference_id: r.try_get("conference_id")?,
                organiser: r.try_get("organiser")?,
                subject: r.try_get("subject")?,
                subject_public: r.try_get::<i64, _>("subject_public")? != 0,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            },
            withdrawn.is_none(),
        )))
    }
}
