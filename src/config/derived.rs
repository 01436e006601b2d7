//! Values computed from the settings: the DNS records to publish, the
//! internal next hop, and the CVI connector's fixed address.
//!
//! Owns parsing the settings that are strings with structure (URIs,
//! `HOST:PORT`). It never reads files and never binds anything.

use crate::sip::uri::{Host, Scheme, Uri};

use super::edge::Config;
use super::error::ConfigError;

impl Config {
    /// What the edge publishes in DNS, from the configuration.
    pub fn publish(&self) -> Result<crate::dns::zone::Publish, ConfigError> {
        let listen = self.federation.listen;
        let addresses = if self.dns.addresses.is_empty() {
            if listen.ip().is_unspecified() {
                return Err(ConfigError(format!(
                    "[dns] addresses is empty and the federation listener is on {}: name the edge's public addresses",
                    listen.ip()
                )));
            }
            vec![listen.ip()]
        } else {
            self.dns.addresses.clone()
        };
        Ok(crate::dns::zone::Publish {
            home_domains: self.federation.home_domains.clone(),
            edge_fqdn: self.federation.fqdn.clone(),
            sip_port: self.dns.sip_port.unwrap_or(listen.port()),
            addresses,
            cvi_domain: self.dns.cvi_domain.clone(),
            cvi_port: self.dns.cvi_port,
            cvi_tls_port: self.dns.cvi_tls_port,
            // The ports room systems reach (0 in tests: the standard ones).
            h323: self.cvi.h323.then(|| {
                let or = |p: u16, d: u16| if p == 0 { d } else { p };
                (
                    or(self.cvi.h323_listen.port(), 1720),
                    or(self.cvi.h323_ras.port(), 1719),
                )
            }),
            ttl: self.dns.ttl.as_secs() as u32,
            serial: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(1),
        })
    }

    /// The parsed `[cvi] connector_address` (`HOST:PORT`, IPv6 in brackets).
    pub fn cvi_connector_address(&self) -> Result<Option<(String, u16)>, ConfigError> {
        let Some(raw) = &self.cvi.connector_address else {
            return Ok(None);
        };
        let bad = || ConfigError(format!("[cvi] connector_address {raw:?} must be HOST:PORT"));
        let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Some((host.to_string(), port)))
    }

    /// The parsed `[internal] next_hop`: host, port and transport.
    pub fn next_hop(&self) -> Result<NextHop, ConfigError> {
        let raw = &self.internal.next_hop;
        let bad = |why: &str| ConfigError(format!("[internal] next_hop {raw:?}: {why}"));
        let u = Uri::parse(raw).map_err(|e| bad(&e.to_string()))?;
        if !u.is_sip() {
            return Err(bad("must be a sip: or sips: URI"));
        }
        if u.user.is_some() {
            return Err(bad("must name a host, not a user"));
        }
        let transport = match u.transport().map(str::to_ascii_lowercase) {
            None if u.scheme == Scheme::Sips => "tls".to_string(),
            None => "udp".to_string(),
            Some(t) if matches!(t.as_str(), "udp" | "tcp" | "tls") => t,
            Some(t) => return Err(bad(&format!("transport {t:?} is not udp, tcp or tls"))),
        };
        // Bare (an IPv6 address without its URI brackets): it is resolved,
        // parsed as an address and used as a TLS server name as it is.
        let host = match u.host.ok_or_else(|| bad("has no host"))? {
            Host::V6(a) => a.to_string(),
            h => h.to_string(),
        };
        let port = u
            .port
            .unwrap_or(if transport == "tls" { 5061 } else { 5060 });
        Ok(NextHop {
            host,
            port,
            transport,
        })
    }
}

impl Config {
    /// The sources the internal listener accepts (`[internal]
    /// allowed_sources`, else the next hop's address).
    pub fn internal_sources(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        let list = &self.internal.allowed_sources;
        if list.is_empty() {
            let hop = self.next_hop()?;
            return match hop.host.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(vec![ipnet::IpNet::from(ip)]),
                Err(_) => Err(ConfigError(format!(
                    "[internal] allowed_sources must list the home pool's addresses: next_hop names the host {}, not an address",
                    hop.host
                ))),
            };
        }
        let mut nets = list
            .iter()
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| {
                        ConfigError(format!(
                            "[internal] allowed_sources: {s:?} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The next hop answers on the internal UDP socket: always allowed.
        if let Ok(ip) = self.next_hop()?.host.parse::<std::net::IpAddr>()
            && !nets.iter().any(|n| n.contains(&ip))
        {
            nets.push(ipnet::IpNet::from(ip));
        }
        Ok(nets)
    }
}

/// Where admitted partner requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: String,
    pub port: u16,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
}
