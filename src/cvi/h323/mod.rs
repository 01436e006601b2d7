//! H.323 room systems into the CVI gateway. Each H.323 call (H.225.0 call
//! signalling over TCP, fast start or slow start, H.245 tunnelled or on a
//! separate TCP channel) is interworked to SIP inside the process: the call task turns
//! the room's Setup into an INVITE and hands it to the gateway (the SIP
//! `Handler`) on an in-process connection whose source is the room's real
//! TCP address, so reception, direct dial, the test call, capacity, drain,
//! trust and the relay's media anchoring are the gateway's, unchanged.
//! RAS (UDP) answers LRQ for aliases this node serves and refuses GRQ.
//!
//! This file owns the listeners, their bounds (connections in all and per
//! source) and the counters. `call` is one call, `h245` its control
//! channel, `sip` the SIP half of the interworking, `ras` the UDP side.
//! It never decides whether a meeting exists or may be joined (the
//! gateway does), never relays media (the room sends it to the relay),
//! and never panics on what a room sends.

mod bfcp;
mod call;
mod h245;
mod ras;
pub mod sip;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::gateway::Gateway;
use crate::sip::log_limit;
use crate::sip::transport::ConnectionTable;

/// The log budget kind of the lines H.323 peers can cause.
pub(super) const H323_LOG: &str = "CVI H.323";

/// Settings, from `[cvi]`.
#[derive(Debug, Clone)]
pub struct H323Config {
    /// The CVI domain aliases are dialled at.
    pub domain: String,
    pub reception: String,
    pub test_call: String,
    pub tenant_key: Option<String>,
    /// Our call signalling address (as bound: port 0 resolved).
    pub listen: SocketAddr,
    /// Our RAS address (as bound).
    pub ras: SocketAddr,
    pub h245_port_min: u16,
    pub h245_port_max: u16,
    /// A connection must send its Setup within this.
    pub setup_timeout: Duration,
    /// The largest TPKT frame taken.
    pub max_frame: usize,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// The vendor and product we announce.
    pub vendor: String,
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Setups taken and presented to the gateway.
    pub calls: AtomicU64,
    /// Calls that reached Connect.
    pub connected: AtomicU64,
    /// Calls refused (Release Complete before Connect).
    pub refused: AtomicU64,
    /// Connections closed for malformed input (bad TPKT, Q.931 or PER).
    pub malformed: AtomicU64,
    /// Connections refused by the bounds (in all, per source).
    pub refused_connections: AtomicU64,
    /// RAS messages: LRQ confirmed, LRQ rejected, GRQ rejected, others
    /// ignored.
    pub ras_lcf: AtomicU64,
    pub ras_lrj: AtomicU64,
    pub ras_grj: AtomicU64,
    pub ras_ignored: AtomicU64,
}

/// The H.323 front end of one gateway.
pub struct H323 {
    cfg: H323Config,
    gateway: Arc<Gateway>,
    table: Arc<ConnectionTable>,
    pub stats: Arc<Stats>,
    /// Open call signalling connections per source address.
    per_source: Mutex<HashMap<IpAddr, usize>>,
    seq: AtomicU64,
}

impl std::fmt::Debug for H323 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H323")
            .field("listen", &self.cfg.listen)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Gives a connection's place back when dropped.
struct Slot {
    h: Arc<H323>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = lock(&self.h.per_source);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl H323 {
    pub fn new(cfg: H323Config, gateway: Arc<Gateway>, table: Arc<ConnectionTable>) -> Arc<H323> {
        let stats = Arc::new(Stats::default());
        let _ = gateway.h323_stats.set(stats.clone());
        Arc::new(H323 {
            cfg,
            gateway,
            table,
            stats,
            per_source: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(1),
        })
    }

    pub fn config(&self) -> &H323Config {
        &self.cfg
    }

    /// A unique number for Call-IDs and tags.
    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes a connection's place, or says no (the bounds).
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut m = lock(&self.per_source);
        let total: usize = m.values().sum();
        let mine = m.get(&ip).copied().unwrap_or(0);
        if total >= self.cfg.max_connections || mine >= self.cfg.max_connections_per_source {
            return None;
        }
        *m.entry(ip).or_insert(0) += 1;
        Some(Slot {
            h: self.clone(),
            ip,
        })
    }

    /// Accepts call signalling connections until `shutdown`.
    pub async fn run_tcp(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        info!(role = "cvi_h323", transport = "tcp", addr = %self.cfg.listen, "listening");
        loop {
            let (stream, remote) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(_) => {
                        // Out of descriptors and the like: wait, go on.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(slot) = self.admit(remote.ip()) else {
                self.stats
                    .refused_connections
                    .fetch_add(1, Ordering::Relaxed);
                if log_limit::allow(remote.ip(), H323_LOG) {
                    info!(%remote, "H.323 connection refused: too many connections");
                }
                continue;
            };
            let me = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let _slot = slot;
                call::serve(me, stream, remote, stop).await;
            });
        }
    }

    /// Answers RAS until `shutdown`.
    pub async fn run_ras(self: Arc<Self>, sock: UdpSocket, shutdown: CancellationToken) {
        info!(role = "cvi_h323", transport = "ras", addr = %self.cfg.ras, "listening");
        ras::run(self, sock, shutdown).await;
    }
}
