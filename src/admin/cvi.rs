//! The CVI gateway's admin endpoints: its calls and counters, and its
//! drain switch. (The dialling instructions pages, `/cvi/<id>`, are on the
//! public listener: `admin::public`.)
//!
//! Owns `/cvi` (operator or viewer) and `/cvi/drain` (operator), their
//! paths and the drain answer's shape; the work and the role checks are
//! `admin::service`'s, shared with `/api/v1/cvi`. It never places or ends
//! calls and never changes a meeting.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::auth::{Actor, ApiError};
use super::service;
use super::state::{DrainQuery, EdgeState};

/// `GET /cvi`: the gateway's calls, capacity and counters.
pub(super) async fn cvi_status(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(service::cvi_status(&state, &actor)?))
}

/// `POST /cvi/drain[?on=false]`: the gateway stops (or resumes) taking calls.
pub(super) async fn cvi_drain(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<DrainQuery>,
) -> Result<Json<Value>, ApiError> {
    super::require_drain(&actor, &headers)?;
    let v = service::set_cvi_drain(&state, &actor, q.on.unwrap_or(true))?;
    Ok(Json(json!({"draining": v.draining, "calls": v.live})))
}
