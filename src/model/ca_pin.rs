//! Per-partner CA pins: the SHA-256 hashes of the SubjectPublicKeyInfo of
//! the CAs a partner's edge certificate must chain to, in the one form the
//! store keeps (`sha256:<64 hex>`, comma-separated), read from that form,
//! bare hex, or HPKP's base64 `pin-sha256`.
//!
//! Owns the pin's text form and its parsing. Never reads certificates (the
//! CLI hashes a CA file with `sip::transport::tls::spki_sha256`) and never
//! checks a chain (`federation::identity` does, in the handshake).

use super::partner::PartnerDetails;

/// Most pins one partner may hold (a CA and its successor, and some room).
pub const MAX_CA_PINS: usize = 4;

/// One pin in its canonical form, `sha256:` and 64 lower-case hex digits,
/// from that form, bare hex, or the base64 of HPKP's `pin-sha256`.
pub fn canonical_pin(s: &str) -> Option<String> {
    use base64::Engine as _;
    let s = s.trim();
    let body = s
        .strip_prefix("sha256:")
        .or_else(|| s.strip_prefix("sha256/"))
        .or_else(|| s.strip_prefix("pin-sha256="))
        .unwrap_or(s)
        .trim_matches('"');
    let bytes: Vec<u8> = if body.len() == 64 && body.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&body[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .ok()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?
    };
    (bytes.len() == 32).then(|| format!("sha256:{}", hex(&bytes)))
}

/// A comma-separated list of pins in canonical form (`None` if any is bad).
pub fn canonical_pins(s: &str) -> Option<String> {
    let pins: Vec<String> = s.split(',').map(canonical_pin).collect::<Option<_>>()?;
    (!pins.is_empty() && pins.len() <= MAX_CA_PINS).then(|| pins.join(","))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl PartnerDetails {
    /// The partner's CA pins as SPKI SHA-256 hashes (none when unset; a
    /// malformed stored pin yields none of its own, which `problems` reports).
    pub fn ca_pins(&self) -> Vec<[u8; 32]> {
        let Some(list) = self.ca_pin.as_deref().and_then(canonical_pins) else {
            return Vec::new();
        };
        list.split(',')
            .filter_map(|p| {
                let h = p.strip_prefix("sha256:")?;
                let mut out = [0u8; 32];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some(out)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::partner::{PartnerState, sample};

    #[test]
    fn ca_pins_are_canonical_and_need_an_edge() {
        let hexpin = "AB".repeat(32);
        let want = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(canonical_pin(&hexpin).as_deref(), Some(want.as_str()));
        assert_eq!(
            canonical_pin(&format!("sha256:{hexpin}")).as_deref(),
            Some(want.as_str())
        );
        // HPKP's base64 form of the same 32 bytes.
        let b64 = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
        assert_eq!(canonical_pin(b64).as_deref(), Some(want.as_str()));
        assert_eq!(canonical_pin("sha256:abcd"), None);
        let mut d = sample("p", &["p.test"], None, PartnerState::Requested).details;
        d.ca_pin = Some(format!(" {hexpin} ,{b64}"));
        d.normalise();
        assert_eq!(d.ca_pin, Some(format!("{want},{want}")));
        assert_eq!(d.ca_pins(), vec![[0xab; 32], [0xab; 32]]);
        let problems: Vec<String> = d.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(problems, ["ca_pin"], "a pin without an edge FQDN");
        d.edge_fqdn = Some("sip.p.test".into());
        assert!(d.problems().is_empty());
        d.ca_pin = Some("sha256:zz".into());
        assert_eq!(d.problems()[0].0, "ca_pin");
        assert!(d.ca_pins().is_empty());
    }
}
