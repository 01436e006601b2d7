//! Which partner a TLS peer is: the certificate-to-partner rule.
//!
//! A partner edge's certificate names it by its SAN DNS names (the CN
//! when there is no SAN; `sip::transport::tls` extracts them). A
//! connection speaks for a partner when its certificate names the
//! partner's pinned edge FQDN or, for an allowed-domain partner, one of
//! the SRV targets of the From domain that obey the same-domain rule.
//! Several partners may share one edge (hosted services).
//!
//! A partner may also pin the CA its edge certificate must chain to
//! (`ca_pin`, SPKI SHA-256 hashes): [`PinCheck`] refuses, in the TLS
//! handshake, a certificate that names a pinned partner's edge but whose
//! verified chain has none of its pinned CAs, however trusted that chain's
//! CA is otherwise.
//!
//! Owns those rules, for the policy (is this request's sender who its From
//! domain says?), for the handshake (does this chain satisfy the pins of
//! the partners it names?) and for the server (whose connections close
//! when a partner leaves `enabled`). Never looks anything up and never
//! decides what else a request needs.

use std::sync::Arc;

use super::refusal::Refusal;
use super::registry::{Registry, Snapshot};
use crate::dns::SrvTarget;
use crate::model::partner::{Partner, PartnerState, hex};
use crate::sip::transport::PeerIdentity;
use crate::sip::transport::tls::{ChainCheck, ChainRefused, VerifiedChain};

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

/// A certificate naming a pinned partner's edge whose chain has none of
/// that partner's pinned CAs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "CA pin of partner {partner} ({org}): certificate names its edge {edge} but chains to {anchor} sha256:{anchor_pin}, not to a pinned CA ({pins})"
)]
pub struct PinMismatch {
    pub partner: String,
    pub org: String,
    pub edge: String,
    /// The subject of the trust anchor the chain ended at.
    pub anchor: String,
    pub anchor_pin: String,
    pub pins: String,
}

/// Checks a verified chain against the CA pins of every live partner whose
/// edge the certificate names (a hosted edge must satisfy them all: one
/// certificate speaks for each of its partners).
pub fn check_pin(
    snap: &Snapshot,
    peer: &PeerIdentity,
    chain: &VerifiedChain,
) -> Result<(), Box<PinMismatch>> {
    for p in partners_named(snap, peer) {
        let pins = p.details.ca_pins();
        if pins.is_empty() || pins.iter().any(|pin| chain.contains(pin)) {
            continue;
        }
        let anchor = chain.anchor();
        return Err(Box::new(PinMismatch {
            partner: p.name().to_string(),
            org: p.details.org_name.clone(),
            edge: p.details.edge_fqdn.clone().unwrap_or_default(),
            anchor: anchor.map(|a| a.subject.clone()).unwrap_or_default(),
            anchor_pin: anchor.map(|a| hex(&a.spki_sha256)).unwrap_or_default(),
            pins: p.details.ca_pin.clone().unwrap_or_default(),
        }));
    }
    Ok(())
}

/// The handshake's view of the CA pins: the registry's current snapshot.
#[derive(Debug)]
pub struct PinCheck {
    pub registry: Arc<Registry>,
}

impl ChainCheck for PinCheck {
    fn check(&self, peer: &PeerIdentity, chain: &VerifiedChain) -> Result<(), ChainRefused> {
        check_pin(&self.registry.snapshot(), peer, chain).map_err(|e| ChainRefused(e.to_string()))
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
            issuer: String::new(),
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

    /// A pinned partner's edge must chain to a pinned CA; partners without
    /// a pin, and certificates naming no partner, are not affected.
    #[test]
    fn ca_pins_bind_an_edge_to_its_ca() {
        use crate::sip::transport::tls::ChainCa;
        let ca = |b: u8, name: &str| ChainCa {
            subject: format!("CN={name}"),
            spki_sha256: [b; 32],
        };
        let mut pinned = sample("a", &["a.test"], Some("sip.a.test"), PartnerState::Enabled);
        pinned.details.ca_pin = Some(format!(
            "sha256:{},sha256:{}",
            "01".repeat(32),
            "02".repeat(32)
        ));
        let free = sample("b", &["b.test"], Some("sip.b.test"), PartnerState::Enabled);
        let snap = Snapshot::build(1, vec![pinned, free]);
        let via = |cas: Vec<ChainCa>| VerifiedChain { cas };
        // The pinned CA as anchor, as an intermediate, or the rollover pin.
        assert_eq!(
            check_pin(&snap, &id(&["sip.a.test"]), &via(vec![ca(1, "A")])),
            Ok(())
        );
        assert_eq!(
            check_pin(
                &snap,
                &id(&["sip.a.test"]),
                &via(vec![ca(1, "int"), ca(9, "root")])
            ),
            Ok(())
        );
        assert_eq!(
            check_pin(&snap, &id(&["sip.a.test"]), &via(vec![ca(2, "A2")])),
            Ok(())
        );
        let e = check_pin(&snap, &id(&["sip.a.test"]), &via(vec![ca(7, "Other CA")])).unwrap_err();
        assert_eq!(e.partner, "a.test");
        assert_eq!(e.anchor, "CN=Other CA");
        assert!(e.to_string().contains("CA pin of partner a.test"), "{e}");
        assert!(e.to_string().contains(&"07".repeat(32)), "{e}");
        assert_eq!(
            check_pin(&snap, &id(&["sip.b.test"]), &via(vec![ca(7, "X")])),
            Ok(())
        );
        assert_eq!(
            check_pin(&snap, &id(&["sip.z.test"]), &via(vec![ca(7, "X")])),
            Ok(())
        );
    }
}
