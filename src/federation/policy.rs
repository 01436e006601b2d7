//! The one place that decides what crosses the edge.
//!
//! [`decide`] is a pure function of the message, the authenticated peer,
//! the registry snapshot and the configuration. It returns the proxy's
//! [`Decision`]: forward (where, with which header edits) or refuse (status,
//! Warning reason and the SfB `ms-diagnostics-public` code). It performs no
//! I/O, so every rule is tested without sockets.

use std::net::IpAddr;

use super::partner::{Partner, PartnerState};
use super::registry::Snapshot;
use crate::sip::message::{Method, SipMessage};
use crate::sip::proxy::{Decision, Forward, Hop, Reject, RequestInfo};
use crate::sip::transport::outbound::{ConnectError, StreamTarget};
use crate::sip::transport::{PeerIdentity, Role, Transport};
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
    pub const CERTIFICATE: (u16, &str) = (
        1010,
        "Certificate trust with another server could not be established",
    );
    pub const NO_A_RECORD: (u16, &str) = (1014, "Unable to resolve DNS A record");
    pub const DOMAIN_COMBINATION: (u16, &str) =
        (1017, "Cannot route From and To domains in this combination");
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
}

impl PolicyConfig {
    fn is_home(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        self.home_domains.iter().any(|h| h.eq_ignore_ascii_case(d))
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

fn refuse(status: u16, reason: impl Into<String>, d: (u16, &'static str)) -> Decision {
    Decision::Reject(Reject::new(status, reason).diag(d))
}

fn options_answer() -> Decision {
    Decision::Answer {
        status: 200,
        headers: vec![
            ("Allow".into(), ALLOW.into()),
            ("Supported".into(), PROXY_EXTENSIONS.join(", ")),
            ("Accept".into(), "application/sdp".into()),
        ],
    }
}

/// Decides a request that passed the generic protocol checks.
pub fn decide(
    msg: &SipMessage,
    role: Role,
    peer: Option<&PeerIdentity>,
    info: &RequestInfo,
    snap: &Snapshot,
    cfg: &PolicyConfig,
) -> Decision {
    let method = msg.method().cloned().unwrap_or(Method::Other("".into()));
    if method == Method::Options
        && !info.in_dialog
        && info.next_route.is_none()
        && addressed_to_edge(msg, cfg)
    {
        return options_answer();
    }
    match role {
        Role::Federation => inbound(msg, peer, info, snap, cfg),
        Role::Internal => outbound(msg, info, snap, cfg),
    }
}

/// Partner to home.
fn inbound(
    msg: &SipMessage,
    peer: Option<&PeerIdentity>,
    info: &RequestInfo,
    snap: &Snapshot,
    cfg: &PolicyConfig,
) -> Decision {
    let Some(peer) = peer else {
        return refuse(
            403,
            "no authenticated certificate on this connection",
            diag::CERTIFICATE,
        );
    };
    let Some(from_domain) = msg.from().and_then(|f| domain_of(&f.uri)) else {
        return refuse(403, "the From URI has no domain", diag::NOT_AUTHORIZED);
    };
    let partner: &Partner = match snap.by_domain(&from_domain) {
        Some(p) => p,
        None => {
            let reason = match snap.by_identity(peer).first() {
                Some(p) => format!(
                    "From domain {from_domain} is not a domain of partner {}, whose edge (certificate {peer}) this connection comes from",
                    p.details.org_name
                ),
                None => format!("domain {from_domain} is not a federation partner of this service"),
            };
            return refuse(403, reason, diag::NOT_AUTHORIZED);
        }
    };
    let edge_ok = partner
        .details
        .edge_fqdn
        .as_deref()
        .is_some_and(|f| peer.matches(f));
    if !edge_ok {
        let reason = format!(
            "certificate names {peer}, but domain {from_domain} belongs to partner {} whose edge is {}",
            partner.details.org_name,
            partner
                .details
                .edge_fqdn
                .as_deref()
                .unwrap_or("found by DNS SRV")
        );
        return refuse(403, reason, diag::CERTIFICATE);
    }
    if partner.state != PartnerState::Enabled {
        let reason = format!(
            "partner {} (domain {from_domain}) is {}",
            partner.details.org_name, partner.state
        );
        return refuse(403, reason, diag::NOT_AUTHORIZED);
    }
    match target_domain(msg, info) {
        Some(d) if cfg.is_home(&d) => {}
        Some(d) => {
            let reason = format!(
                "domain {d} is not served here: partners may reach {} only",
                cfg.home_domains.join(", ")
            );
            return refuse(403, reason, diag::DOMAIN_COMBINATION);
        }
        None => {
            return refuse(
                403,
                "the request names no destination domain",
                diag::CANNOT_ROUTE,
            );
        }
    }
    let trust = format!(
        "ms-source-type=DirectPartner;ms-ep-fqdn={};ms-source-verified-user=verified;ms-source-network=federation",
        cfg.fqdn
    );
    Decision::Forward(Forward {
        leg: Role::Internal,
        hop: cfg.next_hop.clone(),
        strip: vec![TRUST_HEADER.into()],
        add: vec![(TRUST_HEADER.into(), trust)],
    })
}

/// Home to partner.
fn outbound(msg: &SipMessage, info: &RequestInfo, snap: &Snapshot, cfg: &PolicyConfig) -> Decision {
    match msg.from().and_then(|f| domain_of(&f.uri)) {
        Some(d) if cfg.is_home(&d) => {}
        other => {
            let reason = format!(
                "From domain {} is not a home domain; the edge relays home users only",
                other.unwrap_or_else(|| "(none)".into())
            );
            return refuse(403, reason, diag::DOMAIN_COMBINATION);
        }
    }
    let Some(domain) = target_domain(msg, info) else {
        return refuse(
            404,
            "the request names no destination domain",
            diag::CANNOT_ROUTE,
        );
    };
    let Some(partner) = snap.by_domain(&domain) else {
        let reason = if cfg.is_home(&domain) {
            format!("domain {domain} is a home domain; the edge routes to federation partners only")
        } else {
            format!("no federation partner serves domain {domain}")
        };
        return refuse(404, reason, diag::CANNOT_ROUTE);
    };
    if partner.state != PartnerState::Enabled {
        let reason = format!(
            "partner {} (domain {domain}) is {}",
            partner.details.org_name, partner.state
        );
        return refuse(403, reason, diag::CANNOT_ROUTE);
    }
    let Some(edge) = &partner.details.edge_fqdn else {
        let reason = format!(
            "partner {} has no edge FQDN and this edge does not route by DNS SRV yet",
            partner.details.org_name
        );
        return refuse(504, reason, diag::NO_SRV);
    };
    let (host, port) = partner
        .details
        .address
        .as_deref()
        .and_then(super::partner::parse_host_port)
        .unwrap_or_else(|| (edge.clone(), 5061));
    Decision::Forward(Forward {
        leg: Role::Federation,
        hop: Hop::Stream(StreamTarget {
            transport: Transport::Tls,
            host,
            port,
            server_name: Some(edge.clone()),
            role: Role::Federation,
            max_conns: cfg.partner_connections,
        }),
        strip: vec![TRUST_HEADER.into(), "ms-diagnostics".into()],
        add: Vec::new(),
    })
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
    use crate::sip::parse::{Limits, find_head_end, parse_framed};
    use std::net::SocketAddr;

    fn partner(id: &str, domains: &[&str], edge: Option<&str>, state: PartnerState) -> Partner {
        crate::federation::partner::sample(id, domains, edge, state)
    }

    fn snapshot() -> Snapshot {
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
                partner(
                    "l",
                    &["lab.test"],
                    Some("sip.lab.test"),
                    PartnerState::Enabled,
                ),
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
        }
    }

    fn msg(method: &str, ruri: &str, from: &str, to: &str) -> SipMessage {
        let s = format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS x.test;branch=z9hG4bKp\r\nMax-Forwards: 70\r\n\
             From: <{from}>;tag=f\r\nTo: <{to}>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        let raw = bytes::Bytes::from(s);
        let he = find_head_end(&raw, 0).unwrap();
        parse_framed(raw, he, &Limits::default()).unwrap()
    }

    fn id(names: &[&str]) -> PeerIdentity {
        PeerIdentity {
            names: names.iter().map(|s| s.to_string()).collect(),
            from_cn: false,
            subject: String::new(),
            serial: String::new(),
        }
    }

    fn reject(d: Decision) -> (u16, Option<u16>, String) {
        match d {
            Decision::Reject(r) => (r.status, r.diagnostic.map(|d| d.0), r.reason),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// Inbound rules, one row each: (peer names, From, R-URI, status, code, reason fragment).
    #[test]
    fn inbound_table() {
        let snap = snapshot();
        type Row<'a> = (&'a [&'a str], &'a str, &'a str, u16, u16, &'a str);
        let rows: &[Row] = &[
            (
                &["sip.z.test"],
                "sip:x@z.test",
                "sip:bob@fedge.test",
                403,
                1002,
                "domain z.test is not a federation partner",
            ),
            (
                &["sip.a.test"],
                "sip:x@z.test",
                "sip:bob@fedge.test",
                403,
                1002,
                "is not a domain of partner Org a",
            ),
            (
                &["sip.a.test"],
                "sip:x@b.test",
                "sip:bob@fedge.test",
                403,
                1010,
                "belongs to partner Org b whose edge is sip.b.test",
            ),
            (
                &["sip.b.test"],
                "sip:x@b.test",
                "sip:bob@fedge.test",
                403,
                1002,
                "partner Org b (domain b.test) is suspended",
            ),
            (
                &["sip.a.test"],
                "sip:x@a.test",
                "sip:y@h1.test",
                403,
                1017,
                "domain h1.test is not served here",
            ),
            (
                &["edge.host.test"],
                "sip:x@h1.test",
                "sip:y@lab.test",
                403,
                1017,
                "not served here",
            ),
        ];
        for (names, from, ruri, status, code, frag) in rows {
            let m = msg("MESSAGE", ruri, from, ruri);
            let (s, c, reason) = reject(decide(
                &m,
                Role::Federation,
                Some(&id(names)),
                &RequestInfo::default(),
                &snap,
                &cfg(),
            ));
            assert_eq!(
                (s, c),
                (*status, Some(*code)),
                "{names:?} {from} -> {ruri}: {reason}"
            );
            assert!(reason.contains(frag), "{reason:?} lacks {frag:?}");
        }
        // Admitted: to the next hop, trust header replaced.
        for (names, from) in [
            (&["sip.a.test"][..], "sip:x@a.test"),
            (&["edge.host.test"][..], "sip:x@h2.test"),
        ] {
            let m = msg("INVITE", "sip:bob@FEDGE.test", from, "sip:bob@fedge.test");
            match decide(
                &m,
                Role::Federation,
                Some(&id(names)),
                &RequestInfo::default(),
                &snap,
                &cfg(),
            ) {
                Decision::Forward(f) => {
                    assert_eq!(f.leg, Role::Internal);
                    assert_eq!(f.hop, cfg().next_hop);
                    assert_eq!(f.strip, [TRUST_HEADER]);
                    assert!(
                        f.add[0]
                            .1
                            .starts_with("ms-source-type=DirectPartner;ms-ep-fqdn=sip.fedge.test")
                    );
                }
                other => panic!("{other:?}"),
            }
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
        assert!(matches!(
            decide(
                &m,
                Role::Federation,
                Some(&id(&["sip.a.test"])),
                &info,
                &snap,
                &cfg()
            ),
            Decision::Forward(_)
        ));
        // OPTIONS to the edge itself is answered.
        let m = msg(
            "OPTIONS",
            "sip:sip.fedge.test",
            "sip:x@z.test",
            "sip:sip.fedge.test",
        );
        assert!(matches!(
            decide(
                &m,
                Role::Federation,
                Some(&id(&["sip.z.test"])),
                &RequestInfo::default(),
                &snap,
                &cfg()
            ),
            Decision::Answer { status: 200, .. }
        ));
    }

    #[test]
    fn outbound_table() {
        let snap = snapshot();
        let rows: &[(&str, &str, u16, u16, &str)] = &[
            (
                "sip:x@a.test",
                "sip:y@a.test",
                403,
                1017,
                "From domain a.test is not a home domain",
            ),
            (
                "sip:x@fedge.test",
                "sip:y@z.test",
                404,
                1005,
                "no federation partner serves domain z.test",
            ),
            (
                "sip:x@fedge.test",
                "sip:y@fedge.test",
                404,
                1005,
                "is a home domain",
            ),
            (
                "sip:x@fedge.test",
                "sip:y@b.test",
                403,
                1005,
                "partner Org b (domain b.test) is suspended",
            ),
        ];
        for (from, ruri, status, code, frag) in rows {
            let m = msg("MESSAGE", ruri, from, ruri);
            let (s, c, reason) = reject(decide(
                &m,
                Role::Internal,
                None,
                &RequestInfo::default(),
                &snap,
                &cfg(),
            ));
            assert_eq!((s, c), (*status, Some(*code)), "{from} -> {ruri}: {reason}");
            assert!(reason.contains(frag), "{reason:?} lacks {frag:?}");
        }
        let m = msg(
            "MESSAGE",
            "sip:y@a.test",
            "sip:x@fedge.test",
            "sip:y@a.test",
        );
        match decide(
            &m,
            Role::Internal,
            None,
            &RequestInfo::default(),
            &snap,
            &cfg(),
        ) {
            Decision::Forward(f) => {
                assert_eq!(f.leg, Role::Federation);
                let Hop::Stream(t) = f.hop else { panic!() };
                assert_eq!(
                    (t.host.as_str(), t.port, t.server_name.as_deref()),
                    ("sip.a.test", 5061, Some("sip.a.test"))
                );
                assert_eq!(t.max_conns, 4);
                assert!(f.strip.iter().any(|s| s == "ms-diagnostics"));
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
}
