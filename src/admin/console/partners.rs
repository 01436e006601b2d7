//! The console's partner pages: the list with state filters and expiry
//! warnings, a partner's page (details, history, lifecycle buttons, IM
//! test, live connections, verdict counts, contact accounts), and the
//! activation of a requested contact account.
//!
//! Owns these pages and their forms. Every change goes through the
//! store's audited methods with the acting account; it never applies a
//! lifecycle rule itself (`model::partner` does) and never shows one-time
//! credentials on any page but the one answering the activation.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::view::{
    CountRow, HistoryRow, PartnerRow, VerbButton, partner_counts, verb_buttons, warnings,
};
use super::{Chrome, Who, csrf_ok, done, page, page_error, render};
use crate::admin::EdgeState;
use crate::admin::auth::ApiError;
use crate::model::account::{Account, AccountState};
use crate::model::partner::{ALL_STATES, Partner, Verb};
use crate::store::audit::Kind;
use crate::store::today;

#[derive(Template)]
#[template(path = "partners.html")]
struct ListPage {
    c: Chrome,
    filter: String,
    filters: Vec<(String, usize)>,
    rows: Vec<PartnerRow>,
    total: usize,
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    state: Option<String>,
}

/// `GET /console/partners[?state=...]`.
pub(super) async fn list(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(e) = who.actor.require_node_view() {
        return page_error(&who, e);
    }
    let all = match state.store.partners().await {
        Ok(p) => p,
        Err(e) => return page_error(&who, e.into()),
    };
    let filter = q.state.unwrap_or_default();
    let filters = ALL_STATES
        .iter()
        .map(|s| {
            let n = all.iter().filter(|p| p.state == *s).count();
            (s.as_str().to_string(), n)
        })
        .collect();
    let today = today();
    let rows: Vec<PartnerRow> = all
        .iter()
        .filter(|p| filter.is_empty() || p.state.as_str() == filter)
        .map(|p| PartnerRow::of(p, &today))
        .collect();
    let t = ListPage {
        c: Chrome::new(&who, "Partners"),
        filter,
        filters,
        total: all.len(),
        rows,
    };
    page(&who, &t)
}

/// A connection of the partner's edge to this one.
struct ConnRow {
    remote: String,
    local: String,
    names: String,
}

#[derive(Template)]
#[template(path = "partner.html")]
struct PartnerPage {
    c: Chrome,
    may_change: bool,
    p: Partner,
    fields: Vec<(&'static str, String)>,
    warnings: Vec<String>,
    verbs: Vec<VerbButton>,
    history: Vec<HistoryRow>,
    conns: Vec<ConnRow>,
    counts: Vec<CountRow>,
    accounts: Vec<Account>,
}

/// Finds a partner by id, as the actor may see it (another partner's
/// id gives the same 404 as an unknown one).
async fn partner_for(state: &EdgeState, who: &Who, id: &str) -> Result<Partner, ApiError> {
    who.actor.require_partner(id)?;
    state
        .store
        .partners()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found("no such partner"))
}

fn details(p: &Partner) -> Vec<(&'static str, String)> {
    let d = &p.details;
    let c = &d.contacts;
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "not recorded".into());
    vec![
        ("Organisation", d.org_name.clone()),
        ("Registration number", o(&d.org_reg_number)),
        ("SIP domains", d.domains.join(", ")),
        ("Edge FQDN", o(&d.edge_fqdn)),
        ("Intended use", o(&d.usage_statement)),
        ("Technical contact", o(&c.tech_name)),
        ("Technical contact e-mail", o(&c.tech_email)),
        ("Technical contact SIP address", o(&c.tech_sip)),
        ("Single point of contact", o(&c.spoc_name)),
        ("IG certification", o(&d.ig_level)),
        ("IG certification expires", o(&d.ig_expires)),
        ("CA pin", o(&d.ca_pin)),
        ("Requested", p.requested_at.clone()),
        ("Federated (first enabled)", o(&p.federated_at)),
        ("Suspended", o(&p.suspended_at)),
    ]
}

/// `GET /console/partners/{id}`.
pub(super) async fn show(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Path(id): Path<String>,
) -> Response {
    let p = match partner_for(&state, &who, &id).await {
        Ok(p) => p,
        Err(e) => return page_error(&who, e),
    };
    let history = match state.store.audit_of(Kind::Partner, &p.id).await {
        Ok(h) => h.iter().rev().map(HistoryRow::of).collect(),
        Err(e) => return page_error(&who, e.into()),
    };
    // A partner account sees its own partner's accounts too: its contacts.
    let accounts = match state.store.accounts_of_partner(&p.id).await {
        Ok(a) => a,
        Err(e) => return page_error(&who, e.into()),
    };
    let conns = match &p.details.edge_fqdn {
        Some(fqdn) => state
            .connections
            .list()
            .into_iter()
            .filter_map(|c| {
                let idn = c.identity.as_ref()?;
                idn.matches(fqdn).then(|| ConnRow {
                    remote: c.remote.to_string(),
                    local: c.local.to_string(),
                    names: idn.names.join(", "),
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let counts = partner_counts(&state.metrics.render(&[]), p.name());
    let may_change = who.actor.account.role.may_change();
    let t = PartnerPage {
        c: Chrome::new(&who, p.details.org_name.clone()),
        may_change,
        fields: details(&p),
        warnings: warnings(&p, &today()),
        verbs: if may_change {
            verb_buttons(&p)
        } else {
            Vec::new()
        },
        history,
        conns,
        counts,
        accounts,
        p,
    };
    page(&who, &t)
}

#[derive(Deserialize)]
pub(super) struct VerbForm {
    #[serde(default)]
    csrf: String,
    verb: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/partners/{id}/verb`: a lifecycle change with its reason.
pub(super) async fn verb(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Path(id): Path<String>,
    Form(f): Form<VerbForm>,
) -> Response {
    let r = async {
        csrf_ok(&who, &f.csrf)?;
        who.actor.require_change()?;
        let p = partner_for(&state, &who, &id).await?;
        let verb: Verb = f
            .verb
            .parse()
            .map_err(|e: crate::model::partner::UnknownVerb| {
                ApiError::bad_request(e.to_string())
            })?;
        let reason = Some(f.reason.trim()).filter(|r| !r.is_empty());
        let (after, from) = state
            .store
            .apply_verb(p.name(), verb, who.actor.name(), reason, false)
            .await?;
        if let Err(e) = state.registry.reload(&state.store).await {
            tracing::warn!(error = %e, "registry reload after a console change failed");
        }
        Ok::<_, ApiError>(format!(
            "{}: {} -> {} ({})",
            after.name(),
            from,
            after.state,
            verb
        ))
    }
    .await;
    match r {
        Ok(note) => done(&format!("/console/partners/{id}"), &note),
        Err(e) if e.status == StatusCode::CONFLICT => done(
            &format!("/console/partners/{id}"),
            &format!("Refused: {}", e.reason),
        ),
        Err(e) => page_error(&who, e),
    }
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct CredentialsPage {
    c: Chrome,
    account: Account,
    password: String,
    token: String,
    back: String,
}

#[derive(Deserialize)]
pub(super) struct ActivateForm {
    #[serde(default)]
    csrf: String,
    name: String,
}

/// `POST /console/accounts/activate`: activates a requested account and
/// shows its one-time password and API token, once, on this answer only.
pub(super) async fn activate(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Form(f): Form<ActivateForm>,
) -> Response {
    let r = async {
        csrf_ok(&who, &f.csrf)?;
        who.actor.require_change()?;
        let a = state
            .store
            .account(&f.name)
            .await?
            .ok_or_else(|| ApiError::not_found("no such account"))?;
        if a.state != AccountState::Requested {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("account {} is {}, not requested", a.name, a.state),
            ));
        }
        Ok(state
            .store
            .issue_credentials(&a.name, who.actor.name(), "activate")
            .await?)
    }
    .await;
    match r {
        Ok(cred) => {
            let back = cred
                .account
                .partner_id
                .as_ref()
                .map(|p| format!("/console/partners/{p}"))
                .unwrap_or_else(|| "/console/".into());
            let t = CredentialsPage {
                c: Chrome::new(&who, "Account activated"),
                password: cred.password.clone().unwrap_or_default(),
                token: cred.token.clone(),
                account: cred.account,
                back,
            };
            render(&t, StatusCode::OK, who.flash.is_some())
        }
        Err(e) => page_error(&who, e),
    }
}
