//! Draining a node with real peers: SIPp calls through fedge both ways
//! (Kamailio as the partner's edge over mutual TLS, SIPp as partner users,
//! home users and the home pool). While a node drains (`fedge drain`, or SIGTERM to its
//! PID), every call in progress ends with its BYE answered 200, a new
//! INVITE from either side gets 503 with Retry-After (Kamailio, a proxy,
//! turns it into 500 for its user: RFC 3261 §16.7), and the node exits
//! by itself after the last call, before its deadline. A call longer than
//! a short deadline: the node exits at the deadline and logs the open call.

use std::process::Command;
use std::time::{Duration, Instant};

use fedge_testkit::lab::*;
use fedge_testkit::peers::{Sipp, free_port, scenario};
use fedge_testkit::*;

/// Calls held up during each drain.
const CALLS: usize = 6;
const RETRY_AFTER: &str = "17";

fn drain_lab(deadline: &str) -> Lab {
    Lab::with(
        &format!("\n[drain]\ndeadline = \"{deadline}\"\nretry_after = {RETRY_AFTER}\n"),
        Some("enabled"),
    )
}

/// The node's drain progress (operator token).
fn progress(lab: &Lab) -> serde_json::Value {
    admin_get(lab.edge.admin, "/api/v1/node/drain")
}

/// One direction's calls: its callers and its callees.
struct Calls {
    what: &'static str,
    uac: Sipp,
    uas: Sipp,
}

/// Starts `n` calls from partner users to the home pool and, with
/// `home_too`, `n` more from home users to the partner's users, each held
/// for `hold_ms`, and waits until the edge carries all of them.
fn calls_up(lab: &Lab, n: usize, hold_ms: u64, home_too: bool) -> Vec<Calls> {
    let m = n.to_string();
    let many = ["-m", m.as_str(), "-r", m.as_str(), "-l", m.as_str()];
    let hold = hold_ms.to_string();
    let uac_sc = scenario(lab.dir(), "drain_uac.xml", &[("HOLD", &hold)]);
    let uas_sc = scenario(lab.dir(), "drain_uas.xml", &[]);
    let mut all = vec![Calls {
        what: "partner to home",
        uas: Sipp::spawn(lab.dir(), &uas_sc, lab.home, None, &["-m", &m]),
        uac: lab.spawn_uac(
            lab.kam.udp,
            &uac_sc,
            ("bob", "fedge.test"),
            "partner.test",
            &many,
        ),
    }];
    if home_too {
        all.push(Calls {
            what: "home to partner",
            uas: Sipp::spawn(lab.dir(), &uas_sc, lab.users, None, &["-m", &m]),
            uac: lab.spawn_from(
                lab.edge.internal,
                free_port(false),
                &uac_sc,
                ("bob", "partner.test"),
                ("alice", "fedge.test"),
                &many,
            ),
        });
    }
    let want = (n * all.len()) as u64;
    let t0 = Instant::now();
    loop {
        let p = progress(lab);
        if p["calls"].as_u64() == Some(want) && p["transactions"] == 0 {
            assert_eq!(p["draining"], false);
            return all;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the edge never carried {want} calls: {p}\n{}",
            lab.edge.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A new INVITE from home is refused with 503, Retry-After and the
/// reason (Warning, ms-diagnostics-public 1007).
fn new_invite_from_home_refused(lab: &Lab) {
    // The Warning names the edge's FQDN, never the node (its host name).
    let said = format!("federation edge {EDGE_FQDN} is draining and takes no new dialogs");
    let (mut checks, _) = refusal_checks(&said, 1007);
    checks.push_str(&ereg(
        &format!("^ *{RETRY_AFTER}"),
        "Retry-After:",
        "ra",
        false,
    ));
    lab.refused(
        false,
        "invite_refused_uac.xml",
        &[],
        503,
        (checks, refs(&["w", "d", "ra"])),
        "bob@partner.test",
        "fedge.test",
    );
    // The node's name stays in the edge's own log line.
    assert!(
        lab.edge
            .wait_log(
                &["request refused", "federation edge node ", "is draining"],
                Duration::from_secs(5)
            )
            .is_some(),
        "the log names the node"
    );
}

/// A new INVITE from a partner user is refused: the partner's edge
/// (Kamailio) gets fedge's 503 with Retry-After and the reason, and, as
/// RFC 3261 §16.7 asks of a proxy, answers its user 500 instead.
fn new_invite_from_partner_refused(lab: &Lab) {
    let sc = scenario(lab.dir(), "invite_refused_uac.xml", &[("STATUS", "500")]);
    let r = lab.partner_uac(&sc, "bob", "fedge.test", "partner.test");
    lab.assert_ok("a partner user's new INVITE during the drain", &r);
    let t0 = Instant::now();
    let seen = loop {
        let logs = lab.kam.logs();
        if let Some(l) = logs.lines().find(|l| {
            l.contains("RPL 503")
                && l.contains(&format!("retry-after=[{RETRY_AFTER}]"))
                && l.contains(&format!(
                    "federation edge {EDGE_FQDN} is draining and takes no new dialogs"
                ))
        }) {
            break l.to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "Kamailio never got the 503:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("the partner's edge got: {seen}");
}

/// Waits for the edge to exit by itself within `limit`.
fn exits_within(lab: &mut Lab, limit: Duration) -> Duration {
    let t0 = Instant::now();
    while lab.edge.alive() {
        assert!(
            t0.elapsed() < limit,
            "the draining edge did not exit within {limit:?}:\n{}",
            lab.edge.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

/// Every call that was up ended with its BYE answered 200 (SIPp's exit
/// code 0 with -m N: N calls successful, none failed), on both sides.
fn all_calls_completed(lab: &Lab, calls: Vec<Calls>, n: usize) {
    for c in calls {
        let caller = c.uac.wait(LIMIT);
        lab.assert_ok(
            &format!("{}: callers (every BYE answered 200)", c.what),
            &caller,
        );
        lab.assert_ok(&format!("{}: callees", c.what), &c.uas.wait(LIMIT));
        let byes_answered = caller
            .messages
            .split("-----------------")
            .filter(|m| m.contains("SIP/2.0 200") && m.contains("CSeq: 2 BYE"))
            .count();
        assert!(
            byes_answered >= n,
            "{}: {byes_answered} BYE answers seen by the callers, {n} calls",
            c.what
        );
    }
}

#[test]
fn fedge_drain_lets_every_call_finish_then_the_node_exits() {
    let mut lab = drain_lab("30s");
    let calls = calls_up(&lab, CALLS, 4000, true);
    let cli = lab.edge.cli_config("cli.toml");
    let out = fedge_ok(&cli, &["drain"]);
    assert!(
        out.contains("draining since") && out.contains(&format!("{} call(s)", 2 * CALLS)),
        "{out}"
    );
    assert!(
        lab.edge
            .wait_log(&["drain started", "calls"], Duration::from_secs(2))
            .is_some()
    );
    // New dialogs from either side are refused; the calls up carry on.
    new_invite_from_partner_refused(&lab);
    new_invite_from_home_refused(&lab);
    let p = progress(&lab);
    assert_eq!(p["draining"], true, "{p}");
    assert!(p["deadline_secs"].as_u64().is_some_and(|s| s <= 30), "{p}");
    // `--wait` follows the drain (asking again changes nothing) until the
    // node has gone; here through the API (`--server`, an operator's token).
    let waiter = {
        let cli = cli.clone();
        let server = format!("http://{}", lab.edge.admin);
        let token = lab.edge.token.clone();
        std::thread::spawn(move || {
            fedge_ok(
                &cli,
                &["--server", &server, "--token", &token, "drain", "--wait"],
            )
        })
    };
    all_calls_completed(&lab, calls, CALLS);
    let took = exits_within(&mut lab, Duration::from_secs(25));
    println!("the node exited {took:?} after the calls ended");
    let logs = lab.edge.logs().join("\n");
    assert!(
        logs.contains("drain complete: no call or transaction left"),
        "{logs}"
    );
    assert!(!logs.contains("drain deadline reached"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    let out = waiter.join().expect("the --wait thread");
    assert!(out.contains("has exited"), "{out}");
}

#[test]
fn sigterm_drains_and_a_call_longer_than_the_deadline_is_logged() {
    // SIGTERM with calls up: the same drain.
    let mut lab = drain_lab("30s");
    let calls = calls_up(&lab, CALLS, 3000, false);
    let pid = lab.edge.pid().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    assert!(
        lab.edge
            .wait_log(&["drain started", "SIGTERM"], Duration::from_secs(2))
            .is_some(),
        "{}",
        lab.edge.logs().join("\n")
    );
    new_invite_from_home_refused(&lab);
    all_calls_completed(&lab, calls, CALLS);
    exits_within(&mut lab, Duration::from_secs(25));
    let logs = lab.edge.logs().join("\n");
    assert!(
        logs.contains("drain complete: no call or transaction left"),
        "{logs}"
    );
    assert!(logs.contains("\"stopped\""), "{logs}");

    // A call that outlasts a 2 s deadline: the node exits at the deadline
    // and names the call it left open.
    drop(lab);
    let mut lab = drain_lab("2s");
    let _calls = calls_up(&lab, 1, 30_000, false);
    let st = Command::new("kill")
        .args(["-TERM", &lab.edge.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let took = exits_within(&mut lab, Duration::from_secs(12));
    assert!(took >= Duration::from_millis(1500), "exited after {took:?}");
    let line = lab
        .edge
        .wait_log(&["drain deadline reached"], Duration::from_secs(1))
        .unwrap_or_else(|| panic!("{}", lab.edge.logs().join("\n")));
    assert!(
        line.contains("\"calls\":1") && line.contains("(up)"),
        "{line}"
    );
}

#[test]
fn a_second_sigterm_stops_at_once() {
    let mut lab = drain_lab("30s");
    let _calls = calls_up(&lab, 1, 30_000, false);
    let term = |lab: &Lab| {
        let st = Command::new("kill")
            .args(["-TERM", &lab.edge.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    term(&lab);
    assert!(
        lab.edge
            .wait_log(&["drain started"], Duration::from_secs(2))
            .is_some()
    );
    assert!(lab.edge.alive(), "the call holds the drain");
    term(&lab);
    // Well before the 30 s deadline: the stop's own 5 s at most.
    exits_within(&mut lab, Duration::from_secs(15));
    let logs = lab.edge.logs().join("\n");
    assert!(logs.contains("second SIGTERM: stopping now"), "{logs}");
    assert!(!logs.contains("drain complete"), "{logs}");
    assert!(!logs.contains("drain deadline reached"), "{logs}");
}

/// The edge's count of forwarded requests (`/health`).
fn forwarded(lab: &Lab) -> u64 {
    admin_get(lab.edge.admin, "/health")["sip"]["forwarded"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn steady_messages_do_not_hold_the_drain_past_the_last_call() {
    // Home users keep sending MESSAGEs to partner users, 10 a second
    // (300 at most: they outlast the deadline), each answered 300 ms late:
    // a few are always in flight. The drain still ends after its last
    // call, long before its 30 s deadline (a drain that waited for every
    // transaction would run until the traffic stops), and the MESSAGEs
    // are carried while it drains.
    let mut lab = drain_lab("30s");
    let calls = calls_up(&lab, 2, 2000, false);
    let uas_sc = scenario(lab.dir(), "message_slow_uas.xml", &[("PAUSE", "300")]);
    let _uas = Sipp::spawn(lab.dir(), &uas_sc, lab.users, None, &["-m", "300"]);
    let uac_sc = scenario(lab.dir(), "message_uac.xml", &[]);
    let _uac = lab.spawn_from(
        lab.edge.internal,
        free_port(false),
        &uac_sc,
        ("bob", "partner.test"),
        ("alice", "fedge.test"),
        &["-m", "300", "-r", "10"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = forwarded(&lab);
    let cli = lab.edge.cli_config("cli.toml");
    fedge_ok(&cli, &["drain"]);
    let p = progress(&lab);
    assert_eq!(p["draining"], true, "{p}");
    // Carried during the drain: the count of forwarded requests grows by
    // more than the calls' BYEs and their own requests could account for.
    let t0 = Instant::now();
    let mut during = 0;
    while lab.edge.alive() && t0.elapsed() < Duration::from_secs(20) {
        during = during.max(forwarded(&lab).saturating_sub(before));
        if during >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        during >= 10,
        "only {during} requests forwarded during the drain"
    );
    all_calls_completed(&lab, calls, 2);
    let took = exits_within(&mut lab, Duration::from_secs(8));
    println!("the node exited {took:?} after the calls ended");
    let logs = lab.edge.logs().join("\n");
    let line = logs
        .lines()
        .find(|l| l.contains("drain complete: no call or transaction left"))
        .unwrap_or_else(|| panic!("no completion line:\n{logs}"));
    println!("{line}");
    assert!(!logs.contains("drain deadline reached"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
}
