//! Presentation sharing through the CVI gateway (issue 19): SIPp as the
//! room system and as the connector, the real fedge binary between them.
//! The room adds a content stream (`a=content:slides`) and BFCP floor
//! control in a re-INVITE; the connector gets it, through the relay; the
//! content RTP and the BFCP messages are this test's sockets, so that what
//! crosses the relay is counted here. Then the room stops sharing, and a
//! refusal by the connector reaches the room while the call goes on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use fedge_testkit::cvi::*;
use fedge_testkit::lab::{ereg, refs};
use fedge_testkit::rtp::write_pcap;

/// The audio every SDP of these calls starts with (SIPp's media port).
fn audio_sdp(origin: &str, version: u32) -> String {
    format!(
        "      v=0\n      o={origin} 1 {version} IN IP[local_ip_type] [local_ip]\n      s=-\n      c=IN IP[media_ip_type] [media_ip]\n      t=0 0\n      m=audio [media_port] RTP/AVP 8 101\n      a=rtpmap:8 PCMA/8000\n      a=rtpmap:101 telephone-event/8000\n      a=sendrecv\n"
    )
}

/// A content stream (RFC 4796) at `port` (0: stopped) in direction `dir`.
fn content_sdp(port: u16, label: u32, dir: &str) -> String {
    format!(
        "      m=video {port} RTP/AVP 96\n      a=rtpmap:96 H264/90000\n      a=content:slides\n      a=label:{label}\n      a={dir}\n"
    )
}

/// A BFCP stream (RFC 8856) over `proto` at `port` (0: stopped); over
/// TCP, `setup` is who connects (RFC 4145).
fn bfcp_sdp(proto: &str, port: u16, setup: &str, floorctrl: &str, label: u32) -> String {
    let tcp = if proto.starts_with("TCP") {
        format!("      a=setup:{setup}\n      a=connection:new\n")
    } else {
        String::new()
    };
    format!(
        "      m=application {port} {proto} *\n{tcp}      a=floorctrl:{floorctrl}\n      a=confid:4321\n      a=userid:7\n      a=floorid:2 mstrm:{label}\n"
    )
}

/// The connector takes a re-INVITE (`checks`, ereg actions, on it) and
/// answers `status` (with `sdp` when 2xx); then it takes the ACK.
fn connector_reinvite(checks: &str, status: u16, sdp: Option<&str>) -> String {
    connector_offer("INVITE", checks, status, sdp)
}

/// As [`connector_reinvite`] for `method` (an UPDATE is not ACKed).
fn connector_offer(method: &str, checks: &str, status: u16, sdp: Option<&str>) -> String {
    let ack = if method == "INVITE" {
        "  <recv request=\"ACK\" crlf=\"true\"/>\n"
    } else {
        ""
    };
    let (reason, ct, body) = match sdp {
        Some(s) => (
            "OK",
            "Content-Type: application/sdp\n      Content-Length: [len]",
            s.to_string(),
        ),
        None => ("Not Acceptable Here", "Content-Length: 0", String::new()),
    };
    format!(
        r#"  <recv request="{method}" crlf="true" timeout="30000">
    <action>
      {checks}
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 {status} {reason}
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:meeting@[local_ip]:[local_port];transport=[transport]>
      {ct}

{body}
    ]]>
  </send>
{ack}"#
    )
}

/// A TCP connection to the relay's BFCP port `to`, once the relay takes
/// it (before the side's SDP is in, it closes at once).
fn bfcp_connect(cvi: &Cvi, to: SocketAddr) -> TcpStream {
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the relay never kept a BFCP connection to {to}\n{}",
            cvi.logs()
        );
        if let Ok(mut c) = TcpStream::connect(to) {
            c.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut b = [0u8; 1];
            match c.read(&mut b) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return c;
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The relay's connection to a listening (passive) side.
fn accept_within(cvi: &Cvi, l: &std::net::TcpListener, within: Duration) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    let t0 = Instant::now();
    loop {
        if let Ok((c, _)) = l.accept() {
            c.set_nonblocking(false).unwrap();
            return c;
        }
        assert!(
            t0.elapsed() < within,
            "the relay never connected to the passive side\n{}",
            cvi.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A BFCP message (RFC 8855 §5.1): version 1, `primitive`, conference
/// 4321, transaction `tid`, user 7, with a FLOOR-ID attribute (floor 2).
fn bfcp_message(primitive: u8, tid: u16) -> Vec<u8> {
    let mut m = vec![0x20, primitive, 0, 1];
    m.extend_from_slice(&4321u32.to_be_bytes());
    m.extend_from_slice(&tid.to_be_bytes());
    m.extend_from_slice(&7u16.to_be_bytes());
    // FLOOR-ID: type 2, M bit, length 4, floor 2.
    m.extend_from_slice(&[2 << 1 | 1, 4, 0, 2]);
    m
}

/// Reads exactly `n` bytes from `c` within a few seconds.
fn read_n(c: &mut TcpStream, n: usize) -> Vec<u8> {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = vec![0u8; n];
    c.read_exact(&mut b)
        .expect("the BFCP message crossed the relay");
    b
}

/// Sends `count` RTP packets (payload type 96, SSRC `ssrc`) from `from` to
/// `to` and counts those that arrive at `at`.
fn content_crosses(
    from: &UdpSocket,
    to: SocketAddr,
    at: &UdpSocket,
    ssrc: u32,
    count: u16,
) -> usize {
    at.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for i in 0..count {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&i.to_be_bytes());
        p.extend_from_slice(&(u32::from(i) * 3000).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend(std::iter::repeat_n(0x5c, 900));
        from.send_to(&p, to).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (mut got, t0) = (0, Instant::now());
    let mut b = [0u8; 2048];
    while got < usize::from(count) && t0.elapsed() < Duration::from_secs(5) {
        if let Ok((n, _)) = at.recv_from(&mut b)
            && n == 912
            && b[8..12] == ssrc.to_be_bytes()
        {
            got += 1;
        }
    }
    got
}

fn local_udp() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = s.local_addr().unwrap().port();
    (s, p)
}

#[test]
fn a_room_shares_slides_with_tcp_bfcp_and_stops() {
    let cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    let pcap = cvi.dir().join("meeting.pcap");
    write_pcap(&pcap, 0x2222_2222, 0xbb, 10);
    let (room_content, room_content_port) = local_udp();
    let (meeting_content, meeting_content_port) = local_udp();
    // The room's BFCP end listens (a=setup:passive): the relay connects.
    let room_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let room_listen_port = room_listener.local_addr().unwrap().port();

    // The connector: the room's presentation offered through the relay
    // (the relay listens for BFCP), then the stop, then the room's BYE.
    let share_checks = ereg("m=video 4[0-9]{4} RTP/AVP 96", "body", "sv", false)
        + &ereg("a=content:slides", "body", "sc", false)
        + &ereg("a=label:3", "body", "sl", false)
        + &ereg("m=application 4[0-9]{4} TCP/BFCP \\*", "body", "sb", false)
        + &ereg("a=setup:passive", "body", "ss", false)
        + &ereg("a=floorctrl:c-only", "body", "sf", false)
        + &ereg("a=floorid:2 mstrm:3", "body", "sm", false)
        + &ereg("c=IN IP4 127\\.0\\.0\\.2", "body", "sa", false)
        + &ereg("127\\.0\\.0\\.1", "body", "sn", true);
    let stop_checks = ereg("m=video 0 RTP/AVP 96", "body", "tv", false)
        + &ereg("m=application 0 TCP/BFCP", "body", "tb", false);
    let end = connector_reinvite(
        &share_checks,
        200,
        Some(
            &(audio_sdp("connector", 3)
                + &content_sdp(meeting_content_port, 12, "recvonly")
                + &bfcp_sdp("TCP/BFCP", 9, "active", "s-only", 12)),
        ),
    ) + &connector_reinvite(
        &stop_checks,
        200,
        Some(
            &(audio_sdp("connector", 4)
                + &content_sdp(0, 12, "recvonly")
                + &bfcp_sdp("TCP/BFCP", 0, "active", "s-only", 12)),
        ),
    ) + &then_gateway_hangs_up("")
        + &refs(&[
            "sv", "sc", "sl", "sb", "ss", "sf", "sm", "sa", "sn", "tv", "tb",
        ]);
    let (checks, references) = connector_checks(&id, true);
    let (connector, _) = cvi.connector(&checks, &references, &pcap, &end);

    // The room: joins, shares (content + TCP/BFCP, passive), holds, stops,
    // hangs up.
    let share = audio_sdp("room101", 2)
        + &content_sdp(room_content_port, 3, "sendonly")
        + &bfcp_sdp("TCP/BFCP", room_listen_port, "passive", "c-only", 3);
    let stop = audio_sdp("room101", 3)
        + &content_sdp(0, 3, "sendonly")
        + &bfcp_sdp("TCP/BFCP", 0, "passive", "c-only", 3);
    let answer_checks = ereg("m=video 4[0-9]{4} RTP/AVP 96", "body", "av", false)
        + &ereg("a=content:slides", "body", "ac", false)
        + &ereg("a=recvonly", "body", "ad", false)
        + &ereg("m=application 4[0-9]{4} TCP/BFCP \\*", "body", "ab", false)
        + &ereg("a=setup:active", "body", "as", false)
        + &ereg("a=floorctrl:s-only", "body", "af", false)
        + &ereg("c=IN IP4 127\\.0\\.0\\.2", "body", "aa", false);
    let stopped_checks = ereg("m=video 0 RTP/AVP 96", "body", "ov", false)
        + &ereg("m=application 0 TCP/BFCP", "body", "ob", false);
    let mut call = RoomCall::new(&id);
    call.keys = "  <pause milliseconds=\"300\"/>\n".into();
    call.then = room_offer(&id, "INVITE", 2, &share, 200, &answer_checks)
        + "  <pause milliseconds=\"6000\"/>\n"
        + &room_offer(&id, "INVITE", 3, &stop, 200, &stopped_checks)
        + &room_request(&id, "BYE", 4, None)
        + &refs(&["av", "ac", "ad", "ab", "as", "af", "aa", "ov", "ob"]);
    let room = cvi.room(&call);

    // Content RTP from the room reaches the connector's content port.
    let content_a = cvi.relay_port(3, 1, 0);
    let bfcp_b = cvi.relay_port(3, 2, 1);
    // The connector (a=setup:active) connects to the relay; the relay
    // (a=setup:active towards the room) connects to the room.
    let mut meeting_bfcp = bfcp_connect(&cvi, bfcp_b);
    let mut room_bfcp = accept_within(&cvi, &room_listener, Duration::from_secs(20));
    let got = content_crosses(&room_content, content_a, &meeting_content, 0x5eed_0003, 50);
    assert_eq!(got, 50, "content packets at the connector\n{}", cvi.logs());
    // A FloorRequest (1) from the room, a FloorRequestStatus (4) back.
    let request = bfcp_message(1, 1);
    room_bfcp.write_all(&request).unwrap();
    assert_eq!(read_n(&mut meeting_bfcp, request.len()), request);
    let status = bfcp_message(4, 1);
    meeting_bfcp.write_all(&status).unwrap();
    assert_eq!(read_n(&mut room_bfcp, status.len()), status);
    // The room's connection closing closes the connector's.
    drop(room_bfcp);
    meeting_bfcp
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(
        matches!(meeting_bfcp.read(&mut b), Ok(0) | Err(_)),
        "the connector's BFCP connection outlived the room's"
    );

    assert_ok("room system", &room.wait(LIMIT), &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    let closed = log_line(
        &cvi,
        &["media session closed", "the room system hung up"],
        Duration::from_secs(5),
    );
    assert!(closed.contains("\"drops\":0"), "{closed}");
}

#[test]
fn a_refused_presentation_leaves_the_call_and_udp_bfcp_crosses_once_accepted() {
    let cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    let pcap = cvi.dir().join("meeting.pcap");
    write_pcap(&pcap, 0x2222_2222, 0xbb, 10);
    let (room_content, room_content_port) = local_udp();
    let (meeting_content, meeting_content_port) = local_udp();
    let (room_bfcp, room_bfcp_port) = local_udp();
    let (meeting_bfcp, meeting_bfcp_port) = local_udp();

    let offered = ereg("m=application 4[0-9]{4} UDP/BFCP \\*", "body", "ob", false)
        + &ereg("a=content:slides", "body", "oc", false);
    let again = ereg("m=application 4[0-9]{4} UDP/BFCP \\*", "body", "gb", false);
    // Then the room stops sharing by UPDATE.
    let stopped = ereg("m=video 0 RTP/AVP 96", "body", "us", false);
    let end = connector_reinvite(&offered, 488, None)
        + &connector_reinvite(
            &again,
            200,
            Some(
                &(audio_sdp("connector", 3)
                    + &content_sdp(meeting_content_port, 12, "sendrecv")
                    + &bfcp_sdp("UDP/BFCP", meeting_bfcp_port, "", "s-only", 12)),
            ),
        )
        + &connector_offer(
            "UPDATE",
            &stopped,
            200,
            Some(
                &(audio_sdp("connector", 4)
                    + &content_sdp(0, 12, "sendrecv")
                    + &bfcp_sdp("UDP/BFCP", 0, "", "s-only", 12)),
            ),
        )
        + &then_gateway_hangs_up("")
        + &refs(&["ob", "oc", "gb", "us"]);
    let (checks, references) = connector_checks(&id, true);
    let (connector, _) = cvi.connector(&checks, &references, &pcap, &end);

    let share = |v: u32| {
        audio_sdp("room101", v)
            + &content_sdp(room_content_port, 3, "sendrecv")
            + &bfcp_sdp("UDP/BFCP", room_bfcp_port, "", "c-only", 3)
    };
    let stop = audio_sdp("room101", 4)
        + &content_sdp(0, 3, "sendrecv")
        + &bfcp_sdp("UDP/BFCP", 0, "", "c-only", 3);
    let refused = ereg("the other party answered 488", "Warning:", "w", false);
    let accepted = ereg("m=application 4[0-9]{4} UDP/BFCP \\*", "body", "ab", false)
        + &ereg("a=floorctrl:s-only", "body", "af", false);
    let mut call = RoomCall::new(&id);
    call.keys = "  <pause milliseconds=\"300\"/>\n".into();
    call.then = room_offer(&id, "INVITE", 2, &share(2), 488, &refused)
        + "  <pause milliseconds=\"500\"/>\n"
        + &room_offer(&id, "INVITE", 3, &share(3), 200, &accepted)
        + "  <pause milliseconds=\"5000\"/>\n"
        + &room_offer(
            &id,
            "UPDATE",
            4,
            &stop,
            200,
            &ereg("m=application 0 UDP/BFCP", "body", "u0", false),
        )
        + &room_request(&id, "BYE", 5, None)
        + &refs(&["w", "ab", "af", "u0"]);
    let room = cvi.room(&call);

    // The refusal put the relay back: the added streams went.
    log_line(&cvi, &["refused offer undone"], Duration::from_secs(20));
    let content_a = cvi.relay_port(3, 1, 0);
    let bfcp_a = cvi.relay_port(3, 2, 0);
    let bfcp_b = cvi.relay_port(3, 2, 1);
    let got = content_crosses(&room_content, content_a, &meeting_content, 0x5eed_0004, 20);
    assert_eq!(got, 20, "content packets at the connector\n{}", cvi.logs());
    // BFCP datagrams both ways (the connector's once the room's latched).
    room_bfcp
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    meeting_bfcp
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let hello = bfcp_message(11, 9);
    room_bfcp.send_to(&hello, bfcp_a).unwrap();
    let mut b = [0u8; 64];
    let (n, from) = meeting_bfcp
        .recv_from(&mut b)
        .expect("BFCP at the connector");
    assert_eq!((&b[..n], from), (&hello[..], bfcp_b));
    let ack = bfcp_message(12, 9);
    meeting_bfcp.send_to(&ack, bfcp_b).unwrap();
    let (n, from) = room_bfcp.recv_from(&mut b).expect("BFCP at the room");
    assert_eq!((&b[..n], from), (&ack[..], bfcp_a));

    assert_ok("room system", &room.wait(LIMIT), &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    log_line(
        &cvi,
        &["CVI call ended", "the room system hung up"],
        Duration::from_secs(5),
    );
}

#[test]
fn the_meeting_shares_slides_and_the_room_gets_them() {
    let cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    let pcap = cvi.dir().join("meeting.pcap");
    write_pcap(&pcap, 0x2222_2222, 0xbb, 10);
    let (room_content, room_content_port) = local_udp();
    let (meeting_content, meeting_content_port) = local_udp();

    // The connector starts sharing: its own re-INVITE with a content stream.
    let share = audio_sdp("connector", 3) + &content_sdp(meeting_content_port, 12, "sendonly");
    let answered = ereg("m=video 4[0-9]{4} RTP/AVP 96", "body", "cv", false)
        + &ereg("a=recvonly", "body", "cr", false)
        + &ereg("c=IN IP4 127\\.0\\.0\\.2", "body", "ca", false);
    let end = format!(
        r#"  <pause milliseconds="500"/>
{reinvite}{bye}  {refs}
"#,
        reinvite = connector_reinvites(1, &share, &answered),
        bye = then_gateway_hangs_up(""),
        refs = refs(&["cv", "cr", "ca"]),
    );
    let (checks, references) = connector_checks(&id, true);
    let (connector, _) = cvi.connector(&checks, &references, &pcap, &end);

    // The room takes the meeting's offer (the content stream through the
    // relay) and answers recvonly at this test's socket.
    let offered = ereg("m=video 4[0-9]{4} RTP/AVP 96", "body", "rv", false)
        + &ereg("a=content:slides", "body", "rs", false)
        + &ereg("a=sendonly", "body", "rd", false)
        + &ereg("c=IN IP4 127\\.0\\.0\\.2", "body", "ra", false);
    let answer = audio_sdp("room101", 2) + &content_sdp(room_content_port, 3, "recvonly");
    let mut call = RoomCall::new(&id);
    call.keys = "  <pause milliseconds=\"100\"/>\n".into();
    call.then = answer_reinvite(&offered, "room101", &answer)
        + "  <pause milliseconds=\"4000\"/>\n"
        + &room_request(&id, "BYE", 2, None)
        + &refs(&["rv", "rs", "rd", "ra"]);
    let room = cvi.room(&call);

    let content_b = cvi.relay_port(2, 1, 1);
    let got = content_crosses(&meeting_content, content_b, &room_content, 0x5eed_0005, 30);
    assert_eq!(got, 30, "content packets at the room\n{}", cvi.logs());
    assert_ok("room system", &room.wait(LIMIT), &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
}
