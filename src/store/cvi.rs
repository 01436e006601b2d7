//! CVI organisers and meetings in the database: enrolment (all rows in one
//! transaction), withdrawal, and meetings with their unique conference IDs.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, now_rfc3339};
use crate::cvi::enrol::Enrolment;

/// An enrolled (or withdrawn) organiser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Organiser {
    pub email: String,
    pub org_name: String,
    pub ods_code: String,
    pub enrolled_at: String,
    pub enrolled_by: String,
    pub withdrawn_at: Option<String>,
}

/// Why an ended meeting cannot be joined (as `Meeting::joinable` says it).
pub const MEETING_ENDED: &str = "the meeting has ended";

/// A meeting's VTC details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meeting {
    pub conference_id: String,
    pub organiser: String,
    pub subject: Option<String>,
    pub created_at: String,
    /// RFC 3339; `None` for no expiry.
    pub expires_at: Option<String>,
}

impl Meeting {
    /// True once `expires_at` has passed (compared as RFC 3339 UTC text).
    pub fn expired(&self, now: &str) -> bool {
        self.expires_at.as_deref().is_some_and(|e| e <= now)
    }

    /// Whether the meeting can be joined at `now`, or why not: an ended
    /// meeting says so first (whatever became of its organiser since).
    pub fn joinable(&self, organiser_enrolled: bool, now: &str) -> Result<(), &'static str> {
        if self.expired(now) {
            Err(MEETING_ENDED)
        } else if !organiser_enrolled {
            Err("its organiser is no longer enrolled")
        } else {
            Ok(())
        }
    }
}

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
        let mut tx = self.pool.begin().await?;
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
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Ends an enrolment: the organiser's meetings can no longer be joined.
    pub async fn cvi_withdraw(&self, email: &str, actor: &str) -> Result<Organiser, StoreError> {
        let email = email.trim().to_ascii_lowercase();
        let r = sqlx::query(
            "UPDATE cvi_organisers SET withdrawn_at = $1, withdrawn_by = $2 WHERE email = $3 AND withdrawn_at IS NULL",
        )
        .bind(now_rfc3339())
        .bind(actor)
        .bind(&email)
        .execute(&self.pool)
        .await?;
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

    /// A new meeting for an enrolled organiser, with an ID from `new_id`
    /// that no other meeting has.
    pub async fn cvi_create_meeting(
        &self,
        organiser: &str,
        subject: Option<&str>,
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
            let r = sqlx::query(
                "INSERT INTO cvi_meetings (conference_id, organiser, subject, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(&email)
            .bind(subject)
            .bind(&now)
            .bind(expires_at)
            .execute(&self.pool)
            .await;
            match r {
                Ok(_) => {
                    return Ok(Meeting {
                        conference_id: id,
                        organiser: email,
                        subject: subject.map(str::to_string),
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
            "SELECT m.conference_id, m.organiser, m.subject, m.created_at, m.expires_at, o.withdrawn_at \
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
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            },
            withdrawn.is_none(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_meeting_says_so_before_its_organiser() {
        let m = |expires: Option<&str>| Meeting {
            conference_id: "1234567890".into(),
            organiser: "a@nhs.net".into(),
            subject: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            expires_at: expires.map(str::to_string),
        };
        let now = "2026-06-01T00:00:00.000Z";
        assert_eq!(m(None).joinable(true, now), Ok(()));
        assert_eq!(
            m(Some("2026-06-01T00:00:00.001Z")).joinable(true, now),
            Ok(())
        );
        assert_eq!(
            m(Some(now)).joinable(true, now),
            Err("the meeting has ended")
        );
        assert_eq!(
            m(Some("2026-05-01T00:00:00.000Z")).joinable(false, now),
            Err("the meeting has ended")
        );
        assert_eq!(
            m(None).joinable(false, now),
            Err("its organiser is no longer enrolled")
        );
    }
}
