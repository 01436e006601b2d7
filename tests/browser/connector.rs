//! The connector (the Teams side) for the browser tests, in Rust: takes
//! the gateway's INVITE over TCP, answers PCMU and H.264 at its own RTP
//! sockets, counts the RTP that arrives (by payload type) and sends its
//! own audio and video towards the relay; hangs up on request, answers
//! the gateway's BYE.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Our video payload type (not the browser's: the bridge maps it).
pub const VIDEO_PT: u8 = 100;

#[derive(Default)]
pub struct Seen {
    pub invites: AtomicU64,
    pub invite: Mutex<String>,
    pub audio_in: AtomicU64,
    pub video_in: AtomicU64,
    /// Payload types other than ours that arrived.
    pub wrong_pt: AtomicU64,
    pub bye_in: AtomicBool,
    pub bye_answered: AtomicBool,
    pub hang_up: AtomicBool,
    pub stop: AtomicBool,
    /// The relay's addresses from the INVITE (audio, video).
    pub relay: Mutex<Option<(SocketAddr, Option<SocketAddr>)>>,
}

pub struct Connector {
    pub port: u16,
    pub seen: Arc<Seen>,
}

impl Connector {
    pub fn start() -> Connector {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        std::thread::spawn(move || serve(l, s));
        Connector { port, seen }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.seen.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(l: TcpListener, seen: Arc<Seen>) {
    l.set_nonblocking(true).unwrap();
    let t0 = Instant::now();
    while !seen.stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(180) {
        match l.accept() {
            Ok((s, _)) => {
                let seen = seen.clone();
                std::thread::spawn(move || conn(s, seen));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads one SIP message (Content-Length framing); `None` on close.
fn read_msg(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = header(&head, "Content-Length")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg = String::from_utf8_lossy(&buf[..end + 4 + len]).to_string();
                buf.drain(..end + 4 + len);
                return Some(msg);
            }
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Some(String::new());
            }
            Err(_) => return None,
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

pub fn header(msg: &str, name: &str) -> Option<String> {
    let lower = format!("{}:", name.to_ascii_lowercase());
    msg.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&lower))
        .map(|l| l[lower.len()..].trim().to_string())
}

fn headers(msg: &str, name: &str) -> Vec<String> {
    let lower = format!("{}:", name.to_ascii_lowercase());
    msg.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with(&lower))
        .map(|l| l.trim_end().to_string())
        .collect()
}

fn response(req: &str, status: &str, tag: &str, body: Option<&str>) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for v in headers(req, "Via") {
        r.push_str(&v);
        r.push_str("\r\n");
    }
    let to = header(req, "To").unwrap_or_default();
    let to = if to.contains("tag=") {
        to
    } else {
        format!("{to};tag={tag}")
    };
    for (n, v) in [
        ("From", header(req, "From").unwrap_or_default()),
        ("To", to),
        ("Call-ID", header(req, "Call-ID").unwrap_or_default()),
        ("CSeq", header(req, "CSeq").unwrap_or_default()),
    ] {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("Contact: <sip:meeting@127.0.0.1;transport=tcp>\r\n");
    match body {
        Some(b) => r.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => r.push_str("Content-Length: 0\r\n\r\n"),
    }
    r
}

/// The relay's audio and video addresses in the gateway's offer.
fn relay_of(sdp: &str) -> (SocketAddr, Option<SocketAddr>) {
    let mut ip = None;
    let mut audio = None;
    let mut video = None;
    for l in sdp.lines() {
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            ip = c.trim().parse::<std::net::IpAddr>().ok();
        }
        if let Some(m) = l.strip_prefix("m=audio ") {
            audio = m.split(' ').next().and_then(|p| p.parse::<u16>().ok());
        }
        if let Some(m) = l.strip_prefix("m=video ")
            && video.is_none()
        {
            video = m.split(' ').next().and_then(|p| p.parse::<u16>().ok());
        }
    }
    let ip = ip.expect("c= in the gateway's offer");
    (
        SocketAddr::new(ip, audio.expect("audio in the offer")),
        video.filter(|p| *p != 0).map(|p| SocketAddr::new(ip, p)),
    )
}

/// Our answer: audio and the first video at our sockets, the rest refused.
fn answer(offer: &str, a: u16, v: u16) -> String {
    let mut s = "v=0\r\no=connector 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        .to_string();
    let mut video_done = false;
    for l in offer.lines().filter(|l| l.starts_with("m=")) {
        let kind = l[2..].split(' ').next().unwrap_or("");
        match kind {
            "audio" => s.push_str(&format!(
                "m=audio {a} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
            )),
            "video" if !video_done => {
                video_done = true;
                s.push_str(&format!(
                    "m=video {v} RTP/AVP {VIDEO_PT}\r\na=rtpmap:{VIDEO_PT} H264/90000\r\na=fmtp:{VIDEO_PT} profile-level-id=42e01f;packetization-mode=1\r\na=sendrecv\r\n"
                ));
            }
            k => {
                let fmt = l.split(' ').nth(3).unwrap_or("0");
                s.push_str(&format!("m={k} 0 RTP/AVP {fmt}\r\n"));
            }
        }
    }
    s
}

fn conn(mut s: TcpStream, seen: Arc<Seen>) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = Vec::new();
    // The current dialog's INVITE and our answer (a new Call-ID on the
    // same connection is a new call, with its own RTP sockets).
    let mut dialog: Option<String> = None;
    let mut body = String::new();
    while !seen.stop.load(Ordering::Relaxed) {
        let Some(m) = read_msg(&mut s, &mut buf) else {
            return;
        };
        if m.is_empty() {
            if let Some(inv) = &dialog
                && seen.hang_up.swap(false, Ordering::Relaxed)
            {
                let _ = s.write_all(bye(inv).as_bytes());
            }
            continue;
        }
        if m.starts_with("SIP/2.0 200") && m.contains(" BYE\r\n") {
            seen.bye_answered.store(true, Ordering::Relaxed);
            continue;
        }
        if m.starts_with("INVITE ") {
            let call_id = header(&m, "Call-ID");
            if dialog.as_deref().map(|d| header(d, "Call-ID")) != Some(call_id) {
                seen.invites.fetch_add(1, Ordering::Relaxed);
                *seen.invite.lock().unwrap() = m.clone();
                let audio = UdpSocket::bind("127.0.0.1:0").unwrap();
                let video = UdpSocket::bind("127.0.0.1:0").unwrap();
                let sdp = &m[find(m.as_bytes(), b"\r\n\r\n").unwrap() + 4..];
                body = answer(
                    sdp,
                    audio.local_addr().unwrap().port(),
                    video.local_addr().unwrap().port(),
                );
                let relay = relay_of(sdp);
                *seen.relay.lock().unwrap() = Some(relay);
                dialog = Some(m.clone());
                let seen2 = seen.clone();
                std::thread::spawn(move || media(audio, video, relay, seen2));
            }
            let _ = s.write_all(response(&m, "200 OK", "conn1", Some(&body)).as_bytes());
        } else if m.starts_with("BYE ") {
            seen.bye_in.store(true, Ordering::Relaxed);
            let _ = s.write_all(response(&m, "200 OK", "conn1", None).as_bytes());
        } else if m.starts_with("ACK ") || m.starts_with("SIP/2.0") {
        } else {
            let _ = s.write_all(response(&m, "200 OK", "conn1", None).as_bytes());
        }
    }
}

/// Our BYE in the dialog of `invite` (we are its UAS).
fn bye(invite: &str) -> String {
    let contact = header(invite, "Contact").unwrap_or_default();
    let uri = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default()
        .to_string();
    let from = header(invite, "To").unwrap_or_default() + ";tag=conn1";
    format!(
        "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKconnbye{}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        rand::random::<u32>(),
        header(invite, "From").unwrap_or_default(),
        header(invite, "Call-ID").unwrap_or_default(),
    )
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Sends 20 ms of PCMU every 20 ms to the relay and sends the browser's
/// own video back as the meeting's (so the page decodes real frames),
/// asking for a key frame (PLI) now and then; counts what arrives.
/// Bounded to three minutes.
fn media(
    audio: UdpSocket,
    video: UdpSocket,
    relay: (SocketAddr, Option<SocketAddr>),
    seen: Arc<Seen>,
) {
    audio.set_nonblocking(true).unwrap();
    video.set_nonblocking(true).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 2048];
    let mut n: u32 = 0;
    while !seen.stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(180) {
        let seq = n as u16;
        let _ = audio.send_to(&rtp(0, seq, n * 160, 0x1111, false, &[0xff; 160]), relay.0);
        if let Some(v) = relay.1
            && n.is_multiple_of(50)
        {
            // RTCP PLI (RFC 4585) from us about the browser's stream.
            let pli = [0x81, 206, 0, 2, 0, 0, 0x22, 0x22, 0, 0, 0, 0];
            let _ = video.send_to(&pli, SocketAddr::new(v.ip(), v.port() + 1));
        }
        n += 1;
        while let Ok((k, _)) = audio.recv_from(&mut buf) {
            count(&seen, &seen.audio_in, 0, &buf[..k]);
        }
        while let Ok((k, _)) = video.recv_from(&mut buf) {
            if count(&seen, &seen.video_in, VIDEO_PT, &buf[..k])
                && let Some(v) = relay.1
            {
                // Echo with our own SSRC.
                buf[8..12].copy_from_slice(&0x2222u32.to_be_bytes());
                let _ = video.send_to(&buf[..k], v);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Counts an RTP packet of payload type `pt` (true), or one of another.
fn count(seen: &Seen, counter: &AtomicU64, pt: u8, b: &[u8]) -> bool {
    if b.len() >= 12 && b[1] & 0x7f == pt {
        counter.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    if b.len() >= 12 && !(200..=207).contains(&b[1]) {
        seen.wrong_pt.fetch_add(1, Ordering::Relaxed);
    }
    false
}
