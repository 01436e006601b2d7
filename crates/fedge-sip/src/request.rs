//! Requests the edge originates itself: the one place where a request's
//! bytes are written from parts (RFC 3261 §8.1.1), beside
//! [`crate::response::ResponseBuilder`] for responses.
//!
//! Owns the order and spelling of the mandatory header fields (Via,
//! Max-Forwards, Route, From, To, Call-ID, CSeq, Contact, then the caller's
//! headers, Content-Type and Content-Length) and the requests derived from
//! an INVITE (CANCEL, §9.1; ACK for a non-2xx answer, §17.1.1.3). Never
//! decides where a request goes or what it may carry: callers give every
//! value. Forwarded requests are not built here; they are edited in place
//! by [`crate::edit::Editor`].

use std::fmt::Write as _;

use bytes::Bytes;

use crate::headers::HeaderName;
use crate::message::SipMessage;

/// Builds one request from its parts.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: String,
    uri: String,
    via: Option<String>,
    routes: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    contact: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<(String, Bytes)>,
}

impl RequestBuilder {
    /// A request for `method` to `uri` (the Request-URI as written).
    /// CSeq defaults to 1; Max-Forwards is always 70.
    pub fn new(method: impl Into<String>, uri: impl Into<String>) -> Self {
        RequestBuilder {
            method: method.into(),
            uri: uri.into(),
            via: None,
            routes: Vec::new(),
            from: String::new(),
            to: String::new(),
            call_id: String::new(),
            cseq: 1,
            contact: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// The Via value, e.g. `SIP/2.0/TLS edge.test:5061;branch=z9hG4bK...`.
    pub fn via(mut self, v: impl Into<String>) -> Self {
        self.via = Some(v.into());
        self
    }

    /// Appends one Route entry.
    pub fn route(mut self, r: impl Into<String>) -> Self {
        self.routes.push(r.into());
        self
    }

    /// Appends Route entries in order.
    pub fn routes<I, S>(mut self, rs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.routes.extend(rs.into_iter().map(Into::into));
        self
    }

    /// The From value as written (name-addr with its tag).
    pub fn from(mut self, v: impl Into<String>) -> Self {
        self.from = v.into();
        self
    }

    /// The To value as written.
    pub fn to(mut self, v: impl Into<String>) -> Self {
        self.to = v.into();
        self
    }

    pub fn call_id(mut self, v: impl Into<String>) -> Self {
        self.call_id = v.into();
        self
    }

    /// The CSeq number (the method is the request's own).
    pub fn cseq(mut self, n: u32) -> Self {
        self.cseq = n;
        self
    }

    pub fn contact(mut self, v: impl Into<String>) -> Self {
        self.contact = Some(v.into());
        self
    }

    /// Appends a header after the mandatory ones.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends headers after the mandatory ones, in order.
    pub fn headers<'a>(mut self, hs: impl IntoIterator<Item = &'a (String, String)>) -> Self {
        self.headers.extend(hs.into_iter().cloned());
        self
    }

    /// The body and its Content-Type; Content-Length follows from it.
    pub fn body(mut self, content_type: impl Into<String>, body: impl Into<Bytes>) -> Self {
        self.body = Some((content_type.into(), body.into()));
        self
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn cseq_number(&self) -> u32 {
        self.cseq
    }

    /// The request's bytes.
    pub fn build(&self) -> Bytes {
        let body_len = self.body.as_ref().map_or(0, |(_, b)| b.len());
        let mut out = String::with_capacity(320 + self.headers.len() * 48);
        let m = &self.method;
        let _ = write!(out, "{m} {} SIP/2.0\r\n", self.uri);
        if let Some(v) = &self.via {
            let _ = write!(out, "Via: {v}\r\n");
        }
        out.push_str("Max-Forwards: 70\r\n");
        for r in &self.routes {
            let _ = write!(out, "Route: {r}\r\n");
        }
        let _ = write!(
            out,
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {m}\r\n",
            self.from, self.to, self.call_id, self.cseq
        );
        if let Some(c) = &self.contact {
            let _ = write!(out, "Contact: {c}\r\n");
        }
        for (n, v) in &self.headers {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        if let Some((ct, _)) = &self.body {
            let _ = write!(out, "Content-Type: {ct}\r\n");
        }
        let _ = write!(out, "Content-Length: {body_len}\r\n\r\n");
        let mut bytes = out.into_bytes();
        if let Some((_, b)) = &self.body {
            bytes.extend_from_slice(b);
        }
        Bytes::from(bytes)
    }

    /// The CANCEL for an INVITE we sent (RFC 3261 §9.1): same Request-URI,
    /// Call-ID, From, To, CSeq number and Route, the INVITE's top Via only.
    /// `None` when the INVITE lacks one of them.
    pub fn cancel_for(invite: &SipMessage) -> Option<Self> {
        Self::derived(invite, "CANCEL", None)
    }

    /// The ACK for a non-2xx final answer to an INVITE we sent
    /// (§17.1.1.3): as the CANCEL, with the answer's To (and its tag).
    pub fn ack_for_failure(invite: &SipMessage, answer: &SipMessage) -> Option<Self> {
        Self::derived(invite, "ACK", answer.first(HeaderName::To))
    }

    fn derived(invite: &SipMessage, method: &str, to: Option<&str>) -> Option<Self> {
        Some(
            RequestBuilder::new(method, invite.request_uri_str()?)
                .via(invite.first(HeaderName::Via)?)
                .routes(invite.values(HeaderName::Route))
                .from(invite.first(HeaderName::From)?)
                .to(to.or_else(|| invite.first(HeaderName::To))?)
                .call_id(invite.call_id()?)
                .cseq(invite.cseq()?.seq),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Limits, find_head_end, parse_framed};

    fn parse(b: &Bytes) -> SipMessage {
        let head = find_head_end(b, 0).expect("a head");
        parse_framed(b.clone(), head, &Limits::default()).expect("parses")
    }

    #[test]
    fn a_built_request_parses_and_keeps_every_part() {
        let b = RequestBuilder::new("MESSAGE", "sip:bob@partner.test")
            .via("SIP/2.0/TLS edge.test:5061;branch=z9hG4bK-1")
            .route("<sip:p.test;lr>")
            .from("<sip:alice@home.test>;tag=a1")
            .to("<sip:bob@partner.test>")
            .call_id("c1@edge.test")
            .cseq(7)
            .contact("<sip:edge.test:5061;transport=tls>")
            .header("X-Test", "yes")
            .body("text/plain", Bytes::from_static(b"hello"))
            .build();
        let text = std::str::from_utf8(&b).expect("utf-8");
        assert!(text.starts_with("MESSAGE sip:bob@partner.test SIP/2.0\r\nVia: "));
        assert!(text.ends_with("Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"));
        let m = parse(&b);
        assert_eq!(m.call_id(), Some("c1@edge.test"));
        assert_eq!(m.cseq().map(|c| c.seq), Some(7));
        assert_eq!(m.first(HeaderName::Route), Some("<sip:p.test;lr>"));
        assert_eq!(m.body(), b"hello");
    }

    #[test]
    fn cancel_and_ack_copy_what_rfc_3261_says() {
        let invite = RequestBuilder::new("INVITE", "sip:bob@partner.test")
            .via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-i")
            .route("<sip:r1;lr>")
            .route("<sip:r2;lr>")
            .from("<sip:a@h.test>;tag=x")
            .to("<sip:bob@partner.test>")
            .call_id("inv-1")
            .cseq(3)
            .contact("<sip:a@127.0.0.1>")
            .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
            .build();
        let invite = parse(&invite);
        let cancel = RequestBuilder::cancel_for(&invite)
            .expect("complete")
            .build();
        assert_eq!(
            &cancel[..],
            &b"CANCEL sip:bob@partner.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-i\r\n\
Max-Forwards: 70\r\nRoute: <sip:r1;lr>\r\nRoute: <sip:r2;lr>\r\nFrom: <sip:a@h.test>;tag=x\r\n\
To: <sip:bob@partner.test>\r\nCall-ID: inv-1\r\nCSeq: 3 CANCEL\r\nContent-Length: 0\r\n\r\n"[..]
        );
        let answer = parse(&Bytes::from_static(
            b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-i\r\n\
From: <sip:a@h.test>;tag=x\r\nTo: <sip:bob@partner.test>;tag=b\r\nCall-ID: inv-1\r\nCSeq: 3 INVITE\r\nContent-Length: 0\r\n\r\n",
        ));
        let ack = RequestBuilder::ack_for_failure(&invite, &answer)
            .expect("complete")
            .build();
        let ack = parse(&ack);
        assert_eq!(
            ack.first(HeaderName::To),
            Some("<sip:bob@partner.test>;tag=b")
        );
        assert_eq!(ack.cseq().map(|c| c.seq), Some(3));
        assert!(ack.body().is_empty());
        let no_via = parse(&Bytes::from_static(
            b"INVITE sip:b@p.test SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@p.test>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        ));
        assert!(RequestBuilder::cancel_for(&no_via).is_none());
    }
}
