//! The CVI dialling instructions pages (`/cvi/<id>`), on the public
//! listener, with the per-source counting of wrong Video Conference IDs
//! (the guess budget it shares with the gateway's SIP side).
//!
//! Owns `/cvi/{id}`. It never places or ends calls, never changes a
//! meeting, and shows a subject only where its organiser published it.

use std::sync::Arc;

use axum::extract::State;
use tracing::warn;

use super::super::state::EdgeState;

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
) -> axum::response::Response {
    use crate::cvi::meetings::{instructions_page, is_conference_id, not_found_page};
    use axum::http::StatusCode;
    use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
    use axum::response::IntoResponse;
    let html = |retry: u64| {
        [
            (CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (RETRY_AFTER, retry.to_string()),
        ]
    };
    let Some(g) = &state.cvi else {
        return (StatusCode::SERVICE_UNAVAILABLE, html(0), unavailable_page()).into_response();
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
        )
            .into_response();
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
        return not_found().into_response();
    }
    match state.store.cvi_meeting(&digits).await {
        Ok(Some((m, enrolled)))
            if m.joinable(enrolled, &crate::store::now_rfc3339(), g.meeting_lifetime())
                .is_ok() =>
        {
            let subject = m.subject.as_deref().filter(|_| m.subject_public);
            let mut page = instructions_page(&state.dialling, &digits, subject);
            let Some(join) = super::join::section(&state, &digits) else {
                return (StatusCode::OK, html(0), page).into_response();
            };
            let at = page.rfind("</body>").unwrap_or(page.len());
            page.insert_str(at, &join);
            let mut r = (StatusCode::OK, html(0), page).into_response();
            r.headers_mut().insert(
                axum::http::header::CONTENT_SECURITY_POLICY,
                axum::http::HeaderValue::from_static(super::join::PAGE_CSP),
            );
            r
        }
        Ok(_) => unknown().into_response(),
        Err(e) => {
            warn!(error = %e, "CVI meeting lookup failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                html(0),
                not_found_page("", "the meeting cannot be looked up just now"),
            )
                .into_response()
        }
    }
}

/// The page served instead of instructions while the gateway is off.
fn unavailable_page() -> String {
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Service not available</title></head>\n\
     <body><h1>Service not available</h1>\n<p>Joining meetings from video conferencing devices is not available on this service.</p>\n</body></html>\n"
        .to_string()
}
