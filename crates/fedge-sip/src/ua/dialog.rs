//! Dialog state of a user agent (RFC 3261 §12): Call-ID, local and remote
//! parties with their tags, local CSeq, route set and remote target, and
//! the requests sent within the dialog.
//!
//! Builds requests only; never sends them and never decides anything
//! about the call the dialog belongs to.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use crate::headers::{HeaderName, NameAddr};
use crate::message::SipMessage;
use crate::request::RequestBuilder;
use crate::response::random_token;

/// The branch prefix of requests a dialog sends (RFC 3261 magic cookie).
const BRANCH_PREFIX: &str = "z9hG4bK-ua";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request built in a dialog.
#[derive(Debug, Clone)]
pub struct Request {
    pub data: Bytes,
    pub cseq: u32,
}

/// One dialog, from our side.
#[derive(Debug)]
pub struct Dialog {
    pub call_id: String,
    /// Our party as a header value, with our tag.
    pub local: String,
    /// Their party as first known (for a dialog we start, without a tag).
    remote_party: String,
    /// Their party with their tag once known.
    remote: Mutex<String>,
    target: Mutex<String>,
    route: Mutex<Vec<String>>,
    cseq: AtomicU32,
    /// Our Via without branch, e.g. `SIP/2.0/TLS 192.0.2.1:5061`.
    pub via: String,
    /// Our Contact header value.
    pub contact: String,
}

impl Dialog {
    /// The dialog a received INVITE starts (we are the UAS): our `tag` on
    /// its To, its From as the remote party, its Contact as the remote
    /// target (`fallback_target` without one), its Record-Route as the
    /// route set, and our CSeq from `cseq`.
    pub fn answering(
        invite: &SipMessage,
        tag: &str,
        fallback_target: &str,
        cseq: u32,
        via: String,
        contact: String,
    ) -> Dialog {
        let to = invite.first(HeaderName::To).unwrap_or("");
        let from = invite.first(HeaderName::From).unwrap_or("").to_string();
        Dialog {
            call_id: invite.call_id().unwrap_or("").to_string(),
            local: format!("{to};tag={tag}"),
            remote_party: from.clone(),
            remote: Mutex::new(from),
            target: Mutex::new(
                invite
                    .first(HeaderName::Contact)
                    .and_then(|c| NameAddr::parse(c).ok().map(|na| na.uri.raw.to_string()))
                    .unwrap_or_else(|| fallback_target.to_string()),
            ),
            route: Mutex::new(
                invite
                    .values(HeaderName::RecordRoute)
                    .map(str::to_string)
                    .collect(),
            ),
            cseq: AtomicU32::new(cseq),
            via,
            contact,
        }
    }

    /// A dialog we start (we are the UAC), before its INVITE: `local` is
    /// our party with our tag, `remote` (a URI) their party and the
    /// remote target.
    pub fn calling(
        call_id: String,
        local: String,
        remote: &str,
        via: String,
        contact: String,
    ) -> Dialog {
        let party = format!("<{remote}>");
        Dialog {
            call_id,
            local,
            remote_party: party.clone(),
            remote: Mutex::new(party),
            target: Mutex::new(remote.to_string()),
            route: Mutex::new(Vec::new()),
            cseq: AtomicU32::new(0),
            via,
            contact,
        }
    }

    /// The dialog a 2xx to our INVITE confirmed (RFC 3261 §12.1.2): their
    /// tag, their Contact as the remote target, the Record-Route set
    /// reversed as the route set.
    pub fn confirm(&self, resp: &SipMessage) {
        if let Some(t) = resp.to().and_then(|t| t.tag().map(str::to_string)) {
            *lock(&self.remote) = format!("{};tag={t}", self.remote_party);
        }
        if let Some(c) = resp
            .first(HeaderName::Contact)
            .and_then(|c| NameAddr::parse(c).ok().map(|na| na.uri.raw.to_string()))
        {
            *lock(&self.target) = c;
        }
        let mut rr: Vec<String> = resp
            .values(HeaderName::RecordRoute)
            .map(str::to_string)
            .collect();
        rr.reverse();
        *lock(&self.route) = rr;
    }

    /// A new request in this dialog (the next CSeq), with extra `headers`
    /// and an optional body `(content type, bytes)`.
    pub fn request(
        &self,
        method: &str,
        headers: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> Request {
        let cseq = self.cseq.fetch_add(1, Ordering::Relaxed) + 1;
        Request {
            data: self.build(method, cseq, headers, body),
            cseq,
        }
    }

    /// The ACK of a 2xx to our INVITE with CSeq `cseq`: a transaction of
    /// its own, with a new branch (RFC 3261 §13.2.2.4).
    pub fn ack(&self, cseq: u32) -> Bytes {
        self.build("ACK", cseq, &[], None)
    }

    fn build(
        &self,
        method: &str,
        cseq: u32,
        headers: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> Bytes {
        let branch = format!("{BRANCH_PREFIX}{}", random_token());
        let mut b = RequestBuilder::new(method, lock(&self.target).as_str())
            .via(format!("{};branch={branch};rport", self.via))
            .routes(lock(&self.route).iter().cloned())
            .from(self.local.as_str())
            .to(lock(&self.remote).as_str())
            .call_id(self.call_id.as_str())
            .cseq(cseq)
            .contact(self.contact.as_str())
            .headers(headers);
        if let Some((ct, body)) = body {
            b = b.body(ct, Bytes::copy_from_slice(body));
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Limits, find_head_end, parse_framed};

    fn parse(b: Bytes) -> SipMessage {
        let he = find_head_end(&b, 0).expect("a head");
        parse_framed(b, he, &Limits::default()).expect("parses")
    }

    #[test]
    fn a_dialog_we_answer_sends_to_the_callers_contact_through_its_record_route() {
        let invite = parse(Bytes::from_static(
            b"INVITE sip:teams@gw.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK-r\r\n\
Record-Route: <sip:sbc1.test;lr>\r\nRecord-Route: <sip:sbc2.test;lr>\r\n\
From: \"Room\" <sip:room@vc.test>;tag=r1\r\nTo: <sip:teams@gw.test>\r\nCall-ID: room-1\r\n\
CSeq: 7 INVITE\r\nContact: <sip:room@192.0.2.5:5060>\r\nContent-Length: 0\r\n\r\n",
        ));
        let d = Dialog::answering(
            &invite,
            "g1",
            "sip:192.0.2.5:5060",
            100,
            "SIP/2.0/UDP 192.0.2.1:5060".into(),
            "<sip:gateway@192.0.2.1:5060;transport=udp>".into(),
        );
        let r = d.request(
            "INFO",
            &[("X-Test".into(), "1".into())],
            Some(("text/plain", b"hi")),
        );
        assert_eq!(r.cseq, 101);
        let m = parse(r.data);
        assert_eq!(m.request_uri_str(), Some("sip:room@192.0.2.5:5060"));
        assert_eq!(
            m.first(HeaderName::From),
            Some("<sip:teams@gw.test>;tag=g1")
        );
        assert_eq!(
            m.first(HeaderName::To),
            Some("\"Room\" <sip:room@vc.test>;tag=r1")
        );
        assert_eq!(m.call_id(), Some("room-1"));
        // A UAS keeps the Record-Route order (RFC 3261 §12.1.1).
        let routes: Vec<&str> = m.values(HeaderName::Route).collect();
        assert_eq!(routes, ["<sip:sbc1.test;lr>", "<sip:sbc2.test;lr>"]);
        let via = m.top_via().expect("a Via");
        assert!(via.branch().is_some_and(|b| b.starts_with("z9hG4bK")));
        assert_eq!(m.first(HeaderName::ContentType), Some("text/plain"));
        assert_eq!(m.body(), b"hi");
    }
}
