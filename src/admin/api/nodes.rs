//! `/api/v1/nodes`: the nodes sharing this edge's database (the node table
//! their heartbeats write), and forgetting one that is gone for good.
//!
//! Owns these routes' HTTP shapes and OpenAPI descriptions, and their role
//! checks (operator and viewer read; an operator forgets). What a row means
//! (up, draining, stopped, gone) is `federation::cluster`'s; it never
//! writes a node's heartbeat.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use tracing::info;

use super::{Answer, ErrorBody, changing};
use crate::admin::EdgeState;
use crate::admin::auth::{Actor, ApiError};
use crate::federation::cluster::{ForgetError, NodeView, forget, node_views};

/// Every node that wrote a heartbeat to this database: its state (`up`,
/// `draining`, `stopped`, or `gone`: no heartbeat within `[cluster]
/// gone_after`), heartbeat age, registry version, version and listeners.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "node",
    responses(
        (status = 200, body = [NodeView]),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, description = "the database is unreachable", body = ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Answer<Vec<NodeView>> {
    actor.require_node_view()?;
    let rows = state.store.nodes().await?;
    let now = state.store.db_now_ms().await?;
    Ok(Json(node_views(
        rows,
        now,
        state.proxy.router.cluster.gone_after(),
    )))
}

/// Removes a gone or stopped node's row (a node retired for good); a live
/// one is refused (409).
#[utoipa::path(delete, path = "/api/v1/nodes/{name}", tag = "node",
    params(("name" = String, Path, description = "The node's name (`[cluster] node`)")),
    responses(
        (status = 200, description = "the row removed, as it was", body = NodeView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the node is up or draining", body = ErrorBody),
        (status = 503, description = "the database is unreachable", body = ErrorBody),
    ))]
pub(super) async fn forget_node(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Answer<NodeView> {
    actor.require_node_view()?;
    actor.require_change()?;
    changing(&actor, &headers)?;
    match forget(&state.store, &name, state.proxy.router.cluster.gone_after()).await {
        Ok(v) => {
            info!(node = %v.name, actor = actor.name(), "node forgotten");
            Ok(Json(v))
        }
        Err(e @ ForgetError::NotFound(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ ForgetError::Live { .. }) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(ForgetError::Store(e)) => Err(e.into()),
    }
}
