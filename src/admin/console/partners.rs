//! The console's partner pages: the list with state filters and expiry
//! warnings (IG certification and edge certificate), a partner's page
//! (details, edge certificate, history, lifecycle buttons, IM test, live
//! connections, verdict counts, contact accounts), and the
//! activation of a requested contact account.
//!
//! Owns these pages and their forms. Every change goes through the
//! store's audited methods with the acting account; it never applies a
//! lifecycle rule itself (`model::partner` does) and never shows one-time
//! credentials on any page but the one answering the activation.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::view::{
    CertView, CountRow, HistoryRow, ImTestRow, PartnerRow, VerbButton, partner_counts,
    verb_buttons, warnings,
};
use super::{Chrome, Who, csrf_ok, done, page, page_error, render};
use crate::admin::EdgeState;
use crate::admin::accounts::{self, AccountView};
use crate::admin::auth::ApiError;
use crate::admin::auth::CSRF_HEADER;
use crate::admin::service::{self, FederationTest, PartnerFilter, PartnerView};
use crate::model::account::Account;
use crate::model::partner::ALL_STATES;
use crate::store::{StoredPartnerCert, today};

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
    let all = match service::list_partners(&state, &who.actor, &PartnerFilter::default()).await {
        Ok(p) => p,
        Err(e) => return page_error(&who, e),
    };
    // Read after the role check above: stored edge certificates by partner.
    let certs: HashMap<String, StoredPartnerCert> = match state.store.partner_certs().await {
        Ok(cs) => cs
            .into_iter()
            .map(|c| (c.cert.partner_id.clone(), c))
            .collect(),
        Err(e) => return page_error(&who, e.into()),
    };
    let filter = q.state.unwrap_or_default();
    let filters = ALL_STATES
        .iter()
        .map(|s| {
            let n = all.iter().filter(|p| p.state == s.as_str()).count();
            (s.as_str().to_string(), n)
        })
        .collect();
    let today = today();
    let rows: Vec<PartnerRow> = all
        .iter()
        .filter(|p| filter.is_empty() || p.state == filter)
        .map(|p| PartnerRow::of(p, certs.get(&p.id), &today))
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
    p: PartnerView,
    fields: Vec<(&'static str, String)>,
    warnings: Vec<String>,
    /// The edge certificate submitted with the FPA, if any.
    cert: Option<CertView>,
    verbs: Vec<VerbButton>,
    history: Vec<HistoryRow>,
    im_tests: Vec<ImTestRow>,
    federation_tests: Vec<FederationTest>,
    conns: Vec<ConnRow>,
    counts: Vec<CountRow>,
    /// Verdicts per hour over the last 24 hours, summed over the nodes.
    per_hour: Vec<crate::store::VerdictCount>,
    accounts: Vec<Account>,
}

fn details(p: &PartnerView) -> Vec<(&'static str, String)> {
    let c = &p.contacts;
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "not recorded".into());
    vec![
        ("Organisation", p.org_name.clone()),
        ("Registration number", o(&p.org_reg_number)),
        ("Address", o(&p.org_address)),
        ("SIP domains", p.domains.join(", ")),
        ("Edge FQDN", o(&p.edge_fqdn)),
        ("Intended use", o(&p.usage_statement)),
        ("Technical contact", o(&c.tech_name)),
        ("Technical contact e-mail", o(&c.tech_email)),
        ("Technical contact SIP address", o(&c.tech_sip)),
        ("Single point of contact", o(&c.spoc_name)),
        ("Single point of contact e-mail", o(&c.spoc_email)),
        ("IG certification", o(&p.ig_level)),
        ("IG certification expires", o(&p.ig_expires)),
        ("CA pin", o(&p.ca_pin)),
        ("Requested", p.requested_at.clone()),
        ("Federated (first enabled)", o(&p.federated_at)),
        ("Suspended", o(&p.suspended_at)),
        ("Revoked", o(&p.revoked_at)),
    ]
}

/// The live federation connections whose certificate names this
/// partner's edge (as the node status counts them).
fn connections_of(state: &EdgeState, id: &str) -> Vec<ConnRow> {
    let snap = state.registry.snapshot();
    state
        .connections
        .list()
        .into_iter()
        .filter_map(|c| {
            let idn = c.identity.as_ref()?;
            crate::federation::identity::partners_named(&snap, idn)
                .iter()
                .any(|p| p.id == id)
                .then(|| ConnRow {
                    remote: c.remote.to_string(),
                    local: c.local.to_string(),
                    names: idn.names.join(", "),
                })
        })
        .collect()
}

/// `GET /console/partners/{id}`: another partner's id gives the same 404
/// as an unknown one.
pub(super) async fn show(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Path(id): Path<String>,
) -> Response {
    let a = &who.actor;
    let loaded = async {
        let h = service::history(&state, a, &id).await?;
        let tests = service::tests(&state, a, &id).await?;
        // A partner account sees its own partner's accounts: its contacts,
        // and its edge certificate (read once `history` allowed the page).
        let accounts = state.store.accounts_of_partner(&h.partner.id).await?;
        let cert = state.store.partner_cert(&h.partner.id).await?;
        Ok::<_, ApiError>((h, tests, accounts, cert))
    }
    .await;
    let (h, tests, accounts, cert) = match loaded {
        Ok(x) => x,
        Err(e) => return page_error(&who, e),
    };
    let p = h.partner;
    let name = p.domains.first().map_or(p.id.as_str(), String::as_str);
    let counts = partner_counts(&state.metrics.render(&[]), name);
    let since = crate::federation::verdicts::hour_of(
        time::OffsetDateTime::now_utc() - time::Duration::hours(23),
    );
    let per_hour = match state.store.verdict_history(name, &since).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a partner's verdicts per hour");
            Vec::new()
        }
    };
    let may_change = a.account.role.may_change();
    let today = today();
    let t = PartnerPage {
        c: Chrome::new(&who, p.org_name.clone()),
        may_change,
        fields: details(&p),
        warnings: warnings(&p, cert.as_ref(), &today),
        cert: cert.as_ref().map(|c| CertView::of(&p, c, &today)),
        verbs: if may_change {
            verb_buttons(&p)
        } else {
            Vec::new()
        },
        history: h.chain.iter().rev().map(HistoryRow::of).collect(),
        im_tests: tests.im_tests.iter().rev().map(ImTestRow::of).collect(),
        federation_tests: tests.federation_tests.into_iter().rev().collect(),
        conns: connections_of(&state, &p.id),
        counts,
        per_hour,
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
/// A refusal of the lifecycle rules (409) is noted on the partner page.
pub(super) async fn verb(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Path(id): Path<String>,
    Form(f): Form<VerbForm>,
) -> Response {
    let r = async {
        csrf_ok(&who, &f.csrf)?;
        let verb = service::parse_verb(&f.verb)?;
        let o = service::apply_verb(
            &state,
            &who.actor,
            &id,
            verb,
            Some(f.reason.as_str()),
            false,
        )
        .await?;
        let name = o.partner.domains.first().cloned().unwrap_or_default();
        Ok::<_, ApiError>(format!(
            "{name}: {} -> {} ({verb})",
            o.from, o.partner.state
        ))
    }
    .await;
    let back = format!("/console/partners/{id}");
    match r {
        Ok(note) => done(&back, &note),
        Err(e) if e.status == StatusCode::CONFLICT => {
            done(&back, &format!("Refused: {}", e.reason))
        }
        Err(e) => page_error(&who, e),
    }
}

#[derive(Deserialize)]
pub(super) struct TestForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/partners/{id}/test`: runs test-federation (DNS, TCP,
/// mutual TLS, OPTIONS, an IM to the technical contact) and notes the result.
pub(super) async fn test_federation(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Path(id): Path<String>,
    Form(f): Form<TestForm>,
) -> Response {
    let r = async {
        csrf_ok(&who, &f.csrf)?;
        service::test_federation(&state, &who.actor, &id, None).await
    }
    .await;
    let back = format!("/console/partners/{id}");
    match r {
        Ok(t) => {
            let failed = t.steps.iter().find(|s| !s.ok);
            let note = match failed {
                None if t.passed => format!("test-federation to {} passed", t.domain),
                Some(s) => format!(
                    "test-federation to {} failed at {}: {}",
                    t.domain, s.name, s.detail
                ),
                None => format!("test-federation to {} did not finish", t.domain),
            };
            done(&back, &note)
        }
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => done(&back, &e.reason),
        Err(e) => page_error(&who, e),
    }
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct CredentialsPage {
    c: Chrome,
    account: AccountView,
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

/// `POST /console/accounts/activate`: activates a requested account (the
/// accounts API's own operation, with the form's CSRF token) and shows its
/// one-time password and API token, once, on this answer only.
pub(super) async fn activate(
    State(state): State<Arc<EdgeState>>,
    who: Who,
    Form(f): Form<ActivateForm>,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&f.csrf) {
        headers.insert(CSRF_HEADER, v);
    }
    let r = accounts::activate(
        State(state.clone()),
        who.actor.clone(),
        headers,
        Path(f.name.clone()),
    )
    .await;
    match r {
        Ok(Json(cred)) => {
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
