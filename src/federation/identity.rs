//! Which partner a TLS peer is: the certificate-to-partner rule.
//!
//! A partner edge's certificate names it by its SAN DNS names (the CN
//! when there is no SAN; `sip::transport::tls` extracts them). A
//! connection speaks for a partner when its certificate names the
//! partner's pinned edge FQDN or, for an allowed-domain partner, one of
//! the SRV targets of the From domain that obey the same-domain rule.
//! Several partners may share one edge (hosted services).
//!
//! Owns that rule, for the policy (is this request's sender who its From
//! domain says?) and for the server (whose connections close when a
//! partner leaves `enabled`). Never looks anything up and never decides
//! what else a request needs.

use std::sync::Arc;

use super::refusal::Refusal;
use super::registry::Snapshot;
use crate::dns::SrvTarget;
use crate::model::partner::{Partner, PartnerState};
use crate::sip::transport::PeerIdentity;

/// True when the certificate names `fqdn`.
pub fn names(peer: &PeerIdentity, fqdn: &str) -> bool {
    peer.matches(fqdn)
}

/// The live partners whose pinned edge FQDN the certificate names.
pub fn partners_named<'s>(snap: &'s Snapshot, peer: &PeerIdentity) -> Vec<&'s Arc<Partner>> {
    peer.names.iter().flat_map(|n| snap.by_edge(n)).collect()
}

/// True when the certificate names the edge of at least one enabled partner.
pub fn speaks_for_enabled(snap: &Snapshot, peer: &PeerIdentity) -> bool {
    partners_named(snap, peer)
        .iter()
        .any(|p| p.state == PartnerState::Enabled)
}

/// Checks that a connection with this certificate speaks for `partner`,
/// the holder of `domain` (the From domain). `srv` are the same-domain
/// SRV targets of `domain`, used when the partner has no pinned edge.
pub fn check(
    peer: &PeerIdentity,
    partner: &Partner,
    domain: &str,
    srv: &[&SrvTarget],
) -> Result<(), Refusal> {
    match partner.details.edge_fqdn.as_deref() {
        Some(edge) if !names(peer, edge) => Err(Refusal::SpoofedEdge {
            certificate: peer.to_string(),
            domain: domain.to_string(),
            org: partner.details.org_name.clone(),
            edge: edge.to_string(),
        }),
        Some(_) => Ok(()),
        None if !srv.iter().any(|t| names(peer, &t.target)) => Err(Refusal::SpoofedSrv {
            certificate: peer.to_string(),
            domain: domain.to_string(),
            targets: srv.iter().map(|t| t.target.clone()).collect(),
        }),
        None => Ok(()),
    }
}

/// Why a From domain names no partner, as seen from the certificate: the
/// partner whose edge it names is told apart from a stranger.
pub fn unknown_domain(snap: &Snapshot, peer: &PeerIdentity, domain: &str) -> Refusal {
    match partners_named(snap, peer).first() {
        Some(p) => Refusal::NotThisPartnersDomain {
            domain: domain.to_string(),
            org: p.details.org_name.clone(),
            certificate: peer.to_string(),
        },
        None => Refusal::NotPartnerDomain {
            domain: domain.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::partner::sample;

    fn id(names: &[&str]) -> PeerIdentity {
        PeerIdentity {
            names: names.iter().map(|s| s.to_string()).collect(),
            from_cn: false,
            subject: String::new(),
            serial: String::new(),
        }
    }

    /// A certificate speaks for a partner through its pinned edge or,
    /// without one, through a same-domain SRV target; hosted edges name
    /// several partners.
    #[test]
    fn certificates_name_partners() {
        let pinned = sample("a", &["a.test"], Some("sip.a.test"), PartnerState::Enabled);
        assert_eq!(check(&id(&["sip.a.test"]), &pinned, "a.test", &[]), Ok(()));
        let r = check(&id(&["sip.evil.test"]), &pinned, "a.test", &[]).unwrap_err();
        assert_eq!(r.label(), "spoofed_domain");
        let by_dns = sample("d", &["dom.test"], None, PartnerState::Enabled);
        let target = SrvTarget {
            priority: 0,
            weight: 0,
            port: 5061,
            target: "sip.dom.test".into(),
        };
        assert_eq!(
            check(&id(&["sip.dom.test"]), &by_dns, "dom.test", &[&target]),
            Ok(())
        );
        assert!(check(&id(&["sip.a.test"]), &by_dns, "dom.test", &[&target]).is_err());
        let snap = Snapshot::build(
            1,
            vec![
                sample(
                    "h1",
                    &["h1.test"],
                    Some("edge.host.test"),
                    PartnerState::Suspended,
                ),
                sample(
                    "h2",
                    &["h2.test"],
                    Some("edge.host.test"),
                    PartnerState::Enabled,
                ),
            ],
        );
        let hosted = id(&["edge.host.test"]);
        assert_eq!(partners_named(&snap, &hosted).len(), 2);
        assert!(speaks_for_enabled(&snap, &hosted));
        assert!(!speaks_for_enabled(&snap, &id(&["sip.a.test"])));
        assert_eq!(
            unknown_domain(&snap, &hosted, "z.test").label(),
            "unknown_domain"
        );
    }
}
