//! Node-wide operations shared by the API and the console: the node's
//! status (listeners, connections per partner, media sessions, drain
//! states), the media relay's status and drain switch, and the audit
//! chain as an actor may read it.
//!
//! Owns the role checks of these reads and switches. It never opens or
//! closes connections or relay sessions itself.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::super::EdgeState;
use super::super::auth::{Actor, ApiError};
use super::ChainView;
use crate::store::audit::Kind;

/// A listener of this node, as bound.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListenerView {
    /// `federation`, `internal`, `admin`, `public`, `cvi`, `dns`.
    pub role: String,
    /// `tls`, `udp+tcp`, `http`, ...
    pub transport: String,
    pub addr: String,
}

/// A drain switch after a change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DrainView {
    pub draining: bool,
    /// Relay sessions or gateway calls still up.
    pub live: usize,
}

/// A partner's live federation connections.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartnerConnections {
    pub partner: String,
    pub org_name: String,
    pub state: String,
    pub connections: usize,
}

/// The node's SIP connections.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionsView {
    /// Every live stream connection (federation, internal, CVI).
    pub total: usize,
    /// Federation connections by the partner whose edge the certificate names.
    pub partners: Vec<PartnerConnections>,
    /// Federation connections whose certificate names no partner's edge.
    pub unidentified: usize,
}

/// The node at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    pub fqdn: String,
    pub version: String,
    pub registry_version: i64,
    pub listeners: Vec<ListenerView>,
    pub connections: ConnectionsView,
    /// The media relay: `{enabled, draining, sessions, ports_in_use}`.
    #[schema(value_type = Object)]
    pub media: Value,
    /// The CVI gateway: `{enabled, draining, calls, max_calls}`.
    #[schema(value_type = Object)]
    pub cvi: Value,
}

fn connections(state: &EdgeState) -> ConnectionsView {
    let snap = state.registry.snapshot();
    let all = state.connections.list();
    let mut per: std::collections::BTreeMap<String, PartnerConnections> = Default::default();
    let mut unidentified = 0;
    for c in all.iter().filter(|c| c.tag.name == "federation") {
        let named = c
            .identity
            .as_ref()
            .map(|id| crate::federation::identity::partners_named(&snap, id))
            .unwrap_or_default();
        if named.is_empty() {
            unidentified += 1;
        }
        for p in named {
            per.entry(p.id.clone())
                .or_insert_with(|| PartnerConnections {
                    partner: p.id.clone(),
                    org_name: p.details.org_name.clone(),
                    state: p.state.as_str().to_string(),
                    connections: 0,
                })
                .connections += 1;
        }
    }
    ConnectionsView {
        total: all.len(),
        partners: per.into_values().collect(),
        unidentified,
    }
}

/// Listeners, connections per partner, media sessions and drain states
/// (operators and viewers).
pub fn node_status(state: &EdgeState, actor: &Actor) -> Result<NodeStatus, ApiError> {
    actor.require_node_view()?;
    let media = match &state.media {
        Some(r) => json!({
            "enabled": true, "draining": r.draining(), "sessions": r.len(),
            "ports_in_use": r.ports_in_use(),
        }),
        None => json!({"enabled": false}),
    };
    let cvi = match &state.cvi {
        Some(g) => json!({
            "enabled": true, "draining": g.draining(), "calls": g.live(),
            "max_calls": g.max_calls(),
        }),
        None => json!({"enabled": false}),
    };
    let mut listeners = state.ops.listeners.clone();
    if let Some(g) = &state.cvi {
        let (plain, tls) = g.listeners();
        let cvi = |transport: &str, a: std::net::SocketAddr| ListenerView {
            role: "cvi".into(),
            transport: transport.into(),
            addr: a.to_string(),
        };
        listeners.push(cvi("udp+tcp", plain));
        listeners.extend(tls.map(|a| cvi("tls", a)));
    }
    Ok(NodeStatus {
        fqdn: state.fqdn.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        registry_version: state.registry.snapshot().version,
        listeners,
        connections: connections(state),
        media,
        cvi,
    })
}

fn media_off() -> ApiError {
    ApiError::not_found("the media relay is not enabled ([media] enabled = false)")
}

/// The relay's live sessions with their counters (the `/media` document).
pub fn media_status(state: &EdgeState, actor: &Actor) -> Result<Value, ApiError> {
    actor.require_node_view()?;
    let r = state.media.as_ref().ok_or_else(media_off)?;
    Ok(json!({
        "draining": r.draining(),
        "ports_in_use": r.ports_in_use(),
        "partners": r.owners_use().into_iter().map(|(o, s, p)| json!({
            "partner": o, "sessions": s, "port_pairs": p,
        })).collect::<Vec<_>>(),
        "sessions": r.list(),
    }))
}

/// Stops (`on`) or resumes new relay sessions; calls up finish.
pub fn set_media_drain(state: &EdgeState, actor: &Actor, on: bool) -> Result<DrainView, ApiError> {
    actor.require_change()?;
    let r = state.media.as_ref().ok_or_else(media_off)?;
    r.set_draining(on);
    tracing::info!(account = %actor.name(), draining = on, "media relay drain switched");
    Ok(DrainView {
        draining: r.draining(),
        live: r.len(),
    })
}

/// The audit chain from `since` (RFC 3339; all when `None`). A partner
/// account reads only the entries about its own partner.
pub async fn audit(
    state: &EdgeState,
    actor: &Actor,
    since: Option<&str>,
) -> Result<Vec<ChainView>, ApiError> {
    let since = since.map(str::trim).filter(|s| !s.is_empty());
    let entries = if actor.role().sees_everything() {
        state.store.audit_entries(since).await?
    } else {
        let Some(pid) = actor.account.partner_id.as_deref() else {
            return Ok(Vec::new());
        };
        state
            .store
            .audit_of(Kind::Partner, pid)
            .await?
            .into_iter()
            .filter(|e| since.is_none_or(|s| e.at.as_str() >= s))
            .collect()
    };
    Ok(entries.iter().map(ChainView::from).collect())
}
