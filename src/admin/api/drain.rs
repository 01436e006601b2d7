//! `/api/v1/node/drain`: start draining this node, and watch it.
//!
//! Owns these routes' HTTP shapes and OpenAPI descriptions; the work and
//! the role checks are `admin::service`'s (`service/drain.rs`), the drain
//! itself `server::drain`'s. Never stops anything itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::{Answer, ErrorBody, changing};
use crate::admin::EdgeState;
use crate::admin::auth::Actor;
use crate::admin::service::{self, DrainProgress};

/// Starts draining this node: new INVITEs and SUBSCRIBEs get 503 with
/// Retry-After, the media relay and the CVI gateway take no new calls,
/// calls in progress finish; the node exits when none is left, or at
/// `[drain] deadline`. Asking again changes nothing and answers the progress.
#[utoipa::path(post, path = "/api/v1/node/drain", tag = "node",
    responses(
        (status = 200, body = DrainProgress),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ))]
pub(super) async fn start(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
) -> Answer<DrainProgress> {
    changing(&actor, &headers)?;
    Ok(Json(service::start_node_drain(&state, &actor)?))
}

/// The drain's progress: calls and transactions left, seconds to the deadline.
#[utoipa::path(get, path = "/api/v1/node/drain", tag = "node",
    responses(
        (status = 200, body = DrainProgress),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ))]
pub(super) async fn progress(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Answer<DrainProgress> {
    Ok(Json(service::node_drain(&state, &actor)?))
}
