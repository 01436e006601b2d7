//! H.323 room systems through every CVI service (issue 19), end to end:
//! the Python room system (tests/h323/room.py, pycrate) calls the real
//! fedge binary over TCP; SIPp is the connector (the Teams side) and, where
//! a SIP call shares the node, the SIP room system. The services are the
//! gateway's, reached through the H.323 interworking: the virtual reception
//! taking RFC 2833/4733 keys, the test call (prompt, echo, time limit),
//! trusted-device marking, capacity shared with SIP calls, drain, and the
//! counters.

use std::time::Duration;

use fedge_testkit::cvi::*;
use fedge_testkit::lab::{ereg, refs};
use fedge_testkit::rtp::udp_rx_queue;
use fedge_testkit::*;

/// A connector for meeting `id` that checks the trusted header is there
/// (`trusted`) or not and the offer's audio payload types are `pts`, plays the meeting's media and waits for our BYE;
/// its media port.
fn connector_for(
    cvi: &Cvi,
    id: &str,
    trusted: bool,
    pts: &str,
) -> (fedge_testkit::peers::Sipp, u16) {
    let pcap = cvi.meeting_pcap();
    let (checks, references) = connector_checks_with(id, trusted, pts);
    cvi.connector(&checks, &references, &pcap, &end_on_bye())
}

/// A call to the reception that the gateway refuses with cause 34 (no
/// circuit) and the gatewayResources reason: what a full or draining node
/// answers.
fn refused_call(cvi: &Cvi) {
    let r = h323_room(
        cvi,
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
    let logs = cvi.logs();
    assert_eq!(r.cause(), Some(34), "{:#}\n{logs}", r.json);
    assert_eq!(
        r.reason().as_deref(),
        Some("gatewayResources"),
        "{:#}",
        r.json
    );
    assert!(
        !r.received().iter().any(|m| m == "connect"),
        "a refused call was connected: {:?}",
        r.received()
    );
}

#[test]
fn the_reception_takes_rfc2833_keys_from_an_h323_room_and_joins_the_meeting() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    // Over TCP from the trusted address: the connector sees the mark. The
    // room has H.245 (tunnelled), so the meeting is offered every codec
    // the room has (D212), not only the one the reception took.
    let (connector, media) = connector_for(&cvi, &id, true, "0 8 101");
    let digits = format!("1111111111#{id}#");
    let cap = cvi.capture("reception.pcap");
    let room = h323_room(
        &cvi,
        &format!("teams@{DOMAIN}"),
        &[
            "--alias-kind",
            "url",
            "--digits",
            &digits,
            "--digits-via",
            "rfc2833",
            "--digit-gap",
            "200",
            "--after",
            "4",
            "--timeout",
            "45",
        ],
    );
    // Once joined, the room's audio crosses the relay to the connector.
    wait_for(
        &cvi,
        "the room's media at the connector",
        Duration::from_secs(40),
        || udp_rx_queue(media).unwrap_or(0) > 0,
    );
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    // Every key went as RFC 4733 events (six packets a key), none as
    // H.245 user input.
    assert!(
        room.rtp_sent(101) >= 6 * digits.len() as u64,
        "{:#}",
        room.json
    );
    assert!(
        !room.sent().iter().any(|m| m == "h245:userInput"),
        "{:?}",
        room.sent()
    );
    // On the wire (tshark's dissectors, not room.py's word): the events
    // as telephone-event RTP, H.225/H.245 well formed, no userInput.
    let wire = cvi.wire(cap, &room);
    assert!(
        wire.rtp_count(101) >= 6 * digits.len(),
        "telephone-event packets on the wire: {wire:?}"
    );
    assert!(!wire.has_h245("userInput"), "{wire:?}");
    let first = log_line(
        &cvi,
        &["conference ID entered", "\"attempt\":1"],
        Duration::from_secs(1),
    );
    assert!(first.contains("\"entered\":\"1111111111\""), "{first}");
    log_line(
        &cvi,
        &[
            "conference ID not accepted",
            "no meeting has conference ID 1111111111",
        ],
        Duration::from_secs(1),
    );
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
        &["room system joined the meeting", &id],
        Duration::from_secs(1),
    );
    // The reception's prompts (PCMU, the room's codec) and the meeting's
    // media (PCMA from the connector) reached the room.
    assert!(room.rtp_received(0) > 20, "{:#}", room.json);
    assert!(room.rtp_received(8) > 20, "{:#}", room.json);
    // The shared CVI counters and the H.323 ones both count the call.
    assert_eq!(cvi.metric("fedge_cvi_not_found_total"), 1.0);
    assert_eq!(cvi.metric("fedge_cvi_connected_total"), 1.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_calls_total"), 1.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_connected_total"), 1.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_refused_total"), 0.0);
    cvi.wait_metric("fedge_cvi_calls", 0.0, Duration::from_secs(5));
    cvi.wait_metric("fedge_cvi_ports_in_use", 0.0, Duration::from_secs(5));
}

#[test]
fn the_test_call_plays_its_prompt_echoes_an_h323_room_and_ends_on_time() {
    let cvi = Cvi::start_h323(&[("test_call_time", "\"10s\"")]);
    let room = h323_room(
        &cvi,
        "test_call",
        &[
            "--alias-kind",
            "h323id",
            "--hangup",
            "gateway",
            "--timeout",
            "30",
        ],
    )
    .wait(LIMIT);
    assert_room(&room, &cvi.logs());
    // The time limit ended it: a BYE from the gateway, Release Complete
    // with normal call clearing towards the room.
    assert_eq!(room.cause(), Some(16), "{:#}", room.json);
    log_line(
        &cvi,
        &["CVI call ended", "the test call's time is up"],
        Duration::from_secs(5),
    );
    // The prompt (PCMU, 160 bytes a packet) and then the room's own audio
    // back: the room got clearly more than the prompt holds.
    let prompt = std::fs::metadata(workspace_root().join("src/cvi/prompts/test_call.ulaw"))
        .expect("the test call's prompt")
        .len()
        / 160;
    let got = room.rtp_received(0);
    assert!(
        got > prompt + 100,
        "{got} PCMU packets at the room, the prompt alone is {prompt}: {:#}",
        room.json
    );
    assert_eq!(cvi.metric("fedge_cvi_test_calls_total"), 1.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_calls_total"), 1.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_connected_total"), 1.0);
    cvi.wait_metric("fedge_cvi_calls", 0.0, Duration::from_secs(5));
}

/// A direct dial from an H.323 room when `trusted` is the `[cvi] trusted`
/// list; the connector checks the mark is there exactly when `marked`.
fn direct_dial_marked(trusted: &str, marked: bool) {
    let cvi = Cvi::start_h323(&[("trusted", trusted)]);
    let id = cvi.meeting(&[]);
    // A direct dial offers every codec the room proposed.
    let (connector, _) = connector_for(&cvi, &id, marked, "0 8 101");
    let room = h323_room(&cvi, &id, &["--after", "2", "--timeout", "30"]).wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    log_line(
        &cvi,
        &["room system joined the meeting", &id],
        Duration::from_secs(1),
    );
    assert_eq!(cvi.metric("fedge_cvi_connected_total"), 1.0);
}

#[test]
fn a_direct_dial_from_a_trusted_address_is_marked_towards_the_connector() {
    // The room calls from 127.0.0.1 over TCP.
    direct_dial_marked("[\"127.0.0.1\"]", true);
}

#[test]
fn a_direct_dial_from_an_untrusted_address_is_not_marked() {
    direct_dial_marked("[\"192.0.2.1\"]", false);
}

#[test]
fn capacity_counts_h323_and_sip_calls_together() {
    let cvi = Cvi::start_h323(&[("max_calls", "1"), ("test_call_time", "\"6s\"")]);
    // A SIP call fills the node: the H.323 room is refused.
    let mut sip = RoomCall::new("test_call");
    sip.then = then_gateway_hangs_up("");
    let held = cvi.room(&sip);
    wait_for(&cvi, "the SIP call up", Duration::from_secs(10), || {
        cvi.metric("fedge_cvi_calls") == 1.0
    });
    refused_call(&cvi);
    assert_eq!(cvi.metric("fedge_cvi_refused_full_total"), 1.0);
    assert_ok("SIP call", &held.wait(LIMIT), &cvi.logs());
    cvi.wait_metric("fedge_cvi_calls", 0.0, Duration::from_secs(10));

    // The reverse: an H.323 call fills the node, the SIP room gets 503.
    let h323 = h323_room(
        &cvi,
        "test_call",
        &[
            "--alias-kind",
            "h323id",
            "--hangup",
            "gateway",
            "--timeout",
            "20",
        ],
    );
    wait_for(&cvi, "the H.323 call up", Duration::from_secs(10), || {
        cvi.metric("fedge_cvi_calls") == 1.0 && cvi.metric("fedge_cvi_h323_connected_total") == 1.0
    });
    let mut second = RoomCall::new("test_call");
    second.status = "503";
    second.checks = ereg("^ *30$", "Retry-After:", "ra", false)
        + &ereg("carries its maximum of 1 calls", "Warning:", "w", false);
    second.references = refs(&["ra", "w"]);
    assert_ok("SIP call", &cvi.room(&second).wait(LIMIT), &cvi.logs());
    let h323 = h323.wait(LIMIT);
    assert_room(&h323, &cvi.logs());
    assert_eq!(h323.cause(), Some(16), "{:#}", h323.json);

    assert_eq!(cvi.metric("fedge_cvi_refused_full_total"), 2.0);
    assert_eq!(cvi.metric("fedge_cvi_test_calls_total"), 2.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_calls_total"), 2.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_connected_total"), 1.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_refused_total"), 1.0);
}

#[test]
fn drain_refuses_a_new_h323_call_with_a_cause_while_the_running_one_carries_on() {
    let cvi = Cvi::start_h323(&[]);
    // A call at the reception, hanging up itself after 8 s.
    let running = h323_room(
        &cvi,
        "teams",
        &["--alias-kind", "h323id", "--after", "8", "--timeout", "25"],
    );
    wait_for(&cvi, "the first call up", Duration::from_secs(10), || {
        cvi.metric("fedge_cvi_calls") == 1.0 && cvi.metric("fedge_cvi_h323_connected_total") == 1.0
    });
    let cli = cvi.edge.cli_config("admin.toml");
    let out = fedge_ok(&cli, &["cvi", "drain"]);
    assert!(out.contains("CVI gateway draining"), "{out}");
    refused_call(&cvi);
    assert_eq!(cvi.metric("fedge_cvi_refused_draining_total"), 1.0);
    assert_eq!(cvi.metric("fedge_cvi_draining"), 1.0);
    // The running call carried on until the room hung up itself.
    assert_eq!(cvi.metric("fedge_cvi_calls"), 1.0);
    let running = running.wait(LIMIT);
    assert_room(&running, &cvi.logs());
    assert!(running.rtp_received(0) > 20, "{:#}", running.json);

    let out = fedge_ok(&cli, &["cvi", "drain", "--off"]);
    assert!(out.contains("taking calls again"), "{out}");
    assert_eq!(cvi.metric("fedge_cvi_draining"), 0.0);
    let next = h323_room(
        &cvi,
        "test_call",
        &["--alias-kind", "h323id", "--after", "1", "--timeout", "20"],
    )
    .wait(LIMIT);
    assert_room(&next, &cvi.logs());
    assert_eq!(cvi.metric("fedge_cvi_h323_calls_total"), 3.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_connected_total"), 2.0);
    assert_eq!(cvi.metric("fedge_cvi_h323_refused_total"), 1.0);
    assert_eq!(cvi.metric("fedge_cvi_refused_draining_total"), 1.0);
}

/// A slow-start room that sends no master/slave determination of its own
/// (it waits for ours): fedge's, sent with its capabilities, decides, and
/// the call completes with audio both ways.
#[test]
fn a_slow_start_room_that_waits_for_our_master_slave_determination_gets_its_call() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    // Slow start offers every codec of the room's capabilities.
    let (connector, media) = connector_for(&cvi, &id, true, "0 8");
    let room = h323_room(
        &cvi,
        &id,
        &[
            "--no-fast-start",
            "--await-msd",
            "--after",
            "3",
            "--timeout",
            "30",
        ],
    );
    wait_for(
        &cvi,
        "the room's media at the connector",
        Duration::from_secs(25),
        || udp_rx_queue(media).unwrap_or(0) > 0,
    );
    let room = room.wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    // The room sent none; ours reached it, and the gateway (type 60) is
    // master over the room (type 50).
    assert!(
        !room
            .sent()
            .iter()
            .any(|m| m == "h245:masterSlaveDetermination"),
        "{:?}",
        room.sent()
    );
    assert!(
        room.received()
            .iter()
            .any(|m| m == "h245:masterSlaveDetermination"),
        "{:?}",
        room.received()
    );
    assert_eq!(room.json["h245"]["msd"], "slave", "{:#}", room.json);
    assert!(room.rtp_received(8) > 20, "{:#}", room.json);
    log_line(
        &cvi,
        &["room system joined the meeting", &id],
        Duration::from_secs(1),
    );
}

/// A room that acknowledges the empty TerminalCapabilitySet of the pause
/// (after the reception) but never closes its channels: fedge gives the
/// pause up after its bound, sends its whole set again and the call goes
/// on (the meeting's media still reaches the room).
#[test]
fn a_room_that_ignores_the_pause_gets_our_capabilities_back_and_keeps_its_call() {
    let cvi = Cvi::start_h323(&[]);
    let id = cvi.meeting(&[]);
    // The meeting has video (the reception had none): the room, which
    // can send H.264, is paused to open its channels anew.
    let pcap = cvi.meeting_pcap();
    let (checks, references) = connector_checks_with(&id, true, "0 8");
    let (connector, _) = cvi.connector_with(
        "cvi_h323_connector_uas.xml",
        &checks,
        &references,
        &pcap,
        &end_on_bye(),
    );
    let digits = format!("{id}#");
    let room = h323_room(
        &cvi,
        &format!("teams@{DOMAIN}"),
        &[
            "--alias-kind",
            "url",
            "--no-fast-start",
            "--video",
            "--ignore-pause",
            "--digits",
            &digits,
            "--digit-gap",
            "150",
            "--after",
            "9",
            "--timeout",
            "45",
        ],
    )
    .wait(LIMIT);
    assert_room(&room, &cvi.logs());
    assert_ok("connector", &connector.wait(LIMIT), &cvi.logs());
    // The meeting's re-INVITE paused the room, which kept its channels.
    assert!(
        room.json["pause_ignored"].as_u64() >= Some(1),
        "{:#}",
        room.json
    );
    assert!(
        !room.sent().iter().any(|m| m == "h245:closeLogicalChannel"),
        "{:?}",
        room.sent()
    );
    // fedge gave the pause up: its whole set again after the empty one.
    log_line(
        &cvi,
        &["did not close its channels for the pause"],
        Duration::from_secs(1),
    );
    let sets = room
        .received()
        .iter()
        .filter(|m| *m == "h245:terminalCapabilitySet")
        .count();
    assert!(
        sets >= 3,
        "first, empty, whole again: {:?}",
        room.received()
    );
    // The meeting's PCMA still reached the room on our reopened channel.
    assert!(room.rtp_received(8) > 20, "{:#}", room.json);
    log_line(
        &cvi,
        &["room system joined the meeting", &id],
        Duration::from_secs(1),
    );
}
