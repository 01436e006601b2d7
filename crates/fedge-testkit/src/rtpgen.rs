//! The RTP load generator shared by the media benchmarks: calls as pairs
//! of UDP endpoints, a player sending G.711-sized packets both ways at
//! 50 packets/s per direction, and the report line (throughput, loss,
//! latency, the relay's CPU per packet). It never sets calls up: each
//! benchmark does, the way its relay expects.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fedge::media::sdp;

use crate::bench::{cpu_seconds, pct};

pub const PACKET: usize = 172;
pub const PTIME: Duration = Duration::from_millis(20);

/// One call's two endpoints and where each sends.
pub struct Call {
    pub a: Arc<UdpSocket>,
    pub b: Arc<UdpSocket>,
    pub to_relay_from_a: SocketAddr,
    pub to_relay_from_b: SocketAddr,
}

pub fn endpoint() -> Arc<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    Arc::new(s)
}

pub fn offer_sdp(port: u16, version: u32) -> String {
    format!(
        "v=0\r\no=- {version} {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    )
}

pub fn relay_addr(sdp_text: &[u8]) -> SocketAddr {
    let d = sdp::describe(sdp_text).expect("the relay's SDP parses");
    let s = &d.streams[0];
    SocketAddr::new(s.address.expect("an address"), s.port)
}

pub struct Outcome {
    pub sent: u64,
    pub received: u64,
    pub lat_us: Vec<u64>,
    pub cpu: f64,
    pub secs: f64,
}

pub fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Plays both directions of `calls` for `secs` (after a 1 s warm-up that
/// lets the relay latch), measuring only packets sent inside the window.
pub fn play(calls: &[Call], secs: u64, pids: &[u32]) -> Outcome {
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let window = Arc::new([AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)]); // [start, end] ns
    let received = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    // Receivers: one thread polling every endpoint without blocking.
    let sockets: Vec<Arc<UdpSocket>> = calls
        .iter()
        .flat_map(|c| [c.a.clone(), c.b.clone()])
        .collect();
    for s in &sockets {
        s.set_nonblocking(true).unwrap();
    }
    let rx = {
        let (stop, window, received, lat) =
            (stop.clone(), window.clone(), received.clone(), lat.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for s in sockets {
                    let s = tokio::net::UdpSocket::from_std(s.try_clone().unwrap()).unwrap();
                    let (window, received, lat) = (window.clone(), received.clone(), lat.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut b = vec![0u8; 2048];
                        let mut mine = Vec::new();
                        while let Ok(Ok((n, _))) =
                            tokio::time::timeout(Duration::from_millis(1500), s.recv_from(&mut b))
                                .await
                        {
                            if n < 20 {
                                continue;
                            }
                            let sent = u64::from_be_bytes(b[12..20].try_into().unwrap_or([0; 8]));
                            let (lo, hi) = (
                                window[0].load(Ordering::Relaxed),
                                window[1].load(Ordering::Relaxed),
                            );
                            if sent >= lo && sent < hi {
                                received.fetch_add(1, Ordering::Relaxed);
                                mine.push((now_ns(epoch).saturating_sub(sent)) / 1000);
                            }
                        }
                        lat.lock().unwrap().extend(mine);
                    }));
                }
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
    };
    // Sender: every 20 ms each endpoint sends one packet, spread over the
    // period in 1 ms slices so the relay sees a steady stream.
    let total = Duration::from_secs(secs + 1);
    let mut seq: u16 = 0;
    let mut sent = 0u64;
    let mut cpu0 = None;
    let slices = 20usize;
    let per_slice = calls.len().div_ceil(slices);
    let start = Instant::now();
    let mut tick = start;
    let mut pkt = vec![0u8; PACKET];
    pkt[0] = 0x80;
    pkt[1] = 8;
    while start.elapsed() < total {
        if cpu0.is_none() && start.elapsed() >= Duration::from_secs(1) {
            window[0].store(now_ns(epoch), Ordering::Relaxed);
            cpu0 = Some((cpu_seconds(pids), Instant::now()));
        }
        seq = seq.wrapping_add(1);
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        for s in 0..slices {
            let slot = tick + PTIME * s as u32 / slices as u32;
            if let Some(d) = slot.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            for c in calls.iter().skip(s * per_slice).take(per_slice) {
                for (sock, to) in [(&c.a, c.to_relay_from_a), (&c.b, c.to_relay_from_b)] {
                    let ts = now_ns(epoch);
                    pkt[12..20].copy_from_slice(&ts.to_be_bytes());
                    if sock.send_to(&pkt, to).is_ok() && cpu0.is_some() {
                        sent += 1;
                    }
                }
            }
        }
        tick += PTIME;
    }
    let end = now_ns(epoch);
    window[1].store(end, Ordering::Relaxed);
    let (c0, t0) = cpu0.unwrap_or((cpu_seconds(pids), Instant::now()));
    let cpu = cpu_seconds(pids) - c0;
    let secs_measured = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = rx.join();
    let mut lat_us = std::mem::take(&mut *lat.lock().unwrap());
    lat_us.sort_unstable();
    Outcome {
        sent,
        received: received.load(Ordering::Relaxed),
        lat_us,
        cpu,
        secs: secs_measured,
    }
}

pub fn report(name: &str, calls: usize, o: &Outcome) {
    let pps = o.received as f64 / o.secs;
    let cpu_pct = o.cpu / o.secs * 100.0;
    let loss = o.sent.saturating_sub(o.received);
    println!(
        "{:>10} {:>6} {:>10.0} {:>8} {:>7.3}% {:>8.3} {:>8.3} {:>8.1}% {:>12.1} {:>10.2}",
        name,
        calls,
        pps,
        loss,
        100.0 * loss as f64 / o.sent.max(1) as f64,
        pct(&o.lat_us, 0.50),
        pct(&o.lat_us, 0.99),
        cpu_pct,
        cpu_pct / (pps / 10_000.0),
        o.cpu * 1e6 / o.received.max(1) as f64,
    );
}
