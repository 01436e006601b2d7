//! The CVI gateway's admin endpoints: its calls and counters, and its
//! drain switch. (The dialling instructions pages, `/cvi/<id>`, are on the
//! public listener: `admin::public`.)
//!
//! Owns `/cvi` (operator or viewer) and `/cvi/drain` (operator). It never
//! places or ends calls and never changes a meeting.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::auth::{Actor, ApiError};
use super::state::{DrainQuery, EdgeState};

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
    tracing::info!(account = %actor.name(), draining = g.draining(), "CVI gateway drain switched");
    Ok((
        axum::http::StatusCode::OK,
        Json(json!({"draining": g.draining(), "calls": g.live()})),
    ))
}
