//! `POST /api/v1/node/reload`: re-read this node's federation certificate,
//! key, trust bundle and CRLs without dropping a connection (what SIGHUP
//! and `fedge reload` do).
//!
//! Owns the route's HTTP shape and its OpenAPI description: 200 with the
//! certificate now served, 422 with the reason a bad file set was refused.
//! It never reads a file itself (`admin::tls::TlsControl`, implemented by
//! `server::reload`, does).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{Answer, ErrorBody, changing};
use crate::admin::EdgeState;
use crate::admin::auth::{Actor, ApiError};
use crate::admin::tls::ReloadOutcome;

/// Re-reads `[federation] cert`, `key`, `trust` and `crls`: new handshakes
/// get the new certificate and are checked against the new trust bundle
/// and CRLs; connections already up keep going. A bad set (unreadable,
/// key not matching, expired, not naming `[federation] fqdn`, empty trust
/// bundle) is refused with its reason and the old one stays in force.
#[utoipa::path(post, path = "/api/v1/node/reload", tag = "node",
    responses(
        (status = 200, body = ReloadOutcome),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "this node serves no reloadable TLS", body = ErrorBody),
        (status = 422, description = "the new files were refused; the old ones stay", body = ErrorBody),
    ))]
pub(super) async fn reload(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
) -> Answer<ReloadOutcome> {
    changing(&actor, &headers)?;
    actor.require_change()?;
    let Some(tls) = state.tls.clone() else {
        return Err(ApiError::not_found("this node serves no reloadable TLS"));
    };
    let trigger = format!("API ({})", actor.name());
    // Reading a few PEM files: off the runtime's threads all the same.
    let outcome = tokio::task::spawn_blocking(move || tls.reload(&trigger))
        .await
        .map_err(|e| ApiError::internal(format!("the reload did not finish: {e}")))?;
    outcome
        .map(Json)
        .map_err(|why| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why.0))
}
