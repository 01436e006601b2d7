//! Responses the edge originates itself (RFC 3261 §8.2.6): errors,
//! 100 Trying and answers to requests addressed to the edge.
//!
//! Owns how a response is derived from a request: Via values, From, To
//! (with a tag added when missing), Call-ID and CSeq are copied as received,
//! which also works for a request that failed to parse (its phase-one index
//! is enough). Carries a reason in the Warning header; what the reason is
//! is decided by the caller.

use std::fmt::Write as _;

use bytes::Bytes;

use super::headers::{HeaderName, NameAddr};
use super::message::SipMessage;

/// The standard reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Request Failure",
            5 => "Server Failure",
            _ => "Global Failure",
        },
    }
}

/// A random tag or branch suffix: 16 lowercase hex digits.
pub fn random_token() -> String {
    let v: u64 = rand::random();
    format!("{v:016x}")
}

/// Quotes `s` as a SIP quoted-string, escaping `"` and `\` and dropping
/// control characters.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds a response to a request.
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'m> {
    req: &'m SipMessage,
    status: u16,
    reason: String,
    to_tag: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<(String, Bytes)>,
}

impl<'m> ResponseBuilder<'m> {
    pub fn new(req: &'m SipMessage, status: u16) -> Self {
        ResponseBuilder {
            req,
            status,
            reason: reason_phrase(status).to_string(),
            to_tag: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Overrides the reason phrase (control characters are replaced).
    pub fn reason_phrase(mut self, r: &str) -> Self {
        self.reason = r
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self
    }

    /// Uses this To tag when the request's To has none (default: random).
    pub fn to_tag(mut self, tag: impl Into<String>) -> Self {
        self.to_tag = Some(tag.into());
        self
    }

    /// Adds `Warning: <code> <agent> "<text>"`.
    pub fn warning(self, code: u16, agent: &str, text: &str) -> Self {
        let v = format!("{code} {agent} {}", quote(text));
        self.header("Warning", v)
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_string(), body));
        self
    }

    pub fn build(&self) -> Bytes {
        let req = self.req;
        let mut out = String::with_capacity(512);
        let _ = write!(out, "SIP/2.0 {} {}\r\n", self.status, self.reason);
        for h in req.headers() {
            if h.name == HeaderName::Via {
                let _ = write!(out, "Via: {}\r\n", req.value(h));
            }
        }
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            if let Some(h) = req.headers().iter().find(|h| h.name == name) {
                let v = req.value(h);
                if name == HeaderName::To && self.status > 100 {
                    let has_tag = NameAddr::parse(v)
                        .map(|n| n.tag().is_some())
                        .unwrap_or(true);
                    if !has_tag {
                        let tag = self.to_tag.clone().unwrap_or_else(random_token);
                        let _ = write!(out, "To: {v};tag={tag}\r\n");
                        continue;
                    }
                }
                let _ = write!(out, "{}: {v}\r\n", name.as_str());
            }
        }
        for (n, v) in &self.headers {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        match &self.body {
            Some((ct, body)) => {
                let _ = write!(
                    out,
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let mut b = out.into_bytes();
                b.extend_from_slice(body);
                Bytes::from(b)
            }
            None => {
                out.push_str("Content-Length: 0\r\n\r\n");
                Bytes::from(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Limits, find_head_end, parse_framed};

    #[test]
    fn error_response_echoes_the_transaction_headers() {
        let s = "INVITE sip:bob@home.test SIP/2.0\r\n\
            Via: SIP/2.0/TLS a.partner.test;branch=z9hG4bK1\r\n\
            v: SIP/2.0/TLS b.partner.test;branch=z9hG4bK2\r\n\
            From: <sip:alice@partner.test>;tag=1\r\n\
            To: <sip:bob@home.test>\r\n\
            Call-ID: x1\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let raw = Bytes::copy_from_slice(s.as_bytes());
        let he = find_head_end(&raw, 0).unwrap();
        let m = parse_framed(raw, he, &Limits::default()).unwrap();
        let r = ResponseBuilder::new(&m, 403)
            .to_tag("abc")
            .warning(399, "edge.home.test", "partner \"x\" is suspended")
            .build();
        let t = std::str::from_utf8(&r).unwrap();
        assert!(t.starts_with("SIP/2.0 403 Forbidden\r\nVia: SIP/2.0/TLS a.partner.test;branch=z9hG4bK1\r\nVia: SIP/2.0/TLS b.partner.test;branch=z9hG4bK2\r\n"));
        assert!(t.contains("To: <sip:bob@home.test>;tag=abc\r\n"));
        assert!(t.contains("Warning: 399 edge.home.test \"partner \\\"x\\\" is suspended\"\r\n"));
        assert!(t.ends_with("Content-Length: 0\r\n\r\n"));
        // The response parses as a valid message.
        let raw = Bytes::copy_from_slice(t.as_bytes());
        let he = find_head_end(&raw, 0).unwrap();
        let resp = parse_framed(raw, he, &Limits::default()).unwrap();
        assert_eq!(resp.status(), Some(403));
    }
}
