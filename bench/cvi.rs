//! Benchmark (not a test): concurrent CVI gateway calls with HD video and
//! audio on both legs, through the real `fedge` binary, a share of them
//! through the reception with DTMF.
//!
//! Each call is set up the way a room system's would be, over UDP: an
//! INVITE offering audio (PCMA, telephone-event 101) and video (H.264,
//! a second m= line). Most dial `<id>@<cvi domain>` (direct dial); a share
//! (`--reception-share`, 0.2) dial `teams@<cvi domain>`, get the
//! reception's answer (audio only: its prompts are G.711, the video stream
//! is declined with port 0), ACK, and key the 10-digit conference ID as
//! RFC 4733 telephone-events in RTP (each press a start, a continuation and
//! three end packets, 20 ms apart, one timestamp); the gateway then calls
//! the connector and re-INVITEs the room with the meeting's media, which
//! the room answers. The connector (a UAS over UDP in this process,
//! standing in for the Teams side) answers both streams. The relay
//! addresses come from the gateway's SDP on each leg.
//!
//! The media model (crates/fedge-testkit/src/videogen.rs): audio one
//! 172-byte packet per 20 ms; video 720p30 H.264 as a room system sends it
//! to a meeting: 1.5 Mbit/s at 30 frames/s, frames cut into RTP packets of
//! at most 1,200 bytes of payload (a 1,280+ MTU path with SRTP's tag still
//! fits), the marker on a frame's last packet, a key frame every 5 s eight
//! times a predicted frame (a burst of about 40 packets), predicted frames
//! varying by +-25 %: about 160 packets/s per direction. A call is four
//! streams, each sent by the room and by the connector: about 420 packets/s
//! offered to the relay per call, as many relayed. Calls are spread evenly
//! over the audio and frame periods; key frames over the 5 s.
//!
//! For each step the table gives packets/s expected by the schedule,
//! offered and relayed, loss, latency (kernel receive time minus send
//! time), fedge's CPU and CPU per relayed packet, the generator's CPU and
//! its lag behind its schedule. A step is "held" with under 0.1 % loss, a
//! p99 under 20 ms and the generator on schedule; "gen-bound" when the
//! generator (on the same 2 cores) could not keep its schedule: that step
//! measures the generator, not fedge. "2c-proj" is a projection, not a
//! measurement: the calls two whole cores would carry at the step's CPU
//! per relayed packet times the packets a call offers, if fedge had them
//! to itself (no generator, no headroom; a starved fedge batches more and
//! looks cheaper per packet, so trust it from steps that held).
//! "others" is the CPU (% of one core) that processes other than fedge
//! and the generator used in the window: on a shared machine, a step with
//! much of it measures the neighbours in loss and latency (CPU per packet
//! holds up better).
//!
//! Run: `cargo bench --bench cvi -- [--calls 50,100,200,300,400,500]
//!       [--secs 10] [--threads 1,2 (fedge's runtime, one run each)]
//!       [--reception-share 0.2] [--video 1|0] [--kbps 1500] [--fps 30]
//!       [--payload 1200] [--key-every 5] [--key-factor 8] [--workers 16]
//!       [--dtmf rtp|info (SIP INFO, application/dtmf-relay)]
//!       [--rounds N (all steps N times, alternating; verdicts by medians)]
//!       [--gso 1 (the generator sends a frame as one UDP GSO train)]
//!       [--media-threads N (fedge's [media] threads; 1 by default)]`

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedge::media::sdp;
use fedge::sip::framing::{DatagramItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::message::SipMessage;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;

use fedge_testkit::bench::*;
use fedge_testkit::peers::free_port;
use fedge_testkit::videogen::*;
use fedge_testkit::{Pki, conference_id, fedge_ok};

struct Args {
    calls: Vec<usize>,
    secs: u64,
    threads: Vec<usize>,
    reception_share: f64,
    video: bool,
    model: VideoModel,
    workers: usize,
    /// Key presses as SIP INFO (application/dtmf-relay) instead of RTP.
    info: bool,
    /// Rounds of all steps, one after the other; verdicts by medians.
    rounds: usize,
    /// The generator sends a video frame as one UDP GSO train.
    gso: bool,
    /// fedge's `[media] threads` (the threads that relay UDP media).
    media_threads: usize,
}

fn args() -> Args {
    let f = flags();
    let num = |k: &str, d: f64| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(d);
    let d = VideoModel::default();
    Args {
        calls: f
            .get("calls")
            .map_or(vec![50, 100, 200, 300, 400, 500], |v| numbers(v)),
        secs: num("secs", 10.0) as u64,
        threads: f.get("threads").map_or(vec![1], |v| numbers(v)),
        reception_share: num("reception-share", 0.2).clamp(0.0, 1.0),
        video: num("video", 1.0) != 0.0,
        model: VideoModel {
            kbps: num("kbps", d.kbps as f64) as u32,
            fps: num("fps", d.fps as f64) as u32,
            max_payload: num("payload", d.max_payload as f64) as usize,
            key_every: Duration::from_secs_f64(num("key-every", d.key_every.as_secs_f64())),
            key_factor: num("key-factor", d.key_factor),
            jitter: d.jitter,
        },
        workers: (num("workers", 16.0) as usize).max(1),
        info: f.get("dtmf").is_some_and(|v| v == "info"),
        rounds: (num("rounds", 1.0) as usize).max(1),
        gso: num("gso", 0.0) != 0.0,
        media_threads: (num("media-threads", 1.0) as usize).max(1),
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

/// An SDP with PCMA (and telephone-event) audio and, unless `video` is
/// `None`, H.264 video.
fn av_sdp(user: &str, version: u32, audio: u16, video: Option<u16>) -> String {
    let mut s = format!(
        "v=0\r\no={user} 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {audio} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=sendrecv\r\n"
    );
    if let Some(v) = video {
        s.push_str(&format!(
            "m=video {v} RTP/AVP 96\r\nb=AS:2000\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\na=sendrecv\r\n"
        ));
    }
    s
}

/// Each stream's address in an SDP (`None` for a declined one).
fn addrs(sdp_text: &[u8]) -> Vec<Option<SocketAddr>> {
    sdp::describe(sdp_text).map_or_else(
        |_| Vec::new(),
        |d| {
            d.streams
                .iter()
                .map(|s| match (s.port, s.address) {
                    (0, _) | (_, None) => None,
                    (p, Some(a)) => Some(SocketAddr::new(a, p)),
                })
                .collect()
        },
    )
}

/// What the connector stand-in knows per room (by From user): its own
/// ports to answer with, and the relay addresses the gateway's INVITE named.
#[derive(Default)]
struct ConnectorBook {
    ports: Mutex<HashMap<String, (u16, Option<u16>)>>,
    relay: Mutex<HashMap<String, Vec<Option<SocketAddr>>>>,
}

/// The connector: answers each INVITE with SDP naming the meeting's
/// endpoints for the room that placed it (by From user), both streams
/// when the offer carries video.
fn connector(stop: Arc<AtomicBool>, book: Arc<ConnectorBook>) -> SocketAddr {
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
                let relay = addrs(m.body());
                let offered_video = relay.get(1).is_some_and(Option::is_some);
                book.relay.lock().unwrap().insert(room.clone(), relay);
                let (a, v) = book
                    .ports
                    .lock()
                    .unwrap()
                    .get(&room)
                    .copied()
                    .unwrap_or((9, None));
                let v = v.filter(|_| offered_video);
                r = r
                    .header("Contact", format!("<sip:meeting@{addr}>"))
                    .body("application/sdp", Bytes::from(av_sdp("meeting", 1, a, v)));
            }
            let _ = sock.send_to(&r.build(), from);
        }
    });
    addr
}

/// What the room-system workers share.
struct Setup {
    gateway: SocketAddr,
    id: String,
    video: bool,
    info: bool,
    book: Arc<ConnectorBook>,
}

/// How a call came in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Direct,
    Reception,
}

struct Placed {
    call: VideoCall,
    way: Way,
    /// How many times a reception call keyed its ID (0: direct dial).
    tries: u32,
}

/// Waits for the next SIP message with Call-ID `call_id` until `deadline`.
fn next_sip(
    sip: &UdpSocket,
    buf: &mut [u8],
    call_id: &str,
    deadline: Instant,
) -> Option<SipMessage> {
    while Instant::now() < deadline {
        let Ok((len, _)) = sip.recv_from(buf) else {
            continue;
        };
        if let Some(m) = parse(&buf[..len])
            && m.call_id() == Some(call_id)
        {
            return Some(m);
        }
    }
    None
}

/// Keys `digits` as RFC 4733 telephone-events (payload type 101) from
/// `sock` to `to`: per press a start, a continuation and three end
/// packets, one timestamp, 20 ms apart; 20 ms between presses.
fn key_dtmf(sock: &UdpSocket, to: SocketAddr, digits: &str, attempt: u32) {
    let ssrc = 0x0D7F_0000u32 | (sock.local_addr().map_or(0, |a| a.port()) as u32);
    let mut seq = (attempt as u16).wrapping_mul(100);
    for (k, d) in digits.chars().enumerate() {
        let code = d.to_digit(10).unwrap_or(11) as u8;
        let ts = attempt * 80_000 + k as u32 * 800;
        for (i, (end, dur)) in [
            (false, 160u16),
            (false, 320),
            (true, 480),
            (true, 480),
            (true, 480),
        ]
        .into_iter()
        .enumerate()
        {
            let mut p = [0u8; 16];
            p[0] = 0x80;
            p[1] = 101 | if i == 0 { 0x80 } else { 0 };
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p[4..8].copy_from_slice(&ts.to_be_bytes());
            p[8..12].copy_from_slice(&ssrc.to_be_bytes());
            p[12] = code;
            p[13] = if end { 0x80 | 10 } else { 10 };
            p[14..16].copy_from_slice(&dur.to_be_bytes());
            let _ = sock.send_to(&p, to);
            seq = seq.wrapping_add(1);
            if i < 2 || i == 4 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Places call `i` from the worker's SIP socket; the call's media sockets
/// and the relay's addresses, or why it failed.
fn place(s: &Setup, sip: &UdpSocket, buf: &mut [u8], i: usize, way: Way) -> Result<Placed, String> {
    let me = sip.local_addr().unwrap();
    let (ra, ca) = (media_socket(), media_socket());
    let video = s.video.then(|| (media_socket(), media_socket()));
    let port = |u: &Arc<UdpSocket>| u.local_addr().unwrap().port();
    let room = format!("room{i}");
    s.book.ports.lock().unwrap().insert(
        room.clone(),
        (port(&ca), video.as_ref().map(|(_, c)| port(c))),
    );
    let user = match way {
        Way::Direct => s.id.clone(),
        Way::Reception => "teams".to_string(),
    };
    let call_id = format!("bench-{i}@rooms.bench");
    let offer = av_sdp(&room, 1, port(&ra), video.as_ref().map(|(r, _)| port(r)));
    let invite = format!(
        "INVITE sip:{user}@cvi.fedge.test SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-r{i};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:{room}@rooms.bench>;tag=r{i}\r\nTo: <sip:{user}@cvi.fedge.test>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:{room}@{me}>\r\nUser-Agent: bench room\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        offer.len()
    );
    sip.send_to(invite.as_bytes(), s.gateway).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ok = loop {
        let m = next_sip(sip, buf, &call_id, deadline)
            .ok_or_else(|| format!("call {i}: no answer from the gateway"))?;
        match m.status() {
            Some(200) => break m,
            Some(st) if st >= 300 => return Err(format!("call {i}: the gateway answered {st}")),
            _ => {}
        }
    };
    let to = ok.first(HeaderName::To).unwrap_or("").to_string();
    let ack = format!(
        "ACK sip:gateway@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ra{i};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:{room}@rooms.bench>;tag=r{i}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        s.gateway
    );
    sip.send_to(ack.as_bytes(), s.gateway).unwrap();
    let mut room_relay = addrs(ok.body());
    let mut tries = 0;
    if way == Way::Reception {
        let audio = room_relay
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| format!("call {i}: the reception's answer has no audio"))?;
        // The reception listens for keys once it has the ACK.
        std::thread::sleep(Duration::from_millis(50));
        // The meeting's media comes in the gateway's re-INVITE. A room
        // whose entry was cut short (a key lost under load) hears "not
        // recognised" and keys it again, as a person would (3 tries).
        let mut cseq = 2u32;
        let mut reinvite = None;
        for attempt in 1..=3u32 {
            if s.info {
                for d in s.id.chars() {
                    let body = format!("Signal={d}\r\nDuration=160\r\n");
                    let info = format!(
                        "INFO sip:gateway@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ri{i}-{cseq};rport\r\nMax-Forwards: 70\r\n\
                         From: <sip:{room}@rooms.bench>;tag=r{i}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INFO\r\n\
                         Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len(),
                        gw = s.gateway
                    );
                    sip.send_to(info.as_bytes(), s.gateway).unwrap();
                    cseq += 1;
                    std::thread::sleep(Duration::from_millis(40));
                }
            } else {
                key_dtmf(&ra, audio, &s.id, attempt);
            }
            let deadline = Instant::now() + Duration::from_secs(8);
            while let Some(m) = next_sip(sip, buf, &call_id, deadline) {
                match m.method().map(|x| x.as_str().to_string()).as_deref() {
                    Some("INVITE") => {
                        reinvite = Some((m, attempt));
                        break;
                    }
                    Some("BYE") => return Err(format!("call {i}: the reception hung up")),
                    _ => {}
                }
            }
            if reinvite.is_some() {
                break;
            }
        }
        let (reinvite, attempts) = reinvite
            .ok_or_else(|| format!("call {i}: no re-INVITE after keying the ID 3 times"))?;
        tries = attempts;
        let answer = av_sdp(
            &room,
            2,
            port(&ra),
            video
                .as_ref()
                .filter(|_| addrs(reinvite.body()).get(1).is_some_and(Option::is_some))
                .map(|(r, _)| port(r)),
        );
        let r = ResponseBuilder::new(&reinvite, 200)
            .header("Contact", format!("<sip:{room}@{me}>"))
            .body("application/sdp", Bytes::from(answer))
            .build();
        sip.send_to(&r, s.gateway).unwrap();
        room_relay = addrs(reinvite.body());
    }
    let conn_relay = s
        .book
        .relay
        .lock()
        .unwrap()
        .get(&room)
        .cloned()
        .ok_or_else(|| format!("call {i}: the connector saw no INVITE"))?;
    let at = |v: &[Option<SocketAddr>], k: usize| v.get(k).copied().flatten();
    let (Some(room_to), Some(conn_to)) = (at(&room_relay, 0), at(&conn_relay, 0)) else {
        return Err(format!("call {i}: no relay address for audio"));
    };
    let video = match (video, at(&room_relay, 1), at(&conn_relay, 1)) {
        (Some((room, conn)), Some(room_to), Some(conn_to)) => Some(VideoLeg {
            room,
            conn,
            room_to,
            conn_to,
        }),
        _ => None,
    };
    Ok(Placed {
        call: VideoCall {
            room_audio: ra,
            conn_audio: ca,
            room_to,
            conn_to,
            video,
        },
        way,
        tries,
    })
}

/// Call `i`'s way in: every `1/share`-th through the reception.
fn way(i: usize, share: f64) -> Way {
    if ((i + 1) as f64 * share).floor() > (i as f64 * share).floor() {
        Way::Reception
    } else {
        Way::Direct
    }
}

/// Places `n` calls, every `1/share`-th through the reception, on
/// `workers` threads (each a room-system SIP socket placing its calls one
/// at a time); the calls that were set up, in order, and the failures.
fn place_all(s: Arc<Setup>, n: usize, share: f64, workers: usize) -> (Vec<Placed>, Vec<String>) {
    let handles: Vec<_> = (0..workers.min(n.max(1)))
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
                sip.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = vec![0u8; 65535];
                (w..n)
                    .step_by(workers)
                    .map(|i| (i, place(&s, &sip, &mut buf, i, way(i, share))))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(usize, Result<Placed, String>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_by_key(|(i, _)| *i);
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (_, r) in all {
        match r {
            Ok(p) => ok.push(p),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

fn header() {
    println!(
        "{:>7} {:>5} {:>5} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7} {:>6} {:>6} {:>7} {:>6}  verdict",
        "threads",
        "calls",
        "video",
        "exp pk/s",
        "offer/s",
        "relay/s",
        "loss %",
        "fe-drop",
        "gen-drp",
        "p50 ms",
        "p99 ms",
        "p99 vid",
        "fe CPU",
        "us/pkt",
        "genCPU",
        "lag99",
        "2c-proj",
        "others",
    );
}

/// One round of a step: loss, p99 ms, µs per packet, generator on schedule.
type Round = (f64, f64, f64, bool);

/// A step's verdict: held with the generator on schedule, under 0.1 %
/// loss and a p99 under 20 ms.
fn verdict(kept_up: bool, loss: f64, p99: f64) -> &'static str {
    if !kept_up {
        "gen-bound (measures the generator)"
    } else if loss < 0.001 && p99 < 20.0 {
        "held"
    } else {
        "not held"
    }
}

/// One fedge, its calls, its steps; the largest step held.
fn run(a: &Args, threads: usize) -> usize {
    let max = a.calls.iter().copied().max().unwrap_or(0);
    let p = Pki::new();
    let stop = Arc::new(AtomicBool::new(false));
    let book = Arc::new(ConnectorBook::default());
    let conn = connector(stop.clone(), book.clone());
    let cvi_port = free_port(true);
    // Every call comes from one address that does not answer OPTIONS: the
    // source's share is the node's, and the UDP probe is off (it would add
    // one round trip to each worker's first call only).
    // `[media] threads` only when asked: an older binary runs the bench too.
    let media_threads = match a.media_threads {
        1 => String::new(),
        n => format!("threads = {n}\n"),
    };
    let extra = format!(
        "[media]\ntimeout = \"600s\"\n{media_threads}\
         [cvi]\nenabled = true\nlisten = \"127.0.0.2:{cvi_port}\"\n\
         connector = \"sip:{{id}}@connector.bench;transport=udp\"\nconnector_address = \"{conn}\"\n\
         media_address = \"127.0.0.2\"\nconnector_media_address = \"127.0.0.2\"\nmax_calls = {}\n\
         max_calls_per_source = {}\nudp_probe = false\n",
        max + 10,
        max + 10
    );
    let relay = start_fedge(&p, conn, threads, &extra);
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
    let setup = Arc::new(Setup {
        gateway: SocketAddr::from(([127, 0, 0, 2], cvi_port)),
        id: conference_id(&invite),
        video: a.video,
        info: a.info,
        book,
    });
    let t0 = Instant::now();
    let (placed, failed) = place_all(setup, max, a.reception_share, a.workers);
    let reception = placed.iter().filter(|p| p.way == Way::Reception).count();
    let tried_reception = (0..max)
        .filter(|&i| way(i, a.reception_share) == Way::Reception)
        .count();
    let with_video = placed.iter().filter(|p| p.call.video.is_some()).count();
    let reception_video = placed
        .iter()
        .filter(|p| p.way == Way::Reception && p.call.video.is_some())
        .count();
    println!(
        "fedge runtime threads = {threads}: {} of {max} calls set up in {:.1} s ({} workers): \
         {} direct dial, {reception} of {tried_reception} through the reception reached the connector \
         (DTMF in {}, then the re-INVITE); {with_video} with video ({reception_video} of them via the reception)",
        placed.len(),
        t0.elapsed().as_secs_f64(),
        a.workers,
        placed.len() - reception,
        if a.info { "SIP INFO" } else { "RTP" }
    );
    let retyped = placed.iter().filter(|p| p.tries > 1).count();
    if retyped > 0 {
        println!("  {retyped} reception calls keyed the ID more than once (an entry cut short)");
    }
    for f in failed.iter().take(5) {
        println!("  failed: {f}");
    }
    let calls: Vec<VideoCall> = placed.into_iter().map(|p| p.call).collect();
    // The prompts the reception played are still queued on the rooms'
    // audio sockets: the generator ignores them (not its SSRC).
    header();
    let mut held = 0;
    // Per step, each round's (loss, p99 ms, µs/packet, generator kept up).
    let mut rounds: HashMap<usize, Vec<Round>> = HashMap::new();
    for _ in 0..a.rounds {
        for &n in &a.calls {
            if n > calls.len() {
                println!("{threads:>7} {n:>5}  (only {} calls set up)", calls.len());
                continue;
            }
            let o = play_video(&calls[..n], &a.model, a.secs, &relay.pids(), a.gso);
            let s = o.secs.max(1e-9);
            let exp: u64 = o.expected.iter().sum();
            let sent: u64 = o.sent.iter().sum();
            let got: u64 = o.received.iter().sum();
            let p99 = o.latency_ms(None, 0.99);
            let us = o.relay_cpu * 1e6 / got.max(1) as f64;
            rounds
                .entry(n)
                .or_default()
                .push((o.loss(), p99, us, o.generator_kept_up()));
            println!(
                "{:>7} {:>5} {:>5} {:>9.0} {:>9.0} {:>9.0} {:>7.3} {:>7} {:>7} {:>7.2} {:>7.2} {:>7.2} {:>5.0}% {:>7.2} {:>5.0}% {:>6.1} {:>7.0} {:>5.0}%  {}",
                threads,
                n,
                calls[..n].iter().filter(|c| c.video.is_some()).count(),
                exp as f64 / s,
                sent as f64 / s,
                got as f64 / s,
                o.loss() * 100.0,
                o.relay_drops,
                o.gen_drops,
                o.latency_ms(None, 0.5),
                p99,
                o.latency_ms(Some(1), 0.99),
                o.relay_cpu / s * 100.0,
                us,
                o.gen_cpu / s * 100.0,
                o.lag_ms(0.99),
                // Calls two cores would carry, fedge alone: its CPU per
                // relayed packet times the packets a call offers.
                2.0 / ((o.relay_cpu / got.max(1) as f64) * (sent as f64 / s / n as f64)).max(1e-12),
                // What other processes on the machine used meanwhile.
                (o.machine_cpu - o.relay_cpu - o.gen_cpu).max(0.0) / s * 100.0,
                verdict(o.generator_kept_up(), o.loss(), p99)
            );
        }
    }
    // The verdict of each step: the medians of its rounds.
    for &n in &a.calls {
        let Some(r) = rounds.get(&n) else { continue };
        let med = |f: &dyn Fn(&Round) -> f64| {
            let mut v: Vec<f64> = r.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let kept = r.iter().filter(|x| x.3).count() * 2 > r.len();
        let (loss, p99, us) = (med(&|x| x.0), med(&|x| x.1), med(&|x| x.2));
        let v = verdict(kept, loss, p99);
        if v == "held" {
            held = held.max(n);
        }
        println!(
            "median of {} rounds: threads {threads}, {n} calls: loss {:.3} %, p99 {p99:.2} ms, {us:.2} us/packet: {v}",
            r.len(),
            loss * 100.0
        );
    }
    println!(
        "fedge runtime threads = {threads}: largest step held (median loss < 0.1 %, p99 < 20 ms, generator on schedule): {held} calls"
    );
    stop.store(true, Ordering::Relaxed);
    // Keep the sockets open until fedge is gone (no ICMP storms meanwhile).
    drop(relay);
    held
}

fn main() {
    let a = args();
    let m = &a.model;
    let vpps = m.packets_per_second();
    let per_call = if a.video { 2.0 * (50.0 + vpps) } else { 100.0 };
    println!(
        "CVI gateway calls, room and connector over UDP, through fedge's relay; {}; \
         audio PCMA 50 packets/s each way; {:.0} % of calls through the reception keying the ID ({}); \
         about {per_call:.0} packets/s offered per call (as many relayed); window {} s after 1 s warm-up; \
         the load generator shares the machine's {} cores",
        if a.video {
            format!(
                "video H.264-like {} kbit/s, {} fps, payload <= {} B, key frame every {:.0} s at {}x (about {:.0} packets/s each way)",
                m.kbps,
                m.fps,
                m.max_payload,
                m.key_every.as_secs_f64(),
                m.key_factor,
                vpps
            )
        } else {
            "audio only".to_string()
        },
        a.reception_share * 100.0,
        if a.info {
            "SIP INFO, application/dtmf-relay"
        } else {
            "RFC 4733 telephone-events in RTP"
        },
        a.secs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut summary = Vec::new();
    for &t in &a.threads {
        summary.push((t, run(&a, t)));
    }
    for (t, held) in summary {
        println!("summary: fedge runtime threads = {t}: {held} calls held");
    }
}
