//! The contract between the proxy core and the application: what the
//! proxy is configured with ([`ProxyConfig`], one [`Leg`] per side), what
//! it asks ([`Router`]), and the answers it carries out ([`Decision`]:
//! forward on a [`Hop`], reject, answer, drop).
//!
//! Owns these types only; never decides anything itself. The application
//! implements [`Router`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;

use super::topology::{Hide, Topology};
use super::txn::Timers;
use crate::edit::Editor;
use crate::message::SipMessage;
use crate::transport::outbound::{ConnectError, StreamTarget};
use crate::transport::{Side, Source, Tag, Transport};

/// What the proxy puts on the messages it sends out of one side.
#[derive(Debug, Clone)]
pub struct Leg {
    /// Via value without branch, e.g. `SIP/2.0/TLS sip.fedge.test:5061`.
    pub via: String,
    /// Record-Route value, e.g. `<sip:sip.fedge.test:5061;transport=tls;lr>`.
    pub record_route: String,
}

/// Static proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// What goes on messages sent out of the [`Side::Outside`].
    pub outside: Leg,
    /// What goes on messages sent out of the [`Side::Inside`].
    pub inside: Leg,
    /// Names and addresses that are this edge (lower-case), for Route and loop checks.
    pub self_hosts: Vec<String>,
    /// Ports this edge listens on.
    pub self_ports: Vec<u16>,
    /// Option tags this proxy implements (Proxy-Require).
    pub proxy_extensions: &'static [&'static str],
    /// The Warning agent (the edge FQDN).
    pub agent: String,
    /// The Server header of responses the edge makes.
    pub server: String,
    pub timers: Timers,
    /// The key and rules of topology hiding.
    pub topology: Arc<Topology>,
    /// What one outside source may cost before it is cut off.
    pub budget: super::budget::Budget,
}

impl ProxyConfig {
    pub(super) fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::Outside => &self.outside,
            Side::Inside => &self.inside,
        }
    }
}

/// Where a forwarded request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// Over the internal UDP socket.
    Udp(SocketAddr),
    /// Over a pooled stream connection.
    Stream(StreamTarget),
}

/// A request to forward, as the router decided it.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The side it leaves on (its Via and Record-Route).
    pub leg: Side,
    pub hop: Hop,
    /// Headers to remove (case-insensitive names, compact forms understood).
    pub strip: Vec<String>,
    /// Headers to append.
    pub add: Vec<(String, String)>,
    /// Which side of the request the other must not see (see `topology`).
    pub hide: Hide,
    /// The partner the hidden-topology tokens of this request and its
    /// responses are bound to (an opaque name; empty for none).
    pub peer: String,
    /// A new body (Content-Length follows), e.g. SDP pointing at a relay.
    pub body: Option<Bytes>,
}

/// A refusal: status, reason (Warning text and log), and the headers the
/// answer carries besides the Warning (the application's own, such as
/// Retry-After or a vendor diagnostic), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    /// What the sender is told (the Warning text): only what it sent itself.
    pub reason: String,
    /// The fuller reason for the log, when it names more than the sender
    /// may read (another partner's organisation or edge).
    pub detail: Option<String>,
    pub warn_code: u16,
    /// The application's diagnostic code for this refusal, logged with it
    /// (the header that carries it, if any, is among `headers`).
    pub code: Option<u16>,
    pub headers: Vec<(String, String)>,
    /// Log this refusal on its own line (false when the application
    /// summarises a run of like refusals, e.g. a flood's, itself).
    pub log: bool,
    /// Counts against the sender's refusal budget (`budget`): true unless
    /// the application knows the sender and limits it itself (a partner's
    /// own rate).
    pub charge: bool,
}

impl Reject {
    pub fn new(status: u16, reason: impl Into<String>) -> Reject {
        Reject {
            status,
            reason: reason.into(),
            detail: None,
            warn_code: 399,
            code: None,
            headers: Vec::new(),
            log: true,
            charge: true,
        }
    }
}

/// The router's answer for one request.
#[derive(Debug, Clone)]
pub enum Decision {
    Forward(Forward),
    Reject(Reject),
    /// Answer it ourselves (OPTIONS to the edge).
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
    },
    /// Say nothing (requests that are never answered, e.g. BENOTIFY), with the reason for the log.
    Drop(String),
}

/// What the proxy learned about a request before asking the router.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The request belongs to a dialog the edge knows (it record-routed
    /// the dialog, or the request carries a topology token of the edge's
    /// for its Call-ID); a To tag alone does not make a request in-dialog.
    pub in_dialog: bool,
    /// How many of the topmost Route entries were ours (and are removed).
    pub own_routes: usize,
    /// The first Route entry left after ours, if any.
    pub next_route: Option<String>,
    /// How far behind the proxy is when the request is decided.
    pub pressure: super::load::Pressure,
}

/// The decisions the proxy core asks for.
pub trait Router: Send + Sync + 'static {
    /// Where a request goes, or why not (it may look things up first).
    fn route(
        &self,
        req: &SipMessage,
        source: &Source,
        info: &RequestInfo,
    ) -> impl std::future::Future<Output = Decision> + Send;
    /// The answer when the next hop could not be reached.
    fn forward_failed(&self, req: &SipMessage, source: &Source, err: &ConnectError) -> Reject;
    /// The partner that sent `req` from `source`, as [`Forward::peer`]
    /// names it, to which the hidden-topology tokens in it must belong
    /// (empty for none: then no partner's token opens).
    fn token_peer(&self, _req: &SipMessage, _source: &Source) -> String {
        String::new()
    }
    /// Edits to a response before it goes upstream on `to`.
    fn edit_response(&self, resp: &SipMessage, to: &Source, ed: &mut Editor<'_>);
    /// Whether `source` is a peer the application knows (a partner whose
    /// own limits hold it): its refusals, the proxy's own among them (an
    /// expired token, a loop), do not spend the per-source refusal budget
    /// that holds strangers.
    fn identified(&self, _source: &Source) -> bool {
        false
    }
    /// The proxy answered `req` from `source` itself with a final `status`
    /// (a refusal, an unreachable next hop, a transaction timeout).
    fn refused(&self, _req: &SipMessage, _source: &Source, _status: u16) {}
    /// Whether the listener `tag` takes anything from `remote` (see
    /// [`crate::transport::Handler::admits`]).
    fn admits(&self, _tag: Tag, _remote: SocketAddr, _transport: Transport) -> bool {
        true
    }
}

/// Counters, cumulative since start.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub responses: AtomicU64,
    pub forwarded: AtomicU64,
    pub rejected: AtomicU64,
    pub retransmissions: AtomicU64,
    pub stray_responses: AtomicU64,
    pub loops: AtomicU64,
    /// In-dialog requests refused because another outside peer set up the
    /// dialog.
    pub foreign_dialog: AtomicU64,
}
