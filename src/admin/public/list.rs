//! The published list of federated organisations (the federation guide:
//! organisation name, date federated, intended use), as HTML and JSON.
//!
//! Owns `/federated` and `/federated.json` and the list's cache: read
//! from the store at most once per [`CACHE_FOR`] while the registry's
//! version stays the same (a change shows as soon as this node's registry
//! has seen it), so that anonymous readers cannot make the edge read the
//! partners table on every request. Lists enabled partners only, sorted by
//! name, and never shows anything else about them (no domains, contacts or
//! addresses).

use std::sync::Arc;
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;

use super::super::state::EdgeState;
use super::page;
use crate::model::partner::PartnerState;

/// One published organisation.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub organisation: String,
    /// The date the partner was first enabled (`YYYY-MM-DD`).
    pub date_federated: String,
    pub intended_use: String,
}

/// How long the list is served from memory while the registry's version
/// stays the same.
pub const CACHE_FOR: Duration = Duration::from_secs(5);

/// The list as last read, and the registry version it was read at.
#[derive(Debug)]
struct Cached {
    version: i64,
    at: Instant,
    rows: Arc<Vec<Published>>,
}

impl Cached {
    fn fresh(&self, version: i64, now: Instant) -> bool {
        self.version == version && now.duration_since(self.at) < CACHE_FOR
    }
}

/// The published list's cache, one per public router.
#[derive(Debug, Default)]
pub struct ListCache {
    /// Held while the store is read, so that a burst of readers makes one read.
    last: tokio::sync::Mutex<Option<Cached>>,
}

impl ListCache {
    /// The list: from memory while fresh for the registry's `version`,
    /// else from `state`'s store.
    async fn get(&self, state: &EdgeState, version: i64) -> Result<Arc<Vec<Published>>, Response> {
        let mut last = self.last.lock().await;
        if let Some(c) = last.as_ref()
            && c.fresh(version, Instant::now())
        {
            return Ok(c.rows.clone());
        }
        let rows = Arc::new(published(state).await?);
        *last = Some(Cached {
            version,
            at: Instant::now(),
            rows: rows.clone(),
        });
        Ok(rows)
    }
}

/// The list through `cache`, at the registry's current version.
async fn cached(state: &EdgeState, cache: &ListCache) -> Result<Arc<Vec<Published>>, Response> {
    let version = state.registry.snapshot().version;
    cache.get(state, version).await
}

/// The enabled partners, by name (case-insensitive), from the store.
async fn published(state: &EdgeState) -> Result<Vec<Published>, Response> {
    let partners = state.store.partners().await.map_err(|e| {
        tracing::warn!(error = %e, "published list: store failed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the list cannot be read just now",
        )
            .into_response()
    })?;
    let mut rows: Vec<Published> = partners
        .into_iter()
        .filter(|p| p.state == PartnerState::Enabled)
        .map(|p| Published {
            organisation: p.details.org_name.clone(),
            date_federated: p
                .federated_at
                .as_deref()
                .and_then(|d| d.get(..10))
                .unwrap_or_default()
                .to_string(),
            intended_use: p.details.usage_statement.clone().unwrap_or_default(),
        })
        .collect();
    rows.sort_by(|a, b| {
        a.organisation
            .to_lowercase()
            .cmp(&b.organisation.to_lowercase())
            .then_with(|| a.organisation.cmp(&b.organisation))
    });
    Ok(rows)
}

#[derive(Template)]
#[template(path = "public/federated.html")]
struct ListPage<'a> {
    fqdn: &'a str,
    rows: &'a [Published],
}

/// `GET /federated`: the list as a page.
pub(super) async fn federated_html(
    State(state): State<Arc<EdgeState>>,
    Extension(cache): Extension<Arc<ListCache>>,
) -> Response {
    match cached(&state, &cache).await {
        Ok(rows) => page(
            StatusCode::OK,
            &ListPage {
                fqdn: &state.fqdn,
                rows: &rows,
            },
        ),
        Err(r) => r,
    }
}

/// `GET /federated.json`: the list as JSON.
pub(super) async fn federated_json(
    State(state): State<Arc<EdgeState>>,
    Extension(cache): Extension<Arc<ListCache>>,
) -> Response {
    match cached(&state, &cache).await {
        Ok(rows) => Json(json!({
            "service": state.fqdn,
            "count": rows.len(),
            "organisations": *rows,
        }))
        .into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_fresh_for_its_version_and_a_few_seconds() {
        let at = Instant::now();
        let c = Cached {
            version: 7,
            at,
            rows: Arc::new(Vec::new()),
        };
        assert!(c.fresh(7, at));
        assert!(c.fresh(7, at + CACHE_FOR - Duration::from_millis(1)));
        assert!(!c.fresh(8, at), "the registry moved");
        assert!(!c.fresh(7, at + CACHE_FOR), "too old");
    }
}
