//! Every reason the federation edge refuses a request, as one type.
//!
//! Owns, per refusal: the SIP status, the Warning code, the SfB
//! `ms-diagnostics-public` code ([`diag`]), the metrics label
//! (`fedge_rejections_total{rule}`), the extra headers of the answer
//! (Accept, Allow, Retry-After) and the reason a person reads (its
//! `Display`, which goes into the Warning and the log line). Never decides
//! whether to refuse: `policy`, `identity` and the rate limits do, and the
//! proxy carries the answer out.

use std::fmt;
use std::time::Duration;

use crate::media::MediaError;
use crate::model::partner::PartnerState;
use crate::sip::proxy::Reject;
use crate::sip::response::quote;
use crate::sip::transport::outbound::ConnectError;

use super::product::ProductRefusal;

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

/// The Warning code SfB's IM filter uses for refused content.
pub const WARN_CONTENT: u16 = 309;

/// The usual Warning code of a refusal.
pub const WARN_MISC: u16 = 399;

/// Which way a refused request was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Partner to home.
    Inbound,
    /// Home to partner.
    Outbound,
}

/// Why the next hop could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// TLS succeeded but the certificate does not name the partner's edge.
    CertificateName,
    Tls,
    Resolve,
    /// No connection (or a timeout) towards a partner's edge.
    PartnerConnect,
    /// No connection (or a timeout) towards the home pool.
    Other,
}

fn srv_name(domain: &str) -> String {
    format!("_sipfederationtls._tcp.{domain}")
}

/// A request the edge will not carry, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A request arrived on a listener that is not the federation's.
    WrongListener,
    NoCertificate,
    NoFromDomain,
    /// The From domain belongs to no partner.
    NotPartnerDomain {
        domain: String,
    },
    /// The From domain is not a domain of the partner whose edge the
    /// certificate names.
    NotThisPartnersDomain {
        domain: String,
        org: String,
        certificate: String,
    },
    /// The certificate does not name the pinned edge of the From domain's partner.
    SpoofedEdge {
        certificate: String,
        domain: String,
        org: String,
        edge: String,
    },
    /// The certificate names none of the SRV targets of the From domain.
    SpoofedSrv {
        certificate: String,
        domain: String,
        targets: Vec<String>,
    },
    /// The SRV records name hosts outside the domain (the same-domain rule).
    SrvOutsideDomain {
        domain: String,
        targets: Vec<String>,
        org: String,
    },
    NoSrv {
        domain: String,
        org: String,
        direction: Direction,
    },
    DnsFailed {
        domain: String,
        error: String,
    },
    DnsNotLookedUp {
        domain: String,
    },
    /// The test address answers MESSAGE and OPTIONS only.
    ImTestMethod,
    /// An approved partner may reach the IM test address only.
    NotYetEnabled {
        org: String,
        domain: String,
        test_address: String,
    },
    NotEnabled {
        org: String,
        domain: String,
        state: PartnerState,
        direction: Direction,
    },
    /// A partner asks for a domain that is not a home domain.
    Transit {
        domain: String,
        home: String,
    },
    NoDestination {
        direction: Direction,
    },
    Product(ProductRefusal),
    FileTransfer {
        what: &'static str,
    },
    Recording {
        what: &'static str,
    },
    /// A body part of a type not allowed (`(none)` without a Content-Type).
    BodyType {
        media_type: String,
        accepted: String,
    },
    BodyTooLarge {
        size: usize,
        max: usize,
    },
    /// From a domain that is not a home domain, outbound.
    ForeignFrom {
        domain: Option<String>,
    },
    /// Outbound to a domain no partner serves.
    UnknownDestination {
        domain: String,
        home: bool,
    },
    RateLimited {
        org: String,
        rate: u32,
        retry_after: u64,
    },
    /// The edge is behind and this partner went over its rate recently:
    /// all its requests are shed until it cools down.
    Overloaded {
        org: String,
        rate: u32,
        retry_after: u64,
    },
    Enumeration {
        org: String,
        limit: u32,
        window: Duration,
    },
    /// The SDP cannot be relayed.
    MediaSdp {
        detail: String,
    },
    /// The relay cannot carry the call now.
    MediaUnavailable {
        detail: String,
    },
    /// The next hop (a partner's edge or the home pool) cannot be reached.
    NextHop {
        kind: Unreachable,
        detail: String,
    },
    /// This node is draining (`fedge drain`, SIGTERM): a request that
    /// would open a dialog goes to another node. The sender reads the
    /// edge's `[federation] fqdn`; the node's name is for the log only.
    Draining {
        node: String,
        fqdn: String,
        retry_after: u32,
    },
}

impl Refusal {
    /// A media relay error, as the answer to the request that carried the SDP.
    pub fn media(e: MediaError) -> Refusal {
        match e {
            MediaError::Sdp(_) | MediaError::TooManyStreams(_) => Refusal::MediaSdp {
                detail: e.to_string(),
            },
            other => Refusal::MediaUnavailable {
                detail: other.to_string(),
            },
        }
    }

    /// A failed connection to the next hop (`toward_partner` for a
    /// partner's edge, else the home pool).
    pub fn next_hop(err: &ConnectError, toward_partner: bool) -> Refusal {
        let kind = match err {
            ConnectError::Tls {
                name_mismatch: true,
                ..
            } => Unreachable::CertificateName,
            ConnectError::Tls { .. } => Unreachable::Tls,
            ConnectError::Resolve { .. } => Unreachable::Resolve,
            ConnectError::Connect { .. } | ConnectError::Timeout { .. } if toward_partner => {
                Unreachable::PartnerConnect
            }
            _ => Unreachable::Other,
        };
        Refusal::NextHop {
            kind,
            detail: err.to_string(),
        }
    }

    /// The SIP status of the answer.
    pub fn status(&self) -> u16 {
        use Refusal as R;
        match self {
            R::ImTestMethod => 405,
            R::FileTransfer { .. } => 606,
            R::BodyType { .. } => 415,
            R::BodyTooLarge { .. } => 413,
            R::MediaSdp { .. } => 488,
            R::MediaUnavailable { .. }
            | R::RateLimited { .. }
            | R::Overloaded { .. }
            | R::Draining { .. } => 503,
            R::UnknownDestination { .. } => 404,
            R::NoDestination { direction } => match direction {
                Direction::Inbound => 403,
                Direction::Outbound => 404,
            },
            R::NoSrv { direction, .. } => match direction {
                Direction::Inbound => 403,
                Direction::Outbound => 504,
            },
            R::SrvOutsideDomain { .. } | R::DnsFailed { .. } | R::DnsNotLookedUp { .. } => 504,
            R::NextHop { kind, .. } => match kind {
                Unreachable::Other => 503,
                _ => 504,
            },
            _ => 403,
        }
    }

    /// The Warning code: 309 for file transfer (what SfB's IM filter
    /// sends and Lync shows), else 399.
    pub fn warn_code(&self) -> u16 {
        match self {
            Refusal::FileTransfer { .. } => WARN_CONTENT,
            _ => WARN_MISC,
        }
    }

    /// The SfB `ms-diagnostics-public` code and text, when SfB has one.
    pub fn diagnostic(&self) -> Option<(u16, &'static str)> {
        use Refusal as R;
        Some(match self {
            R::WrongListener
            | R::NoFromDomain
            | R::NotPartnerDomain { .. }
            | R::NotThisPartnersDomain { .. }
            | R::NotYetEnabled { .. }
            | R::Enumeration { .. } => diag::NOT_AUTHORIZED,
            R::NotEnabled { direction, .. } => match direction {
                Direction::Inbound => diag::NOT_AUTHORIZED,
                Direction::Outbound => diag::CANNOT_ROUTE,
            },
            R::NoCertificate | R::SpoofedEdge { .. } | R::SpoofedSrv { .. } => diag::CERTIFICATE,
            R::SrvOutsideDomain { .. } => diag::NO_SRV_MATCH,
            R::NoSrv { .. } | R::DnsFailed { .. } | R::DnsNotLookedUp { .. } => diag::NO_SRV,
            R::Transit { .. } | R::ForeignFrom { .. } => diag::DOMAIN_COMBINATION,
            R::NoDestination { .. } | R::UnknownDestination { .. } => diag::CANNOT_ROUTE,
            R::Recording { .. } => diag::REQUEST_TYPE,
            R::RateLimited { .. } | R::Overloaded { .. } | R::Draining { .. } => diag::TEMPORARILY,
            R::NextHop { kind, .. } => match kind {
                Unreachable::CertificateName => diag::CERTIFICATE,
                Unreachable::Tls | Unreachable::PartnerConnect => diag::TLS_FAILED,
                Unreachable::Resolve => diag::NO_A_RECORD,
                Unreachable::Other => diag::TEMPORARILY,
            },
            R::ImTestMethod
            | R::Product(_)
            | R::FileTransfer { .. }
            | R::BodyType { .. }
            | R::BodyTooLarge { .. }
            | R::MediaSdp { .. }
            | R::MediaUnavailable { .. } => return None,
        })
    }

    /// The rule's name: the `rule` label of `fedge_rejections_total`.
    pub fn label(&self) -> &'static str {
        use Refusal as R;
        match self {
            R::WrongListener => "wrong_listener",
            R::NoCertificate => "no_certificate",
            R::NoFromDomain => "no_from_domain",
            R::NotPartnerDomain { .. }
            | R::NotThisPartnersDomain { .. }
            | R::UnknownDestination { .. } => "unknown_domain",
            R::SpoofedEdge { .. } | R::SpoofedSrv { .. } => "spoofed_domain",
            R::SrvOutsideDomain { .. } => "srv_domain",
            R::NoSrv { .. } => "no_srv",
            R::DnsFailed { .. } | R::DnsNotLookedUp { .. } => "dns_failed",
            R::ImTestMethod => "im_test",
            R::NotYetEnabled { .. } | R::NotEnabled { .. } => "not_enabled",
            R::Transit { .. } => "transit",
            R::NoDestination { .. } => "no_destination",
            R::Product(_) => "product",
            R::FileTransfer { .. } => "file_transfer",
            R::Recording { .. } => "recording",
            R::BodyType { .. } => "body_type",
            R::BodyTooLarge { .. } => "body_size",
            R::ForeignFrom { .. } => "foreign_from",
            R::RateLimited { .. } => "rate_limited",
            R::Overloaded { .. } => "overload_shed",
            R::Enumeration { .. } => "enumeration",
            R::MediaSdp { .. } | R::MediaUnavailable { .. } => "media",
            R::NextHop { .. } => "next_hop_unreachable",
            R::Draining { .. } => "draining",
        }
    }

    /// Headers the answer carries besides the Warning and the diagnostic.
    pub fn headers(&self) -> Vec<(String, String)> {
        match self {
            Refusal::ImTestMethod => vec![("Allow".into(), "MESSAGE, OPTIONS".into())],
            Refusal::BodyType { accepted, .. } => vec![("Accept".into(), accepted.clone())],
            Refusal::RateLimited { retry_after, .. } | Refusal::Overloaded { retry_after, .. } => {
                vec![("Retry-After".into(), retry_after.to_string())]
            }
            Refusal::MediaUnavailable { .. } => vec![("Retry-After".into(), "30".into())],
            Refusal::Draining { retry_after, .. } => {
                vec![("Retry-After".into(), retry_after.to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// What the sender is told when the full reason ([`fmt::Display`], for
    /// the log) names more than the sender itself sent: another partner's
    /// organisation, its edge FQDN or its DNS answers. Anyone whose
    /// certificate chains to the trust bundle can get these refusals, so
    /// they name only the From domain and the certificate's own names.
    pub fn public(&self) -> Option<String> {
        use Refusal as R;
        Some(match self {
            R::NotThisPartnersDomain {
                domain,
                certificate,
                ..
            } => format!(
                "From domain {domain} is not a domain of the partner whose edge certificate {certificate} names"
            ),
            R::SpoofedEdge {
                certificate,
                domain,
                ..
            } => format!(
                "certificate names {certificate}, which is not the federation edge on record for domain {domain}"
            ),
            R::SpoofedSrv {
                certificate,
                domain,
                ..
            } => format!(
                "certificate names {certificate}, which is not a target of {}",
                srv_name(domain)
            ),
            // The SRV targets are the domain's public DNS; the partner is not named.
            R::SrvOutsideDomain {
                domain, targets, ..
            } => format!(
                "{} names {}, which is not directly in {domain} (the same-domain rule), and no edge FQDN is on record for it",
                srv_name(domain),
                targets.join(", ")
            ),
            R::NoSrv {
                domain,
                direction: Direction::Inbound,
                ..
            } => format!(
                "{domain} publishes no {} SRV record, and no edge FQDN is on record for it",
                srv_name(domain)
            ),
            // The node's name (by default the host name) is not the
            // sender's business: it reads the edge's public name.
            R::Draining {
                fqdn, retry_after, ..
            } => draining_text(fqdn, *retry_after),
            _ => return None,
        })
    }

    /// The answer for the proxy to send: the SfB diagnostic first (as
    /// `ms-diagnostics-public`, what partners' servers and admins read),
    /// then the refusal's own headers.
    pub fn reject(&self) -> Reject {
        let mut headers: Vec<(String, String)> = self
            .diagnostic()
            .map(diagnostic_header)
            .into_iter()
            .collect();
        headers.extend(self.headers());
        let (reason, detail) = match self.public() {
            Some(p) => (p, Some(self.to_string())),
            None => (self.to_string(), None),
        };
        Reject {
            status: self.status(),
            reason,
            detail,
            warn_code: self.warn_code(),
            code: self.diagnostic().map(|d| d.0),
            headers,
            log: true,
            charge: self.unidentified(),
        }
    }

    /// A refusal of a sender the edge has not identified as a partner (no
    /// certificate, a domain that is not the certificate's, no partner at
    /// all, an SRV check failed): these count against the source's refusal
    /// budget, since no partner rate holds them. A known partner's
    /// refusals are its own rate's business, and a failed DNS lookup is
    /// the edge's.
    pub fn unidentified(&self) -> bool {
        use Refusal as R;
        matches!(
            self,
            R::WrongListener
                | R::NoCertificate
                | R::NoFromDomain
                | R::NotPartnerDomain { .. }
                | R::NotThisPartnersDomain { .. }
                | R::SpoofedEdge { .. }
                | R::SpoofedSrv { .. }
                | R::SrvOutsideDomain { .. }
                | R::NoSrv { .. }
        )
    }
}

/// The header that carries an SfB diagnostic code and its standard text
/// (`ms-diagnostics-public: 1034;reason="..."`).
pub fn diagnostic_header((code, text): (u16, &'static str)) -> (String, String) {
    (
        DIAGNOSTIC_HEADER.to_string(),
        format!("{code};reason={}", quote(text)),
    )
}

/// The diagnostic header's name.
pub const DIAGNOSTIC_HEADER: &str = "ms-diagnostics-public";

/// The SfB diagnostic code a refusal carries, read back from its headers.
pub fn diagnostic_code(r: &Reject) -> Option<u16> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(DIAGNOSTIC_HEADER))
        .and_then(|(_, v)| v.split(';').next())
        .and_then(|c| c.trim().parse().ok())
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Refusal as R;
        match self {
            R::WrongListener => f.write_str("not a federation listener"),
            R::NoCertificate => f.write_str("no authenticated certificate on this connection"),
            R::NoFromDomain => f.write_str("the From URI has no domain"),
            R::NotPartnerDomain { domain } => write!(
                f,
                "domain {domain} is not a federation partner of this service"
            ),
            R::NotThisPartnersDomain {
                domain,
                org,
                certificate,
            } => write!(
                f,
                "From domain {domain} is not a domain of partner {org}, whose edge (certificate {certificate}) this connection comes from"
            ),
            R::SpoofedEdge {
                certificate,
                domain,
                org,
                edge,
            } => write!(
                f,
                "certificate names {certificate}, but domain {domain} belongs to partner {org} whose edge is {edge}"
            ),
            R::SpoofedSrv {
                certificate,
                domain,
                targets,
            } => write!(
                f,
                "certificate names {certificate}, but {} names {}",
                srv_name(domain),
                targets.join(", ")
            ),
            R::SrvOutsideDomain {
                domain,
                targets,
                org,
            } => write!(
                f,
                "{} names {}, which is not directly in {domain} (the same-domain rule); partner {org} needs an edge FQDN on record",
                srv_name(domain),
                targets.join(", ")
            ),
            R::NoSrv { domain, org, .. } => write!(
                f,
                "{domain} publishes no {} SRV record, and partner {org} has no edge FQDN on record",
                srv_name(domain)
            ),
            R::DnsFailed { domain, error } => {
                write!(f, "the DNS lookup of {} failed: {error}", srv_name(domain))
            }
            R::DnsNotLookedUp { domain } => write!(f, "{} was not looked up", srv_name(domain)),
            R::ImTestMethod => {
                f.write_str("the federation test address answers MESSAGE and OPTIONS only")
            }
            R::NotYetEnabled {
                org,
                domain,
                test_address,
            } => write!(
                f,
                "partner {org} (domain {domain}) is approved but not yet enabled: until then only {test_address} may be reached, for the IM test"
            ),
            R::NotEnabled {
                org, domain, state, ..
            } => write!(f, "partner {org} (domain {domain}) is {state}"),
            R::Transit { domain, home } => write!(
                f,
                "domain {domain} is not served here: partners may reach {home} only"
            ),
            R::NoDestination { .. } => f.write_str("the request names no destination domain"),
            R::Product(p) => p.fmt(f),
            R::FileTransfer { what } => write!(
                f,
                "File transfer is switched off across this federation ({what} refused); share files by secure e-mail instead"
            ),
            R::Recording { what } => write!(
                f,
                "Recording is switched off across this federation ({what} refused)"
            ),
            R::BodyType { media_type, .. } if media_type == "(none)" => {
                f.write_str("A body without a Content-Type may not cross this federation")
            }
            R::BodyType { media_type, .. } => write!(
                f,
                "Content of type {media_type} may not cross this federation"
            ),
            R::BodyTooLarge { size, max } => write!(
                f,
                "a body of {size} bytes is larger than the {max} bytes allowed across this federation"
            ),
            R::ForeignFrom { domain } => write!(
                f,
                "From domain {} is not a home domain; the edge relays home users only",
                domain.as_deref().unwrap_or("(none)")
            ),
            R::UnknownDestination { domain, home: true } => write!(
                f,
                "domain {domain} is a home domain; the edge routes to federation partners only"
            ),
            R::UnknownDestination {
                domain,
                home: false,
            } => {
                write!(f, "no federation partner serves domain {domain}")
            }
            R::RateLimited {
                org,
                rate,
                retry_after,
            } => write!(
                f,
                "partner {org} exceeds its {rate} requests per second; retry after {retry_after} s"
            ),
            R::Overloaded {
                org,
                rate,
                retry_after,
            } => write!(
                f,
                "the edge is overloaded and partner {org} went over its {rate} requests per second; its requests are shed; retry after {retry_after} s"
            ),
            R::Enumeration { org, limit, window } => write!(
                f,
                "partner {org} has reached {limit} distinct home addresses within {}; requests to new ones are refused",
                humantime::format_duration(*window)
            ),
            R::MediaSdp { detail } => write!(f, "the SDP cannot be relayed: {detail}"),
            R::MediaUnavailable { detail } => {
                write!(f, "media for this call cannot be relayed: {detail}")
            }
            R::NextHop {
                kind: Unreachable::CertificateName,
                detail,
            } => write!(
                f,
                "{detail}: the partner's certificate does not name its edge FQDN"
            ),
            R::NextHop { detail, .. } => f.write_str(detail),
            R::Draining {
                node, retry_after, ..
            } => f.write_str(&draining_text(&format!("node {node}"), *retry_after)),
        }
    }
}

/// A draining node's refusal text, `who` being the edge's FQDN (to the
/// sender) or `node <name>` (in the log).
fn draining_text(who: &str, retry_after: u32) -> String {
    format!(
        "federation edge {who} is draining and takes no new dialogs; retry after {retry_after} s (another node of the pool takes them)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A draining node's answer: 503, Retry-After from `[drain]`, the
    /// temporary diagnostic, and a reason naming the edge's FQDN (the
    /// node's name only in the log's detail).
    #[test]
    fn a_draining_node_answers_503_with_retry_after() {
        let r = Refusal::Draining {
            node: "host-17.internal:5061".into(),
            fqdn: "sip.fedge.test".into(),
            retry_after: 17,
        }
        .reject();
        assert_eq!(r.status, 503);
        assert!(
            r.headers
                .contains(&("Retry-After".to_string(), "17".to_string())),
            "{:?}",
            r.headers
        );
        assert_eq!(r.code, Some(1007));
        assert!(
            r.reason
                .contains("federation edge sip.fedge.test is draining"),
            "{}",
            r.reason
        );
        assert!(!r.reason.contains("host-17"), "{}", r.reason);
        let logged = r.detail.unwrap_or_default();
        assert!(
            logged.contains("node host-17.internal:5061 is draining"),
            "{logged}"
        );
        assert!(!r.charge, "a partner is not charged for the edge's drain");
    }

    /// The answer carries what the refusal says, and the Warning code
    /// stays 399 except for file transfer.
    #[test]
    fn answers_carry_status_code_headers_and_reason() {
        let r = Refusal::RateLimited {
            org: "Org".into(),
            rate: 20,
            retry_after: 2,
        };
        let j = r.reject();
        assert_eq!(
            (j.status, j.warn_code, diagnostic_code(&j)),
            (503, 399, Some(1007))
        );
        assert_eq!(
            j.headers,
            [
                (
                    "ms-diagnostics-public".into(),
                    "1007;reason=\"Temporarily cannot route\"".into()
                ),
                ("Retry-After".into(), "2".into())
            ]
        );
        assert_eq!(
            j.reason,
            "partner Org exceeds its 20 requests per second; retry after 2 s"
        );
        let j = Refusal::FileTransfer { what: "x" }.reject();
        assert_eq!(
            (j.status, j.warn_code, diagnostic_code(&j)),
            (606, 309, None)
        );
        let j = Refusal::Enumeration {
            org: "Org".into(),
            limit: 3,
            window: Duration::from_secs(3600),
        }
        .reject();
        assert_eq!((j.status, diagnostic_code(&j)), (403, Some(1002)));
        assert!(
            j.reason
                .ends_with("within 1h; requests to new ones are refused")
        );
        // Another partner's organisation and edge go to the log only.
        let j = Refusal::SpoofedEdge {
            certificate: "sip.evil.test".into(),
            domain: "b.test".into(),
            org: "Org B".into(),
            edge: "sip.b.test".into(),
        }
        .reject();
        assert_eq!(
            j.reason,
            "certificate names sip.evil.test, which is not the federation edge on record for domain b.test"
        );
        assert!(
            j.detail
                .as_deref()
                .is_some_and(|d| d.contains("Org B") && d.contains("sip.b.test"))
        );
        assert!(j.charge, "a stranger's refusal counts against its source");
        let j = Refusal::NoSrv {
            domain: "b.test".into(),
            org: "Org B".into(),
            direction: Direction::Inbound,
        }
        .reject();
        assert!(!j.reason.contains("Org B"), "{}", j.reason);
        let j = Refusal::MediaUnavailable {
            detail: "no ports".into(),
        }
        .reject();
        assert_eq!(
            (j.status, j.headers[0].1.as_str()),
            (503, "30"),
            "{}",
            j.reason
        );
    }
}
