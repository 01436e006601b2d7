//! The operations the HTTP API (`admin::api`) and the web console share:
//! partners (list, show, add from an FPA, update, lifecycle verbs, history,
//! test-federation and IM test results; a partner account sees its own
//! without the operators' internal fields), CVI organisers and meetings,
//! media and CVI status and drain switches, and the node's status.
//!
//! Owns who may do what to which object: every operation takes the
//! [`Actor`], checks its role (`require_change`, `require_node_view`,
//! `require_partner`) before it reads or writes anything, and answers with
//! a typed value or an [`ApiError`] whose reason the caller shows as is.
//! It never parses HTTP (the routes and pages do) and never writes SQL
//! (`store` does); a partner change is enforced (registry reloaded) before
//! it returns.

mod cvi;
mod drain;
mod node;
mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use tracing::warn;

use super::EdgeState;
use super::auth::{Actor, ApiError};
use crate::federation::fpa;
use crate::federation::probe::{self, Me};
use crate::model::account::Role;
use crate::model::partner::{Partner, PartnerState, Verb};
use crate::store::Change;
use crate::store::audit::Kind;

pub use self::cvi::{
    EnrolOutcome, EnrolRequest, MeetingRequest, MeetingView, OrganiserView, RowErrorView,
    create_meeting, cvi_status, enrol, meeting, organisers, set_cvi_drain, withdraw,
};
pub use self::drain::{DrainProgress, NodeDrain, node_drain, start_node_drain};
pub use self::node::{
    ConnectionsView, DrainView, ListenerView, NodeStatus, PartnerConnections, audit, media_status,
    node_status, set_media_drain,
};
pub use self::views::{
    ChainView, ContactsView, FederationTest, ImTestView, PartnerHistory, PartnerTests, PartnerView,
    StepView, TrailView,
};

/// How many test-federation runs are kept per partner (in memory).
const TESTS_KEPT: usize = 10;

/// What the shared operations need from the configuration and the
/// listeners; `server` fills it at start-up (the defaults leave
/// test-federation unavailable and CVI enrolment open to no domain).
#[derive(Debug, Default)]
pub struct Ops {
    /// The federation client TLS configuration test-federation connects with.
    pub probe_tls: Option<Arc<rustls::ClientConfig>>,
    /// Who test-federation says we are.
    pub me: Option<Me>,
    /// How long each test-federation step may take.
    pub probe_timeout: Duration,
    /// `[cvi] organiser_domains`.
    pub organiser_domains: Vec<String>,
    /// `[cvi] meeting_lifetime`: a meeting without an expiry ends this long after now.
    pub meeting_lifetime: Duration,
    /// The node's listeners, as bound.
    pub listeners: Vec<ListenerView>,
    /// The last test-federation runs per partner id, newest last.
    pub tests: Mutex<HashMap<String, Vec<FederationTest>>>,
}

/// Which partners a list shows.
#[derive(Debug, Clone, Default)]
pub struct PartnerFilter {
    /// Only partners in this state (`enabled`, `suspended`, ...).
    pub state: Option<String>,
}

/// A new partner from a Federation Partnership Agreement.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct AddPartner {
    /// The FPA document (fpa-schemas/fpa.schema.json).
    #[schema(value_type = Object)]
    pub fpa: serde_json::Value,
    /// Import in this state instead of `requested` (needs `reason`).
    pub state: Option<String>,
    pub reason: Option<String>,
    /// Connect to HOST:PORT instead of resolving the edge FQDN (labs).
    pub address: Option<String>,
    /// CA pins, `sha256:HEX` (comma-separated).
    pub ca_pin: Option<String>,
    pub comment: Option<String>,
}

/// A change of a partner's details (not its state).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct PartnerUpdate {
    /// Fields to set (`null` clears), named as in `fedge partner update --set`.
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub add_domains: Vec<String>,
    #[serde(default)]
    pub remove_domains: Vec<String>,
    pub reason: Option<String>,
}

/// A lifecycle verb's outcome.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct VerbOutcome {
    pub partner: PartnerView,
    /// The state the partner left.
    pub from: String,
    /// The registry version now enforced; `null` when the reload failed
    /// (the change is committed and enforced at the next poll).
    pub registry_version: Option<i64>,
}

/// A change with the partner after it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PartnerChanged {
    pub partner: PartnerView,
    pub registry_version: Option<i64>,
}

fn unprocessable(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason)
}

/// Reloads the registry so that a change is enforced before the answer.
async fn enforce(state: &EdgeState) -> Option<i64> {
    match state.registry.reload(&state.store).await {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(error = %e, "registry reload after an API change failed; the next poll applies it");
            None
        }
    }
}

/// The partner with this id, if the actor may see it (404 otherwise,
/// the same answer as for an id that does not exist).
async fn find(state: &EdgeState, actor: &Actor, id: &str) -> Result<Partner, ApiError> {
    actor.require_partner(id)?;
    state
        .store
        .partners()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found("no such partner"))
}

/// The partners the actor may see (a partner account: its own), in the
/// order they were added, optionally in one state.
pub async fn list_partners(
    state: &EdgeState,
    actor: &Actor,
    filter: &PartnerFilter,
) -> Result<Vec<PartnerView>, ApiError> {
    let wanted: Option<PartnerState> = filter
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<PartnerState>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(state
        .store
        .partners()
        .await?
        .iter()
        .filter(|p| actor.account.may_see_partner(&p.id))
        .filter(|p| wanted.is_none_or(|s| p.state == s))
        .map(|p| view_for(actor, p))
        .collect())
}

/// One partner by id.
pub async fn partner(state: &EdgeState, actor: &Actor, id: &str) -> Result<PartnerView, ApiError> {
    Ok(view_for(actor, &find(state, actor, id).await?))
}

/// A partner as `actor` may see it: a partner account without the
/// operators' internal fields ([`PartnerView::without_internals`]).
pub fn view_for(actor: &Actor, p: &Partner) -> PartnerView {
    let v = PartnerView::from(p);
    if actor.role() == Role::Partner {
        v.without_internals()
    } else {
        v
    }
}

/// Adds a partner from an FPA, validated as `fedge partner add --from-fpa`
/// validates it (every violation named by its JSON path).
pub async fn add_partner(
    state: &EdgeState,
    actor: &Actor,
    req: AddPartner,
) -> Result<PartnerChanged, ApiError> {
    actor.require_change()?;
    let target: PartnerState = match req.state.as_deref() {
        Some(s) => s
            .parse()
            .map_err(|e: crate::model::partner::UnknownState| {
                ApiError::bad_request(e.to_string())
            })?,
        None => PartnerState::Requested,
    };
    let text = serde_json::to_string(&req.fpa)
        .map_err(|e| ApiError::bad_request(format!("the FPA is not JSON: {e}")))?;
    let mut details = fpa::parse(&text).map_err(|violations| {
        let n = violations.len();
        let all: Vec<String> = violations.iter().map(|v| format!("fpa{v}")).collect();
        unprocessable(format!(
            "not a valid FPA ({n} violation{}); nothing was written: {}",
            if n == 1 { "" } else { "s" },
            all.join("; ")
        ))
    })?;
    if req.address.is_some() {
        details.address = req.address.clone();
    }
    if let Some(pin) = &req.ca_pin {
        details.ca_pin = Some(pin.clone());
    }
    if let Some(c) = &req.comment {
        details.comment = Some(match details.comment.take() {
            Some(prev) => format!("{c}\n{prev}"),
            None => c.clone(),
        });
    }
    let p = state
        .store
        .add_partner(details, target, actor.name(), req.reason.as_deref())
        .await?;
    Ok(PartnerChanged {
        partner: PartnerView::from(&p),
        registry_version: enforce(state).await,
    })
}

/// Changes a partner's details (audited with the actor).
pub async fn update_partner(
    state: &EdgeState,
    actor: &Actor,
    id: &str,
    req: PartnerUpdate,
) -> Result<PartnerChanged, ApiError> {
    actor.require_change()?;
    let p = find(state, actor, id).await?;
    let mut changes: Vec<Change> = req
        .set
        .into_iter()
        .map(|(f, v)| Change::Set(f.trim().to_string(), v))
        .collect();
    changes.extend(req.add_domains.into_iter().map(Change::AddDomain));
    changes.extend(req.remove_domains.into_iter().map(Change::RemoveDomain));
    let after = state
        .store
        .update_partner(p.name(), &changes, actor.name(), req.reason.as_deref())
        .await?;
    Ok(PartnerChanged {
        partner: PartnerView::from(&after),
        registry_version: enforce(state).await,
    })
}

/// Parses a verb as the CLI names it (`agreement-sent`, ..., `revoke`).
pub fn parse_verb(verb: &str) -> Result<Verb, ApiError> {
    verb.parse::<Verb>().map_err(|e| {
        ApiError::not_found(format!(
            "{e}; verbs are agreement-sent, agreement-signed, approve, enable, suspend, reinstate, revoke"
        ))
    })
}

/// Applies a lifecycle verb with a reason; the change is enforced (the
/// registry reloaded, a partner that left `enabled` refused) before this
/// returns.
pub async fn apply_verb(
    state: &EdgeState,
    actor: &Actor,
    id: &str,
    verb: Verb,
    reason: Option<&str>,
    skip_im_test: bool,
) -> Result<VerbOutcome, ApiError> {
    actor.require_change()?;
    let p = find(state, actor, id).await?;
    if p.state == PartnerState::Revoked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("partner {} is revoked; revocation is final", p.name()),
        ));
    }
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    let (after, from) = state
        .store
        .apply_verb(p.name(), verb, actor.name(), reason, skip_im_test)
        .await?;
    Ok(VerbOutcome {
        partner: PartnerView::from(&after),
        from: from.as_str().to_string(),
        registry_version: enforce(state).await,
    })
}

/// A partner's history: the audit chain's entries about it (with the
/// acting account) and the older per-partner trail.
pub async fn history(
    state: &EdgeState,
    actor: &Actor,
    id: &str,
) -> Result<PartnerHistory, ApiError> {
    let p = find(state, actor, id).await?;
    let chain = state.store.audit_of(Kind::Partner, &p.id).await?;
    let trail = state.store.trail(&p.id).await?;
    let mut h = PartnerHistory {
        partner: view_for(actor, &p),
        chain: chain.iter().map(ChainView::from).collect(),
        trail: trail.iter().map(TrailView::from).collect(),
    };
    if actor.role() == Role::Partner {
        // The internal fields' old and new values are not the partner's
        // to read either (the chain's hashes then no longer verify here).
        for c in &mut h.chain {
            c.detail = views::detail_without_internals(&c.detail);
        }
        for t in &mut h.trail {
            t.detail = t.detail.as_deref().map(views::detail_without_internals);
        }
    }
    Ok(h)
}

/// Runs test-federation against the partner (DNS, TCP, mutual TLS,
/// OPTIONS, an IM to its technical contact) and keeps the result.
/// `domain`: which of its domains (default: the first).
pub async fn test_federation(
    state: &EdgeState,
    actor: &Actor,
    id: &str,
    domain: Option<&str>,
) -> Result<FederationTest, ApiError> {
    actor.require_change()?;
    let p = find(state, actor, id).await?;
    let (Some(tls), Some(me)) = (state.ops.probe_tls.clone(), state.ops.me.clone()) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "test-federation is not available on this node (no federation client TLS configuration)",
        ));
    };
    let domain = match domain.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) if p.has_domain(d) => d.to_ascii_lowercase(),
        Some(d) => {
            return Err(unprocessable(format!(
                "{d} is not one of partner {}'s domains",
                p.name()
            )));
        }
        None => p.name().to_string(),
    };
    let timeout = if state.ops.probe_timeout.is_zero() {
        Duration::from_secs(10)
    } else {
        state.ops.probe_timeout
    };
    let steps = probe::run(&p, &domain, &state.proxy.router.dns, tls, &me, timeout).await;
    let passed = !steps.is_empty()
        && steps.iter().all(|s| s.ok)
        && steps.last().is_some_and(|s| s.name == "message");
    let run = FederationTest {
        partner: p.id.clone(),
        domain,
        at: crate::store::now_rfc3339(),
        actor: actor.name().to_string(),
        from: me.address.clone(),
        passed,
        steps: steps.iter().map(StepView::from).collect(),
    };
    if let Ok(mut kept) = state.ops.tests.lock() {
        let v = kept.entry(p.id.clone()).or_default();
        v.push(run.clone());
        let extra = v.len().saturating_sub(TESTS_KEPT);
        v.drain(..extra);
    }
    Ok(run)
}

/// The partner's test results: the onboarding IM test (when it passed and
/// every IM test entry of its trail) and this node's last test-federation
/// runs, newest last.
pub async fn tests(state: &EdgeState, actor: &Actor, id: &str) -> Result<PartnerTests, ApiError> {
    let p = find(state, actor, id).await?;
    let trail = state.store.trail(&p.id).await?;
    let federation = state
        .ops
        .tests
        .lock()
        .map(|t| t.get(&p.id).cloned().unwrap_or_default())
        .unwrap_or_default();
    Ok(PartnerTests {
        partner: p.id.clone(),
        im_test: ImTestView {
            passed_at: p.im_test_at.clone(),
            from: p.im_test_from.clone(),
        },
        im_tests: trail
            .iter()
            .filter(|e| e.action == "im-test")
            .map(TrailView::from)
            .collect(),
        federation_tests: federation,
    })
}
