//! Attacks on the CVI gateway (issue 14, points 1-4 and the CVI half of
//! 6), each against the real fedge binary on loopback: strangers taking
//! call slots with UDP INVITEs from addresses that never answer (spoofed
//! sources) or with more calls than their share, guessing conference IDs
//! over SIP and on the instructions page, ending, redirecting or ACKing a
//! room's call from elsewhere, and holding the CVI listeners' connections.
//! Each test asserts the attacker gains nothing and a legitimate room is
//! still served. Rooms, attackers and the connector are small Rust SIP
//! clients here; "other sources" are other 127.0.0.0/8 addresses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fedge_testkit::cvi::{ORGANISER, enrol};
use fedge_testkit::*;

const DOMAIN: &str = "cvi.fedge.test";

/// A running edge in CVI mode and its connector (a Rust UAS over TCP).
struct Cvi {
    pki: Pki,
    edge: Edge,
    connector: Connector,
}

impl Cvi {
    fn start(overrides: &str, connector: Connector) -> Cvi {
        let pki = Pki::new();
        let config = test_config(&pki, "")
            + &format!(
                "\n[cvi]\nenabled = true\nlisten = \"127.0.0.2:0\"\nlisten_tls = \"127.0.0.2:0\"\n\
                 connector = \"sip:{{id}}@connector.fedge.test;transport=tcp\"\n\
                 connector_address = \"{}\"\ntest_call_time = \"20s\"\n{overrides}\n",
                connector.addr
            );
        let edge = Edge::start(&pki, &config);
        let cvi = Cvi {
            pki,
            edge,
            connector,
        };
        enrol(&cvi.edge.config_path);
        cvi
    }

    fn addr(&self) -> SocketAddr {
        self.edge.cvi.expect("CVI listener")
    }

    fn meeting(&self) -> String {
        let out = fedge_ok(
            &self.edge.config_path,
            &["cvi", "meeting", "create", "--organiser", ORGANISER],
        );
        conference_id(&out)
    }

    fn metric(&self, name: &str) -> f64 {
        metric(self.edge.admin, name, &[])
    }

    fn logs(&self) -> String {
        self.edge.logs().join("\n")
    }

    /// Waits (bounded) until `f` holds.
    fn wait_for(&self, what: &str, within: Duration, mut f: impl FnMut(&Cvi) -> bool) {
        let t0 = Instant::now();
        while !f(self) {
            assert!(
                t0.elapsed() < within,
                "{what} not within {within:?}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A header's value in a message's text (first occurrence, any case).
fn header(msg: &str, name: &str) -> Option<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn tag_of(value: &str) -> Option<String> {
    value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_string))
}

/// A room's dialog as far as it knows it.
#[derive(Clone, Debug)]
struct Dialog {
    user: String,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
}

impl Dialog {
    fn new(user: &str) -> Dialog {
        Dialog {
            user: user.to_string(),
            call_id: format!("{}@room", token()),
            from_tag: token(),
            to_tag: None,
        }
    }
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=room 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
}

/// A request in (or starting) dialog `d`, sent from `local` over `transport`.
fn request(
    method: &str,
    d: &Dialog,
    local: SocketAddr,
    transport: &str,
    cseq: u32,
    body: Option<&str>,
) -> String {
    let to = match &d.to_tag {
        Some(t) => format!("<sip:{}@{DOMAIN}>;tag={t}", d.user),
        None => format!("<sip:{}@{DOMAIN}>", d.user),
    };
    let cseq_method = if method == "ACK" { "ACK" } else { method };
    let body = body.unwrap_or("");
    let ctype = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "{method} sip:{}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:room@rooms.example>;tag={}\r\nTo: {to}\r\nCall-ID: {}\r\n\
         CSeq: {cseq} {cseq_method}\r\nContact: <sip:room@{local};transport={}>\r\n{ctype}\
         Content-Length: {}\r\n\r\n{body}",
        d.user,
        token(),
        d.from_tag,
        d.call_id,
        transport.to_ascii_lowercase(),
        body.len()
    )
}

/// The 200 a room sends to a request it received (the gateway's probe).
fn ok_to(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = header(req, h) {
            let v = if h == "To" && tag_of(&v).is_none() {
                format!("{v};tag={}", token())
            } else {
                v
            };
            out.push_str(&format!("{h}: {v}\r\n"));
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// A SIP peer over UDP from a chosen loopback address.
struct UdpPeer {
    sock: UdpSocket,
    to: SocketAddr,
    /// Answers the gateway's OPTIONS (a real room); a spoofed source never does.
    answers_options: bool,
}

impl UdpPeer {
    fn new(ip: &str, to: SocketAddr, answers_options: bool) -> UdpPeer {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        UdpPeer {
            sock,
            to,
            answers_options,
        }
    }

    fn local(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn send(&self, msg: &str) {
        self.sock.send_to(msg.as_bytes(), self.to).unwrap();
    }

    /// Messages until one satisfies `f` (that one is returned), within
    /// `within`; the gateway's OPTIONS are answered on the way when this
    /// peer answers them, and every message seen is kept in `seen`.
    fn wait(
        &self,
        within: Duration,
        seen: &mut Vec<String>,
        f: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let t0 = Instant::now();
        let mut b = vec![0u8; 65536];
        while t0.elapsed() < within {
            let Ok((n, from)) = self.sock.recv_from(&mut b) else {
                continue;
            };
            let m = String::from_utf8_lossy(&b[..n]).to_string();
            seen.push(m.clone());
            if m.starts_with("OPTIONS ") && self.answers_options {
                self.sock.send_to(ok_to(&m).as_bytes(), from).unwrap();
            }
            if f(&m) {
                return Some(m);
            }
        }
        None
    }

    /// Sends an INVITE for `d` and waits for its final answer (ACKing a
    /// 2xx when `ack`); returns it, `d` updated with the gateway's tag.
    fn call(&self, d: &mut Dialog, ack: bool) -> String {
        let invite = request(
            "INVITE",
            d,
            self.local(),
            "UDP",
            1,
            Some(&sdp(&self.local().ip().to_string(), 4000)),
        );
        self.send(&invite);
        let mut seen = Vec::new();
        let fin = self
            .wait(Duration::from_secs(10), &mut seen, |m| {
                status(m).is_some_and(|s| s >= 200)
                    && header(m, "Call-ID").as_deref() == Some(d.call_id.as_str())
            })
            .unwrap_or_else(|| panic!("no final answer to {}: saw {seen:?}", d.call_id));
        d.to_tag = header(&fin, "To").and_then(|t| tag_of(&t));
        if ack && status(&fin).is_some_and(|s| s < 300) {
            self.send(&request("ACK", d, self.local(), "UDP", 1, None));
        }
        fin
    }

    /// Sends `req` and returns the status of its answer.
    fn ask(&self, req: &str) -> u16 {
        let call_id = header(req, "Call-ID").unwrap_or_default();
        let cseq = header(req, "CSeq").unwrap_or_default();
        self.send(req);
        let mut seen = Vec::new();
        self.wait(Duration::from_secs(5), &mut seen, |m| {
            status(m).is_some_and(|s| s >= 200)
                && header(m, "Call-ID").as_deref() == Some(call_id.as_str())
                && header(m, "CSeq").as_deref() == Some(cseq.as_str())
        })
        .and_then(|m| status(&m))
        .unwrap_or(0)
    }
}

/// A SIP peer over TCP from a chosen loopback address.
struct TcpPeer {
    conn: TcpStream,
    buf: Vec<u8>,
}

impl TcpPeer {
    fn connect(ip: &str, to: SocketAddr) -> TcpPeer {
        // Bound to a chosen source address before connecting.
        let local: SocketAddr = format!("{ip}:0").parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn: TcpStream = rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(local).unwrap();
            s.connect(to).await.unwrap().into_std().unwrap()
        });
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        TcpPeer {
            conn,
            buf: Vec::new(),
        }
    }

    fn local(&self) -> SocketAddr {
        self.conn.local_addr().unwrap()
    }

    fn send(&mut self, msg: &str) {
        self.conn.write_all(msg.as_bytes()).unwrap();
    }

    /// The next whole message, within `within`.
    fn next(&mut self, within: Duration) -> Option<String> {
        let t0 = Instant::now();
        loop {
            if let Some(m) = take_message(&mut self.buf) {
                return Some(m);
            }
            if t0.elapsed() >= within {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.conn.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    /// True when the gateway closes the connection within `within`
    /// (end of stream or a reset), false when it is still open then.
    fn closed(&mut self, within: Duration) -> bool {
        let t0 = Instant::now();
        let mut chunk = [0u8; 8192];
        while t0.elapsed() < within {
            match self.conn.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Sends an INVITE for `d` and returns its final answer (ACKing a 2xx
    /// when `ack`).
    fn call(&mut self, d: &mut Dialog, ack: bool) -> String {
        let local = self.local();
        let invite = request(
            "INVITE",
            d,
            local,
            "TCP",
            1,
            Some(&sdp(&local.ip().to_string(), 4000)),
        );
        self.send(&invite);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            let Some(m) = self.next(Duration::from_secs(1)) else {
                continue;
            };
            if status(&m).is_some_and(|s| s >= 200) {
                d.to_tag = header(&m, "To").and_then(|t| tag_of(&t));
                if ack && status(&m).is_some_and(|s| s < 300) {
                    let a = request("ACK", d, local, "TCP", 1, None);
                    self.send(&a);
                }
                return m;
            }
        }
        panic!("no final answer to {}", d.call_id);
    }
}

/// Takes one whole SIP message (head and Content-Length body) off `buf`.
fn take_message(buf: &mut Vec<u8>) -> Option<String> {
    // Keep-alive CRLFs between messages.
    while buf.starts_with(b"\r\n") {
        buf.drain(..2);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let len: usize = header(&head, "Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < end + len {
        return None;
    }
    let msg = String::from_utf8_lossy(&buf[..end + len]).to_string();
    buf.drain(..end + len);
    Some(msg)
}

/// The connector (the Teams side): a Rust UAS over TCP answering every
/// INVITE 200 (after a 180 and `delay`), ACK and BYE; it keeps the
/// INVITEs it received.
struct Connector {
    addr: SocketAddr,
    invites: Arc<Mutex<Vec<String>>>,
    byes: Arc<Mutex<usize>>,
}

impl Connector {
    fn start(delay: Duration) -> Connector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let invites = Arc::new(Mutex::new(Vec::new()));
        let byes = Arc::new(Mutex::new(0));
        let (inv, bye) = (invites.clone(), byes.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            listener.set_nonblocking(true).unwrap();
            while t0.elapsed() < Duration::from_secs(120) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let (inv, bye) = (inv.clone(), bye.clone());
                std::thread::spawn(move || serve_connector(conn, addr, delay, inv, bye));
            }
        });
        Connector {
            addr,
            invites,
            byes,
        }
    }
}

fn serve_connector(
    mut conn: TcpStream,
    addr: SocketAddr,
    delay: Duration,
    invites: Arc<Mutex<Vec<String>>>,
    byes: Arc<Mutex<usize>>,
) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while t0.elapsed() < Duration::from_secs(120) {
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        while let Some(m) = take_message(&mut buf) {
            let method = m.split(' ').next().unwrap_or("").to_string();
            let answer = |code: &str, extra: &str, body: &str| {
                let mut r = format!("SIP/2.0 {code}\r\n");
                for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    if let Some(v) = header(&m, h) {
                        let v = if h == "To" && tag_of(&v).is_none() {
                            format!("{v};tag=meeting")
                        } else {
                            v
                        };
                        r.push_str(&format!("{h}: {v}\r\n"));
                    }
                }
                r.push_str(extra);
                r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
                r
            };
            match method.as_str() {
                "INVITE" => {
                    invites.lock().unwrap().push(m.clone());
                    let _ = conn.write_all(answer("180 Ringing", "", "").as_bytes());
                    std::thread::sleep(delay);
                    let body = "v=0\r\no=m 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
                    let extra = format!(
                        "Contact: <sip:meeting@{addr};transport=tcp>\r\nContent-Type: application/sdp\r\n"
                    );
                    let _ = conn.write_all(answer("200 OK", &extra, body).as_bytes());
                }
                "BYE" => {
                    *byes.lock().unwrap() += 1;
                    let _ = conn.write_all(answer("200 OK", "", "").as_bytes());
                }
                "CANCEL" | "OPTIONS" | "INFO" | "UPDATE" => {
                    let _ = conn.write_all(answer("200 OK", "", "").as_bytes());
                }
                _ => {}
            }
        }
    }
}

/// Point 1: UDP INVITEs from sources that never answer (what spoofed
/// addresses look like) take no call slot, no media ports and no store
/// lookup; a real source holds only its share; a legitimate room still
/// gets its call.
#[test]
fn spoofed_udp_invites_take_no_slot_and_a_source_gets_its_share_only() {
    let cvi = Cvi::start(
        "max_calls = 3\nmax_calls_per_source = 2\nack_timeout = \"2s\"\nudp_probe_timeout = \"1s\"\n",
        Connector::start(Duration::ZERO),
    );
    // 12 spoofed INVITEs to the test call, each from another address.
    let spoofed: Vec<UdpPeer> = (0..12)
        .map(|i| UdpPeer::new(&format!("127.0.0.{}", 10 + i), cvi.addr(), false))
        .collect();
    let mut dialogs = Vec::new();
    for p in &spoofed {
        let d = Dialog::new("test_call");
        p.send(&request(
            "INVITE",
            &d,
            p.local(),
            "UDP",
            1,
            Some(&sdp("127.0.0.1", 4000)),
        ));
        dialogs.push(d);
    }
    for (p, d) in spoofed.iter().zip(&dialogs) {
        let mut seen = Vec::new();
        let fin = p
            .wait(Duration::from_secs(5), &mut seen, |m| {
                status(m).is_some_and(|s| s >= 200)
                    && header(m, "Call-ID").as_deref() == Some(d.call_id.as_str())
            })
            .unwrap_or_else(|| panic!("no answer: {seen:?}"));
        assert_eq!(status(&fin), Some(503), "{fin}");
        assert!(
            fin.contains("did not answer the gateway's OPTIONS"),
            "{fin}"
        );
        assert!(
            seen.iter().any(|m| m.starts_with("OPTIONS ")),
            "the probe went to the packet's source: {seen:?}"
        );
    }
    assert_eq!(cvi.metric("fedge_cvi_unproven_udp_total"), 12.0);
    assert_eq!(cvi.metric("fedge_cvi_calls_total"), 0.0, "no call started");
    assert_eq!(cvi.metric("fedge_cvi_ports_in_use"), 0.0, "no media held");

    // A real source (it answers the probe) gets its share, no more.
    let greedy = UdpPeer::new("127.0.0.30", cvi.addr(), true);
    for _ in 0..2 {
        let mut d = Dialog::new("test_call");
        let fin = greedy.call(&mut d, true);
        assert_eq!(status(&fin), Some(200), "{fin}");
    }
    let mut d = Dialog::new("test_call");
    let fin = greedy.call(&mut d, true);
    assert_eq!(status(&fin), Some(503), "{fin}");
    assert!(
        fin.contains("this source address already holds its maximum of 2 calls"),
        "{fin}"
    );
    assert_eq!(cvi.metric("fedge_cvi_refused_source_total"), 1.0);

    // A legitimate room from another address still gets the last slot.
    let room = UdpPeer::new("127.0.0.40", cvi.addr(), true);
    let mut d = Dialog::new("test_call");
    let fin = room.call(&mut d, true);
    assert_eq!(status(&fin), Some(200), "{fin}");
    cvi.wait_for("three calls up", Duration::from_secs(5), |c| {
        c.metric("fedge_cvi_calls") == 3.0
    });
}

/// Point 1: the gateway's own 200 (test call) that is never ACKed frees
/// its slot after the short ACK wait, not after 32 s.
#[test]
fn an_unacked_answer_frees_its_slot_after_the_ack_timeout() {
    let cvi = Cvi::start(
        "max_calls = 1\nack_timeout = \"1s\"\n",
        Connector::start(Duration::ZERO),
    );
    let silent = UdpPeer::new("127.0.0.31", cvi.addr(), true);
    let mut d = Dialog::new("test_call");
    let fin = silent.call(&mut d, false);
    assert_eq!(status(&fin), Some(200), "{fin}");
    cvi.wait_for("the unACKed call gone", Duration::from_secs(10), |c| {
        c.metric("fedge_cvi_calls") == 0.0
    });
    assert!(cvi.logs().contains("no ACK for the 200"));
    let room = UdpPeer::new("127.0.0.41", cvi.addr(), true);
    let mut d = Dialog::new("test_call");
    assert_eq!(status(&room.call(&mut d, true)), Some(200));
}

/// Point 2: a room sending wrong conference IDs at full speed is locked
/// out after its budget (every wrong ID answered alike, no media ports
/// taken), stays locked even for a valid ID, and a room from another
/// address still joins; the instructions page shares the budget.
#[test]
fn guessed_conference_ids_are_throttled_and_a_legit_room_still_joins() {
    let cvi = Cvi::start(
        "guess_budget = 5\nguess_lockout = \"60s\"\n",
        Connector::start(Duration::ZERO),
    );
    let id = cvi.meeting();
    let mut guesser = TcpPeer::connect("127.0.0.3", cvi.addr());
    let mut answers = Vec::new();
    for i in 0..30u64 {
        let guess = format!(
            "{}",
            1_000_000_000 + (rand::random::<u64>() % 8_999_999_999)
        );
        if guess == id {
            continue;
        }
        let mut d = Dialog::new(&guess);
        let fin = guesser.call(&mut d, true);
        answers.push((i, guess, fin));
    }
    let not_found: Vec<&(u64, String, String)> = answers
        .iter()
        .filter(|a| status(&a.2) == Some(404))
        .collect();
    let locked: Vec<&(u64, String, String)> = answers
        .iter()
        .filter(|a| status(&a.2) == Some(503))
        .collect();
    assert_eq!(not_found.len(), 5, "the budget: {answers:?}");
    assert_eq!(locked.len(), answers.len() - 5, "{answers:?}");
    for (_, guess, fin) in &not_found {
        let w = header(fin, "Warning").unwrap_or_default();
        assert!(
            w.contains(&format!(
                "no meeting can be joined with conference ID {guess} at {DOMAIN}"
            )),
            "{w}"
        );
    }
    for (_, _, fin) in &locked {
        assert!(
            fin.contains("too many wrong conference IDs from this address"),
            "{fin}"
        );
        let ra: u64 = header(fin, "Retry-After")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!((1..=60).contains(&ra), "{fin}");
    }
    // Locked out even with the right ID: guessing right is worth nothing now.
    let mut d = Dialog::new(&id);
    let fin = guesser.call(&mut d, true);
    assert_eq!(status(&fin), Some(503), "{fin}");
    assert!(cvi.connector.invites.lock().unwrap().is_empty());
    assert_eq!(cvi.metric("fedge_cvi_guess_lockouts_total"), 1.0);
    assert!(cvi.metric("fedge_cvi_guesses_refused_total") >= 25.0);
    assert_eq!(
        cvi.metric("fedge_cvi_ports_in_use"),
        0.0,
        "no media for wrong IDs"
    );
    assert!(cvi.logs().contains("source locked out"));

    // A legitimate room from another address joins the meeting.
    let mut room = TcpPeer::connect("127.0.0.4", cvi.addr());
    let mut d = Dialog::new(&id);
    let fin = room.call(&mut d, true);
    assert_eq!(status(&fin), Some(200), "{fin}");
    assert_eq!(cvi.connector.invites.lock().unwrap().len(), 1);

    // The page: the same budget for the asking address (127.0.0.1 here).
    let mut statuses = Vec::new();
    for n in 0..7u64 {
        let (s, page) = http(
            cvi.edge.public,
            "GET",
            &format!("/cvi/{}", 1_111_111_110 + n),
        );
        assert!(!page.contains("111111"), "a guess is never echoed: {page}");
        statuses.push(s);
    }
    assert_eq!(statuses, vec![404, 404, 404, 404, 404, 429, 429]);
    let (s, _) = http(cvi.edge.public, "GET", &format!("/cvi/{id}"));
    assert_eq!(s, 429, "locked out even for a valid ID");
}

/// Points 3 and 6: a stranger who knows a room's Call-ID and tags cannot
/// end, redirect or key into its call, neither from another address nor
/// from the room's address on another port; trust by address needs TCP or
/// TLS.
#[test]
fn strangers_cannot_end_redirect_or_key_into_a_rooms_call() {
    let cvi = Cvi::start(
        "trusted = [\"127.0.0.0/8\"]\n",
        Connector::start(Duration::ZERO),
    );
    let room = UdpPeer::new("127.0.0.4", cvi.addr(), true);
    let mut d = Dialog::new("test_call");
    let fin = room.call(&mut d, true);
    assert_eq!(status(&fin), Some(200), "{fin}");
    cvi.wait_for("the call up", Duration::from_secs(5), |c| {
        c.metric("fedge_cvi_calls") == 1.0
    });

    // The stranger knows Call-ID and both tags.
    let stranger = UdpPeer::new("127.0.0.9", cvi.addr(), true);
    let same_ip = UdpPeer::new("127.0.0.4", cvi.addr(), true);
    let evil_sdp = sdp("127.0.0.9", 6666);
    for (who, peer) in [("another address", &stranger), ("another port", &same_ip)] {
        let l = peer.local();
        for (method, body) in [
            ("INVITE", Some(evil_sdp.as_str())),
            ("UPDATE", Some(evil_sdp.as_str())),
            ("INFO", None),
            ("BYE", None),
        ] {
            let s = peer.ask(&request(method, &d, l, "UDP", 10, body));
            assert_eq!(s, 481, "{method} from {who}");
        }
    }
    // The room's own address and port with a wrong tag: no dialog either.
    let mut wrong = d.clone();
    wrong.to_tag = Some("guessed".into());
    assert_eq!(
        room.ask(&request("BYE", &wrong, room.local(), "UDP", 11, None)),
        481
    );
    assert_eq!(cvi.metric("fedge_cvi_calls"), 1.0, "the call is still up");
    assert!(cvi.metric("fedge_cvi_mismatched_total") >= 9.0);
    // An old CSeq from the room itself is refused (RFC 3261 §12.2.2).
    assert_eq!(
        room.ask(&request("INFO", &d, room.local(), "UDP", 5, None)),
        200
    );
    assert_eq!(
        room.ask(&request("INFO", &d, room.local(), "UDP", 4, None)),
        500
    );
    // The room itself ends it.
    assert_eq!(
        room.ask(&request("BYE", &d, room.local(), "UDP", 12, None)),
        200
    );
    cvi.wait_for("the call gone", Duration::from_secs(5), |c| {
        c.metric("fedge_cvi_calls") == 0.0
    });

    // Trust by address: not over UDP (spoofable), yes over TCP.
    let id = cvi.meeting();
    let mut d = Dialog::new(&id);
    let fin = room.call(&mut d, true);
    assert_eq!(status(&fin), Some(200), "{fin}");
    let mut tcp = TcpPeer::connect("127.0.0.4", cvi.addr());
    let mut d2 = Dialog::new(&id);
    let fin = tcp.call(&mut d2, true);
    assert_eq!(status(&fin), Some(200), "{fin}");
    {
        let invites = cvi.connector.invites.lock().unwrap();
        assert_eq!(invites.len(), 2);
        assert!(
            !invites[0].contains("X-Fedge-Trusted-Device"),
            "{}",
            invites[0]
        );
        assert!(
            invites[1].contains("X-Fedge-Trusted-Device: yes"),
            "{}",
            invites[1]
        );
    }
}

/// Point 3: an ACK sent before the 200 (the room saw our tag in the 180)
/// is not the ACK, so a room that never ACKs the 200 is hung up; and a
/// stranger's CANCEL, even with the INVITE's Via, tags and CSeq, cancels
/// nothing.
#[test]
fn an_early_ack_or_a_strangers_cancel_changes_nothing() {
    let cvi = Cvi::start(
        "ack_timeout = \"2s\"\n",
        Connector::start(Duration::from_millis(1500)),
    );
    let id = cvi.meeting();
    let stranger = UdpPeer::new("127.0.0.9", cvi.addr(), true);
    let early = UdpPeer::new("127.0.0.5", cvi.addr(), true);
    let mut d = Dialog::new(&id);
    let invite = request(
        "INVITE",
        &d,
        early.local(),
        "UDP",
        1,
        Some(&sdp("127.0.0.5", 4000)),
    );
    early.send(&invite);
    let mut seen = Vec::new();
    let ringing = early
        .wait(Duration::from_secs(10), &mut seen, |m| {
            status(m) == Some(180)
        })
        .unwrap_or_else(|| panic!("no 180: {seen:?}"));
    // A stranger's CANCEL, with the INVITE's very Via, tags and CSeq,
    // cancels nothing: it is not the room's transport peer.
    let cancel = format!(
        "CANCEL sip:{id}@{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\n\
         From: <sip:room@rooms.example>;tag={}\r\nTo: <sip:{id}@{DOMAIN}>\r\nCall-ID: {}\r\n\
         CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        header(&invite, "Via").unwrap_or_default(),
        d.from_tag,
        d.call_id
    );
    assert_eq!(stranger.ask(&cancel), 481);
    d.to_tag = header(&ringing, "To").and_then(|t| tag_of(&t));
    early.send(&request("ACK", &d, early.local(), "UDP", 1, None));
    let bye = early.wait(Duration::from_secs(15), &mut seen, |m| {
        m.starts_with("BYE ")
    });
    assert!(
        bye.is_some(),
        "the gateway hangs up a room that never ACKed its 200: {seen:?}"
    );
    assert!(
        seen.iter().filter(|m| status(m) == Some(200)).count() >= 2,
        "the 200 was retransmitted (the early ACK did not count): {seen:?}"
    );
    assert!(
        !seen.iter().any(|m| status(m) == Some(487)),
        "the stranger's CANCEL cancelled nothing: {seen:?}"
    );
    cvi.wait_for("the meeting leg hung up too", Duration::from_secs(5), |c| {
        *c.connector.byes.lock().unwrap() >= 1
    });
}

/// Point 4: the CVI TCP listener caps connections per source address (the
/// federation listener's admission rules, configured under [cvi]); the
/// TLS listener cuts a handshake at its own deadline, and a connection
/// that never sends a message is closed at the first-message deadline;
/// other sources are still served.
#[test]
fn cvi_listeners_cap_connections_per_source_and_cut_slow_handshakes() {
    let cvi = Cvi::start(
        "max_connections_per_source = 3\nmax_handshakes_per_source = 2\nhandshake_timeout = \"1s\"\n\
         first_message_timeout = \"3s\"\n",
        Connector::start(Duration::ZERO),
    );
    let held: Vec<TcpPeer> = (0..3)
        .map(|_| TcpPeer::connect("127.0.0.5", cvi.addr()))
        .collect();
    // Give the listener time to admit them (each is counted at accept).
    let mut probe = TcpPeer::connect("127.0.0.6", cvi.addr());
    let options = |local: SocketAddr| {
        let d = Dialog::new("ping");
        request("OPTIONS", &d, local, "TCP", 1, None)
    };
    let l = probe.local();
    probe.send(&options(l));
    let answer = probe.next(Duration::from_secs(5)).unwrap_or_default();
    assert_eq!(
        status(&answer),
        Some(200),
        "another source is served: {answer}"
    );
    let mut fourth = TcpPeer::connect("127.0.0.5", cvi.addr());
    let l = fourth.local();
    let _ = fourth.conn.write_all(options(l).as_bytes());
    assert!(fourth.closed(Duration::from_secs(5)), "the 4th is closed");
    assert!(
        cvi.edge
            .wait_log(&["source_connection_cap"], Duration::from_secs(5))
            .is_some()
    );
    drop(held);

    // TLS: a connection that never handshakes is cut at the deadline.
    let tls = cvi.edge.cvi_tls.expect("CVI TLS listener");
    let mut slow = TcpPeer::connect("127.0.0.7", tls);
    assert!(slow.closed(Duration::from_secs(10)), "cut at the deadline");
    assert!(
        cvi.edge
            .wait_log(
                &["TLS handshake refused: timed out"],
                Duration::from_secs(5)
            )
            .is_some()
    );
    // A plain TCP connection that never speaks is closed at its
    // first-message deadline, long before the idle timeout.
    let mut silent = TcpPeer::connect("127.0.0.8", cvi.addr());
    assert!(
        silent.closed(Duration::from_secs(15)),
        "closed while silent"
    );
    assert!(
        cvi.edge
            .wait_log(
                &["no message after its first-message deadline"],
                Duration::from_secs(5)
            )
            .is_some()
    );
    let _ = &cvi.pki;
}
