//! The RTP load generator shared by the media benchmarks: calls as pairs
//! of UDP endpoints, a player sending G.711-sized packets both ways at
//! 50 packets/s per direction, and the report line (throughput, loss,
//! latency, the relay's CPU per packet). It never sets calls up: each
//! benchmark does, the way its relay expects.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Packets the schedule asked for in the window (50/s per direction
    /// per call): `sent` below it means the generator fell behind.
    pub expected: u64,
    /// The generator's own CPU in the window (this process), seconds.
    pub gen_cpu: f64,
}

pub fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Nanoseconds of the realtime clock: the packets' send stamps, compared
/// with the kernel's receive stamps (`SO_TIMESTAMPNS`, the same clock).
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// How long the receiving thread sleeps between rounds by default. Latency
/// is taken from the kernel's receive stamp, so the pause does not count in
/// it; while the receiver sleeps, a relay's send does not have to wake it
/// (on a network, a relay's send wakes nobody on this host either).
pub const RX_PACE: Duration = Duration::from_millis(1);

/// Plays both directions of `calls` for `secs` (after a 1 s warm-up that
/// lets the relay latch), measuring only packets sent inside the window.
pub fn play(calls: &[Call], secs: u64, pids: &[u32]) -> Outcome {
    play_paced(calls, secs, pids, RX_PACE)
}

/// Packets one receive call takes from one socket at most.
const RX_BATCH: usize = 16;

/// The receiving side: one thread, one epoll set over every endpoint,
/// `recvmmsg` batches, latency from the kernel's receive stamps.
fn receiver(
    sockets: Vec<Arc<UdpSocket>>,
    stop: Arc<AtomicBool>,
    window: Arc<[AtomicU64; 2]>,
    pace: Duration,
) -> (u64, Vec<u64>) {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, setsockopt, sockopt,
    };
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    for (i, s) in sockets.iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        setsockopt(s.as_ref(), sockopt::ReceiveTimestampns, &true).unwrap();
        epoll
            .add(s.as_ref(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .unwrap();
    }
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut bufs: Box<[[u8; 2048]; RX_BATCH]> = Box::new([[0u8; 2048]; RX_BATCH]);
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
        RX_BATCH,
        Some(nix::cmsg_space!(nix::sys::time::TimeSpec)),
    );
    let mut received = 0u64;
    let mut lat = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let n = epoll
            .wait(&mut events, EpollTimeout::from(10u16))
            .unwrap_or(0);
        let (lo, hi) = (
            window[0].load(Ordering::Relaxed),
            window[1].load(Ordering::Relaxed),
        );
        for ev in &events[..n] {
            let s = &sockets[ev.data() as usize];
            let mut slices = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
            let Ok(r) = recvmmsg(
                s.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) else {
                continue;
            };
            let mut got = [(0usize, 0u64); RX_BATCH];
            let mut k = 0;
            for m in r {
                let at = m
                    .cmsgs()
                    .ok()
                    .and_then(|mut c| {
                        c.find_map(|c| match c {
                            ControlMessageOwned::ScmTimestampns(t) => {
                                Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
                            }
                            _ => None,
                        })
                    })
                    .unwrap_or_else(wall_ns);
                got[k] = (m.bytes, at);
                k += 1;
            }
            for (b, &(len, at)) in bufs.iter().zip(&got[..k]) {
                if len < 20 {
                    continue;
                }
                let sent = u64::from_be_bytes(b[12..20].try_into().unwrap_or([0; 8]));
                if sent >= lo && sent < hi {
                    received += 1;
                    lat.push(at.saturating_sub(sent) / 1000);
                }
            }
        }
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    (received, lat)
}

/// As [`play`], the receiving thread sleeping `pace` between rounds (zero:
/// it waits in `epoll_wait` for every packet, so each send may wake it).
pub fn play_paced(calls: &[Call], secs: u64, pids: &[u32], pace: Duration) -> Outcome {
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let window = Arc::new([AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)]); // [start, end] wall ns
    let sockets: Vec<Arc<UdpSocket>> = calls
        .iter()
        .flat_map(|c| [c.a.clone(), c.b.clone()])
        .collect();
    let rx = {
        let (stop, window) = (stop.clone(), window.clone());
        std::thread::spawn(move || receiver(sockets, stop, window, pace))
    };
    let me = [std::process::id()];
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
            window[0].store(wall_ns(), Ordering::Relaxed);
            cpu0 = Some((cpu_seconds(pids), cpu_seconds(&me), Instant::now()));
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
                    pkt[12..20].copy_from_slice(&wall_ns().to_be_bytes());
                    if sock.send_to(&pkt, to).is_ok() && cpu0.is_some() {
                        sent += 1;
                    }
                }
            }
        }
        tick += PTIME;
    }
    window[1].store(wall_ns(), Ordering::Relaxed);
    let (c0, g0, t0) = cpu0.unwrap_or((cpu_seconds(pids), cpu_seconds(&me), Instant::now()));
    let cpu = cpu_seconds(pids) - c0;
    let gen_cpu = cpu_seconds(&me) - g0;
    let secs_measured = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (received, mut lat_us) = rx.join().unwrap_or_default();
    lat_us.sort_unstable();
    let _ = epoch;
    Outcome {
        sent,
        received,
        lat_us,
        cpu,
        secs: secs_measured,
        expected: (calls.len() as f64 * 2.0 * secs_measured / PTIME.as_secs_f64()).round() as u64,
        gen_cpu,
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
