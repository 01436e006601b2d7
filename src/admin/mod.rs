//! The admin HTTP listener: health now, operator pages later.
//!
//! Owns the HTTP surface. It reads the edge's state; it never changes SIP
//! behaviour on its own.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::server::EdgeState;

/// `GET /health`: liveness plus a few counters.
async fn health(State(state): State<Arc<EdgeState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "fqdn": state.fqdn,
        "version": env!("CARGO_PKG_VERSION"),
        "connections": state.connections.len(),
    }))
}

/// Serves the admin API until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<EdgeState>, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/health", get(health))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, "admin listener failed");
    }
}
