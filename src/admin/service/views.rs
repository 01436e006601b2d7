//! The records the shared operations answer with, as the API serialises
//! them and the OpenAPI document describes them: a partner, its history,
//! its test results.
//!
//! Owns their JSON shape (stable: the console and the CLI's remote mode
//! read it). It never reads the store or checks a role.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::federation::probe::Step;
use crate::model::partner::{AuditEntry, Contacts, Partner};
use crate::store::audit::ChainEntry;

/// A partner's contacts, as in its FPA.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ContactsView {
    pub spoc_name: Option<String>,
    pub spoc_email: Option<String>,
    pub spoc_phone: Option<String>,
    pub tech_name: Option<String>,
    pub tech_email: Option<String>,
    pub tech_phone: Option<String>,
    pub tech_sip: Option<String>,
}

impl From<&Contacts> for ContactsView {
    fn from(c: &Contacts) -> Self {
        ContactsView {
            spoc_name: c.spoc_name.clone(),
            spoc_email: c.spoc_email.clone(),
            spoc_phone: c.spoc_phone.clone(),
            tech_name: c.tech_name.clone(),
            tech_email: c.tech_email.clone(),
            tech_phone: c.tech_phone.clone(),
            tech_sip: c.tech_sip.clone(),
        }
    }
}

/// A partner: its FPA details, its lifecycle state and times, and the
/// verbs that apply to it now. The same fields as `fedge partner show
/// --json`, plus `next`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartnerView {
    pub id: String,
    pub org_name: String,
    pub org_reg_number: Option<String>,
    pub org_address: Option<String>,
    pub domains: Vec<String>,
    /// The partner's Access Edge FQDN; `null`: found by DNS SRV.
    pub edge_fqdn: Option<String>,
    pub address: Option<String>,
    pub usage_statement: Option<String>,
    pub contacts: ContactsView,
    pub ig_level: Option<String>,
    /// `YYYY-MM-DD`.
    pub ig_expires: Option<String>,
    pub comment: Option<String>,
    pub rate_limit: Option<String>,
    pub product_check: Option<String>,
    pub ca_pin: Option<String>,
    /// `requested`, `agreement_sent`, `agreement_signed`, `approved`,
    /// `enabled`, `suspended` or `revoked`.
    pub state: String,
    /// The verbs that apply in this state (`POST .../{verb}`).
    pub next: Vec<String>,
    pub requested_at: String,
    pub federated_at: Option<String>,
    pub suspended_at: Option<String>,
    pub revoked_at: Option<String>,
    pub im_test_at: Option<String>,
    pub im_test_from: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Partner> for PartnerView {
    fn from(p: &Partner) -> Self {
        let d = &p.details;
        PartnerView {
            id: p.id.clone(),
            org_name: d.org_name.clone(),
            org_reg_number: d.org_reg_number.clone(),
            org_address: d.org_address.clone(),
            domains: d.domains.clone(),
            edge_fqdn: d.edge_fqdn.clone(),
            address: d.address.clone(),
            usage_statement: d.usage_statement.clone(),
            contacts: ContactsView::from(&d.contacts),
            ig_level: d.ig_level.clone(),
            ig_expires: d.ig_expires.clone(),
            comment: d.comment.clone(),
            rate_limit: d.rate_limit.clone(),
            product_check: d.product_check.clone(),
            ca_pin: d.ca_pin.clone(),
            state: p.state.as_str().to_string(),
            next: p
                .state
                .next()
                .iter()
                .map(|(v, _)| v.as_str().to_string())
                .collect(),
            requested_at: p.requested_at.clone(),
            federated_at: p.federated_at.clone(),
            suspended_at: p.suspended_at.clone(),
            revoked_at: p.revoked_at.clone(),
            im_test_at: p.im_test_at.clone(),
            im_test_from: p.im_test_from.clone(),
            created_at: p.created_at.clone(),
            updated_at: p.updated_at.clone(),
        }
    }
}

/// The partner fields only operators and viewers see.
pub const INTERNAL_FIELDS: [&str; 5] = [
    "address",
    "comment",
    "ca_pin",
    "rate_limit",
    "product_check",
];

/// A history entry's JSON `detail` without the [`INTERNAL_FIELDS`] (at any
/// depth); text that is not JSON is kept as is.
pub fn detail_without_internals(detail: &str) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| !INTERNAL_FIELDS.contains(&k.as_str()));
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(mut v) => {
            strip(&mut v);
            v.to_string()
        }
        Err(_) => detail.to_string(),
    }
}

impl PartnerView {
    /// The view without the operators' internal fields (the address the
    /// edge dials, the comment, the CA pin, the rate limit, the product
    /// check): what a partner's own account is shown.
    pub fn without_internals(mut self) -> Self {
        self.address = None;
        self.comment = None;
        self.ca_pin = None;
        self.rate_limit = None;
        self.product_check = None;
        self
    }
}

/// One line of a partner's trail (the per-partner table).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrailView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    /// `add`, `update`, `im-test` or a lifecycle verb.
    pub action: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub reason: Option<String>,
    /// What changed, as JSON text.
    pub detail: Option<String>,
}

impl From<&AuditEntry> for TrailView {
    fn from(e: &AuditEntry) -> Self {
        TrailView {
            seq: e.seq,
            at: e.at.clone(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            from_state: e.from_state.map(|s| s.as_str().to_string()),
            to_state: e.to_state.as_str().to_string(),
            reason: e.reason.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// One entry of the tamper-evident audit chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChainView {
    pub seq: i64,
    pub at: String,
    /// The acting account (or the CLI's login name).
    pub actor: String,
    /// `partner`, `account` or `cvi`.
    pub kind: String,
    pub subject: String,
    pub action: String,
    /// A JSON object (as text) with what changed.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&ChainEntry> for ChainView {
    fn from(e: &ChainEntry) -> Self {
        ChainView {
            seq: e.seq,
            at: e.at.clone(),
            actor: e.actor.clone(),
            kind: e.kind.clone(),
            subject: e.subject.clone(),
            action: e.action.clone(),
            detail: e.detail.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// A partner and its history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartnerHistory {
    pub partner: PartnerView,
    /// The audit chain's entries about this partner, oldest first.
    pub chain: Vec<ChainView>,
    /// The per-partner trail (states and reasons), oldest first.
    pub trail: Vec<TrailView>,
}

/// One step of a test-federation run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    /// `srv`, `resolve`, `tcp`, `tls`, `options` or `message`.
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl From<&Step> for StepView {
    fn from(s: &Step) -> Self {
        StepView {
            name: s.name.to_string(),
            ok: s.ok,
            detail: s.detail.clone(),
        }
    }
}

/// A test-federation run from this node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FederationTest {
    pub partner: String,
    pub domain: String,
    pub at: String,
    /// The account that ran it.
    pub actor: String,
    /// The address the test IM came from.
    pub from: String,
    /// Every step passed, up to the IM to the technical contact.
    pub passed: bool,
    pub steps: Vec<StepView>,
}

/// The onboarding IM test as recorded on the partner.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImTestView {
    /// When the technical contact's reply arrived; `null`: not yet.
    pub passed_at: Option<String>,
    pub from: Option<String>,
}

/// A partner's test results.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartnerTests {
    pub partner: String,
    pub im_test: ImTestView,
    /// Every IM test recorded in the trail, oldest first.
    pub im_tests: Vec<TrailView>,
    /// This node's last test-federation runs (kept in memory), oldest first.
    pub federation_tests: Vec<FederationTest>,
}
