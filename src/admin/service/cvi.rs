//! CVI operations shared by the API and the console: organisers (list,
//! enrol singly or by CSV with per-row errors, withdraw), meetings (create
//! with the invite text, show), and the gateway's status and drain switch.
//!
//! Owns the role checks and the request shapes of these operations. The
//! address and CSV rules are `cvi::enrol`'s, the IDs and invite text
//! `cvi::meetings`'s; it never writes SQL.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::super::EdgeState;
use super::super::auth::{Actor, ApiError};
use crate::cvi::enrol::{Enrolment, RowError, check_emails, check_org, check_rows, parse_csv};
use crate::cvi::meetings::{instructions_url, invite_block, is_conference_id, new_conference_id};
use crate::model::cvi::{Meeting, Organiser};

/// An enrolled (or withdrawn) CVI organiser.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrganiserView {
    pub email: String,
    pub org_name: String,
    pub ods_code: String,
    pub enrolled_at: String,
    pub enrolled_by: String,
    /// `null` while enrolled.
    pub withdrawn_at: Option<String>,
}

impl From<&Organiser> for OrganiserView {
    fn from(o: &Organiser) -> Self {
        OrganiserView {
            email: o.email.clone(),
            org_name: o.org_name.clone(),
            ods_code: o.ods_code.clone(),
            enrolled_at: o.enrolled_at.clone(),
            enrolled_by: o.enrolled_by.clone(),
            withdrawn_at: o.withdrawn_at.clone(),
        }
    }
}

/// Organisers to enrol: `emails`, or `csv` (the text of a file with one
/// column headed `EmailAddress`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct EnrolRequest {
    /// The organisation's name.
    pub org: String,
    /// The organisation's ODS code.
    pub ods: String,
    /// Confirms that Microsoft Teams is in these users' policy.
    #[serde(default)]
    pub teams_enabled: bool,
    #[serde(default)]
    pub emails: Vec<String>,
    pub csv: Option<String>,
    /// Enrol the good rows even when some are bad.
    #[serde(default)]
    pub partial: bool,
}

/// A row that could not be enrolled.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowErrorView {
    /// The CSV line, or the position in `emails` (1-based).
    pub line: usize,
    pub error: String,
}

impl From<&RowError> for RowErrorView {
    fn from(r: &RowError) -> Self {
        RowErrorView {
            line: r.line,
            error: r.what.clone(),
        }
    }
}

/// What an enrolment did. `written` is false when a bad row (without
/// `partial`) or no good row left nothing enrolled.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrolOutcome {
    pub written: bool,
    pub enrolled: Vec<String>,
    pub errors: Vec<RowErrorView>,
}

/// A meeting to create for an enrolled organiser.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MeetingRequest {
    pub organiser: String,
    pub subject: Option<String>,
    /// Show the subject on the public dialling instructions page.
    #[serde(default)]
    pub public_subject: bool,
    /// When the ID stops working: a duration from now (`2h`, `1d`) or an
    /// RFC 3339 time; default: `[cvi] meeting_lifetime` after now.
    pub expires: Option<String>,
}

/// A meeting, how to dial it, and whether it can be joined.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeetingView {
    pub conference_id: String,
    pub organiser: String,
    pub subject: Option<String>,
    pub subject_public: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// `can be joined`, or why not.
    pub state: String,
    /// What a room system dials, then keys the ID.
    pub dial: String,
    /// What a room system dials to join directly.
    pub direct: String,
    /// The alternate dialling instructions page.
    pub instructions: String,
    /// The block for the invitation.
    pub invite: String,
}

fn meeting_view(state: &EdgeState, m: &Meeting, joinable: Result<(), &str>) -> MeetingView {
    let d = &state.dialling;
    MeetingView {
        conference_id: m.conference_id.clone(),
        organiser: m.organiser.clone(),
        subject: m.subject.clone(),
        subject_public: m.subject_public,
        created_at: m.created_at.clone(),
        expires_at: m.expires_at.clone(),
        state: match joinable {
            Ok(()) => "can be joined".into(),
            Err(why) => why.into(),
        },
        dial: format!("{}@{}", d.reception, d.domain),
        direct: format!("{}@{}", m.conference_id, d.domain),
        instructions: instructions_url(d, &m.conference_id),
        invite: invite_block(d, &m.conference_id),
    }
}

fn unprocessable(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason)
}

/// Every organiser, enrolled or withdrawn (operators and viewers).
pub async fn organisers(state: &EdgeState, actor: &Actor) -> Result<Vec<OrganiserView>, ApiError> {
    actor.require_node_view()?;
    Ok(state
        .store
        .cvi_organisers()
        .await?
        .iter()
        .map(OrganiserView::from)
        .collect())
}

/// The rows of a request: the good ones and an error per bad one.
fn rows(req: &EnrolRequest, domains: &[String]) -> Result<(Vec<String>, Vec<RowError>), ApiError> {
    check_org(&req.org, &req.ods, req.teams_enabled).map_err(|e| unprocessable(e.to_string()))?;
    let (good, bad) = match &req.csv {
        Some(text) => {
            if !req.emails.is_empty() {
                return Err(ApiError::bad_request("send emails or csv, not both"));
            }
            let rows = parse_csv(text).map_err(|e| unprocessable(format!("csv: {e}")))?;
            if rows.is_empty() {
                return Err(unprocessable(
                    "csv: no addresses under the EmailAddress header",
                ));
            }
            check_rows(&rows, domains)
        }
        None => {
            if req.emails.is_empty() {
                return Err(unprocessable("name at least one organiser (emails or csv)"));
            }
            check_emails(&req.emails, domains)
        }
    };
    Ok((good.into_iter().map(|(_, e)| e).collect(), bad))
}

/// Enrols organisers (one transaction): any bad row changes nothing
/// unless `partial`; the outcome lists every bad row.
pub async fn enrol(
    state: &EdgeState,
    actor: &Actor,
    req: &EnrolRequest,
) -> Result<EnrolOutcome, ApiError> {
    actor.require_change()?;
    let (good, bad) = rows(req, &state.ops.organiser_domains)?;
    let errors: Vec<RowErrorView> = bad.iter().map(RowErrorView::from).collect();
    if good.is_empty() || (!bad.is_empty() && !req.partial) {
        return Ok(EnrolOutcome {
            written: false,
            enrolled: Vec::new(),
            errors,
        });
    }
    let rows: Vec<Enrolment> = good
        .iter()
        .map(|email| Enrolment {
            email: email.clone(),
            org_name: req.org.trim().to_string(),
            ods_code: req.ods.trim().to_ascii_uppercase(),
        })
        .collect();
    state.store.cvi_enrol(&rows, actor.name()).await?;
    Ok(EnrolOutcome {
        written: true,
        enrolled: good,
        errors,
    })
}

/// Ends an organiser's enrolment: their meetings can no longer be joined.
pub async fn withdraw(
    state: &EdgeState,
    actor: &Actor,
    email: &str,
) -> Result<OrganiserView, ApiError> {
    actor.require_change()?;
    let o = state.store.cvi_withdraw(email, actor.name()).await?;
    Ok(OrganiserView::from(&o))
}

/// The moment an `expires` value names (a duration from now or an RFC
/// 3339 time), as the store keeps times; it must be in the future.
fn expiry(raw: &str) -> Result<String, ApiError> {
    use time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    let text = raw.trim();
    let bad = |why: String| {
        unprocessable(format!(
            "expires {raw:?}: {why}; e.g. \"2h\" or \"2030-01-31T17:00:00Z\""
        ))
    };
    let at = match humantime::parse_duration(text) {
        Ok(d) => time::Duration::try_from(d)
            .ok()
            .and_then(|d| now.checked_add(d))
            .ok_or_else(|| bad("too far ahead".into()))?,
        Err(_) => time::OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|e| bad(format!("neither a duration nor an RFC 3339 time ({e})")))?,
    };
    let at = at.to_offset(time::UtcOffset::UTC);
    if at <= now {
        return Err(bad("not in the future".into()));
    }
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&fmt).map_err(|e| bad(e.to_string()))
}

/// Gives an enrolled organiser's meeting a unique conference ID; the
/// answer carries the invite text.
pub async fn create_meeting(
    state: &EdgeState,
    actor: &Actor,
    req: &MeetingRequest,
) -> Result<MeetingView, ApiError> {
    actor.require_change()?;
    let expires = match req.expires.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(raw) => expiry(raw)?,
        None => {
            let lifetime = if state.ops.meeting_lifetime.is_zero() {
                std::time::Duration::from_secs(90 * 86400)
            } else {
                state.ops.meeting_lifetime
            };
            expiry(&format!("{}s", lifetime.as_secs()))?
        }
    };
    let subject = req
        .subject
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if req.public_subject && subject.is_none() {
        return Err(unprocessable("public_subject needs a subject"));
    }
    let m = {
        // Send across the await (the thread's generator is not).
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
        state
            .store
            .cvi_create_meeting(
                actor.name(),
                &req.organiser,
                subject,
                req.public_subject,
                Some(&expires),
                || new_conference_id(&mut rng),
            )
            .await?
    };
    Ok(meeting_view(state, &m, Ok(())))
}

/// A meeting by its conference ID (spaces ignored).
pub async fn meeting(state: &EdgeState, actor: &Actor, id: &str) -> Result<MeetingView, ApiError> {
    actor.require_node_view()?;
    let id: String = id.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let none = || ApiError::not_found(format!("no meeting has conference ID {id}"));
    if !is_conference_id(&id) {
        return Err(none());
    }
    let (m, enrolled) = state.store.cvi_meeting(&id).await?.ok_or_else(none)?;
    let lifetime = state
        .cvi
        .as_ref()
        .map(|g| g.meeting_lifetime())
        .unwrap_or(state.ops.meeting_lifetime);
    let joinable = m.joinable(enrolled, &crate::store::now_rfc3339(), lifetime);
    Ok(meeting_view(
        state,
        &m,
        joinable.as_ref().map(|_| ()).map_err(|w| w.as_str()),
    ))
}

fn cvi_off() -> ApiError {
    ApiError::not_found("the CVI gateway is not enabled ([cvi] enabled = false)")
}

/// The gateway's calls, capacity and counters (the `/cvi` document).
pub fn cvi_status(state: &EdgeState, actor: &Actor) -> Result<Value, ApiError> {
    actor.require_node_view()?;
    let g = state.cvi.as_ref().ok_or_else(cvi_off)?;
    let s = &g.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Ok(json!({
        "calls": g.live(),
        "max_calls": g.max_calls(),
        "draining": g.draining(),
        "ports_in_use": g.relay.ports_in_use(),
        "totals": {
            "calls": load(&s.calls),
            "connected": load(&s.connected),
            "refused_full": load(&s.refused_full),
            "refused_draining": load(&s.refused_draining),
            "not_found": load(&s.not_found),
            "refused_source": load(&s.refused_source),
            "unproven_udp": load(&s.unproven),
            "mismatched": load(&s.mismatched),
            "guess_lockouts": g.guesses.lockouts.load(Ordering::Relaxed),
            "guesses_refused": g.guesses.refused.load(Ordering::Relaxed),
            "connector_failed": load(&s.connector_failed),
            "test_calls": load(&s.test_calls),
        },
        "media": g.relay.list(),
    }))
}

/// Stops (`on`) or resumes new gateway calls; calls up finish.
pub fn set_cvi_drain(
    state: &EdgeState,
    actor: &Actor,
    on: bool,
) -> Result<super::DrainView, ApiError> {
    actor.require_change()?;
    let g = state.cvi.as_ref().ok_or_else(cvi_off)?;
    g.set_draining(on);
    tracing::info!(account = %actor.name(), draining = on, "CVI gateway drain switched");
    Ok(super::DrainView {
        draining: g.draining(),
        live: g.live(),
    })
}
