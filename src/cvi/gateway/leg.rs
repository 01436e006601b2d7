//! The gateway's legs: one per dialog it takes part in (the room
//! system's, the connector's), its dialog state (`sip::ua::Dialog`: Call-ID,
//! tags, CSeq, route set, remote target) and the path its requests travel
//! (UDP, the room's connection, or a pooled connection to the connector
//! opened again when it closed), and the Via and Contact the gateway puts
//! in them.
//!
//! Never decides what a call does, never waits for answers (that is the
//! transaction layer's, `sip::ua::Agent`).

use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::{Gateway, lock};
use crate::sip::message::SipMessage;
use crate::sip::proxy::txn::Reliability;
use crate::sip::response::random_token;
use crate::sip::transport::outbound::{Pool, StreamTarget};
use crate::sip::transport::{Capture, Connection, SendError, Source, Transport, udp};
use crate::sip::ua::{Carrier, Dialog};

/// How a request is sent on a leg.
#[derive(Debug, Clone)]
pub(super) enum Path {
    /// The socket, the peer, and where a copy of each datagram sent goes.
    Udp(Arc<UdpSocket>, SocketAddr, Option<Capture>),
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
    pub(super) pool: Arc<Pool>,
    /// The gateway, as the handler of a connection opened again.
    pub(super) gateway: Weak<Gateway>,
}

impl Reliability for Path {
    fn reliable(&self) -> bool {
        !matches!(self, Path::Udp(..))
    }
}

impl Carrier for Path {
    async fn send(&self, data: Bytes) {
        match self {
            Path::Udp(sock, to, capture) => {
                let _ = udp::send_to(sock, &data, *to, capture.as_ref()).await;
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
                let Some(gw) = p.gateway.upgrade() else {
                    return;
                };
                match p.pool.get(&p.target, gw).await {
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
}

/// One dialog the gateway takes part in, and how its requests travel.
#[derive(Debug)]
pub(super) struct Leg {
    pub(super) dialog: Dialog,
    pub(super) path: Path,
    /// Our tag in this dialog.
    pub(super) our_tag: String,
    /// The peer's tag: the room's From tag; the connector's To tag once
    /// it answered.
    pub(super) peer_tag: Mutex<Option<String>>,
}

impl Deref for Leg {
    type Target = Dialog;

    fn deref(&self) -> &Dialog {
        &self.dialog
    }
}

impl Leg {
    /// The room system's dialog, from its INVITE: our tag on its To, its
    /// Contact as the remote target, its Record-Route as the route set.
    pub(super) fn room(gw: &Gateway, invite: &SipMessage, source: &Source, tag: &str) -> Leg {
        let peer_tag = invite.from().and_then(|f| f.tag().map(str::to_string));
        Leg {
            our_tag: tag.to_string(),
            peer_tag: Mutex::new(peer_tag),
            dialog: Dialog::answering(
                invite,
                tag,
                &format!("sip:{}", source.remote),
                100,
                gw.via_for(source.transport),
                gw.contact_for(source.transport),
            ),
            path: match &source.conn {
                Some(c) => Path::Stream(c.clone()),
                None => Path::Udp(
                    gw.udp.clone(),
                    source.response_target(invite),
                    gw.pool.capture().cloned(),
                ),
            },
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
        let our_tag = random_token();
        Leg {
            peer_tag: Mutex::new(None),
            dialog: Dialog::calling(
                format!("{}@{}", random_token(), gw.cfg.domain),
                format!("<{from}>;tag={our_tag}"),
                uri,
                gw.via_for(transport),
                gw.contact_for(transport),
            ),
            path,
            our_tag,
        }
    }
}

impl Leg {
    /// The connector answered: its dialog (target, route set) and its tag.
    pub(super) fn confirm(&self, resp: &SipMessage) {
        self.dialog.confirm(resp);
        *lock(&self.peer_tag) = resp.to().and_then(|t| t.tag().map(str::to_string));
    }
}

impl Gateway {
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
