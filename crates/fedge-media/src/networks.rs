//! Which addresses the relay may send media to (and so latch a side to):
//! an allow list and a refuse list of networks, the refuse list winning.
//!
//! Owns that judgement only. It never opens sockets and never logs: the
//! caller says why something was refused.

use std::net::IpAddr;

use ipnet::IpNet;

/// Why a list of networks could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network like 192.0.2.0/24 or 2001:db8::/32 (or a bare address)")]
pub struct NetworkError(pub String);

/// Networks the relay may send media to: inside `allowed` and outside
/// `refused`. IPv4-mapped IPv6 addresses count as their IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Networks {
    allowed: Vec<IpNet>,
    refused: Vec<IpNet>,
}

/// The networks refused by default: loopback, link-local, "this network",
/// multicast and broadcast. Nothing legitimate receives relayed media there
/// from a public edge; loopback reaches the edge's own services.
pub const DEFAULT_REFUSED: [&str; 9] = [
    "127.0.0.0/8",
    "169.254.0.0/16",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "::1/128",
    "::/128",
    "fe80::/10",
    "ff00::/8",
];

/// Private and shared address space, refused on the partner side by
/// default: a partner names its public media address, and one naming a
/// private one would have the relay send into the edge's own networks.
pub const DEFAULT_PARTNER_REFUSED: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

/// Reads one network (`a.b.c.d/n`, `x::/n`, or a bare address).
pub fn parse_network(s: &str) -> Result<IpNet, NetworkError> {
    let t = s.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| NetworkError(s.to_string()))
}

fn parse_all<S: AsRef<str>>(list: &[S]) -> Result<Vec<IpNet>, NetworkError> {
    list.iter().map(|s| parse_network(s.as_ref())).collect()
}

impl Networks {
    /// Every address (for tests and for a side the operator fully trusts).
    pub fn any() -> Networks {
        Networks {
            allowed: vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())],
            refused: Vec::new(),
        }
    }

    /// No address at all.
    pub fn none() -> Networks {
        Networks {
            allowed: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// From configured lists; every entry must read.
    pub fn new<A: AsRef<str>, R: AsRef<str>>(
        allowed: &[A],
        refused: &[R],
    ) -> Result<Networks, NetworkError> {
        Ok(Networks {
            allowed: parse_all(allowed)?,
            refused: parse_all(refused)?,
        })
    }

    /// Whether media may go to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed.iter().any(|n| n.contains(&ip))
            && !self.refused.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_defaults_refuse_loopback_link_local_and_multicast_and_private_on_the_partner_side() {
        let any = ["0.0.0.0/0", "::/0"];
        let home = Networks::new(&any, &DEFAULT_REFUSED).unwrap();
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "169.254.1.1",
            "::1",
            "fe80::1",
            "224.0.0.1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
        ] {
            assert!(!home.allows(ip(bad)), "{bad}");
        }
        for good in ["192.0.2.10", "10.1.2.3", "2001:db8::1", "::ffff:192.0.2.1"] {
            assert!(home.allows(ip(good)), "{good}");
        }
        let refused: Vec<&str> = DEFAULT_REFUSED
            .iter()
            .chain(&DEFAULT_PARTNER_REFUSED)
            .copied()
            .collect();
        let partner = Networks::new(&any, &refused).unwrap();
        for bad in [
            "10.1.2.3",
            "192.168.0.5",
            "172.20.0.1",
            "100.64.1.1",
            "fd00::1",
        ] {
            assert!(!partner.allows(ip(bad)), "{bad}");
        }
        assert!(partner.allows(ip("198.51.100.7")));
        // An allow list narrows; a bare address is a /32.
        let narrow = Networks::new(&["192.0.2.0/24", "203.0.113.9"], &[] as &[&str]).unwrap();
        assert!(narrow.allows(ip("192.0.2.77")) && narrow.allows(ip("203.0.113.9")));
        assert!(!narrow.allows(ip("203.0.113.10")));
        assert!(Networks::new(&["300.0.0.0/8"], &[] as &[&str]).is_err());
        assert!(Networks::any().allows(ip("127.0.0.1")));
    }
}
