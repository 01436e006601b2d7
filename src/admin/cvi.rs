//! The CVI gateway's admin endpoints: its calls and counters, its drain
//! switch, and the dialling instructions pages (`/cvi/<id>`).
//!
//! Owns `/cvi`, `/cvi/drain` and `/cvi/{id}`. It never places or ends
//! calls and never changes a meeting.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tracing::warn;

use super::state::{DrainQuery, EdgeState};

/// `GET /cvi/{id}`: a meeting's alternate VTC dialling instructions (HTML);
/// an unknown, withdrawn or ended meeting gets a not-found page (404).
pub(super) async fn cvi_instructions(
    State(state): State<Arc<EdgeState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> (
    axum::http::StatusCode,
    [(axum::http::header::HeaderName, &'static str); 1],
    String,
) {
    use crate::cvi::meetings::{instructions_page, is_conference_id, not_found_page};
    use axum::http::StatusCode;
    let html = [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")];
    if state.cvi.is_none() {
        return (StatusCode::SERVICE_UNAVAILABLE, html, unavailable_page());
    }
    let digits: String = id.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if !is_conference_id(&digits) {
        let shown: String = id.chars().take(40).collect();
        return (
            StatusCode::NOT_FOUND,
            html,
            not_found_page(&shown, "a Video Conference ID has 10 digits"),
        );
    }
    match state.store.cvi_meeting(&digits).await {
        Ok(Some((m, enrolled))) => {
            if let Err(why) = m.joinable(enrolled, &crate::store::now_rfc3339()) {
                (
                    StatusCode::NOT_FOUND,
                    html,
                    not_found_page(&digits, why.as_str()),
                )
            } else {
                (
                    StatusCode::OK,
                    html,
                    instructions_page(&state.dialling, &digits, m.subject.as_deref()),
                )
            }
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            html,
            not_found_page(&digits, "no meeting has this ID"),
        ),
        Err(e) => {
            warn!(error = %e, "CVI meeting lookup failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                html,
                not_found_page(&digits, "the meeting cannot be looked up just now"),
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
) -> (axum::http::StatusCode, Json<Value>) {
    let Some(g) = &state.cvi else {
        return cvi_off();
    };
    let s = &g.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    (
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
                "connector_failed": load(&s.connector_failed),
                "test_calls": load(&s.test_calls),
            },
            "media": g.relay.list(),
        })),
    )
}

/// `POST /cvi/drain[?on=false]`: the gateway stops (or resumes) taking calls.
pub(super) async fn cvi_drain(
    State(state): State<Arc<EdgeState>>,
    axum::extract::Query(q): axum::extract::Query<DrainQuery>,
) -> (axum::http::StatusCode, Json<Value>) {
    let Some(g) = &state.cvi else {
        return cvi_off();
    };
    g.set_draining(q.on.unwrap_or(true));
    (
        axum::http::StatusCode::OK,
        Json(json!({"draining": g.draining(), "calls": g.live()})),
    )
}
