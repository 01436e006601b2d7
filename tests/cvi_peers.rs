//! CVI gateway mode end to end: SIPp as the video room system (UDP and
//! TCP), SIPp as the connector (the Teams side, over TCP, playing media),
//! the real fedge binary between them with its relay, and the operator's
//! CLI and HTTP pages. Key presses are SIPp playing the RFC 4733
//! telephone-event recordings that Debian's sip-tester ships, and SIP INFO.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fedge::sip::framing::{StreamDecoder, StreamItem};
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge_testkit::cvi::*;
use fedge_testkit::lab::{ereg, refs, xml};
use fedge_testkit::peers::{Sipp, free_port, scenario};
use fedge_testkit::rtp::{udp_rx_queue, write_pcap};
use fedge_testkit::*;
use tokio_util::codec::Decoder;

/// 100 packets of 172 bytes: what a socket holds at least once all arrived.
const ALL_ARRIVED: u64 = 100 * 172;

/// The DTMF recordings SIPp plays carry payload type 101, the one our
/// offers map to telephone-event.
fn assert_pcap_payload_type_101() {
    let p =
        std::fs::read(format!("{DTMF_PCAPS}/dtmf_2833_5.pcap")).expect("sip-tester's DTMF pcaps");
    // pcap header 24, record header 16, Ethernet 14, IPv4 20, UDP 8.
    let rtp = &p[24 + 16 + 14 + 20 + 8..];
    assert_eq!(
        rtp[1] & 0x7f,
        101,
        "telephone-event payload type of the recording"
    );
}

#[test]
fn reception_takes_rfc4733_keys_refuses_a_wrong_id_and_joins_the_meeting() {
    assert_pcap_payload_type_101();
    let mut cvi = Cvi::start(&[]);
    let id = cvi.meeting(&["--subject", "Ward round"]);
    let room_pcap = cvi.dir().join("room.pcap");
    let meeting_pcap = cvi.dir().join("meeting.pcap");
    write_pcap(&room_pcap, 0x1111_1111, 0xaa, 100);
    write_pcap(&meeting_pcap, 0x2222_2222, 0xbb, 100);
    let (checks, references) = connector_checks(&id, true);
    let (connector, connector_media) =
        cvi.connector(&checks, &references, &meeting_pcap, &end_on_bye());

    let mut call = RoomCall::new("teams");
    // The reception answers with G.711 (the first offered, PCMU) and
    // telephone-event from the relay's range on the room side.
    call.checks = ereg("m=audio 4[0-9]{4} RTP/AVP 0 101", "body", "a", false)
        + &ereg("c=IN IP4 127\\.0\\.0\\.2", "body", "ac", false);
    call.references = refs(&["a", "ac"]);
    call.keys = keys_rtp("1111111111#")
        + "  <pause milliseconds=\"1500\"/>\n"
        + &keys_rtp(&format!("{id}#"));
    call.then = then_join("teams", call.media_port, 2, Some(&room_pcap), 4000);
    let room = cvi.room(&call);

    // While the meeting is up, the room's media reaches the connector
    // through the relay.
    wait_for(
        &cvi,
        "the room's media at the connector",
        Duration::from_secs(40),
        || udp_rx_queue(connector_media).unwrap_or(0) >= ALL_ARRIVED,
    );
    let live = admin_get(cvi.edge.admin, "/cvi");
    assert_eq!(live["calls"], 1, "{live}");
    assert!(live["ports_in_use"].as_u64().unwrap_or(0) >= 1, "{live}");

    let logs = cvi.logs();
    assert_ok("room system", &room.wait(LIMIT), &logs);
    assert_ok("connector", &connector.wait(LIMIT), &logs);
    let first = log_line(
        &cvi,
        &["conference ID entered", "\"attempt\":1"],
        Duration::from_secs(1),
    );
    assert!(first.contains("\"entered\":\"1111111111\""), "{first}");
    let second = log_line(
        &cvi,
        &["conference ID entered", "\"attempt\":2"],
        Duration::from_secs(1),
    );
    assert!(
        second.contains(&format!("\"entered\":\"{id}\"")),
        "{second}"
    );
    log_line(
        &cvi,
        &[
            "conference ID not accepted",
            "no meeting has conference ID 1111111111",
        ],
        Duration::from_secs(1),
    );
    log_line(
        &cvi,
        &["room system joined the meeting", &id],
        Duration::from_secs(1),
    );
    // The room's BYE ended both legs and freed the relay's ports.
    log_line(
        &cvi,
        &["CVI call ended", "the room system hung up"],
        Duration::from_secs(5),
    );
    wait_for(&cvi, "ports freed", Duration::from_secs(5), || {
        metric(cvi.edge.admin, "fedge_cvi_ports_in_use", &[]) == 0.0
    });
    assert_eq!(metric(cvi.edge.admin, "fedge_cvi_calls", &[]), 0.0);
    assert_eq!(
        metric(cvi.edge.admin, "fedge_cvi_connected_total", &[]),
        1.0
    );
    assert_eq!(
        metric(cvi.edge.admin, "fedge_cvi_not_found_total", &[]),
        1.0
    );
    // Prompts, keys, room and meeting media all crossed the relay.
    assert!(metric(cvi.edge.admin, "fedge_cvi_media_packets_total", &[]) >= 300.0);
    cvi.edge.assert_healthy();
}

#[test]
fn reception_takes_sip_info_keys_ended_by_a_pause_and_the_meeting_hangs_up() {
    let cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    let meeting_pcap = cvi.dir().join("meeting.pcap");
    write_pcap(&meeting_pcap, 0x2222_2222, 0xbb, 50);
    let (checks, references) = connector_checks(&id, true);
    // The meeting side ends the call this time.
    let (connector, _) = cvi.connector(&checks, &references, &meeting_pcap, &end_hang_up(1500));

    let mut call = RoomCall::new("teams");
    // A short wrong entry ended by the pause (application/dtmf), then the
    // right one with # (application/dtmf-relay).
    let (wrong, next) = keys_info("teams", "123", false, 2);
    let (right, next) = keys_info("teams", &format!("{id}#"), true, next);
    call.keys = wrong + "  <pause milliseconds=\"2500\"/>\n" + &right;
    // The re-INVITE, our answer; then the meeting's BYE reaches us.
    let join = then_join("teams", call.media_port, next, None, 0);
    let upto_bye = join
        .split("  <send retrans=\"500\">")
        .next()
        .unwrap()
        .to_string();
    call.then = upto_bye
        + &then_gateway_hangs_up(&ereg(
            "the meeting service hung up",
            "Reason:",
            "why",
            false,
        ))
        + &refs(&["why", "ra", "rc"]);
    let room = cvi.room(&call);
    let logs = || cvi.logs();
    assert_ok("room system", &room.wait(LIMIT), &logs());
    assert_ok("connector", &connector.wait(LIMIT), &logs());
    let first = log_line(
        &cvi,
        &["conference ID entered", "\"attempt\":1"],
        Duration::from_secs(1),
    );
    assert!(first.contains("\"entered\":\"123\""), "{first}");
    log_line(
        &cvi,
        &["room system joined the meeting", &id],
        Duration::from_secs(1),
    );
    log_line(
        &cvi,
        &["CVI call ended", "the meeting service hung up"],
        Duration::from_secs(5),
    );
}

#[test]
fn a_room_in_glare_gets_the_meetings_offer_again() {
    let cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    let pcap = cvi.dir().join("meeting.pcap");
    write_pcap(&pcap, 0x2222_2222, 0xbb, 10);
    let (checks, references) = connector_checks(&id, true);
    let (connector, _) = cvi.connector(&checks, &references, &pcap, &end_on_bye());
    let mut call = RoomCall::new("teams");
    let (keys, next) = keys_info("teams", &format!("{id}#"), true, 2);
    call.keys = keys;
    // The room is busy re-INVITEing itself: it answers the gateway's
    // re-INVITE 491; the gateway offers again and the call goes on. The
    // offers continue the session the reception's answer started (its o=
    // line, a higher version).
    let glare = r#"  <recv request="INVITE" crlf="true" timeout="30000">
    <action>
      <ereg regexp="o=[^ ]+ [0-9]+ [0-9]+ IN IP4 127\.0\.0\.2" search_in="body" check_it="true" assign_to="o1"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 491 Request Pending
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
"#;
    call.then =
        glare.to_string() + &then_join("teams", call.media_port, next, None, 500) + &refs(&["o1"]);
    assert_ok("room system", &cvi.room(&call).wait(LIMIT), &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    log_line(
        &cvi,
        &["room system joined the meeting", &id],
        Duration::from_secs(1),
    );
}

#[test]
fn three_wrong_ids_get_a_goodbye_and_a_bye() {
    let cvi = Cvi::start(&[]);
    let mut call = RoomCall::new("teams");
    let mut keys = String::new();
    let mut cseq = 2;
    for _ in 0..3 {
        let (k, n) = keys_info("teams", "9999999999#", true, cseq);
        keys.push_str(&k);
        keys.push_str("  <pause milliseconds=\"500\"/>\n");
        cseq = n;
    }
    call.keys = keys;
    call.then = then_gateway_hangs_up(&ereg("no valid conference ID", "Reason:", "why", false))
        + &refs(&["why"]);
    let room = cvi.room(&call);
    assert_ok("room system", &room.wait(LIMIT), &cvi.logs());
    for attempt in 1..=3 {
        log_line(
            &cvi,
            &[
                "conference ID entered",
                &format!("\"attempt\":{attempt}"),
                "9999999999",
            ],
            Duration::from_secs(1),
        );
    }
    assert_eq!(
        metric(cvi.edge.admin, "fedge_cvi_not_found_total", &[]),
        3.0
    );
    // The goodbye prompt played before the BYE: the player's packets
    // crossed the relay towards the room.
    let closed = log_line(
        &cvi,
        &["media session closed", "no valid conference ID"],
        Duration::from_secs(5),
    );
    let played: u64 = closed
        .split("\"packets_from_b\":")
        .nth(1)
        .map(|r| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packets_from_b in {closed}"));
    assert!(played > 0, "no prompt packets crossed the relay: {closed}");
}

#[test]
fn direct_dial_bridges_media_both_ways_and_marks_trusted_rooms() {
    // Trust by address over UDP is the operator's opt-in (spoofable).
    let cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    let room_pcap = cvi.dir().join("room.pcap");
    let meeting_pcap = cvi.dir().join("meeting.pcap");
    write_pcap(&room_pcap, 0x1111_1111, 0xaa, 100);
    write_pcap(&meeting_pcap, 0x2222_2222, 0xbb, 100);

    // <id>@domain from a trusted address, over UDP (trust_udp on).
    let (checks, references) = connector_checks(&id, true);
    let (connector, connector_media) =
        cvi.connector(&checks, &references, &meeting_pcap, &end_on_bye());
    let mut call = RoomCall::new(&id);
    call.checks = ereg("m=audio 4[0-9]{4} RTP/AVP 8 101", "body", "a", false);
    call.references = refs(&["a"]);
    call.keys = format!(
        "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n  <pause milliseconds=\"4000\"/>\n",
        xml(room_pcap.to_str().unwrap())
    );
    call.then = room_request(&id, "BYE", 2, None);
    let room_media = call.sipp_media;
    let room = cvi.room(&call);
    wait_for(&cvi, "media both ways", Duration::from_secs(20), || {
        udp_rx_queue(connector_media).unwrap_or(0) >= ALL_ARRIVED
            && udp_rx_queue(room_media).unwrap_or(0) >= ALL_ARRIVED
    });
    assert_ok("room system", &room.wait(LIMIT), &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    let closed = log_line(
        &cvi,
        &["media session closed", "the room system hung up"],
        Duration::from_secs(5),
    );
    for want in [
        "\"packets_from_a\":100",
        "\"packets_from_b\":100",
        "\"drops\":0",
    ] {
        assert!(closed.contains(want), "{want} not in {closed}");
    }

    // <tenant>.<id>@domain over TCP, from an address not trusted: no mark,
    // even though the room's From names a trusted domain (anyone can write
    // a From; a domain is trusted only from a verified TLS certificate).
    let cvi2 = Cvi::start(&[("trusted", "[\"10.0.0.0/8\", \"rooms.leeds.nhs.uk\"]")]);
    let id2 = cvi2.meeting(&[]);
    let (checks, references) = connector_checks(&id2, false);
    let (connector, _) = cvi2.connector(&checks, &references, &meeting_pcap, &end_on_bye());
    let user = format!("87654321.{id2}");
    let mut call = RoomCall::new(&user);
    call.tcp = true;
    call.keys = "  <pause milliseconds=\"500\"/>\n".into();
    call.then = room_request(&user, "BYE", 2, None);
    let room = cvi2.room(&call);
    assert_ok("room system over TCP", &room.wait(LIMIT), &cvi2.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi2.logs());
    log_line(
        &cvi2,
        &["calling the connector", "\"trusted\":false"],
        Duration::from_secs(1),
    );
}

#[test]
fn unknown_expired_and_withdrawn_meetings_get_one_answer() {
    let cvi = Cvi::start(&[]);
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expiring = cvi.meeting(&["--expires", &soon]);
    let unknown = if expiring.starts_with('1') {
        "2000000000"
    } else {
        "1000000000"
    };
    std::thread::sleep(Duration::from_millis(2500));

    let refused = |user: &str, status: &'static str, why: &str| {
        let mut call = RoomCall::new(user);
        call.status = status;
        call.checks = ereg(
            &format!("^ *399 cvi\\.fedge\\.test \".*{why}"),
            "Warning:",
            "w",
            false,
        );
        call.references = refs(&["w"]);
        let r = cvi.room(&call).wait(LIMIT);
        assert_ok(&format!("{user} refused {status}"), &r, &cvi.logs());
    };
    // Ended, unknown and withdrawn look alike to a caller (the log says
    // which): an answer must not tell a guesser that an ID once existed.
    let same = |id: &str| format!("no meeting can be joined with conference ID {id} at");
    refused(&expiring, "404", &same(&expiring));
    refused(unknown, "404", &same(unknown));
    refused(
        "sales",
        "404",
        "sales@cvi\\.fedge\\.test is not an address here",
    );
    // A withdrawn organiser's meetings stop working.
    let id = cvi.meeting(&[]);
    let out = cvi.cli_ok(&["cvi", "withdraw", "--email", ORGANISER]);
    assert!(out.contains("withdrawn from CVI"), "{out}");
    refused(&id, "404", &same(&id));
    for why in [
        "the meeting has ended",
        "no meeting has conference ID",
        "its organiser is no longer enrolled",
    ] {
        log_line(
            &cvi,
            &["conference ID not accepted", why],
            Duration::from_secs(2),
        );
    }
    assert_eq!(
        metric(cvi.edge.admin, "fedge_cvi_not_found_total", &[]),
        3.0
    );
    // And the page says so too.
    let (status, page) = http(cvi.edge.public, "GET", &format!("/cvi/{expiring}"));
    assert_eq!(status, 404, "{page}");
    assert!(
        page.contains("no meeting can be joined with this Video Conference ID"),
        "{page}"
    );
    assert!(
        !page.contains("ended") && !page.contains(&expiring[..4]),
        "{page}"
    );
    // New meetings for a withdrawn organiser are refused with the reason.
    let (code, _, err) = cvi.cli(&["cvi", "meeting", "create", "--organiser", ORGANISER]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CVI enrolment was withdrawn on"), "{err}");
    let (code, _, err) = cvi.cli(&["cvi", "meeting", "create", "--organiser", "nobody@nhs.net"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nobody@nhs.net is not enrolled for CVI"),
        "{err}"
    );
    let (code, _, err) = cvi.cli(&[
        "cvi",
        "meeting",
        "create",
        "--organiser",
        ORGANISER,
        "--expires",
        "tomorrow",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not an RFC 3339 time"), "{err}");
}

/// Reads RTP from `sock` until `until` holds or `within` passes: how many
/// packets carried `ssrc` with a payload of `fill` bytes, and how many others.
fn receive_rtp(
    sock: &UdpSocket,
    ssrc: u32,
    fill: u8,
    within: Duration,
    until: impl Fn(usize) -> bool,
) -> (usize, usize) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (mut ours, mut others) = (0, 0);
    let t0 = Instant::now();
    let mut b = [0u8; 2048];
    while t0.elapsed() < within && !until(ours) {
        if let Ok((n, _)) = sock.recv_from(&mut b) {
            if n >= 12 && b[8..12] == ssrc.to_be_bytes() && b[12..n].iter().all(|x| *x == fill) {
                ours += 1;
            } else if n > 12 {
                others += 1;
            }
        }
    }
    (ours, others)
}

/// RTP packet `i` of a PCMU stream: SSRC `ssrc`, every payload byte `fill`.
fn rtp_packet(i: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&i.to_be_bytes());
    p.extend_from_slice(&(u32::from(i) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

#[test]
fn the_test_call_plays_a_prompt_and_echoes_the_rooms_media() {
    let cvi = Cvi::start(&[]);
    // The room's media is this test's socket; SIPp does the signalling.
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut call = RoomCall::new("test_call");
    call.media_port = media.local_addr().unwrap().port();
    call.then = then_gateway_hangs_up(&ereg("the test call's time is up", "Reason:", "why", false))
        + &refs(&["why"]);
    let room = cvi.room(&call);
    // The relay's port for the room, from the operator's view.
    let mut relay_port = 0;
    wait_for(
        &cvi,
        "the test call's relay session",
        Duration::from_secs(10),
        || {
            let v = admin_get(cvi.edge.admin, "/cvi");
            relay_port = v["media"][0]["streams"][0][0]["port"].as_u64().unwrap_or(0) as u16;
            relay_port != 0
        },
    );
    let relay = SocketAddr::from(([127, 0, 0, 2], relay_port));
    let ssrc = 0x5eed_0001;
    let sender = media.try_clone().unwrap();
    let send = std::thread::spawn(move || {
        for i in 0..100u16 {
            sender.send_to(&rtp_packet(i, ssrc, 0x5a), relay).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let (echoed, prompt) = receive_rtp(&media, ssrc, 0x5a, Duration::from_secs(20), |n| n >= 100);
    send.join().unwrap();
    assert_eq!(
        echoed,
        100,
        "every packet came back (prompt packets: {prompt})\n{}",
        cvi.logs()
    );
    // The prompt (several seconds of PCMU) came first.
    assert!(prompt > 100, "prompt packets: {prompt}");
    assert_ok("room system", &room.wait(LIMIT), &cvi.logs());
    assert_eq!(
        metric(cvi.edge.admin, "fedge_cvi_test_calls_total", &[]),
        1.0
    );
}

#[test]
fn a_full_node_answers_503_with_retry_after_and_drains_on_request() {
    let cvi = Cvi::start(&[("max_calls", "1"), ("test_call_time", "\"6s\"")]);
    // One call fills the node.
    let mut first = RoomCall::new("test_call");
    first.then = then_gateway_hangs_up("");
    let held = cvi.room(&first);
    wait_for(&cvi, "the first call up", Duration::from_secs(10), || {
        metric(cvi.edge.admin, "fedge_cvi_calls", &[]) == 1.0
            && metric(cvi.edge.admin, "fedge_cvi_ports_in_use", &[]) >= 1.0
    });
    let mut second = RoomCall::new("test_call");
    second.status = "503";
    second.checks = ereg("^ *30$", "Retry-After:", "ra", false)
        + &ereg("carries its maximum of 1 calls", "Warning:", "w", false);
    second.references = refs(&["ra", "w"]);
    assert_ok("second call", &cvi.room(&second).wait(LIMIT), &cvi.logs());
    assert_eq!(
        metric(cvi.edge.admin, "fedge_cvi_refused_full_total", &[]),
        1.0
    );
    assert_ok("first call", &held.wait(LIMIT), &cvi.logs());

    // Draining: calls up finish, new ones are refused, --off resumes.
    // The admin listener and the database (the CLI authenticates through it).
    let cli = cvi.edge.cli_config("admin.toml");
    let out = fedge_ok(&cli, &["cvi", "drain"]);
    assert!(out.contains("CVI gateway draining"), "{out}");
    let mut third = RoomCall::new("test_call");
    third.status = "503";
    third.checks = ereg("^ *60$", "Retry-After:", "ra", false)
        + &ereg("this gateway is draining", "Warning:", "w", false);
    third.references = refs(&["ra", "w"]);
    assert_ok(
        "call while draining",
        &cvi.room(&third).wait(LIMIT),
        &cvi.logs(),
    );
    assert_eq!(metric(cvi.edge.admin, "fedge_cvi_draining", &[]), 1.0);
    let status = fedge_ok(&cli, &["cvi", "status"]);
    assert!(
        status.contains("draining") && status.contains("1 refused full"),
        "{status}"
    );
    let out = fedge_ok(&cli, &["cvi", "drain", "--off"]);
    assert!(out.contains("taking calls again"), "{out}");
    assert_eq!(metric(cvi.edge.admin, "fedge_cvi_draining", &[]), 0.0);
}

#[test]
fn a_database_failure_is_answered_503_not_404() {
    let cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    // The meetings table goes away under the running edge.
    let db = cvi.dir().join("fedge.db");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            sqlx::query("ALTER TABLE cvi_meetings RENAME TO cvi_meetings_gone")
                .execute(&mut c)
                .await
                .unwrap();
        });
    let mut call = RoomCall::new(&id);
    call.status = "503";
    call.checks = ereg("the meeting could not be looked up", "Warning:", "w", false);
    call.references = refs(&["w"]);
    assert_ok("room system", &cvi.room(&call).wait(LIMIT), &cvi.logs());
    assert_eq!(
        metric(cvi.edge.admin, "fedge_cvi_not_found_total", &[]),
        0.0
    );
}

#[test]
fn the_connectors_failures_reach_the_room_system() {
    // The meeting service refuses: its 403 reaches the room with the reason.
    let cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    let sc = scenario(
        cvi.dir(),
        "cvi_connector_refuse_uas.xml",
        &[("RESPONSE", "403 Forbidden")],
    );
    let mut connector = Sipp::spawn(cvi.dir(), &sc, cvi.connector, None, &["-t", "t1"]);
    cvi.wait_connector(&mut connector);
    let mut call = RoomCall::new(&id);
    call.status = "403";
    call.checks = ereg(
        "the meeting service answered 403 Forbidden",
        "Warning:",
        "w",
        false,
    );
    call.references = refs(&["w"]);
    assert_ok("room system", &cvi.room(&call).wait(LIMIT), &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    // Its server error becomes 503; nobody listening is 503 too.
    let sc = scenario(
        cvi.dir(),
        "cvi_connector_refuse_uas.xml",
        &[("RESPONSE", "500 Server Internal Error")],
    );
    let mut connector = Sipp::spawn(cvi.dir(), &sc, cvi.connector, None, &["-t", "t1"]);
    cvi.wait_connector(&mut connector);
    call.status = "503";
    call.checks = ereg("the meeting service answered 500", "Warning:", "w", false);
    assert_ok("room system", &cvi.room(&call).wait(LIMIT), &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    call.checks = ereg("the connector cannot be reached", "Warning:", "w", false);
    assert_ok("room system", &cvi.room(&call).wait(LIMIT), &cvi.logs());
    assert_eq!(
        metric(cvi.edge.admin, "fedge_cvi_connector_failed_total", &[]),
        3.0
    );
    assert_eq!(metric(cvi.edge.admin, "fedge_cvi_calls", &[]), 0.0);
    assert_eq!(metric(cvi.edge.admin, "fedge_cvi_ports_in_use", &[]), 0.0);
}

#[test]
fn mid_call_offers_are_answered_and_new_streams_reach_the_connector() {
    let cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    let pcap = cvi.dir().join("meeting.pcap");
    write_pcap(&pcap, 0x2222_2222, 0xbb, 10);
    let (checks, references) = connector_checks(&id, true);
    // The room's new video stream is offered to the connector (through
    // the relay), which declines it: port 0 reaches the room.
    let offered = ereg("m=video 4[0-9]{4} RTP/AVP 96", "body", "ov", false)
        + &ereg("c=IN IP4 127\\.0\\.0\\.2", "body", "oc", false);
    let declined = "      v=0\n      o=connector 2 3 IN IP[local_ip_type] [local_ip]\n      s=-\n      c=IN IP[media_ip_type] [media_ip]\n      t=0 0\n      m=audio [media_port] RTP/AVP 8 101\n      a=rtpmap:8 PCMA/8000\n      a=rtpmap:101 telephone-event/8000\n      a=sendrecv\n      m=video 0 RTP/AVP 96\n";
    let end = format!(
        "{}{}  {}\n",
        answer_reinvite(&offered, "meeting", declined),
        end_on_bye(),
        refs(&["ov", "oc"]),
    );
    let (connector, _) = cvi.connector(&checks, &references, &pcap, &end);
    let audio = |v: u32| {
        format!(
            "      v=0\n      o=room101 1 {v} IN IP[local_ip_type] [local_ip]\n      s=-\n      c=IN IP[media_ip_type] [media_ip]\n      t=0 0\n      m=audio [media_port] RTP/AVP 8 101\n      a=rtpmap:8 PCMA/8000\n      a=rtpmap:101 telephone-event/8000\n      a=sendrecv\n"
        )
    };
    let with_video = audio(4) + "      m=video 9 RTP/AVP 96\n      a=rtpmap:96 H264/90000\n";
    let relayed = |var: &str| ereg("m=audio 4[0-9]{4} RTP/AVP", "body", var, false);
    let mut call = RoomCall::new(&id);
    call.keys = "  <pause milliseconds=\"300\"/>\n".into();
    // A session refresh by re-INVITE and by UPDATE: answered with the
    // relay's SDP; then a re-INVITE adding video: the connector's answer.
    call.then = room_offer(&id, "INVITE", 2, &audio(2), 200, &relayed("re"))
        + &room_offer(&id, "UPDATE", 3, &audio(3), 200, &relayed("up"))
        + &room_offer(
            &id,
            "INVITE",
            4,
            &with_video,
            200,
            &(relayed("va") + &ereg("m=video 0 RTP/AVP 96", "body", "v0", false)),
        )
        + &room_request(&id, "BYE", 5, None)
        + &refs(&["re", "up", "va", "v0"]);
    assert_ok("room system", &cvi.room(&call).wait(LIMIT), &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    log_line(
        &cvi,
        &["CVI call ended", "the room system hung up"],
        Duration::from_secs(2),
    );
}

/// A connector over TCP in the test (SIPp drops its calls when a TCP
/// connection closes): answers INVITE and BYE, and reports each request
/// with the number of the connection it came on.
fn tcp_connector(listener: std::net::TcpListener) -> std::thread::JoinHandle<Vec<(usize, String)>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let t0 = Instant::now();
        listener.set_nonblocking(true).unwrap();
        let mut conn_no = 0;
        while t0.elapsed() < Duration::from_secs(30) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            conn_no += 1;
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut dec = StreamDecoder::new(Limits::default());
            let mut buf = BytesMut::new();
            let mut chunk = [0u8; 4096];
            loop {
                match conn.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(_) if t0.elapsed() < Duration::from_secs(30) => continue,
                    Err(_) => break,
                }
                while let Ok(Some(StreamItem::Message(m))) = dec.decode(&mut buf) {
                    let Some(method) = m.method().map(|x| x.as_str().to_string()) else {
                        continue;
                    };
                    seen.push((conn_no, method.clone()));
                    let mut r = ResponseBuilder::new(&m, 200).to_tag("meeting");
                    match method.as_str() {
                        "INVITE" => {
                            r = r.header("Contact", format!("<sip:meeting@{};transport=tcp>", listener.local_addr().unwrap()))
                                .body("application/sdp", Bytes::from_static(b"v=0\r\no=m 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"));
                        }
                        "BYE" => {}
                        _ => continue,
                    }
                    let _ = conn.write_all(&r.build());
                    if method == "BYE" {
                        return seen;
                    }
                }
            }
        }
        seen
    })
}

#[test]
fn a_closed_connector_connection_is_opened_again_for_the_bye() {
    // fedge closes idle connections after 2 s here: the one to the
    // connector closes while the call is up, and the room's hang-up must
    // still reach the connector, on a new connection.
    let cvi = Cvi::start_with(&[], "idle_timeout = \"2s\"");
    let id = cvi.meeting(&[]);
    let listener = std::net::TcpListener::bind(("127.0.0.1", cvi.connector)).unwrap();
    let connector = tcp_connector(listener);
    let mut call = RoomCall::new(&id);
    call.keys = "  <pause milliseconds=\"4000\"/>\n".into();
    call.then = room_request(&id, "BYE", 2, None);
    assert_ok("room system", &cvi.room(&call).wait(LIMIT), &cvi.logs());
    let seen = connector.join().unwrap();
    assert_eq!(
        seen,
        vec![
            (1, "INVITE".to_string()),
            (1, "ACK".to_string()),
            (2, "BYE".to_string())
        ],
        "{}",
        cvi.logs()
    );
}

#[test]
fn a_hang_up_towards_a_udp_connector_holds_up_no_other_call() {
    // Room systems and the connector share the gateway's UDP socket: the
    // BYE the gateway sends the connector when a room hangs up must not
    // keep that socket from being read while it waits for the answer.
    let cvi = Cvi::start(&[(
        "connector",
        "\"sip:{id}@connector.fedge.test;transport=udp\"",
    )]);
    let id = cvi.meeting(&[]);
    let pcap = cvi.dir().join("meeting.pcap");
    write_pcap(&pcap, 0x2222_2222, 0xbb, 10);
    let checks = ereg(
        &format!("^INVITE sip:{id}@connector\\.fedge\\.test;transport=udp SIP/2\\.0"),
        "msg",
        "ruri",
        false,
    );
    let (connector, _) = cvi.connector(&checks, &refs(&["ruri"]), &pcap, &end_on_bye());
    let mut call = RoomCall::new(&id);
    call.keys = "  <pause milliseconds=\"300\"/>\n".into();
    call.then = room_request(&id, "BYE", 2, None);
    assert_ok("room system", &cvi.room(&call).wait(LIMIT), &cvi.logs());
    assert_ok("connector over UDP", &connector.wait(LIMIT), &cvi.logs());
    // At once, another room's test call: answered and ACKed over the same
    // socket, each step within SIPp's 5 s receive limit.
    let mut test = RoomCall::new("test_call");
    test.then = then_gateway_hangs_up("");
    test.args = vec!["-recv_timeout".into(), "5000".into()];
    assert_ok("test call", &cvi.room(&test).wait(LIMIT), &cvi.logs());
    log_line(
        &cvi,
        &["CVI call ended", "the room system hung up"],
        Duration::from_secs(1),
    );
}

#[test]
fn a_room_hanging_up_while_the_meeting_rings_cancels_both_legs() {
    let mut cvi = Cvi::start(&[]);
    let id = cvi.meeting(&[]);
    // The connector rings until it is CANCELled, answers 487 and wants
    // the gateway's ACK for it.
    let sc = scenario(cvi.dir(), "cvi_connector_ring_uas.xml", &[]);
    let mut connector = Sipp::spawn(cvi.dir(), &sc, cvi.connector, None, &["-t", "t1"]);
    cvi.wait_connector(&mut connector);
    // The room, behind a record-routing SBC, hears the ringing (with its
    // Record-Route echoed: the 180 starts the dialog) and hangs up.
    let sc = scenario(
        cvi.dir(),
        "cvi_room_cancel_uac.xml",
        &[
            ("USER", &id),
            ("DOMAIN", DOMAIN),
            (
                "CHECKS",
                &ereg(
                    "<sip:sbc\\.rooms\\.leeds\\.nhs\\.uk;lr>",
                    "Record-Route:",
                    "rr",
                    false,
                ),
            ),
            ("REFERENCES", &refs(&["rr"])),
        ],
    );
    let room = Sipp::spawn(
        cvi.dir(),
        &sc,
        free_port(false),
        Some(cvi.addr()),
        // -aa: it answers the gateway's OPTIONS probe of a new UDP source.
        &["-mp", &free_port(false).to_string(), "-aa"],
    );
    assert_ok("room system", &room.wait(LIMIT), &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    log_line(
        &cvi,
        &["CVI call ended", "cancelled by the room system"],
        Duration::from_secs(2),
    );
    assert_eq!(metric(cvi.edge.admin, "fedge_cvi_calls", &[]), 0.0);
    assert_eq!(metric(cvi.edge.admin, "fedge_cvi_ports_in_use", &[]), 0.0);
    cvi.edge.assert_healthy();
}

#[test]
fn the_instructions_page_is_served_over_http() {
    let cvi = Cvi::start(&[]);
    // The subject shows only where the organiser chose to publish it.
    let hidden = cvi.meeting(&["--subject", "Patient X review"]);
    let (status, page) = http(cvi.edge.public, "GET", &format!("/cvi/{hidden}"));
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("Patient X"), "{page}");
    let id = cvi.meeting(&["--subject", "MDT <weekly>", "--public-subject"]);
    let (status, page) = http(cvi.edge.public, "GET", &format!("/cvi/{id}"));
    assert_eq!(status, 200, "{page}");
    let spaced = format!("{} {} {}", &id[..4], &id[4..7], &id[7..]);
    for want in [
        format!("<code>{id}@{DOMAIN}</code>"),
        format!("<code>teams@{DOMAIN}</code>"),
        format!("<code>87654321.{id}@{DOMAIN}</code>"),
        format!("<code>test_call@{DOMAIN}</code>"),
        spaced,
        "MDT &lt;weekly&gt;".to_string(),
    ] {
        assert!(page.contains(&want), "{want} not in {page}");
    }
    let (status, page) = http(cvi.edge.public, "GET", "/cvi/1234567890");
    assert_eq!(status, 404, "{page}");
    let not_found = "no meeting can be joined with this Video Conference ID";
    assert!(
        page.contains("Meeting not found") && page.contains(not_found),
        "{page}"
    );
    let (status, page2) = http(cvi.edge.public, "GET", "/cvi/12345");
    assert_eq!(status, 404, "{page2}");
    assert_eq!(page, page2, "one page for every ID that cannot be joined");
}

/// A TLS client without a certificate (room systems seldom have one).
async fn tls_options(addr: SocketAddr, ca: &Path) -> String {
    use fedge::sip::transport::tls::{load_roots, provider};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let roots = load_roots(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(EDGE_FQDN).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS without a client certificate");
    let req = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-tls1\r\nMax-Forwards: 70\r\nFrom: <sip:room@rooms.example>;tag=1\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: tls-options-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("an answer over TLS")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn room_systems_may_use_tls_without_a_client_certificate() {
    let cvi = Cvi::start(&[]);
    let addr = cvi.edge.cvi_tls.unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(tls_options(addr, &cvi.pki.ca_file));
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("Allow: INVITE, ACK, BYE, CANCEL, INFO, OPTIONS, UPDATE"),
        "{answer}"
    );
}

#[test]
fn csv_enrolment_checks_every_row_and_changes_nothing_on_a_bad_file() {
    let pki = Pki::new();
    let config = pki.path().join("fedge.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/fedge.db\"\n[cvi]\norganiser_domains = [\"nhs.net\"]\n",
            pki.path().display()
        ),
    )
    .unwrap();
    let enrol = |csv: &PathBuf, partial: bool| {
        let mut args = vec![
            "cvi",
            "enrol",
            "--org",
            "Leeds Teaching Hospitals",
            "--ods",
            "RR8",
            "--teams-enabled",
            "--csv",
            csv.to_str().unwrap(),
        ];
        if partial {
            args.push("--partial");
        }
        fedge_cli(&config, &args)
    };
    let enrolled = |email: &str| fedge_cli(&config, &["cvi", "show", "--email", email]).0 == 0;
    let write = |name: &str, text: &str| {
        let p = pki.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };

    // A bad file: its lines named, nothing enrolled.
    let bad = write(
        "bad.csv",
        "EmailAddress\r\nann.smith@nhs.net\r\nnot-an-address\r\nbob.jones@nhs.net\r\nbob@gmail.com\r\nann.smith@nhs.net\r\n",
    );
    let (code, out, err) = enrol(&bad, false);
    assert_eq!(code, 2, "{out}{err}");
    for want in [
        "bad.csv: line 3: \"not-an-address\" is not an email address",
        "bad.csv: line 5: bob@gmail.com is not in a domain enrolled here (nhs.net)",
        "bad.csv: line 6: ann.smith@nhs.net appears twice",
        "3 bad row(s); nothing enrolled (--partial enrols the good rows)",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert!(!enrolled("ann.smith@nhs.net") && !enrolled("bob.jones@nhs.net"));
    // --partial enrols the good rows.
    let (code, out, err) = enrol(&bad, true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 organiser(s) enrolled"), "{out}");
    assert!(enrolled("ann.smith@nhs.net") && enrolled("bob.jones@nhs.net"));

    // A good file.
    let good = write(
        "good.csv",
        "EmailAddress\ncarol.white@nhs.net\n\"dave.green@leeds.nhs.net\"\n",
    );
    let (code, out, err) = enrol(&good, false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 organiser(s) enrolled"), "{out}");
    assert!(enrolled("carol.white@nhs.net") && enrolled("dave.green@leeds.nhs.net"));
    let shown = fedge_ok(&config, &["cvi", "show", "--email", "carol.white@nhs.net"]);
    assert!(
        shown.contains("enrolled (Leeds Teaching Hospitals, RR8; enrolled ")
            && shown.contains("by tester"),
        "{shown}"
    );

    // Files of the wrong shape, and a request without the Teams confirmation.
    let two = write("two.csv", "EmailAddress,Name\nerin@nhs.net,Erin\n");
    let (code, _, err) = enrol(&two, false);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 1: the file must have exactly one column, headed EmailAddress"),
        "{err}"
    );
    let header = write("header.csv", "Email\nerin@nhs.net\n");
    let (code, _, err) = enrol(&header, false);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 1: the column must be headed EmailAddress"),
        "{err}"
    );
    let (code, _, err) = fedge_cli(
        &config,
        &[
            "cvi",
            "enrol",
            "--org",
            "Leeds",
            "--ods",
            "RR8",
            "--email",
            "erin@nhs.net",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--teams-enabled must confirm"), "{err}");
    assert!(!enrolled("erin@nhs.net"));
    // Withdrawal.
    let out = fedge_ok(
        &config,
        &["cvi", "withdraw", "--email", "carol.white@nhs.net"],
    );
    assert!(
        out.contains("carol.white@nhs.net withdrawn from CVI"),
        "{out}"
    );
    let (code, _, err) = fedge_cli(
        &config,
        &["cvi", "withdraw", "--email", "carol.white@nhs.net"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("was already withdrawn"), "{err}");
}

#[test]
fn the_firewall_ruleset_covers_the_cvi_listeners_and_loads_in_nft() {
    let pki = Pki::new();
    let config = pki.path().join("fedge.toml");
    std::fs::write(
        &config,
        "[media]\nenabled = true\n[cvi]\nenabled = true\nlisten = \"192.0.2.10:5060\"\nlisten_tls = \"192.0.2.10:5061\"\nmedia_address = \"192.0.2.10\"\nconnector_media_address = \"192.0.2.11\"\n",
    )
    .unwrap();
    let rules = fedge_ok(&config, &["firewall"]);
    for want in [
        "ip daddr 192.0.2.10 udp dport 5060 accept",
        "ip daddr 192.0.2.10 tcp dport 5060 accept",
        "ip daddr 192.0.2.10 tcp dport 5061 accept",
        "ip daddr 192.0.2.10 udp dport 40000-49999 accept",
        "ip daddr 192.0.2.10 tcp dport 40000-49999 accept",
        "ip daddr 192.0.2.11 udp dport 40000-49999 accept",
        "ip daddr 127.0.0.1 tcp dport 5061 accept",
        "udp dport 50000-59999 accept",
    ] {
        assert!(rules.contains(want), "{want:?} not in\n{rules}");
    }
    // nftables itself accepts it (checked, not loaded).
    let path = pki.path().join("fedge.nft");
    std::fs::write(&path, &rules).unwrap();
    let out = std::process::Command::new("nft")
        .args(["-c", "-f"])
        .arg(&path)
        .output()
        .expect("nft is installed (the test command installs nftables)");
    assert!(
        out.status.success(),
        "nft -c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
