//! CVI's records: an organiser to enrol, an enrolled organiser, a meeting
//! with its conference ID, and whether a meeting can be joined.
//!
//! Owns the records and the joinable rule. Never does I/O: `store::cvi`
//! keeps them, `cvi::enrol` checks what becomes an [`Enrolment`].

use serde::Serialize;

/// One organiser to enrol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// Lower-case.
    pub email: String,
    pub org_name: String,
    pub ods_code: String,
}

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

/// A meeting's VTC details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meeting {
    pub conference_id: String,
    pub organiser: String,
    pub subject: Option<String>,
    /// The organiser chose to show the subject on the public dialling
    /// instructions page (hidden otherwise).
    pub subject_public: bool,
    pub created_at: String,
    /// RFC 3339; `None` for no expiry.
    pub expires_at: Option<String>,
}

/// Why a meeting cannot be joined (its Display is the reason shown to
/// callers, pages and operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unjoinable {
    #[error("the meeting has ended")]
    Ended,
    #[error("its organiser is no longer enrolled")]
    OrganiserWithdrawn,
}

impl Unjoinable {
    /// The reason as text.
    pub fn as_str(&self) -> &'static str {
        match self {
            Unjoinable::Ended => "the meeting has ended",
            Unjoinable::OrganiserWithdrawn => "its organiser is no longer enrolled",
        }
    }
}

impl Meeting {
    /// When the meeting ends (RFC 3339 UTC text, as the store keeps
    /// times): its `expires_at`, or `lifetime` after its creation for a
    /// meeting that has none (one made before meetings had a default end);
    /// `None` only when its creation time cannot be read.
    pub fn ends_at(&self, lifetime: std::time::Duration) -> Option<String> {
        use time::format_description::well_known::Rfc3339;
        if let Some(e) = &self.expires_at {
            return Some(e.clone());
        }
        let created = time::OffsetDateTime::parse(&self.created_at, &Rfc3339).ok()?;
        let end = created.checked_add(time::Duration::try_from(lifetime).ok()?)?;
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        end.to_offset(time::UtcOffset::UTC).format(&fmt).ok()
    }

    /// True once the meeting's end has passed (compared as RFC 3339 UTC
    /// text); a meeting whose creation time cannot be read has ended.
    pub fn expired(&self, now: &str, lifetime: std::time::Duration) -> bool {
        self.ends_at(lifetime).is_none_or(|e| e.as_str() <= now)
    }

    /// Whether the meeting can be joined at `now`, or why not: an ended
    /// meeting says so first (whatever became of its organiser since).
    /// `lifetime` ends a meeting that has no `expires_at`.
    pub fn joinable(
        &self,
        organiser_enrolled: bool,
        now: &str,
        lifetime: std::time::Duration,
    ) -> Result<(), Unjoinable> {
        if self.expired(now, lifetime) {
            Err(Unjoinable::Ended)
        } else if !organiser_enrolled {
            Err(Unjoinable::OrganiserWithdrawn)
        } else {
            Ok(())
        }
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
            subject_public: false,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            expires_at: expires.map(str::to_string),
        };
        let now = "2026-06-01T00:00:00.000Z";
        let why = |r: Result<(), Unjoinable>| r.map_err(|e| e.to_string());
        let year = std::time::Duration::from_secs(366 * 86400);
        // Without expires_at, the lifetime from its creation ends it.
        let month = std::time::Duration::from_secs(31 * 86400);
        assert_eq!(
            why(m(None).joinable(true, now, month)),
            Err("the meeting has ended".into())
        );
        assert_eq!(
            m(None).ends_at(month).as_deref(),
            Some("2026-02-01T00:00:00.000Z")
        );
        assert_eq!(why(m(None).joinable(true, now, year)), Ok(()));
        assert_eq!(
            why(m(Some("2026-06-01T00:00:00.001Z")).joinable(true, now, year)),
            Ok(())
        );
        assert_eq!(
            why(m(Some(now)).joinable(true, now, year)),
            Err("the meeting has ended".into())
        );
        assert_eq!(
            why(m(Some("2026-05-01T00:00:00.000Z")).joinable(false, now, year)),
            Err("the meeting has ended".into())
        );
        assert_eq!(
            why(m(None).joinable(false, now, year)),
            Err("its organiser is no longer enrolled".into())
        );
        for u in [Unjoinable::Ended, Unjoinable::OrganiserWithdrawn] {
            assert_eq!(u.as_str(), u.to_string());
        }
    }
}
