//! The admin HTTP listener: an index (`GET /`), health, registry, metrics, the media relay's
//! and the CVI gateway's state and drain switches. The public listener
//! (`public`: the published list, the CVI dialling instructions pages and
//! FPA intake) is a separate router on its own address.
//!
//! Every route but `/cvi/<id>` needs an [`Actor`]: reads the operator or
//! viewer role, changes (drains, reload) the operator role and, for a
//! console session, its CSRF token.
//!
//! Owns the HTTP surface and its state type ([`EdgeState`], which `server`
//! fills in). It reads the edge's state; it never changes SIP behaviour on
//! its own, and it never imports `server`.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod console;
mod cvi;
pub mod intake;
mod media;
mod metrics;
pub mod public;
pub mod service;
mod state;
mod throttle;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::extract::connect_info::Connected;
use axum::routing::get;
use axum::serve::{IncomingStream, Listener};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use metrics::CaptureCounters;
pub use state::EdgeState;

use auth::{Actor, ApiError};

/// `GET /`: what the admin listener serves, so that a person who opens
/// its address in a browser finds the rest.
async fn index(
    State(state): State<Arc<EdgeState>>,
    headers: axum::http::HeaderMap,
    actor: Result<Actor, ApiError>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // A browser goes to the console, which asks it to log in.
    if console::wants_html(&headers) {
        return axum::response::Redirect::to("/console/").into_response();
    }
    index_json(&state, actor).into_response()
}

fn index_json(state: &EdgeState, actor: Result<Actor, ApiError>) -> Result<Json<Value>, ApiError> {
    actor?.require_node_view()?;
    let mut endpoints = vec![
        json!({"path": "/health", "method": "GET", "what": "liveness, load and SIP counters"}),
        json!({"path": "/registry", "method": "GET", "what": "the partners this node enforces"}),
        json!({"path": "/registry/reload", "method": "POST", "what": "reload the registry from the store now"}),
        json!({"path": "/metrics", "method": "GET", "what": "Prometheus metrics"}),
        json!({"path": "/media", "method": "GET", "what": "the media relay's sessions"}),
        json!({"path": "/media/drain", "method": "POST", "what": "stop (?on=false: resume) new relay sessions"}),
    ];
    if state.cvi.is_some() {
        endpoints.extend([
            json!({"path": "/cvi", "method": "GET", "what": "the CVI gateway's calls and counters"}),
            json!({"path": "/cvi/drain", "method": "POST", "what": "stop (?on=false: resume) new CVI calls"}),
        ]);
    }
    Ok(Json(json!({
        "service": "fedge admin",
        "fqdn": state.fqdn,
        "version": env!("CARGO_PKG_VERSION"),
        "cvi": state.cvi.is_some(),
        "endpoints": endpoints,
    })))
}

/// `GET /health`: liveness plus a few counters. While the database is
/// unreachable the status is `degraded` (still HTTP 200: the node keeps
/// serving partners from its last registry snapshot, so a load balancer
/// should keep it) and `store` says since when and why.
async fn health(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    actor.require_node_view()?;
    let store = state.store.health();
    let cluster = &state.proxy.router.cluster;
    Ok(Json(json!({
        "status": if store.reachable { "ok" } else { "degraded" },
        "store": store,
        "cluster": { "live_nodes": cluster.live_nodes(), "draining": cluster.draining() },
        "fqdn": state.fqdn,
        "version": env!("CARGO_PKG_VERSION"),
        "connections": state.connections.len(),
        "registry_version": state.registry.snapshot().version,
        "tls": state.tls.as_ref().map(|t| {
            let (ok, refused) = t.counts();
            json!({"certificate": t.served(), "reloads": ok, "refused": refused})
        }),
        "load": {
            "overloaded": state.proxy.load.pressure(0).overloaded,
            "lag_ms": state.proxy.load.pressure(0).lag.as_secs_f64() * 1e3,
            "max_lag_ms": state.proxy.load.max_lag().as_secs_f64() * 1e3,
            "episodes": state.proxy.load.episodes(),
        },
        "transactions": {
            "server": state.proxy.transactions().0,
            "client": state.proxy.transactions().1,
        },
        "sip": {
            "requests": state.proxy.stats.requests.load(Ordering::Relaxed),
            "responses": state.proxy.stats.responses.load(Ordering::Relaxed),
            "forwarded": state.proxy.stats.forwarded.load(Ordering::Relaxed),
            "rejected": state.proxy.stats.rejected.load(Ordering::Relaxed),
            "retransmissions": state.proxy.stats.retransmissions.load(Ordering::Relaxed),
            "stray_responses": state.proxy.stats.stray_responses.load(Ordering::Relaxed),
            "loops": state.proxy.stats.loops.load(Ordering::Relaxed),
            "foreign_dialog": state.proxy.stats.foreign_dialog.load(Ordering::Relaxed),
        },
    })))
}

/// `GET /registry`: the registry snapshot this node enforces right now.
async fn registry(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    actor.require_node_view()?;
    let snap = state.registry.snapshot();
    let mut partners: Vec<Value> = snap
        .partners()
        .map(|p| {
            json!({
                "id": p.id,
                "org_name": p.details.org_name,
                "domains": p.details.domains,
                "edge_fqdn": p.details.edge_fqdn,
                "state": p.state,
            })
        })
        .collect();
    partners.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(Json(
        json!({ "version": snap.version, "partners": partners }),
    ))
}

/// `POST /registry/reload`: reloads the registry from the store now (the
/// CLI calls it after a change, so that the change is enforced, and a
/// partner that left `enabled` refused, before the command returns).
async fn registry_reload(
    State(state): State<Arc<EdgeState>>,
    actor: Actor,
    headers: axum::http::HeaderMap,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    require_drain(&actor, &headers)?;
    Ok(match state.registry.reload(&state.store).await {
        Ok(version) => (
            axum::http::StatusCode::OK,
            Json(json!({ "version": version })),
        ),
        Err(e) => {
            warn!(error = %e, "registry reload failed");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": e.to_string() })),
            )
        }
    })
}

/// What a state-changing node route asks of its caller: the operator
/// role and, for a console session, its CSRF token in `X-CSRF-Token`.
pub(crate) fn require_drain(
    actor: &Actor,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    actor.require_change()?;
    actor.check_csrf(headers.get(auth::CSRF_HEADER).and_then(|v| v.to_str().ok()))
}

/// Any path the admin listener does not serve: a 404 that says so, in the
/// API's error shape.
async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such route on the admin listener: {} (see GET /api/v1/openapi.json)",
        uri.path()
    ))
}

/// The peer's address on any listener the admin router is served on
/// (plain TCP or TLS); [`peer_address`] hands it on as
/// `ConnectInfo<SocketAddr>`, which handlers extract.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// A listener the admin router may be served on: plain TCP, or the
/// server's TLS listener.
pub trait AdminListener: Listener<Addr = SocketAddr> {}

impl AdminListener for tokio::net::TcpListener {}

impl<L: AdminListener> Connected<IncomingStream<'_, L>> for Peer {
    fn connect_info(stream: IncomingStream<'_, L>) -> Self {
        Peer(*stream.remote_addr())
    }
}

async fn peer_address(
    axum::extract::ConnectInfo(Peer(addr)): axum::extract::ConnectInfo<Peer>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    next.run(req).await
}

/// Serves the admin API until shutdown, on plain TCP or (`[admin] tls`)
/// on a listener of finished TLS handshakes.
pub async fn serve<L>(listener: L, state: Arc<EdgeState>, shutdown: CancellationToken)
where
    L: AdminListener,
{
    let app = Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/registry", get(registry))
        .route("/registry/reload", axum::routing::post(registry_reload))
        .route("/metrics", get(metrics::metrics))
        .route("/media", get(media::media_sessions))
        .route("/media/drain", axum::routing::post(media::media_drain))
        .route("/cvi", get(cvi::cvi_status))
        .route("/cvi/drain", axum::routing::post(cvi::cvi_drain))
        .merge(accounts::routes())
        .merge(api::routes())
        .merge(console::routes())
        .fallback(no_route)
        .with_state(state);
    // The peer's address, for handlers that count or log per source.
    let app = app
        .layer(axum::middleware::from_fn(peer_address))
        .into_make_service_with_connect_info::<Peer>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, "admin listener failed");
    }
}
