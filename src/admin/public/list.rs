//! The published list of federated organisations (the federation guide:
//! organisation name, date federated, intended use), as HTML and JSON.
//!
//! Owns `/federated` and `/federated.json`. Lists enabled partners only,
//! sorted by name, and never shows anything else about them (no domains,
//! contacts or addresses).

use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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

/// The enabled partners, by name (case-insensitive).
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
pub(super) async fn federated_html(State(state): State<Arc<EdgeState>>) -> Response {
    match published(&state).await {
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
pub(super) async fn federated_json(State(state): State<Arc<EdgeState>>) -> Response {
    match published(&state).await {
        Ok(rows) => Json(json!({
            "service": state.fqdn,
            "count": rows.len(),
            "organisations": rows,
        }))
        .into_response(),
        Err(r) => r,
    }
}
