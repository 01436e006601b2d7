//! `POST /api/v1/fpa`: an operator enters a Federation Partnership
//! Agreement received on paper or by e-mail, with the partner's edge
//! certificate, through the same intake as the public form.
//!
//! Owns the route's shape. The checks (schema, certificate chain, name and
//! expiry) and the records it makes are `admin::intake`'s; it never writes
//! to the store itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Body, ErrorBody, changing};
use crate::admin::EdgeState;
use crate::admin::auth::{Actor, ApiError};
use crate::admin::intake::Receipt;

/// An FPA as fpa-schemas/fpa.schema.json defines it, and the partner's
/// edge certificate (PEM).
#[derive(Debug, Deserialize, ToSchema)]
pub struct FpaSubmission {
    /// The FPA document.
    #[schema(value_type = Object)]
    pub fpa: serde_json::Value,
    /// The partner's Access Edge certificate, PEM.
    pub certificate_pem: String,
}

/// Submits an FPA for a partner: the partner is created `requested` and
/// an account is requested for its technical contact.
#[utoipa::path(post, path = "/api/v1/fpa", tag = "partners", request_body = FpaSubmission,
    responses(
        (status = 201, body = Receipt),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "a domain belongs to another partner", body = ErrorBody),
        (status = 422, description = "not a valid FPA or certificate: every problem named", body = ErrorBody),
    ))]
pub(super) async fn submit(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Body(req): Body<FpaSubmission>,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    actor.require_change()?;
    changing(&actor, &headers)?;
    let r = crate::admin::intake::submit(
        &state,
        &req.fpa.to_string(),
        &req.certificate_pem,
        Some(actor.name()),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(r)))
}
