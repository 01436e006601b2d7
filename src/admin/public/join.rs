//! Joining a meeting from the browser (issue 20), on the public listener:
//! the join section of `/cvi/{id}`, its script (`/cvi/join.js`), and the
//! WHIP-style signalling: `POST /cvi/{id}/join?token=..` with the SDP
//! offer (201, the answer, `Location` of the call), `GET` of that
//! location (the call's state as JSON, polled by the page), `DELETE` of
//! it (Leave).
//!
//! Owns these routes and the HTML of the join section. It never decides
//! about a meeting (the gateway does, through `cvi::webrtc`), never takes
//! an offer without a valid single-use token, and allocates nothing for
//! a refused one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::super::state::EdgeState;
use crate::cvi::meetings::is_conference_id;
use crate::cvi::webrtc::{CallState, Refusal, WebRtc, sdp::MAX_OFFER};

/// The page's script: plain, served by fedge, no build step.
const SCRIPT: &str = include_str!("static/cvi-join.js");

/// The instructions page's policy when it carries the join section:
/// its own script and fetches, media from the page's streams.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; media-src 'self' blob: mediastream:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn webrtc(state: &EdgeState) -> Option<&Arc<WebRtc>> {
    state.cvi.as_ref().and_then(|g| g.webrtc.get())
}

/// The join section for meeting `id` (empty when browsers may not join
/// or no token can be issued now).
pub fn section(state: &EdgeState, id: &str) -> Option<String> {
    let token = webrtc(state)?.tokens.issue(id)?;
    Some(format!(
        "<section id=\"join\" data-meeting=\"{id}\" data-token=\"{token}\">\n\
<h2>Join from this browser</h2>\n\
<p>You will wait in the meeting's lobby until someone in the meeting admits you.</p>\n\
<p><label>Your name <input id=\"join-name\" maxlength=\"40\" autocomplete=\"name\"></label>\n\
<button id=\"join-button\" type=\"button\">Join from this browser</button>\n\
<button id=\"leave-button\" type=\"button\" disabled>Leave</button></p>\n\
<p id=\"join-status\" role=\"status\"></p>\n\
<div style=\"display:flex;gap:1em;flex-wrap:wrap\">\n\
<video id=\"join-remote\" autoplay playsinline style=\"width:640px;max-width:100%;background:#222\"></video>\n\
<video id=\"join-local\" autoplay playsinline muted style=\"width:200px;background:#222\"></video>\n\
</div>\n</section>\n<script src=\"/cvi/join.js\"></script>\n"
    ))
}

/// `GET /cvi/join.js`.
pub(super) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

fn text(status: StatusCode, why: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why.into() + "\n",
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub(super) struct JoinQuery {
    token: Option<String>,
    name: Option<String>,
}

/// The caller's display name as a SIP user part: letters, digits, `.`,
/// `-`, `_` (others dropped), at most 32, "browser" when none is left.
fn user_of(name: Option<&str>) -> String {
    let u: String = name
        .unwrap_or("")
        .chars()
        .map(|c| if c == ' ' { '.' } else { c })
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(32)
        .collect();
    if u.is_empty() { "browser".into() } else { u }
}

/// `POST /cvi/{id}/join?token=..`: the browser's SDP offer.
pub(super) async fn post(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<JoinQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(w) = webrtc(&state) else {
        return text(
            StatusCode::NOT_FOUND,
            "joining from a browser is not available here",
        );
    };
    if !is_conference_id(&id) {
        return text(
            StatusCode::NOT_FOUND,
            "no meeting can be joined with this Video Conference ID",
        );
    }
    let sdp_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/sdp"));
    let early = if !sdp_type {
        Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be application/sdp".to_string(),
        ))
    } else if body.len() > MAX_OFFER {
        Some((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the offer is larger than {MAX_OFFER} bytes"),
        ))
    } else if std::str::from_utf8(&body).is_err() {
        Some((
            StatusCode::BAD_REQUEST,
            "the offer is not UTF-8 text".to_string(),
        ))
    } else {
        None
    };
    if let Some((status, why)) = early {
        w.stats
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return text(status, why);
    }
    let offer = String::from_utf8_lossy(&body).into_owned();
    let token = q.token.unwrap_or_default();
    let user = user_of(q.name.as_deref());
    // Its own task: a page that goes away mid-join does not cut the
    // INVITE's transaction short (the call then ends for want of ICE).
    let w = w.clone();
    let meeting = id.clone();
    let joined = tokio::spawn(async move { w.join(&meeting, &token, &offer, peer, &user).await })
        .await
        .unwrap_or_else(|_| Err(Refusal::new(500, "the join failed")));
    match joined {
        Ok((session, answer)) => {
            let loc = format!("/cvi/{id}/join/{session}");
            let mut r = (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/sdp")],
                answer,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Err(refusal) => {
            let status =
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            text(status, refusal.reason)
        }
    }
}

/// `GET /cvi/{id}/join/{session}`: the call's state for the page.
pub(super) async fn state(
    State(state): State<Arc<EdgeState>>,
    Path((id, session)): Path<(String, String)>,
) -> Response {
    let Some(s) = webrtc(&state).and_then(|w| w.state(&id, &session)) else {
        return text(StatusCode::NOT_FOUND, "no such call");
    };
    let body = match s {
        CallState::Connected => serde_json::json!({ "state": "connected" }),
        CallState::Ended(why) => serde_json::json!({ "state": "ended", "reason": why }),
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// `DELETE /cvi/{id}/join/{session}`: Leave.
pub(super) async fn leave(
    State(state): State<Arc<EdgeState>>,
    Path((id, session)): Path<(String, String)>,
) -> Response {
    match webrtc(&state).is_some_and(|w| w.leave(&id, &session)) {
        true => StatusCode::NO_CONTENT.into_response(),
        false => text(StatusCode::NOT_FOUND, "no such call"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_safe_user_parts() {
        assert_eq!(user_of(Some("Dr Ann O'Neil")), "Dr.Ann.ONeil");
        assert_eq!(user_of(Some("<script>")), "script");
        assert_eq!(user_of(Some("\r\n")), "browser");
        assert_eq!(user_of(None), "browser");
        assert_eq!(user_of(Some(&"x".repeat(100))).len(), 32);
    }
}
