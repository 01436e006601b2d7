//! The one place that decides what crosses the edge.
//!
//! [`decide`] is a pure function of the message, the authenticated peer,
//! the registry snapshot and the configuration. It returns a [`Verdict`]:
//! the proxy's [`Decision`] (forward, where and with which header edits;
//! or refuse, with status, Warning reason and the SfB
//! `ms-diagnostics-public` code), the partner concerned, and the name of
//! the rule that decided (the metrics label). It performs no I/O, so every
//! rule is tested without sockets. Rates, which need state, are applied
//! by the caller to what this function lets through (`limits`).

use std::net::IpAddr;
use std::sync::Arc;

use super::content::{self, Issue};
use super::partner::{Partner, PartnerState};
use super::product::{self, Minimums};
use super::registry::Snapshot;
use crate::dns::zone::directly_in;
use crate::dns::{SrvAnswer, SrvTarget};
use crate::role::Role;
use crate::sip::headers::{HeaderName, NameAddr};
use crate::sip::message::{Method, SipMessage};
use crate::sip::proxy::{Decision, Forward, Hide, Hop, Reject, RequestInfo};
use crate::sip::transport::outbound::{ConnectError, StreamTarget};
use crate::sip::transport::{PeerIdentity, Transport};
use crate::sip::uri::{Host, Uri};

/// SfB `ms-diagnostics` codes ([MS-OCER] SipStack table and field traces).
pub mod diag {
    pub const NOT_AUTHORIZED: (u16, &str) = (
        1002,
        "From URI not authorized to communicate with federated partners",
    );
    pub const CANNOT_ROUTE: (u16, &str) = (1005, "Cannot route to destination domain");
    pub const TEMPORARILY: (u16, &str) = (1007, "Temporarily cannot route");
    pub const NO_SRV: (u16, &str) = (1008, "Unable to resolve DNS SRV record");
    pub const NO_SRV_MATCH: (u16, &str) = (1009, "No match for domain in DNS SRV results");
    pub const CERTIFICATE: (u16, &str) = (
        1010,
        "Certificate trust with another server could not be established",
    );
    pub const NO_A_RECORD: (u16, &str) = (1014, "Unable to resolve DNS A record");
    pub const DOMAIN_COMBINATION: (u16, &str) =
        (1017, "Cannot route From and To domains in this combination");
    pub const REQUEST_TYPE: (u16, &str) = (
        1027,
        "Cannot route this type of SIP request to or from federated partners",
    );
    pub const NO_PEER_DIAGNOSTIC: (u16, &str) = (
        1034,
        "Previous hop federated peer did not report diagnostic information",
    );
    pub const TLS_FAILED: (u16, &str) = (
        1047,
        "Failed to complete TLS negotiation with a federated peer server",
    );
}

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

/// The Warning code SfB's IM filter uses for refused content.
pub const WARN_CONTENT: u16 = 309;

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

/// A decision, and what it was about.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    /// The partner the request comes from or goes to, when known.
    pub partner: Option<Arc<Partner>>,
    /// The rule that decided, a short name for metrics and logs.
    pub rule: &'static str,
    /// The request is an onboarding IM test to answer with a MESSAGE.
    pub im_test: bool,
}

impl Verdict {
    fn of(decision: Decision, partner: Option<&Arc<Partner>>, rule: &'static str) -> Verdict {
        Verdict {
            decision,
            partner: partner.cloned(),
            rule,
            im_test: false,
        }
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

fn refuse(status: u16, reason: impl Into<String>, d: (u16, &'static str)) -> Decision {
    Decision::Reject(Reject::new(status, reason).diag(d))
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

/// Decides a request that passed the generic protocol checks.
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
/// refusal (rule, status, reason, diagnostic) when there are none.
// The refusal is the large variant and is built only on the way out.
#[allow(clippy::result_large_err)]
fn srv_targets<'f>(
    facts: Option<&'f SrvFacts>,
    domain: &str,
    partner: &Partner,
    status_when_missing: u16,
) -> Result<Vec<&'f SrvTarget>, (&'static str, Decision)> {
    let name = format!("_sipfederationtls._tcp.{domain}");
    match facts.filter(|f| f.domain == domain).map(|f| &f.answer) {
        Some(SrvAnswer::Targets(ts)) => {
            let valid: Vec<&SrvTarget> = ts
                .iter()
                .filter(|t| directly_in(&t.target, domain))
                .collect();
            if valid.is_empty() {
                let named: Vec<&str> = ts.iter().map(|t| t.target.as_str()).collect();
                let reason = format!(
                    "{name} names {}, which is not directly in {domain} (the same-domain rule); partner {} needs an edge FQDN on record",
                    named.join(", "),
                    partner.details.org_name
                );
                return Err(("srv_domain", refuse(504, reason, diag::NO_SRV_MATCH)));
            }
            Ok(valid)
        }
        Some(SrvAnswer::NotFound) => {
            let reason = format!(
                "{domain} publishes no {name} SRV record, and partner {} has no edge FQDN on record",
                partner.details.org_name
            );
            Err(("no_srv", refuse(status_when_missing, reason, diag::NO_SRV)))
        }
        Some(SrvAnswer::Failed(e)) => Err((
            "dns_failed",
            refuse(
                504,
                format!("the DNS lookup of {name} failed: {e}"),
                diag::NO_SRV,
            ),
        )),
        None => Err((
            "dns_failed",
            refuse(504, format!("{name} was not looked up"), diag::NO_SRV),
        )),
    }
}

pub fn decide(
    msg: &SipMessage,
    role: Role,
    peer: Option<&PeerIdentity>,
    info: &RequestInfo,
    snap: &Snapshot,
    cfg: &PolicyConfig,
    srv: Option<&SrvFacts>,
) -> Verdict {
    let method = msg.method().cloned().unwrap_or(Method::Other("".into()));
    if method == Method::Options
        && !info.in_dialog
        && info.next_route.is_none()
        && addressed_to_edge(msg, cfg)
    {
        return Verdict::of(options_answer(), None, "options");
    }
    match role {
        Role::Federation => inbound(msg, &method, peer, info, snap, cfg, srv),
        Role::Internal => outbound(msg, info, snap, cfg, srv),
        // The CVI listeners have their own handler; nothing of theirs is routed here.
        Role::Cvi => Verdict::of(
            refuse(403, "not a federation listener", diag::NOT_AUTHORIZED),
            None,
            "wrong_listener",
        ),
    }
}

/// The content rules, the same in both directions.
fn content_verdict(
    msg: &SipMessage,
    partner: &Arc<Partner>,
    cfg: &PolicyConfig,
) -> Option<Verdict> {
    let issue = content::inspect(msg, &cfg.content)?;
    let p = Some(partner);
    Some(match issue {
        Issue::FileTransfer(what) => {
            let mut r = Reject::new(
                606,
                format!(
                    "File transfer is switched off across this federation ({what} refused); share files by secure e-mail instead"
                ),
            );
            // SfB's IM filter answers file transfer with 606 and Warning 309,
            // which Lync clients show; it stands in for the general 399 here.
            r.warn_code = WARN_CONTENT;
            Verdict::of(Decision::Reject(r), p, "file_transfer")
        }
        Issue::Recording(what) => Verdict::of(
            refuse(
                403,
                format!("Recording is switched off across this federation ({what} refused)"),
                diag::REQUEST_TYPE,
            ),
            p,
            "recording",
        ),
        Issue::BodyType(t) => {
            let why = if t == "(none)" {
                "A body without a Content-Type may not cross this federation".to_string()
            } else {
                format!("Content of type {t} may not cross this federation")
            };
            let mut r = Reject::new(415, why);
            r.headers
                .push(("Accept".into(), cfg.content.body_types.join(", ")));
            Verdict::of(Decision::Reject(r), p, "body_type")
        }
        Issue::BodyTooLarge(n) => Verdict::of(
            Decision::Reject(Reject::new(
                413,
                format!(
                    "a body of {n} bytes is larger than the {} bytes allowed across this federation",
                    cfg.content.max_body
                ),
            )),
            p,
            "body_size",
        ),
    })
}

/// Partner to home.
fn inbound(
    msg: &SipMessage,
    method: &Method,
    peer: Option<&PeerIdentity>,
    info: &RequestInfo,
    snap: &Snapshot,
    cfg: &PolicyConfig,
    srv: Option<&SrvFacts>,
) -> Verdict {
    let Some(peer) = peer else {
        return Verdict::of(
            refuse(
                403,
                "no authenticated certificate on this connection",
                diag::CERTIFICATE,
            ),
            None,
            "no_certificate",
        );
    };
    let Some(from_domain) = msg.from().and_then(|f| domain_of(&f.uri)) else {
        return Verdict::of(
            refuse(403, "the From URI has no domain", diag::NOT_AUTHORIZED),
            None,
            "no_from_domain",
        );
    };
    let Some(partner) = snap.by_domain(&from_domain) else {
        let reason = match snap.by_identity(peer).first() {
            Some(p) => format!(
                "From domain {from_domain} is not a domain of partner {}, whose edge (certificate {peer}) this connection comes from",
                p.details.org_name
            ),
            None => format!("domain {from_domain} is not a federation partner of this service"),
        };
        return Verdict::of(
            refuse(403, reason, diag::NOT_AUTHORIZED),
            None,
            "unknown_domain",
        );
    };
    let p = Some(partner);
    match partner.details.edge_fqdn.as_deref() {
        Some(edge) if !peer.matches(edge) => {
            let reason = format!(
                "certificate names {peer}, but domain {from_domain} belongs to partner {} whose edge is {edge}",
                partner.details.org_name
            );
            return Verdict::of(refuse(403, reason, diag::CERTIFICATE), p, "spoofed_domain");
        }
        Some(_) => {}
        // An allowed-domain partner: its edge is what DNS names for the From domain.
        None => match srv_targets(srv, &from_domain, partner, 403) {
            Err((rule, d)) => return Verdict::of(d, p, rule),
            Ok(targets) if !targets.iter().any(|t| peer.matches(&t.target)) => {
                let named: Vec<&str> = targets.iter().map(|t| t.target.as_str()).collect();
                let reason = format!(
                    "certificate names {peer}, but _sipfederationtls._tcp.{from_domain} names {}",
                    named.join(", ")
                );
                return Verdict::of(refuse(403, reason, diag::CERTIFICATE), p, "spoofed_domain");
            }
            Ok(_) => {}
        },
    }
    let test_address = for_test_address(msg, info, cfg);
    let may_test = matches!(
        partner.state,
        PartnerState::Approved | PartnerState::Enabled
    );
    if test_address && may_test {
        return match method {
            Method::Message => Verdict {
                decision: answer(Vec::new()),
                partner: p.cloned(),
                rule: "im_test",
                im_test: true,
            },
            Method::Options => Verdict::of(
                answer(vec![("Allow".into(), "MESSAGE, OPTIONS".into())]),
                p,
                "im_test",
            ),
            _ => {
                let mut r = Reject::new(
                    405,
                    "the federation test address answers MESSAGE and OPTIONS only",
                );
                r.headers.push(("Allow".into(), "MESSAGE, OPTIONS".into()));
                Verdict::of(Decision::Reject(r), p, "im_test")
            }
        };
    }
    if partner.state != PartnerState::Enabled {
        let reason = if partner.state == PartnerState::Approved {
            format!(
                "partner {} (domain {from_domain}) is approved but not yet enabled: until then only sip:{}@{} may be reached, for the IM test",
                partner.details.org_name,
                cfg.test_user,
                cfg.home_domains.first().map(String::as_str).unwrap_or("")
            )
        } else {
            format!(
                "partner {} (domain {from_domain}) is {}",
                partner.details.org_name, partner.state
            )
        };
        return Verdict::of(refuse(403, reason, diag::NOT_AUTHORIZED), p, "not_enabled");
    }
    match target_domain(msg, info) {
        Some(d) if cfg.is_home(&d) => {}
        Some(d) => {
            let reason = format!(
                "domain {d} is not served here: partners may reach {} only",
                cfg.home_domains.join(", ")
            );
            return Verdict::of(refuse(403, reason, diag::DOMAIN_COMBINATION), p, "transit");
        }
        None => {
            return Verdict::of(
                refuse(
                    403,
                    "the request names no destination domain",
                    diag::CANNOT_ROUTE,
                ),
                p,
                "no_destination",
            );
        }
    }
    if partner.details.product_check.as_deref() != Some("off") {
        let ua = msg
            .values_named("User-Agent")
            .next()
            .or_else(|| msg.first(HeaderName::Server));
        if let Some(ua) = ua
            && let Err(why) = product::check(ua, &cfg.products)
        {
            return Verdict::of(Decision::Reject(Reject::new(403, why)), p, "product");
        }
    }
    if let Some(v) = content_verdict(msg, partner, cfg) {
        return v;
    }
    // A partner may assert only its own users.
    let mut strip = vec![TRUST_HEADER.to_string()];
    let foreign_pai = msg.values(HeaderName::PAssertedIdentity).any(|v| {
        NameAddr::parse(v)
            .ok()
            .and_then(|na| domain_of(&na.uri))
            .is_none_or(|d| !partner.has_domain(&d))
    });
    if foreign_pai {
        strip.push("P-Asserted-Identity".into());
    }
    let trust = format!(
        "ms-source-type=DirectPartner;ms-ep-fqdn={};ms-source-verified-user=verified;ms-source-network=federation",
        cfg.fqdn
    );
    Verdict::of(
        Decision::Forward(Forward {
            leg: Role::Internal.side(),
            hop: cfg.next_hop.clone(),
            strip,
            add: vec![(TRUST_HEADER.into(), trust)],
            hide: Hide::Destination,
            body: None,
        }),
        p,
        if foreign_pai {
            "forward_pai_removed"
        } else {
            "forward"
        },
    )
}

/// Home to partner.
fn outbound(
    msg: &SipMessage,
    info: &RequestInfo,
    snap: &Snapshot,
    cfg: &PolicyConfig,
    srv: Option<&SrvFacts>,
) -> Verdict {
    match msg.from().and_then(|f| domain_of(&f.uri)) {
        Some(d) if cfg.is_home(&d) => {}
        other => {
            let reason = format!(
                "From domain {} is not a home domain; the edge relays home users only",
                other.unwrap_or_else(|| "(none)".into())
            );
            return Verdict::of(
                refuse(403, reason, diag::DOMAIN_COMBINATION),
                None,
                "foreign_from",
            );
        }
    }
    let Some(domain) = target_domain(msg, info) else {
        return Verdict::of(
            refuse(
                404,
                "the request names no destination domain",
                diag::CANNOT_ROUTE,
            ),
            None,
            "no_destination",
        );
    };
    let Some(partner) = snap.by_domain(&domain) else {
        let reason = if cfg.is_home(&domain) {
            format!("domain {domain} is a home domain; the edge routes to federation partners only")
        } else {
            format!("no federation partner serves domain {domain}")
        };
        return Verdict::of(
            refuse(404, reason, diag::CANNOT_ROUTE),
            None,
            "unknown_domain",
        );
    };
    let p = Some(partner);
    if partner.state != PartnerState::Enabled {
        let reason = format!(
            "partner {} (domain {domain}) is {}",
            partner.details.org_name, partner.state
        );
        return Verdict::of(refuse(403, reason, diag::CANNOT_ROUTE), p, "not_enabled");
    }
    let target = match &partner.details.edge_fqdn {
        // An allowed partner server: its pinned edge, no SRV.
        Some(edge) => partner_target(partner, edge, cfg.partner_connections),
        None => match srv_targets(srv, &domain, partner, 504) {
            Err((rule, d)) => return Verdict::of(d, p, rule),
            Ok(targets) => srv_stream_target(partner, targets[0], cfg.partner_connections),
        },
    };
    if let Some(v) = content_verdict(msg, partner, cfg) {
        return v;
    }
    Verdict::of(
        Decision::Forward(Forward {
            leg: Role::Federation.side(),
            hop: Hop::Stream(target),
            strip: [TRUST_HEADER, "ms-diagnostics"]
                .into_iter()
                .chain(INTERNAL_AUTH_HEADERS)
                .chain(INTERNAL_HEADERS)
                .map(String::from)
                .collect(),
            add: Vec::new(),
            hide: Hide::Source,
            body: None,
        }),
        p,
        "forward",
    )
}

/// A partner's edge found by DNS: the SRV target and port (its address
/// override still wins for labs); its certificate must name the target.
pub fn srv_stream_target(partner: &Partner, t: &SrvTarget, max_conns: usize) -> StreamTarget {
    let (host, port) = partner
        .details
        .address
        .as_deref()
        .and_then(super::partner::parse_host_port)
        .unwrap_or_else(|| (t.target.clone(), t.port));
    StreamTarget {
        transport: Transport::Tls,
        host,
        port,
        server_name: Some(t.target.clone()),
        tag: Role::Federation.tag(),
        max_conns,
    }
}

/// Where a partner's edge is: its address override, else its FQDN on 5061.
pub fn partner_target(partner: &Partner, edge: &str, max_conns: usize) -> StreamTarget {
    let (host, port) = partner
        .details
        .address
        .as_deref()
        .and_then(super::partner::parse_host_port)
        .unwrap_or_else(|| (edge.to_string(), 5061));
    StreamTarget {
        transport: Transport::Tls,
        host,
        port,
        server_name: Some(edge.to_string()),
        tag: Role::Federation.tag(),
        max_conns,
    }
}

/// The answer when a partner's edge (or the home pool) cannot be reached.
pub fn forward_failed(role: Role, err: &ConnectError) -> Reject {
    let toward_partner = role == Role::Internal;
    match err {
        ConnectError::Tls {
            name_mismatch: true,
            ..
        } => Reject::new(
            504,
            format!("{err}: the partner's certificate does not name its edge FQDN"),
        )
        .diag(diag::CERTIFICATE),
        ConnectError::Tls { .. } => Reject::new(504, err.to_string()).diag(diag::TLS_FAILED),
        ConnectError::Resolve { .. } => Reject::new(504, err.to_string()).diag(diag::NO_A_RECORD),
        ConnectError::Connect { .. } | ConnectError::Timeout { .. } if toward_partner => {
            Reject::new(504, err.to_string()).diag(diag::TLS_FAILED)
        }
        _ => Reject::new(503, err.to_string()).diag(diag::TEMPORARILY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::product::Version;
    use crate::sip::parse::{Limits, find_head_end, parse_framed};
    use std::net::SocketAddr;

    fn partner(id: &str, domains: &[&str], edge: Option<&str>, state: PartnerState) -> Partner {
        crate::federation::partner::sample(id, domains, edge, state)
    }

    fn snapshot() -> Snapshot {
        let mut lab = partner(
            "l",
            &["lab.test"],
            Some("sip.lab.test"),
            PartnerState::Enabled,
        );
        lab.details.product_check = Some("off".into());
        Snapshot::build(
            1,
            vec![
                partner("a", &["a.test"], Some("sip.a.test"), PartnerState::Enabled),
                partner(
                    "b",
                    &["b.test"],
                    Some("sip.b.test"),
                    PartnerState::Suspended,
                ),
                partner(
                    "n",
                    &["new.test"],
                    Some("sip.new.test"),
                    PartnerState::Approved,
                ),
                partner(
                    "h1",
                    &["h1.test"],
                    Some("edge.host.test"),
                    PartnerState::Enabled,
                ),
                partner(
                    "h2",
                    &["h2.test"],
                    Some("edge.host.test"),
                    PartnerState::Enabled,
                ),
                lab,
            ],
        )
    }

    fn cfg() -> PolicyConfig {
        PolicyConfig {
            fqdn: "sip.fedge.test".into(),
            home_domains: vec!["fedge.test".into()],
            next_hop: Hop::Udp(SocketAddr::from(([127, 0, 0, 1], 5080))),
            local_addrs: vec![IpAddr::from([127, 0, 0, 1])],
            partner_connections: 4,
            content: content::Rules {
                body_types: crate::config::DEFAULT_BODY_TYPES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                max_body: 65536,
            },
            products: Minimums {
                client: Version::parse("4.0.7577.4103").unwrap(),
                server: Version::parse("4.0").unwrap(),
                allow_other: false,
            },
            test_user: "federation-test".into(),
        }
    }

    /// A request; `extra` are header lines, `body` goes with `ct`.
    fn req(
        method: &str,
        ruri: &str,
        from: &str,
        to: &str,
        extra: &str,
        ct: &str,
        body: &str,
    ) -> SipMessage {
        let ct_line = if ct.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ct}\r\n")
        };
        let s = format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS x.test;branch=z9hG4bKp\r\nMax-Forwards: 70\r\n\
             From: <{from}>;tag=f\r\nTo: <{to}>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n{extra}{ct_line}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let raw = bytes::Bytes::from(s);
        let he = find_head_end(&raw, 0).unwrap();
        parse_framed(raw, he, &Limits::default()).unwrap()
    }

    fn msg(method: &str, ruri: &str, from: &str, to: &str) -> SipMessage {
        req(method, ruri, from, to, "", "", "")
    }

    fn id(names: &[&str]) -> PeerIdentity {
        PeerIdentity {
            names: names.iter().map(|s| s.to_string()).collect(),
            from_cn: false,
            subject: String::new(),
            serial: String::new(),
        }
    }

    fn inbound_of(m: &SipMessage, peer: &[&str]) -> Verdict {
        decide(
            m,
            Role::Federation,
            Some(&id(peer)),
            &RequestInfo::default(),
            &snapshot(),
            &cfg(),
            None,
        )
    }

    fn reject(v: &Verdict) -> (u16, u16, Option<u16>, String) {
        match &v.decision {
            Decision::Reject(r) => (
                r.status,
                r.warn_code,
                r.diagnostic.map(|d| d.0),
                r.reason.clone(),
            ),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// Identity and routing, inbound: one row per rule.
    #[test]
    fn inbound_table() {
        type Row<'a> = (&'a [&'a str], &'a str, &'a str, u16, u16, &'a str, &'a str);
        let rows: &[Row] = &[
            (
                &["sip.z.test"],
                "sip:x@z.test",
                "sip:bob@fedge.test",
                403,
                1002,
                "unknown_domain",
                "domain z.test is not a federation partner",
            ),
            (
                &["sip.a.test"],
                "sip:x@z.test",
                "sip:bob@fedge.test",
                403,
                1002,
                "unknown_domain",
                "is not a domain of partner Org a",
            ),
            (
                &["sip.a.test"],
                "sip:x@b.test",
                "sip:bob@fedge.test",
                403,
                1010,
                "spoofed_domain",
                "belongs to partner Org b whose edge is sip.b.test",
            ),
            (
                &["sip.b.test"],
                "sip:x@b.test",
                "sip:bob@fedge.test",
                403,
                1002,
                "not_enabled",
                "partner Org b (domain b.test) is suspended",
            ),
            (
                &["sip.new.test"],
                "sip:x@new.test",
                "sip:bob@fedge.test",
                403,
                1002,
                "not_enabled",
                "approved but not yet enabled: until then only sip:federation-test@fedge.test",
            ),
            (
                &["sip.a.test"],
                "sip:x@a.test",
                "sip:y@h1.test",
                403,
                1017,
                "transit",
                "domain h1.test is not served here",
            ),
            (
                &["edge.host.test"],
                "sip:x@h1.test",
                "sip:y@lab.test",
                403,
                1017,
                "transit",
                "not served here",
            ),
        ];
        for (names, from, ruri, status, code, rule, frag) in rows {
            let v = inbound_of(&msg("MESSAGE", ruri, from, ruri), names);
            let (s, _, c, reason) = reject(&v);
            assert_eq!(
                (s, c, v.rule),
                (*status, Some(*code), *rule),
                "{names:?} {from} -> {ruri}: {reason}"
            );
            assert!(reason.contains(frag), "{reason:?} lacks {frag:?}");
        }
        // Admitted: to the next hop, trust header replaced, partner named.
        for (names, from) in [
            (&["sip.a.test"][..], "sip:x@a.test"),
            (&["edge.host.test"][..], "sip:x@h2.test"),
        ] {
            let v = inbound_of(
                &msg("INVITE", "sip:bob@FEDGE.test", from, "sip:bob@fedge.test"),
                names,
            );
            match &v.decision {
                Decision::Forward(f) => {
                    assert_eq!(f.leg, Role::Internal.side());
                    assert_eq!(f.hop, cfg().next_hop);
                    assert_eq!(f.strip, [TRUST_HEADER]);
                    assert!(
                        f.add[0]
                            .1
                            .starts_with("ms-source-type=DirectPartner;ms-ep-fqdn=sip.fedge.test")
                    );
                    assert_eq!(f.hide, Hide::Destination);
                }
                other => panic!("{other:?}"),
            }
            assert!(v.partner.is_some());
        }
        // In dialog the To domain counts (the Request-URI is a Contact address).
        let m = msg(
            "BYE",
            "sip:bob@192.0.2.10:5060",
            "sip:x@a.test",
            "sip:bob@fedge.test",
        );
        let info = RequestInfo {
            in_dialog: true,
            ..RequestInfo::default()
        };
        let v = decide(
            &m,
            Role::Federation,
            Some(&id(&["sip.a.test"])),
            &info,
            &snapshot(),
            &cfg(),
            None,
        );
        assert!(matches!(v.decision, Decision::Forward(_)));
        // OPTIONS to the edge itself is answered.
        let v = inbound_of(
            &msg(
                "OPTIONS",
                "sip:sip.fedge.test",
                "sip:x@z.test",
                "sip:sip.fedge.test",
            ),
            &["sip.z.test"],
        );
        assert!(matches!(v.decision, Decision::Answer { status: 200, .. }));
    }

    /// The onboarding test address: approved and enabled partners may reach it.
    #[test]
    fn im_test_address() {
        for (peer, from) in [
            ("sip.new.test", "sip:tech@new.test"),
            ("sip.a.test", "sip:tech@a.test"),
        ] {
            let v = inbound_of(
                &msg(
                    "MESSAGE",
                    "sip:federation-test@fedge.test",
                    from,
                    "sip:federation-test@fedge.test",
                ),
                &[peer],
            );
            assert!(
                v.im_test && matches!(v.decision, Decision::Answer { status: 200, .. }),
                "{peer}: {v:?}"
            );
        }
        let v = inbound_of(
            &msg(
                "INVITE",
                "sip:federation-test@fedge.test",
                "sip:tech@new.test",
                "sip:x@fedge.test",
            ),
            &["sip.new.test"],
        );
        assert_eq!(reject(&v).0, 405);
        let v = inbound_of(
            &msg(
                "MESSAGE",
                "sip:federation-test@fedge.test",
                "sip:x@b.test",
                "sip:x@fedge.test",
            ),
            &["sip.b.test"],
        );
        assert_eq!(
            (reject(&v).0, v.rule),
            (403, "not_enabled"),
            "a suspended partner may not test"
        );
    }

    /// Products and content, inbound: one row per rule.
    #[test]
    fn inbound_product_and_content_table() {
        const FT: &str = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=data 7000 TCP/RTP/AVP 127\r\n\r\n--b\r\nContent-Type: application/ms-filetransfer+xml\r\n\r\n<request/>\r\n--b--\r\n";
        type Row<'a> = (
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            u16,
            u16,
            &'a str,
            &'a str,
        );
        let rows: &[Row] = &[
            (
                "sip.a.test",
                "sip:x@a.test",
                "User-Agent: Cisco-Jabber/12.9.3 (Windows)\r\n",
                "",
                "",
                403,
                399,
                "product",
                "Cisco-Jabber/12.9.3 is not Lync",
            ),
            (
                "sip.a.test",
                "sip:x@a.test",
                "User-Agent: UCCAPI/4.0.7577.314 OC/4.0.7577.314 (Microsoft Lync 2010)\r\n",
                "",
                "",
                403,
                399,
                "product",
                "4.0.7577.314 is older than the oldest accepted, 4.0.7577.4103",
            ),
            (
                "sip.a.test",
                "sip:x@a.test",
                "",
                "multipart/mixed;boundary=b",
                FT,
                606,
                309,
                "file_transfer",
                "File transfer is switched off",
            ),
            (
                "sip.a.test",
                "sip:x@a.test",
                "Require: siprec\r\n",
                "application/sdp",
                "v=0\r\n",
                403,
                399,
                "recording",
                "Recording is switched off",
            ),
            (
                "sip.a.test",
                "sip:x@a.test",
                "",
                "application/x-shockwave-flash",
                "CWS",
                415,
                399,
                "body_type",
                "application/x-shockwave-flash may not cross",
            ),
        ];
        for (peer, from, extra, ct, body, status, warn, rule, frag) in rows {
            let m = req(
                "INVITE",
                "sip:bob@fedge.test",
                from,
                "sip:bob@fedge.test",
                extra,
                ct,
                body,
            );
            let v = inbound_of(&m, &[peer]);
            let (s, w, _, reason) = reject(&v);
            assert_eq!((s, w, v.rule), (*status, *warn, *rule), "{reason}");
            assert!(reason.contains(frag), "{reason:?} lacks {frag:?}");
        }
        // Good products pass; a lab partner may use any product.
        for ua in [
            "UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)",
            "RTCC/6.0.0.0 ConfServer",
        ] {
            let m = req(
                "MESSAGE",
                "sip:bob@fedge.test",
                "sip:x@a.test",
                "sip:bob@fedge.test",
                &format!("User-Agent: {ua}\r\n"),
                "text/plain",
                "hi",
            );
            assert_eq!(inbound_of(&m, &["sip.a.test"]).rule, "forward", "{ua}");
        }
        let m = req(
            "MESSAGE",
            "sip:bob@fedge.test",
            "sip:x@lab.test",
            "sip:bob@fedge.test",
            "User-Agent: Cisco-Jabber/12.9.3\r\n",
            "",
            "",
        );
        assert_eq!(inbound_of(&m, &["sip.lab.test"]).rule, "forward");
        // P-Asserted-Identity naming another domain is removed.
        let m = req(
            "MESSAGE",
            "sip:bob@fedge.test",
            "sip:x@a.test",
            "sip:bob@fedge.test",
            "P-Asserted-Identity: <sip:ceo@fedge.test>\r\n",
            "",
            "",
        );
        let v = inbound_of(&m, &["sip.a.test"]);
        let Decision::Forward(f) = &v.decision else {
            panic!("{v:?}")
        };
        assert!(
            f.strip.iter().any(|h| h == "P-Asserted-Identity") && v.rule == "forward_pai_removed"
        );
        let m = req(
            "MESSAGE",
            "sip:bob@fedge.test",
            "sip:x@a.test",
            "sip:bob@fedge.test",
            "P-Asserted-Identity: <sip:x@a.test>\r\n",
            "",
            "",
        );
        let Decision::Forward(f) = inbound_of(&m, &["sip.a.test"]).decision else {
            panic!()
        };
        assert!(!f.strip.iter().any(|h| h == "P-Asserted-Identity"));
    }

    #[test]
    fn outbound_table() {
        let snap = snapshot();
        type Row<'a> = (&'a str, &'a str, u16, u16, &'a str, &'a str);
        let rows: &[Row] = &[
            (
                "sip:x@a.test",
                "sip:y@a.test",
                403,
                1017,
                "foreign_from",
                "From domain a.test is not a home domain",
            ),
            (
                "sip:x@fedge.test",
                "sip:y@z.test",
                404,
                1005,
                "unknown_domain",
                "no federation partner serves domain z.test",
            ),
            (
                "sip:x@fedge.test",
                "sip:y@fedge.test",
                404,
                1005,
                "unknown_domain",
                "is a home domain",
            ),
            (
                "sip:x@fedge.test",
                "sip:y@b.test",
                403,
                1005,
                "not_enabled",
                "partner Org b (domain b.test) is suspended",
            ),
        ];
        for (from, ruri, status, code, rule, frag) in rows {
            let v = decide(
                &msg("MESSAGE", ruri, from, ruri),
                Role::Internal,
                None,
                &RequestInfo::default(),
                &snap,
                &cfg(),
                None,
            );
            let (s, _, c, reason) = reject(&v);
            assert_eq!(
                (s, c, v.rule),
                (*status, Some(*code), *rule),
                "{from} -> {ruri}: {reason}"
            );
            assert!(reason.contains(frag), "{reason:?} lacks {frag:?}");
        }
        // File transfer is refused outbound too.
        let m = req(
            "INFO",
            "sip:y@a.test",
            "sip:x@fedge.test",
            "sip:y@a.test",
            "",
            "application/ms-filetransfer+xml",
            "<response/>",
        );
        let v = decide(
            &m,
            Role::Internal,
            None,
            &RequestInfo::default(),
            &snap,
            &cfg(),
            None,
        );
        assert_eq!((reject(&v).0, reject(&v).1), (606, 309));
        let v = decide(
            &msg(
                "MESSAGE",
                "sip:y@a.test",
                "sip:x@fedge.test",
                "sip:y@a.test",
            ),
            Role::Internal,
            None,
            &RequestInfo::default(),
            &snap,
            &cfg(),
            None,
        );
        match v.decision {
            Decision::Forward(f) => {
                assert_eq!(f.leg, Role::Federation.side());
                let Hop::Stream(t) = f.hop else { panic!() };
                assert_eq!(
                    (t.host.as_str(), t.port, t.server_name.as_deref()),
                    ("sip.a.test", 5061, Some("sip.a.test"))
                );
                assert_eq!(t.max_conns, 4);
                assert!(f.strip.iter().any(|s| s == "ms-diagnostics"));
                assert_eq!(f.hide, Hide::Source);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connection_failures_carry_sfb_codes() {
        let t = |name_mismatch| ConnectError::Tls {
            target: "t".into(),
            detail: "d".into(),
            name_mismatch,
        };
        assert_eq!(
            forward_failed(Role::Internal, &t(true))
                .diagnostic
                .map(|d| d.0),
            Some(1010)
        );
        assert_eq!(
            forward_failed(Role::Internal, &t(false))
                .diagnostic
                .map(|d| d.0),
            Some(1047)
        );
        let r = forward_failed(
            Role::Internal,
            &ConnectError::Resolve {
                host: "h".into(),
                detail: "nx".into(),
            },
        );
        assert_eq!((r.status, r.diagnostic.map(|d| d.0)), (504, Some(1014)));
        let r = forward_failed(
            Role::Federation,
            &ConnectError::Timeout {
                target: "pool".into(),
            },
        );
        assert_eq!(r.status, 503);
    }

    #[test]
    fn allowed_domain_partners_are_found_and_checked_by_srv() {
        let snap = Snapshot::build(
            1,
            vec![
                partner("d", &["dom.test"], None, PartnerState::Enabled),
                partner("a", &["a.test"], Some("sip.a.test"), PartnerState::Enabled),
            ],
        );
        let t = |target: &str, port: u16| SrvTarget {
            priority: 0,
            weight: 0,
            port,
            target: target.into(),
        };
        let facts = |answer: SrvAnswer| SrvFacts {
            domain: "dom.test".into(),
            answer,
        };
        let inbound = msg(
            "MESSAGE",
            "sip:x@fedge.test",
            "sip:y@dom.test",
            "sip:x@fedge.test",
        );
        let outbound = msg(
            "MESSAGE",
            "sip:y@dom.test",
            "sip:x@fedge.test",
            "sip:y@dom.test",
        );
        let info = RequestInfo::default();
        // Which domain needs looking up: only the allowed-domain partner's.
        assert_eq!(
            srv_needed(&inbound, Role::Federation, &info, &snap).as_deref(),
            Some("dom.test")
        );
        assert_eq!(
            srv_needed(&outbound, Role::Internal, &info, &snap).as_deref(),
            Some("dom.test")
        );
        let pinned = msg(
            "MESSAGE",
            "sip:y@a.test",
            "sip:x@fedge.test",
            "sip:y@a.test",
        );
        assert_eq!(srv_needed(&pinned, Role::Internal, &info, &snap), None);

        let good = facts(SrvAnswer::Targets(vec![t("sip.dom.test", 5071)]));
        let elsewhere = facts(SrvAnswer::Targets(vec![
            t("sip.sub.dom.test", 5061),
            t("edge.other.test", 5061),
        ]));
        let missing = facts(SrvAnswer::NotFound);
        let failed = facts(SrvAnswer::Failed("timed out".into()));
        let other_domain = SrvFacts {
            domain: "else.test".into(),
            answer: SrvAnswer::Targets(vec![t("sip.else.test", 5061)]),
        };
        let decide_in = |peer: &str, f: &SrvFacts| {
            decide(
                &inbound,
                Role::Federation,
                Some(&id(&[peer])),
                &info,
                &snap,
                &cfg(),
                Some(f),
            )
        };
        // Inbound: the certificate must name the SRV target.
        assert!(matches!(
            decide_in("sip.dom.test", &good).decision,
            Decision::Forward(_)
        ));
        let rows: [(&str, &SrvFacts, u16, u16, &str, &str); 5] = [
            (
                "sip.evil.test",
                &good,
                403,
                1010,
                "spoofed_domain",
                "but _sipfederationtls._tcp.dom.test names sip.dom.test",
            ),
            (
                "sip.sub.dom.test",
                &elsewhere,
                504,
                1009,
                "srv_domain",
                "not directly in dom.test (the same-domain rule)",
            ),
            (
                "sip.dom.test",
                &missing,
                403,
                1008,
                "no_srv",
                "publishes no _sipfederationtls._tcp.dom.test SRV record",
            ),
            (
                "sip.dom.test",
                &failed,
                504,
                1008,
                "dns_failed",
                "failed: timed out",
            ),
            (
                "sip.dom.test",
                &other_domain,
                504,
                1008,
                "dns_failed",
                "was not looked up",
            ),
        ];
        for (peer, f, status, code, rule, frag) in rows {
            let v = decide_in(peer, f);
            let (s, _, c, reason) = reject(&v);
            assert_eq!(
                (s, c, v.rule),
                (status, Some(code), rule),
                "{peer}: {reason}"
            );
            assert!(reason.contains(frag), "{reason}");
        }
        // Outbound: to the SRV target and port, its certificate checked against the target.
        let v = decide(
            &outbound,
            Role::Internal,
            None,
            &info,
            &snap,
            &cfg(),
            Some(&good),
        );
        let Decision::Forward(f) = v.decision else {
            panic!("{:?}", v.rule)
        };
        let Hop::Stream(st) = f.hop else { panic!() };
        assert_eq!(
            (st.host.as_str(), st.port, st.server_name.as_deref()),
            ("sip.dom.test", 5071, Some("sip.dom.test"))
        );
        for (f, status, code, rule) in [
            (&elsewhere, 504, 1009, "srv_domain"),
            (&missing, 504, 1008, "no_srv"),
            (&failed, 504, 1008, "dns_failed"),
        ] {
            let v = decide(
                &outbound,
                Role::Internal,
                None,
                &info,
                &snap,
                &cfg(),
                Some(f),
            );
            let (s, _, c, reason) = reject(&v);
            assert_eq!((s, c, v.rule), (status, Some(code), rule), "{reason}");
        }
    }
}
