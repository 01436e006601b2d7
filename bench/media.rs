//! Benchmark (not a test): N concurrent G.711-like calls, 50 packets/s each
//! way (172-byte RTP), relayed by fedge's media relay and, in the same run,
//! by rtpengine's userspace daemon (Debian's rtpengine-daemon, driven over
//! its ng protocol, kernel forwarding off).
//!
//! fedge's calls are set up the way a partner's would be: an INVITE with
//! SDP over mutual TLS, answered by a home pool (UDP, in this process) with
//! SDP; the relay ports are read from the rewritten SDP on each side.
//! rtpengine's are set up with ng `offer` and `answer`. Then the generator
//! plays both directions of every call and measures, over a fixed window:
//! packets/s relayed, loss, p50/p99 latency through the relay (send to
//! receive on loopback, generator included), and the relay's own CPU (from
//! /proc), as % of one core, per 10,000 packets/s, and per packet.
//!
//! Run: `cargo bench --bench media -- [--calls 100,200,400,600] [--secs 10]
//!       [--target both|fedge|rtpengine] [--threads N (fedge's runtime)]`

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fedge::media::sdp;
use fedge::sip::body::leaves;
use fedge::sip::framing::{DatagramItem, StreamDecoder, StreamItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge::sip::transport::tls::{TlsFiles, federation_client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

#[path = "common.rs"]
mod common;

use common::*;

const PACKET: usize = 172;
const PTIME: Duration = Duration::from_millis(20);

struct Args {
    calls: Vec<usize>,
    secs: u64,
    target: String,
    threads: usize,
}

fn args() -> Args {
    let mut a = Args {
        calls: vec![100, 200, 400, 600],
        secs: 10,
        target: "both".into(),
        threads: 1,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--calls" => {
                a.calls = next
                    .split(',')
                    .filter_map(|c| c.trim().parse().ok())
                    .collect()
            }
            "--secs" => a.secs = next.parse().unwrap_or(a.secs),
            "--target" => a.target = next,
            "--threads" => a.threads = next.parse().unwrap_or(1),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// One call's two endpoints and where each sends.
struct Call {
    a: Arc<UdpSocket>,
    b: Arc<UdpSocket>,
    to_relay_from_a: SocketAddr,
    to_relay_from_b: SocketAddr,
}

fn endpoint() -> Arc<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    Arc::new(s)
}

fn offer_sdp(port: u16, version: u32) -> String {
    format!(
        "v=0\r\no=- {version} {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    )
}

fn relay_addr(sdp_text: &[u8]) -> SocketAddr {
    let d = sdp::describe(sdp_text).expect("the relay's SDP parses");
    let s = &d.streams[0];
    SocketAddr::new(s.address.expect("an address"), s.port)
}

// ---------------------------------------------------------------- fedge

/// The home pool: answers INVITEs with an SDP naming that call's B
/// endpoint, and records the relay address the INVITE's SDP names.
fn home_pool(
    stop: Arc<AtomicBool>,
    b_ports: Arc<Mutex<HashMap<String, u16>>>,
    relay_b: Arc<Mutex<HashMap<String, SocketAddr>>>,
) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let DatagramItem::Message(m) =
                parse_datagram(Bytes::copy_from_slice(&buf[..n]), &Limits::default())
            else {
                continue;
            };
            if !m.is_request() || m.method().is_some_and(|x| x.as_str() == "ACK") {
                continue;
            }
            let call = m.call_id().unwrap_or("").to_string();
            let mut r = ResponseBuilder::new(&m, 200).to_tag("home");
            if m.method().is_some_and(|x| x.as_str() == "INVITE") {
                let parts = leaves(m.first(HeaderName::ContentType), None, m.body());
                if let Some(p) = parts.first() {
                    relay_b
                        .lock()
                        .unwrap()
                        .insert(call.clone(), relay_addr(p.body));
                }
                for rr in m.values(HeaderName::RecordRoute) {
                    r = r.header("Record-Route", rr);
                }
                let port = b_ports.lock().unwrap().get(&call).copied().unwrap_or(9);
                r = r
                    .header("Contact", "<sip:bob@127.0.0.1>")
                    .body("application/sdp", Bytes::from(offer_sdp(port, 2)));
            }
            let _ = sock.send_to(&r.build(), from);
        }
    });
    addr
}

async fn fedge_calls(
    relay: &Relay,
    p: &Pki,
    n: usize,
    b_ports: &Arc<Mutex<HashMap<String, u16>>>,
    relay_b: &Arc<Mutex<HashMap<String, SocketAddr>>>,
) -> Vec<Call> {
    let cfg = federation_client_config(&TlsFiles {
        cert: p.partner.0.clone(),
        key: p.partner.1.clone(),
        trust: p.ca.clone(),
    })
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(relay.fed).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(
            rustls::pki_types::ServerName::try_from("sip.fedge.test").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut calls = Vec::with_capacity(n);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut dec = StreamDecoder::new(Limits::default());
    for i in 0..n {
        let (a, b) = (endpoint(), endpoint());
        let call_id = format!("bench-{i}@partner.test");
        b_ports
            .lock()
            .unwrap()
            .insert(call_id.clone(), b.local_addr().unwrap().port());
        let body = offer_sdp(a.local_addr().unwrap().port(), 1);
        let invite = format!(
            "INVITE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS sip.partner.test:5061;branch=z9hG4bK-m{i}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@partner.test>;tag=a{i}\r\nTo: <sip:bob@fedge.test>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:alice@127.0.0.1;transport=tls>\r\nUser-Agent: UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(invite.as_bytes()).await.unwrap();
        // Wait for this call's 200 (its SDP names the relay for A).
        let to_relay_from_a = loop {
            let mut found = None;
            while let Ok(Some(item)) = dec.decode(&mut buf) {
                if let StreamItem::Message(m) = item
                    && m.status() == Some(200)
                    && m.call_id() == Some(call_id.as_str())
                {
                    found = Some(relay_addr(m.body()));
                }
            }
            if let Some(f) = found {
                break f;
            }
            let r = tokio::time::timeout(Duration::from_secs(5), tls.read_buf(&mut buf)).await;
            assert!(
                matches!(r, Ok(Ok(n)) if n > 0),
                "call {i}: no 200 from fedge"
            );
        };
        let to_relay_from_b = relay_b
            .lock()
            .unwrap()
            .get(&call_id)
            .copied()
            .expect("the pool saw the INVITE");
        calls.push(Call {
            a,
            b,
            to_relay_from_a,
            to_relay_from_b,
        });
    }
    calls
}

// ------------------------------------------------------------ rtpengine

fn bencode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"d".to_vec();
    for (k, v) in pairs {
        write!(out, "{}:{}{}:{}", k.len(), k, v.len(), v).unwrap();
    }
    out.push(b'e');
    out
}

/// The value of `key` in an ng reply (a bencoded dictionary of strings).
fn bdecode_str(reply: &[u8], key: &str) -> Option<String> {
    let needle = format!("{}:{}", key.len(), key);
    let at = reply
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?
        + needle.len();
    let colon = reply[at..].iter().position(|&b| b == b':')? + at;
    let len: usize = std::str::from_utf8(&reply[at..colon]).ok()?.parse().ok()?;
    String::from_utf8(reply.get(colon + 1..colon + 1 + len)?.to_vec()).ok()
}

fn ng(sock: &UdpSocket, to: SocketAddr, cookie: usize, pairs: &[(&str, &str)]) -> String {
    let mut msg = format!("c{cookie} ").into_bytes();
    msg.extend_from_slice(&bencode(pairs));
    sock.send_to(&msg, to).unwrap();
    let mut b = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut b).expect("rtpengine answers ng");
    let reply = &b[..n];
    bdecode_str(reply, "sdp")
        .unwrap_or_else(|| panic!("ng reply without sdp: {}", String::from_utf8_lossy(reply)))
}

fn start_rtpengine(dir: &std::path::Path) -> (Relay, SocketAddr) {
    use std::os::unix::process::CommandExt;
    let ng_port = free_port();
    let child = Command::new("rtpengine")
        .args([
            "--foreground",
            "--log-stderr",
            "--log-level=3",
            "--table=-1",
            "--interface=127.0.0.1",
        ])
        .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
        .args(["--port-min=40000", "--port-max=49999"])
        .arg(format!("--pidfile={}", dir.join("rtpengine.pid").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("rtpengine is installed (apt-get install rtpengine-daemon)");
    std::thread::sleep(Duration::from_millis(800));
    let ng = SocketAddr::from(([127, 0, 0, 1], ng_port));
    (
        Relay {
            child,
            fed: ng,
            group: true,
            admin: None,
        },
        ng,
    )
}

fn rtpengine_calls(ng_addr: SocketAddr, n: usize) -> Vec<Call> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (0..n)
        .map(|i| {
            let (a, b) = (endpoint(), endpoint());
            let call_id = format!("bench-{i}");
            let offer = offer_sdp(a.local_addr().unwrap().port(), 1);
            let to_b = ng(
                &sock,
                ng_addr,
                2 * i,
                &[
                    ("command", "offer"),
                    ("call-id", &call_id),
                    ("from-tag", "a"),
                    ("sdp", &offer),
                ],
            );
            let answer = offer_sdp(b.local_addr().unwrap().port(), 2);
            let to_a = ng(
                &sock,
                ng_addr,
                2 * i + 1,
                &[
                    ("command", "answer"),
                    ("call-id", &call_id),
                    ("from-tag", "a"),
                    ("to-tag", "b"),
                    ("sdp", &answer),
                ],
            );
            Call {
                a,
                b,
                to_relay_from_a: relay_addr(to_a.as_bytes()),
                to_relay_from_b: relay_addr(to_b.as_bytes()),
            }
        })
        .collect()
}

// ------------------------------------------------------------ generator

struct Outcome {
    sent: u64,
    received: u64,
    lat_us: Vec<u64>,
    cpu: f64,
    secs: f64,
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Plays both directions of `calls` for `secs` (after a 1 s warm-up that
/// lets the relay latch), measuring only packets sent inside the window.
fn play(calls: &[Call], secs: u64, pids: &[u32]) -> Outcome {
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

fn report(name: &str, calls: usize, o: &Outcome) {
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

fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let max = a.calls.iter().copied().max().unwrap_or(0);
    println!(
        "{max} calls at most, 50 packets/s each way ({PACKET}-byte RTP); window {} s after 1 s warm-up; load generator on the same 2 cores",
        a.secs
    );
    println!(
        "{:>10} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>12} {:>10}",
        "relay",
        "calls",
        "pkts/s",
        "lost",
        "loss",
        "p50 ms",
        "p99 ms",
        "CPU",
        "CPU/10kpps",
        "us/packet"
    );
    if a.target == "both" || a.target == "fedge" {
        let p = pki(dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let b_ports = Arc::new(Mutex::new(HashMap::new()));
        let relay_b = Arc::new(Mutex::new(HashMap::new()));
        let home = home_pool(stop.clone(), b_ports.clone(), relay_b.clone());
        let relay = start_fedge(
            &p,
            home,
            a.threads,
            "[media]\nport_min = 30000\nport_max = 39999\nmax_sessions = 20000\ntimeout = \"600s\"\n",
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let calls = rt.block_on(fedge_calls(&relay, &p, max, &b_ports, &relay_b));
        for &n in &a.calls {
            let o = play(&calls[..n], a.secs, &relay.pids());
            report("fedge", n, &o);
        }
        stop.store(true, Ordering::Relaxed);
    }
    if a.target == "both" || a.target == "rtpengine" {
        let (relay, ng_addr) = start_rtpengine(dir.path());
        let calls = rtpengine_calls(ng_addr, max);
        for &n in &a.calls {
            let o = play(&calls[..n], a.secs, &relay.pids());
            report("rtpengine", n, &o);
        }
    }
}
