//! `/api/v1/partners...`: list, add from an FPA, show, update, lifecycle
//! verbs, history, test-federation and test results.
//!
//! Owns these routes' HTTP shapes and their OpenAPI descriptions; the
//! work and the role checks are `admin::service`'s. It never writes SQL.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Answer, Body, ErrorBody, changing, query};
use crate::admin::EdgeState;
use crate::admin::auth::Actor;
use crate::admin::service::{
    self, AddPartner, FederationTest, PartnerChanged, PartnerFilter, PartnerHistory, PartnerTests,
    PartnerUpdate, PartnerView, VerbOutcome,
};

/// `?state=` of the list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only partners in this state (`requested`, `agreement_sent`,
    /// `agreement_signed`, `approved`, `enabled`, `suspended`, `revoked`).
    pub state: Option<String>,
}

/// The body of a lifecycle verb.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct VerbBody {
    /// Why (required for suspend, reinstate and revoke); kept in the history.
    pub reason: Option<String>,
    /// `enable` only: enable without a passed onboarding IM test (needs a reason).
    #[serde(default)]
    pub skip_im_test: bool,
}

/// The body of a test-federation request.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TestBody {
    /// Which of the partner's domains to test (default: its first).
    pub domain: Option<String>,
}

/// Lists the partners the caller may see (a partner account: its own).
#[utoipa::path(get, path = "/api/v1/partners", tag = "partners", params(ListQuery),
    responses(
        (status = 200, body = [PartnerView]),
        (status = 400, description = "unknown state", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Answer<Vec<PartnerView>> {
    let q = query(q)?;
    let filter = PartnerFilter { state: q.state };
    Ok(Json(service::list_partners(&state, &actor, &filter).await?))
}

/// Adds a partner from a Federation Partnership Agreement (validated by
/// fpa-schemas/fpa.schema.json; every violation named by its path).
#[utoipa::path(post, path = "/api/v1/partners", tag = "partners", request_body = AddPartner,
    responses(
        (status = 201, body = PartnerChanged),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "a domain belongs to another partner", body = ErrorBody),
        (status = 422, description = "not a valid FPA", body = ErrorBody),
    ))]
pub(super) async fn add(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Body(req): Body<AddPartner>,
) -> Result<(StatusCode, Json<PartnerChanged>), crate::admin::auth::ApiError> {
    changing(&actor, &headers)?;
    let done = service::add_partner(&state, &actor, req).await?;
    Ok((StatusCode::CREATED, Json(done)))
}

/// One partner (404 for another partner's, as for one that does not exist).
#[utoipa::path(get, path = "/api/v1/partners/{id}", tag = "partners",
    params(("id" = String, Path, description = "The partner's id (p_...)")),
    responses(
        (status = 200, body = PartnerView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
pub(super) async fn show(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Answer<PartnerView> {
    Ok(Json(service::partner(&state, &actor, &id).await?))
}

/// Changes a partner's details (audited; not its state).
#[utoipa::path(patch, path = "/api/v1/partners/{id}", tag = "partners", request_body = PartnerUpdate,
    params(("id" = String, Path, description = "The partner's id")),
    responses(
        (status = 200, body = PartnerChanged),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub(super) async fn update(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(req): Body<PartnerUpdate>,
) -> Answer<PartnerChanged> {
    changing(&actor, &headers)?;
    Ok(Json(
        service::update_partner(&state, &actor, &id, req).await?,
    ))
}

/// Applies a lifecycle verb (`agreement-sent`, `agreement-signed`,
/// `approve`, `enable`, `suspend`, `reinstate`, `revoke`); enforced before
/// the answer (a suspended partner's next request is refused).
#[utoipa::path(post, path = "/api/v1/partners/{id}/{verb}", tag = "partners", request_body = VerbBody,
    params(
        ("id" = String, Path, description = "The partner's id"),
        ("verb" = String, Path, description = "agreement-sent, agreement-signed, approve, enable, suspend, reinstate or revoke"),
    ),
    responses(
        (status = 200, body = VerbOutcome),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "no such partner or verb", body = ErrorBody),
        (status = 409, description = "not allowed in the partner's state, or a reason is missing", body = ErrorBody),
    ))]
pub(super) async fn verb(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    Body(body): Body<VerbBody>,
) -> Answer<VerbOutcome> {
    changing(&actor, &headers)?;
    let verb = service::parse_verb(&verb)?;
    Ok(Json(
        service::apply_verb(
            &state,
            &actor,
            &id,
            verb,
            body.reason.as_deref(),
            body.skip_im_test,
        )
        .await?,
    ))
}

/// The partner's history: audit chain entries (with the acting account)
/// and its trail of states and reasons.
#[utoipa::path(get, path = "/api/v1/partners/{id}/history", tag = "partners",
    params(("id" = String, Path, description = "The partner's id")),
    responses(
        (status = 200, body = PartnerHistory),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
pub(super) async fn history(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Answer<PartnerHistory> {
    Ok(Json(service::history(&state, &actor, &id).await?))
}

/// Runs test-federation from this node: DNS, TCP, mutual TLS, OPTIONS and
/// an IM to the technical contact. 200 with every step, passed or not.
#[utoipa::path(post, path = "/api/v1/partners/{id}/test-federation", tag = "partners", request_body = TestBody,
    params(("id" = String, Path, description = "The partner's id")),
    responses(
        (status = 200, body = FederationTest),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, description = "no federation client TLS on this node", body = ErrorBody),
    ))]
pub(super) async fn test_federation(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body<TestBody>,
) -> Answer<FederationTest> {
    changing(&actor, &headers)?;
    Ok(Json(
        service::test_federation(&state, &actor, &id, body.domain.as_deref()).await?,
    ))
}

/// The partner's IM test results and this node's last test-federation runs.
#[utoipa::path(get, path = "/api/v1/partners/{id}/tests", tag = "partners",
    params(("id" = String, Path, description = "The partner's id")),
    responses(
        (status = 200, body = PartnerTests),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
pub(super) async fn tests(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Answer<PartnerTests> {
    Ok(Json(service::tests(&state, &actor, &id).await?))
}
