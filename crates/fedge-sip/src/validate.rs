//! Request validation every proxy performs before routing (RFC 3261
//! §16.3): required headers, URI scheme, Max-Forwards, Proxy-Require, and
//! a usable transaction identifier.
//!
//! Owns protocol checks that hold whatever the policy is. It says nothing
//! about partners, domains or content: those belong to the layers above.

use super::headers::HeaderName;
use super::message::SipMessage;
use super::uri::Scheme;

/// A request refused by a protocol rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
    /// Extra headers the response must carry (e.g. `Unsupported` for 420).
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }
}

/// The RFC 3261 magic cookie that marks a branch as globally unique.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Checks a parsed request against the generic proxy rules. `proxy_extensions`
/// lists the option tags this proxy implements for `Proxy-Require`.
pub fn check_request(msg: &SipMessage, proxy_extensions: &[&str]) -> Result<(), Refusal> {
    let missing: Vec<&str> = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ]
    .iter()
    .filter(|n| msg.first(**n).is_none())
    .map(|n| n.as_str())
    .collect();
    if !missing.is_empty() {
        return Err(Refusal::new(
            400,
            format!("missing required header(s): {}", missing.join(", ")),
        ));
    }
    if let Some(via) = msg.top_via()
        && via.branch() == Some(MAGIC_COOKIE)
    {
        return Err(Refusal::new(
            400,
            "Via branch is the bare magic cookie z9hG4bK with no unique part",
        ));
    }
    let uri = msg
        .request_uri()
        .ok_or_else(|| Refusal::new(400, "unreadable Request-URI"))?;
    match uri.scheme {
        Scheme::Sip | Scheme::Sips => {}
        _ => {
            return Err(Refusal::new(
                416,
                format!(
                    "Request-URI scheme {:?} is not supported here; use sip: or sips:",
                    uri.scheme_str
                ),
            ));
        }
    }
    if msg.max_forwards() == Some(0) {
        return Err(Refusal::new(483, "Max-Forwards reached zero"));
    }
    let unsupported: Vec<&str> = msg
        .values(HeaderName::ProxyRequire)
        .map(str::trim)
        .filter(|t| !t.is_empty() && !proxy_extensions.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if !unsupported.is_empty() {
        let list = unsupported.join(", ");
        let mut r = Refusal::new(
            420,
            format!("Proxy-Require names extensions this edge does not support: {list}"),
        );
        r.headers.push(("Unsupported", list));
        return Err(r);
    }
    Ok(())
}
