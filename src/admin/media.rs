//! The federation media relay's admin endpoints: its live sessions and
//! its drain switch.
//!
//! Owns `/media` (operator or viewer) and `/media/drain` (operator), their
//! paths and the drain answer's shape; the work and the role checks are
//! `admin::service`'s, shared with `/api/v1/media`. It never opens or
//! closes relay sessions itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::auth::{Actor, ApiError};
use super::service;
use super::state::{DrainQuery, EdgeState};

/// `GET /media`: the relay's live sessions with their counters.
pub(super) async fn media_sessions(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(service::media_status(&state, &actor)?))
}

/// `POST /media/drain[?on=false]`: stop (or resume) taking new calls.
pub(super) async fn media_drain(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<DrainQuery>,
) -> Result<Json<Value>, ApiError> {
    super::require_drain(&actor, &headers)?;
    let v = service::set_media_drain(&state, &actor, q.on.unwrap_or(true))?;
    Ok(Json(json!({"draining": v.draining, "sessions": v.live})))
}
