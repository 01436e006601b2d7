//! The console's node status page: this edge's identity, its connections
//! grouped by partner, the media relay's and the CVI gateway's sessions,
//! and their drain switches (each asks for confirmation).
//!
//! Owns that page and the drain form. It never closes connections or
//! sessions; draining only stops new ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::{Chrome, Who, csrf_ok, done, page, page_error};
use crate::admin::EdgeState;
use crate::admin::auth::ApiError;

/// A drain switch as shown.
struct Switch {
    what: &'static str,
    label: &'static str,
    available: bool,
    draining: bool,
    live: usize,
}

#[derive(Template)]
#[template(path = "node.html")]
struct NodePage {
    c: Chrome,
    may_change: bool,
    fqdn: String,
    version: &'static str,
    admin_tls: bool,
    registry_version: i64,
    connections: usize,
    /// Peer certificate names (or "no certificate") and their connection count.
    by_peer: Vec<(String, usize)>,
    /// Media relay sessions per partner: (partner, sessions, port pairs).
    media: Vec<(String, usize, usize)>,
    switches: Vec<Switch>,
}

/// `GET /console/node`.
pub(super) async fn status(State(state): State<Arc<EdgeState>>, who: Who) -> Response {
    if let Err(e) = who.actor.require_node_view() {
        return page_error(&who, e);
    }
    let mut by_peer: BTreeMap<String, usize> = BTreeMap::new();
    for c in state.connections.list() {
        let key = match &c.identity {
            Some(i) => i.names.join(", "),
            None => format!("{:?} without a certificate", c.tag),
        };
        *by_peer.entry(key).or_insert(0) += 1;
    }
    let media = state
        .media
        .as_ref()
        .map(|r| r.owners_use())
        .unwrap_or_default();
    let switches = vec![
        Switch {
            what: "media",
            label: "Media relay",
            available: state.media.is_some(),
            draining: state.media.as_ref().is_some_and(|r| r.draining()),
            live: state.media.as_ref().map_or(0, |r| r.len()),
        },
        Switch {
            what: "cvi",
            label: "CVI gateway",
            available: state.cvi.is_some(),
            draining: state.cvi.as_ref().is_some_and(|g| g.draining()),
            live: state.cvi.as_ref().map_or(0, |g| g.live()),
        },
    ];
    let t = NodePage {
        c: Chrome::new(&who, "Node status"),
        may_change: who.actor.account.role.may_change(),
        fqdn: state.fqdn.clone(),
        version: env!("CARGO_PKG_VERSION"),
        admin_tls: state.admin_tls,
        registry_version: state.registry.snapshot().version,
        connections: state.connections.len(),
        by_peer: by_peer.into_iter().collect(),
        media,
        switches,
    };
    page(&who, &t)
}

#[derive(Deserialize)]
pub(super) struct DrainForm {
    #[serde(default)]
    csrf: String,
    what: String,
    on: String,
    /// The confirmation checkbox ("yes" when ticked).
    confirm: Option<String>,
}

/// `POST /console/node/drain`: drains (or resumes) the media relay or the
/// CVI gateway, after the confirmation box was ticked.
pub(super) async fn drain(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Form(f): Form<DrainForm>,
) -> Response {
    let r = (|| {
        csrf_ok(&who, &f.csrf)?;
        who.actor.require_change()?;
        let on = f.on == "true";
        if f.confirm.as_deref() != Some("yes") {
            return Ok("Nothing changed: tick the confirmation box to switch.".to_string());
        }
        match f.what.as_str() {
            "media" => {
                let r = state
                    .media
                    .as_ref()
                    .ok_or_else(|| ApiError::not_found("the media relay is not enabled"))?;
                r.set_draining(on);
            }
            "cvi" => {
                let g = state
                    .cvi
                    .as_ref()
                    .ok_or_else(|| ApiError::not_found("the CVI gateway is not enabled"))?;
                g.set_draining(on);
            }
            other => return Err(ApiError::bad_request(format!("no drain switch {other:?}"))),
        }
        tracing::info!(account = %who.actor.name(), what = %f.what, on, "drain switched from the console");
        Ok(format!(
            "{}: {}",
            f.what,
            if on {
                "draining (no new sessions)"
            } else {
                "taking new sessions"
            }
        ))
    })();
    match r {
        Ok(note) => done("/console/node", &note),
        Err(e) => page_error(&who, e),
    }
}
