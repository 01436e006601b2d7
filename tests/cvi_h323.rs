//! H.323 room systems through the CVI gateway, end to end: the Python room
//! system (tests/h323/room.py, on pycrate's ASN.1 codec, independent of
//! fedge's) calls the real fedge binary over TCP; SIPp is the connector
//! (the Teams side) over TCP, playing media; every call's wire is captured
//! on loopback and decoded by tshark's H.225/H.245 dissectors, which must
//! find nothing malformed. Also the H.323 parts of `fedge firewall` and
//! `fedge dns zone` (nft and named-checkzone accept them).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fedge_testkit::baresip::Capture;
use fedge_testkit::cvi::*;
use fedge_testkit::h323::RoomResult;
use fedge_testkit::lab::ereg;
use fedge_testkit::rtp::write_pcap;
use fedge_testkit::*;

#[test]
fn direct_dial_with_fast_start_g711_and_h264_both_ways_and_the_room_hangs_up() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let (connector, media) = cvi.h323_connector(&id, true, &end_on_bye());
    let cap = cvi.capture("direct.pcap");
    let room = h323_room(&cvi, &id, &["--video", "--after", "5", "--timeout", "30"]);
    // The room's audio and video reach the connector through the relay
    // (SIPp does not read its media sockets: what arrived waits there).
    cvi.media_at_connector(media, true, Duration::from_secs(20));
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    // Hang-up from the room ended the connector's leg with a BYE.
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    for want in ["callProceeding", "connect"] {
        assert!(
            room.received().iter().any(|m| m == want),
            "{want}: {:?}",
            room.received()
        );
    }
    // And the connector's PCMA reached the room.
    assert!(room.rtp_received(8) > 20, "{:#}", room.json);
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "callProceeding", "connect", "releaseComplete"],
        &[
            "terminalCapabilitySet",
            "terminalCapabilitySetAck",
            "masterSlaveDetermination",
            "masterSlaveDeterminationAck",
            "endSessionCommand",
        ],
    );
}

#[test]
fn the_reception_refuses_a_wrong_id_then_joins_by_user_input() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let (connector, _) = cvi.h323_connector(&id, false, &end_on_bye());
    let cap = cvi.capture("reception.pcap");
    let digits = format!("0000000001#{id}#");
    let room = h323_room(
        &cvi,
        &format!("teams@{DOMAIN}"),
        &[
            "--alias-kind",
            "url",
            "--digits",
            &digits,
            "--digit-gap",
            "150",
            "--after",
            "6",
            "--timeout",
            "40",
        ],
    )
    .wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    assert!(
        cvi.logs().contains("0000000001"),
        "the wrong ID was refused and logged"
    );
    // The reception's prompts (the room's first codec, PCMU) and then the
    // meeting's media (the connector plays PCMA) reached the room.
    assert!(room.rtp_received(0) > 20, "{:#}", room.json);
    assert!(room.rtp_received(8) > 20, "{:#}", room.json);
    cvi.wire_check_h245(cap, &room, &["setup", "connect"], &["userInput"]);
}

#[test]
fn a_bye_from_the_connector_ends_the_room_with_cause_16() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let (connector, _) = cvi.h323_connector(&id, false, &end_hang_up(2500));
    let cap = cvi.capture("gateway_hangup.pcap");
    let room = h323_room(&cvi, &id, &["--hangup", "gateway", "--timeout", "30"]).wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    assert_eq!(room.cause(), Some(16), "{:#}", room.json);
    assert!(
        room.received()
            .iter()
            .any(|m| m == "h245:endSessionCommand"),
        "{:?}",
        room.received()
    );
    cvi.wire_check_h245(cap, &room, &["releaseComplete"], &["endSessionCommand"]);
}

#[test]
fn a_full_node_refuses_with_cause_34_and_gateway_resources() {
    let cvi = Cvi::start_h323(&[("max_calls", "1")]);
    // The first call waits at the reception, holding the node's one call.
    let first = h323_room(
        &cvi,
        "teams",
        &["--alias-kind", "h323id", "--after", "8", "--timeout", "20"],
    );
    cvi.edge
        .wait_log(&["H.323 call", "teams"], Duration::from_secs(10))
        .expect("the first call");
    std::thread::sleep(Duration::from_millis(500));
    let cap = cvi.capture("full.pcap");
    let second = h323_room(
        &cvi,
        "teams",
        &[
            "--alias-kind",
            "h323id",
            "--hangup",
            "gateway",
            "--timeout",
            "10",
        ],
    )
    .wait(LIMIT);
    assert_eq!(
        second.cause(),
        Some(34),
        "{:#}\n{}",
        second.json,
        cvi.logs()
    );
    assert_eq!(second.reason().as_deref(), Some("gatewayResources"));
    cvi.wire_check(cap, &second, &["releaseComplete"]);
    let first = first.wait(LIMIT);
    assert_room(&first, &cvi.logs());
}

#[test]
fn a_separate_h245_channel_carries_the_digits() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let (connector, _) = cvi.h323_connector(&id, false, &end_on_bye());
    let cap = cvi.capture("separate.pcap");
    let digits = format!("{id}#");
    let room = h323_room(
        &cvi,
        "teams",
        &[
            "--alias-kind",
            "h323id",
            "--separate-h245",
            "--digits",
            &digits,
            "--digits-via",
            "signal",
            "--after",
            "4",
            "--timeout",
            "40",
        ],
    )
    .wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    assert_eq!(room.json["h245"]["mode"], "separate", "{:#}", room.json);
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "connect"],
        &["terminalCapabilitySet", "userInput"],
    );
}

/// Sends `bytes` on a new call signalling connection; what came back
/// before the gateway closed it (bounded).
fn send_raw(to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(to).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn malformed_input_is_refused_and_the_next_call_works() {
    let cvi = Cvi::start_h323(&[]);
    // A TPKT header with a bad version: closed.
    let back = send_raw(cvi.h323_listener("tcp"), b"\x07\x00\x00\x08garbage!");
    assert!(back.is_empty(), "{back:?}");
    // A TPKT frame longer than 64 KiB can be (length 0xffff, then less):
    // a Q.931 Setup whose user-user PER is cut short gets Release
    // Complete with cause 100 (or 95).
    let mut q931 = vec![0x08, 0x02, 0x00, 0x05, 0x05];
    q931.extend_from_slice(&[0x7e, 0x00, 0x04, 0x05, 0x20, 0x88, 0x06]);
    let mut frame = vec![3, 0, 0, (4 + q931.len()) as u8];
    frame.extend_from_slice(&q931);
    let back = send_raw(cvi.h323_listener("tcp"), &frame);
    assert!(
        back.len() > 4,
        "a Release Complete: {back:?}\n{}",
        cvi.logs()
    );
    // After TPKT (4) and the Q.931 header (5): the Cause IE (0x08, length,
    // coding/location, cause).
    let cause_at = back
        .get(9..)
        .and_then(|b| b.windows(2).position(|w| w[0] == 0x08 && w[1] == 0x02))
        .map(|i| i + 9);
    let cause = cause_at.and_then(|i| back.get(i + 3)).map(|c| c & 0x7f);
    assert!(matches!(cause, Some(100) | Some(95)), "{back:02x?}");
    assert!(cvi.logs().contains("malformed"), "logged");
    // The node still takes calls.
    let id = cvi.meeting(&[]);
    let (connector, _) = cvi.h323_connector(&id, false, &end_on_bye());
    let room = h323_room(&cvi, &id, &["--after", "2"]).wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
}

/// A RAS client on pycrate (tests/h323/h323msg.py's aligned PER): sends
/// an LRQ for each alias, then a GRQ, and prints each answer's name,
/// sequence number and call signalling address or reject reason.
const RAS_CLIENT: &str = r#"
import socket, sys
sys.path.insert(0, sys.argv[1])
import h323msg as m
from pycrate_asn1dir import H225
R = H225.H323_MESSAGES.RasMessage
host, port = sys.argv[2].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(3)
me = s.getsockname()
def ask(v):
    R.set_val(v)
    s.sendto(R.to_aper(), (host, int(port)))
    data, _ = s.recvfrom(4096)
    R.from_aper(data)
    name, body = R.get_val()
    extra = ""
    if name == "locationConfirm":
        extra = " " + m.transport_str(body["callSignalAddress"])
    if "rejectReason" in body:
        extra = " " + body["rejectReason"][0]
    return "%s %d%s" % (name, body["requestSeqNum"], extra)
for alias in sys.argv[3:]:
    print(ask(("locationRequest", {"requestSeqNum": 7, "destinationInfo": [("dialledDigits", alias)],
                                    "replyAddress": m.transport(*me)})))
print(ask(("gatekeeperRequest", {"requestSeqNum": 9, "protocolIdentifier": m.H225_PROTOCOL,
                                  "rasAddress": m.transport(*me), "endpointType": m.endpoint()})))
"#;

#[test]
fn ras_confirms_what_this_node_serves_and_refuses_to_be_a_gatekeeper() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let script = cvi.dir().join("ras.py");
    std::fs::write(&script, RAS_CLIENT).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(workspace_root().join("tests/h323"))
        .arg(cvi.h323_listener("ras").to_string())
        .args([id.as_str(), "12345"])
        .output()
        .expect("python3 runs the RAS client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("locationConfirm 7 {}", cvi.h323_listener("tcp")).as_str(),
            "locationReject 7 requestDenied",
            "gatekeeperReject 9 resourceUnavailable",
        ],
        "{}",
        cvi.logs()
    );
}

#[test]
fn firewall_and_dns_open_and_publish_h323_only_when_on() {
    let pki = Pki::new();
    let config = pki.path().join("fedge.toml");
    let base = "[dns]\ncvi_domain = \"cvi.fedge.test\"\naddresses = [\"192.0.2.10\"]\n\
                [cvi]\nenabled = true\nlisten = \"192.0.2.10:5060\"\nmedia_address = \"192.0.2.10\"\n";
    std::fs::write(&config, base).unwrap();
    let off = fedge_ok(&config, &["firewall"]);
    assert!(!off.contains("H.323"), "{off}");
    assert!(!fedge_ok(&config, &["dns", "zone"]).contains("_h323"));
    std::fs::write(
        &config,
        format!(
            "{base}h323 = true\nh323_listen = \"192.0.2.10:1720\"\nh323_ras = \"192.0.2.10:1719\"\n"
        ),
    )
    .unwrap();
    let rules = fedge_ok(&config, &["firewall"]);
    for want in [
        "ip daddr 192.0.2.10 tcp dport 1720 accept",
        "ip daddr 192.0.2.10 udp dport 1719 accept",
        "ip daddr 192.0.2.10 tcp dport 33000-39999 accept",
    ] {
        assert!(rules.contains(want), "{want:?} not in\n{rules}");
    }
    let path = pki.path().join("fedge.nft");
    std::fs::write(&path, &rules).unwrap();
    let out = Command::new("nft")
        .args(["-c", "-f"])
        .arg(&path)
        .output()
        .expect("nft is installed");
    assert!(
        out.status.success(),
        "nft -c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zones = fedge_ok(&config, &["dns", "zone"]);
    let cvi_zone = zones
        .split("; published by fedge for ")
        .find(|z| z.starts_with("cvi.fedge.test"))
        .unwrap_or_else(|| panic!("{zones}"));
    for want in [
        "_h323cs._tcp.cvi.fedge.test. 3600 IN SRV 0 0 1720 sip.cvi.fedge.test.",
        "_h323ls._udp.cvi.fedge.test. 3600 IN SRV 0 0 1719 sip.cvi.fedge.test.",
    ] {
        assert!(cvi_zone.contains(want), "{want} not in {cvi_zone}");
    }
    let file = pki.path().join("cvi.zone");
    std::fs::write(&file, format!("; {cvi_zone}")).unwrap();
    let check = Command::new("named-checkzone")
        .arg("cvi.fedge.test")
        .arg(&file)
        .output()
        .expect("named-checkzone is installed");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// Reads TPKT frames from `s` until one holds a Q.931 message of type
/// `kind` (bounded); returns it.
fn read_until(s: &mut TcpStream, kind: u8) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        while buf.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            if len < 4 || buf.len() < len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..len).collect();
            if frame.get(8) == Some(&kind) {
                return Some(frame);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    None
}

/// A Setup to the reception from a raw client of fedge's own codec, with
/// fast start PCMU (receive only) and `tunnelling`; returns the
/// connection and the media socket it offered.
fn raw_setup(cvi: &Cvi, tunnelling: bool) -> (TcpStream, std::net::UdpSocket) {
    use fedge_h323::h225::{self, Alias, Body, Setup, Signal};
    use fedge_h323::h245::{self, Media, Olc};
    use fedge_h323::{q931, tpkt};
    let media = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp = media.local_addr().unwrap();
    let olc = Olc {
        number: 1,
        media: Media::G711Ulaw { frames: 20 },
        session_id: 1,
        payload_type: None,
        forward: false,
        rtp: Some(rtp),
        rtcp: Some(SocketAddr::new(rtp.ip(), rtp.port() + 1)),
        reverse: None,
        presentation: false,
    };
    let mut sig = Signal::new(Body::Setup(Setup {
        conference_id: [7; 16],
        destination: vec![Alias::H323Id("teams".into())],
        source: vec![Alias::H323Id("raw-room".into())],
        vendor: None,
        media_wait_for_connect: false,
        source_call_signal: None,
        protocol_version: 4,
    }));
    sig.call_id = Some([9; 16]);
    sig.h245_tunnelling = tunnelling;
    sig.fast_start = vec![h245::encode_olc(&olc).unwrap()];
    let mut setup = q931::Message::new(q931::MessageType::Setup, 42, false);
    setup.user_user = Some(h225::encode(&sig, "raw-room").unwrap());
    let mut s = TcpStream::connect(cvi.h323_listener("tcp")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(&tpkt::encode(&setup.encode())).unwrap();
    (s, media)
}

#[test]
fn a_room_without_tunnelling_or_address_is_offered_ours() {
    use fedge_h323::h245::{self, Control};
    use fedge_h323::{h225, q931, tpkt};
    let cvi = Cvi::start_h323(&[]);
    let (mut s, _media) = raw_setup(&cvi, false);
    let connect = read_until(&mut s, q931::MessageType::Connect.code()).expect("Connect");
    let m = q931::Message::decode(&connect[4..]).unwrap();
    let sig = h225::decode(m.user_user.as_deref().unwrap()).unwrap();
    assert!(!sig.h245_tunnelling);
    let ours = sig.h245_address.expect("our H.245 address in Connect");
    assert!((33000..=39999).contains(&ours.port()), "{ours}");
    let mut h = TcpStream::connect(ours).expect("connect to our H.245 address");
    h.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 4];
    h.read_exact(&mut head).unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[2], head[3]])) - 4];
    h.read_exact(&mut body).unwrap();
    assert!(
        matches!(
            h245::decode(&body).unwrap(),
            Control::TerminalCapabilitySet { .. }
        ),
        "our capabilities first"
    );
    let rtd = h245::encode(&Control::RoundTripDelayRequest { seq: 5 }).unwrap();
    h.write_all(&tpkt::encode(&rtd)).unwrap();
    h.read_exact(&mut head).unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[2], head[3]])) - 4];
    h.read_exact(&mut body).unwrap();
    assert_eq!(
        h245::decode(&body).unwrap(),
        Control::RoundTripDelayResponse { seq: 5 }
    );
}

#[test]
fn a_status_enquiry_gets_the_call_state() {
    use fedge_h323::{q931, tpkt};
    let cvi = Cvi::start_h323(&[]);
    let (mut s, _media) = raw_setup(&cvi, true);
    // Connect (the reception answers), then Status for our enquiry.
    let connect = q931::MessageType::Connect.code();
    assert!(read_until(&mut s, connect).is_some(), "{}", cvi.logs());
    let enquiry = q931::Message::new(q931::MessageType::StatusEnquiry, 42, false);
    s.write_all(&tpkt::encode(&enquiry.encode())).unwrap();
    let status = read_until(&mut s, q931::MessageType::Status.code()).expect("Status");
    let m = q931::Message::decode(&status[4..]).unwrap();
    assert_eq!(
        (m.call_ref, m.from_destination, m.cause),
        (42, true, Some(30))
    );
    assert!(
        m.other.contains(&(0x14, vec![10])),
        "call state active: {m:?}"
    );
}

#[test]
fn connections_per_source_are_bounded() {
    let cvi = Cvi::start_h323(&[("max_connections_per_source", "1")]);
    // The first connection holds the source's one place (no Setup yet).
    let first = TcpStream::connect(cvi.h323_listener("tcp")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The second is closed at once, unanswered.
    let mut second = TcpStream::connect(cvi.h323_listener("tcp")).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(second.read(&mut buf), Ok(0)),
        "the second connection is closed"
    );
    cvi.edge
        .wait_log(&["H.323 connection refused"], Duration::from_secs(2))
        .expect("the refusal is logged");
    // Once the first is gone, the source may connect again.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let id = cvi.meeting(&[]);
    let (connector, _) = cvi.h323_connector(&id, false, &end_on_bye());
    let room = h323_room(&cvi, &id, &["--after", "1"]).wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
}

/// The connector's SDP (lines indented six spaces): audio, video and the
/// content stream at `content` (0: off), its attributes ending in `tail`.
fn connector_sdp(content: u16, version: u32, tail: &str) -> String {
    format!(
        r#"      v=0
      o=connector 2 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=sendrecv
      m=video [media_port+2] RTP/AVP 96
      a=rtpmap:96 H264/90000
      a=fmtp:96 profile-level-id=42e01f;packetization-mode=1
      a=sendrecv
      m=video {content} RTP/AVP 97
      a=rtpmap:97 H264/90000
      a=fmtp:97 profile-level-id=42e01f;packetization-mode=1
      a=content:slides{tail}"#
    )
}

/// The connector's 200 to a re-INVITE: audio, video and the content
/// stream at `content` (0: off).
fn share_answer(content: u16, version: u32, bfcp: &str) -> String {
    let dir = if content == 0 {
        ""
    } else {
        "\n      a=recvonly"
    };
    let sdp = connector_sdp(content, version, &format!("{dir}\n      {bfcp}"));
    format!(
        r#"  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:meeting@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

{sdp}

    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
"#
    )
}

/// The connector takes the gateway's re-INVITE with the room's content
/// stream (checked: `a=content:slides`, H.264 PT 97, send only), answers
/// it with its content port `content`; with `stop`, takes the re-INVITE
/// turning it off (port 0) too, and is the BFCP floor control server
/// (the test's end of it connects to the relay); then waits for the BYE.
fn end_on_share(content: u16, stop: bool) -> String {
    let checks = [
        ereg("a=content:slides", "body", "slides", false),
        ereg("m=video [1-9][0-9]* RTP/AVP 97", "body", "pt", false),
        ereg("a=sendonly", "body", "dir", false),
        ereg(
            "m=application 4[0-9]{4} TCP/BFCP \\*",
            "body",
            "bfcp",
            false,
        ),
        ereg("a=setup:passive", "body", "setup", false),
    ]
    .concat();
    let server = if stop {
        BFCP_SERVER
    } else {
        "m=application 0 TCP/BFCP *"
    };
    let mut s = format!(
        r#"  <recv request="INVITE" timeout="30000">
    <action>
      {checks}
    </action>
  </recv>
{}"#,
        share_answer(content, 3, server)
    );
    if stop {
        let off = ereg("m=video 0 RTP/AVP 97", "body", "off", false);
        s += &format!(
            r#"  <recv request="INVITE" timeout="30000">
    <action>
      {off}
    </action>
  </recv>
{}  <Reference variables="off"/>
"#,
            share_answer(0, 4, "m=application 0 TCP/BFCP *")
        );
    }
    s + &end_on_bye() + "  <Reference variables=\"slides,pt,dir,bfcp,setup\"/>\n"
}

/// The connector's BFCP stream: the floor control server (conference
/// 4321, user 7, floor 2), connecting to the relay.
const BFCP_SERVER: &str = "m=application 9 TCP/BFCP *\n      a=setup:active\n      a=connection:new\n      a=floorctrl:s-only\n      a=confid:4321\n      a=userid:7\n      a=floorid:2 mstrm:3";

/// The connector's BFCP end: connects to the relay's BFCP port towards
/// the connector (stream 4 of 4) and reads the first message through it
/// (`what`: the message expected, for the failure).
fn bfcp_first(cvi: &Cvi, what: &str) -> (TcpStream, [u8; 16]) {
    let relay = cvi.relay_port(4, 3, 1);
    let t0 = Instant::now();
    let mut first = [0u8; 16];
    let c = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(25),
            "no {what} through the relay at {relay}\n{}",
            cvi.logs()
        );
        if let Ok(mut c) = TcpStream::connect(relay) {
            c.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
            if c.read_exact(&mut first).is_ok() {
                break c;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (c, first)
}

/// The connector's BFCP end: connects to the relay's BFCP port towards
/// the connector, takes the room's FloorRequest, grants it
/// (FloorRequestStatus, request 9), and takes the FloorRelease of 9.
fn floor_server(cvi: &Cvi) {
    let (mut c, request) = bfcp_first(cvi, "FloorRequest");
    // FloorRequest (1), conference 4321, user 7, FLOOR-ID 2.
    assert_eq!(
        request,
        [0x20, 1, 0, 1, 0, 0, 0x10, 0xe1, 0, 1, 0, 7, 5, 4, 0, 2]
    );
    // FloorRequestStatus (4): FLOOR-REQUEST-INFORMATION, request 9, with
    // OVERALL-REQUEST-STATUS (request 9, REQUEST-STATUS granted).
    let mut status = vec![0x20, 4, 0, 3, 0, 0, 0x10, 0xe1, 0, 1, 0, 7];
    status.extend_from_slice(&[15 << 1 | 1, 12, 0, 9, 16 << 1 | 1, 8, 0, 9]);
    status.extend_from_slice(&[5 << 1 | 1, 4, 3, 0]);
    c.write_all(&status).unwrap();
    let mut release = [0u8; 16];
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // (The request may come again until our status reached the client.)
    while {
        c.read_exact(&mut release)
            .unwrap_or_else(|e| panic!("a FloorRelease: {e}\n{}", cvi.logs()));
        release == request
    } {}
    // FloorRelease (2), FLOOR-REQUEST-ID 9.
    assert_eq!(
        release,
        [0x20, 2, 0, 1, 0, 0, 0x10, 0xe1, 0, 2, 0, 7, 7, 4, 0, 9]
    );
    // FloorRequestStatus: released (REQUEST-STATUS 5).
    status[9] = 2;
    status[22] = 5;
    c.write_all(&status).unwrap();
}

/// The room dials the meeting and presents (`stop_after`: stops after so
/// many seconds); the presentation packets counted at the connector's
/// content port, and the room's result.
fn present(stop_after: Option<&str>) -> (Cvi, RoomResult, u32, Capture) {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    // The connector's content port: a socket of ours, to count what the
    // relay forwards there.
    let content = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let content_port = content.local_addr().unwrap().port();
    content
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = end_on_share(content_port, stop_after.is_some());
    let (connector, _media) = cvi.h323_connector(&id, true, &end);
    let cap = cvi.capture("h239.pcap");
    let mut args = vec![
        "--video",
        "--presentation",
        "--after",
        "6",
        "--timeout",
        "30",
    ];
    if let Some(s) = stop_after {
        args.extend(["--presentation-for", s]);
    }
    let room = h323_room(&cvi, &id, &args);
    if stop_after.is_some() {
        floor_server(&cvi);
    }
    // The room's presentation (H.264, PT 97) arrives at the content port.
    let mut slides = 0;
    let t0 = Instant::now();
    let mut buf = [0u8; 2048];
    while t0.elapsed() < Duration::from_secs(9) {
        if let Ok(n) = content.recv(&mut buf)
            && n > 12
            && buf[1] & 0x7f == 97
        {
            slides += 1;
        }
    }
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    assert!(room.rtp_sent(97) >= 5, "{:#}", room.json);
    assert!(
        slides >= 5,
        "{slides} presentation packets at the connector\nfedge:\n{}",
        cvi.logs()
    );
    // The room sent to the relay, not to the connector directly.
    let to = room.json["rtp"]["sent_to"]["97"].as_str().unwrap_or("");
    assert!(
        !to.is_empty() && !to.ends_with(&format!(":{content_port}")),
        "{:#}",
        room.json
    );
    assert!(
        room.received()
            .iter()
            .any(|m| m == "h245:openLogicalChannelAck"),
        "{:?}",
        room.received()
    );
    (cvi, room, slides, cap)
}

#[test]
fn an_h239_presentation_reaches_the_connector_as_a_content_stream() {
    let (cvi, room, _, cap) = present(None);
    assert_eq!(room.json["presentation"], "granted", "{:#}", room.json);
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "connect", "releaseComplete"],
        &[
            "presentationTokenRequest",
            "presentationTokenResponse",
            "openLogicalChannel",
            "openLogicalChannelAck",
        ],
    );
}

#[test]
fn an_h239_presentation_stops_when_the_room_closes_its_channel() {
    let (cvi, room, slides, cap) = present(Some("2"));
    assert_eq!(room.json["presentation"], "stopped", "{:#}", room.json);
    // Sent for about 2 s at 5 packets a second, not for the whole call.
    assert!(slides <= 20, "{slides} presentation packets after the stop");
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "connect", "releaseComplete"],
        &["closeLogicalChannel", "closeLogicalChannelAck"],
    );
}

// ---- Slow start (no fast start: the media by H.245 logical channels) ----

/// A pcap of H.264-typed RTP (payload type 96) for SIPp's
/// `play_pcap_video`: `write_pcap`'s packets with their payload type byte
/// rewritten (24-byte file header; per packet a 16-byte record header and
/// Ethernet 14 + IPv4 20 + UDP 8 before the RTP header).
fn video_pcap(path: &Path) {
    write_pcap(path, 0x3333_3333, 0x41, 150);
    let mut b = std::fs::read(path).unwrap();
    let record = 16 + 14 + 20 + 8 + 12 + 160;
    let mut at = 24;
    while at + record <= b.len() {
        b[at + 16 + 42 + 1] = 96;
        at += record;
    }
    std::fs::write(path, b).unwrap();
}

/// The connector also plays H.264 towards the gateway (after its audio
/// pcap: SIPp plays one pcap at a time per call), then `end`.
fn with_video(cvi: &Cvi, end: &str) -> String {
    let pcap = cvi.dir().join("meeting_video.pcap");
    video_pcap(&pcap);
    format!(
        "  <pause milliseconds=\"3200\"/>\n  <nop>\n    <action>\n      <exec play_pcap_video=\"{}\"/>\n    </action>\n  </nop>\n{end}",
        pcap.display()
    )
}

/// The room's sent-to address for payload type `pt`.
fn sent_to(room: &RoomResult, pt: u8) -> Option<SocketAddr> {
    room.json["rtp"]["sent_to"][pt.to_string()]
        .as_str()
        .and_then(|a| a.parse().ok())
}

fn olcs_received(room: &RoomResult) -> Vec<String> {
    room.json["olc_received"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn slow_start_tunnelled_g711_and_h264_both_ways_and_the_room_hangs_up() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let end = with_video(&cvi, &end_on_bye());
    let (connector, media) = cvi.h323_connector(&id, true, &end);
    let cap = cvi.capture("slow.pcap");
    let room = h323_room(
        &cvi,
        &id,
        &[
            "--no-fast-start",
            "--video",
            "--after",
            "5",
            "--timeout",
            "30",
        ],
    );
    cvi.media_at_connector(media, true, Duration::from_secs(25));
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    assert_eq!(room.json["h245"]["mode"], "tunnelled", "{:#}", room.json);
    assert!(
        room.json["fast_start_accepted"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "no fast start: {:#}",
        room.json
    );
    // H.245 ran before Connect (tunnelled in Facility): our channels were
    // open before the gateway had the call.
    let got = room.received();
    let at = |w: &str| got.iter().position(|m| m == w);
    assert!(
        at("h245:openLogicalChannel").is_some()
            && at("h245:openLogicalChannel") < at("connect")
            && at("facility") < at("connect"),
        "{got:?}"
    );
    // Our channels towards the room: the connector's codec (PCMA, after
    // the first PCMU one was closed) and H.264.
    let ours = olcs_received(&room);
    assert!(
        ours.iter().any(|m| m == "pcma") && ours.iter().any(|m| m == "h264"),
        "{ours:?}"
    );
    // The room sent PCMA and H.264 to the relay (not to the connector).
    for pt in [8, 96] {
        assert!(room.rtp_sent(pt) > 5, "PT {pt}: {:#}", room.json);
        let to = sent_to(&room, pt).expect("sent to");
        assert!(
            to.port() != media && to.port() != media + 2,
            "PT {pt} sent to {to}, the connector's own port"
        );
    }
    // The connector's PCMA and H.264 reached the room.
    assert!(room.rtp_received(8) > 20, "{:#}", room.json);
    assert!(room.rtp_received(96) > 5, "{:#}", room.json);
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "callProceeding", "connect", "releaseComplete"],
        &[
            "terminalCapabilitySet",
            "terminalCapabilitySetAck",
            "masterSlaveDetermination",
            "masterSlaveDeterminationAck",
            "openLogicalChannel",
            "openLogicalChannelAck",
            "closeLogicalChannel",
            "closeLogicalChannelAck",
            "endSessionCommand",
        ],
    );
}

#[test]
fn slow_start_on_a_separate_h245_channel() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let (connector, media) = cvi.h323_connector(&id, false, &end_on_bye());
    let cap = cvi.capture("slow_separate.pcap");
    let room = h323_room(
        &cvi,
        &id,
        &[
            "--no-fast-start",
            "--separate-h245",
            "--after",
            "4",
            "--timeout",
            "30",
        ],
    );
    cvi.media_at_connector(media, false, Duration::from_secs(25));
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    assert_eq!(room.json["h245"]["mode"], "separate", "{:#}", room.json);
    assert!(room.rtp_received(8) > 20, "{:#}", room.json);
    assert!(room.rtp_sent(8) > 20, "{:#}", room.json);
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "connect", "releaseComplete"],
        &[
            "terminalCapabilitySet",
            "openLogicalChannel",
            "openLogicalChannelAck",
            "endSessionCommand",
        ],
    );
}

#[test]
fn a_slow_start_room_gets_video_both_ways_after_the_reception() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let end = with_video(&cvi, &end_on_bye());
    let (connector, media) = cvi.h323_connector(&id, true, &end);
    let cap = cvi.capture("slow_reception.pcap");
    let digits = format!("0000000001#{id}#");
    let room = h323_room(
        &cvi,
        &format!("teams@{DOMAIN}"),
        &[
            "--alias-kind",
            "url",
            "--no-fast-start",
            "--video",
            "--digits",
            &digits,
            "--digit-gap",
            "150",
            "--after",
            "9",
            "--timeout",
            "45",
        ],
    );
    cvi.media_at_connector(media, true, Duration::from_secs(25));
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    assert!(
        cvi.logs().contains("0000000001"),
        "the wrong ID was refused and logged"
    );
    // The reception refused video; the meeting's re-INVITE paused the
    // room (empty TerminalCapabilitySet) and it opened its channels anew.
    assert!(room.json["paused"].as_u64() >= Some(1), "{:#}", room.json);
    assert!(
        room.json["olc_rejected"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == 1003)),
        "the video channel refused at the reception: {:#}",
        room.json
    );
    // Prompts (PCMU), then the meeting's PCMA and H.264, at the room.
    assert!(room.rtp_received(0) > 20, "{:#}", room.json);
    assert!(room.rtp_received(8) > 20, "{:#}", room.json);
    assert!(room.rtp_received(96) > 5, "{:#}", room.json);
    // The room's H.264 went to the relay after the pause.
    assert!(room.rtp_sent(96) > 5, "{:#}", room.json);
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "connect"],
        &[
            "userInput",
            "terminalCapabilitySet",
            "openLogicalChannelReject",
            "closeLogicalChannel",
            "openLogicalChannelAck",
        ],
    );
}

#[test]
fn a_fast_start_room_gets_video_both_ways_after_the_reception() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let end = with_video(&cvi, &end_on_bye());
    let (connector, media) = cvi.h323_connector(&id, true, &end);
    let cap = cvi.capture("fast_reception.pcap");
    let digits = format!("0000000001#{id}#");
    let room = h323_room(
        &cvi,
        &format!("teams@{DOMAIN}"),
        &[
            "--alias-kind",
            "url",
            "--video",
            "--digits",
            &digits,
            "--digit-gap",
            "150",
            "--after",
            "9",
            "--timeout",
            "45",
        ],
    );
    cvi.media_at_connector(media, true, Duration::from_secs(25));
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    // Fast start at the reception (audio), then the meeting's channels by
    // H.245: our H.264 channel opened, the room paused and reopened.
    assert!(
        room.json["fast_start_accepted"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{:#}",
        room.json
    );
    assert!(room.json["paused"].as_u64() >= Some(1), "{:#}", room.json);
    assert!(
        olcs_received(&room).iter().any(|m| m == "h264"),
        "{:#}",
        room.json
    );
    assert!(room.rtp_received(0) > 20, "{:#}", room.json);
    assert!(room.rtp_received(8) > 20, "{:#}", room.json);
    assert!(room.rtp_received(96) > 5, "{:#}", room.json);
    assert!(room.rtp_sent(96) > 5, "{:#}", room.json);
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "connect"],
        &["userInput", "closeLogicalChannel", "openLogicalChannelAck"],
    );
}

// ---- h323pres: the meeting's presentation towards the room, floor
// ---- revoked, the bound on the room's presentations (issue 19).

/// The connector's re-INVITE (CSeq `cseq`, o= version `version`) with
/// audio, video and its content stream at `content` (0: off), sendonly;
/// its 200 checked with `answered` (ereg actions), then ACKed; `more`:
/// m= sections after it.
fn connector_offer(content: u16, cseq: u32, version: u32, answered: &str, more: &str) -> String {
    let dir = if content == 0 {
        ""
    } else {
        "\n      a=sendonly"
    };
    let sdp = connector_sdp(
        content,
        version,
        &format!("\n      a=label:3{dir}\n      {more}"),
    );
    connector_reinvites(cseq, &format!("{sdp}\n"), answered)
}

#[test]
fn the_meetings_presentation_reaches_an_h323_room_on_an_h239_channel() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let content = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let content_port = content.local_addr().unwrap().port();
    // The room answers the content stream at its own address, receive
    // only; the stop is answered with the stream off.
    let on = ereg("m=video [1-9][0-9]* RTP/AVP 97", "body", "on", false)
        + &ereg("a=recvonly", "body", "recv", false)
        + &ereg("c=IN IP4 127\\.0\\.0\\.2", "body", "relay", false);
    let off = ereg("m=video 0 RTP/AVP 97", "body", "off", false);
    let end = format!(
        "  <pause milliseconds=\"2500\"/>\n{}  <pause milliseconds=\"4000\"/>\n{}{}  \
         <Reference variables=\"on,recv,relay,off\"/>\n",
        connector_offer(content_port, 1, 3, &on, ""),
        connector_offer(0, 2, 4, &off, ""),
        end_on_bye()
    );
    let (connector, _media) = cvi.h323_connector(&id, true, &end);
    let cap = cvi.capture("h239-out.pcap");
    let room = h323_room(
        &cvi,
        &id,
        &[
            "--video",
            "--receive-presentation",
            "--after",
            "10",
            "--timeout",
            "30",
        ],
    );
    // The content stream appears at the relay once the connector offers
    // it: the meeting's slides (PT 97) go to its port towards the
    // connector, from the connector's content address.
    let relay = cvi.relay_port(3, 2, 1);
    for seq in 0..80u16 {
        let mut pkt = vec![0x80, 97];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        pkt.extend_from_slice(&0x5eed_0006u32.to_be_bytes());
        pkt.extend_from_slice(&[0x41; 200]);
        content.send_to(&pkt, relay).unwrap();
        std::thread::sleep(Duration::from_millis(25));
    }
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    let got = room.json["rtp"]["received"]["97"].as_u64().unwrap_or(0);
    assert!(got >= 5, "{got} slides at the room\n{:#}", room.json);
    // Our channel was opened, and closed with the token released when the
    // connector stopped.
    let pin = &room.json["presentation_in"];
    assert_eq!(pin["channel"], 2039, "{:#}", room.json);
    assert_eq!(pin["closed"], true, "{:#}", room.json);
    assert_eq!(pin["released"], true, "{:#}", room.json);
    assert!(room.json["token_requests"].as_u64() >= Some(1));
    let file = cap.file.clone();
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "connect", "releaseComplete"],
        &[
            "presentationTokenRequest",
            "presentationTokenResponse",
            "openLogicalChannel",
            "openLogicalChannelAck",
            "closeLogicalChannel",
            "closeLogicalChannelAck",
        ],
    );
    // The channel fedge opened carries H.239's extended video capability
    // (the presentation role) and H.264.
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .args(["-V", "-Y", "h245"])
        .output()
        .expect("tshark runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.split("\nFrame ")
            .any(|f| f.contains("openLogicalChannel")
                && f.contains("extendedVideoCapability")
                && f.contains("0.0.8.239.1.2")
                && f.contains("2039")),
        "no H.239 openLogicalChannel from fedge on the wire"
    );
}

/// The connector's BFCP end as in `floor_server`, but it grants the
/// room's floor and then revokes it (REQUEST-STATUS 7).
fn floor_revoker(cvi: &Cvi) {
    let (mut c, request) = bfcp_first(cvi, "FloorRequest");
    assert_eq!(request[1], 1, "a FloorRequest: {request:?}");
    let mut status = vec![0x20, 4, 0, 3, 0, 0, 0x10, 0xe1, 0, 1, 0, 7];
    status.extend_from_slice(&[15 << 1 | 1, 12, 0, 9, 16 << 1 | 1, 8, 0, 9]);
    status.extend_from_slice(&[5 << 1 | 1, 4, 3, 0]);
    c.write_all(&status).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Revoked.
    status[9] = 2;
    status[22] = 7;
    c.write_all(&status).unwrap();
}

#[test]
fn a_revoked_floor_ends_the_rooms_presentation() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let content = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let content_port = content.local_addr().unwrap().port();
    // The room's content stream on, with the connector as floor control
    // server; then off (port 0) after the revocation, with no stop from
    // the room's side of the test.
    let end = end_on_share(content_port, true);
    let (connector, _media) = cvi.h323_connector(&id, true, &end);
    let cap = cvi.capture("h239-revoked.pcap");
    let room = h323_room(
        &cvi,
        &id,
        &[
            "--video",
            "--presentation",
            "--after",
            "8",
            "--timeout",
            "30",
        ],
    );
    floor_revoker(&cvi);
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    // The connector took the re-INVITE with the content stream off.
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    assert_eq!(room.json["presentation"], "revoked", "{:#}", room.json);
    assert!(
        cvi.logs()
            .contains("the meeting's floor control took the floor back"),
        "{}",
        cvi.logs()
    );
    cvi.wire_check_h245(
        cap,
        &room,
        &["setup", "connect", "releaseComplete"],
        &[
            "presentationTokenRequest",
            "presentationTokenResponse",
            "closeLogicalChannel",
            "closeLogicalChannelAck",
        ],
    );
}

#[test]
fn a_burst_of_presentations_is_bounded_and_the_call_survives() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let content = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let content_port = content.local_addr().unwrap().port();
    // Exactly three presentations reach the connector (on, then off):
    // a fourth re-INVITE would fail its scenario.
    let mut end = String::new();
    for i in 0..3u32 {
        let on = ereg("m=video [1-9][0-9]* RTP/AVP 97", "body", "on", false);
        let off = ereg("m=video 0 RTP/AVP 97", "body", "off", false);
        end += &format!(
            "  <recv request=\"INVITE\" timeout=\"30000\">\n    <action>\n      {on}\n    </action>\n  </recv>\n{}\
             \n  <recv request=\"INVITE\" timeout=\"30000\">\n    <action>\n      {off}\n    </action>\n  </recv>\n{}",
            share_answer(content_port, 3 + 2 * i, "m=application 0 TCP/BFCP *"),
            share_answer(0, 4 + 2 * i, "m=application 0 TCP/BFCP *"),
        );
    }
    end += &end_on_bye();
    end += "  <Reference variables=\"on,off\"/>\n";
    let (connector, _media) = cvi.h323_connector(&id, true, &end);
    let room = h323_room(
        &cvi,
        &id,
        &[
            "--video",
            "--presentation",
            "--presentation-cycles",
            "6",
            "--after",
            "12",
            "--timeout",
            "40",
        ],
    );
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    let cycles = &room.json["cycles"];
    assert_eq!(cycles["acked"], 3, "{:#}", room.json);
    assert_eq!(cycles["rejected"], 3, "{:#}", room.json);
    assert!(
        cvi.logs()
            .contains("H.239 presentation refused: too many presentations"),
        "{}",
        cvi.logs()
    );
}

#[test]
fn the_meetings_floor_released_closes_the_rooms_presentation_channel() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    let content = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let content_port = content.local_addr().unwrap().port();
    // The connector presents with BFCP (it is the floor control server)
    // and never turns its content stream off: only the floor's release
    // can close the room's channel.
    let answered = ereg("a=recvonly", "body", "recv", false)
        + &ereg("a=floorctrl:c-only", "body", "client", false);
    let end = format!(
        "  <pause milliseconds=\"2000\"/>\n{}{}  <Reference variables=\"recv,client\"/>\n",
        connector_offer(content_port, 1, 3, &answered, BFCP_SERVER),
        end_on_bye()
    );
    let (connector, _media) = cvi.h323_connector(&id, true, &end);
    let room = h323_room(
        &cvi,
        &id,
        &[
            "--video",
            "--receive-presentation",
            "--after",
            "9",
            "--timeout",
            "30",
        ],
    );
    // The floor server's end: the watcher's FloorQuery for floor 2, then
    // FloorStatus granted (to the connector's own request 9), then
    // released.
    let (mut c, query) = bfcp_first(&cvi, "FloorQuery");
    // FloorQuery (7), conference 4321, user 7, FLOOR-ID 2.
    assert_eq!(
        query,
        [0x20, 7, 0, 1, 0, 0, 0x10, 0xe1, 0, 1, 0, 7, 5, 4, 0, 2]
    );
    let mut status = vec![0x20, 8, 0, 4, 0, 0, 0x10, 0xe1, 0, 1, 0, 7];
    status.extend_from_slice(&[2 << 1 | 1, 4, 0, 2]);
    status.extend_from_slice(&[15 << 1 | 1, 12, 0, 9, 16 << 1 | 1, 8, 0, 9]);
    status.extend_from_slice(&[5 << 1 | 1, 4, 3, 0]);
    c.write_all(&status).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    status[26] = 6; // released
    c.write_all(&status).unwrap();
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    let pin = &room.json["presentation_in"];
    assert_eq!(pin["channel"], 2039, "{:#}", room.json);
    assert_eq!(pin["closed"], true, "{:#}", room.json);
    assert_eq!(pin["released"], true, "{:#}", room.json);
    assert!(
        cvi.logs().contains("the meeting's floor was released"),
        "{}",
        cvi.logs()
    );
}
