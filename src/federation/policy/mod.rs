//! The one place that decides what crosses the edge, and how.
//!
//! [`decide`] is a pure function of the message, the authenticated peer,
//! the registry snapshot, the SRV answer and the configuration. It returns
//! a [`Verdict`]: the proxy's [`Decision`] (forward, where and with which
//! header edits; or refuse, with the [`Refusal`] that gives status,
//! Warning reason and SfB `ms-diagnostics-public` code), the partner
//! concerned, and the [`Outcome`] that decided (the metrics label).
//! `inbound` and `outbound` hold the rules of each direction; `limits`
//! the per-partner rates and the enumeration guard (state, so applied by
//! the caller to what `decide` lets through); `responses` the edits to
//! responses (what leaves towards partners, what the home side learns).
//!
//! Owns the rules. Never performs I/O (the caller looks SRV records up
//! first, see [`srv_needed`]), so every rule is tested without sockets.
//!
//! [`decide_traced`] also records, in a [`Trace`], each check a request
//! passed on its way to the verdict: `fedge explain` shows them, from the
//! same code the proxy runs. [`decide`] passes [`Trace::off`], which
//! allocates nothing and never formats a detail (the hot path).

mod inbound;
pub mod limits;
mod outbound;
pub mod responses;
mod trace;

pub use trace::{Check, Trace};

use std::net::IpAddr;
use std::sync::Arc;

use super::content::{self, Issue};
use super::product::Minimums;
use super::refusal::{Direction, Refusal};
use super::registry::Snapshot;
use crate::dns::{NoEdge, SrvAnswer, SrvTarget};
use crate::model::partner::Partner;
use crate::role::Role;
use crate::sip::message::{Method, SipMessage};
use crate::sip::proxy::{Decision, Hop, RequestInfo};
use crate::sip::transport::PeerIdentity;
use crate::sip::transport::outbound::ConnectError;
use crate::sip::uri::{Host, Uri};

/// Methods the edge relays (advertised in Allow when it answers OPTIONS).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, SUBSCRIBE, NOTIFY, BENOTIFY, SERVICE, UPDATE, PRACK, REFER";

/// Option tags this edge implements when they appear in Proxy-Require.
pub const PROXY_EXTENSIONS: &[&str] = &["ms-benotify"];

/// The headers an edge never lets in from outside: the trust header is
/// the edge's own statement to the home pool ([MS-SIPRE] §2.2.15).
pub const TRUST_HEADER: &str = "ms-edge-proxy-message-trust";

/// Headers of the home side's client-to-pool authentication: they name
/// internal pools (`targetname=`) and mean nothing to a partner, whose
/// authentication is the mutual TLS between edges.
pub const INTERNAL_AUTH_HEADERS: [&str; 5] = [
    "Proxy-Authorization",
    "Proxy-Authentication-Info",
    "Authentication-Info",
    "Proxy-Authenticate",
    "WWW-Authenticate",
];

/// Other headers of the home side's internals: the client's subnet.
pub const INTERNAL_HEADERS: [&str; 1] = ["Ms-Subnet"];

/// What the policy needs from the configuration.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The edge's FQDN.
    pub fqdn: String,
    /// Home SIP domains, lower-case.
    pub home_domains: Vec<String>,
    /// Where admitted partner requests go.
    pub next_hop: Hop,
    /// Addresses of our listeners (an OPTIONS to one of them is for the edge).
    pub local_addrs: Vec<IpAddr>,
    /// Most TLS connections to one partner edge (SfB allows 1 to 4).
    pub partner_connections: usize,
    pub content: content::Rules,
    pub products: Minimums,
    /// User part of the onboarding test address in each home domain.
    pub test_user: String,
}

impl PolicyConfig {
    fn is_home(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        self.home_domains.iter().any(|h| h.eq_ignore_ascii_case(d))
    }
}

/// What let a request through, or answered it (the `outcome` label of
/// `fedge_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// An OPTIONS to the edge itself, answered.
    Options,
    /// The onboarding test address, answered.
    ImTest,
    Forward,
    /// Forwarded without a P-Asserted-Identity naming another domain.
    ForwardPaiRemoved,
}

impl Admission {
    pub fn label(&self) -> &'static str {
        match self {
            Admission::Options => "options",
            Admission::ImTest => "im_test",
            Admission::Forward => "forward",
            Admission::ForwardPaiRemoved => "forward_pai_removed",
        }
    }
}

/// The rule that decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Admitted(Admission),
    Refused(Refusal),
}

impl Outcome {
    /// The metrics label (rule or outcome).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Admitted(a) => a.label(),
            Outcome::Refused(r) => r.label(),
        }
    }
}

/// A decision, and what it was about.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    /// The partner the request comes from or goes to, when known.
    pub partner: Option<Arc<Partner>>,
    /// The rule that decided.
    pub outcome: Outcome,
    /// The request is an onboarding IM test to answer with a MESSAGE.
    pub im_test: bool,
}

impl Verdict {
    fn admit(decision: Decision, partner: Option<&Arc<Partner>>, why: Admission) -> Verdict {
        Verdict {
            decision,
            partner: partner.cloned(),
            outcome: Outcome::Admitted(why),
            im_test: false,
        }
    }

    fn refuse(r: Refusal, partner: Option<&Arc<Partner>>) -> Verdict {
        Verdict {
            decision: Decision::Reject(r.reject()),
            partner: partner.cloned(),
            outcome: Outcome::Refused(r),
            im_test: false,
        }
    }

    /// The same verdict, now refused (by a rate limit or the media relay).
    pub fn refused(self, r: Refusal) -> Verdict {
        Verdict::refuse(r, self.partner.as_ref())
    }

    /// The metrics label of the rule that decided.
    pub fn label(&self) -> &'static str {
        self.outcome.label()
    }

    /// True when something is forwarded or answered (not refused).
    pub fn admitted(&self) -> bool {
        matches!(self.outcome, Outcome::Admitted(_))
    }
}

fn domain_of(u: &Uri<'_>) -> Option<String> {
    u.domain()
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
}

/// The domain a request is for: the Request-URI's out of dialog (its host
/// is then the user's domain), the To header's in dialog (the Request-URI
/// is a Contact then, often an address).
fn target_domain(msg: &SipMessage, info: &RequestInfo) -> Option<String> {
    let from_ruri = msg.request_uri().and_then(|u| domain_of(&u));
    let from_to = msg.to().and_then(|t| domain_of(&t.uri));
    if info.in_dialog {
        from_to.or(from_ruri)
    } else {
        from_ruri.or(from_to)
    }
}

fn addressed_to_edge(msg: &SipMessage, cfg: &PolicyConfig) -> bool {
    let Some(u) = msg.request_uri() else {
        return false;
    };
    if u.user.is_some() {
        return false;
    }
    match u.host {
        Some(Host::Name(n)) => {
            n.trim_end_matches('.').eq_ignore_ascii_case(&cfg.fqdn)
                || n.eq_ignore_ascii_case("localhost")
        }
        Some(Host::V4(a)) => cfg.local_addrs.contains(&a.into()),
        Some(Host::V6(a)) => cfg.local_addrs.contains(&a.into()),
        None => false,
    }
}

/// True for a request to sip:<test_user>@<home domain>, out of dialog.
fn for_test_address(msg: &SipMessage, info: &RequestInfo, cfg: &PolicyConfig) -> bool {
    !info.in_dialog
        && msg.request_uri().is_some_and(|u| {
            u.user
                .is_some_and(|user| user.eq_ignore_ascii_case(&cfg.test_user))
                && domain_of(&u).is_some_and(|d| cfg.is_home(&d))
        })
}

fn answer(headers: Vec<(String, String)>) -> Decision {
    Decision::Answer {
        status: 200,
        headers,
    }
}

fn options_answer() -> Decision {
    answer(vec![
        ("Allow".into(), ALLOW.into()),
        ("Supported".into(), PROXY_EXTENSIONS.join(", ")),
        ("Accept".into(), "application/sdp".into()),
    ])
}

/// What DNS said about a domain's `_sipfederationtls._tcp` records: the
/// Edge looks it up before deciding, for partners found by DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvFacts {
    pub domain: String,
    pub answer: SrvAnswer,
}

/// The domain whose SRV records a decision needs: that of an allowed-domain
/// partner (no edge FQDN on its record), the sender's inbound, the
/// destination's outbound.
pub fn srv_needed(
    msg: &SipMessage,
    role: Role,
    info: &RequestInfo,
    snap: &Snapshot,
) -> Option<String> {
    let domain = match role {
        Role::Federation => msg.from().and_then(|f| domain_of(&f.uri))?,
        Role::Internal => target_domain(msg, info)?,
        Role::Cvi => return None,
    };
    let p = snap.by_domain(&domain)?;
    p.details.edge_fqdn.is_none().then_some(domain)
}

/// The SRV targets of `facts` that obey the same-domain rule, or the
/// refusal when there are none.
fn srv_targets<'f>(
    facts: Option<&'f SrvFacts>,
    domain: &str,
    partner: &Partner,
    direction: Direction,
) -> Result<Vec<&'f SrvTarget>, Refusal> {
    let Some(answer) = facts.filter(|f| f.domain == domain).map(|f| &f.answer) else {
        return Err(Refusal::DnsNotLookedUp {
            domain: domain.to_string(),
        });
    };
    answer.same_domain(domain).map_err(|e| match e {
        NoEdge::OutsideDomain(targets) => Refusal::SrvOutsideDomain {
            domain: domain.to_string(),
            targets,
            org: partner.details.org_name.clone(),
        },
        NoEdge::NotFound => Refusal::NoSrv {
            domain: domain.to_string(),
            org: partner.details.org_name.clone(),
            direction,
        },
        NoEdge::Failed(error) => Refusal::DnsFailed {
            domain: domain.to_string(),
            error,
        },
    })
}

/// Decides a request that passed the generic protocol checks.
pub fn decide(
    msg: &SipMessage,
    role: Role,
    peer: Option<&PeerIdentity>,
    info: &RequestInfo,
    snap: &Snapshot,
    cfg: &PolicyConfig,
    srv: Option<&SrvFacts>,
) -> Verdict {
    decide_traced(msg, role, peer, info, snap, cfg, srv, &mut Trace::off())
}

/// [`decide`], recording in `trace` each check the request passed.
#[allow(clippy::too_many_arguments)]
pub fn decide_traced(
    msg: &SipMessage,
    role: Role,
    peer: Option<&PeerIdentity>,
    info: &RequestInfo,
    snap: &Snapshot,
    cfg: &PolicyConfig,
    srv: Option<&SrvFacts>,
    trace: &mut Trace,
) -> Verdict {
    let method = msg.method().cloned().unwrap_or(Method::Other("".into()));
    if method == Method::Options
        && !info.in_dialog
        && info.next_route.is_none()
        && addressed_to_edge(msg, cfg)
    {
        trace.pass("options", || {
            "an OPTIONS out of dialog addressed to the edge itself: the edge answers it".into()
        });
        return Verdict::admit(options_answer(), None, Admission::Options);
    }
    match role {
        Role::Federation => inbound::decide(msg, &method, peer, info, snap, cfg, srv, trace),
        Role::Internal => outbound::decide(msg, info, snap, cfg, srv, trace),
        // The CVI listeners have their own handler; nothing of theirs is routed here.
        Role::Cvi => Verdict::refuse(Refusal::WrongListener, None),
    }
}

/// The content rules, the same in both directions (what passed goes
/// into `trace`).
fn content_refusal(msg: &SipMessage, cfg: &PolicyConfig, trace: &mut Trace) -> Option<Refusal> {
    let Some(issue) = content::inspect(msg, &cfg.content) else {
        trace.pass("content", || content::describe(msg, &cfg.content));
        return None;
    };
    Some(match issue {
        Issue::FileTransfer(what) => Refusal::FileTransfer { what },
        Issue::Recording(what) => Refusal::Recording { what },
        Issue::BodyType(media_type) => Refusal::BodyType {
            media_type,
            accepted: cfg.content.body_types.join(", "),
        },
        Issue::BodyTooLarge(size) => Refusal::BodyTooLarge {
            size,
            max: cfg.content.max_body,
        },
    })
}

/// The answer when a partner's edge (or the home pool) cannot be reached.
pub fn forward_failed(role: Role, err: &ConnectError) -> Refusal {
    Refusal::next_hop(err, role == Role::Internal)
}

#[cfg(test)]
mod tests;
