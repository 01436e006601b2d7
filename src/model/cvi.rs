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
    /// True once `expires_at` has passed (compared as RFC 3339 UTC text).
    pub fn expired(&self, now: &str) -> bool {
        self.expires_at.as_deref().is_some_and(|e| e <= now)
    }

    /// Whether the meeting can be joined at `now`, or why not: an ended
    /// meeting says so first (whatever became of its organiser since).
    pub fn joinable(&self, organiser_enrolled: bool, now: &str) -> Result<(), Unjoinable> {
        if self.expired(now) {
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
        assert_eq!(why(m(None).joinable(true, now)), Ok(()));
        assert_eq!(
            why(m(Some("2026-06-01T00:00:00.001Z")).joinable(true, now)),
            Ok(())
        );
        assert_eq!(
            why(m(Some(now)).joinable(true, now)),
            Err("the meeting has ended".into())
        );
        assert_eq!(
            why(m(Some("2026-05-01T00:00:00.000Z")).joinable(false, now)),
            Err("the meeting has ended".into())
        );
        assert_eq!(
            why(m(None).joinable(false, now)),
            Err("its organiser is no longer enrolled".into())
        );
        for u in [Unjoinable::Ended, Unjoinable::OrganiserWithdrawn] {
            assert_eq!(u.as_str(), u.to_string());
        }
    }
}
