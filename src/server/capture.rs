//! HEP3 capture (`[capture] hep`): the transports' copies of every SIP
//! message received and sent, encoded as HEP3 (`sip::hep`) and sent as UDP
//! datagrams to one collector (Homer, `sngrep -L`).
//!
//! Owns the bounded queue between the transports and the collector and the
//! one task that drains it. Never blocks or slows the proxy: a copy that
//! finds the queue full is dropped and counted
//! (`fedge_capture_dropped_total`), and so is one whose datagram would be
//! over 65507 bytes, one that would take the queued bytes over
//! [`MAX_QUEUED_BYTES`], or one whose send fails. Never logs the password.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admin::CaptureCounters;
use crate::config::{CaptureConfig, hep_target};
use crate::sip::hep::{self, HepPacket};
use crate::sip::transport::{Capture, Seen, Tap};

use super::ServeError;

/// The largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP): a bigger
/// HEP packet cannot be sent in one datagram and is dropped. Packets over
/// the path MTU go out as IP fragments.
pub const MAX_DATAGRAM: usize = 65_507;

/// The most message bytes waiting in the queue at once: with `[capture]
/// queue` copies of up to a megabyte each, a slow collector could
/// otherwise hold gigabytes.
pub const MAX_QUEUED_BYTES: usize = 32 << 20;

/// The transports' side: a non-blocking hand-off into the queue.
struct Queue {
    tx: mpsc::Sender<Seen>,
    counters: Arc<CaptureCounters>,
    /// Message bytes queued and not yet sent (shared with the sender).
    queued: Arc<AtomicUsize>,
}

impl Tap for Queue {
    fn seen(&self, mut seen: Seen) {
        let len = seen.data.len();
        // Too large for one datagram, or over the byte budget: dropped
        // here, before it holds any memory.
        if len > MAX_DATAGRAM
            || self.queued.load(Ordering::Relaxed).saturating_add(len) > MAX_QUEUED_BYTES
        {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The copy is the message alone, not the read buffer it was
        // sliced from (which may be much larger).
        seen.data = bytes::Bytes::copy_from_slice(&seen.data);
        self.queued.fetch_add(len, Ordering::Relaxed);
        if self.tx.try_send(seen).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the sender needs to stamp each packet.
struct Agent {
    collector: SocketAddr,
    capture_id: u32,
    password: Option<String>,
    counters: Arc<CaptureCounters>,
    /// A too-large message is logged once; the counter tells the rest.
    warned_large: AtomicBool,
}

/// Starts capture when `[capture] hep` is set: resolves the collector,
/// binds the sending socket and spawns the sender (it stops with
/// `shutdown`, after sending what is already queued). Returns the handle
/// for the transports and the counters for /metrics.
pub async fn start(
    cfg: &CaptureConfig,
    shutdown: CancellationToken,
) -> Result<Option<(Capture, Arc<CaptureCounters>)>, ServeError> {
    let Some(target) = &cfg.hep else {
        return Ok(None);
    };
    let (host, port) =
        hep_target(target).map_err(|e| ServeError::Config(format!("[capture] hep: {e}")))?;
    let collector = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ServeError::Config(format!("[capture] hep: cannot resolve {host:?}")))?;
    let bind: SocketAddr = if collector.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| {
        ServeError::Runtime(format!("[capture] hep: cannot bind a UDP socket: {e}"))
    })?;
    let counters = Arc::new(CaptureCounters::default());
    let (tx, rx) = mpsc::channel(cfg.queue);
    let agent = Agent {
        collector,
        capture_id: cfg.capture_id,
        password: cfg.password.clone(),
        counters: counters.clone(),
        warned_large: AtomicBool::new(false),
    };
    info!(collector = %collector, capture_id = cfg.capture_id, queue = cfg.queue,
        auth_key = if cfg.password.is_some() { "set" } else { "none" }, "HEP capture on");
    let queued = Arc::new(AtomicUsize::new(0));
    tokio::spawn(run(agent, sock, rx, queued.clone(), shutdown));
    let tap = Queue {
        tx,
        counters: counters.clone(),
        queued,
    };
    Ok(Some((Capture::new(Arc::new(tap)), counters)))
}

async fn run(
    agent: Agent,
    sock: UdpSocket,
    mut rx: mpsc::Receiver<Seen>,
    queued: Arc<AtomicUsize>,
    shutdown: CancellationToken,
) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let seen = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = rx.recv() => match s { Some(s) => s, None => return },
        };
        queued.fetch_sub(seen.data.len(), Ordering::Relaxed);
        agent.send(&sock, &mut buf, seen).await;
    }
    // The last messages (the BYE's 200 of a drain, say) still go out.
    rx.close();
    while let Ok(seen) = rx.try_recv() {
        queued.fetch_sub(seen.data.len(), Ordering::Relaxed);
        agent.send(&sock, &mut buf, seen).await;
    }
}

impl Agent {
    /// The HEP3 packet of one copy.
    fn packet(&self, seen: Seen) -> HepPacket {
        let t = seen.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        HepPacket {
            src: seen.src,
            dst: seen.dst,
            ip_proto: hep::ip_proto(seen.transport),
            // u32 seconds last until 2106.
            time_sec: t.as_secs() as u32,
            time_usec: t.subsec_micros(),
            proto_type: hep::PROTO_SIP,
            capture_id: self.capture_id,
            auth_key: self.password.clone(),
            correlation_id: hep::call_id(&seen.data).map(str::to_string),
            payload: seen.data,
        }
    }

    async fn send(&self, sock: &UdpSocket, buf: &mut Vec<u8>, seen: Seen) {
        let packet = self.packet(seen);
        let len = packet.encoded_len();
        buf.clear();
        if len > MAX_DATAGRAM || packet.encode(buf).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            if !self.warned_large.swap(true, Ordering::Relaxed) {
                warn!(
                    bytes = len,
                    max = MAX_DATAGRAM,
                    "HEP capture: a message too large for one datagram was dropped (counted in fedge_capture_dropped_total; logged once)"
                );
            }
            return;
        }
        match sock.send_to(buf, self.collector).await {
            Ok(_) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, collector = %self.collector, "HEP capture: send failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transport::Transport;
    use bytes::Bytes;
    use std::time::{Duration, SystemTime};

    fn cfg(hep: String, queue: usize) -> CaptureConfig {
        CaptureConfig {
            hep: Some(hep),
            capture_id: 7,
            password: Some("pw".into()),
            queue,
        }
    }

    const MSG: &[u8] = b"OPTIONS sip:h SIP/2.0\r\nCall-ID: x1\r\nContent-Length: 0\r\n\r\n";

    fn seen(data: &'static [u8]) -> (SocketAddr, SocketAddr, Transport, Bytes) {
        (
            "127.0.0.1:5061".parse().unwrap(),
            "127.0.0.2:40000".parse().unwrap(),
            Transport::Tls,
            Bytes::from_static(data),
        )
    }

    #[tokio::test]
    async fn sends_each_copy_as_one_hep3_datagram() {
        let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = collector.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (cap, counters) = start(&cfg(format!("udp:{addr}"), 10), stop.clone())
            .await
            .unwrap()
            .unwrap();
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let (s, d, t, b) = seen(MSG);
        cap.seen(s, d, t, &b);
        cap.seen(s, d, t, &Bytes::from_static(b"\r\n\r\n")); // a keep-alive: not captured
        let mut buf = vec![0u8; 70_000];
        let n = tokio::time::timeout(Duration::from_secs(5), collector.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let p = hep::decode(&buf[..n]).unwrap();
        assert_eq!((p.src, p.dst), (s, d));
        assert_eq!(p.ip_proto, hep::IPPROTO_TCP);
        assert_eq!(p.capture_id, 7);
        assert_eq!(p.auth_key.as_deref(), Some("pw"));
        assert_eq!(p.correlation_id.as_deref(), Some("x1"));
        assert_eq!(&p.payload[..], MSG);
        assert!(u64::from(p.time_sec) >= before.as_secs());
        assert_eq!(counters.sent.load(Ordering::Relaxed), 1);
        let extra =
            tokio::time::timeout(Duration::from_millis(300), collector.recv(&mut buf)).await;
        assert!(extra.is_err(), "the keep-alive was sent");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = collector.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (cap, counters) = start(&cfg(format!("udp:{addr}"), 2), stop.clone())
            .await
            .unwrap()
            .unwrap();
        let (s, d, t, b) = seen(MSG);
        // No await between the copies: the sender cannot drain in between
        // on this single-threaded runtime.
        for _ in 0..50 {
            cap.seen(s, d, t, &b);
        }
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 48);
        stop.cancel();
    }

    #[tokio::test]
    async fn too_large_is_dropped_and_counted() {
        let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = collector.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (cap, counters) = start(&cfg(format!("udp:{addr}"), 4), stop.clone())
            .await
            .unwrap()
            .unwrap();
        let (s, d, t, _) = seen(MSG);
        cap.seen(s, d, t, &Bytes::from(vec![b'x'; MAX_DATAGRAM]));
        cap.seen(s, d, t, &Bytes::from_static(MSG));
        let mut buf = vec![0u8; 70_000];
        let n = tokio::time::timeout(Duration::from_secs(5), collector.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&hep::decode(&buf[..n]).unwrap().payload[..], MSG);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 1);
        stop.cancel();
    }

    #[tokio::test]
    async fn the_queue_holds_at_most_its_byte_budget() {
        let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = collector.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (cap, counters) = start(&cfg(format!("udp:{addr}"), 10_000), stop.clone())
            .await
            .unwrap()
            .unwrap();
        let (s, d, t, _) = seen(MSG);
        let big = Bytes::from(vec![b'x'; 60_000]);
        // No await in between: nothing is sent meanwhile.
        for _ in 0..1000 {
            cap.seen(s, d, t, &big);
        }
        let fit = (MAX_QUEUED_BYTES / 60_000) as u64;
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 1000 - fit);
        stop.cancel();
    }
}
