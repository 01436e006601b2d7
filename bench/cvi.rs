//! Benchmark (not a test): concurrent CVI gateway calls with G.711 media on
//! both legs, through the real `fedge` binary.
//!
//! Each call is set up the way a room system's would be: an INVITE over UDP
//! to `<id>@<cvi domain>` (direct dial) with a PCMA offer naming the room's
//! endpoint; the gateway calls the connector (a UAS over UDP in this
//! process, standing in for the Teams side), which answers with SDP naming
//! the meeting's endpoint; the gateway answers the room and both ACK. The
//! relay addresses come from the gateway's SDP on each leg. Then the RTP
//! generator plays both directions of every call (50 packets/s each way,
//! 172-byte packets) and reports, over a fixed window: packets/s, loss,
//! latency, and fedge's own CPU (from /proc). The headline is the largest
//! count held with under 0.1 % loss.
//!
//! Run: `cargo bench --bench cvi -- [--calls 50,100,200,400,600] [--secs 10]
//!       [--threads N (fedge's runtime)]`

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedge::sip::framing::{DatagramItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::message::SipMessage;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;

use fedge_testkit::bench::*;
use fedge_testkit::peers::free_port;
use fedge_testkit::rtpgen::*;
use fedge_testkit::{Pki, conference_id, fedge_ok};

struct Args {
    calls: Vec<usize>,
    secs: u64,
    threads: usize,
}

fn args() -> Args {
    let f = flags();
    Args {
        calls: f
            .get("calls")
            .map_or(vec![50, 100, 200, 400, 600], |v| numbers(v)),
        secs: f.get("secs").and_then(|v| v.parse().ok()).unwrap_or(10),
        threads: f.get("threads").and_then(|v| v.parse().ok()).unwrap_or(1),
    }
}

fn parse(data: &[u8]) -> Option<SipMessage> {
    match parse_datagram(Bytes::copy_from_slice(data), &Limits::default()) {
        DatagramItem::Message(m) => Some(m),
        _ => None,
    }
}

/// The user part of a From header value (`"Room" <sip:room7@x>;tag=..`).
fn from_user(m: &SipMessage) -> String {
    let v = m.first(HeaderName::From).unwrap_or("");
    v.split("sip:")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .unwrap_or("")
        .to_string()
}

/// The connector: answers each INVITE with SDP naming the meeting endpoint
/// of the room that placed it (by From user), and records the relay
/// address the INVITE's SDP names.
fn connector(
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
            let Some(m) = parse(&buf[..n]) else { continue };
            let Some(method) = m.method().map(|x| x.as_str().to_string()) else {
                continue;
            };
            if method == "ACK" {
                continue;
            }
            let mut r = ResponseBuilder::new(&m, 200).to_tag("meeting");
            if method == "INVITE" {
                let room = from_user(&m);
                relay_b
                    .lock()
                    .unwrap()
                    .insert(room.clone(), relay_addr(m.body()));
                let port = b_ports.lock().unwrap().get(&room).copied().unwrap_or(9);
                r = r
                    .header("Contact", format!("<sip:meeting@{addr}>"))
                    .body("application/sdp", Bytes::from(offer_sdp(port, 2)));
            }
            let _ = sock.send_to(&r.build(), from);
        }
    });
    addr
}

/// Places `n` direct-dial calls to meeting `id`, one at a time.
fn room_calls(
    gateway: SocketAddr,
    id: &str,
    n: usize,
    b_ports: &Arc<Mutex<HashMap<String, u16>>>,
    relay_b: &Arc<Mutex<HashMap<String, SocketAddr>>>,
) -> Vec<Call> {
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = sip.local_addr().unwrap();
    let mut calls = Vec::with_capacity(n);
    let mut buf = vec![0u8; 65535];
    for i in 0..n {
        let (a, b) = (endpoint(), endpoint());
        let room = format!("room{i}");
        b_ports
            .lock()
            .unwrap()
            .insert(room.clone(), b.local_addr().unwrap().port());
        let call_id = format!("bench-{i}@rooms.bench");
        let body = offer_sdp(a.local_addr().unwrap().port(), 1);
        let invite = format!(
            "INVITE sip:{id}@cvi.fedge.test SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-r{i};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{room}@rooms.bench>;tag=r{i}\r\nTo: <sip:{id}@cvi.fedge.test>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:{room}@{me}>\r\nUser-Agent: bench room\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        sip.send_to(invite.as_bytes(), gateway).unwrap();
        let t0 = Instant::now();
        let ok = loop {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "call {i}: no answer from the gateway"
            );
            let Ok((len, _)) = sip.recv_from(&mut buf) else {
                continue;
            };
            let Some(m) = parse(&buf[..len]) else {
                continue;
            };
            match m.status() {
                Some(200) if m.call_id() == Some(call_id.as_str()) => break m,
                Some(s) if s >= 300 => panic!(
                    "call {i}: the gateway answered {s}: {}",
                    String::from_utf8_lossy(&buf[..len])
                ),
                _ => {}
            }
        };
        let to = ok.first(HeaderName::To).unwrap_or("");
        let ack = format!(
            "ACK sip:gateway@{gateway} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ra{i};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{room}@rooms.bench>;tag=r{i}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        sip.send_to(ack.as_bytes(), gateway).unwrap();
        let to_relay_from_b = relay_b
            .lock()
            .unwrap()
            .get(&room)
            .copied()
            .expect("the connector saw the INVITE");
        calls.push(Call {
            a,
            b,
            to_relay_from_a: relay_addr(ok.body()),
            to_relay_from_b,
        });
    }
    calls
}

fn main() {
    let a = args();
    let max = a.calls.iter().copied().max().unwrap_or(0);
    let p = Pki::new();
    let stop = Arc::new(AtomicBool::new(false));
    let b_ports = Arc::new(Mutex::new(HashMap::new()));
    let relay_b = Arc::new(Mutex::new(HashMap::new()));
    let conn = connector(stop.clone(), b_ports.clone(), relay_b.clone());
    let cvi_port = free_port(true);
    // Every call comes from one socket that does not answer OPTIONS: the
    // source's share is the node's, and the UDP probe is off (it would add
    // one round trip to the first call only).
    let extra = format!(
        "[media]\ntimeout = \"600s\"\n\
         [cvi]\nenabled = true\nlisten = \"127.0.0.2:{cvi_port}\"\n\
         connector = \"sip:{{id}}@connector.bench;transport=udp\"\nconnector_address = \"{conn}\"\n\
         media_address = \"127.0.0.2\"\nconnector_media_address = \"127.0.0.2\"\nmax_calls = {}\n\
         max_calls_per_source = {}\nudp_probe = false\n",
        max + 10,
        max + 10
    );
    let relay = start_fedge(&p, conn, a.threads, &extra);
    let cfg = p.path().join("fedge.toml");
    fedge_ok(
        &cfg,
        &[
            "cvi",
            "enrol",
            "--org",
            "Bench",
            "--ods",
            "X00",
            "--teams-enabled",
            "--email",
            "bench@nhs.net",
        ],
    );
    let invite = fedge_ok(
        &cfg,
        &["cvi", "meeting", "create", "--organiser", "bench@nhs.net"],
    );
    let id = conference_id(&invite);
    let gateway = SocketAddr::from(([127, 0, 0, 2], cvi_port));
    let t0 = Instant::now();
    let calls = room_calls(gateway, &id, max, &b_ports, &relay_b);
    let setup = t0.elapsed();
    println!(
        "{max} CVI gateway calls set up (direct dial, room over UDP, connector over UDP) in {:.1} s; \
         G.711 PCMA both legs, 50 packets/s each way per leg ({PACKET}-byte RTP); window {} s after 1 s warm-up; \
         fedge runtime threads = {}; load generator on the same 2 cores",
        setup.as_secs_f64(),
        a.secs,
        a.threads
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
    let mut held = 0;
    for &n in &a.calls {
        let o = play(&calls[..n], a.secs, &relay.pids());
        report("fedge-cvi", n, &o);
        let loss = o.sent.saturating_sub(o.received) as f64 / o.sent.max(1) as f64;
        if loss < 0.001 {
            held = held.max(n);
        }
    }
    println!("largest count held with under 0.1 % loss: {held} calls");
    stop.store(true, Ordering::Relaxed);
}
