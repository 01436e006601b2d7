//! `GET /metrics`: the edge's counters and gauges in the Prometheus text
//! format, one group per part of the edge (SIP and registry, media relay,
//! CVI gateway, HEP capture).
//!
//! Needs the operator or viewer role (a Prometheus scraper uses a viewer
//! token). Owns the metric names and help texts. It only reads counters; it never
//! resets or changes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;

use crate::cvi::gateway::Gateway;
use crate::media::Relay;

use super::state::EdgeState;

/// HEP capture's counters (`[capture] hep`): the sender in
/// `server::capture` adds to them, /metrics reads them.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// HEP datagrams sent to the collector.
    pub sent: AtomicU64,
    /// Copies not sent: the queue was full, the datagram would be over
    /// 65507 bytes, or the send failed.
    pub dropped: AtomicU64,
}

/// One gauge: name, help text, value.
type Gauge = (&'static str, &'static str, f64);

fn load(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// `GET /metrics`: counters and gauges in the Prometheus text format.
pub(super) async fn metrics(
    State(state): State<Arc<EdgeState>>,
    actor: super::auth::Actor,
) -> Result<([(axum::http::header::HeaderName, &'static str); 1], String), super::auth::ApiError> {
    actor.require_node_view()?;
    let mut extra = sip_gauges(&state);
    if let Some(r) = &state.media {
        extra.extend(media_gauges(r));
    }
    if let Some(g) = &state.cvi {
        extra.extend(cvi_gauges(g));
        if let Some(h) = g.h323_stats.get() {
            extra.extend(h323_gauges(h));
        }
        if let Some(w) = g.webrtc.get() {
            extra.extend(crate::cvi::webrtc::gauges(w));
        }
    }
    if let Some(c) = &state.capture {
        extra.extend(capture_gauges(c));
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(&extra),
    ))
}

/// Connections, transactions, SIP counters and the registry.
fn sip_gauges(state: &EdgeState) -> Vec<Gauge> {
    let st = &state.proxy.stats;
    let (servers, clients) = state.proxy.transactions();
    let snap = state.registry.snapshot();
    vec![
        ("fedge_up", "1 while this edge is serving", 1.0),
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
    ]
}

/// HEP capture.
fn capture_gauges(c: &CaptureCounters) -> [Gauge; 2] {
    [
        (
            "fedge_capture_sent_total",
            "HEP3 capture datagrams sent to the collector (cumulative)",
            load(&c.sent),
        ),
        (
            "fedge_capture_dropped_total",
            "SIP message copies not captured: queue full, over 65507 bytes, or send failed (cumulative)",
            load(&c.dropped),
        ),
    ]
}

/// The federation media relay.
fn media_gauges(r: &Relay) -> [Gauge; 10] {
    let t = &r.totals;
    [
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
            "Calls refused by the relay: full, draining, or over a partner's share (cumulative)",
            load(&t.refused),
        ),
        (
            "fedge_media_refused_addresses_total",
            "SDP media addresses not sent to: outside [media] networks (cumulative)",
            load(&t.refused_addresses),
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
    ]
}

/// The CVI gateway's H.323 front end (calls it presented to the gateway;
/// capacity and drain are the gateway's own counters).
fn h323_gauges(s: &crate::cvi::h323::Stats) -> [Gauge; 8] {
    [
        (
            "fedge_cvi_h323_calls_total",
            "H.323 calls presented to the CVI gateway (cumulative)",
            load(&s.calls),
        ),
        (
            "fedge_cvi_h323_connected_total",
            "H.323 calls connected (cumulative)",
            load(&s.connected),
        ),
        (
            "fedge_cvi_h323_refused_total",
            "H.323 calls released before Connect (cumulative)",
            load(&s.refused),
        ),
        (
            "fedge_cvi_h323_malformed_total",
            "H.323 connections closed for malformed input (cumulative)",
            load(&s.malformed),
        ),
        (
            "fedge_cvi_h323_refused_connections_total",
            "H.323 connections refused by the bounds (cumulative)",
            load(&s.refused_connections),
        ),
        (
            "fedge_cvi_h323_ras_lcf_total",
            "RAS location requests confirmed (cumulative)",
            load(&s.ras_lcf),
        ),
        (
            "fedge_cvi_h323_ras_rejected_total",
            "RAS GRQ and LRQ rejected (cumulative)",
            load(&s.ras_lrj) + load(&s.ras_grj),
        ),
        (
            "fedge_cvi_h323_ras_ignored_total",
            "RAS messages ignored (cumulative)",
            load(&s.ras_ignored),
        ),
    ]
}

/// The CVI gateway.
fn cvi_gauges(g: &Gateway) -> [Gauge; 17] {
    let s = &g.stats;
    [
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
            "fedge_cvi_refused_source_total",
            "CVI calls refused 503: the source held its share (cumulative)",
            load(&s.refused_source),
        ),
        (
            "fedge_cvi_unproven_udp_total",
            "CVI UDP INVITEs dropped: the source did not answer the probe (cumulative)",
            load(&s.unproven),
        ),
        (
            "fedge_cvi_mismatched_total",
            "CVI in-dialog requests refused 481: not the dialog's peer, tags (cumulative)",
            load(&s.mismatched),
        ),
        (
            "fedge_cvi_guess_lockouts_total",
            "CVI sources locked out for guessing conference IDs (cumulative)",
            load(&g.guesses.lockouts),
        ),
        (
            "fedge_cvi_guesses_refused_total",
            "CVI conference ID attempts refused during a lockout (cumulative)",
            load(&g.guesses.refused),
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
    ]
}
