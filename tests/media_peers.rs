//! Federated A/V through the media relay, end to end: SIPp calls in both
//! directions through Kamailio (the partner's edge, mutual TLS) and fedge,
//! each side playing 100 RTP packets from a pcap to the address in the
//! other's SDP, which is the relay's; and a Lync-style two-SDP
//! multipart/alternative offer rewritten consistently.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedge::media::sdp;
use fedge::sip::SipMessage;
use fedge::sip::body::leaves;
use fedge::sip::framing::{DatagramItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge_testkit::lab::*;
use fedge_testkit::peers::{Sipp, free_port, scenario};
use fedge_testkit::rtp::{udp_connected_to, udp_rx_queue, write_pcap};
use fedge_testkit::*;

/// 100 packets of 172 bytes: what a socket holds at least once all arrived.
const ALL_ARRIVED: u64 = 100 * 172;

/// The SDP a side receives points at the relay (port range 50000-59999 on
/// 127.0.0.1) and keeps the attributes the relay does not own.
fn relayed_sdp_checks(kept: &str) -> (String, String) {
    (
        ereg("m=audio 5[0-9]{4} RTP/AVP 8", "body", "m", false)
            + &ereg("c=IN IP4 127\\.0\\.0\\.1", "body", "c", false)
            + &ereg(kept, "body", "k", false),
        refs(&["m", "c", "k"]),
    )
}

/// A configuration for the CLI that names the edge's admin listener and
/// its database (the CLI authenticates through it).
fn cli_config(lab: &Lab) -> std::path::PathBuf {
    lab.edge.cli_config("cli.toml")
}

/// One call: the caller (through `via`) and the callee (SIPp listening on
/// `callee_port`) each play 100 RTP packets; both must receive the other's.
/// Returns how many sockets were connected to the two parties' media
/// ports while the call was up (the io_uring loop's siblings, D258).
fn call_with_media(lab: &Lab, partner_calls: bool) -> usize {
    let dir = lab.dir();
    let (pa, pb) = (dir.join("caller.pcap"), dir.join("callee.pcap"));
    write_pcap(&pa, 0x1111_1111, 0xaa, 100);
    write_pcap(&pb, 0x2222_2222, 0xbb, 100);
    let (caller_media, callee_media) = (free_port(false), free_port(false));
    let (uas_checks, uas_refs) = relayed_sdp_checks("a=x-fedge-test:offer");
    let callee = Sipp::spawn(
        dir,
        &scenario(
            dir,
            "media_uas.xml",
            &[
                ("PCAP", pb.to_str().unwrap()),
                ("CHECKS", &uas_checks),
                ("REFERENCES", &uas_refs),
            ],
        ),
        if partner_calls { lab.home } else { lab.users },
        None,
        &["-mp", &callee_media.to_string()],
    );
    let (uac_checks, uac_refs) = relayed_sdp_checks("a=x-fedge-test:answer");
    let sc = scenario(
        dir,
        "media_uac.xml",
        &[
            ("PCAP", pa.to_str().unwrap()),
            ("HOLD", "4000"),
            ("CHECKS", &uac_checks),
            ("REFERENCES", &uac_refs),
        ],
    );
    let mp = caller_media.to_string();
    let caller = if partner_calls {
        lab.spawn_uac(
            lab.kam.udp,
            &sc,
            ("bob", "fedge.test"),
            "partner.test",
            &["-mp", &mp],
        )
    } else {
        lab.spawn_from(
            lab.edge.internal,
            free_port(false),
            &sc,
            ("alice", "partner.test"),
            ("bob", "fedge.test"),
            &["-mp", &mp],
        )
    };
    // While the call is up: both endpoints' media sockets fill with what
    // the other played, through the relay, and the relay lists the call.
    let t0 = Instant::now();
    let mut listed = false;
    let mut connected = 0;
    loop {
        let (a, b) = (
            udp_rx_queue(caller_media).unwrap_or(0),
            udp_rx_queue(callee_media).unwrap_or(0),
        );
        if !listed {
            // The operator's view of the live call.
            let out = fedge_ok(&cli_config(lab), &["media", "list"]);
            listed = out.starts_with("1 session(s)")
                && out.contains("stream 0 A (partner)")
                && out.contains("stream 0 B (home)");
        }
        if a >= ALL_ARRIVED && b >= ALL_ARRIVED && listed {
            break;
        }
        connected = connected.max(udp_connected_to(caller_media) + udp_connected_to(callee_media));
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "caller holds {a} bytes, callee {b}; listed: {listed}\n{}",
            lab.edge.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.assert_ok("caller", &caller.wait(LIMIT));
    lab.assert_ok("callee", &callee.wait(LIMIT));
    // The BYE closed the relay session; every packet crossed, none dropped.
    let closed = lab
        .edge
        .wait_log(
            &["media session closed", "BYE answered 200"],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no close line:\n{}", lab.edge.logs().join("\n")));
    for want in [
        "\"packets_from_a\":100",
        "\"packets_from_b\":100",
        "\"drops\":0",
    ] {
        assert!(closed.contains(want), "{want} not in {closed}");
    }
    let v = admin_get(lab.edge.admin, "/media");
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(v["ports_in_use"], 0, "{v}");
    // The call's sockets went with it, connected siblings too.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        udp_connected_to(caller_media) + udp_connected_to(callee_media),
        0
    );
    connected
}

#[test]
fn calls_in_both_directions_are_anchored_on_the_relay() {
    let lab = Lab::new();
    call_with_media(&lab, true);
    let first = metric(lab.edge.admin, "fedge_media_packets_total", &[]);
    assert!(first >= 200.0, "{first}");
    call_with_media(&lab, false);
    assert_eq!(
        metric(lab.edge.admin, "fedge_media_sessions_total", &[]),
        2.0
    );
    assert_eq!(metric(lab.edge.admin, "fedge_media_drops_total", &[]), 0.0);
}

#[test]
fn the_epoll_media_loop_relays_calls_as_the_io_uring_one_does() {
    // The default media loop is io_uring (every other media test runs on
    // it); `[media] io = "epoll"` keeps the other one, which must carry
    // the same calls.
    let lab = Lab::with("\n[media]\nio = \"epoll\"", Some("enabled"));
    assert_eq!(call_with_media(&lab, true), 0, "epoll connects no sockets");
    assert!(
        lab.edge
            .wait_log(&["media thread", "epoll"], Duration::from_secs(5))
            .is_some(),
        "the media thread says which loop it runs"
    );
    assert!(
        !lab.edge.logs().iter().any(|l| l.contains("io_uring")),
        "no io_uring ring was set up"
    );
    let first = metric(lab.edge.admin, "fedge_media_packets_total", &[]);
    assert!(first >= 200.0, "{first}");
    assert_eq!(metric(lab.edge.admin, "fedge_media_drops_total", &[]), 0.0);
}

#[test]
fn the_default_media_loop_is_io_uring() {
    let lab = Lab::new();
    // Each party, once latched, gets a socket connected to it on its relay
    // port (D258): one each.
    assert_eq!(call_with_media(&lab, false), 2);
    assert!(
        lab.edge
            .wait_log(&["media thread", "io_uring"], Duration::from_secs(5))
            .is_some(),
        "the media thread says it runs io_uring"
    );
    assert!(
        !lab.edge
            .logs()
            .iter()
            .any(|l| l.contains("io_uring unavailable")),
        "this kernel has io_uring: no fallback"
    );
}

#[test]
fn connect_peers_false_relays_through_the_relay_sockets_only() {
    let lab = Lab::with("\n[media]\nconnect_peers = false", Some("enabled"));
    assert_eq!(call_with_media(&lab, true), 0);
    assert_eq!(metric(lab.edge.admin, "fedge_media_drops_total", &[]), 0.0);
}

const LYNC_OFFER: &str = "--lync-alt
Content-Type: application/sdp
Content-Transfer-Encoding: 7bit
Content-Disposition: session; handling=optional; ms-proxy-2007fallback

v=0
o=- 0 0 IN IP4 10.20.30.40
s=session
c=IN IP4 10.20.30.40
b=CT:99980
t=0 0
m=audio 24590 RTP/SAVP 114 9 8 0 101
a=candidate:p4BjbPyWS1wwUaCCngrXHFSsHt9VqTgyUeIl3qBbPM 1 d2JeK3Q9J6WpGLvo6ktEHQ UDP 0.830 10.20.30.40 24590
a=candidate:p4BjbPyWS1wwUaCCngrXHFSsHt9VqTgyUeIl3qBbPM 2 d2JeK3Q9J6WpGLvo6ktEHQ UDP 0.830 10.20.30.40 24591
a=cryptoscale:1 client AES_CM_128_HMAC_SHA1_80 inline:Wg3pZ0b4YqKuf0M8JfCQvC9RtYwAhf6pRbuxOZ4c|2^31|1:1
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:Y9cTsUhVu1Nh4LvmZ8i3NNBz2D6CZH5pR1gM0C2q|2^31|1:1
a=maxptime:200
a=rtcp:24591
a=rtpmap:114 x-msrta/16000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=encryption:optional

--lync-alt
Content-Type: application/sdp
Content-Transfer-Encoding: 7bit
Content-Disposition: session; handling=optional

v=0
o=- 0 1 IN IP4 10.20.30.40
s=session
c=IN IP4 10.20.30.40
b=CT:99980
t=0 0
a=x-devicecaps:audio:send,recv;video:send,recv
m=audio 24590 RTP/SAVP 114 9 8 0 101
a=x-ssrc-range:4226215936-4226215936
a=rtcp-fb:* x-message app send:dsh recv:dsh
a=ice-ufrag:LyncUfrag
a=ice-pwd:LyncPasswordLyncPasswordLync
a=candidate:1 1 UDP 2130706431 10.20.30.40 24590 typ host
a=candidate:1 2 UDP 2130705918 10.20.30.40 24591 typ host
a=candidate:2 1 TCP-ACT 1684797439 10.20.30.40 24590 typ host
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:Y9cTsUhVu1Nh4LvmZ8i3NNBz2D6CZH5pR1gM0C2q|2^31|1:1
a=rtcp:24591
a=label:main-audio
a=rtpmap:114 x-msrta/16000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=encryption:optional

--lync-alt--";

fn recv_sip(
    sock: &UdpSocket,
    what: &str,
    want: impl Fn(&SipMessage) -> bool,
) -> (SipMessage, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut b = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the pool never got {what}");
        sock.set_read_timeout(Some(left)).unwrap();
        let Ok((n, from)) = sock.recv_from(&mut b) else {
            continue;
        };
        if let DatagramItem::Message(m) =
            parse_datagram(Bytes::copy_from_slice(&b[..n]), &Limits::default())
            && want(&m)
        {
            return (m, from);
        }
    }
}

#[test]
fn a_lync_two_sdp_offer_is_rewritten_consistently() {
    let lab = Lab::new();
    let pool = UdpSocket::bind(("127.0.0.1", lab.home)).unwrap();
    let answer_checks = ereg("m=audio 5[0-9]{4} RTP/SAVP 114", "body", "m", false)
        + &ereg(
            "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:Zm9vYmFy",
            "body",
            "k",
            false,
        )
        + &ereg("10\\.99\\.", "body", "leak", true);
    let caller = lab.spawn_uac(
        lab.kam.udp,
        &scenario(
            lab.dir(),
            "invite_body_uac.xml",
            &[
                ("CT", "multipart/alternative;boundary=lync-alt"),
                ("BODY", LYNC_OFFER),
                ("CHECKS", &answer_checks),
                ("REFERENCES", &refs(&["m", "k", "leak"])),
            ],
        ),
        ("bob", "fedge.test"),
        "partner.test",
        &[],
    );
    let (invite, from) = recv_sip(&pool, "the INVITE", |m| {
        m.method().is_some_and(|x| x.as_str() == "INVITE")
    });
    let parts = leaves(invite.first(HeaderName::ContentType), None, invite.body());
    assert_eq!(parts.len(), 2, "both alternatives arrive");
    let mut ports = Vec::new();
    for p in &parts {
        let text = std::str::from_utf8(p.body).unwrap();
        assert!(
            !text.contains("10.20.30.40"),
            "the partner's address is replaced:\n{text}"
        );
        let d = sdp::describe(p.body).unwrap();
        let s = &d.streams[0];
        assert_eq!(s.address, Some("127.0.0.1".parse().unwrap()));
        assert!((50000..=59999).contains(&s.port));
        assert_eq!(s.rtcp_port, s.port + 1);
        ports.push(s.port);
        // What the relay does not own is kept.
        for kept in [
            "a=crypto:2 AES_CM_128_HMAC_SHA1_80",
            "a=rtpmap:114 x-msrta/16000",
            "b=CT:99980",
            "a=encryption:optional",
        ] {
            assert!(text.contains(kept), "{kept} lost:\n{text}");
        }
    }
    assert_eq!(
        ports[0], ports[1],
        "both alternatives name the same relay port"
    );
    let fallback = std::str::from_utf8(parts[0].body).unwrap();
    assert!(
        !fallback.contains("a=candidate") && fallback.contains("a=cryptoscale"),
        "{fallback}"
    );
    let ice = std::str::from_utf8(parts[1].body).unwrap();
    assert!(
        ice.contains("a=ice-lite") && !ice.contains("LyncUfrag"),
        "{ice}"
    );
    assert!(
        ice.contains(&format!(
            "a=candidate:1 1 UDP 2130706431 127.0.0.1 {} typ host",
            ports[1]
        )),
        "{ice}"
    );
    assert!(
        ice.contains("tcptype passive"),
        "TCP candidates offered as TCP-ACT get a passive relay candidate:\n{ice}"
    );
    assert!(
        ice.contains("a=x-ssrc-range") && ice.contains("a=label:main-audio"),
        "{ice}"
    );

    // The home side answers from an internal address; the partner sees the relay.
    let answer = "v=0\r\no=- 0 0 IN IP4 10.99.0.5\r\ns=session\r\nc=IN IP4 10.99.0.5\r\nt=0 0\r\n\
                  m=audio 31000 RTP/SAVP 114\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:Zm9vYmFy|2^31|1:1\r\na=rtpmap:114 x-msrta/16000\r\n";
    let mut ok = ResponseBuilder::new(&invite, 200)
        .to_tag("home")
        .header("Contact", "<sip:bob@127.0.0.1>");
    // A UAS copies the Record-Route set into its 2xx (RFC 3261 §12.1.1).
    for rr in invite.values(HeaderName::RecordRoute) {
        ok = ok.header("Record-Route", rr);
    }
    let ok = ok
        .body("application/sdp", Bytes::from_static(answer.as_bytes()))
        .build();
    pool.send_to(&ok, from).unwrap();
    let (ack, _) = recv_sip(&pool, "the ACK", |m| {
        m.method().is_some_and(|x| x.as_str() == "ACK")
    });
    assert!(ack.body().is_empty());
    let (bye, from) = recv_sip(&pool, "the BYE", |m| {
        m.method().is_some_and(|x| x.as_str() == "BYE")
    });
    pool.send_to(&ResponseBuilder::new(&bye, 200).build(), from)
        .unwrap();
    lab.assert_ok("Lync-style caller", &caller.wait(LIMIT));
    assert!(
        lab.edge
            .wait_log(
                &["media session closed", "BYE answered 200"],
                Duration::from_secs(5)
            )
            .is_some()
    );
}

#[test]
fn the_relay_refuses_calls_it_cannot_carry_and_drains() {
    let lab = Lab::with("\n[media]\nmax_sessions = 1", Some("enabled"));
    let pool = UdpSocket::bind(("127.0.0.1", lab.home)).unwrap();
    // The first call holds the only session (it is never answered).
    let first = lab.spawn_uac(
        lab.kam.udp,
        &scenario(lab.dir(), "invite_refused_uac.xml", &[("STATUS", "486"), ("CT", "application/sdp"), ("BODY", "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0")]),
        ("bob", "fedge.test"),
        "partner.test",
        &[],
    );
    let (invite, from) = recv_sip(&pool, "the first INVITE", |m| {
        m.method().is_some_and(|x| x.as_str() == "INVITE")
    });
    // A second call while it rings: 503 with the reason. The partner's
    // edge gets it (and, as a proxy, passes on a 500: RFC 3261 §16.7).
    let second = lab.partner_uac(
        &scenario(
            lab.dir(),
            "invite_refused_uac.xml",
            &[("STATUS", "500"), ("CT", "application/sdp"), ("BODY", "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4002 RTP/AVP 0")],
        ),
        "carol",
        "fedge.test",
        "partner.test",
    );
    lab.assert_ok("a second caller", &second);
    let kam = lab.kam.logs();
    assert!(
        kam.lines().any(|l| l.contains("RPL 503")
            && l.contains("retry-after=[30]")
            && l.contains("media for this call cannot be relayed: the media relay carries its maximum of 1 sessions")),
        "{kam}"
    );
    // The first call fails: its session goes with it.
    pool.send_to(
        &ResponseBuilder::new(&invite, 486).to_tag("home").build(),
        from,
    )
    .unwrap();
    lab.assert_ok("first caller", &first.wait(LIMIT));
    assert!(
        lab.edge
            .wait_log(
                &["media session closed", "INVITE failed with 486"],
                Duration::from_secs(5)
            )
            .is_some()
    );
    // Drain: new calls are refused, and say why.
    let out = fedge_ok(&cli_config(&lab), &["media", "drain"]);
    assert!(out.contains("draining: no new calls"), "{out}");
    assert_eq!(admin_get(lab.edge.admin, "/media")["draining"], true);
    // (From the home side, which gets the 503 itself.)
    let (mut checks, _) = refusal(
        399,
        "the media relay is draining: it takes no new calls",
        None,
    );
    checks.push_str(&ereg("^ *30 *$", "Retry-After:", "ra", false));
    lab.refused(
        false,
        "invite_refused_uac.xml",
        &[("CT", "application/sdp"), ("BODY", "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4004 RTP/AVP 0")],
        503,
        (checks, refs(&["w", "ra"])),
        "dave@partner.test",
        "fedge.test",
    );
    assert_eq!(metric(lab.edge.admin, "fedge_media_draining", &[]), 1.0);
    assert_eq!(
        metric(lab.edge.admin, "fedge_media_refused_total", &[]),
        2.0
    );
}
