//! Home to partner: from a home domain, to the enabled partner holding
//! the destination domain, over TLS to its edge (pinned, or found by SRV
//! under the same-domain rule), with the content rules, and with the
//! home side's internal headers removed.
//!
//! Owns the outbound rules in their order. Never performs I/O and never
//! counts: the verdict goes back to `Edge`.

use super::{
    Admission, INTERNAL_AUTH_HEADERS, INTERNAL_HEADERS, PolicyConfig, SrvFacts, TRUST_HEADER,
    Trace, Verdict, content_refusal, domain_of, srv_targets, target_domain,
};
use crate::federation::hop::{partner_target, srv_stream_target};
use crate::federation::refusal::{Direction, Refusal};
use crate::federation::registry::Snapshot;
use crate::model::partner::PartnerState;
use crate::role::Role;
use crate::sip::message::SipMessage;
use crate::sip::proxy::{Decision, Forward, Hide, Hop, RequestInfo};

/// Decides a home user's request to a partner, recording in `trace` what
/// it passed.
pub(super) fn decide(
    msg: &SipMessage,
    info: &RequestInfo,
    snap: &Snapshot,
    cfg: &PolicyConfig,
    srv: Option<&SrvFacts>,
    trace: &mut Trace,
) -> Verdict {
    match msg.from().and_then(|f| domain_of(&f.uri)) {
        Some(d) if cfg.is_home(&d) => {
            trace.pass("from_domain", || {
                format!("From domain {d} is a home domain")
            });
        }
        domain => return Verdict::refuse(Refusal::ForeignFrom { domain }, None),
    }
    let Some(domain) = target_domain(msg, info) else {
        let r = Refusal::NoDestination {
            direction: Direction::Outbound,
        };
        return Verdict::refuse(r, None);
    };
    let Some(partner) = snap.by_domain(&domain) else {
        let home = cfg.is_home(&domain);
        return Verdict::refuse(Refusal::UnknownDestination { domain, home }, None);
    };
    trace.pass("partner", || {
        format!(
            "destination domain {domain} belongs to partner {} ({}), {}",
            partner.details.org_name,
            partner.name(),
            partner.state
        )
    });
    let p = Some(partner);
    if partner.state != PartnerState::Enabled {
        let r = Refusal::NotEnabled {
            org: partner.details.org_name.clone(),
            domain,
            state: partner.state,
            direction: Direction::Outbound,
        };
        return Verdict::refuse(r, p);
    }
    trace.pass("state", || "the partner is enabled".into());
    let target = match &partner.details.edge_fqdn {
        // An allowed partner server: its pinned edge, no SRV.
        Some(edge) => partner_target(partner, edge, cfg.partner_connections),
        None => match srv_targets(srv, &domain, partner, Direction::Outbound) {
            Err(r) => return Verdict::refuse(r, p),
            Ok(targets) => srv_stream_target(partner, targets[0], cfg.partner_connections),
        },
    };
    trace.pass("edge", || {
        let found = match &partner.details.edge_fqdn {
            Some(edge) => format!("its edge on record, {edge}"),
            None => format!("_sipfederationtls._tcp.{domain} (same-domain rule)"),
        };
        let name = target.server_name.as_deref().unwrap_or("");
        format!(
            "the partner's edge from {found}: TLS to {}:{}, its certificate must name {name}",
            target.host, target.port
        )
    });
    if let Some(r) = content_refusal(msg, cfg, trace) {
        return Verdict::refuse(r, p);
    }
    Verdict::admit(
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
            peer: partner.id.clone(),
            body: None,
        }),
        p,
        Admission::Forward,
    )
}
