//! ICE-TCP for browsers on networks that block UDP (issue 20): one
//! configured TCP port (`[cvi] webrtc_tcp`) shared by every browser call,
//! advertised as an RFC 6544 passive host candidate; frames are RFC 4571
//! (a 16-bit length, then one STUN, DTLS or SRTP packet). A connection
//! is handed to its call by the first frame, which must be a STUN Binding
//! request whose USERNAME starts with a live call's local ufrag.
//!
//! Owns the listener, the routing table (local ufrag -> call) and the
//! TCP side's bounds: connections in all and per source address, frame
//! size, the first frame's deadline and an idle time-out. It never
//! answers ICE itself (str0m does, in the call), and bad framing closes
//! that connection only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use str0m::ice::StunMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::lock;

/// The largest frame taken (STUN, DTLS records and SRTP fit well below).
pub const MAX_FRAME: usize = 4096;
/// Connections from one source address at most (a browser opens one per
/// pair it checks).
pub const PER_SOURCE: usize = 8;
/// Connections in all at most.
pub const MAX_CONNECTIONS: usize = 512;
/// The first frame (a STUN Binding request) must arrive this soon.
pub const FIRST_FRAME: Duration = Duration::from_secs(10);
/// A connection with no frame this long is closed (ICE consent checks
/// come every few seconds on a live pair).
pub const IDLE: Duration = Duration::from_secs(30);

/// The shared ICE-TCP port.
#[derive(Debug)]
pub struct IceTcp {
    /// The advertised address of the passive candidate.
    pub advertise: SocketAddr,
    /// Local ufrag -> the call's queue of connections.
    calls: Mutex<HashMap<String, mpsc::Sender<Conn>>>,
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Holds one connection's place in the per-source count.
#[derive(Debug)]
pub struct Slot {
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = lock(&self.sources);
        if let Some(n) = s.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.remove(&self.ip);
            }
        }
    }
}

/// A connection handed to its call, with its first frame.
pub struct Conn {
    pub peer: SocketAddr,
    pub first: Vec<u8>,
    pub stream: TcpStream,
    pub slot: Slot,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the limit")]
    TooBig(usize),
    #[error("empty frame")]
    Empty,
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one RFC 4571 frame into `buf` (its length returned).
pub async fn read_frame<R: AsyncReadExt + Unpin>(
    r: &mut R,
    buf: &mut [u8; MAX_FRAME],
) -> Result<usize, FrameError> {
    let n = usize::from(r.read_u16().await?);
    if n == 0 {
        return Err(FrameError::Empty);
    }
    if n > MAX_FRAME {
        return Err(FrameError::TooBig(n));
    }
    r.read_exact(&mut buf[..n]).await?;
    Ok(n)
}

/// Writes `b` as one RFC 4571 frame (false when it cannot be framed).
pub async fn write_frame(w: &mut OwnedWriteHalf, b: &[u8]) -> bool {
    let Ok(n) = u16::try_from(b.len()) else {
        return false;
    };
    let mut out = Vec::with_capacity(b.len() + 2);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(b);
    w.write_all(&out).await.is_ok()
}

/// The local ufrag a first frame names, when it is a STUN Binding request.
pub fn ufrag_of(frame: &[u8]) -> Option<String> {
    let m = StunMessage::parse(frame).ok()?;
    if !m.is_binding_request() {
        return None;
    }
    m.split_username().map(|(local, _)| local.to_string())
}

impl IceTcp {
    /// Binds `bind` and starts accepting; `advertise` is what browsers are told.
    pub async fn start(bind: SocketAddr, advertise: IpAddr) -> std::io::Result<Arc<IceTcp>> {
        let l = TcpListener::bind(bind).await?;
        let port = l.local_addr()?.port();
        let me = Arc::new(IceTcp {
            advertise: SocketAddr::new(advertise, port),
            calls: Mutex::new(HashMap::new()),
            sources: Arc::new(Mutex::new(HashMap::new())),
        });
        info!(addr = %l.local_addr()?, "WebRTC ICE-TCP listening");
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            loop {
                let Ok((s, peer)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Some(me) = weak.upgrade() else { return };
                let Some(slot) = me.admit(peer.ip()) else {
                    debug!(%peer, "ICE-TCP: over the connection limits, closed");
                    continue;
                };
                tokio::spawn(async move { me.first(s, peer, slot).await });
            }
        });
        Ok(me)
    }

    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut s = lock(&self.sources);
        let total: usize = s.values().sum();
        let n = s.entry(ip).or_insert(0);
        if *n >= PER_SOURCE || total >= MAX_CONNECTIONS {
            return None;
        }
        *n += 1;
        Some(Slot {
            sources: self.sources.clone(),
            ip,
        })
    }

    /// Reads the first frame and hands the connection to its call.
    async fn first(&self, mut s: TcpStream, peer: SocketAddr, slot: Slot) {
        let mut buf = [0u8; MAX_FRAME];
        let n = match tokio::time::timeout(FIRST_FRAME, read_frame(&mut s, &mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "ICE-TCP: bad first frame, closed");
                return;
            }
            Err(_) => return,
        };
        let Some(ufrag) = ufrag_of(&buf[..n]) else {
            debug!(%peer, "ICE-TCP: first frame is no STUN Binding request, closed");
            return;
        };
        let tx = lock(&self.calls).get(&ufrag).cloned();
        let Some(tx) = tx else {
            debug!(%peer, "ICE-TCP: no call for this ufrag, closed");
            return;
        };
        let _ = tx.try_send(Conn {
            peer,
            first: buf[..n].to_vec(),
            stream: s,
            slot,
        });
    }

    /// Routes connections naming `ufrag` to the returned queue until the
    /// guard is dropped.
    pub fn register(self: &Arc<Self>, ufrag: String) -> (mpsc::Receiver<Conn>, Route) {
        let (tx, rx) = mpsc::channel(PER_SOURCE);
        lock(&self.calls).insert(ufrag.clone(), tx);
        (
            rx,
            Route {
                tcp: self.clone(),
                ufrag,
            },
        )
    }

    /// ICE-TCP connections held now (all sources).
    pub fn connections(&self) -> usize {
        lock(&self.sources).values().sum()
    }

    /// Calls routed now (tests, metrics).
    pub fn routes(&self) -> usize {
        lock(&self.calls).len()
    }
}

/// A call's entry in the routing table; removed on drop.
pub struct Route {
    tcp: Arc<IceTcp>,
    ufrag: String,
}

impl Drop for Route {
    fn drop(&mut self) {
        lock(&self.tcp.calls).remove(&self.ufrag);
    }
}

/// Reads frames of one connection into `tx` (with the peer) until it
/// closes, sends bad framing or stays idle; then closes it.
pub async fn pump(
    mut r: OwnedReadHalf,
    peer: SocketAddr,
    tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    _slot: Slot,
) {
    let mut buf = [0u8; MAX_FRAME];
    loop {
        match tokio::time::timeout(IDLE, read_frame(&mut r, &mut buf)).await {
            Ok(Ok(n)) => {
                if tx.send((peer, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "ICE-TCP connection closed");
                return;
            }
            Err(_) => {
                debug!(%peer, "ICE-TCP connection idle, closed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_bounded() {
        let mut buf = [0u8; MAX_FRAME];
        let mut big: &[u8] = &[0x20, 0x00, 1, 2, 3];
        assert!(matches!(
            read_frame(&mut big, &mut buf).await,
            Err(FrameError::TooBig(8192))
        ));
        let mut empty: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut empty, &mut buf).await,
            Err(FrameError::Empty)
        ));
        let mut short: &[u8] = &[0, 4, 1, 2];
        assert!(matches!(
            read_frame(&mut short, &mut buf).await,
            Err(FrameError::Io(_))
        ));
        let mut ok: &[u8] = &[0, 2, 7, 8];
        assert_eq!(read_frame(&mut ok, &mut buf).await.ok(), Some(2));
        assert_eq!(&buf[..2], &[7, 8]);
    }

    #[test]
    fn only_a_binding_request_names_a_call() {
        assert_eq!(ufrag_of(b"\x16\xfe\xfd garbage"), None);
        assert_eq!(ufrag_of(&[]), None);
    }

    /// Bad framing, a first frame that is no STUN request and a request
    /// for no call each close that connection; the port keeps serving.
    #[tokio::test]
    async fn bad_first_frames_close_that_connection_only() {
        let t = IceTcp::start("127.0.0.1:0".parse().unwrap(), [127, 0, 0, 1].into())
            .await
            .unwrap();
        let (_rx, _route) = t.register("live".into());
        assert_eq!(t.routes(), 1);
        for bad in [
            vec![0xff, 0xff, 1, 2],
            vec![0, 0],
            vec![0, 3, 0x16, 0xfe, 0xfd],
        ] {
            let mut s = TcpStream::connect(t.advertise).await.unwrap();
            s.write_all(&bad).await.unwrap();
            let mut b = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
            assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{bad:?} closed: {n:?}");
        }
        assert_eq!(t.routes(), 1, "the call's route stays");
        drop(_route);
        assert_eq!(t.routes(), 0);
    }

    #[tokio::test]
    async fn sources_are_bounded() {
        let t = IceTcp::start("127.0.0.1:0".parse().unwrap(), [127, 0, 0, 1].into())
            .await
            .unwrap();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let slots: Vec<_> = (0..PER_SOURCE).filter_map(|_| t.admit(ip)).collect();
        assert_eq!(slots.len(), PER_SOURCE);
        assert!(t.admit(ip).is_none());
        let other = t.admit([10, 0, 0, 2].into());
        assert!(other.is_some());
        assert_eq!(t.connections(), PER_SOURCE + 1);
        drop(slots);
        drop(other);
        assert_eq!(t.connections(), 0);
        assert!(t.admit(ip).is_some());
    }
}
