//! Federation partners as the home technical team manages them: the
//! partner record, its lifecycle (request, Federation Partnership Agreement
//! sent, signed and approved, enablement, suspension, revocation) and the
//! audit entries that record every change.
//!
//! Owns the rules of the lifecycle as a pure table: which verb moves which
//! state where, which verbs need a reason, and what must be true before a
//! partner may be enabled. Never does I/O: persisting is `store`'s job
//! (it applies [`transition`] inside its transaction), acting on a
//! partner's state is `federation`'s.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use super::ca_pin::{MAX_CA_PINS, canonical_pin, canonical_pins, hex};

/// Where a partner stands. Stored and printed in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerState {
    Requested,
    AgreementSent,
    AgreementSigned,
    Approved,
    Enabled,
    Suspended,
    Revoked,
}

pub const ALL_STATES: [PartnerState; 7] = [
    PartnerState::Requested,
    PartnerState::AgreementSent,
    PartnerState::AgreementSigned,
    PartnerState::Approved,
    PartnerState::Enabled,
    PartnerState::Suspended,
    PartnerState::Revoked,
];

impl PartnerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            PartnerState::Requested => "requested",
            PartnerState::AgreementSent => "agreement_sent",
            PartnerState::AgreementSigned => "agreement_signed",
            PartnerState::Approved => "approved",
            PartnerState::Enabled => "enabled",
            PartnerState::Suspended => "suspended",
            PartnerState::Revoked => "revoked",
        }
    }

    /// The verbs allowed from this state and where each leads.
    pub fn next(&self) -> Vec<(Verb, PartnerState)> {
        ALL_VERBS
            .iter()
            .filter_map(|v| v.from_state(*self).map(|to| (*v, to)))
            .collect()
    }

    /// A phrase listing the allowed next states, for error messages.
    pub fn next_phrase(&self) -> String {
        let n = self.next();
        if n.is_empty() {
            return "none: revoked is final; the organisation must apply again as a new request"
                .into();
        }
        n.iter()
            .map(|(v, s)| format!("{} ({})", s.as_str(), v.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for PartnerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`ALL_STATES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {given:?}; states are {}", ALL_STATES.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))]
pub struct UnknownState {
    pub given: String,
}

impl FromStr for PartnerState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        ALL_STATES
            .iter()
            .find(|st| st.as_str() == s)
            .copied()
            .ok_or_else(|| UnknownState {
                given: s.to_string(),
            })
    }
}

/// An operator's lifecycle verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    AgreementSent,
    AgreementSigned,
    Approve,
    Enable,
    Suspend,
    Reinstate,
    Revoke,
}

pub const ALL_VERBS: [Verb; 7] = [
    Verb::AgreementSent,
    Verb::AgreementSigned,
    Verb::Approve,
    Verb::Enable,
    Verb::Suspend,
    Verb::Reinstate,
    Verb::Revoke,
];

impl Verb {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verb::AgreementSent => "agreement-sent",
            Verb::AgreementSigned => "agreement-signed",
            Verb::Approve => "approve",
            Verb::Enable => "enable",
            Verb::Suspend => "suspend",
            Verb::Reinstate => "reinstate",
            Verb::Revoke => "revoke",
        }
    }

    /// The state this verb leads to from `from`, if it is allowed there.
    pub fn from_state(&self, from: PartnerState) -> Option<PartnerState> {
        use PartnerState as S;
        match (self, from) {
            (Verb::AgreementSent, S::Requested) => Some(S::AgreementSent),
            (Verb::AgreementSigned, S::AgreementSent) => Some(S::AgreementSigned),
            (Verb::Approve, S::AgreementSigned) => Some(S::Approved),
            (Verb::Enable, S::Approved) => Some(S::Enabled),
            (Verb::Suspend, S::Enabled) => Some(S::Suspended),
            (Verb::Reinstate, S::Suspended) => Some(S::Enabled),
            (Verb::Revoke, s) if s != S::Revoked => Some(S::Revoked),
            _ => None,
        }
    }

    /// Suspension, reinstatement and revocation must say why.
    pub fn needs_reason(&self) -> bool {
        matches!(self, Verb::Suspend | Verb::Reinstate | Verb::Revoke)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verb name that is not one of [`ALL_VERBS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verb {given:?}")]
pub struct UnknownVerb {
    pub given: String,
}

impl FromStr for Verb {
    type Err = UnknownVerb;
    fn from_str(s: &str) -> Result<Self, UnknownVerb> {
        ALL_VERBS
            .iter()
            .find(|v| v.as_str() == s)
            .copied()
            .ok_or_else(|| UnknownVerb {
                given: s.to_string(),
            })
    }
}

/// Contacts named in the FPA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts {
    /// Single point of contact (the partner's helpdesk).
    pub spoc_name: Option<String>,
    pub spoc_email: Option<String>,
    pub spoc_phone: Option<String>,
    /// Technical contact, who exchanges test IM with the home team.
    pub tech_name: Option<String>,
    pub tech_email: Option<String>,
    pub tech_phone: Option<String>,
    /// The technical contact's SIP address (`sip:user@domain`).
    pub tech_sip: Option<String>,
}

/// Everything recorded about a partner except its lifecycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerDetails {
    pub org_name: String,
    pub org_reg_number: Option<String>,
    pub org_address: Option<String>,
    /// SIP domains, lower-case; each belongs to one live partner at most.
    pub domains: Vec<String>,
    /// The partner's Access Edge FQDN ("allowed partner server"). Without
    /// it the partner is an "allowed domain" to be found by DNS SRV.
    pub edge_fqdn: Option<String>,
    /// `HOST:PORT` to connect to instead of resolving the edge FQDN (labs).
    pub address: Option<String>,
    pub usage_statement: Option<String>,
    pub contacts: Contacts,
    /// Information governance certification (e.g. "DSPT Standards Met").
    pub ig_level: Option<String>,
    /// `YYYY-MM-DD`.
    pub ig_expires: Option<String>,
    pub comment: Option<String>,
    /// Requests per second this partner may send (default: `[policy] rate`).
    pub rate_limit: Option<String>,
    /// `off` lets a lab partner use products other than Lync and SfB.
    pub product_check: Option<String>,
    /// CA pins: `sha256:<hex>` of the SubjectPublicKeyInfo of a CA the
    /// partner's edge certificate must chain to (comma-separated for a CA
    /// rollover). Needs `edge_fqdn`: the pin is checked in the TLS
    /// handshake against the certificate naming that edge.
    pub ca_pin: Option<String>,
}

/// A partner as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    pub id: String,
    #[serde(flatten)]
    pub details: PartnerDetails,
    pub state: PartnerState,
    /// RFC 3339 UTC timestamps.
    pub requested_at: String,
    pub federated_at: Option<String>,
    pub suspended_at: Option<String>,
    pub revoked_at: Option<String>,
    /// When the onboarding IM test passed, and from which SIP address.
    pub im_test_at: Option<String>,
    pub im_test_from: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Partner {
    /// The first domain, used to name the partner in messages.
    pub fn name(&self) -> &str {
        self.details
            .domains
            .first()
            .map(String::as_str)
            .unwrap_or(&self.id)
    }

    /// True when `domain` is one of the partner's (case-insensitive).
    pub fn has_domain(&self, domain: &str) -> bool {
        self.details
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// One line of a partner's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    /// `add`, `update` or a lifecycle verb.
    pub action: String,
    pub from_state: Option<PartnerState>,
    pub to_state: PartnerState,
    pub reason: Option<String>,
    /// What changed, as JSON, for `add` and `update`.
    pub detail: Option<String>,
}

/// Why a lifecycle change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot {verb} partner {partner}: it is {from}; from {from} it can go to: {allowed}")]
    NotAllowed {
        verb: Verb,
        partner: String,
        from: PartnerState,
        allowed: String,
    },
    #[error("cannot {verb} partner {partner}: --reason is required for {verb}")]
    ReasonRequired { verb: Verb, partner: String },

    #[error(
        "cannot enable partner {partner}: no IM test has passed; its technical contact sends a MESSAGE to the federation test address first (or use --skip-im-test with --reason)"
    )]
    NeedsImTest { partner: String },
    #[error(
        "cannot {verb} partner {partner}: its IG certification expired on {expired}; record a current one first"
    )]
    IgExpired {
        verb: Verb,
        partner: String,
        expired: String,
    },
}

/// Decides a lifecycle change. `today` is `YYYY-MM-DD` (UTC).
/// `skip_im_test` lets `enable` go ahead without a passed IM test (with a reason).
pub fn transition(
    partner: &Partner,
    verb: Verb,
    reason: Option<&str>,
    today: &str,
    skip_im_test: bool,
) -> Result<PartnerState, TransitionError> {
    let name = partner.name().to_string();
    let to = verb
        .from_state(partner.state)
        .ok_or_else(|| TransitionError::NotAllowed {
            verb,
            partner: name.clone(),
            from: partner.state,
            allowed: partner.state.next_phrase(),
        })?;
    if verb.needs_reason() && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(TransitionError::ReasonRequired {
            verb,
            partner: name,
        });
    }
    if to == PartnerState::Enabled {
        check_enableable(&partner.details, &name, verb, today)?;
    }
    if verb == Verb::Enable && partner.im_test_at.is_none() {
        if !skip_im_test {
            return Err(TransitionError::NeedsImTest { partner: name });
        }
        if reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(TransitionError::ReasonRequired {
                verb,
                partner: name,
            });
        }
    }
    Ok(to)
}

/// What must hold before a partner may carry traffic.
pub fn check_enableable(
    d: &PartnerDetails,
    name: &str,
    verb: Verb,
    today: &str,
) -> Result<(), TransitionError> {
    if let Some(exp) = &d.ig_expires
        && exp.as_str() < today
    {
        return Err(TransitionError::IgExpired {
            verb,
            partner: name.to_string(),
            expired: exp.clone(),
        });
    }
    Ok(())
}

/// Fields of [`PartnerDetails`] an operator may set by name.
pub const FIELDS: &[&str] = &[
    "org_name",
    "org_reg_number",
    "org_address",
    "edge_fqdn",
    "address",
    "usage_statement",
    "spoc_name",
    "spoc_email",
    "spoc_phone",
    "tech_name",
    "tech_email",
    "tech_phone",
    "tech_sip",
    "ig_level",
    "ig_expires",
    "comment",
    "rate_limit",
    "product_check",
    "ca_pin",
];

impl PartnerDetails {
    /// A named field's value (see [`FIELDS`]).
    pub fn get(&self, field: &str) -> Option<Option<&str>> {
        let c = &self.contacts;
        let v = match field {
            "org_name" => Some(self.org_name.as_str()),
            "org_reg_number" => self.org_reg_number.as_deref(),
            "org_address" => self.org_address.as_deref(),
            "edge_fqdn" => self.edge_fqdn.as_deref(),
            "address" => self.address.as_deref(),
            "usage_statement" => self.usage_statement.as_deref(),
            "spoc_name" => c.spoc_name.as_deref(),
            "spoc_email" => c.spoc_email.as_deref(),
            "spoc_phone" => c.spoc_phone.as_deref(),
            "tech_name" => c.tech_name.as_deref(),
            "tech_email" => c.tech_email.as_deref(),
            "tech_phone" => c.tech_phone.as_deref(),
            "tech_sip" => c.tech_sip.as_deref(),
            "ig_level" => self.ig_level.as_deref(),
            "ig_expires" => self.ig_expires.as_deref(),
            "comment" => self.comment.as_deref(),
            "rate_limit" => self.rate_limit.as_deref(),
            "product_check" => self.product_check.as_deref(),
            "ca_pin" => self.ca_pin.as_deref(),
            _ => return None,
        };
        Some(v)
    }

    /// Sets a named field (`None` clears it). Returns false for an unknown field.
    pub fn set(&mut self, field: &str, value: Option<String>) -> bool {
        let c = &mut self.contacts;
        let slot = match field {
            "org_name" => {
                self.org_name = value.unwrap_or_default();
                return true;
            }
            "org_reg_number" => &mut self.org_reg_number,
            "org_address" => &mut self.org_address,
            "edge_fqdn" => &mut self.edge_fqdn,
            "address" => &mut self.address,
            "usage_statement" => &mut self.usage_statement,
            "spoc_name" => &mut c.spoc_name,
            "spoc_email" => &mut c.spoc_email,
            "spoc_phone" => &mut c.spoc_phone,
            "tech_name" => &mut c.tech_name,
            "tech_email" => &mut c.tech_email,
            "tech_phone" => &mut c.tech_phone,
            "tech_sip" => &mut c.tech_sip,
            "ig_level" => &mut self.ig_level,
            "ig_expires" => &mut self.ig_expires,
            "comment" => &mut self.comment,
            "rate_limit" => &mut self.rate_limit,
            "product_check" => &mut self.product_check,
            "ca_pin" => &mut self.ca_pin,
            _ => return false,
        };
        *slot = value;
        true
    }

    /// Lower-cases names that compare case-insensitively.
    pub fn normalise(&mut self) {
        for d in &mut self.domains {
            *d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        }
        if let Some(f) = &mut self.edge_fqdn {
            *f = f.trim().trim_end_matches('.').to_ascii_lowercase();
        }
        if let Some(p) = &mut self.ca_pin
            && let Some(canonical) = canonical_pins(p)
        {
            *p = canonical;
        }
        for f in FIELDS {
            if let Some(Some(v)) = self.get(f) {
                let t = v.trim();
                if t.is_empty() {
                    self.set(f, None);
                } else if t.len() != v.len() {
                    let t = t.to_string();
                    self.set(f, Some(t));
                }
            }
        }
    }

    /// Every problem with these details, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        use crate::sip::uri::{Host, Uri, parse_host};
        let mut out = Vec::new();
        let mut bad = |f: &str, m: String| out.push((f.to_string(), m));
        if self.org_name.trim().is_empty() {
            bad("org_name", "the organisation name is required".into());
        }
        if self.domains.is_empty() {
            bad("domains", "at least one SIP domain is required".into());
        }
        for (i, d) in self.domains.iter().enumerate() {
            if !matches!(parse_host(d), Ok(Host::Name(_))) || !d.contains('.') {
                bad("domains", format!("{d:?} is not a valid SIP domain"));
            } else if self.domains[..i].iter().any(|o| o == d) {
                bad("domains", format!("{d:?} is listed twice"));
            }
        }
        if let Some(f) = &self.edge_fqdn {
            match parse_host(f) {
                Ok(Host::Name(_)) if f.contains('.') && !f.contains('*') => {}
                Ok(Host::Name(_)) | Err(_) => bad(
                    "edge_fqdn",
                    format!("{f:?} is not a fully qualified domain name"),
                ),
                Ok(_) => bad(
                    "edge_fqdn",
                    format!("{f:?} is an IP address; an edge FQDN must be a name"),
                ),
            }
        }
        if let Some(a) = &self.address
            && parse_host_port(a).is_none()
        {
            bad("address", format!("{a:?} is not HOST:PORT"));
        }
        if let Some(d) = &self.ig_expires
            && time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                .is_err()
        {
            bad("ig_expires", format!("{d:?} is not a date (YYYY-MM-DD)"));
        }
        if let Some(s) = &self.contacts.tech_sip {
            match Uri::parse(s) {
                Ok(u) if u.is_sip() && u.user.is_some() => {}
                _ => bad(
                    "tech_sip",
                    format!("{s:?} is not a SIP address like sip:name@domain"),
                ),
            }
        }
        if let Some(r) = &self.rate_limit
            && !r.parse::<u32>().is_ok_and(|n| (1..=100_000).contains(&n))
        {
            bad(
                "rate_limit",
                format!("{r:?} is not a number of requests per second from 1 to 100000"),
            );
        }
        if let Some(p) = &self.ca_pin {
            if canonical_pins(p).is_none() {
                bad(
                    "ca_pin",
                    format!(
                        "{p:?} is not sha256:<64 hex digits> (or the base64 pin-sha256), comma-separated"
                    ),
                );
            } else if self.edge_fqdn.is_none() {
                bad(
                    "ca_pin",
                    "a CA pin needs the partner's edge FQDN (edge_fqdn): it is checked against the certificate naming that edge".into(),
                );
            }
        }
        if let Some(p) = &self.product_check
            && !matches!(p.as_str(), "on" | "off")
        {
            bad("product_check", format!("{p:?} must be on or off"));
        }
        for (f, v) in [
            ("spoc_email", &self.contacts.spoc_email),
            ("tech_email", &self.contacts.tech_email),
        ] {
            if let Some(e) = v {
                let ok = e
                    .split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !e.contains(' '));
                if !ok {
                    bad(f, format!("{e:?} is not an e-mail address"));
                }
            }
        }
        out
    }
}

/// Parses `HOST:PORT` (IPv6 in brackets).
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    let (h, p) = s.rsplit_once(':')?;
    let port: u16 = p.parse().ok().filter(|p| *p > 0)?;
    crate::sip::uri::parse_host(h).ok()?;
    Some((h.to_string(), port))
}

/// A partner for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn sample(
    id: &str,
    domains: &[&str],
    edge: Option<&str>,
    state: PartnerState,
) -> Partner {
    Partner {
        id: id.into(),
        details: PartnerDetails {
            org_name: format!("Org {id}"),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            edge_fqdn: edge.map(str::to_string),
            ..PartnerDetails::default()
        },
        state,
        requested_at: String::new(),
        federated_at: None,
        suspended_at: None,
        revoked_at: None,
        im_test_at: None,
        im_test_from: None,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner(state: PartnerState, edge: Option<&str>) -> Partner {
        let mut p = sample("p1", &["partner.test"], edge, state);
        p.details.org_name = "Org".into();
        p.im_test_at = Some("2026-01-01T00:00:00.000Z".into());
        p
    }

    /// The whole lifecycle table: every (state, verb) pair.
    #[test]
    fn lifecycle_table() {
        use PartnerState as S;
        use Verb as V;
        let allowed = [
            (S::Requested, V::AgreementSent, S::AgreementSent),
            (S::AgreementSent, V::AgreementSigned, S::AgreementSigned),
            (S::AgreementSigned, V::Approve, S::Approved),
            (S::Approved, V::Enable, S::Enabled),
            (S::Enabled, V::Suspend, S::Suspended),
            (S::Suspended, V::Reinstate, S::Enabled),
            (S::Requested, V::Revoke, S::Revoked),
            (S::AgreementSent, V::Revoke, S::Revoked),
            (S::AgreementSigned, V::Revoke, S::Revoked),
            (S::Approved, V::Revoke, S::Revoked),
            (S::Enabled, V::Revoke, S::Revoked),
            (S::Suspended, V::Revoke, S::Revoked),
        ];
        for from in ALL_STATES {
            for verb in ALL_VERBS {
                let want = allowed
                    .iter()
                    .find(|(f, v, _)| *f == from && *v == verb)
                    .map(|t| t.2);
                let p = partner(from, Some("sip.partner.test"));
                let got = transition(&p, verb, Some("because"), "2026-01-01", false).ok();
                assert_eq!(got, want, "{from} --{verb}-->");
            }
        }
    }

    #[test]
    fn refusals_name_the_allowed_next_states() {
        let e = transition(
            &partner(PartnerState::Requested, None),
            Verb::Approve,
            None,
            "2026-01-01",
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot approve partner partner.test: it is requested; from requested it can go to: agreement_sent (agreement-sent), revoked (revoke)"
        );
        let e = transition(
            &partner(PartnerState::Revoked, None),
            Verb::Reinstate,
            Some("x"),
            "2026-01-01",
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("revoked is final"), "{e}");
    }

    #[test]
    fn reasons_edge_fqdn_and_ig_expiry() {
        let p = partner(PartnerState::Enabled, Some("sip.partner.test"));
        assert!(matches!(
            transition(&p, Verb::Suspend, None, "2026-01-01", false),
            Err(TransitionError::ReasonRequired { .. })
        ));
        assert!(matches!(
            transition(&p, Verb::Suspend, Some("  "), "2026-01-01", false),
            Err(TransitionError::ReasonRequired { .. })
        ));
        // An allowed-domain partner (no edge FQDN) is found by DNS SRV.
        let p = partner(PartnerState::Approved, None);
        assert_eq!(
            transition(&p, Verb::Enable, None, "2026-01-01", true),
            Ok(PartnerState::Enabled)
        );
        let mut p = partner(PartnerState::Approved, Some("sip.partner.test"));
        p.details.ig_expires = Some("2025-12-31".into());
        assert!(matches!(
            transition(&p, Verb::Enable, None, "2026-01-01", false),
            Err(TransitionError::IgExpired { .. })
        ));
        p.details.ig_expires = Some("2026-01-01".into());
        assert_eq!(
            transition(&p, Verb::Enable, None, "2026-01-01", false),
            Ok(PartnerState::Enabled)
        );
    }

    #[test]
    fn enabling_needs_a_passed_im_test_or_a_reasoned_skip() {
        let mut p = partner(PartnerState::Approved, Some("sip.partner.test"));
        p.im_test_at = None;
        let e = transition(&p, Verb::Enable, None, "2026-01-01", false).unwrap_err();
        assert!(matches!(e, TransitionError::NeedsImTest { .. }), "{e}");
        assert!(matches!(
            transition(&p, Verb::Enable, None, "2026-01-01", true),
            Err(TransitionError::ReasonRequired { .. })
        ));
        assert_eq!(
            transition(
                &p,
                Verb::Enable,
                Some("tested by phone"),
                "2026-01-01",
                true
            ),
            Ok(PartnerState::Enabled)
        );
        // Reinstating a suspended partner does not ask for a new test.
        let mut s = partner(PartnerState::Suspended, Some("sip.partner.test"));
        s.im_test_at = None;
        assert_eq!(
            transition(&s, Verb::Reinstate, Some("ok"), "2026-01-01", false),
            Ok(PartnerState::Enabled)
        );
    }

    #[test]
    fn detail_problems() {
        let mut d = PartnerDetails {
            org_name: " ".into(),
            domains: vec![
                "Partner.TEST.".into(),
                "partner.test".into(),
                "bad domain".into(),
            ],
            edge_fqdn: Some("192.0.2.1".into()),
            address: Some("lab:0".into()),
            ig_expires: Some("2026-13-01".into()),
            ..PartnerDetails::default()
        };
        d.contacts.tech_sip = Some("alice@partner.test".into());
        d.contacts.spoc_email = Some("helpdesk".into());
        d.normalise();
        assert_eq!(d.domains[0], "partner.test");
        let fields: Vec<String> = d.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "org_name",
                "domains",
                "domains",
                "edge_fqdn",
                "address",
                "ig_expires",
                "tech_sip",
                "spoc_email"
            ]
        );
        assert_eq!(
            parse_host_port("[2001:db8::1]:5061"),
            Some(("2001:db8::1".into(), 5061))
        );
        assert_eq!(
            parse_host_port("lab.partner.test:5061"),
            Some(("lab.partner.test".into(), 5061))
        );
    }

    #[test]
    fn names_round_trip() {
        for s in ALL_STATES {
            assert_eq!(s.as_str().parse::<PartnerState>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for v in ALL_VERBS {
            assert_eq!(v.as_str().parse::<Verb>(), Ok(v));
        }
    }
}
