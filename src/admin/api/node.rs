//! `/api/v1/status`, `/api/v1/media...`, `/api/v1/audit` and
//! `/api/v1/openapi.json`: the node, its media relay, the audit chain and
//! this API's own description.
//!
//! Owns these routes' HTTP shapes and OpenAPI descriptions; the work and
//! the role checks are `admin::service`'s.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::cvi::DrainQuery;
use super::{Answer, ErrorBody, changing, query};
use crate::admin::EdgeState;
use crate::admin::auth::Actor;
use crate::admin::service::{self, ChainView, DrainView, NodeStatus};

/// `?since=` of the audit.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only entries at or after this time (RFC 3339, e.g. `2026-12-01` or
    /// `2026-12-01T09:00:00Z`).
    pub since: Option<String>,
}

/// The media relay's live sessions with their counters.
#[utoipa::path(get, path = "/api/v1/media", tag = "node",
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "the relay is not enabled", body = ErrorBody),
    ))]
pub(super) async fn media(State(state): State<Arc<EdgeState>>, actor: Actor) -> Answer<Value> {
    Ok(Json(service::media_status(&state, &actor)?))
}

/// Stops (or with `?on=false` resumes) new relay sessions; calls up finish.
#[utoipa::path(post, path = "/api/v1/media/drain", tag = "node", params(DrainQuery),
    responses(
        (status = 200, body = DrainView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "the relay is not enabled", body = ErrorBody),
    ))]
pub(super) async fn media_drain(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    q: Result<Query<DrainQuery>, QueryRejection>,
) -> Answer<DrainView> {
    changing(&actor, &headers)?;
    let q = query(q)?;
    Ok(Json(service::set_media_drain(
        &state,
        &actor,
        q.on.unwrap_or(true),
    )?))
}

/// The node: listeners, connections per partner, media sessions, drain states.
#[utoipa::path(get, path = "/api/v1/status", tag = "node",
    responses(
        (status = 200, body = NodeStatus),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ))]
pub(super) async fn status(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Answer<NodeStatus> {
    Ok(Json(service::node_status(&state, &actor)?))
}

/// The audit chain (a partner account: its partner's entries only).
#[utoipa::path(get, path = "/api/v1/audit", tag = "node", params(AuditQuery),
    responses(
        (status = 200, body = [ChainView]),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ))]
pub(super) async fn audit(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Answer<Vec<ChainView>> {
    let q = query(q)?;
    Ok(Json(
        service::audit(&state, &actor, q.since.as_deref()).await?,
    ))
}

/// This document (any account).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "node",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object),
        (status = 401, body = ErrorBody),
    ))]
pub(super) async fn openapi(_actor: Actor) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::openapi_json(),
    )
        .into_response()
}
