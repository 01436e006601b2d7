//! The versioned HTTP API (`/api/v1/...`) on the admin listener: JSON in
//! and out, thin over `admin::service`, and its OpenAPI document
//! ([`ApiDoc`], served at `/api/v1/openapi.json` and checked in as
//! docs/openapi.json).
//!
//! Owns the routes' shapes: paths, query and body types, status codes, the
//! CSRF check of every state-changing route (header `X-CSRF-Token`) and a
//! body size limit on every route. It never decides who may do what (the
//! service does) and never listens on the public listener. The accounts
//! and session routes are `admin::accounts`'s.

mod cvi;
mod drain;
mod fpa;
mod node;
mod nodes;
mod partners;
mod reload;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;

use super::EdgeState;
use super::auth::{Actor, ApiError, CSRF_HEADER};

/// The largest request body any API route reads (an FPA or a CSV of
/// organisers fits many times over).
pub const BODY_LIMIT: usize = 256 * 1024;

/// The error every refusal answers with.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Why, in one line.
    pub error: String,
}

/// A JSON request body: empty means `{}`; otherwise it must be
/// `application/json`. Every failure is an [`ApiError`] (JSON).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                e.status(),
                format!("the request body cannot be read: {}", e.body_text()),
            )
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else if json {
            &bytes
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as Content-Type: application/json",
            ));
        };
        serde_json::from_slice(text).map(Body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the request body does not fit: {e}"),
            )
        })
    }
}

/// The CSRF token a session caller sent (`X-CSRF-Token`).
fn csrf(headers: &HeaderMap) -> Option<&str> {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok())
}

/// Checks a state-changing request's CSRF token (tokens pass).
pub(super) fn changing(actor: &Actor, headers: &HeaderMap) -> Result<(), ApiError> {
    actor.check_csrf(csrf(headers))
}

/// Maps a query string that does not parse to a JSON 400.
fn query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|q| q.0)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "fedge admin API",
        description = "The federation edge's versioned admin API. Every route needs an account: \
                       `Authorization: Bearer <token>` (from `fedge user add`) or the console's \
                       session cookie, with `X-CSRF-Token` on every state-changing request. \
                       Refusals are `{\"error\": reason}` with 400, 401, 403, 404, 409, 413, 415 or 422."
    ),
    paths(
        partners::list, partners::add, partners::show, partners::update, partners::verb,
        partners::history, partners::test_federation, partners::tests, fpa::submit,
        cvi::organisers, cvi::enrol, cvi::withdraw, cvi::create_meeting, cvi::meeting,
        cvi::status, cvi::drain,
        node::media, node::media_drain, node::status, node::audit, node::openapi,
        drain::start, drain::progress,
        reload::reload,
        nodes::list, nodes::forget_node,
    ),
    components(schemas(
        ErrorBody,
        crate::admin::service::PartnerView, crate::admin::service::ContactsView,
        crate::admin::service::AddPartner, crate::admin::service::PartnerUpdate,
        crate::admin::service::VerbOutcome, crate::admin::service::PartnerChanged,
        crate::admin::service::PartnerHistory, crate::admin::service::ChainView,
        crate::admin::service::TrailView, crate::admin::service::PartnerTests,
        crate::admin::service::FederationTest, crate::admin::service::StepView,
        crate::admin::service::ImTestView, crate::admin::service::OrganiserView,
        crate::admin::service::EnrolRequest, crate::admin::service::EnrolOutcome,
        crate::admin::service::RowErrorView, crate::admin::service::MeetingRequest,
        crate::admin::service::MeetingView, crate::admin::service::DrainView,
        crate::admin::service::DrainProgress,
        crate::admin::service::NodeStatus, crate::admin::service::ListenerView,
        crate::admin::service::ConnectionsView, crate::admin::service::PartnerConnections,
        partners::VerbBody, partners::TestBody, cvi::EnrolRefused,
        fpa::FpaSubmission, crate::admin::intake::Receipt,
        crate::admin::tls::ReloadOutcome, crate::admin::tls::ServedCert,
        crate::federation::cluster::NodeView, crate::federation::cluster::NodeState,
        crate::federation::cluster::NodeListener,
    )),
    // The accounts and session routes (admin::accounts::AccountsApi, full
    // paths already) are merged in by `openapi_json`.
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "partners", description = "Federation partners and their lifecycle"),
        (name = "cvi", description = "CVI gateway: organisers, meetings, status"),
        (name = "node", description = "This node: status, media relay, audit, this document"),
    )
)]
pub struct ApiDoc;

/// The security schemes: a bearer token and the console's cookie.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token from `fedge user add` or the console"))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::auth::SESSION_COOKIE,
                "The console's session; state-changing requests also need X-CSRF-Token",
            ))),
        );
    }
}

/// The OpenAPI document as docs/openapi.json holds it (pretty JSON and a
/// final newline).
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.merge(<crate::admin::accounts::AccountsApi as OpenApi>::openapi());
    // Logging in is the one request made without an account.
    if let Some(login) = doc
        .paths
        .paths
        .get_mut("/api/v1/session")
        .and_then(|item| item.post.as_mut())
    {
        login.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::default(),
        ]);
    }
    doc.info.version = "v1".into();
    let mut s = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// The `/api/v1` routes, with the body limit.
pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/partners", get(partners::list).post(partners::add))
        .route(
            "/api/v1/partners/{id}",
            get(partners::show).patch(partners::update),
        )
        .route("/api/v1/partners/{id}/history", get(partners::history))
        .route("/api/v1/fpa", post(fpa::submit))
        .route(
            "/api/v1/partners/{id}/test-federation",
            post(partners::test_federation),
        )
        .route("/api/v1/partners/{id}/tests", get(partners::tests))
        .route("/api/v1/partners/{id}/{verb}", post(partners::verb))
        .route(
            "/api/v1/cvi/organisers",
            get(cvi::organisers).post(cvi::enrol),
        )
        .route("/api/v1/cvi/organisers/{email}", delete(cvi::withdraw))
        .route("/api/v1/cvi/meetings", post(cvi::create_meeting))
        .route("/api/v1/cvi/meetings/{id}", get(cvi::meeting))
        .route("/api/v1/cvi", get(cvi::status))
        .route("/api/v1/cvi/drain", post(cvi::drain))
        .route("/api/v1/media", get(node::media))
        .route("/api/v1/media/drain", post(node::media_drain))
        .route("/api/v1/status", get(node::status))
        .route(
            "/api/v1/node/drain",
            get(drain::progress).post(drain::start),
        )
        .route("/api/v1/node/reload", post(reload::reload))
        .route("/api/v1/nodes", get(nodes::list))
        .route("/api/v1/nodes/{name}", delete(nodes::forget_node))
        .route("/api/v1/audit", get(node::audit))
        .route("/api/v1/openapi.json", get(node::openapi))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// A JSON answer.
type Answer<T> = Result<Json<T>, ApiError>;
