//! Topology hiding: the edits that keep the home side's host names and
//! addresses out of the headers a partner receives, and that put them back
//! when the partner's answers and in-dialog requests come in.
//!
//! Owns the sealed tokens. What is hidden from a partner travels with the
//! dialog, inside our own Record-Route entry (`fe-h` parameter) and inside a
//! Contact URI of ours (`sip:fe1-<token>@<edge>`), sealed with AES-256-GCM
//! under a key every edge node shares through the database. Nothing about a
//! dialog is kept in memory, so a restarted or different node restores it.
//! A token is bound to its kind, the dialog's Call-ID, the partner it was
//! given to (an opaque name the application chooses) and its issue time:
//! it opens for that partner only, within its lifetime, and only while the
//! key it names (by id) is current or within its grace period after a
//! rotation. It never accepts a token it cannot authenticate.
//! Vias hidden from a request are kept by its client transaction and put
//! back on the responses.
//!
//! Only headers are handled here; addresses in SDP bodies are the media
//! relay's business.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
const AAD_PREFIX: &[u8] = b"fedge topology v2";
/// The token format: version, key id, issue time (Unix seconds), then the
/// nonce, the sealed parts and the tag.
const VERSION: u8 = 2;
const HEADER: usize = 1 + 4 + 4;
/// Clock difference between edge nodes tolerated on a token's issue time.
const SKEW: Duration = Duration::from_secs(300);

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
        /// The partner the tokens are for.
        peer: String,
    },
}

/// Why a token does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// Not made by this edge for this dialog and this partner (forged,
    /// altered, another dialog's, another partner's, or under a key this
    /// edge does not have).
    #[error("was not made by this edge for this dialog and this partner")]
    Forged,
    /// Made by this edge, but older than the token lifetime.
    #[error("has expired")]
    Expired,
    /// Made under a key whose grace period after a rotation is over.
    #[error("was made under a retired key")]
    Retired,
}

/// A token in a request that this edge will not follow, and where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a hidden-topology token in the {0} {1}")]
pub struct BadToken(pub &'static str, pub Fault);

/// Why topology hiding cannot start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopologyError {
    #[error("no random numbers for topology-hiding nonces")]
    NoRandom,
    #[error("no topology-hiding key")]
    NoKey,
}

/// One topology-hiding key: its id (named in every token it seals), the
/// secret, and when it stops being accepted (`None` for the current key).
#[derive(Clone, PartialEq, Eq)]
pub struct TopologyKey {
    pub id: u32,
    pub secret: [u8; 32],
    pub retire_at: Option<SystemTime>,
}

impl std::fmt::Debug for TopologyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyKey")
            .field("id", &self.id)
            .field("retire_at", &self.retire_at)
            .finish_non_exhaustive()
    }
}

/// The keys in use: the newest seals; every key opens until it retires.
struct Ring {
    /// The newest key's id and key: it seals.
    current: (u32, aead::LessSafeKey),
    /// The others, each until it retires (`None`: never).
    older: Vec<(u32, aead::LessSafeKey, Option<SystemTime>)>,
}

fn aead_key(secret: &[u8; 32]) -> aead::LessSafeKey {
    // A 32-byte key is always valid for AES-256-GCM.
    let unbound =
        aead::UnboundKey::new(&aead::AES_256_GCM, secret).unwrap_or_else(|_| unreachable!());
    aead::LessSafeKey::new(unbound)
}

impl Ring {
    fn new(keys: &[TopologyKey]) -> Result<Ring, TopologyError> {
        let newest = keys
            .iter()
            .max_by_key(|k| k.id)
            .ok_or(TopologyError::NoKey)?;
        let older = keys
            .iter()
            .filter(|k| k.id != newest.id)
            .map(|k| (k.id, aead_key(&k.secret), k.retire_at))
            .collect();
        Ok(Ring {
            current: (newest.id, aead_key(&newest.secret)),
            older,
        })
    }

    /// The key named `id`, and when it retires.
    fn key(&self, id: u32) -> Option<(&aead::LessSafeKey, Option<SystemTime>)> {
        if id == self.current.0 {
            return Some((&self.current.1, None));
        }
        self.older
            .iter()
            .find(|(k, _, _)| *k == id)
            .map(|(_, key, retire)| (key, *retire))
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The hiding keys and what may be shown.
pub struct Topology {
    ring: RwLock<Ring>,
    /// How long a token opens after it was made.
    lifetime: Duration,
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
            .field("lifetime", &self.lifetime)
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

fn aad(kind: Kind, header: &[u8], peer: &str, call_id: &str) -> Vec<u8> {
    let peer = &peer.as_bytes()[..peer.len().min(u16::MAX as usize)];
    let mut a = Vec::with_capacity(AAD_PREFIX.len() + 4 + HEADER + peer.len() + call_id.len());
    a.extend_from_slice(AAD_PREFIX);
    a.push(match kind {
        Kind::Route => b'R',
        Kind::Contact => b'C',
    });
    a.push(0);
    a.extend_from_slice(header);
    a.extend_from_slice(&(peer.len() as u16).to_be_bytes());
    a.extend_from_slice(peer);
    a.extend_from_slice(call_id.as_bytes());
    a
}

impl Topology {
    /// The newest of `keys` seals the tokens, and tokens open for
    /// `lifetime`; `visible_domains` are the home SIP domains;
    /// `contact_host` is e.g. `sip.fedge.test:5061;transport=tls`.
    pub fn new(
        keys: &[TopologyKey],
        lifetime: Duration,
        visible_domains: Vec<String>,
        contact_host: String,
    ) -> Result<Topology, TopologyError> {
        let mut prefix = [0u8; 8];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| TopologyError::NoRandom)?;
        Ok(Topology {
            ring: RwLock::new(Ring::new(keys)?),
            lifetime,
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

    /// Replaces the keys (after a rotation); the newest seals from now on.
    pub fn set_keys(&self, keys: &[TopologyKey]) -> Result<(), TopologyError> {
        let ring = Ring::new(keys)?;
        match self.ring.write() {
            Ok(mut r) => *r = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
        Ok(())
    }

    /// The id of the key that seals new tokens.
    pub fn current_key(&self) -> u32 {
        match self.ring.read() {
            Ok(r) => r.current.0,
            Err(poisoned) => poisoned.into_inner().current.0,
        }
    }

    /// Seals a list of strings into a URL-safe token of `kind`, bound to
    /// the dialog's Call-ID, the partner `peer` and the time now.
    pub fn seal(&self, kind: Kind, call_id: &str, peer: &str, parts: &[&str]) -> String {
        self.seal_at(kind, call_id, peer, parts, SystemTime::now())
    }

    fn seal_at(
        &self,
        kind: Kind,
        call_id: &str,
        peer: &str,
        parts: &[&str],
        now: SystemTime,
    ) -> String {
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum::<usize>() + 16);
        for p in parts {
            let n = p.len().min(u16::MAX as usize);
            data.extend_from_slice(&(n as u16).to_be_bytes());
            data.extend_from_slice(&p.as_bytes()[..n]);
        }
        let ring = match self.ring.read() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut header = [0u8; HEADER];
        header[0] = VERSION;
        header[1..5].copy_from_slice(&ring.current.0.to_be_bytes());
        header[5..9].copy_from_slice(&(unix(now).min(u32::MAX as u64) as u32).to_be_bytes());
        let nonce = self.nonce();
        let key = &ring.current.1;
        let tag = key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad(kind, &header, peer, call_id)),
                &mut data,
            )
            // Fails only past AES-GCM's 64 GiB message limit.
            .unwrap_or_else(|_| unreachable!());
        let mut out = Vec::with_capacity(HEADER + 12 + data.len() + 16);
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        out.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a token made by [`Topology::seal`] with the same kind, Call-ID
    /// and partner, within its lifetime, under a key still accepted.
    pub fn open(
        &self,
        kind: Kind,
        call_id: &str,
        peer: &str,
        token: &str,
    ) -> Result<Vec<String>, Fault> {
        self.open_at(kind, call_id, peer, token, SystemTime::now())
    }

    fn open_at(
        &self,
        kind: Kind,
        call_id: &str,
        peer: &str,
        token: &str,
        now: SystemTime,
    ) -> Result<Vec<String>, Fault> {
        let mut raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| Fault::Forged)?;
        if raw.len() < HEADER + 12 + aead::AES_256_GCM.tag_len() || raw[0] != VERSION {
            return Err(Fault::Forged);
        }
        let (header, rest) = raw.split_at_mut(HEADER);
        let kid = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let issued = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as u64;
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&rest[..12]);
        let ring = match self.ring.read() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (key, retire) = ring.key(kid).ok_or(Fault::Forged)?;
        let plain = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad(kind, header, peer, call_id)),
                &mut rest[12..],
            )
            .map_err(|_| Fault::Forged)?;
        // Authentic from here on: the key id and issue time are ours.
        if retire.is_some_and(|t| now >= t) {
            return Err(Fault::Retired);
        }
        let now_s = unix(now);
        if issued > now_s + SKEW.as_secs() || now_s.saturating_sub(issued) > self.lifetime.as_secs()
        {
            return Err(Fault::Expired);
        }
        let mut parts = Vec::new();
        let mut rest: &[u8] = plain;
        while !rest.is_empty() {
            let (len, tail) = rest.split_at_checked(2).ok_or(Fault::Forged)?;
            let n = u16::from_be_bytes([len[0], len[1]]) as usize;
            let (part, tail) = tail.split_at_checked(n).ok_or(Fault::Forged)?;
            parts.push(String::from_utf8(part.to_vec()).map_err(|_| Fault::Forged)?);
            rest = tail;
        }
        Ok(parts)
    }

    /// Our Record-Route value with `hidden` entries sealed into it.
    pub fn sealed_route(
        &self,
        record_route: &str,
        call_id: &str,
        peer: &str,
        hidden: &[&str],
    ) -> String {
        if hidden.is_empty() {
            return record_route.to_string();
        }
        let token = self.seal(Kind::Route, call_id, peer, hidden);
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
    pub fn hide_contact(&self, value: &str, call_id: &str, peer: &str) -> Option<String> {
        let na = NameAddr::parse(value).ok()?;
        if !na.uri.is_sip() || self.visible(&na.uri) {
            return None;
        }
        let token = self.seal(Kind::Contact, call_id, peer, &[na.uri.raw]);
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

    fn hide_contacts(&self, msg: &SipMessage, ed: &mut Editor<'_>, peer: &str) {
        let call_id = msg.call_id().unwrap_or("");
        for i in msg.indices(HeaderName::Contact) {
            if let Some(v) = self.hide_contact(msg.value(&msg.headers()[i]), call_id, peer) {
                ed.replace_value(i, v);
            }
        }
    }

    /// Hides the request's origin (`Hide::Source`): every Via and
    /// Record-Route entry goes, and Contacts outside the home domains are
    /// replaced. With `record_route` (ours toward the partner, ours toward
    /// where the request came from) our outer entry is added with the
    /// removed ones sealed in, for the partner `peer`. Returns what the
    /// responses need restored when `keep` (a client transaction will pass
    /// them on).
    pub fn hide_request(
        &self,
        msg: &SipMessage,
        ed: &mut Editor<'_>,
        record_route: Option<(&str, &str)>,
        keep: bool,
        peer: &str,
    ) -> ResponseEdit {
        ed.remove_all(HeaderName::Via);
        let received_rr: Vec<&str> = msg.values(HeaderName::RecordRoute).collect();
        ed.remove_all(HeaderName::RecordRoute);
        if let Some((outer, _)) = record_route {
            let call_id = msg.call_id().unwrap_or("");
            ed.insert_before_first(
                HeaderName::RecordRoute,
                &self.sealed_route(outer, call_id, peer, &received_rr),
            );
        }
        self.hide_contacts(msg, ed, peer);
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
    /// targets, not the home side's addresses). Tokens are for `peer`.
    pub fn hide_response(
        &self,
        resp: &SipMessage,
        ed: &mut Editor<'_>,
        outer: &str,
        (below, ours): (usize, usize),
        peer: &str,
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
                    &self.sealed_route(outer, call_id, peer, &hidden),
                );
            }
        }
        if resp.status().is_some_and(|s| s < 300) {
            self.hide_contacts(resp, ed, peer);
        }
    }

    /// What our tokens hid from the sender of a request: the entries sealed
    /// in `routes` (URIs of ours that the request was routed by), and the
    /// original target when `target` (the Request-URI after any
    /// strict-routing repair) is one of our stand-in Contacts.
    pub fn restore_request(
        &self,
        call_id: &str,
        peer: &str,
        routes: &[Uri<'_>],
        target: Option<&Uri<'_>>,
        is_self: impl Fn(&Uri<'_>) -> bool,
    ) -> Result<(Vec<String>, Option<String>), BadToken> {
        let mut restored = Vec::new();
        for u in routes {
            if let Some(Some(token)) = u.param(ROUTE_PARAM) {
                let parts = self
                    .open(Kind::Route, call_id, peer, token)
                    .map_err(|f| BadToken("Route", f))?;
                if parts.iter().any(|p| NameAddr::parse(p).is_err()) {
                    return Err(BadToken("Route", Fault::Forged));
                }
                restored.extend(parts);
            }
        }
        let mut original = None;
        if let Some(u) = target
            && is_self(u)
            && let Some(token) = u.user.and_then(|user| user.strip_prefix(CONTACT_PREFIX))
        {
            let mut parts = self
                .open(Kind::Contact, call_id, peer, token)
                .map_err(|f| BadToken("Request-URI", f))?;
            let t = parts
                .pop()
                .filter(|t| parts.is_empty() && Uri::parse(t).is_ok());
            original = Some(t.ok_or(BadToken("Request-URI", Fault::Forged))?);
        }
        Ok((restored, original))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Limits, find_head_end, parse_framed};
    use bytes::Bytes;

    fn key(id: u32, b: u8) -> TopologyKey {
        TopologyKey {
            id,
            secret: [b; 32],
            retire_at: None,
        }
    }

    fn topo() -> Topology {
        Topology::new(
            &[key(1, 7)],
            Duration::from_secs(3600),
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
        let tok = t.seal(Kind::Route, "c1", "pA", &parts);
        assert!(
            tok.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(t.open(Kind::Route, "c1", "pA", &tok).unwrap(), parts);
        assert!(!tok.contains("pool1"));
        // Fresh nonce each time: tokens are not linkable.
        assert_ne!(tok, t.seal(Kind::Route, "c1", "pA", &parts));
        // Bound to the kind and the dialog.
        assert_eq!(t.open(Kind::Contact, "c1", "pA", &tok), Err(Fault::Forged));
        assert_eq!(t.open(Kind::Route, "c2", "pA", &tok), Err(Fault::Forged));
        let mut bad = tok.clone().into_bytes();
        bad[20] = if bad[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            t.open(Kind::Route, "c1", "pA", std::str::from_utf8(&bad).unwrap()),
            Err(Fault::Forged)
        );
        let other = Topology::new(
            &[key(1, 8)],
            Duration::from_secs(3600),
            vec![],
            String::new(),
        )
        .unwrap();
        assert_eq!(
            other.open(Kind::Route, "c1", "pA", &tok),
            Err(Fault::Forged)
        );
        assert_eq!(t.open(Kind::Route, "c1", "pA", "!!"), Err(Fault::Forged));
        assert_eq!(t.open(Kind::Route, "c1", "pA", ""), Err(Fault::Forged));
        // Bound to the partner it was given to.
        assert_eq!(t.open(Kind::Route, "c1", "pB", &tok), Err(Fault::Forged));
        assert_eq!(t.open(Kind::Route, "c1", "", &tok), Err(Fault::Forged));
        // Nonces never repeat within a process, across the counter's halves too.
        let a = t.nonce();
        t.counter.store(u32::MAX as u64, Ordering::Relaxed);
        let (b, c) = (t.nonce(), t.nonce());
        assert!(a != b && b != c && a != c);
    }

    #[test]
    fn tokens_expire_and_survive_a_rotation_for_the_grace_period_only() {
        let t = topo();
        let t0 = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let tok = t.seal_at(Kind::Route, "c1", "pA", &["x"], t0);
        assert!(t.open_at(Kind::Route, "c1", "pA", &tok, t0 + hour).is_ok());
        assert_eq!(
            t.open_at(
                Kind::Route,
                "c1",
                "pA",
                &tok,
                t0 + hour + Duration::from_secs(2)
            ),
            Err(Fault::Expired)
        );
        // From the future beyond the tolerated clock skew.
        assert_eq!(
            t.open_at(Kind::Route, "c1", "pA", &tok, t0 - hour),
            Err(Fault::Expired)
        );
        // Rotation: key 2 seals, key 1 opens until its grace ends.
        let retire = t0 + Duration::from_secs(60);
        let mut old = key(1, 7);
        old.retire_at = Some(retire);
        t.set_keys(&[old, key(2, 9)]).unwrap();
        assert_eq!(t.current_key(), 2);
        let new = t.seal_at(Kind::Route, "c1", "pA", &["y"], t0);
        assert_ne!(&new[..8], &tok[..8], "the key id is in the token");
        assert!(t.open_at(Kind::Route, "c1", "pA", &tok, t0).is_ok());
        assert_eq!(
            t.open_at(Kind::Route, "c1", "pA", &tok, retire),
            Err(Fault::Retired)
        );
        assert!(t.open_at(Kind::Route, "c1", "pA", &new, retire).is_ok());
        // Once key 1 is gone, its tokens are unknown.
        t.set_keys(&[key(2, 9)]).unwrap();
        assert_eq!(
            t.open_at(Kind::Route, "c1", "pA", &tok, t0),
            Err(Fault::Forged)
        );
        assert!(matches!(t.set_keys(&[]), Err(TopologyError::NoKey)));
    }

    #[test]
    fn contacts_outside_home_domains_are_replaced() {
        let t = topo();
        assert_eq!(
            t.hide_contact("<sip:alice@home.test;opaque=user:epid:x;gruu>", "c", "pA"),
            None
        );
        let h = t
            .hide_contact(
                "\"Alice\" <sip:alice@10.1.2.3:5061;transport=tls>;+sip.instance=\"<urn:uuid:1>\"",
                "c",
                "pA",
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
            .hide_contact("sip:pool1.corp.local;expires=60", "c", "pA")
            .unwrap();
        assert!(
            h.starts_with("<sip:fe1-") && h.ends_with(">;expires=60"),
            "{h}"
        );
        // sips stays sips; server GRUUs and maddr under a home domain are hidden too.
        assert!(
            t.hide_contact("<sips:a@10.1.2.3>", "c", "pA")
                .unwrap()
                .starts_with("<sips:fe1-")
        );
        assert!(
            t.hide_contact(
                "<sip:fe01.corp.local@home.test;gruu;opaque=srvr:MRAS:x>",
                "c",
                "pA"
            )
            .is_some()
        );
        assert!(
            t.hide_contact("<sip:a@home.test;maddr=10.0.0.1>", "c", "pA")
                .is_some()
        );
        assert_eq!(t.hide_contact("*", "c", "pA"), None);
        assert_eq!(t.hide_contact("<tel:+441234567890>", "c", "pA"), None);
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
        let edit = t.hide_request(&req, &mut ed, Some((OUTER, INNER)), true, "pA");
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
            .restore_request(
                "c1",
                "pA",
                &route_uris(&bye),
                bye.request_uri().as_ref(),
                is_self,
            )
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
            t.restore_request("c9", "pA", &route_uris(&bye), None, is_self),
            Err(BadToken("Route", Fault::Forged))
        );
        // Without a client transaction (ACK, BENOTIFY) nothing is kept.
        let mut ed = Editor::new(&req);
        assert!(matches!(
            t.hide_request(&req, &mut ed, None, false, "pA"),
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
        t.hide_response(&resp, &mut ed, OUTER, (1, 2), "pA");
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
            .restore_request(
                "c2",
                "pA",
                &route_uris(&req),
                req.request_uri().as_ref(),
                is_self,
            )
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
            t.restore_request("c2", "pA", &[], forged.request_uri().as_ref(), is_self),
            Err(BadToken("Request-URI", Fault::Forged))
        );
        let token = route_uris(&req)[0]
            .param(ROUTE_PARAM)
            .unwrap()
            .unwrap()
            .to_string();
        let swapped = format!("sip:{CONTACT_PREFIX}{token}@sip.fedge.test");
        let swapped = Uri::parse(&swapped).unwrap();
        assert_eq!(
            t.restore_request("c2", "pA", &[], Some(&swapped), is_self),
            Err(BadToken("Request-URI", Fault::Forged))
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
        t.hide_response(&resp, &mut ed, OUTER, (1, 0), "pA");
        let m = parse(std::str::from_utf8(&ed.finish()).unwrap());
        assert_eq!(
            m.values(HeaderName::RecordRoute).collect::<Vec<_>>(),
            vec!["<sip:edge.partner.test;lr>"]
        );
        assert_eq!(m.first(HeaderName::Contact), Some("<sip:carol@other.test>"));
    }
}
