//! The public listener (`[public] listen`): what anyone may read or
//! submit without an account. The landing page (`GET /`), the published
//! list of federated organisations (`/federated`, `/federated.json`), the
//! CVI dialling instructions pages (`/cvi/{id}`) and the FPA intake form
//! (`/fpa`).
//!
//! Owns these routes, their pages and the listener's limits (request body
//! size, security headers). It never serves the admin API, the console or
//! any route that needs an account, and never shows a partner that is not
//! enabled.

mod cvi;
mod fpa;
pub mod guard;
mod join;
mod list;

use std::sync::Arc;

use askama::Template;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::state::EdgeState;

/// The largest request body accepted (an FPA with a certificate chain).
pub const MAX_BODY: usize = 64 * 1024;

/// The public routes.
pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/", get(index))
        .route("/federated", get(list::federated_html))
        .route("/federated.json", get(list::federated_json))
        .route("/cvi/{id}", get(cvi::cvi_instructions))
        .route("/cvi/join.js", get(join::script))
        .route("/cvi/{id}/join", axum::routing::post(join::post))
        .route(
            "/cvi/{id}/join/{session}",
            get(join::state).delete(join::leave),
        )
        .route("/fpa", get(fpa::form).post(fpa::post))
        .fallback(not_found)
        .layer(Extension(Arc::new(list::ListCache::default())))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(headers))
}

/// Serves the public listener until shutdown, behind its connection
/// guard ([`guard::Guarded`]).
pub async fn serve(listener: guard::Guarded, state: Arc<EdgeState>, shutdown: CancellationToken) {
    let app = routes()
        .with_state(state)
        .layer(axum::middleware::from_fn(super::peer_address))
        .into_make_service_with_connect_info::<super::Peer>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, "public listener failed");
    }
}

/// Headers every public answer carries: no sniffing, no framing, no
/// scripts, forms only to this site, no referrer to elsewhere.
async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A page that runs fedge's own script (the browser join) sets its
    // own, still strict, policy.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// Renders a page, or a plain 500 when the template fails.
pub(super) fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            warn!(error = %e, "public page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "public/index.html")]
struct IndexPage<'a> {
    fqdn: &'a str,
    cvi: bool,
}

/// `GET /`: what this listener offers.
async fn index(State(state): State<Arc<EdgeState>>) -> Response {
    page(
        StatusCode::OK,
        &IndexPage {
            fqdn: &state.fqdn,
            cvi: state.cvi.is_some(),
        },
    )
}

/// Anything else: 404, the same whatever the path (admin routes included).
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}
