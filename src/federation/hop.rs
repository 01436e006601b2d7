//! Where a partner's edge is: its pinned edge FQDN (an allowed partner
//! server, or its address override for labs), or what
//! `_sipfederationtls._tcp.<domain>` names under the same-domain rule (an
//! allowed domain; the choice among SRV records is `SrvAnswer::same_domain`).
//!
//! Owns turning a partner into a TLS [`StreamTarget`] whose certificate
//! must name the edge. Never decides whether a request may go there
//! (that is `policy`); only [`partner_hop`] looks anything up.

use crate::dns::{Dns, NoEdge, SrvTarget};
use crate::model::partner::{Partner, parse_host_port};
use crate::role::Role;
use crate::sip::transport::Transport;
use crate::sip::transport::outbound::StreamTarget;

/// Why a partner's edge could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HopError {
    #[error("_sipfederationtls._tcp.{domain} names no host directly in {domain}")]
    OutsideDomain { domain: String },
    #[error("{domain} publishes no _sipfederationtls._tcp SRV record")]
    NoSrv { domain: String },
    #[error("DNS: {0}")]
    Dns(String),
}

impl HopError {
    fn of(e: NoEdge, domain: &str) -> HopError {
        let domain = domain.to_string();
        match e {
            NoEdge::OutsideDomain(_) => HopError::OutsideDomain { domain },
            NoEdge::NotFound => HopError::NoSrv { domain },
            NoEdge::Failed(e) => HopError::Dns(e),
        }
    }
}

fn stream(partner: &Partner, name: &str, port: u16, max_conns: usize) -> StreamTarget {
    let (host, port) = partner
        .details
        .address
        .as_deref()
        .and_then(parse_host_port)
        .unwrap_or_else(|| (name.to_string(), port));
    StreamTarget {
        transport: Transport::Tls,
        host,
        port,
        server_name: Some(name.to_string()),
        tag: Role::Federation.tag(),
        max_conns,
    }
}

/// A partner's edge found by DNS: the SRV target and port (its address
/// override still wins for labs); its certificate must name the target.
pub fn srv_stream_target(partner: &Partner, t: &SrvTarget, max_conns: usize) -> StreamTarget {
    stream(partner, &t.target, t.port, max_conns)
}

/// Where a partner's edge is: its address override, else its FQDN on 5061.
pub fn partner_target(partner: &Partner, edge: &str, max_conns: usize) -> StreamTarget {
    stream(partner, edge, 5061, max_conns)
}

/// Where a partner's edge is, looking its SRV records up when it has no
/// pinned edge FQDN.
pub async fn partner_hop(
    dns: &Dns,
    partner: &Partner,
    domain: &str,
    max_conns: usize,
) -> Result<StreamTarget, HopError> {
    match &partner.details.edge_fqdn {
        Some(edge) => Ok(partner_target(partner, edge, max_conns)),
        None => {
            let answer = dns.federation_srv(domain).await;
            let targets = answer
                .same_domain(domain)
                .map_err(|e| HopError::of(e, domain))?;
            Ok(srv_stream_target(partner, targets[0], max_conns))
        }
    }
}
