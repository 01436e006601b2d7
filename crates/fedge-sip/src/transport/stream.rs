//! Stream listeners (TLS and TCP) and the life of one stream connection:
//! handshake, framing, keep-alive pongs, syntax rejections, timeouts and
//! an ordered send queue (`outbox.rs`).
//!
//! Owns per-connection failure: whatever a peer sends, only its own
//! connection is answered or closed; the listener and every other
//! connection carry on. Which connections are let in (handshake budget,
//! per-source and per-identity caps) is `admission.rs`'s to say; this
//! file asks it at accept and after the handshake, and closes what it
//! sheds.
//!
//! Capture: a framed message is copied to the capture tap before it goes
//! up, a sent one after the writer wrote it (decrypted: the tap sees what
//! TLS carries).
//!
//! Memory of an idle connection: a connection that has no partial message
//! holds no read buffer (it waits with a buffer on the worker's stack, see
//! [`read_some`]), the handler's work on a message lives in a box of its
//! own for as long as it runs, not in the connection's task, and nothing
//! waits to write: the send queue and its writer task exist only while
//! there is something to send (`outbox.rs`). An idle partner costs its
//! TLS state, one task and a few hundred bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::admission::{Admission, Limits, PendingTicket, Permit};
use super::outbox::{Outbox, Writer};
use super::tls::{
    ClientAuth, ServerTls, describe_handshake_error, describe_tls_error, identity_of,
};
use super::{
    Connection, ConnectionTable, Handler, Inbound, PeerIdentity, Source, Tag, Transport,
    TransportSettings,
};
use crate::framing::{StreamDecoder, StreamError, StreamItem};
use crate::parse::Rejected;
use crate::response::ResponseBuilder;

/// Send queue depth per connection; a peer that lets it fill is not reading.
const SEND_QUEUE: usize = 512;

/// What one read takes at most while the connection holds no partial
/// message (a buffer on the worker thread's stack, never in the task).
const IDLE_READ: usize = 16 * 1024;

/// Room made in the read buffer before each read in the middle of a message.
const MID_READ: usize = 8 * 1024;

/// How a TLS listener accepts: the server configuration (our certificate,
/// the client verifier), the handshake deadline (total, counted from the
/// accept), and whether a peer without a usable certificate identity is let
/// in. The configuration is read at each accept, so the application may
/// swap it (a certificate reload): new handshakes get the new one,
/// connections already up keep theirs. A resumed session is checked again
/// by the configuration's verifier before it is used.
#[derive(Clone)]
pub struct TlsAccept {
    pub config: Arc<ArcSwap<ServerTls>>,
    pub handshake_timeout: Duration,
    pub client_auth: ClientAuth,
}

/// Everything a stream listener needs.
pub struct StreamListener<H: Handler> {
    pub tag: Tag,
    pub listener: TcpListener,
    /// `Some` for TLS listeners.
    pub tls: Option<TlsAccept>,
    pub settings: Arc<TransportSettings>,
    pub table: Arc<ConnectionTable>,
    pub handler: Arc<H>,
    /// What the listener admits: established connections (in all and per
    /// identity) and, for TLS, connections in their handshake.
    pub limits: Limits,
    pub shutdown: CancellationToken,
}

impl<H: Handler> StreamListener<H> {
    /// Accepts connections until shutdown.
    pub async fn run(self) {
        let admission = Admission::new(self.tag, self.limits);
        let local = self.listener.local_addr().ok();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tick.tick() => {
                    admission.flush_log();
                    continue;
                }
                a = self.listener.accept() => a,
            };
            let accepted_at = Instant::now();
            let (tcp, remote) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(role = %self.tag, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // A source this listener never takes: closed at once (the
            // handler logs it).
            let transport = if self.tls.is_some() {
                Transport::Tls
            } else {
                Transport::Tcp
            };
            if !self.handler.admits(self.tag, remote, transport) {
                continue;
            }
            let _ = tcp.set_nodelay(true);
            let local = tcp
                .local_addr()
                .ok()
                .or(local)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            let ctx = ConnCtx {
                tag: self.tag,
                settings: self.settings.clone(),
                table: self.table.clone(),
                shutdown: self.shutdown.clone(),
                remote,
                local,
            };
            let handler = self.handler.clone();
            match &self.tls {
                Some(accept) => {
                    // Refused (logged by the admission): closed at once.
                    let Some(ticket) = admission.handshake(remote) else {
                        continue;
                    };
                    let job = Handshake {
                        accept: accept.clone(),
                        ticket,
                        deadline: accepted_at + accept.handshake_timeout,
                        admission: admission.clone(),
                    };
                    let span = conn_span(&ctx);
                    tokio::spawn(accept_tls(tcp, job, ctx, handler).instrument(span));
                }
                None => {
                    let Some(permit) = admission.establish(remote) else {
                        continue;
                    };
                    spawn_connection(tcp, Transport::Tcp, None, ctx, handler, Some(permit));
                }
            }
        }
        info!(role = %self.tag, "listener stopped");
    }
}

/// What a connection needs besides its socket.
#[derive(Clone)]
pub(crate) struct ConnCtx {
    pub tag: Tag,
    pub settings: Arc<TransportSettings>,
    pub table: Arc<ConnectionTable>,
    pub shutdown: CancellationToken,
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// A TLS handshake in progress: its place in the handshake budget and
/// its total deadline.
struct Handshake {
    accept: TlsAccept,
    ticket: PendingTicket,
    deadline: Instant,
    admission: Arc<Admission>,
}

async fn accept_tls<H: Handler>(tcp: TcpStream, job: Handshake, ctx: ConnCtx, handler: Arc<H>) {
    let remote = ctx.remote;
    let Handshake {
        accept,
        ticket,
        deadline,
        admission,
    } = job;
    let optional = accept.client_auth == ClientAuth::Optional;
    let shed = ticket.shed();
    // The deadline is total: a peer that sends a byte now and then does
    // not extend it.
    let server = accept.config.load_full();
    let acceptor = TlsAcceptor::from(server.config.clone());
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
    let tls = tokio::select! {
        // Shed to make room (logged by the admission): the socket closes here.
        _ = shed.cancelled() => return,
        r = handshake => match r {
            Err(_) => {
                admission.deadline_passed(remote, accept.handshake_timeout);
                return;
            }
            Ok(Err(e)) => {
                if crate::log_limit::allow(remote.ip(), "TLS handshake refused") {
                    warn!(role = %ctx.tag, %remote, reason = %describe_handshake_error(&e), "TLS handshake refused");
                }
                return;
            }
            Ok(Ok(s)) => s,
        },
    };
    let (_, conn) = tls.get_ref();
    // A resumed session's chain is checked again, now, by the current
    // verifier: resumption skips no check a full handshake makes.
    if let Err(e) = server.recheck_resumed(conn) {
        if crate::log_limit::allow(remote.ip(), "TLS handshake refused") {
            warn!(role = %ctx.tag, %remote, reason = %describe_tls_error(&e), "TLS resumed session refused");
        }
        let mut tls = tls;
        let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
        return;
    }
    let identity = match conn.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => match identity_of(cert, true) {
            Ok(id) => Some(Arc::new(id)),
            // Where certificates are optional, one without a usable identity is no identity.
            Err(_) if optional => None,
            Err(e) => {
                // The verifier already refuses these; this is a second line of defence.
                warn!(role = %ctx.tag, %remote, reason = %e, "TLS peer refused");
                return;
            }
        },
        None if optional => None,
        None => {
            warn!(role = %ctx.tag, %remote, "TLS peer refused: no client certificate");
            return;
        }
    };
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    // Out of the handshake budget, into the established connections (per
    // identity); refusals are logged by the admission.
    let Some(permit) = ticket.establish(identity.as_deref()) else {
        let mut tls = tls;
        let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
        return;
    };
    if let Some(id) = &identity {
        info!(role = %ctx.tag, %remote, identity = %id, subject = %id.subject, %version, resumed, "TLS peer authenticated");
    }
    spawn_connection(tls, Transport::Tls, identity, ctx, handler, Some(permit));
}

/// Registers a connection and runs it in its own task; returns its handle
/// at once so that the caller may send on it (outbound connections).
pub(crate) fn spawn_connection<S, H>(
    stream: S,
    transport: Transport,
    identity: Option<Arc<PeerIdentity>>,
    ctx: ConnCtx,
    handler: Arc<H>,
    permit: Option<Permit>,
) -> Connection
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let (rd, wr) = tokio::io::split(stream);
    let out = Outbox::new(SEND_QUEUE);
    let close = ctx.shutdown.child_token();
    let id = ctx.table.allocate_id();
    let conn = Connection {
        id,
        tag: ctx.tag,
        transport,
        remote: ctx.remote,
        local: ctx.local,
        identity: identity.clone(),
        out: out.clone(),
        close: close.clone(),
    };
    ctx.table.insert(conn.clone());
    let span = conn_span(&ctx);
    let tap = ctx
        .settings
        .capture
        .clone()
        .map(|c| (c, ctx.local, ctx.remote, transport));
    // No writer task until something is queued (outbox.rs).
    Writer {
        wr,
        close: close.clone(),
        tap,
        runtime: tokio::runtime::Handle::current(),
        span: span.clone(),
    }
    .park(&out);
    let handle = conn.clone();
    let task = async move {
        let mut rd = rd;
        let source = Source {
            tag: ctx.tag,
            transport,
            remote: ctx.remote,
            local: ctx.local,
            identity,
            conn: Some(conn.clone()),
            udp: None,
            capture: None,
        };
        let reason = read_loop(&mut rd, &source, &ctx.settings, &close, handler.as_ref()).await;
        ctx.table.remove(id);
        debug!(role = %ctx.tag, conn = id, remote = %ctx.remote, %reason, "connection closed");
        // Let queued responses (e.g. a final 400) go out, then close: an empty
        // chunk tells the writer to shut the stream down.
        if !close.is_cancelled() && out.push(Bytes::new()).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), out.done()).await;
        }
        close.cancel();
        out.shut();
        drop(permit);
    };
    tokio::spawn(task.instrument(span));
    handle
}

/// The span every log line of one connection is written in: the peer's
/// address, whatever logs it (this crate, rustls, the handler).
fn conn_span(ctx: &ConnCtx) -> tracing::Span {
    info_span!("conn", peer = %ctx.remote, role = %ctx.tag)
}

/// Reads and dispatches until the connection ends; returns why it ended.
async fn read_loop<R, H>(
    rd: &mut R,
    source: &Source,
    settings: &TransportSettings,
    close: &CancellationToken,
    handler: &H,
) -> String
where
    R: AsyncRead + Unpin,
    H: Handler,
{
    let mut decoder = StreamDecoder::new(settings.limits);
    // Empty (no allocation) whenever no partial message is pending.
    let mut buf = BytesMut::new();
    let mut msg_started: Option<Instant> = None;
    let mut eof = false;
    loop {
        // Hand up everything already complete.
        loop {
            let item = if eof {
                decoder.decode_eof(&mut buf)
            } else {
                decoder.decode(&mut buf)
            };
            match item {
                Ok(Some(item)) => {
                    msg_started = None;
                    // Boxed: the handler's future lives only while the
                    // message is handled, not in the idle task.
                    Box::pin(dispatch(item, source, settings, handler)).await;
                    // One message is one unit of tokio's cooperative budget:
                    // a peer that sends a burst yields to the other
                    // connections instead of holding the worker.
                    tokio::task::consume_budget().await;
                }
                Ok(None) => break,
                Err(e) => return fatal(e, source, settings),
            }
        }
        if eof {
            return "peer closed the connection".into();
        }
        release_if_drained(&mut buf);
        let mid = decoder.mid_message(&buf);
        if mid && msg_started.is_none() {
            msg_started = Some(Instant::now());
        }
        let deadline = match msg_started {
            Some(t) if mid => t + settings.message_timeout,
            _ => Instant::now() + settings.idle_timeout,
        };
        tokio::select! {
            _ = close.cancelled() => return "closed by the edge".into(),
            _ = tokio::time::sleep_until(deadline) => {
                if mid && crate::log_limit::allow(source.remote.ip(), "incomplete message") {
                    warn!(role = %source.tag, remote = %source.remote, pending = buf.len(),
                        "connection closed: message incomplete after {:?}", settings.message_timeout);
                }
                if mid {
                    return "incomplete message timed out".into();
                }
                return "idle timeout".into();
            }
            r = read_some(rd, &mut buf) => match r {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => return format!("read error: {e}"),
            }
        }
    }
}

/// Gives a fully consumed read buffer's memory back (the messages framed
/// from it keep only their own bytes alive).
fn release_if_drained(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// Reads what is there into `buf`. With bytes pending (a partial message)
/// it reads into `buf` itself; with none, into a buffer on the worker
/// thread's stack, copied into `buf` only once bytes have come, so that a
/// connection waiting for its next message holds no buffer.
async fn read_some<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    if !buf.is_empty() {
        buf.reserve(MID_READ);
        return rd.read_buf(buf).await;
    }
    std::future::poll_fn(|cx| {
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); IDLE_READ];
        let mut rb = tokio::io::ReadBuf::uninit(&mut scratch);
        match std::pin::Pin::new(&mut *rd).poll_read(cx, &mut rb) {
            std::task::Poll::Ready(Ok(())) => {
                buf.extend_from_slice(rb.filled());
                std::task::Poll::Ready(Ok(rb.filled().len()))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
    .await
}

async fn dispatch<H: Handler>(
    item: StreamItem,
    source: &Source,
    settings: &TransportSettings,
    handler: &H,
) {
    match item {
        StreamItem::Ping => {
            if let Some(c) = &source.conn {
                let _ = c.send(Bytes::from_static(b"\r\n"));
            }
        }
        StreamItem::Message(msg) => {
            if let Some(c) = &settings.capture {
                c.seen(source.remote, source.local, source.transport, msg.raw());
            }
            handler
                .on_message(Inbound {
                    msg,
                    source: source.clone(),
                })
                .await;
        }
        StreamItem::Rejected(r) => {
            if let (Some(c), Some(m)) = (&settings.capture, &r.partial) {
                c.seen(source.remote, source.local, source.transport, m.raw());
            }
            answer_rejection(&r, source, settings, false);
        }
    }
}

fn fatal(e: StreamError, source: &Source, settings: &TransportSettings) -> String {
    match e {
        StreamError::Fatal(r) => {
            if let (Some(c), Some(m)) = (&settings.capture, &r.partial) {
                c.seen(source.remote, source.local, source.transport, m.raw());
            }
            answer_rejection(&r, source, settings, true);
            format!("framing lost: {}", r.error)
        }
        StreamError::Truncated(n) => {
            if crate::log_limit::allow(source.remote.ip(), "incomplete message") {
                warn!(role = %source.tag, remote = %source.remote, pending = n, "connection closed mid-message");
            }
            format!("closed mid-message with {n} bytes pending")
        }
        StreamError::Io(e) => format!("read error: {e}"),
    }
}

/// Answers a syntax rejection on a stream (requests only) and logs it.
fn answer_rejection(r: &Rejected, source: &Source, settings: &TransportSettings, closing: bool) {
    let identity = source
        .identity
        .as_ref()
        .map(|i| i.to_string())
        .unwrap_or_default();
    let what = r
        .partial
        .as_ref()
        .map(|m| truncate_for_log(m.start_line_str()))
        .unwrap_or_default();
    if crate::log_limit::allow(source.remote.ip(), "malformed message") {
        warn!(
            role = %source.tag,
            remote = %source.remote,
            identity = %identity,
            status = r.error.status,
            reason = %r.error.reason,
            message = %what,
            closing,
            "malformed message rejected"
        );
    }
    if let (Some(req), true) = (&r.partial, r.is_request()) {
        if req
            .method()
            .is_some_and(|m| *m == crate::message::Method::Ack)
        {
            return; // ACK is never answered
        }
        let resp = build_rejection(req, r, settings);
        if let Some(c) = &source.conn {
            let _ = c.send(resp);
        }
    }
}

/// The response to a malformed request.
pub(crate) fn build_rejection(
    req: &crate::message::SipMessage,
    r: &Rejected,
    settings: &TransportSettings,
) -> Bytes {
    ResponseBuilder::new(req, r.error.status)
        .warning(399, &settings.agent, &r.error.reason)
        .build()
}

fn truncate_for_log(s: &str) -> String {
    let mut t: String = s.chars().take(120).collect();
    if s.chars().count() > 120 {
        t.push('…');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Side;
    use std::sync::Mutex;

    /// Records what reaches it; each message's handling holds a large
    /// buffer across an await, as a real handler's state may.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Handler for Recorder {
        async fn on_message(&self, inbound: Inbound) {
            let big = [7u8; 32 * 1024];
            tokio::task::yield_now().await;
            assert_eq!(big[100], 7);
            let line = inbound.msg.start_line_str().to_string();
            self.0.lock().unwrap().push(line);
        }
    }

    fn settings() -> TransportSettings {
        TransportSettings {
            limits: crate::parse::Limits::default(),
            idle_timeout: Duration::from_secs(30),
            message_timeout: Duration::from_secs(30),
            agent: "test".into(),
            handshake_timeout: Duration::from_secs(5),
            capture: None,
        }
    }

    fn source() -> Source {
        let a = SocketAddr::from(([127, 0, 0, 1], 5061));
        Source {
            tag: Tag::new("test", Side::Outside),
            transport: Transport::Tcp,
            remote: a,
            local: a,
            identity: None,
            conn: None,
            udp: None,
            capture: None,
        }
    }

    fn options(n: u32) -> String {
        format!(
            "OPTIONS sip:edge.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@partner.test>;tag={n}\r\nTo: <sip:edge.test>\r\n\
             Call-ID: {n}@partner.test\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// The handler's future (32 KiB here) is not part of the connection's
    /// task: an idle connection's task stays small.
    #[tokio::test]
    async fn the_handlers_state_is_not_kept_in_an_idle_connection() {
        let (mut a, _b) = tokio::io::duplex(64);
        let (settings, source, close, h) = (
            settings(),
            source(),
            CancellationToken::new(),
            Recorder::default(),
        );
        let fut = read_loop(&mut a, &source, &settings, &close, &h);
        let size = std::mem::size_of_val(&fut);
        assert!(size < 4096, "a connection's read task is {size} bytes");
    }

    /// A drained buffer is given back; one holding a partial message is kept.
    #[test]
    fn a_drained_read_buffer_is_released() {
        let mut buf = BytesMut::with_capacity(8192);
        buf.extend_from_slice(b"OPTIONS sip:x SIP/2.0\r\n");
        release_if_drained(&mut buf);
        assert!(buf.capacity() >= 8192, "a partial message was dropped");
        let _message = buf.split();
        release_if_drained(&mut buf);
        assert_eq!(buf.capacity(), 0);
    }

    /// A read with nothing pending allocates what came, not a whole buffer.
    #[tokio::test]
    async fn an_idle_read_allocates_only_what_came() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        b.write_all(&[b'x'; 300]).await.unwrap();
        let mut buf = BytesMut::new();
        let n = read_some(&mut a, &mut buf).await.unwrap();
        assert_eq!(n, 300);
        assert_eq!(&buf[..], &[b'x'; 300][..]);
        assert!(buf.capacity() < 1024, "capacity {}", buf.capacity());
    }

    /// Messages split across reads and several in one read all come up,
    /// in order, through the idle and the mid-message read paths.
    #[tokio::test]
    async fn messages_across_and_within_reads_all_arrive() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let (settings, source, close, h) = (
            settings(),
            source(),
            CancellationToken::new(),
            Recorder::default(),
        );
        let writer = async move {
            let (one, two, three) = (options(1), options(2), options(3));
            let (head, tail) = one.split_at(40);
            b.write_all(head.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            b.write_all(tail.as_bytes()).await.unwrap();
            b.write_all(format!("{two}{three}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(b);
        };
        let (reason, ()) = tokio::join!(read_loop(&mut a, &source, &settings, &close, &h), writer);
        assert_eq!(reason, "peer closed the connection");
        let got = h.0.lock().unwrap().clone();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|l| l.starts_with("OPTIONS sip:edge.test")));
    }
}
