//! The admin HTTP listener: health, registry, metrics, the media relay's
//! and the CVI gateway's state and drain switches, and the CVI dialling
//! instructions pages (`/cvi/<id>`).
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
    if let Some(g) = &state.cvi {
        let s = &g.stats;
        extra.extend([
            ("fedge_cvi_calls", "Live CVI gateway calls", g.live() as f64),
            (
                "fedge_cvi_max_calls",
                "CVI gateway calls this node takes at once",
                g.max_calls() as f64,
            ),
            (
                "fedge_cvi_calls_total",
                "CVI calls received (cumulative)",
                load(&s.calls),
            ),
            (
                "fedge_cvi_connected_total",
                "CVI calls connected to the meeting service (cumulative)",
                load(&s.connected),
            ),
            (
                "fedge_cvi_refused_full_total",
                "CVI calls refused 503 at capacity (cumulative)",
                load(&s.refused_full),
            ),
            (
                "fedge_cvi_refused_draining_total",
                "CVI calls refused 503 while draining (cumulative)",
                load(&s.refused_draining),
            ),
            (
                "fedge_cvi_not_found_total",
                "Conference IDs not accepted (cumulative)",
                load(&s.not_found),
            ),
            (
                "fedge_cvi_connector_failed_total",
                "Calls the meeting service refused or did not answer (cumulative)",
                load(&s.connector_failed),
            ),
            (
                "fedge_cvi_test_calls_total",
                "Test calls (cumulative)",
                load(&s.test_calls),
            ),
            (
                "fedge_cvi_ports_in_use",
                "CVI media port pairs in use",
                g.relay.ports_in_use() as f64,
            ),
            (
                "fedge_cvi_media_packets_total",
                "CVI media packets relayed (cumulative)",
                load(&g.relay.totals.packets),
            ),
            (
                "fedge_cvi_draining",
                "1 while the CVI gateway takes no new calls",
                if g.draining() { 1.0 } else { 0.0 },
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

/// `GET /cvi/{id}`: a meeting's alternate VTC dialling instructions (HTML);
/// an unknown, withdrawn or ended meeting gets a not-found page (404).
async fn cvi_instructions(
    State(state): State<Arc<EdgeState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> (
    axum::http::StatusCode,
    [(axum::http::header::HeaderName, &'static str); 1],
    String,
) {
    use crate::cvi::meetings::{instructions_page, is_conference_id, not_found_page};
    use axum::http::StatusCode;
    let html = [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")];
    let digits: String = id.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if !is_conference_id(&digits) {
        let shown: String = id.chars().take(40).collect();
        return (
            StatusCode::NOT_FOUND,
            html,
            not_found_page(&shown, "a Video Conference ID has 10 digits"),
        );
    }
    match state.store.cvi_meeting(&digits).await {
        Ok(Some((m, enrolled))) => {
            if let Err(why) = m.joinable(enrolled, &crate::store::now_rfc3339()) {
                (
                    StatusCode::NOT_FOUND,
                    html,
                    not_found_page(&digits, why.as_str()),
                )
            } else {
                (
                    StatusCode::OK,
                    html,
                    instructions_page(&state.dialling, &digits, m.subject.as_deref()),
                )
            }
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            html,
            not_found_page(&digits, "no meeting has this ID"),
        ),
        Err(e) => {
            warn!(error = %e, "CVI meeting lookup failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                html,
                not_found_page(&digits, "the meeting cannot be looked up just now"),
            )
        }
    }
}

fn cvi_off() -> (axum::http::StatusCode, Json<Value>) {
    (
        axum::http::StatusCode::NOT_FOUND,
        Json(json!({"error": "the CVI gateway is not enabled ([cvi] enabled = false)"})),
    )
}

/// `GET /cvi`: the gateway's calls, capacity and counters.
async fn cvi_status(State(state): State<Arc<EdgeState>>) -> (axum::http::StatusCode, Json<Value>) {
    let Some(g) = &state.cvi else {
        return cvi_off();
    };
    let s = &g.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    (
        axum::http::StatusCode::OK,
        Json(json!({
            "calls": g.live(),
            "max_calls": g.max_calls(),
            "draining": g.draining(),
            "ports_in_use": g.relay.ports_in_use(),
            "totals": {
                "calls": load(&s.calls),
                "connected": load(&s.connected),
                "refused_full": load(&s.refused_full),
                "refused_draining": load(&s.refused_draining),
                "not_found": load(&s.not_found),
                "connector_failed": load(&s.connector_failed),
                "test_calls": load(&s.test_calls),
            },
            "media": g.relay.list(),
        })),
    )
}

/// `POST /cvi/drain[?on=false]`: the gateway stops (or resumes) taking calls.
async fn cvi_drain(
    State(state): State<Arc<EdgeState>>,
    axum::extract::Query(q): axum::extract::Query<DrainQuery>,
) -> (axum::http::StatusCode, Json<Value>) {
    let Some(g) = &state.cvi else {
        return cvi_off();
    };
    g.set_draining(q.on.unwrap_or(true));
    (
        axum::http::StatusCode::OK,
        Json(json!({"draining": g.draining(), "calls": g.live()})),
    )
}

/// Serves the admin API until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<EdgeState>, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/registry", get(registry))
        .route("/metrics", get(metrics))
        .route("/media", get(media_sessions))
        .route("/media/drain", axum::routing::post(media_drain))
        .route("/cvi", get(cvi_status))
        .route("/cvi/drain", axum::routing::post(cvi_drain))
        .route("/cvi/{id}", get(cvi_instructions))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, "admin listener failed");
    }
}
