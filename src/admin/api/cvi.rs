//! `/api/v1/cvi...`: organisers (list, enrol singly or by CSV, withdraw),
//! meetings (create with the invite text, show), the gateway's status and
//! drain switch.
//!
//! Owns these routes' HTTP shapes and OpenAPI descriptions; the work and
//! the role checks are `admin::service`'s.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{Answer, Body, ErrorBody, changing, query};
use crate::admin::EdgeState;
use crate::admin::auth::{Actor, ApiError};
use crate::admin::service::{
    self, DrainView, EnrolOutcome, EnrolRequest, MeetingRequest, MeetingView, OrganiserView,
    RowErrorView,
};

/// The answer when nothing was enrolled: why, and every bad row.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnrolRefused {
    pub error: String,
    pub rows: Vec<RowErrorView>,
}

/// `?on=false` resumes.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DrainQuery {
    /// `true` (default): stop taking new calls; `false`: resume.
    pub on: Option<bool>,
}

/// Every CVI organiser, enrolled or withdrawn.
#[utoipa::path(get, path = "/api/v1/cvi/organisers", tag = "cvi",
    responses(
        (status = 200, body = [OrganiserView]),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ))]
pub(super) async fn organisers(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Answer<Vec<OrganiserView>> {
    Ok(Json(service::organisers(&state, &actor).await?))
}

/// Enrols organisers (`emails`, or `csv` with one column headed
/// `EmailAddress`). Any bad row changes nothing unless `partial`; a 422
/// lists every bad row.
#[utoipa::path(post, path = "/api/v1/cvi/organisers", tag = "cvi", request_body = EnrolRequest,
    responses(
        (status = 200, body = EnrolOutcome),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "nothing enrolled", body = EnrolRefused),
    ))]
pub(super) async fn enrol(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Body(req): Body<EnrolRequest>,
) -> Result<Response, ApiError> {
    changing(&actor, &headers)?;
    let out = service::enrol(&state, &actor, &req).await?;
    if out.written {
        return Ok(Json(out).into_response());
    }
    let n = out.errors.len();
    let error = if n == 0 {
        "no organiser to enrol".to_string()
    } else {
        format!(
            "{n} bad row(s); nothing enrolled{}: {}",
            if req.partial {
                ""
            } else {
                " (partial enrols the good rows)"
            },
            out.errors
                .iter()
                .map(|r| format!("line {}: {}", r.line, r.error))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(EnrolRefused {
            error,
            rows: out.errors,
        }),
    )
        .into_response())
}

/// Ends an organiser's enrolment: their meetings can no longer be joined.
#[utoipa::path(delete, path = "/api/v1/cvi/organisers/{email}", tag = "cvi",
    params(("email" = String, Path, description = "The organiser's address")),
    responses(
        (status = 200, body = OrganiserView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub(super) async fn withdraw(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(email): Path<String>,
) -> Answer<OrganiserView> {
    changing(&actor, &headers)?;
    Ok(Json(service::withdraw(&state, &actor, &email).await?))
}

/// Gives an enrolled organiser's meeting a unique conference ID; the
/// answer carries the invitation block (`invite`).
#[utoipa::path(post, path = "/api/v1/cvi/meetings", tag = "cvi", request_body = MeetingRequest,
    responses(
        (status = 201, body = MeetingView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "organiser not enrolled, or a bad expiry", body = ErrorBody),
    ))]
pub(super) async fn create_meeting(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Body(req): Body<MeetingRequest>,
) -> Result<(StatusCode, Json<MeetingView>), ApiError> {
    changing(&actor, &headers)?;
    let m = service::create_meeting(&state, &actor, &req).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// A meeting by its conference ID, and whether it can be joined.
#[utoipa::path(get, path = "/api/v1/cvi/meetings/{id}", tag = "cvi",
    params(("id" = String, Path, description = "The 10-digit conference ID")),
    responses(
        (status = 200, body = MeetingView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub(super) async fn meeting(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Answer<MeetingView> {
    Ok(Json(service::meeting(&state, &actor, &id).await?))
}

/// The gateway's calls, capacity and counters.
#[utoipa::path(get, path = "/api/v1/cvi", tag = "cvi",
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "the gateway is not enabled", body = ErrorBody),
    ))]
pub(super) async fn status(State(state): State<Arc<EdgeState>>, actor: Actor) -> Answer<Value> {
    Ok(Json(service::cvi_status(&state, &actor)?))
}

/// Stops (or with `?on=false` resumes) new gateway calls; calls up finish.
#[utoipa::path(post, path = "/api/v1/cvi/drain", tag = "cvi", params(DrainQuery),
    responses(
        (status = 200, body = DrainView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "the gateway is not enabled", body = ErrorBody),
    ))]
pub(super) async fn drain(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    q: Result<Query<DrainQuery>, QueryRejection>,
) -> Answer<DrainView> {
    changing(&actor, &headers)?;
    let q = query(q)?;
    Ok(Json(service::set_cvi_drain(
        &state,
        &actor,
        q.on.unwrap_or(true),
    )?))
}
