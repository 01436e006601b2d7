//! Which product sent a request, from its User-Agent (or Server) header,
//! and whether it is a Lync or Skype for Business version the home service
//! federates with.
//!
//! Owns recognising Microsoft UC products and comparing dotted versions.
//! Lync and SfB clients announce `UCCAPI/<build> OC/<build> (...)`; servers
//! and their applications announce `RTC/<major.minor>` or `RTCC/<version>`.

use std::cmp::Ordering;
use std::fmt;

/// A dotted numeric version; missing parts compare as zero (4.0 == 4.0.0.0).
#[derive(Debug, Clone)]
pub struct Version(pub Vec<u32>);

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let parts: Option<Vec<u32>> = s.trim().split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Version)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| {
                self.0
                    .get(i)
                    .unwrap_or(&0)
                    .cmp(other.0.get(i).unwrap_or(&0))
            })
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&s.join("."))
    }
}

/// What a User-Agent or Server value says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Product {
    /// A Lync or SfB client (UCCAPI / OC build).
    Client(Version),
    /// A Lync or SfB server or server application (RTC / RTCC).
    Server(Version),
    /// Something else, named by its first product token.
    Other(String),
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Product::Client(v) => write!(f, "Lync/Skype for Business client build {v}"),
            Product::Server(v) => write!(f, "Lync/Skype for Business server version {v}"),
            Product::Other(name) => write!(f, "{name} (not Lync or Skype for Business)"),
        }
    }
}

/// Reads the product from a User-Agent or Server value.
pub fn identify(value: &str) -> Product {
    let mut first_other: Option<String> = None;
    let mut depth = 0usize;
    for tok in value.split_whitespace() {
        // Skip comments: "(Skype for Business)" names the client but is not a product token.
        let opens = tok.matches('(').count();
        let closes = tok.matches(')').count();
        if depth > 0 || tok.starts_with('(') {
            depth = (depth + opens).saturating_sub(closes);
            continue;
        }
        let (name, ver) = tok.split_once('/').unwrap_or((tok, ""));
        let v = Version::parse(ver);
        match name.to_ascii_uppercase().as_str() {
            "UCCAPI" | "OC" => {
                if let Some(v) = v {
                    return Product::Client(v);
                }
            }
            "RTC" | "RTCC" => {
                if let Some(v) = v {
                    return Product::Server(v);
                }
            }
            _ => {
                if first_other.is_none() {
                    first_other = Some(tok.to_string());
                }
            }
        }
    }
    Product::Other(first_other.unwrap_or_else(|| value.trim().to_string()))
}

/// The limits a product is held to.
#[derive(Debug, Clone)]
pub struct Minimums {
    pub client: Version,
    pub server: Version,
    pub allow_other: bool,
}

/// Why a product may not federate: each names what was seen and the minimum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductRefusal {
    #[error(
        "Lync/Skype for Business client build {seen} is older than the oldest accepted, {min} (Lync 2010)"
    )]
    OldClient { seen: Version, min: Version },
    #[error(
        "Lync/Skype for Business server version {seen} is older than the oldest accepted, RTC/{min}"
    )]
    OldServer { seen: Version, min: Version },
    #[error(
        "{name} is not Lync or Skype for Business; only Lync 2010 ({min_client}) or later and Skype for Business federate here"
    )]
    NotLync { name: String, min_client: Version },
}

/// `Ok` when the product may federate, else why not.
pub fn check(value: &str, min: &Minimums) -> Result<(), ProductRefusal> {
    match identify(value) {
        Product::Client(v) if v >= min.client => Ok(()),
        Product::Client(seen) => Err(ProductRefusal::OldClient {
            seen,
            min: min.client.clone(),
        }),
        Product::Server(v) if v >= min.server => Ok(()),
        Product::Server(seen) => Err(ProductRefusal::OldServer {
            seen,
            min: min.server.clone(),
        }),
        Product::Other(_) if min.allow_other => Ok(()),
        Product::Other(name) => Err(ProductRefusal::NotLync {
            name,
            min_client: min.client.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min() -> Minimums {
        Minimums {
            client: Version::parse("4.0.7577.4103").unwrap(),
            server: Version::parse("4.0").unwrap(),
            allow_other: false,
        }
    }

    #[test]
    fn versions_compare_numerically() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("4.0.7577.4103") > v("4.0.7577.314"));
        assert!(v("15.0.4420.1017") > v("4.0.7577.4103"));
        assert!(v("4.0") == v("4.0.0.0"));
        assert!(v("3.5.6907.0") < v("4.0"));
        assert!(Version::parse("4.x").is_none());
        assert!(Version::parse("").is_none());
    }

    /// Real strings from the reference, with the verdict for each.
    #[test]
    fn product_table() {
        let rows: &[(&str, bool, &str)] = &[
            (
                "UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)",
                true,
                "",
            ),
            (
                "UCCAPI/15.0.4420.1017 OC/15.0.4420.1017 (Microsoft Lync)",
                true,
                "",
            ),
            (
                "UCCAPI/4.0.7577.4103 OC/4.0.7577.4103 (Microsoft Lync 2010)",
                true,
                "",
            ),
            (
                "UCCAPI/4.0.7577.314 OC/4.0.7577.314 (Microsoft Lync 2010)",
                false,
                "client build 4.0.7577.314 is older than the oldest accepted, 4.0.7577.4103",
            ),
            (
                "UCCAPI/3.5.6907.206 OC/3.5.6907.206 (Microsoft Office Communicator 2007 R2)",
                false,
                "3.5.6907.206",
            ),
            ("RTC/6.0", true, ""),
            ("RTCC/5.0.0.0 MediationServer", true, ""),
            (
                "RTC/3.0",
                false,
                "server version 3.0 is older than the oldest accepted, RTC/4.0",
            ),
            (
                "Cisco-Jabber/12.9.3 (Windows)",
                false,
                "Cisco-Jabber/12.9.3 is not Lync or Skype for Business",
            ),
            ("Skype/8.96.0.409", false, "Skype/8.96.0.409 is not Lync"),
            (
                "(Skype for Business) Kamailio",
                false,
                "Kamailio is not Lync",
            ),
        ];
        for (ua, ok, frag) in rows {
            match check(ua, &min()) {
                Ok(()) => assert!(*ok, "{ua} was accepted"),
                Err(refusal) => {
                    let reason = refusal.to_string();
                    assert!(!*ok, "{ua} was refused: {reason}");
                    assert!(reason.contains(frag), "{ua}: {reason:?} lacks {frag:?}");
                }
            }
        }
        let mut lab = min();
        lab.allow_other = true;
        assert!(check("Cisco-Jabber/12.9.3", &lab).is_ok());
    }
}
