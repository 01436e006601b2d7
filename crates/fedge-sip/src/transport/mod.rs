//! Transports: TLS and TCP streams, UDP datagrams, and the table of live
//! connections.
//!
//! Owns sockets, framing on the wire, syntax rejections and keep-alives.
//! Every well-formed message goes up to a [`Handler`] together with its
//! [`Source`]: where it came from, on which listener and, for mutual TLS,
//! the authenticated [`PeerIdentity`]. Malformed messages never go up: they
//! are answered (or the connection is closed) here. Knows no policy.
//!
//! Capture: when [`TransportSettings::capture`] is set, every SIP message
//! received (once framed) and sent (once written) is handed to its [`Tap`]
//! as a [`Seen`] copy (a reference-counted `Bytes`, no copy of the data);
//! when it is `None` the hot path pays one branch. What the tap does with
//! it (HEP3 to a collector) is the application's.

pub mod admission;
pub mod outbound;
mod outbox;
pub mod stream;
pub mod tls;
pub mod udp;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::message::SipMessage;
use super::parse::Limits;

pub use tls::{ClientAuth, PeerIdentity};

/// The transport a message travelled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The name used in Via headers.
    pub fn via_name(&self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    pub fn is_stream(&self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// Which side of the edge a listener or outbound pool faces. The proxy
/// puts the matching [`crate::proxy::Leg`] (Via, Record-Route) on what it
/// sends out of that side, and a request that crosses sides gets a
/// Record-Route entry on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Towards peers outside the organisation (the public face).
    Outside,
    /// Towards the organisation's own servers.
    Inside,
}

/// The application's label for a listener or an outbound pool, carried
/// with every message and connection so the layers above can tell where
/// it came from. The SIP layer only logs its name and reads its side; what
/// a tag means is the application's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    pub name: &'static str,
    pub side: Side,
}

impl Tag {
    pub const fn new(name: &'static str, side: Side) -> Tag {
        Tag { name, side }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Settings shared by every listener.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub limits: Limits,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte arrived.
    pub message_timeout: Duration,
    /// The name put in Warning headers of syntax rejections.
    pub agent: String,
    /// Outbound TLS handshakes must finish within this time.
    pub handshake_timeout: Duration,
    /// Where copies of every message received and sent go; `None`: no
    /// capture.
    pub capture: Option<Capture>,
}

/// A copy of one SIP message as it crossed the wire (decrypted for TLS),
/// with its real addresses and the time it was read or written.
#[derive(Debug, Clone)]
pub struct Seen {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub at: SystemTime,
    pub data: Bytes,
}

/// Takes the copies the transports make. Must return at once and never
/// fail the message: it runs on the receive and send paths.
pub trait Tap: Send + Sync + 'static {
    fn seen(&self, seen: Seen);
}

/// The capture handle the transports carry (cheap to clone).
#[derive(Clone)]
pub struct Capture(Arc<dyn Tap>);

impl Capture {
    pub fn new(tap: Arc<dyn Tap>) -> Capture {
        Capture(tap)
    }

    /// Hands a copy of `data` (one whole message) to the tap, stamped now.
    /// Keep-alive CRLFs are not messages and are left out.
    pub fn seen(&self, src: SocketAddr, dst: SocketAddr, transport: Transport, data: &Bytes) {
        if data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
        {
            return;
        }
        self.0.seen(Seen {
            src,
            dst,
            transport,
            at: SystemTime::now(),
            data: data.clone(),
        });
    }
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Capture")
    }
}

/// A live stream connection that others may send on or close.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: u64,
    pub tag: Tag,
    pub transport: Transport,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub identity: Option<Arc<PeerIdentity>>,
    /// What is queued for sending, and the writer (`outbox.rs`).
    out: Arc<outbox::Outbox>,
    close: CancellationToken,
}

/// Most bytes queued for one connection: a peer that does not read is cut
/// off here, whatever the size of the messages it makes the edge answer.
/// One message is always let into an empty queue (it is at most
/// `max_head + max_body`).
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;

/// Why bytes could not be queued for sending.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connection {0} is closed")]
    Closed(u64),
    #[error("connection {0} is not reading; its send queue is full")]
    Full(u64),
    #[error("UDP send to {0} failed: {1}")]
    Udp(SocketAddr, std::io::Error),
}

impl Connection {
    /// Queues bytes for this connection without waiting.
    pub fn send(&self, data: Bytes) -> Result<(), SendError> {
        if data.is_empty() {
            return Ok(()); // an empty chunk is the writer's close marker
        }
        let len = data.len();
        let before = self.out.count_in(len);
        if before > 0 && before + len > MAX_QUEUED_BYTES {
            self.out.count_out(len);
            // A peer that does not read its answers: cut off.
            self.close();
            return Err(SendError::Full(self.id));
        }
        self.out.push(data).map_err(|e| {
            self.out.count_out(len);
            match e {
                outbox::Refused::Full => SendError::Full(self.id),
                outbox::Refused::Closed => SendError::Closed(self.id),
            }
        })
    }

    /// Closes the connection (queued bytes are dropped).
    pub fn close(&self) {
        self.close.cancel();
    }

    pub fn is_closed(&self) -> bool {
        self.close.is_cancelled() || self.out.is_closed()
    }

    /// True when more than half of the send queue is waiting.
    pub fn is_busy(&self) -> bool {
        self.out.is_busy()
    }
}

impl Connection {
    /// A connection inside the process: what is sent on it comes out of
    /// the returned [`InProcess`] instead of a socket. It is registered in
    /// `table` like a real one (and taken out when the `InProcess` is
    /// dropped), so a handler answers and sends requests on it unchanged.
    /// For an interworking front end (H.323) that presents its calls to a
    /// SIP handler as if they came over TCP from `remote`.
    pub fn in_process(
        table: &Arc<ConnectionTable>,
        tag: Tag,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> (Connection, InProcess) {
        let out = outbox::Outbox::new(IN_PROCESS_QUEUE);
        let close = CancellationToken::new();
        let conn = Connection {
            id: table.allocate_id(),
            tag,
            transport: Transport::Tcp,
            remote,
            local,
            identity: None,
            out: out.clone(),
            close: close.clone(),
        };
        table.insert(conn.clone());
        let end = InProcess {
            out,
            close,
            table: table.clone(),
            id: conn.id,
        };
        (conn, end)
    }
}

/// Messages one in-process connection holds at most before `send` fails.
const IN_PROCESS_QUEUE: usize = 64;

/// The receiving end of an in-process [`Connection`].
#[derive(Debug)]
pub struct InProcess {
    out: Arc<outbox::Outbox>,
    close: CancellationToken,
    table: Arc<ConnectionTable>,
    id: u64,
}

impl InProcess {
    /// The next chunk sent on the connection (one whole SIP message, as
    /// the handler sent it); `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.out.pop(&self.close).await
    }

    /// The connection's id in the table.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.out.shut();
        self.close.cancel();
        self.table.remove(self.id);
    }
}

/// Every live stream connection, by id.
#[derive(Debug, Default)]
pub struct ConnectionTable {
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Connection>>,
}

impl ConnectionTable {
    pub fn new() -> Arc<Self> {
        Arc::new(ConnectionTable {
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Connection>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert/remove), so poisoning is ignored.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn insert(&self, c: Connection) {
        self.lock().insert(c.id, c);
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn get(&self, id: u64) -> Option<Connection> {
        self.lock().get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the live connections.
    pub fn list(&self) -> Vec<Connection> {
        self.lock().values().cloned().collect()
    }

    /// Closes every connection for which `pred` holds; returns how many.
    pub fn close_where(&self, pred: impl Fn(&Connection) -> bool) -> usize {
        let victims: Vec<Connection> = self.lock().values().filter(|c| pred(c)).cloned().collect();
        for c in &victims {
            c.close();
        }
        victims.len()
    }
}

/// Where a message came from, and how to answer on the same path.
#[derive(Debug, Clone)]
pub struct Source {
    pub tag: Tag,
    pub transport: Transport,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// The authenticated certificate identity (mutual TLS only).
    pub identity: Option<Arc<PeerIdentity>>,
    /// The stream connection, for TCP and TLS.
    pub conn: Option<Connection>,
    /// The socket a datagram arrived on, for UDP.
    pub udp: Option<Arc<UdpSocket>>,
    /// Where copies of what is sent back on a UDP socket go (stream
    /// connections capture in their writer).
    pub capture: Option<Capture>,
}

impl Source {
    /// Sends bytes back on the path the message came from: the same stream
    /// connection, or the same UDP socket to `target` (default: the sender).
    pub async fn send_back(
        &self,
        data: Bytes,
        target: Option<SocketAddr>,
    ) -> Result<(), SendError> {
        if let Some(c) = &self.conn {
            return c.send(data);
        }
        match &self.udp {
            Some(sock) => {
                let to = target.unwrap_or(self.remote);
                udp::send_to(sock, &data, to, self.capture.as_ref())
                    .await
                    .map_err(|e| SendError::Udp(to, e))
            }
            None => Err(SendError::Closed(0)),
        }
    }

    /// Where a response to `req` goes over UDP (RFC 3261 §18.2.2 with RFC
    /// 3581 rport): the packet's source port when rport was asked for,
    /// otherwise the source address with the Via sent-by port.
    pub fn response_target(&self, req: &SipMessage) -> SocketAddr {
        if self.transport.is_stream() {
            return self.remote;
        }
        match req.top_via() {
            Some(v) if v.rport().is_none() => {
                SocketAddr::new(self.remote.ip(), v.port.unwrap_or(5060))
            }
            _ => self.remote,
        }
    }
}

/// A message handed up from a transport.
#[derive(Debug)]
pub struct Inbound {
    pub msg: SipMessage,
    pub source: Source,
}

/// The layer above the transports.
pub trait Handler: Send + Sync + 'static {
    /// Called once per well-formed message, in arrival order per connection.
    fn on_message(&self, inbound: Inbound) -> impl Future<Output = ()> + Send;
    /// Whether a listener takes anything from `remote` at all: asked for
    /// each accepted connection (closed at once when not) and each
    /// datagram (dropped unanswered when not). The handler logs refusals.
    fn admits(&self, _tag: Tag, _remote: SocketAddr, _transport: Transport) -> bool {
        true
    }
}
