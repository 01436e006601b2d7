//! Attacks on the media relay, against the real binary (issue 14, points
//! 5-8): a stranger racing a call's parties to its relay ports (UDP and
//! RFC 4571 TCP), another partner hanging up or re-pointing a call it
//! knows the Call-ID and tags of, one partner taking the whole relay, and
//! SDP naming an address the operator refuses. Each asserts the attacker
//! gains nothing while the call's parties are still served.
//!
//! The home pool and the partner's user are this test's own UDP sockets;
//! "other hosts" are other 127.0.0.0/8 addresses.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedge::media::sdp;
use fedge::sip::SipMessage;
use fedge::sip::framing::{DatagramItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge_testkit::lab::*;
use fedge_testkit::*;

const ATTACKER: [u8; 4] = [127, 0, 0, 7];

fn udp(ip: [u8; 4]) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::from((ip, 0))).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn rtp(marker: u8, seq: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, seq, 0, 0, 0, 1, marker, marker, marker, marker];
    p.extend_from_slice(&[marker; 160]);
    p
}

/// Every datagram `s` gets within `wait`, with its source.
fn drain(s: &UdpSocket, wait: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut b = vec![0u8; 2048];
    while t0.elapsed() < wait {
        if let Ok((n, from)) = s.recv_from(&mut b) {
            out.push((b[..n].to_vec(), from));
        }
    }
    out
}

fn audio_sdp(ip: &str, port: u16, proto: &str, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {proto} 0\r\n{extra}"
    )
}

/// The next SIP message on `sock` that `want` takes, within 10 s.
fn recv_sip(
    sock: &UdpSocket,
    what: &str,
    want: impl Fn(&SipMessage) -> bool,
) -> (SipMessage, SocketAddr) {
    try_recv_sip(sock, Duration::from_secs(10), want).unwrap_or_else(|| panic!("never got {what}"))
}

fn try_recv_sip(
    sock: &UdpSocket,
    wait: Duration,
    want: impl Fn(&SipMessage) -> bool,
) -> Option<(SipMessage, SocketAddr)> {
    let deadline = Instant::now() + wait;
    let mut b = vec![0u8; 65535];
    while Instant::now() < deadline {
        let Ok((n, from)) = sock.recv_from(&mut b) else {
            continue;
        };
        if let DatagramItem::Message(m) =
            parse_datagram(Bytes::copy_from_slice(&b[..n]), &Limits::default())
            && want(&m)
        {
            return Some((m, from));
        }
    }
    None
}

fn is(method: &'static str) -> impl Fn(&SipMessage) -> bool {
    move |m| m.method().is_some_and(|x| x.as_str() == method)
}

fn answer_to(cseq_method: &'static str, call: String) -> impl Fn(&SipMessage) -> bool {
    move |m| {
        m.status().is_some_and(|s| s >= 200)
            && m.call_id() == Some(call.as_str())
            && m.cseq().is_some_and(|c| c.method == cseq_method)
    }
}

/// A request as a UA on `local` sends it.
#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    ruri: &str,
    local: SocketAddr,
    from: &str,
    to: &str,
    call: &str,
    cseq: u32,
    extra: &str,
    sdp_body: Option<&str>,
) -> Vec<u8> {
    let body = sdp_body.unwrap_or("");
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{:016x};rport\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\nContact: <sip:ua@{local}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        rand::random::<u64>(),
        body.len()
    )
    .into_bytes()
}

/// The relay's port in the (first) SDP of `m`.
fn relay_port(m: &SipMessage) -> u16 {
    sdp::describe(m.body()).expect("SDP").streams[0].port
}

/// One call from the home pool to alice@partner.test, answered by the
/// partner's user: the sockets and what each was told to send to.
struct Call {
    id: String,
    home_tag: String,
    partner_tag: String,
    /// The home side's media socket, and the relay port it sends to.
    home_media: UdpSocket,
    relay_b: SocketAddr,
    /// The partner's media socket, and the relay port it sends to.
    partner_media: UdpSocket,
    relay_a: SocketAddr,
}

/// Places a call: the home pool (`pool`) offers `home_sdp` (its media
/// socket's port is filled in), the partner's user (`ua`) answers.
fn call(lab: &Lab, pool: &UdpSocket, ua: &UdpSocket, proto: &str, extra: &str) -> Call {
    call_with(lab, pool, ua, proto, extra, |_, _| {})
}

/// [`call`], with `ringing(call_id, home_tag)` run while the partner's
/// user has the INVITE and has not answered.
fn call_with(
    lab: &Lab,
    pool: &UdpSocket,
    ua: &UdpSocket,
    proto: &str,
    extra: &str,
    ringing: impl FnOnce(&str, &str),
) -> Call {
    let home_media = udp([127, 0, 0, 1]);
    let partner_media = udp([127, 0, 0, 1]);
    let id = format!("call-{:08x}@home", rand::random::<u32>());
    let home_tag = format!("h{:08x}", rand::random::<u32>());
    let partner_tag = format!("p{:08x}", rand::random::<u32>());
    let offer = audio_sdp(
        "127.0.0.1",
        home_media.local_addr().unwrap().port(),
        proto,
        extra,
    );
    let invite = request(
        "INVITE",
        "sip:alice@partner.test",
        pool.local_addr().unwrap(),
        &format!("<sip:bob@fedge.test>;tag={home_tag}"),
        "<sip:alice@partner.test>",
        &id,
        1,
        "",
        Some(&offer),
    );
    pool.send_to(&invite, lab.edge.internal).unwrap();
    let Some((inv, kam)) = try_recv_sip(ua, Duration::from_secs(10), |m| {
        is("INVITE")(m) && m.call_id() == Some(id.as_str())
    }) else {
        let answer = try_recv_sip(pool, Duration::from_secs(1), |_| true);
        panic!(
            "the INVITE never reached the partner; home got {:?}\n{}",
            answer.map(|(m, _)| m.summary().to_string()),
            lab.edge.logs().join("\n")
        );
    };
    let relay_a = SocketAddr::new([127, 0, 0, 1].into(), relay_port(&inv));
    ringing(&id, &home_tag);
    let answer = audio_sdp(
        "127.0.0.1",
        partner_media.local_addr().unwrap().port(),
        "RTP/AVP",
        "",
    );
    let mut ok = ResponseBuilder::new(&inv, 200).to_tag(&partner_tag).header(
        "Contact",
        format!("<sip:alice@{}>", ua.local_addr().unwrap()),
    );
    for rr in inv.values(HeaderName::RecordRoute) {
        ok = ok.header("Record-Route", rr);
    }
    let ok = ok
        .body("application/sdp", Bytes::from(answer.into_bytes()))
        .build();
    ua.send_to(&ok, kam).unwrap();
    let (resp, _) = recv_sip(pool, "the 200 at home", answer_to("INVITE", id.clone()));
    assert_eq!(resp.status(), Some(200));
    let relay_b = SocketAddr::new([127, 0, 0, 1].into(), relay_port(&resp));
    Call {
        id,
        home_tag,
        partner_tag,
        home_media,
        relay_b,
        partner_media,
        relay_a,
    }
}

/// Media crosses both ways between the call's own sockets: what each gets
/// carries the other's marker and nothing else.
fn media_flows(c: &Call, seq: u8) {
    c.partner_media.send_to(&rtp(0xaa, seq), c.relay_a).unwrap();
    c.home_media.send_to(&rtp(0xbb, seq), c.relay_b).unwrap();
    let home_got = drain(&c.home_media, Duration::from_millis(600));
    let partner_got = drain(&c.partner_media, Duration::from_millis(600));
    assert!(
        home_got.iter().any(|(p, _)| *p == rtp(0xaa, seq)),
        "home got {home_got:?}"
    );
    assert!(
        partner_got.iter().any(|(p, _)| *p == rtp(0xbb, seq)),
        "partner got {partner_got:?}"
    );
    for (p, _) in home_got.iter().chain(&partner_got) {
        assert!(p[8] == 0xaa || p[8] == 0xbb, "a stranger's packet crossed");
    }
}

fn sessions(lab: &Lab) -> Vec<serde_json::Value> {
    admin_get(lab.edge.admin, "/media")["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn lab(extra_media: &str) -> (Lab, UdpSocket, UdpSocket) {
    let lab = Lab::with(&format!("\n[media]\n{extra_media}"), Some("enabled"));
    let pool = UdpSocket::bind(("127.0.0.1", lab.home)).unwrap();
    pool.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let ua = UdpSocket::bind(("127.0.0.1", lab.users)).unwrap();
    ua.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (lab, pool, ua)
}

/// Point 5: a stranger who sends to a call's relay ports first takes
/// nothing (UDP), and cannot hold the RFC 4571 TCP port's connections.
#[test]
fn a_stranger_racing_to_the_relay_ports_takes_nothing() {
    let (lab, pool, ua) = lab("");
    let c = call(&lab, &pool, &ua, "RTP/AVP", "");
    // The attacker, on another host, floods both relay ports before either
    // party has sent a packet (with the old first-packet latch, it would
    // now receive the call's media).
    let attacker = udp(ATTACKER);
    for i in 0..20 {
        attacker.send_to(&rtp(0xee, i), c.relay_a).unwrap();
        attacker.send_to(&rtp(0xee, i), c.relay_b).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    media_flows(&c, 1);
    media_flows(&c, 2);
    let stolen = drain(&attacker, Duration::from_millis(300));
    assert!(
        stolen.is_empty(),
        "the attacker got {} packets",
        stolen.len()
    );
    let s = sessions(&lab);
    let drops = s[0]["streams"][0][0]["drops"].as_u64().unwrap_or(0)
        + s[0]["streams"][0][1]["drops"].as_u64().unwrap_or(0);
    assert!(drops >= 40, "the stranger's packets were dropped: {s:?}");

    // RFC 4571: the home side offers TCP media; the relay listens.
    let t = call(&lab, &pool, &ua, "TCP/RTP/AVP", "a=setup:active\r\n");
    // The ports were not handed out in order (round robin gave each
    // next pair: A, B, then the next call's A and B, 2 apart each).
    let order = [c.relay_a, c.relay_b, t.relay_a, t.relay_b].map(|a| a.port());
    assert!(
        order.windows(2).any(|w| w[1] != w[0].wrapping_add(2)),
        "predictable ports: {order:?}"
    );
    // Connections from another host are closed at once, framed RTP or not.
    let mut strangers = Vec::new();
    for _ in 0..6 {
        let s = connect_from(ATTACKER, t.relay_b);
        strangers.push(s);
    }
    for s in &mut strangers {
        let mut framed = vec![0u8, 172];
        framed.extend_from_slice(&rtp(0xee, 9));
        let _ = s.write_all(&framed);
        assert!(
            closed_within(s, Duration::from_secs(2)),
            "a stranger's connection stayed open"
        );
    }
    // From the party's own host, a connection that never completes a
    // frame is closed once its first-frame deadline passes (5 s).
    let mut idle = connect_from([127, 0, 0, 1], t.relay_b);
    idle.write_all(&[0, 172]).unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(9)),
        "a connection that carried nothing was kept"
    );
    // The party itself still gets through, over TCP, to the partner's UDP.
    let mut own = connect_from([127, 0, 0, 1], t.relay_b);
    let mut framed = vec![0u8, 172];
    framed.extend_from_slice(&rtp(0xbb, 3));
    own.write_all(&framed).unwrap();
    let got = drain(&t.partner_media, Duration::from_millis(800));
    assert!(got.iter().any(|(p, _)| *p == rtp(0xbb, 3)), "{got:?}");
}

fn connect_from(ip: [u8; 4], to: SocketAddr) -> TcpStream {
    // std has no bind-before-connect; a socket2-free way: connect from
    // the address by binding a listener-less socket through tokio.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(IpAddr::from(ip), 0)).unwrap();
        s.connect(to).await.unwrap().into_std().unwrap()
    })
}

/// True when the peer closed `s` (EOF or reset) within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Point 6: another partner that knows a call's Call-ID and both tags
/// sends a BYE (answered 481 by the home side) and a re-INVITE pointing
/// the media at itself: the call's session and media are untouched.
#[test]
fn another_partner_cannot_hang_up_or_redirect_a_call() {
    let (lab, pool, ua) = lab("");
    let other = lab.other_partner();
    let c = call(&lab, &pool, &ua, "RTP/AVP", "");
    media_flows(&c, 1);
    let before = sessions(&lab);
    assert_eq!(before.len(), 1, "{before:?}");
    let attacker = udp([127, 0, 0, 1]);
    let a_local = attacker.local_addr().unwrap();
    let evil_media = udp(ATTACKER);
    let route = format!("Route: <sip:{};lr>\r\n", other.udp);
    // Requests in the call's dialog (its Call-ID and both tags), from the
    // other partner's own user.
    let from = format!("<sip:mallory@other.test>;tag={}", c.partner_tag);
    let to = format!("<sip:bob@fedge.test>;tag={}", c.home_tag);
    let evil_sdp = audio_sdp(
        "127.0.0.7",
        evil_media.local_addr().unwrap().port(),
        "RTP/AVP",
        "",
    );
    let reinvite = request(
        "INVITE",
        "sip:bob@fedge.test",
        a_local,
        &from,
        &to,
        &c.id,
        2,
        &route,
        Some(&evil_sdp),
    );
    let bye = request(
        "BYE",
        "sip:bob@fedge.test",
        a_local,
        &from,
        &to,
        &c.id,
        3,
        &route,
        None,
    );
    for (req, method) in [(reinvite, "INVITE"), (bye, "BYE")] {
        attacker.send_to(&req, other.udp).unwrap();
        // The edge knows the dialog was set up with partner.test: the other
        // partner's request is refused there (481) and never reaches the
        // home pool.
        let (answer, _) = try_recv_sip(
            &attacker,
            Duration::from_secs(5),
            answer_to(method, c.id.clone()),
        )
        .unwrap_or_else(|| panic!("no answer to the {method}"));
        assert_eq!(answer.status(), Some(481), "{}", answer.summary());
        let leaked = try_recv_sip(&pool, Duration::from_millis(500), |m| {
            is(method)(m) && m.call_id() == Some(c.id.as_str())
        });
        assert!(leaked.is_none(), "another partner's {method} reached home");
    }
    assert!(
        lab.edge
            .wait_log(&["no dialog of this peer matches"], Duration::from_secs(2))
            .is_some(),
        "the refusal is logged"
    );
    std::thread::sleep(Duration::from_millis(300));
    // The call's session is still there, and its media still goes to the
    // parties' own sockets, never to the attacker's.
    let after = sessions(&lab);
    assert!(
        after.iter().any(|s| s["id"] == before[0]["id"]),
        "the call's session was closed: {after:?}\n{}",
        lab.edge.logs().join("\n")
    );
    media_flows(&c, 2);
    let stolen = drain(&evil_media, Duration::from_millis(300));
    assert!(
        stolen.is_empty(),
        "the attacker got {} packets",
        stolen.len()
    );
    // The call's own BYE still ends it.
    let bye = request(
        "BYE",
        "sip:alice@partner.test",
        pool.local_addr().unwrap(),
        &format!("<sip:bob@fedge.test>;tag={}", c.home_tag),
        &format!("<sip:alice@partner.test>;tag={}", c.partner_tag),
        &c.id,
        2,
        "",
        None,
    );
    pool.send_to(&bye, lab.edge.internal).unwrap();
    if let Some((m, from)) = try_recv_sip(&ua, Duration::from_secs(5), is("BYE")) {
        ua.send_to(&ResponseBuilder::new(&m, 200).build(), from)
            .unwrap();
    }
    assert!(
        lab.edge
            .wait_log(
                &["media session closed", "BYE answered"],
                Duration::from_secs(5)
            )
            .is_some(),
        "{}",
        lab.edge.logs().join("\n")
    );
}

/// Point 6, while the call rings: another partner reuses the call's
/// Call-ID and the home side's From tag in an INVITE of its own. The edge
/// refuses it (482: the identifiers belong to partner.test's dialog), the
/// home pool never sees it, and the refusal touches nothing of the real
/// call: its answer is still relayed and its media crosses.
#[test]
fn another_partner_reusing_a_ringing_calls_identifiers_changes_nothing() {
    let (lab, pool, ua) = lab("");
    let other = lab.other_partner();
    let attacker = udp([127, 0, 0, 1]);
    let a_local = attacker.local_addr().unwrap();
    let c = call_with(&lab, &pool, &ua, "RTP/AVP", "", |id, home_tag| {
        // A request "in" the dialog with a To tag and the INVITE's own
        // CSeq (refused before any policy, as a loop or as another peer's
        // dialog), then a new dialog with the call's identifiers (482:
        // another peer's dialog): neither may end the ringing call's
        // session.
        for (to, status) in [(";tag=x1", [481, 482]), ("", [481, 482])] {
            let evil = request(
                "INVITE",
                "sip:bob@fedge.test",
                a_local,
                &format!("<sip:mallory@other.test>;tag={home_tag}"),
                &format!("<sip:bob@fedge.test>{to}"),
                id,
                1,
                &format!("Route: <sip:{};lr>\r\n", other.udp),
                Some(&audio_sdp("127.0.0.7", 40_000, "RTP/AVP", "")),
            );
            attacker.send_to(&evil, other.udp).unwrap();
            let (answer, _) = try_recv_sip(
                &attacker,
                Duration::from_secs(5),
                answer_to("INVITE", id.to_string()),
            )
            .expect("an answer to the reused identifiers");
            let got = answer.status().unwrap_or(0);
            assert!(status.contains(&got), "{}", answer.summary());
            let leaked = try_recv_sip(&pool, Duration::from_millis(500), |m| {
                is("INVITE")(m) && m.call_id() == Some(id)
            });
            assert!(leaked.is_none(), "the other partner's INVITE reached home");
        }
    });
    // The call's answer was relayed (the session was not closed by the
    // refusal) and its media crosses between the parties only.
    assert_ne!(c.relay_b.port(), 40_000);
    media_flows(&c, 1);
    assert!(
        lab.edge
            .wait_log(&["belong to another peer's dialog"], Duration::from_secs(2))
            .is_some(),
        "the refusal is logged"
    );
}

/// Point 7: one partner's calls stop at its share of the relay (503 with
/// the reason) and a failed opening UPDATE gives its session back at
/// once; the relay still carries another partner's calls.
/// Point 8: an offer naming a refused address gets no media sent there.
#[test]
fn one_partner_cannot_take_the_relay_nor_point_it_at_refused_addresses() {
    let (lab, pool, ua) = lab(
        "max_sessions_per_partner = 2\nmax_pairs_per_partner = 6\nrefused_networks = [\"127.0.0.66/32\"]\npartner_refused_networks = []\n",
    );
    let other = lab.other_partner();
    let c1 = call(&lab, &pool, &ua, "RTP/AVP", "");
    // An UPDATE of partner.test with an offer for a dialog the home side
    // does not know opens a session; it fails (481), and its session (and
    // its place in the partner's share) goes at once, not at the sweep.
    let upd = request(
        "UPDATE",
        "sip:bob@fedge.test",
        ua.local_addr().unwrap(),
        "<sip:alice@partner.test>;tag=u1",
        "<sip:bob@fedge.test>;tag=nobody",
        "no-such-dialog@partner",
        1,
        &format!("Route: <sip:{};lr>\r\n", lab.kam.udp),
        Some(&audio_sdp("127.0.0.1", 4002, "RTP/AVP", "")),
    );
    ua.send_to(&upd, lab.kam.udp).unwrap();
    if let Some((m, from)) = try_recv_sip(&pool, Duration::from_secs(3), is("UPDATE")) {
        pool.send_to(&ResponseBuilder::new(&m, 481).build(), from)
            .unwrap();
    }
    let _ = try_recv_sip(
        &ua,
        Duration::from_secs(5),
        answer_to("UPDATE", "no-such-dialog@partner".into()),
    );
    let t0 = Instant::now();
    while sessions(&lab).len() != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{:?}",
            sessions(&lab)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // (When the edge forwarded it, its relay session was opened and then
    // closed by the failure, not by the sweep.)
    let logs = lab.edge.logs();
    if logs
        .iter()
        .any(|l| l.contains("media session opened") && l.contains("no-such-dialog"))
    {
        assert!(
            logs.iter().any(|l| l.contains("media session closed")
                && l.contains("no-such-dialog")
                && l.contains("UPDATE failed with")),
            "{}",
            logs.join("\n")
        );
    }
    let _c2 = call(&lab, &pool, &ua, "RTP/AVP", "");
    // A third call with partner.test: refused with the reason.
    let id = "third@home".to_string();
    let invite = request(
        "INVITE",
        "sip:alice@partner.test",
        pool.local_addr().unwrap(),
        "<sip:bob@fedge.test>;tag=h3",
        "<sip:alice@partner.test>",
        &id,
        1,
        "",
        Some(&audio_sdp("127.0.0.1", 4000, "RTP/AVP", "")),
    );
    pool.send_to(&invite, lab.edge.internal).unwrap();
    let (resp, _) = recv_sip(&pool, "the third call's answer", answer_to("INVITE", id));
    assert_eq!(resp.status(), Some(503));
    let warning = resp.first(HeaderName::Warning).unwrap_or("");
    assert!(warning.contains("maximum of 2 media sessions"), "{warning}");
    assert_eq!(sessions(&lab).len(), 2);
    let v = admin_get(lab.edge.admin, "/media");
    assert_eq!(v["partners"][0]["sessions"], 2, "{v}");
    assert_eq!(v["partners"][0]["port_pairs"], 4, "{v}");
    // Another partner still gets a session: its INVITE reaches the pool
    // with the relay's SDP; the pool refuses the call, the session goes.
    let o = udp([127, 0, 0, 1]);
    let oid = "other-call@other".to_string();
    let inv = request(
        "INVITE",
        "sip:bob@fedge.test",
        o.local_addr().unwrap(),
        "<sip:carol@other.test>;tag=o1",
        "<sip:bob@fedge.test>",
        &oid,
        1,
        "",
        Some(&audio_sdp("127.0.0.1", 4004, "RTP/AVP", "")),
    );
    o.send_to(&inv, other.udp).unwrap();
    let (m, from) = recv_sip(&pool, "the other partner's INVITE", |m| {
        is("INVITE")(m) && m.call_id() == Some(oid.as_str())
    });
    assert!(
        (50000..=59999).contains(&relay_port(&m)),
        "relayed: {:?}",
        String::from_utf8_lossy(m.body())
    );
    assert_eq!(sessions(&lab).len(), 3);
    pool.send_to(&ResponseBuilder::new(&m, 486).to_tag("x").build(), from)
        .unwrap();
    let t0 = Instant::now();
    while sessions(&lab).len() != 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{:?}",
            sessions(&lab)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The earlier calls are untouched.
    media_flows(&c1, 1);

    // Point 8: free a place, then offer media at a refused address.
    let refused = udp([127, 0, 0, 66]);
    let bye = request(
        "BYE",
        "sip:alice@partner.test",
        pool.local_addr().unwrap(),
        &format!("<sip:bob@fedge.test>;tag={}", c1.home_tag),
        &format!("<sip:alice@partner.test>;tag={}", c1.partner_tag),
        &c1.id,
        2,
        "",
        None,
    );
    pool.send_to(&bye, lab.edge.internal).unwrap();
    if let Some((m, from)) = try_recv_sip(&ua, Duration::from_secs(5), is("BYE")) {
        ua.send_to(&ResponseBuilder::new(&m, 200).build(), from)
            .unwrap();
    }
    let t0 = Instant::now();
    while sessions(&lab).len() != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{:?}\n{}",
            sessions(&lab),
            lab.edge.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let c3 = call_to(&lab, &pool, &ua, refused.local_addr().unwrap());
    // The partner sends; nothing goes to the refused address...
    for i in 0..10 {
        c3.partner_media.send_to(&rtp(0xaa, i), c3.relay_a).unwrap();
    }
    let got = drain(&refused, Duration::from_millis(500));
    assert!(
        got.is_empty(),
        "{} packets went to a refused address",
        got.len()
    );
    assert!(
        lab.edge
            .wait_log(
                &["media address refused", "127.0.0.66"],
                Duration::from_secs(2)
            )
            .is_some()
    );
    assert!(metric(lab.edge.admin, "fedge_media_drops_total", &[]) >= 10.0);
    assert!(metric(lab.edge.admin, "fedge_media_refused_addresses_total", &[]) >= 1.0);
}

/// A call whose home side offers `home_media` (any address) as its media.
fn call_to(lab: &Lab, pool: &UdpSocket, ua: &UdpSocket, home_media: SocketAddr) -> Call {
    let id = format!("call-{:08x}@home", rand::random::<u32>());
    let offer = audio_sdp(
        &home_media.ip().to_string(),
        home_media.port(),
        "RTP/AVP",
        "",
    );
    let invite = request(
        "INVITE",
        "sip:alice@partner.test",
        pool.local_addr().unwrap(),
        "<sip:bob@fedge.test>;tag=h9",
        "<sip:alice@partner.test>",
        &id,
        1,
        "",
        Some(&offer),
    );
    pool.send_to(&invite, lab.edge.internal).unwrap();
    let (inv, kam) = recv_sip(ua, "the INVITE at the partner", |m| {
        is("INVITE")(m) && m.call_id() == Some(id.as_str())
    });
    let relay_a = SocketAddr::new([127, 0, 0, 1].into(), relay_port(&inv));
    let partner_media = udp([127, 0, 0, 1]);
    let answer = audio_sdp(
        "127.0.0.1",
        partner_media.local_addr().unwrap().port(),
        "RTP/AVP",
        "",
    );
    let ok = ResponseBuilder::new(&inv, 200)
        .to_tag("p9")
        .body("application/sdp", Bytes::from(answer.into_bytes()))
        .build();
    ua.send_to(&ok, kam).unwrap();
    let (resp, _) = recv_sip(pool, "the 200 at home", answer_to("INVITE", id.clone()));
    let relay_b = SocketAddr::new([127, 0, 0, 1].into(), relay_port(&resp));
    Call {
        id,
        home_tag: "h9".into(),
        partner_tag: "p9".into(),
        home_media: udp([127, 0, 0, 1]),
        relay_b,
        partner_media,
        relay_a,
    }
}

/// Point 8 (and 5) on the CVI gateway: a stranger who sends to the room
/// port of a test call's relay session before the room does gets neither
/// the prompt nor an echo, of its packets or the room's; the room gets its
/// own media back.
#[test]
fn the_test_call_echoes_only_to_the_room() {
    let pki = fedge_testkit::pki::Pki::new();
    let connector = fedge_testkit::peers::free_port(true);
    // This room answers no OPTIONS: the UDP source probe (tests/cvi_attacks.rs)
    // is off here, the echo is what is tested.
    let config = fedge_testkit::edge::test_config(&pki, "")
        + &format!(
            "\n[cvi]\nenabled = true\nlisten = \"127.0.0.2:0\"\nlisten_tls = \"127.0.0.2:0\"\nconnector = \"sip:{{id}}@connector.fedge.test;transport=tcp\"\nconnector_address = \"127.0.0.1:{connector}\"\ntest_call_time = \"20s\"\ntenant_key = \"87654321\"\ninstructions_base = \"https://cvi.fedge.test\"\nudp_probe = false\n"
        );
    let edge = fedge_testkit::edge::Edge::start(&pki, &config);
    let gw = edge.cvi.expect("CVI listener");
    let room = udp([127, 0, 0, 1]);
    let room_media = udp([127, 0, 0, 1]);
    room_media
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let local = room.local_addr().unwrap();
    let id = format!("room-{:08x}", rand::random::<u32>());
    let offer = audio_sdp(
        "127.0.0.1",
        room_media.local_addr().unwrap().port(),
        "RTP/AVP",
        "",
    );
    let invite = request(
        "INVITE",
        "sip:test_call@cvi.fedge.test",
        local,
        "<sip:room@hospital.example>;tag=r1",
        "<sip:test_call@cvi.fedge.test>",
        &id,
        1,
        "",
        Some(&offer),
    );
    room.send_to(&invite, gw).unwrap();
    let Some((ok, from)) = try_recv_sip(
        &room,
        Duration::from_secs(10),
        answer_to("INVITE", id.clone()),
    ) else {
        panic!("no answer to the test call\n{}", edge.logs().join("\n"));
    };
    assert_eq!(ok.status(), Some(200));
    let d = sdp::describe(ok.body()).expect("SDP");
    let relay = SocketAddr::new(d.streams[0].address.expect("c="), d.streams[0].port);
    let to = ok.first(HeaderName::To).unwrap_or("").to_string();
    let ack = request(
        "ACK",
        "sip:test_call@cvi.fedge.test",
        local,
        "<sip:room@hospital.example>;tag=r1",
        &to,
        &id,
        1,
        "",
        None,
    );
    room.send_to(&ack, from).unwrap();
    // The stranger is first at the relay's room port.
    let attacker = udp(ATTACKER);
    attacker
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    for i in 0..20 {
        attacker.send_to(&rtp(0xee, i), relay).unwrap();
    }
    // The room sends its media until its own packets come back.
    let t0 = Instant::now();
    let (mut echoed, mut foreign, mut stolen) = (0, 0, 0);
    let mut b = [0u8; 2048];
    let mut seq = 0u8;
    while echoed < 20 && t0.elapsed() < Duration::from_secs(25) {
        seq = seq.wrapping_add(1);
        room_media.send_to(&rtp(0x5a, seq), relay).unwrap();
        attacker.send_to(&rtp(0xee, seq), relay).unwrap();
        while let Ok((n, _)) = room_media.recv_from(&mut b) {
            if n > 12 && b[8..12] == [0x5a; 4] {
                echoed += 1;
            } else if n > 12 && b[8..12] == [0xee; 4] {
                foreign += 1;
            }
        }
        while let Ok((_n, _)) = attacker.recv_from(&mut b) {
            stolen += 1;
        }
    }
    assert!(
        echoed >= 20,
        "the room's media came back {echoed} times\n{}",
        edge.logs().join("\n")
    );
    assert_eq!(foreign, 0, "the stranger's packets were echoed to the room");
    assert_eq!(
        stolen, 0,
        "the stranger got {stolen} packets (prompt or echo)"
    );
}

/// Every relayed packet `s` got within `wait` whose marker is `marker`,
/// by sequence number.
fn seqs(s: &UdpSocket, marker: u8, wait: Duration) -> std::collections::BTreeSet<u8> {
    drain(s, wait)
        .iter()
        .filter(|(p, _)| p.len() > 8 && p[8] == marker)
        .map(|(p, _)| p[3])
        .collect()
}

/// Strangers flooding two calls' relay ports (RTP and RTCP, both sides:
/// eight sockets) from two threads as fast as they send (bounded: 600,000
/// datagrams or 3 s) cost a third call nothing, on each media loop: every
/// one of its packets is relayed both ways, the flood is dropped at the
/// relay (counted, and most of it reaches the relay: fedge keeps up here),
/// nothing reaches the strangers, and the flooded calls still relay once
/// it is over. (The io_uring loop's shared receive buffers running out,
/// which this flood does not cause on this machine, is the crate's unit
/// test `bursts_larger_than_the_receive_buffers_are_relayed_whole`.)
#[test]
fn a_flood_on_some_calls_leaves_another_call_whole() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    for io in ["io_uring", "epoll"] {
        let (lab, pool, ua) = lab(&format!("io = \"{io}\"\n"));
        let flooded = [
            call(&lab, &pool, &ua, "RTP/AVP", ""),
            call(&lab, &pool, &ua, "RTP/AVP", ""),
        ];
        let other = call(&lab, &pool, &ua, "RTP/AVP", "");
        for c in flooded.iter().chain([&other]) {
            media_flows(c, 1);
        }
        let mut targets = Vec::new();
        for c in &flooded {
            for relay in [c.relay_a, c.relay_b] {
                targets.push(relay);
                targets.push(SocketAddr::new(relay.ip(), relay.port() + 1));
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let attackers: Vec<UdpSocket> = (0..2).map(|_| udp(ATTACKER)).collect();
        let floods: Vec<_> = attackers
            .iter()
            .map(|a| {
                let (a, stop, sent, targets) = (
                    a.try_clone().unwrap(),
                    stop.clone(),
                    sent.clone(),
                    targets.clone(),
                );
                std::thread::spawn(move || {
                    let pkt = rtp(0xee, 0);
                    let t0 = Instant::now();
                    while sent.load(Ordering::Relaxed) < 600_000
                        && t0.elapsed() < Duration::from_secs(3)
                        && !stop.load(Ordering::Relaxed)
                    {
                        for to in &targets {
                            if a.send_to(&pkt, to).is_ok() {
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // The other call: 100 packets each way, 10 ms apart, under the flood.
        for seq in 0..100u8 {
            other
                .partner_media
                .send_to(&rtp(0xaa, seq), other.relay_a)
                .unwrap();
            other
                .home_media
                .send_to(&rtp(0xbb, seq), other.relay_b)
                .unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        for f in floods {
            f.join().unwrap();
        }
        let sent = sent.load(Ordering::Relaxed);
        let home_got = seqs(&other.home_media, 0xaa, Duration::from_millis(800));
        let partner_got = seqs(&other.partner_media, 0xbb, Duration::from_millis(800));
        assert!(
            home_got.len() == 100 && partner_got.len() == 100,
            "{io}: under a flood of {sent} datagrams on other calls, the home side got {} of 100 and the partner {} of 100",
            home_got.len(),
            partner_got.len()
        );
        // The flood reached the relay (it was not all lost in the kernel),
        // was dropped there, and crossed nowhere.
        let s = sessions(&lab);
        let dropped: u64 = s
            .iter()
            .filter_map(|x| x["streams"][0].as_array())
            .flatten()
            .filter_map(|e| e["drops"].as_u64())
            .sum();
        assert!(
            dropped >= 10_000,
            "{io}: the relay saw {dropped} of the strangers' {sent} datagrams: {s:?}"
        );
        eprintln!(
            "{io}: flood of {sent} datagrams, {dropped} dropped by the relay; the other call whole"
        );
        for a in &attackers {
            let stolen = drain(a, Duration::from_millis(300));
            assert!(
                stolen.is_empty(),
                "{io}: a stranger got {} packets",
                stolen.len()
            );
        }
        // The flooded calls themselves still relay once the flood is over.
        for (seq, c) in (2..).zip(&flooded) {
            drain(&c.home_media, Duration::from_millis(300));
            drain(&c.partner_media, Duration::from_millis(300));
            media_flows(c, seq);
        }
        media_flows(&other, 2);
    }
}
