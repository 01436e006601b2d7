//! The tests' H.323 room system proves itself before it is pointed at
//! fedge: tests/h323/room.py (pycrate's ASN.1 codec) calls the test-only
//! gateway stand-in tests/h323/responder.py under a loopback capture, and
//! tshark's own H.225/H.245/RTP dissectors must find every message well
//! formed, name the dialogue's messages, and see RTP both ways; the room's
//! JSON must agree. Covers tunnelled and separate H.245, fastStart and
//! H.245 OpenLogicalChannel media, both DTMF forms and both hang-ups.

use std::time::Duration;

use fedge_testkit::baresip::Capture;
use fedge_testkit::h323::{Responder, Room, RoomResult, WireReport, check_h323};

/// Runs one call: the responder with `responder_args`, the room with
/// `room_args`, under a capture; returns the room's result and tshark's.
fn call(responder_args: &[&str], room_args: &[&str]) -> (RoomResult, WireReport) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pcap = dir.path().join("h323.pcap");
    let mut capture = Capture::start(&pcap, "tcp or udp");
    let responder = Responder::start(responder_args);
    let dial = if room_args.contains(&"url") {
        "h323:teams@cvi.example"
    } else {
        "1234567890"
    };
    let room = Room::start(dir.path(), responder.addr, dial, room_args);
    let result = room.wait(Duration::from_secs(15));
    let gateway_port = responder.addr.port();
    drop(responder);
    capture.stop();
    let mut ports = result.ports();
    ports.push(gateway_port);
    let wire = check_h323(&pcap, &ports).expect("tshark reads the capture");
    (result, wire)
}

fn assert_clean(result: &RoomResult, wire: &WireReport) {
    assert!(
        result.ok(),
        "room failed: {} {}",
        result.stderr,
        result.json
    );
    assert!(wire.is_clean(), "tshark found problems: {wire:#?}");
}

#[test]
fn tunnelled_h245_fast_start_digits_and_the_rooms_hang_up() {
    let (result, wire) = call(
        &["--timeout", "12"],
        &[
            "--digits",
            "12#",
            "--after",
            "0.5",
            "--video",
            "--timeout",
            "12",
        ],
    );
    assert_clean(&result, &wire);
    for name in ["setup", "callProceeding", "connect", "releaseComplete"] {
        assert!(wire.has_h225(name), "tshark saw no {name}: {wire:#?}");
    }
    for name in [
        "terminalCapabilitySet",
        "terminalCapabilitySetAck",
        "masterSlaveDetermination",
        "masterSlaveDeterminationAck",
        "userInput",
        "endSessionCommand",
    ] {
        assert!(wire.has_h245(name), "tshark saw no {name}: {wire:#?}");
    }
    assert_eq!(
        wire.h245.iter().filter(|n| *n == "userInput").count(),
        3,
        "one userInputIndication per digit"
    );
    // RTP both ways (the responder echoes), audio and video, on the wire
    // and in the room's own counts.
    assert!(wire.rtp_count(0) > 20, "PCMU on the wire: {:?}", wire.rtp);
    assert!(wire.rtp_count(96) > 10, "H.264 on the wire: {:?}", wire.rtp);
    for pt in [0, 96] {
        assert!(
            result.rtp_sent(pt) > 0 && result.rtp_received(pt) > 0,
            "{}",
            result.json
        );
    }
    assert_eq!(result.json["released_by"], "room");
    assert_eq!(result.json["digits_sent"], "12#");
}

#[test]
fn separate_h245_without_fast_start_signal_digits_and_the_gateways_hang_up() {
    let (result, wire) = call(
        &[
            "--no-tunnel",
            "--release-after",
            "2.5",
            "--cause",
            "31",
            "--timeout",
            "12",
        ],
        &[
            "--separate-h245",
            "--no-fast-start",
            "--digits",
            "42",
            "--digits-via",
            "signal",
            "--hangup",
            "gateway",
            "--timeout",
            "12",
        ],
    );
    assert_clean(&result, &wire);
    for name in [
        "openLogicalChannel",
        "openLogicalChannelAck",
        "userInput",
        "endSessionCommand",
    ] {
        assert!(wire.has_h245(name), "tshark saw no {name}: {wire:#?}");
    }
    assert!(wire.rtp_count(0) > 10, "PCMU on the wire: {:?}", wire.rtp);
    assert_eq!(result.cause(), Some(31));
    assert_eq!(result.reason().as_deref(), Some("destinationRejection"));
    assert_eq!(result.json["released_by"], "gateway");
    assert_eq!(result.json["h245"]["mode"], "separate");
}

#[test]
fn a_refused_call_is_reported_with_its_cause() {
    // Nothing listens on a port just freed: the room must fail, quickly,
    // with a reason, not hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let gateway = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let result = Room::start(dir.path(), gateway, "1234567890", &["--timeout", "5"])
        .wait(Duration::from_secs(10));
    assert!(!result.ok());
    assert_eq!(result.code, Some(1));
    assert!(result.stderr.contains("room:"), "{}", result.stderr);
}

#[test]
fn a_garbled_message_fails_the_room_and_the_wire_check() {
    // The stand-in cuts a Facility short after Connect: tshark must call it
    // malformed (the check can fail), and the room must stop with an error
    // rather than carry on.
    let (result, wire) = call(&["--garble", "--timeout", "8"], &["--timeout", "8"]);
    assert!(
        !result.ok(),
        "room accepted a garbled message: {}",
        result.json
    );
    assert!(
        !wire.malformed.is_empty(),
        "tshark saw nothing wrong: {wire:#?}"
    );
    assert!(!wire.is_clean());
    assert!(wire.has_h225("connect"), "{wire:#?}");
}

#[test]
fn an_h239_presentation_is_asked_for_opened_and_sent() {
    let (result, wire) = call(
        &["--timeout", "12"],
        &[
            "--video",
            "--presentation",
            "--after",
            "1.5",
            "--timeout",
            "12",
        ],
    );
    assert_clean(&result, &wire);
    for name in [
        "genericRequest",
        "genericResponse",
        "openLogicalChannel",
        "openLogicalChannelAck",
    ] {
        assert!(wire.has_h245(name), "tshark saw no {name}: {wire:#?}");
    }
    assert_eq!(result.json["presentation"], "granted");
    assert!(
        wire.rtp_count(97) > 0,
        "presentation RTP on the wire: {:?}",
        wire.rtp
    );
    assert!(result.rtp_sent(97) > 0, "{}", result.json);
}

#[test]
fn a_refused_presentation_token_fails_the_room() {
    let (result, wire) = call(
        &["--refuse-token", "--timeout", "10"],
        &["--presentation", "--after", "1", "--timeout", "10"],
    );
    assert!(!result.ok(), "{}", result.json);
    assert_eq!(result.json["presentation"], "rejected");
    assert!(wire.is_clean(), "{wire:#?}");
    assert_eq!(wire.rtp_count(97), 0);
}

#[test]
fn a_url_alias_and_rfc2833_digits() {
    let (result, wire) = call(
        &["--timeout", "10"],
        &[
            "--alias-kind",
            "url",
            "--digits",
            "9#",
            "--digits-via",
            "rfc2833",
            "--after",
            "0.5",
            "--timeout",
            "10",
        ],
    );
    assert_clean(&result, &wire);
    // Three updates and three end packets per digit, on the audio stream,
    // and the stand-in's echo of them.
    assert_eq!(result.rtp_sent(101), 12, "{}", result.json);
    assert_eq!(wire.rtp_count(101), 24, "{:?}", wire.rtp);
    assert!(!wire.has_h245("userInput"), "{wire:#?}");
}
