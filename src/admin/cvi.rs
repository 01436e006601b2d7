//! The CVI gateway's admin endpoints: its calls and counters, its drain
//! switch, and the dialling instructions pages (`/cvi/<id>`).
//!
//! Owns `/cvi` (operator or viewer), `/cvi/drain` (operator) and
//! `/cvi/{id}` (public: the dialling page a room's user opens). It never places or ends
//! calls and never changes a meeting.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tracing::warn;

use super::auth::{Actor, ApiError};
use super::state::{DrainQuery, EdgeState};

/// `GET /cvi/{id}`: a meeting's alternate VTC dialling instructions (HTML).
/// Every ID that cannot be joined (unknown, withdrawn, ended, malformed)
/// gets the same not-found page; a well-formed one counts against the
/// asking address's guess budget (shared with SIP); a locked-out address gets 429 with
/// Retry-After and no lookup. The subject shows only where the organiser
/// chose to publish it.
pub(super) async fn cvi_instructions(
    State(state): State<Arc<EdgeState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> (
    axum::http::StatusCode,
    [(axum::http::header::HeaderName, String); 2],
    String,
) {
    use crate::cvi::meetings::{instructions_page, is_conference_id, not_found_page};
    use axum::http::StatusCode;
    use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
    let html = |retry: u64| {
        [
            (CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (RETRY_AFTER, retry.to_string()),
        ]
    };
    let Some(g) = &state.cvi else {
        return (StatusCode::SERVICE_UNAVAILABLE, html(0), unavailable_page());
    };
    let guesses = &g.guesses;
    if let Err(left) = guesses.check(peer.ip()) {
        let s = left.as_secs().max(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            html(s),
            not_found_page(
                "",
                &format!(
                    "too many wrong Video Conference IDs from this address: try again in {s} s"
                ),
            ),
        );
    }
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            html(0),
            not_found_page("", "no meeting can be joined with this Video Conference ID"),
        )
    };
    let unknown = || {
        guesses.wrong(peer.ip());
        not_found()
    };
    let digits: String = id.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if !is_conference_id(&digits) {
        // Not an ID at all: the same page, but no guess to count.
        return not_found();
    }
    match state.store.cvi_meeting(&digits).await {
        Ok(Some((m, enrolled)))
            if m.joinable(enrolled, &crate::store::now_rfc3339(), g.meeting_lifetime())
                .is_ok() =>
        {
            let subject = m.subject.as_deref().filter(|_| m.subject_public);
            (
                StatusCode::OK,
                html(0),
                instructions_page(&state.dialling, &digits, subject),
            )
        }
        Ok(_) => unknown(),
        Err(e) => {
            warn!(error = %e, "CVI meeting lookup failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                html(0),
                not_found_page("", "the meeting cannot be looked up just now"),
            )
        }
    }
}

/// The page served instead of instructions while the gateway is off.
fn unavailable_page() -> String {
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Service not available</title></head>\n\
     <body><h1>Service not available</h1>\n<p>Joining meetings from video conferencing devices is not available on this service.</p>\n</body></html>\n"
        .to_string()
}

fn cvi_off() -> (axum::http::StatusCode, Json<Value>) {
    (
        axum::http::StatusCode::NOT_FOUND,
        Json(json!({"error": "the CVI gateway is not enabled ([cvi] enabled = false)"})),
    )
}

/// `GET /cvi`: the gateway's calls, capacity and counters.
pub(super) async fn cvi_status(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    actor.require_node_view()?;
    let Some(g) = &state.cvi else {
        return Ok(cvi_off());
    };
    let s = &g.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Ok((
        axum::http::StatusCode::OK,
        Json(json!({
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
        })),
    ))
}

/// `POST /cvi/drain[?on=false]`: the gateway stops (or resumes) taking calls.
pub(super) async fn cvi_drain(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<DrainQuery>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    super::require_drain(&actor, &headers)?;
    let Some(g) = &state.cvi else {
        return Ok(cvi_off());
    };
    g.set_draining(q.on.unwrap_or(true));
    Ok((
        axum::http::StatusCode::OK,
        Json(json!({"draining": g.draining(), "calls": g.live()})),
    ))
}
