//! CVI gateway mode: video room systems join Teams meetings by a 10-digit
//! VTC conference ID. `enrol` checks organisers' enrolments, `meetings`
//! makes IDs, invitation text and the dialling instructions page, `dtmf`
//! reads key presses, `audio` holds the prompts and G.711, and `gateway` is
//! the back-to-back user agent between a room system and the connector
//! (the Teams side), its media through the shared relay; `guard` counts
//! what strangers may do (guess budgets, proven UDP sources, calls per
//! source); `h323` takes H.323 room systems' calls and `webrtc`
//! browsers' and presents them to the gateway as SIP, through `inproc`.

pub mod audio;
pub mod dtmf;
pub mod enrol;
pub mod gateway;
pub mod guard;
pub mod h323;
pub mod inproc;
pub mod meetings;
pub mod webrtc;

use std::net::IpAddr;

/// A room system trusted to bypass the lobby: an address, a subnet, or a
/// SIP domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    Net(IpAddr, u8),
    Domain(String),
}

impl Trust {
    pub fn parse(s: &str) -> Option<Trust> {
        let s = s.trim();
        if let Some((ip, len)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().ok()?;
            let len: u8 = len.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            return (len <= max).then_some(Trust::Net(ip, len));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(Trust::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        let ok = !s.is_empty()
            && s.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        ok.then(|| Trust::Domain(s.to_ascii_lowercase()))
    }

    /// True for a room system at `ip` calling from SIP domain `domain`.
    pub fn matches(&self, ip: IpAddr, domain: Option<&str>) -> bool {
        match self {
            Trust::Net(net, len) => match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => {
                    let mask = if *len == 0 {
                        0
                    } else {
                        u32::MAX << (32 - *len as u32)
                    };
                    u32::from(*n) & mask == u32::from(a) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(a)) => {
                    let mask = if *len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - *len as u32)
                    };
                    u128::from(*n) & mask == u128::from(a) & mask
                }
                _ => false,
            },
            Trust::Domain(d) => domain.is_some_and(|x| {
                let x = x.to_ascii_lowercase();
                x == *d || x.ends_with(&format!(".{d}"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_devices() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net = Trust::parse("10.1.0.0/16").unwrap();
        assert!(net.matches(ip("10.1.2.3"), None));
        assert!(!net.matches(ip("10.2.0.1"), None));
        assert!(!net.matches(ip("::1"), None));
        let one = Trust::parse("192.0.2.7").unwrap();
        assert!(one.matches(ip("192.0.2.7"), None) && !one.matches(ip("192.0.2.8"), None));
        let v6 = Trust::parse("2001:db8::/32").unwrap();
        assert!(v6.matches(ip("2001:db8:1::5"), None));
        let d = Trust::parse("Leeds.NHS.uk").unwrap();
        assert!(d.matches(ip("203.0.113.1"), Some("leeds.nhs.uk")));
        assert!(d.matches(ip("203.0.113.1"), Some("vc.leeds.nhs.uk")));
        assert!(!d.matches(ip("203.0.113.1"), Some("evilleeds.nhs.uk")));
        assert!(
            Trust::parse("10.0.0.0/33").is_none()
                && Trust::parse("bad domain").is_none()
                && Trust::parse("").is_none()
        );
        assert!(
            Trust::parse("0.0.0.0/0")
                .unwrap()
                .matches(ip("8.8.8.8"), None)
        );
    }
}
