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
//! Each call count is measured in `--rounds` alternating rounds (fedge,
//! rtpengine, fedge, rtpengine, ...), so both relays see the same machine
//! state; the summary gives each relay's medians and the ratio of fedge's
//! CPU per packet to rtpengine's, and what the generator offered against
//! its schedule.
//!
//! Run: `cargo bench --bench media -- [--calls 600,1000] [--rounds 3]
//!       [--secs 10] [--target both|fedge|rtpengine] [--threads N (fedge's
//!       runtime)] [--media-threads N (fedge's [media] threads)]
//!       [--pace-us 1000 (the generator's receiver pause; 0 = none)]
//!       [--io epoll,io_uring,io_uring-noconnect (fedge's [media] io: one
//!       fedge per value, "fedge-epoll", "fedge-uring" and "fedge-unc"
//!       (io_uring with `connect_peers = false`), measured in the same
//!       rounds; without it one "fedge" on the binary's default)]`

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fedge::sip::body::leaves;
use fedge::sip::framing::{DatagramItem, StreamDecoder, StreamItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge::sip::transport::tls::{TlsFiles, client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use fedge_testkit::Pki;
use fedge_testkit::bench::*;
use fedge_testkit::peers::free_port;
use fedge_testkit::rtpgen::*;

struct Args {
    calls: Vec<usize>,
    rounds: usize,
    secs: u64,
    target: String,
    threads: usize,
    media_threads: usize,
    pace: Duration,
    io: Vec<String>,
}

fn args() -> Args {
    let f = flags();
    Args {
        calls: f.get("calls").map_or(vec![600, 1000], |v| numbers(v)),
        rounds: f.get("rounds").and_then(|v| v.parse().ok()).unwrap_or(3),
        secs: f.get("secs").and_then(|v| v.parse().ok()).unwrap_or(10),
        target: f.get("target").cloned().unwrap_or_else(|| "both".into()),
        threads: f.get("threads").and_then(|v| v.parse().ok()).unwrap_or(1),
        media_threads: f
            .get("media-threads")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        pace: Duration::from_micros(
            f.get("pace-us")
                .and_then(|v| v.parse().ok())
                .unwrap_or(RX_PACE.as_micros() as u64),
        ),
        // Empty: one fedge on its binary's default loop, with no `io` key
        // (a build from before `[media] io` runs the bench too).
        io: f.get("io").map_or_else(Vec::new, |v| {
            v.split(',').map(|s| s.trim().to_string()).collect()
        }),
    }
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
    let cfg = client_config(&TlsFiles {
        cert: p.partner.cert.clone(),
        key: p.partner.key.clone(),
        trust: p.ca_file.clone(),
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
    let ng_port = free_port(true);
    let child = Command::new("rtpengine")
        .args([
            "--foreground",
            "--log-stderr",
            "--log-level=3",
            "--table=-1",
            // Calls set up for a later, larger step idle meanwhile.
            "--timeout=3600",
            "--silent-timeout=3600",
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

/// One measured step, for the summary.
struct Step {
    relay: &'static str,
    calls: usize,
    us_per_packet: f64,
    loss_pct: f64,
    p99_ms: f64,
    offered_pct: f64,
}

fn row(relay: &'static str, round: usize, calls: usize, o: &Outcome) -> Step {
    let pps = o.received as f64 / o.secs;
    let cpu_pct = o.cpu / o.secs * 100.0;
    let loss = o.sent.saturating_sub(o.received);
    let step = Step {
        relay,
        calls,
        us_per_packet: o.cpu * 1e6 / o.received.max(1) as f64,
        loss_pct: 100.0 * loss as f64 / o.sent.max(1) as f64,
        p99_ms: pct(&o.lat_us, 0.99),
        offered_pct: 100.0 * o.sent as f64 / o.expected.max(1) as f64,
    };
    println!(
        "{:>10} {:>5} {:>6} {:>9.0} {:>7.1}% {:>7} {:>7.3}% {:>7.3} {:>7.3} {:>7.1}% {:>9.2} {:>7.1}%",
        relay,
        round,
        calls,
        pps,
        step.offered_pct,
        loss,
        step.loss_pct,
        pct(&o.lat_us, 0.50),
        step.p99_ms,
        cpu_pct,
        step.us_per_packet,
        o.gen_cpu / o.secs * 100.0,
    );
    step
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let max = a.calls.iter().copied().max().unwrap_or(0);
    let both = a.target == "both";
    println!(
        "calls {:?}, {} alternating round(s) each, 50 packets/s each way ({PACKET}-byte RTP); window {} s after 1 s warm-up; \
         fedge: [runtime] threads = {}, [media] threads = {}, io {:?}; generator receiver pause {} us; load generator on the same 2 cores",
        a.calls,
        a.rounds,
        a.secs,
        a.threads,
        a.media_threads,
        a.io,
        a.pace.as_micros()
    );
    // Both relays are up, with all their calls set up, before the first
    // round; the one not measured idles.
    let mut fedges = Vec::new();
    let loops = if a.io.is_empty() {
        vec![String::new()]
    } else {
        a.io.clone()
    };
    for (k, io) in loops.iter().enumerate() {
        if !(both || a.target == "fedge") {
            break;
        }
        let name: &'static str = match io.as_str() {
            "" => "fedge",
            "epoll" => "fedge-epoll",
            "io_uring" => "fedge-uring",
            "io_uring-noconnect" => "fedge-unc",
            other => panic!("--io {other}: epoll, io_uring or io_uring-noconnect"),
        };
        let p = Pki::new();
        let stop = Arc::new(AtomicBool::new(false));
        let b_ports = Arc::new(Mutex::new(HashMap::new()));
        let relay_b = Arc::new(Mutex::new(HashMap::new()));
        let home = home_pool(stop.clone(), b_ports.clone(), relay_b.clone());
        // rtpengine takes 40000-49999.
        let port_min = 30000 - 10000 * k;
        // One partner sets up every call: more INVITEs in progress from
        // one source than the default cap (256).
        let relay = start_fedge_with(
            &p,
            home,
            a.threads,
            "max_transactions_per_source = 100000\n",
            &format!(
                "[media]\nport_min = {port_min}\nport_max = {}\nmax_sessions = 20000\nmax_sessions_per_partner = 20000\nmax_pairs_per_partner = 40000\ntimeout = \"600s\"\n{}{}",
                port_min + 9999,
                // Only when asked: a build from before `[media] threads`
                // or `io` (CARGO_BIN_EXE_fedge=...) then runs with the same bench.
                if a.media_threads == 1 {
                    String::new()
                } else {
                    format!("threads = {}\n", a.media_threads)
                },
                match io.as_str() {
                    "" => String::new(),
                    "io_uring-noconnect" => "io = \"io_uring\"\nconnect_peers = false\n".into(),
                    io => format!("io = \"{io}\"\n"),
                }
            ),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let calls = rt.block_on(fedge_calls(&relay, &p, max, &b_ports, &relay_b));
        fedges.push((name, relay, calls, stop, p));
    }
    let rtpengine = (both || a.target == "rtpengine").then(|| {
        let (relay, ng_addr) = start_rtpengine(dir.path());
        let calls = rtpengine_calls(ng_addr, max);
        (relay, calls)
    });
    println!(
        "{:>10} {:>5} {:>6} {:>9} {:>8} {:>7} {:>8} {:>7} {:>7} {:>8} {:>9} {:>8}",
        "relay",
        "round",
        "calls",
        "pkts/s",
        "offered",
        "lost",
        "loss",
        "p50 ms",
        "p99 ms",
        "CPU",
        "us/packet",
        "gen CPU"
    );
    let mut steps = Vec::new();
    for &n in &a.calls {
        for round in 1..=a.rounds {
            for (name, relay, calls, _, _) in &fedges {
                let o = play_paced(&calls[..n], a.secs, &relay.pids(), a.pace);
                steps.push(row(name, round, n, &o));
            }
            if let Some((relay, calls)) = &rtpengine {
                let o = play_paced(&calls[..n], a.secs, &relay.pids(), a.pace);
                steps.push(row("rtpengine", round, n, &o));
            }
        }
    }
    println!();
    println!(
        "{:>10} {:>6} {:>16} {:>12} {:>14} {:>15}",
        "relay", "calls", "median us/pkt", "max loss", "median p99 ms", "min offered"
    );
    for &n in &a.calls {
        let mut med = HashMap::new();
        for relay in [
            "fedge",
            "fedge-epoll",
            "fedge-uring",
            "fedge-unc",
            "rtpengine",
        ] {
            let mine: Vec<&Step> = steps
                .iter()
                .filter(|s| s.relay == relay && s.calls == n)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let m = median(mine.iter().map(|s| s.us_per_packet).collect());
            med.insert(relay, m);
            println!(
                "{:>10} {:>6} {:>16.2} {:>11.3}% {:>14.3} {:>14.1}%",
                relay,
                n,
                m,
                mine.iter().map(|s| s.loss_pct).fold(0.0, f64::max),
                median(mine.iter().map(|s| s.p99_ms).collect()),
                mine.iter().map(|s| s.offered_pct).fold(f64::MAX, f64::min),
            );
        }
        for name in ["fedge", "fedge-epoll", "fedge-uring", "fedge-unc"] {
            if let (Some(f), Some(r)) = (med.get(name), med.get("rtpengine")) {
                println!(
                    "{:>10} {:>6} {name}/rtpengine CPU per packet (medians): {:.2}",
                    "ratio",
                    n,
                    f / r
                );
            }
        }
        for (a, b) in [("fedge-uring", "fedge-epoll"), ("fedge-uring", "fedge-unc")] {
            if let (Some(x), Some(y)) = (med.get(a), med.get(b)) {
                println!(
                    "{:>10} {:>6} {a}/{b} CPU per packet (medians): {:.2}",
                    "ratio",
                    n,
                    x / y
                );
            }
        }
    }
    for (_, _, _, stop, _) in &fedges {
        stop.store(true, Ordering::Relaxed);
    }
}
