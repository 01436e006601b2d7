//! The console's node status page: this edge's identity, its connections
//! grouped by partner, the media relay's and the CVI gateway's sessions,
//! and their drain switches (each asks for confirmation).
//!
//! Owns that page and the drain form. It never closes connections or
//! sessions; draining only stops new ones.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::{Chrome, Who, csrf_ok, done, page, page_error};
use crate::admin::EdgeState;
use crate::admin::auth::ApiError;
use crate::admin::service::{self, NodeStatus};

/// A drain switch as shown.
struct Switch {
    what: &'static str,
    label: &'static str,
    available: bool,
    draining: bool,
    live: u64,
}

impl Switch {
    fn of(what: &'static str, label: &'static str, v: &serde_json::Value, live: &str) -> Switch {
        Switch {
            what,
            label,
            available: v["enabled"].as_bool().unwrap_or(false),
            draining: v["draining"].as_bool().unwrap_or(false),
            live: v[live].as_u64().unwrap_or(0),
        }
    }
}

#[derive(Template)]
#[template(path = "node.html")]
struct NodePage {
    c: Chrome,
    may_change: bool,
    admin_tls: bool,
    n: NodeStatus,
    switches: Vec<Switch>,
    /// Media relay sessions per partner: (partner, sessions, port pairs).
    media: Vec<(String, u64, u64)>,
}

/// `GET /console/node`.
pub(super) async fn status(State(state): State<Arc<EdgeState>>, who: Who) -> Response {
    let n = match service::node_status(&state, &who.actor) {
        Ok(n) => n,
        Err(e) => return page_error(&who, e),
    };
    let switches = vec![
        Switch::of("media", "Media relay", &n.media, "sessions"),
        Switch::of("cvi", "CVI gateway", &n.cvi, "calls"),
    ];
    // The relay's sessions per partner (none when the relay is off).
    let media = service::media_status(&state, &who.actor)
        .ok()
        .and_then(|m| m["partners"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p["partner"].as_str().unwrap_or("").to_string(),
                p["sessions"].as_u64().unwrap_or(0),
                p["port_pairs"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let t = NodePage {
        c: Chrome::new(&who, "Node status"),
        media,
        may_change: who.actor.account.role.may_change(),
        admin_tls: state.admin_tls,
        n,
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
            "media" => service::set_media_drain(&state, &who.actor, on)?,
            "cvi" => service::set_cvi_drain(&state, &who.actor, on)?,
            other => return Err(ApiError::bad_request(format!("no drain switch {other:?}"))),
        };
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
