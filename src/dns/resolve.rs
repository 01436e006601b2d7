//! Looking partners up: `_sipfederationtls._tcp.<domain>` SRV records and
//! the A/AAAA records of their targets, through hickory-resolver, either
//! from the system's resolver configuration or from one name server the
//! configuration names (so labs and tests never depend on resolv.conf).
//! Answers are cached for their TTL (positive and negative) by the resolver.
//!
//! Owns look-ups and the same-domain choice among SRV targets
//! ([`SrvAnswer::same_domain`]). Never decides what a partner may do with
//! the answer (that is `federation::policy`).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use super::zone::directly_in;
use crate::sip::transport::outbound::{HostResolver, ResolveFailure};

/// One SRV target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Lower-case, without the final dot.
    pub target: String,
}

/// The outcome of an SRV lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrvAnswer {
    /// Targets, best first (lowest priority, then highest weight).
    Targets(Vec<SrvTarget>),
    /// The name does not exist or has no SRV record.
    NotFound,
    /// The lookup itself failed (no answer, server failure, ...).
    Failed(String),
}

/// Why a domain's `_sipfederationtls._tcp` records name no usable edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoEdge {
    /// Targets exist, but none is directly in the domain (the same-domain
    /// rule); the targets it named.
    OutsideDomain(Vec<String>),
    /// The name does not exist or has no SRV record.
    NotFound,
    /// The lookup itself failed.
    Failed(String),
}

impl SrvAnswer {
    /// The targets, best first, that obey SfB's same-domain rule for
    /// `domain` (a host directly in it), or why there are none. The one
    /// place that chooses a partner's edge among its SRV records.
    pub fn same_domain(&self, domain: &str) -> Result<Vec<&SrvTarget>, NoEdge> {
        match self {
            SrvAnswer::Targets(ts) => {
                let valid: Vec<&SrvTarget> = ts
                    .iter()
                    .filter(|t| directly_in(&t.target, domain))
                    .collect();
                if valid.is_empty() {
                    return Err(NoEdge::OutsideDomain(
                        ts.iter().map(|t| t.target.clone()).collect(),
                    ));
                }
                Ok(valid)
            }
            SrvAnswer::NotFound => Err(NoEdge::NotFound),
            SrvAnswer::Failed(e) => Err(NoEdge::Failed(e.clone())),
        }
    }
}

/// Why a host's addresses could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no A or AAAA record")]
    NoAddress,
    #[error("{0}")]
    Failed(String),
}

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("DNS resolver: {0}")]
pub struct ResolverError(String);

/// The edge's resolver.
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<TokioResolver>,
    /// Where it asks, for logs.
    pub server: Option<SocketAddr>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// Asks `server` (UDP, then TCP), or the system's name servers when `None`.
    pub fn new(server: Option<SocketAddr>) -> Result<Dns, ResolverError> {
        let builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }

                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| ResolverError(e.to_string()))?,
        };
        let mut builder = builder;
        // Partners' names are absolute: no search domains.
        builder.options_mut().ndots = 0;
        let resolver = builder.build().map_err(|e| ResolverError(e.to_string()))?;
        Ok(Dns {
            resolver: Arc::new(resolver),
            server,
        })
    }

    /// `_sipfederationtls._tcp.<domain>`.
    pub async fn federation_srv(&self, domain: &str) -> SrvAnswer {
        self.srv(&format!(
            "_sipfederationtls._tcp.{}.",
            domain.trim_end_matches('.')
        ))
        .await
    }

    /// The SRV records of an absolute name.
    pub async fn srv(&self, name: &str) -> SrvAnswer {
        match self.resolver.srv_lookup(name).await {
            Ok(lookup) => {
                let mut targets: Vec<SrvTarget> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(s) => Some(SrvTarget {
                            priority: s.priority,
                            weight: s.weight,
                            port: s.port,
                            target: s
                                .target
                                .to_string()
                                .trim_end_matches('.')
                                .to_ascii_lowercase(),
                        }),
                        _ => None,
                    })
                    .collect();
                if targets.is_empty() {
                    return SrvAnswer::NotFound;
                }
                targets.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
                SrvAnswer::Targets(targets)
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => SrvAnswer::NotFound,
            Err(e) => SrvAnswer::Failed(e.to_string()),
        }
    }

    /// A and AAAA records of a host.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        let name = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(name.as_str()).await {
            Ok(l) => Ok(l.iter().collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Err(LookupError::NoAddress),
            Err(e) => Err(LookupError::Failed(e.to_string())),
        }
    }
}

impl HostResolver for Dns {
    fn addresses<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, ResolveFailure>> + Send + 'a>> {
        Box::pin(async move {
            Dns::addresses(self, host)
                .await
                .map_err(ResolveFailure::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(target: &str, port: u16) -> SrvTarget {
        SrvTarget {
            priority: 0,
            weight: 0,
            port,
            target: target.into(),
        }
    }

    /// The one same-domain choice: targets directly in the domain, best
    /// first; otherwise why there is none.
    #[test]
    fn same_domain_targets() {
        let a = SrvAnswer::Targets(vec![
            t("edge.other.test", 5061),
            t("sip.dom.test", 5071),
            t("sip.sub.dom.test", 5061),
        ]);
        let got: Vec<(&str, u16)> = a
            .same_domain("dom.test")
            .unwrap()
            .iter()
            .map(|t| (t.target.as_str(), t.port))
            .collect();
        assert_eq!(got, [("sip.dom.test", 5071)]);
        let outside = SrvAnswer::Targets(vec![t("sip.sub.dom.test", 5061)]);
        assert_eq!(
            outside.same_domain("dom.test"),
            Err(NoEdge::OutsideDomain(vec!["sip.sub.dom.test".into()]))
        );
        assert_eq!(
            SrvAnswer::NotFound.same_domain("dom.test"),
            Err(NoEdge::NotFound)
        );
        assert_eq!(
            SrvAnswer::Failed("timed out".into()).same_domain("dom.test"),
            Err(NoEdge::Failed("timed out".into()))
        );
    }
}
