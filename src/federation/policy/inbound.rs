//! Partner to home: who the sender is (certificate, From domain, partner
//! state), where it may go (home domains only, the IM test address for
//! approved partners), with which product and what content, and the
//! header edits of an admitted request (the trust header, a foreign
//! P-Asserted-Identity removed).
//!
//! Owns the inbound rules in their order. Never performs I/O and never
//! counts: the verdict goes back to `Edge`.

use std::sync::Arc;

use super::{
    Admission, PolicyConfig, SrvFacts, TRUST_HEADER, Trace, Verdict, answer, content_refusal,
    domain_of, for_test_address, srv_targets, target_domain,
};
use crate::federation::identity;
use crate::federation::product;
use crate::federation::refusal::{Direction, Refusal};
use crate::federation::registry::Snapshot;
use crate::model::partner::{Partner, PartnerState};
use crate::role::Role;
use crate::sip::headers::{HeaderName, NameAddr};
use crate::sip::message::{Method, SipMessage};
use crate::sip::proxy::{Decision, Forward, Hide, RequestInfo};
use crate::sip::transport::PeerIdentity;

/// Decides a partner's request, recording in `trace` what it passed.
#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    msg: &SipMessage,
    method: &Method,
    peer: Option<&PeerIdentity>,
    info: &RequestInfo,
    snap: &Snapshot,
    cfg: &PolicyConfig,
    srv: Option<&SrvFacts>,
    trace: &mut Trace,
) -> Verdict {
    let Some(peer) = peer else {
        return Verdict::refuse(Refusal::NoCertificate, None);
    };
    trace.pass("certificate", || {
        format!("the connection's certificate names {peer}")
    });
    let Some(from_domain) = msg.from().and_then(|f| domain_of(&f.uri)) else {
        return Verdict::refuse(Refusal::NoFromDomain, None);
    };
    let Some(partner) = snap.by_domain(&from_domain) else {
        return Verdict::refuse(identity::unknown_domain(snap, peer, &from_domain), None);
    };
    trace.pass("partner", || {
        format!(
            "From domain {from_domain} belongs to partner {} ({}), {}",
            partner.details.org_name,
            partner.name(),
            partner.state
        )
    });
    let p = Some(partner);
    // An allowed-domain partner: its edge is what DNS names for the From domain.
    let targets = match partner.details.edge_fqdn {
        Some(_) => Vec::new(),
        None => match srv_targets(srv, &from_domain, partner, Direction::Inbound) {
            Ok(t) => t,
            Err(r) => return Verdict::refuse(r, p),
        },
    };
    if let Err(r) = identity::check(peer, partner, &from_domain, &targets) {
        return Verdict::refuse(r, p);
    }
    trace.pass("identity", || match &partner.details.edge_fqdn {
        Some(edge) => format!("the certificate names the partner's edge on record, {edge}"),
        None => format!(
            "the certificate names a target of _sipfederationtls._tcp.{from_domain} ({})",
            targets
                .iter()
                .map(|t| t.target.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    let may_test = matches!(
        partner.state,
        PartnerState::Approved | PartnerState::Enabled
    );
    if may_test && for_test_address(msg, info, cfg) {
        trace.pass("im_test", || {
            format!(
                "to the federation test address, which a {} partner may reach",
                partner.state
            )
        });
        return im_test(method, partner);
    }
    if partner.state != PartnerState::Enabled {
        return Verdict::refuse(not_enabled(partner, &from_domain, cfg), p);
    }
    trace.pass("state", || "the partner is enabled".into());
    match target_domain(msg, info) {
        Some(d) if cfg.is_home(&d) => {
            trace.pass("destination", || format!("{d} is a home domain"));
        }
        Some(domain) => {
            let home = cfg.home_domains.join(", ");
            return Verdict::refuse(Refusal::Transit { domain, home }, p);
        }
        None => {
            let r = Refusal::NoDestination {
                direction: Direction::Inbound,
            };
            return Verdict::refuse(r, p);
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
            return Verdict::refuse(Refusal::Product(why), p);
        }
        trace.pass("product", || match ua {
            Some(ua) => format!("{:?}: {}, accepted", ua, product::identify(ua)),
            None => "no User-Agent or Server header: not judged".into(),
        });
    } else {
        trace.pass("product", || {
            "not judged: the partner's record says product_check=off".into()
        });
    }
    if let Some(r) = content_refusal(msg, cfg, trace) {
        return Verdict::refuse(r, p);
    }
    forward(msg, partner, cfg, trace)
}

/// The onboarding test address: MESSAGE (answered, then replied to) and
/// OPTIONS only.
fn im_test(method: &Method, partner: &Arc<Partner>) -> Verdict {
    let p = Some(partner);
    match method {
        Method::Message => Verdict {
            im_test: true,
            ..Verdict::admit(answer(Vec::new()), p, Admission::ImTest)
        },
        Method::Options => Verdict::admit(
            answer(vec![("Allow".into(), "MESSAGE, OPTIONS".into())]),
            p,
            Admission::ImTest,
        ),
        _ => Verdict::refuse(Refusal::ImTestMethod, p),
    }
}

fn not_enabled(partner: &Partner, domain: &str, cfg: &PolicyConfig) -> Refusal {
    let org = partner.details.org_name.clone();
    let domain = domain.to_string();
    if partner.state == PartnerState::Approved {
        Refusal::NotYetEnabled {
            org,
            domain,
            test_address: format!(
                "sip:{}@{}",
                cfg.test_user,
                cfg.home_domains.first().map(String::as_str).unwrap_or("")
            ),
        }
    } else {
        Refusal::NotEnabled {
            org,
            domain,
            state: partner.state,
            direction: Direction::Inbound,
        }
    }
}

/// An admitted request: to the next hop, with the edge's trust statement,
/// and a P-Asserted-Identity kept only when it names the partner's users.
fn forward(
    msg: &SipMessage,
    partner: &Arc<Partner>,
    cfg: &PolicyConfig,
    trace: &mut Trace,
) -> Verdict {
    let mut strip = vec![TRUST_HEADER.to_string()];
    let foreign_pai = msg.values(HeaderName::PAssertedIdentity).any(|v| {
        NameAddr::parse(v)
            .ok()
            .and_then(|na| domain_of(&na.uri))
            .is_none_or(|d| !partner.has_domain(&d))
    });
    if foreign_pai {
        strip.push("P-Asserted-Identity".into());
        trace.pass("identity_header", || {
            "a P-Asserted-Identity naming another domain is removed".into()
        });
    }
    let trust = format!(
        "ms-source-type=DirectPartner;ms-ep-fqdn={};ms-source-verified-user=verified;ms-source-network=federation",
        cfg.fqdn
    );
    Verdict::admit(
        Decision::Forward(Forward {
            leg: Role::Internal.side(),
            hop: cfg.next_hop.clone(),
            strip,
            add: vec![(TRUST_HEADER.into(), trust)],
            hide: Hide::Destination,
            peer: partner.id.clone(),
            body: None,
        }),
        Some(partner),
        if foreign_pai {
            Admission::ForwardPaiRemoved
        } else {
            Admission::Forward
        },
    )
}
