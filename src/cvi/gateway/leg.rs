//! The gateway's dialogs: one `Leg` per dialog it takes part in (the room
//! system's, the connector's), with its Call-ID, tags, CSeq, route set and
//! remote target, the path its requests travel, and the requests built in
//! it.
//!
//! Knows SIP dialog state only: never decides what a call does, never
//! waits for answers (that is the transaction layer's).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracing::{debug, warn};

use super::{Gateway, lock};
use crate::sip::headers::{HeaderName, NameAddr};
use crate::sip::message::SipMessage;
use crate::sip::response::random_token;
use crate::sip::transport::outbound::StreamTarget;
use crate::sip::transport::{Connection, SendError, Source, Transport};

/// How a request is sent on a leg.
#[derive(Debug, Clone)]
pub(super) enum Path {
    Udp(SocketAddr),
    /// The connection the room system called in on.
    Stream(Connection),
    /// A connection of ours to the connector, opened again from the pool
    /// when it has closed (idle timeout, the peer's restart).
    Pooled(Arc<Pooled>),
}

#[derive(Debug)]
pub(super) struct Pooled {
    pub(super) target: StreamTarget,
    pub(super) conn: Mutex<Connection>,
}

impl Path {
    pub(super) fn reliable(&self) -> bool {
        !matches!(self, Path::Udp(_))
    }
}

/// One dialog the gateway takes part in.
#[derive(Debug)]
pub(super) struct Leg {
    pub(super) call_id: String,
    /// Our party as a header value, with our tag.
    pub(super) local: String,
    /// Theirs, with their tag once known.
    pub(super) remote: Mutex<String>,
    pub(super) target: Mutex<String>,
    pub(super) route: Mutex<Vec<String>>,
    pub(super) cseq: AtomicU32,
    pub(super) path: Path,
    pub(super) via: String,
    pub(super) contact: String,
}

impl Leg {
    /// The room system's dialog, from its INVITE: our tag on its To, its
    /// Contact as the remote target, its Record-Route as the route set.
    pub(super) fn room(gw: &Gateway, invite: &SipMessage, source: &Source, tag: &str) -> Leg {
        let to = invite.first(HeaderName::To).unwrap_or("");
        Leg {
            call_id: invite.call_id().unwrap_or("").to_string(),
            local: format!("{to};tag={tag}"),
            remote: Mutex::new(invite.first(HeaderName::From).unwrap_or("").to_string()),
            target: Mutex::new(
                invite
                    .first(HeaderName::Contact)
                    .and_then(|c| NameAddr::parse(c).ok().map(|na| na.uri.raw.to_string()))
                    .unwrap_or_else(|| format!("sip:{}", source.remote)),
            ),
            route: Mutex::new(
                invite
                    .values(HeaderName::RecordRoute)
                    .map(str::to_string)
                    .collect(),
            ),
            cseq: AtomicU32::new(100),
            path: match &source.conn {
                Some(c) => Path::Stream(c.clone()),
                None => Path::Udp(source.response_target(invite)),
            },
            via: gw.via_for(source.transport),
            contact: gw.contact_for(source.transport),
        }
    }

    /// The connector's dialog, before its INVITE: a new Call-ID, `from` as
    /// our party, the connector's URI `uri` as remote party and target.
    pub(super) fn connector(
        gw: &Gateway,
        from: &str,
        uri: &str,
        path: Path,
        transport: Transport,
    ) -> Leg {
        Leg {
            call_id: format!("{}@{}", random_token(), gw.cfg.domain),
            local: format!("<{from}>;tag={}", random_token()),
            remote: Mutex::new(format!("<{uri}>")),
            target: Mutex::new(uri.to_string()),
            route: Mutex::new(Vec::new()),
            cseq: AtomicU32::new(0),
            path,
            via: gw.via_for(transport),
            contact: gw.contact_for(transport),
        }
    }

    /// The dialog a 2xx to our INVITE (to `uri`) created: their tag, their
    /// Contact as remote target, the Record-Route set reversed.
    pub(super) fn confirm(&self, resp: &SipMessage, uri: &str) {
        if let Some(t) = resp.to().and_then(|t| t.tag().map(str::to_string)) {
            *lock(&self.remote) = format!("<{uri}>;tag={t}");
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

    /// A request in this dialog; returns it with its response key.
    pub(super) fn request(
        &self,
        method: &str,
        headers: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> (Bytes, String, u32) {
        let cseq = self.cseq.fetch_add(1, Ordering::Relaxed) + 1;
        self.build(method, cseq, &new_branch(), headers, body)
    }

    /// The ACK for a 2xx to our INVITE with CSeq `cseq` (a transaction of
    /// its own, RFC 3261 §13.2.2.4).
    pub(super) fn ack_2xx(&self, cseq: u32) -> Bytes {
        self.build("ACK", cseq, &new_branch(), &[], None).0
    }

    pub(super) fn build(
        &self,
        method: &str,
        cseq: u32,
        branch: &str,
        headers: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> (Bytes, String, u32) {
        let mut m = format!(
            "{method} {} SIP/2.0\r\nVia: {};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            lock(&self.target),
            self.via
        );
        for r in lock(&self.route).iter() {
            m.push_str(&format!("Route: {r}\r\n"));
        }
        m.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: {}\r\n",
            self.local,
            lock(&self.remote),
            self.call_id,
            self.contact
        ));
        for (n, v) in headers {
            m.push_str(&format!("{n}: {v}\r\n"));
        }
        let mut out = m.into_bytes();
        match body {
            Some((ct, b)) => {
                out.extend_from_slice(
                    format!("Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes(),
                );
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        (
            Bytes::from(out),
            format!("{}|{cseq}|{method}", self.call_id),
            cseq,
        )
    }
}

fn new_branch() -> String {
    format!("z9hG4bK-cvi{}", random_token())
}

impl Gateway {
    pub(super) async fn send(&self, path: &Path, data: Bytes) {
        match path {
            Path::Udp(to) => {
                let _ = self.udp.send_to(&data, to).await;
            }
            Path::Stream(c) => {
                if let Err(e) = c.send(data) {
                    debug!(error = %e, "the room system's connection is gone");
                }
            }
            Path::Pooled(p) => {
                let c = lock(&p.conn).clone();
                match c.send(data.clone()) {
                    Ok(()) => return,
                    Err(e @ SendError::Full(_)) => {
                        warn!(error = %e, "the connector is not reading");
                        return;
                    }
                    Err(_) => {}
                }
                let Some(me) = self.me.upgrade() else { return };
                match self.pool.get(&p.target, me).await {
                    Ok(n) => {
                        let _ = n.send(data);
                        *lock(&p.conn) = n;
                    }
                    Err(e) => {
                        warn!(target = %p.target, error = %e, "the connector cannot be reached again")
                    }
                }
            }
        }
    }

    /// The listener a leg over `transport` names in Via and Contact.
    fn local_for(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tls => self.cfg.local_tls.unwrap_or(self.cfg.local),
            _ => self.cfg.local,
        }
    }

    fn via_for(&self, transport: Transport) -> String {
        let t = match transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        };
        format!("SIP/2.0/{t} {}", self.local_for(transport))
    }

    fn contact_for(&self, transport: Transport) -> String {
        let t = match transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        let local = self.local_for(transport);
        format!(
            "<sip:gateway@{}:{};transport={t}>",
            fmt_host(local.ip()),
            local.port()
        )
    }
}

fn fmt_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}
