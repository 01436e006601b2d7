//! The admin HTTP listener: health now, operator pages later.
//!
//! Owns the HTTP surface. It reads the edge's state; it never changes SIP
//! behaviour on its own.

use std::sync::Arc;
use std::sync::atomic::Ordering;

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
        "registry_version": state.registry.snapshot().version,
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
        },
    }))
}

/// `GET /registry`: the registry snapshot this node enforces right now.
async fn registry(State(state): State<Arc<EdgeState>>) -> Json<Value> {
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
    Json(json!({ "version": snap.version, "partners": partners }))
}

/// `GET /metrics`: counters and gauges in the Prometheus text format.
async fn metrics(
    State(state): State<Arc<EdgeState>>,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    let st = &state.proxy.stats;
    let (servers, clients) = state.proxy.transactions();
    let snap = state.registry.snapshot();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut extra = vec![
        (
            "fedge_connections",
            "Live stream connections",
            state.connections.len() as f64,
        ),
        (
            "fedge_server_transactions",
            "Live server transactions",
            servers as f64,
        ),
        (
            "fedge_client_transactions",
            "Live client transactions",
            clients as f64,
        ),
        (
            "fedge_sip_requests_received",
            "SIP requests received (cumulative)",
            load(&st.requests),
        ),
        (
            "fedge_sip_responses_received",
            "SIP responses received (cumulative)",
            load(&st.responses),
        ),
        (
            "fedge_sip_forwarded",
            "SIP requests forwarded (cumulative)",
            load(&st.forwarded),
        ),
        (
            "fedge_sip_rejected",
            "SIP requests refused (cumulative)",
            load(&st.rejected),
        ),
        (
            "fedge_sip_retransmissions",
            "Request retransmissions absorbed (cumulative)",
            load(&st.retransmissions),
        ),
        (
            "fedge_sip_stray_responses",
            "Responses matching no transaction, dropped (cumulative)",
            load(&st.stray_responses),
        ),
        (
            "fedge_sip_loops",
            "Requests refused as loops (cumulative)",
            load(&st.loops),
        ),
        (
            "fedge_registry_version",
            "Registry version this node enforces",
            snap.version as f64,
        ),
        (
            "fedge_partners_enabled",
            "Enabled partners",
            snap.enabled_count() as f64,
        ),
    ];
    if let Some(r) = &state.media {
        let t = &r.totals;
        extra.extend([
            (
                "fedge_media_sessions",
                "Live media relay sessions",
                r.len() as f64,
            ),
            (
                "fedge_media_sessions_total",
                "Media relay sessions opened (cumulative)",
                load(&t.sessions),
            ),
            (
                "fedge_media_refused_total",
                "Calls refused by the relay: full or draining (cumulative)",
                load(&t.refused),
            ),
            (
                "fedge_media_packets_total",
                "Media packets relayed (cumulative)",
                load(&t.packets),
            ),
            (
                "fedge_media_bytes_total",
                "Media bytes relayed (cumulative)",
                load(&t.bytes),
            ),
            (
                "fedge_media_drops_total",
                "Media packets dropped: unlatched source or no destination (cumulative)",
                load(&t.drops),
            ),
            (
                "fedge_media_stun_total",
                "ICE connectivity checks answered (cumulative)",
                load(&t.stun),
            ),
            (
                "fedge_media_ports_in_use",
                "Media port pairs in use",
                r.ports_in_use() as f64,
            ),
            (
                "fedge_media_draining",
                "1 while the relay takes no new calls",
                if r.draining() { 1.0 } else { 0.0 },
            ),
        ]);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(&extra),
    )
}

/// `GET /media`: the relay's live sessions with their counters.
async fn media_sessions(
    State(state): State<Arc<EdgeState>>,
) -> (axum::http::StatusCode, Json<Value>) {
    match &state.media {
        Some(r) => (
            axum::http::StatusCode::OK,
            Json(json!({
                "draining": r.draining(),
                "ports_in_use": r.ports_in_use(),
                "sessions": r.list(),
            })),
        ),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"error": "the media relay is not enabled ([media] enabled = false)"})),
        ),
    }
}

#[derive(serde::Deserialize)]
struct DrainQuery {
    on: Option<bool>,
}

/// `POST /media/drain[?on=false]`: stop (or resume) taking new calls.
async fn media_drain(
    State(state): State<Arc<EdgeState>>,
    axum::extract::Query(q): axum::extract::Query<DrainQuery>,
) -> (axum::http::StatusCode, Json<Value>) {
    match &state.media {
        Some(r) => {
            r.set_draining(q.on.unwrap_or(true));
            (
                axum::http::StatusCode::OK,
                Json(json!({"draining": r.draining(), "sessions": r.len()})),
            )
        }
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"error": "the media relay is not enabled ([media] enabled = false)"})),
        ),
    }
}

/// Serves the admin API until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<EdgeState>, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/registry", get(registry))
        .route("/metrics", get(metrics))
        .route("/media", get(media_sessions))
        .route("/media/drain", axum::routing::post(media_drain))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, "admin listener failed");
    }
}
