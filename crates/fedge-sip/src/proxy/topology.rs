//! Topology hiding: the edits that keep the home side's host names and
//! addresses out of the headers a partner receives, and that put them back
//! when the partner's answers and in-dialog requests come in.
//!
//! Owns the sealed tokens. What is hidden from a partner travels with the
//! dialog, inside our own Record-Route entry (`fe-h` parameter) and inside a
//! Contact URI of ours (`sip:fe1-<token>@<edge>`), sealed with AES-256-GCM
//! under a key every edge node shares through the database. Nothing about a
//! dialog is kept in memory, so a restarted or different node restores it.
//! Vias hidden from a request are kept by its client transaction and put
//! back on the responses.
//!
//! Only headers are handled here; addresses in SDP bodies are the media
//! relay's business.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};

use crate::edit::Editor;
use crate::headers::{HeaderName, NameAddr};
use crate::message::SipMessage;
use crate::uri::{Host, Scheme, Uri};

/// The Record-Route/Route URI parameter carrying hidden route entries.
pub const ROUTE_PARAM: &str = "fe-h";
/// The user-part prefix of a Contact URI standing in for a hidden one.
pub const CONTACT_PREFIX: &str = "fe1-";
const AAD_PREFIX: &[u8] = b"fedge topology v1";

/// What a token stands for; part of what it is sealed with, so one kind
/// cannot be passed off as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Route entries, in our Record-Route.
    Route,
    /// A Contact URI, as the user part of our stand-in Contact.
    Contact,
}

/// Which side of a forwarded request the other side must not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hide {
    /// Nothing is hidden.
    #[default]
    Nothing,
    /// Hide where the request came from (home to partner): its Vias,
    /// Record-Route entries and Contact; restore them on the responses.
    Source,
    /// Hide where the request goes (partner to home): the Record-Route
    /// entries and Contact in the responses. The sender may not route into
    /// the hidden side: its own Route entries are dropped, and only those
    /// our tokens restore are followed.
    Destination,
}

/// What a client transaction does to the responses it passes upstream.
#[derive(Debug, Clone, Default)]
pub enum ResponseEdit {
    #[default]
    Nothing,
    /// Put back what `Hide::Source` took from the request.
    Restore {
        /// The request's Via values as received, top first.
        vias: Vec<String>,
        /// The Record-Route entries that replace our sealed one: ours on
        /// both legs, then the request's as received.
        record_route: Vec<String>,
    },
    /// Hide the side the request went to (`Hide::Destination`).
    Hide {
        /// Record-Route entries the request arrived with (the sender's):
        /// the bottom of the response's list.
        below: usize,
        /// Entries of ours right above them (0 when not record-routed).
        ours: usize,
    },
}

/// A token that this edge did not make, or made under another key, or for
/// another dialog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a hidden-topology token in the {0} was not made by this edge for this dialog")]
pub struct BadToken(pub &'static str);

/// The system random source failed when the edge started.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no random numbers for topology-hiding nonces")]
pub struct NoRandom;

/// The hiding key and what may be shown.
pub struct Topology {
    key: aead::LessSafeKey,
    /// Nonces are this process's random 64-bit prefix plus a counter, so
    /// they never repeat under the shared key (no per-token RNG call).
    prefix: u64,
    counter: AtomicU64,
    /// Contacts under these domains are public names and stay visible.
    visible_domains: Vec<String>,
    /// `host:port;transport=tls` of the edge as partners reach it.
    contact_host: String,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("visible_domains", &self.visible_domains)
            .field("contact_host", &self.contact_host)
            .finish_non_exhaustive()
    }
}

fn host_name(u: &Uri<'_>) -> Option<String> {
    match u.host? {
        Host::Name(n) => Some(n.trim_end_matches('.').to_ascii_lowercase()),
        _ => None,
    }
}

fn aad(kind: Kind, call_id: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_PREFIX.len() + 2 + call_id.len());
    a.extend_from_slice(AAD_PREFIX);
    a.push(match kind {
        Kind::Route => b'R',
        Kind::Contact => b'C',
    });
    a.push(0);
    a.extend_from_slice(call_id.as_bytes());
    a
}

impl Topology {
    /// `key` seals the tokens; `visible_domains` are the home SIP domains;
    /// `contact_host` is e.g. `sip.fedge.test:5061;transport=tls`.
    pub fn new(
        key: &[u8; 32],
        visible_domains: Vec<String>,
        contact_host: String,
    ) -> Result<Topology, NoRandom> {
        let mut prefix = [0u8; 8];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| NoRandom)?;
        // A 32-byte key is always valid for AES-256-GCM.
        let unbound =
            aead::UnboundKey::new(&aead::AES_256_GCM, key).unwrap_or_else(|_| unreachable!());
        Ok(Topology {
            key: aead::LessSafeKey::new(unbound),
            prefix: u64::from_be_bytes(prefix),
            counter: AtomicU64::new(0),
            visible_domains: visible_domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            contact_host,
        })
    }

    fn nonce(&self) -> [u8; 12] {
        let c = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&self.prefix.wrapping_add(c >> 32).to_be_bytes());
        n[8..].copy_from_slice(&(c as u32).to_be_bytes());
        n
    }

    /// Seals a list of strings into a URL-safe token of `kind`, bound to
    /// the dialog's Call-ID.
    pub fn seal(&self, kind: Kind, call_id: &str, parts: &[&str]) -> String {
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum::<usize>() + 16);
        for p in parts {
            let n = p.len().min(u16::MAX as usize);
            data.extend_from_slice(&(n as u16).to_be_bytes());
            data.extend_from_slice(&p.as_bytes()[..n]);
        }
        let nonce = self.nonce();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad(kind, call_id)),
                &mut data,
            )
            // Fails only past AES-GCM's 64 GiB message limit.
            .unwrap_or_else(|_| unreachable!());
        let mut out = Vec::with_capacity(12 + data.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        out.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a token made by [`Topology::seal`] with the same kind and Call-ID.
    pub fn open(&self, kind: Kind, call_id: &str, token: &str) -> Option<Vec<String>> {
        let mut raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < 12 + aead::AES_256_GCM.tag_len() {
            return None;
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&raw[..12]);
        let plain = self
            .key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad(kind, call_id)),
                &mut raw[12..],
            )
            .ok()?;
        let mut parts = Vec::new();
        let mut rest: &[u8] = plain;
        while !rest.is_empty() {
            let (len, tail) = rest.split_at_checked(2)?;
            let n = u16::from_be_bytes([len[0], len[1]]) as usize;
            let (part, tail) = tail.split_at_checked(n)?;
            parts.push(String::from_utf8(part.to_vec()).ok()?);
            rest = tail;
        }
        Some(parts)
    }

    /// Our Record-Route value with `hidden` entries sealed into it.
    pub fn sealed_route(&self, record_route: &str, call_id: &str, hidden: &[&str]) -> String {
        if hidden.is_empty() {
            return record_route.to_string();
        }
        let token = self.seal(Kind::Route, call_id, hidden);
        match record_route.rfind('>') {
            Some(i) => format!(
                "{};{ROUTE_PARAM}={token}{}",
                &record_route[..i],
                &record_route[i..]
            ),
            None => format!("{record_route};{ROUTE_PARAM}={token}"),
        }
    }

    /// A Contact under a home domain is a public name (a user's GRUU),
    /// unless it carries a server GRUU (`opaque=srvr:`, whose user part is
    /// a server's name) or an `maddr`.
    fn visible(&self, u: &Uri<'_>) -> bool {
        host_name(u).is_some_and(|h| self.visible_domains.contains(&h))
            && u.param("maddr").is_none()
            && !u
                .param("opaque")
                .flatten()
                .is_some_and(|o| o.to_ascii_lowercase().starts_with("srvr:"))
    }

    /// The Contact value a partner may see in place of `value`, or `None`
    /// when it may see `value` itself (a home user's GRUU, `*`, a non-SIP URI).
    pub fn hide_contact(&self, value: &str, call_id: &str) -> Option<String> {
        let na = NameAddr::parse(value).ok()?;
        if !na.uri.is_sip() || self.visible(&na.uri) {
            return None;
        }
        let token = self.seal(Kind::Contact, call_id, &[na.uri.raw]);
        let scheme = if na.uri.scheme == Scheme::Sips {
            "sips"
        } else {
            "sip"
        };
        let mut out =
            String::with_capacity(token.len() + self.contact_host.len() + na.params.len() + 24);
        if let Some(d) = na.display {
            out.push_str(d);
            out.push(' ');
        }
        out.push('<');
        out.push_str(scheme);
        out.push(':');
        out.push_str(CONTACT_PREFIX);
        out.push_str(&token);
        out.push('@');
        out.push_str(&self.contact_host);
        out.push('>');
        out.push_str(na.params);
        Some(out)
    }

    fn hide_contacts(&self, msg: &SipMessage, ed: &mut Editor<'_>) {
        let call_id = msg.call_id().unwrap_or("");
        for i in msg.indices(HeaderName::Contact) {
            if let Some(v) = self.hide_contact(msg.value(&msg.headers()[i]), call_id) {
                ed.replace_value(i, v);
            }
        }
    }

    /// Hides the request's origin (`Hide::Source`): every Via and
    /// Record-Route entry goes, and Contacts outside the home domains are
    /// replaced. With `record_route` (ours toward the partner, ours toward
    /// where the request came from) our outer entry is added with the
    /// removed ones sealed in. Returns what the responses need restored
    /// when `keep` (a client transaction will pass them on).
    pub fn hide_request(
        &self,
        msg: &SipMessage,
        ed: &mut Editor<'_>,
        record_route: Option<(&str, &str)>,
        keep: bool,
    ) -> ResponseEdit {
        ed.remove_all(HeaderName::Via);
        let received_rr: Vec<&str> = msg.values(HeaderName::RecordRoute).collect();
        ed.remove_all(HeaderName::RecordRoute);
        if let Some((outer, _)) = record_route {
            let call_id = msg.call_id().unwrap_or("");
            ed.insert_before_first(
                HeaderName::RecordRoute,
                &self.sealed_route(outer, call_id, &received_rr),
            );
        }
        self.hide_contacts(msg, ed);
        if !keep {
            return ResponseEdit::Nothing;
        }
        let mut restore_rr = Vec::new();
        if let Some((outer, inner)) = record_route {
            restore_rr.push(outer.to_string());
            restore_rr.push(inner.to_string());
            restore_rr.extend(received_rr.iter().map(|s| s.to_string()));
        }
        ResponseEdit::Restore {
            vias: msg.values(HeaderName::Via).map(str::to_string).collect(),
            record_route: restore_rr,
        }
    }

    /// Puts back on a response what [`Topology::hide_request`] took (our own
    /// Via is already removed): the Vias, and the full Record-Route set in
    /// place of our sealed entry, which is the last one.
    pub fn restore_response(
        &self,
        resp: &SipMessage,
        ed: &mut Editor<'_>,
        vias: &[String],
        record_route: &[String],
        is_self: impl Fn(&Uri<'_>) -> bool,
    ) {
        for v in vias {
            ed.insert_before_first(HeaderName::Via, v);
        }
        if record_route.is_empty() {
            return;
        }
        let last = resp.indices(HeaderName::RecordRoute).last();
        if let Some(i) = last
            && NameAddr::parse(resp.value(&resp.headers()[i])).is_ok_and(|na| is_self(&na.uri))
        {
            ed.replace_value(i, record_route.join(", "));
        }
    }

    /// Hides the home side of a response going to a partner
    /// (`Hide::Destination`): the Record-Route entries above the `below`
    /// the partner sent and the `ours` we added are sealed, verbatim, into
    /// our federation entry `outer`; Contacts of 1xx and 2xx answers
    /// outside the home domains are replaced (a redirect's Contacts are
    /// targets, not the home side's addresses).
    pub fn hide_response(
        &self,
        resp: &SipMessage,
        ed: &mut Editor<'_>,
        outer: &str,
        below: usize,
        ours: usize,
    ) {
        let rr: Vec<(usize, &str)> = resp
            .indices(HeaderName::RecordRoute)
            .map(|i| (i, resp.value(&resp.headers()[i])))
            .collect();
        let top = rr.len().saturating_sub(below);
        if top > 0 {
            // Nearest to us first: the route the partner's in-dialog
            // requests take after us.
            let hidden: Vec<&str> = rr[..top.saturating_sub(ours)]
                .iter()
                .rev()
                .map(|(_, v)| *v)
                .collect();
            for (i, _) in &rr[..top] {
                ed.remove_value(*i);
            }
            if ours > 0 {
                let call_id = resp.call_id().unwrap_or("");
                ed.insert_before_first(
                    HeaderName::RecordRoute,
                    &self.sealed_route(outer, call_id, &hidden),
                );
            }
        }
        if resp.status().is_some_and(|s| s < 300) {
            self.hide_contacts(resp, ed);
        }
    }

    /// What our tokens hid from the sender of a request: the entries sealed
    /// in `routes` (URIs of ours that the request was routed by), and the
    /// original target when `target` (the Request-URI after any
    /// strict-routing repair) is one of our stand-in Contacts.
    pub fn restore_request(
        &self,
        call_id: &str,
        routes: &[Uri<'_>],
        target: Option<&Uri<'_>>,
        is_self: impl Fn(&Uri<'_>) -> bool,
    ) -> Result<(Vec<String>, Option<String>), BadToken> {
        let mut restored = Vec::new();
        for u in routes {
            if let Some(Some(token)) = u.param(ROUTE_PARAM) {
                let parts = self
                    .open(Kind::Route, call_id, token)
                    .ok_or(BadToken("Route"))?;
                if parts.iter().any(|p| NameAddr::parse(p).is_err()) {
                    return Err(BadToken("Route"));
                }
                restored.extend(parts);
            }
        }
        let mut original = None;
        if let Some(u) = target
            && is_self(u)
            && let Some(token) = u.user.and_then(|user| user.strip_prefix(CONTACT_PREFIX))
        {
            let bad = BadToken("Request-URI");
            let mut parts = self
                .open(Kind::Contact, call_id, token)
                .ok_or(bad.clone())?;
            let t = parts
                .pop()
                .filter(|t| parts.is_empty() && Uri::parse(t).is_ok());
            original = Some(t.ok_or(bad)?);
        }
        Ok((restored, original))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Limits, find_head_end, parse_framed};
    use bytes::Bytes;

    fn topo() -> Topology {
        Topology::new(
            &[7u8; 32],
            vec!["home.test".into()],
            "sip.fedge.test:5061;transport=tls".into(),
        )
        .unwrap()
    }

    fn parse(s: &str) -> SipMessage {
        let raw = Bytes::copy_from_slice(s.as_bytes());
        let he = find_head_end(&raw, 0).unwrap();
        parse_framed(raw, he, &Limits::default()).unwrap()
    }

    fn is_self(u: &Uri<'_>) -> bool {
        host_name(u).is_some_and(|h| h == "sip.fedge.test" || h == "edge-int.home.test")
    }

    /// The URIs of a request's Route values, as the proxy hands them over.
    fn route_uris(m: &SipMessage) -> Vec<Uri<'_>> {
        m.values(HeaderName::Route)
            .map(|v| NameAddr::parse(v).unwrap().uri)
            .collect()
    }

    const OUTER: &str = "<sip:sip.fedge.test:5061;transport=tls;lr>";
    const INNER: &str = "<sip:edge-int.home.test:5061;transport=tls;lr>";

    #[test]
    fn tokens_round_trip_and_resist_tampering_kind_and_dialog_swaps() {
        let t = topo();
        let parts = ["<sip:pool1.corp.local;lr>", "", "x"];
        let tok = t.seal(Kind::Route, "c1", &parts);
        assert!(
            tok.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(t.open(Kind::Route, "c1", &tok).unwrap(), parts);
        assert!(!tok.contains("pool1"));
        // Fresh nonce each time: tokens are not linkable.
        assert_ne!(tok, t.seal(Kind::Route, "c1", &parts));
        // Bound to the kind and the dialog.
        assert_eq!(t.open(Kind::Contact, "c1", &tok), None);
        assert_eq!(t.open(Kind::Route, "c2", &tok), None);
        let mut bad = tok.clone().into_bytes();
        bad[20] = if bad[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            t.open(Kind::Route, "c1", std::str::from_utf8(&bad).unwrap()),
            None
        );
        let other = Topology::new(&[8u8; 32], vec![], String::new()).unwrap();
        assert_eq!(other.open(Kind::Route, "c1", &tok), None);
        assert_eq!(t.open(Kind::Route, "c1", "!!"), None);
        assert_eq!(t.open(Kind::Route, "c1", ""), None);
        // Nonces never repeat within a process, across the counter's halves too.
        let a = t.nonce();
        t.counter.store(u32::MAX as u64, Ordering::Relaxed);
        let (b, c) = (t.nonce(), t.nonce());
        assert!(a != b && b != c && a != c);
    }

    #[test]
    fn contacts_outside_home_domains_are_replaced() {
        let t = topo();
        assert_eq!(
            t.hide_contact("<sip:alice@home.test;opaque=user:epid:x;gruu>", "c"),
            None
        );
        let h = t
            .hide_contact(
                "\"Alice\" <sip:alice@10.1.2.3:5061;transport=tls>;+sip.instance=\"<urn:uuid:1>\"",
                "c",
            )
            .unwrap();
        assert!(h.starts_with("\"Alice\" <sip:fe1-"), "{h}");
        assert!(
            h.ends_with("@sip.fedge.test:5061;transport=tls>;+sip.instance=\"<urn:uuid:1>\""),
            "{h}"
        );
        assert!(!h.contains("10.1.2.3"));
        // An addr-spec Contact gets brackets so its parameters stay header parameters.
        let h = t
            .hide_contact("sip:pool1.corp.local;expires=60", "c")
            .unwrap();
        assert!(
            h.starts_with("<sip:fe1-") && h.ends_with(">;expires=60"),
            "{h}"
        );
        // sips stays sips; server GRUUs and maddr under a home domain are hidden too.
        assert!(
            t.hide_contact("<sips:a@10.1.2.3>", "c")
                .unwrap()
                .starts_with("<sips:fe1-")
        );
        assert!(
            t.hide_contact(
                "<sip:fe01.corp.local@home.test;gruu;opaque=srvr:MRAS:x>",
                "c"
            )
            .is_some()
        );
        assert!(
            t.hide_contact("<sip:a@home.test;maddr=10.0.0.1>", "c")
                .is_some()
        );
        assert_eq!(t.hide_contact("*", "c"), None);
        assert_eq!(t.hide_contact("<tel:+441234567890>", "c"), None);
    }

    #[test]
    fn outbound_request_and_its_response_round_trip() {
        let t = topo();
        let req = parse(
            "INVITE sip:bob@partner.test SIP/2.0\r\n\
             Via: SIP/2.0/TLS 10.0.0.5:5061;branch=z9hG4bKpool;ms-internal-info=\"x\"\r\n\
             Via: SIP/2.0/TLS 10.0.0.9:50123;branch=z9hG4bKua\r\n\
             Record-Route: <sip:pool1.corp.local:5061;transport=tls;opaque=state:T;lr;ms-route-sig=abc>\r\n\
             Max-Forwards: 69\r\n\
             From: <sip:alice@home.test>;tag=1\r\nTo: <sip:bob@partner.test>\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:alice@10.0.0.9:50123;transport=tls;ms-opaque=ab>\r\n\
             Content-Length: 0\r\n\r\n",
        );
        let mut ed = Editor::new(&req);
        let edit = t.hide_request(&req, &mut ed, Some((OUTER, INNER)), true);
        ed.insert_before_first(
            HeaderName::Via,
            "SIP/2.0/TLS sip.fedge.test:5061;branch=z9hG4bK-fe1",
        );
        let out = ed.finish();
        let text = std::str::from_utf8(&out).unwrap();
        for leak in ["10.0.0", "pool1", "corp.local", "ms-internal-info"] {
            assert!(!text.contains(leak), "{leak} leaks in\n{text}");
        }
        assert_eq!(text.matches("Via:").count(), 1, "{text}");
        let fwd = parse(text);
        let rr: Vec<&str> = fwd.values(HeaderName::RecordRoute).collect();
        assert_eq!(rr.len(), 1);
        assert!(
            rr[0].starts_with("<sip:sip.fedge.test:5061;transport=tls;lr;fe-h="),
            "{}",
            rr[0]
        );
        let contact = fwd.first(HeaderName::Contact).unwrap().to_string();

        // The partner answers 200 with its own Record-Route on top.
        let resp = parse(&format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS sip.fedge.test:5061;branch=z9hG4bK-fe1\r\n\
             Record-Route: <sip:edge.partner.test;lr>, {}\r\n\
             From: <sip:alice@home.test>;tag=1\r\nTo: <sip:bob@partner.test>;tag=2\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@partner.test;gruu>\r\nContent-Length: 0\r\n\r\n",
            rr[0]
        ));
        let ResponseEdit::Restore { vias, record_route } = edit else {
            panic!("no restore")
        };
        let mut ed = Editor::new(&resp);
        ed.remove_value(0);
        t.restore_response(&resp, &mut ed, &vias, &record_route, is_self);
        let back = parse(std::str::from_utf8(&ed.finish()).unwrap());
        assert_eq!(
            back.values(HeaderName::Via).collect::<Vec<_>>(),
            vec![
                "SIP/2.0/TLS 10.0.0.5:5061;branch=z9hG4bKpool;ms-internal-info=\"x\"",
                "SIP/2.0/TLS 10.0.0.9:50123;branch=z9hG4bKua"
            ]
        );
        assert_eq!(
            back.values(HeaderName::RecordRoute).collect::<Vec<_>>(),
            vec![
                "<sip:edge.partner.test;lr>",
                OUTER,
                INNER,
                "<sip:pool1.corp.local:5061;transport=tls;opaque=state:T;lr;ms-route-sig=abc>"
            ]
        );

        // The partner's BYE in that dialog: Route to our sealed entry, to our Contact.
        let uri = NameAddr::parse(&contact).unwrap().uri.raw.to_string();
        let bye = parse(&format!(
            "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/TLS edge.partner.test;branch=z9hG4bKp\r\n\
             Route: {}\r\nFrom: <sip:bob@partner.test>;tag=2\r\nTo: <sip:alice@home.test>;tag=1\r\n\
             Call-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            rr[0]
        ));
        let (routes, target) = t
            .restore_request("c1", &route_uris(&bye), bye.request_uri().as_ref(), is_self)
            .unwrap();
        assert_eq!(
            routes,
            vec!["<sip:pool1.corp.local:5061;transport=tls;opaque=state:T;lr;ms-route-sig=abc>"]
        );
        assert_eq!(
            target.as_deref(),
            Some("sip:alice@10.0.0.9:50123;transport=tls;ms-opaque=ab")
        );
        // The same tokens in another dialog open nothing.
        assert_eq!(
            t.restore_request("c9", &route_uris(&bye), None, is_self),
            Err(BadToken("Route"))
        );
        // Without a client transaction (ACK, BENOTIFY) nothing is kept.
        let mut ed = Editor::new(&req);
        assert!(matches!(
            t.hide_request(&req, &mut ed, None, false),
            ResponseEdit::Nothing
        ));
    }

    #[test]
    fn inbound_response_hides_the_home_side_by_position() {
        let t = topo();
        // A partner INVITE (one entry of its own) was forwarded with our two
        // on top; the home side added two more, and an earlier pass through
        // this edge (a hairpin) left entries of ours that must be kept.
        let resp = parse(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS edge.partner.test;branch=z9hG4bKp\r\n\
             Record-Route: <sip:sip.fedge.test:5061;transport=tls;lr;fe-h=earlierPass>, <sip:fe2.corp.local;lr>\r\n\
             Record-Route: <sip:pool1.corp.local;lr>\r\n\
             Record-Route: <sip:edge-int.home.test:5061;transport=tls;lr>, <sip:sip.fedge.test:5061;transport=tls;lr>\r\n\
             Record-Route: <sip:edge.partner.test;lr>\r\n\
             From: <sip:bob@partner.test>;tag=2\r\nTo: <sip:alice@home.test>;tag=1\r\n\
             Call-ID: c2\r\nCSeq: 1 INVITE\r\nContact: <sip:fe2.corp.local:5061;transport=tls>\r\nContent-Length: 0\r\n\r\n",
        );
        let mut ed = Editor::new(&resp);
        t.hide_response(&resp, &mut ed, OUTER, 1, 2);
        let out = ed.finish();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            !text.contains("corp.local")
                && !text.contains("edge-int")
                && !text.contains("earlierPass"),
            "{text}"
        );
        let m = parse(text);
        let rr: Vec<&str> = m.values(HeaderName::RecordRoute).collect();
        assert_eq!(rr.len(), 2, "{text}");
        assert_eq!(rr[1], "<sip:edge.partner.test;lr>");
        // The partner's route set is the reverse: a request to us restores
        // pool1, fe2, then the earlier pass's entry, verbatim.
        let req = parse(&format!(
            "BYE sip:x@sip.fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS e;branch=z9hG4bKq\r\nRoute: {}\r\n\
             From: <sip:a@partner.test>;tag=2\r\nTo: <sip:b@home.test>;tag=1\r\nCall-ID: c2\r\nCSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            rr[0]
        ));
        let (routes, target) = t
            .restore_request("c2", &route_uris(&req), req.request_uri().as_ref(), is_self)
            .unwrap();
        assert_eq!(
            routes,
            vec![
                "<sip:pool1.corp.local;lr>",
                "<sip:fe2.corp.local;lr>",
                "<sip:sip.fedge.test:5061;transport=tls;lr;fe-h=earlierPass>"
            ]
        );
        assert_eq!(target, None);
        // A forged Contact token is refused, not followed; so is a Route
        // token passed off as a Contact one.
        let forged = parse(
            "BYE sip:fe1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@sip.fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS e;branch=z9hG4bKq\r\n\
             From: <sip:a@partner.test>;tag=2\r\nTo: <sip:b@home.test>;tag=1\r\nCall-ID: c2\r\nCSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n",
        );
        assert_eq!(
            t.restore_request("c2", &[], forged.request_uri().as_ref(), is_self),
            Err(BadToken("Request-URI"))
        );
        let token = route_uris(&req)[0]
            .param(ROUTE_PARAM)
            .unwrap()
            .unwrap()
            .to_string();
        let swapped = format!("sip:{CONTACT_PREFIX}{token}@sip.fedge.test");
        let swapped = Uri::parse(&swapped).unwrap();
        assert_eq!(
            t.restore_request("c2", &[], Some(&swapped), is_self),
            Err(BadToken("Request-URI"))
        );
    }

    #[test]
    fn responses_not_record_routed_lose_home_entries_and_redirects_keep_contacts() {
        let t = topo();
        let resp = parse(
            "SIP/2.0 302 Moved\r\nVia: SIP/2.0/TLS edge.partner.test;branch=z9hG4bKp\r\n\
             Record-Route: <sip:pool1.corp.local;lr>, <sip:edge.partner.test;lr>\r\n\
             From: <sip:bob@partner.test>;tag=2\r\nTo: <sip:alice@home.test>;tag=1\r\n\
             Call-ID: c3\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@other.test>\r\nContent-Length: 0\r\n\r\n",
        );
        let mut ed = Editor::new(&resp);
        t.hide_response(&resp, &mut ed, OUTER, 1, 0);
        let m = parse(std::str::from_utf8(&ed.finish()).unwrap());
        assert_eq!(
            m.values(HeaderName::RecordRoute).collect::<Vec<_>>(),
            vec!["<sip:edge.partner.test;lr>"]
        );
        assert_eq!(m.first(HeaderName::Contact), Some("<sip:carol@other.test>"));
    }
}
