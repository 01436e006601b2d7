//! The federation media relay's admin endpoints: its live sessions and
//! its drain switch.
//!
//! Owns `/media` (operator or viewer) and `/media/drain` (operator). It never opens or closes relay
//! sessions itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::auth::{Actor, ApiError};
use super::state::{DrainQuery, EdgeState};

/// `GET /media`: the relay's live sessions with their counters.
pub(super) async fn media_sessions(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    actor.require_node_view()?;
    Ok(match &state.media {
        Some(r) => (
            axum::http::StatusCode::OK,
            Json(json!({
                "draining": r.draining(),
                "ports_in_use": r.ports_in_use(),
                "partners": r.owners_use().into_iter().map(|(o, s, p)| json!({
                    "partner": o, "sessions": s, "port_pairs": p,
                })).collect::<Vec<_>>(),
                "sessions": r.list(),
            })),
        ),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"error": "the media relay is not enabled ([media] enabled = false)"})),
        ),
    })
}

/// `POST /media/drain[?on=false]`: stop (or resume) taking new calls.
pub(super) async fn media_drain(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<DrainQuery>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    super::require_drain(&actor, &headers)?;
    Ok(match &state.media {
        Some(r) => {
            r.set_draining(q.on.unwrap_or(true));
            tracing::info!(account = %actor.name(), draining = r.draining(), "media relay drain switched");
            (
                axum::http::StatusCode::OK,
                Json(json!({"draining": r.draining(), "sessions": r.len()})),
            )
        }
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"error": "the media relay is not enabled ([media] enabled = false)"})),
        ),
    })
}
