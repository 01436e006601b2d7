//! The Access Edge policy end to end, through the real binary with real
//! peers: SIPp as users and home pool, Kamailio as the partners' edges over
//! mutual TLS. File transfer and recording refused both ways, products and
//! versions, the per-partner rate limit under a flood (while another
//! partner's IMs all succeed), the enumeration guard, the onboarding IM
//! test and `partner enable`, certification lapses, `fedge test-federation`,
//! and topology hiding across whole dialogs in both directions.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedge::sip::SipMessage;
use fedge::sip::framing::{DatagramItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge_testkit::lab::*;
use fedge_testkit::peers::{Sipp, free_port, scenario};
use fedge_testkit::*;

/// Bodies and headers of the requests that must not cross.
const FT_INVITE: &str = "------=_NextPart_000_0001
Content-Type: application/sdp

v=0
o=- 0 0 IN IP4 127.0.0.1
s=session
c=IN IP4 127.0.0.1
t=0 0
m=data 7000 TCP/RTP/AVP 127
a=sendonly
a=mid:1

------=_NextPart_000_0001
Content-Type: application/ms-filetransfer+xml
Content-Disposition: render; handling=optional

<request xmlns=\"http://schemas.microsoft.com/rtc/2009/05/filetransfer\" requestId=\"1\"><publishFile><fileInfo><id>{6244F934-2EB1-443F-8E2C-48BA64AF463D}</id><name>referral.pdf</name><size>4096</size></fileInfo></publishFile></request>
------=_NextPart_000_0001--";
const FT_CT: &str = "multipart/mixed;boundary=\"----=_NextPart_000_0001\"";
const LEGACY_FT: &str = "Invitation-Command: INVITE
Invitation-Cookie: 4242
Application-Name: File Transfer
Application-GUID: {5D3E02AB-6190-11d3-BBBB-00C04F795683}
Application-File: referral.pdf
Application-FileSize: 4096";
const MSRP_FT: &str = "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=message 7654 TCP/MSRP *
a=accept-types:message/cpim
a=file-selector:name:\"referral.pdf\" type:application/pdf size:4096
a=path:msrp://127.0.0.1:7654/s1;tcp";
const SIPREC: &str = "--rec
Content-Type: application/sdp
Content-Disposition: session

v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 5000 RTP/AVP 0
a=sendonly

--rec
Content-Type: application/rs-metadata+xml
Content-Disposition: recording-session

<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\"><datamode>complete</datamode></recording>
--rec--";

#[test]
fn file_transfer_and_recording_never_cross_in_either_direction() {
    let lab = Lab::new();
    let ft = refusal(
        309,
        "File transfer is switched off across this federation",
        None,
    );
    let ft_invite = [("CT", FT_CT), ("BODY", FT_INVITE)];
    // Lync file transfer, partner to home and home to partner: 606 with
    // Warning 309, as SfB's IM filter answers.
    lab.refused(
        true,
        "invite_refused_uac.xml",
        &ft_invite,
        606,
        ft.clone(),
        "bob@fedge.test",
        "partner.test",
    );
    lab.refused(
        false,
        "invite_refused_uac.xml",
        &ft_invite,
        606,
        ft.clone(),
        "alice@partner.test",
        "fedge.test",
    );
    // The Communicator-era invitation inside an IM.
    let legacy = [
        ("CT", "text/x-msmsgsinvite; charset=UTF-8"),
        ("BODY", LEGACY_FT),
    ];
    lab.refused(
        true,
        "message_uac.xml",
        &legacy,
        606,
        ft.clone(),
        "bob@fedge.test",
        "partner.test",
    );
    // MSRP file transfer, offered by the home side.
    let msrp = [("CT", "application/sdp"), ("BODY", MSRP_FT)];
    lab.refused(
        false,
        "invite_refused_uac.xml",
        &msrp,
        606,
        ft.clone(),
        "alice@partner.test",
        "fedge.test",
    );

    // SIPREC, both ways: refused with its reason and SfB's 1027.
    let rec = refusal(
        399,
        "Recording is switched off across this federation",
        Some(1027),
    );
    let siprec = [
        ("CT", "multipart/mixed;boundary=rec"),
        ("BODY", SIPREC),
        (
            "HEADERS",
            "\n      Require: siprec\n      User-Agent: UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)",
        ),
    ];
    lab.refused(
        true,
        "invite_refused_uac.xml",
        &siprec,
        403,
        rec.clone(),
        "bob@fedge.test",
        "partner.test",
    );
    let src_contact = [
        ("CT", "application/sdp"),
        (
            "BODY",
            "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5000 RTP/AVP 0",
        ),
        (
            "HEADERS",
            "\n      Contact: <sip:recorder@127.0.0.1>;+sip.src",
        ),
    ];
    lab.refused(
        false,
        "invite_refused_uac.xml",
        &src_contact,
        403,
        rec,
        "alice@partner.test",
        "fedge.test",
    );

    // Content outside the allow-list: 415 with the list in Accept.
    let (mut checks, _) = refusal(
        399,
        "Content of type application/octet-stream may not cross",
        None,
    );
    checks.push_str(&ereg("text/plain", "Accept:", "a", false));
    lab.refused(
        true,
        "message_uac.xml",
        &[("CT", "application/octet-stream"), ("BODY", "MZ binary")],
        415,
        (checks, refs(&["w", "a"])),
        "bob@fedge.test",
        "partner.test",
    );

    let m = |rule: &str, dir: &str| {
        metric(
            lab.edge.admin,
            "fedge_rejections_total",
            &[&format!("rule=\"{rule}\""), &format!("direction=\"{dir}\"")],
        )
    };
    assert_eq!(m("file_transfer", "inbound"), 2.0);
    assert_eq!(m("file_transfer", "outbound"), 2.0);
    assert_eq!(m("recording", "inbound"), 1.0);
    assert_eq!(m("recording", "outbound"), 1.0);
    assert_eq!(m("body_type", "inbound"), 1.0);
}

#[test]
fn only_lync_2010_and_later_federate_unless_a_lab_partner_is_exempt() {
    let lab = Lab::new();
    let home = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "message_uas.xml", &[]),
        lab.home,
        None,
        &["-m", "3"],
    );
    let ua = |s: &str| format!("\n      User-Agent: {s}");
    let message = |ua_line: String, status: u16, checks: (String, String)| {
        let vals = [
            ("HEADERS", ua_line.as_str()),
            ("STATUS", &status.to_string()),
            ("CHECKS", &checks.0),
            ("REFERENCES", &checks.1),
        ];
        let r = lab.partner_uac(
            &scenario(lab.dir(), "message_uac.xml", &vals),
            "bob",
            "fedge.test",
            "partner.test",
        );
        lab.assert_ok(&format!("{ua_line:?}: want {status}"), &r);
    };
    // Cisco Jabber and consumer Skype are not Lync or SfB.
    message(
        ua("Cisco-Jabber/14.1.3 (Windows 10)"),
        403,
        refusal(
            399,
            "Cisco-Jabber/14.1.3 is not Lync or Skype for Business",
            None,
        ),
    );
    message(
        ua("Skype/8.96.0.207"),
        403,
        refusal(399, "Skype/8.96.0.207 is not Lync", None),
    );
    // A Lync 2010 build below 4.0.7577.4103: the reason names both.
    message(
        ua("UCCAPI/4.0.7577.314 OC/4.0.7577.314 (Microsoft Lync 2010)"),
        403,
        refusal(
            399,
            "client build 4\\.0\\.7577\\.314 is older than the oldest accepted, 4\\.0\\.7577\\.4103",
            None,
        ),
    );
    // A pre-Lync server (OCS 2007 R2 is RTC/3.5).
    message(
        ua("RTC/3.5"),
        403,
        refusal(
            399,
            "server version 3\\.5 is older than the oldest accepted, RTC/4\\.0",
            None,
        ),
    );
    // The oldest accepted client, a Lync 2013 client and an SfB server application.
    message(
        ua("UCCAPI/4.0.7577.4103 OC/4.0.7577.4103 (Microsoft Lync 2010)"),
        200,
        Default::default(),
    );
    message(
        ua("UCCAPI/15.0.4420.1017 OC/15.0.4420.1017 (Microsoft Lync)"),
        200,
        Default::default(),
    );
    assert_eq!(
        metric(
            lab.edge.admin,
            "fedge_rejections_total",
            &["rule=\"product\""]
        ),
        4.0
    );

    // A lab partner may be exempted: Jabber then crosses.
    let before = admin_get(lab.edge.admin, "/registry")["version"]
        .as_i64()
        .unwrap();
    lab.cli(&[
        "partner",
        "update",
        "partner.test",
        "--set",
        "product_check=off",
        "--reason",
        "interop lab with Cisco endpoints",
    ]);
    let t0 = Instant::now();
    while admin_get(lab.edge.admin, "/registry")["version"]
        .as_i64()
        .unwrap()
        == before
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the update never reached the edge"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    message(
        ua("Cisco-Jabber/14.1.3 (Windows 10)"),
        200,
        Default::default(),
    );
    lab.assert_ok("home pool", &home.wait(LIMIT));
}

#[test]
fn a_flooding_partner_is_held_to_its_rate_while_another_partner_gets_through() {
    let lab = Lab::new();
    let other_kam = lab.other_partner();
    // The home pool answers whatever gets through.
    let _home = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "message_uas.xml", &[]),
        lab.home,
        None,
        &["-m", "100000"],
    );
    // Both partners' edges connect and deliver one IM first, so that the
    // flood measures the rate limit and not connection set-up.
    for (via, from) in [(lab.kam.udp, "partner.test"), (other_kam.udp, "other.test")] {
        let r = lab.spawn_uac(
            via,
            &scenario(lab.dir(), "message_uac.xml", &[]),
            ("bob", "fedge.test"),
            from,
            &[],
        );
        lab.assert_ok(&format!("first IM from {from}"), &r.wait(LIMIT));
    }
    // partner.test: 600 MESSAGEs at 200/s, ten times its default 20/s.
    let t0 = Instant::now();
    let flood = lab.spawn_uac(
        lab.kam.udp,
        &scenario(lab.dir(), "message_flood_uac.xml", &[]),
        ("bob", "fedge.test"),
        "partner.test",
        &["-m", "600", "-r", "200", "-l", "200"],
    );
    // other.test meanwhile: 40 MESSAGEs at 10/s, every one must get its 200.
    let steady = lab.spawn_uac(
        other_kam.udp,
        &scenario(lab.dir(), "message_uac.xml", &[]),
        ("carol", "fedge.test"),
        "other.test",
        &["-m", "40", "-r", "10"],
    );
    let steady = steady.wait(LIMIT);
    let flood = flood.wait(LIMIT);
    let elapsed = t0.elapsed().as_secs_f64();
    lab.assert_ok("other.test's steady IMs, all answered 200", &steady);
    lab.assert_ok("partner.test's flood, each answered 200 or 503", &flood);

    let limited = |p: &str| {
        metric(
            lab.edge.admin,
            "fedge_rejections_total",
            &["rule=\"rate_limited\"", &format!("partner=\"{p}\"")],
        )
    };
    let forwarded = metric(
        lab.edge.admin,
        "fedge_requests_total",
        &["outcome=\"forward\"", "direction=\"inbound\""],
    );
    // Of 600 offered, no more than the burst of 40 plus 20/s for as long
    // as the flood lasted got through; the rest were told to wait.
    let passed = 600.0 - limited("partner.test");
    assert!(
        passed <= 40.0 + 20.0 * elapsed + 1.0,
        "{passed} of partner.test's requests passed in {elapsed:.1} s"
    );
    assert!(passed >= 40.0, "not even the burst passed: {passed}");
    assert_eq!(limited("other.test"), 0.0);
    assert!(forwarded >= 40.0 + 40.0, "forwarded {forwarded}");
    assert!(
        lab.edge
            .wait_log(
                &[
                    "request refused",
                    "\"status\":503",
                    "exceeds its 20 requests per second"
                ],
                Duration::from_secs(2)
            )
            .is_some()
    );
    // What the partner's edge got: 503 with Retry-After and the reason.
    let kam = lab.kam.logs();
    let seen = kam
        .lines()
        .filter(|l| {
            l.contains("RPL 503")
                && l.contains("retry-after=[1]")
                && l.contains("exceeds its 20 requests per second")
        })
        .count();
    assert_eq!(
        seen as f64,
        limited("partner.test"),
        "503s seen by the partner's edge:\n{kam}"
    );
}

#[test]
fn a_partner_reaching_too_many_home_users_is_refused_new_ones() {
    let lab = Lab::with("\n[policy]\nenumeration_limit = 5", Some("enabled"));
    let _home = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "message_uas.xml", &[]),
        lab.home,
        None,
        &["-m", "100"],
    );
    // Five distinct users (user1..user5): all delivered.
    let five = lab.spawn_uac(
        lab.kam.udp,
        &scenario(
            lab.dir(),
            "message_uac.xml",
            &[("USER", "user[call_number]")],
        ),
        ("unused", "fedge.test"),
        "partner.test",
        &["-m", "5", "-l", "1"],
    );
    lab.assert_ok("five distinct users", &five.wait(LIMIT));
    // A sixth is refused and says why; the known ones still get through.
    lab.refused(
        true,
        "message_uac.xml",
        &[],
        403,
        refusal(
            399,
            "has reached 5 distinct home addresses within 1h",
            Some(1002),
        ),
        "user6@fedge.test",
        "partner.test",
    );
    let again = lab.partner_uac(
        &scenario(lab.dir(), "message_uac.xml", &[]),
        "user3",
        "fedge.test",
        "partner.test",
    );
    lab.assert_ok("a user already reached", &again);
    assert_eq!(
        metric(
            lab.edge.admin,
            "fedge_rejections_total",
            &["rule=\"enumeration\"", "partner=\"partner.test\""]
        ),
        1.0
    );
}

#[test]
fn the_im_test_must_pass_before_a_partner_is_enabled() {
    let lab = Lab::with("", Some("approved"));
    // Approved, not enabled: ordinary users are out of reach, and why.
    lab.refused(
        true,
        "message_uac.xml",
        &[],
        403,
        refusal(399,
        "is approved but not yet enabled: until then only sip:federation-test@fedge\\.test may be reached",
        Some(1002),),
        "bob@fedge.test",
        "partner.test",
    );
    let (code, _, err) = fedge_cli(
        &lab.edge.config_path,
        &["partner", "enable", "partner.test", "--reason", "go live"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no IM test has passed"), "{err}");

    // The partner's tester writes to the test address; the edge answers
    // 200 and writes back, and the tester's client accepts the reply.
    let reply_checks = ereg("sip:federation-test@fedge\\.test", "From:", "f", false)
        + &ereg("sip:alice@partner\\.test", "To:", "t", false)
        + &ereg("this reply proves the way back", "body", "b", false);
    let tester = Sipp::spawn(
        lab.dir(),
        &scenario(
            lab.dir(),
            "message_uas.xml",
            &[
                ("CHECKS", &reply_checks),
                ("REFERENCES", &refs(&["f", "t", "b"])),
            ],
        ),
        lab.users,
        None,
        &[],
    );
    let r = lab.partner_uac(
        &scenario(lab.dir(), "message_uac.xml", &[]),
        "federation-test",
        "fedge.test",
        "partner.test",
    );
    lab.assert_ok("IM to the test address", &r);
    lab.assert_ok(
        "the reply reaches the partner's tester",
        &tester.wait(LIMIT),
    );

    // Recorded on the partner (durably: the CLI reads the database).
    let t0 = Instant::now();
    let shown = loop {
        let out = lab.cli(&["partner", "show", "partner.test"]);
        if out.contains("im test:          passed") {
            break out;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "IM test never recorded:\n{out}\n{}",
            lab.edge.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(shown.contains("from sip:alice@partner.test"), "{shown}");
    assert_eq!(
        metric(
            lab.edge.admin,
            "fedge_im_tests_total",
            &["partner=\"partner.test\"", "result=\"passed\""]
        ),
        1.0
    );

    // Now enable succeeds, and ordinary users are reachable.
    let out = lab.cli(&[
        "partner",
        "enable",
        "partner.test",
        "--reason",
        "IM test passed with the partner's tester",
    ]);
    assert!(out.contains("approved -> enabled"), "{out}");
    lab.wait_state("partner.test", Some("enabled"));
    lab.message_delivered("bob", "enabled partner to an ordinary user");
}

fn date_in(days: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[test]
fn a_lapsed_certification_suspends_the_partner_and_a_close_one_warns() {
    let lab = Lab::with("\n[policy]\nig_check_interval = \"200ms\"", Some("enabled"));
    let _other = lab.other_partner();
    let soon = date_in(10);
    lab.cli(&[
        "partner",
        "update",
        "other.test",
        "--set",
        &format!("ig_expires={soon}"),
        "--reason",
        "renewed DSPT",
    ]);
    let lapsed = date_in(-1);
    lab.cli(&[
        "partner",
        "update",
        "partner.test",
        "--set",
        &format!("ig_expires={lapsed}"),
        "--reason",
        "DSPT date from the register",
    ]);

    lab.wait_state("partner.test", Some("suspended"));
    let history = lab.cli(&["partner", "history", "partner.test"]);
    assert!(
        history.contains(&format!(
            "IG certification expired on {lapsed} (automatic suspension)"
        )),
        "{history}"
    );
    assert!(
        lab.edge
            .wait_log(
                &[
                    "IG certification expires soon",
                    "other.test",
                    "\"days_left\":10"
                ],
                Duration::from_secs(5)
            )
            .is_some(),
        "no warning for other.test"
    );
    assert_eq!(
        metric(
            lab.edge.admin,
            "fedge_partner_ig_days_left",
            &["partner=\"other.test\""]
        ),
        10.0
    );
    lab.wait_state("other.test", Some("enabled"));

    // The suspended partner's users are refused with the reason.
    lab.refused(
        true,
        "message_uac.xml",
        &[],
        403,
        refusal(
            399,
            "partner Partner Trust \\(domain partner\\.test\\) is suspended",
            Some(1002),
        ),
        "bob@fedge.test",
        "partner.test",
    );
}

#[test]
fn test_federation_reports_each_step() {
    let lab = Lab::new();
    lab.cli(&[
        "partner",
        "update",
        "partner.test",
        "--set",
        "tech_sip=sip:tech@partner.test",
        "--reason",
        "onboarding",
    ]);
    let checks = ereg(
        "Federation test from sip:federation-test@fedge\\.test",
        "body",
        "b",
        false,
    ) + &ereg("sip:tech@partner\\.test", "To:", "t", false);
    let tech = Sipp::spawn(
        lab.dir(),
        &scenario(
            lab.dir(),
            "probe_uas.xml",
            &[("CHECKS", &checks), ("REFERENCES", &refs(&["b", "t"]))],
        ),
        lab.users,
        None,
        &["-m", "2"],
    );
    let (code, out, err) = fedge_cli(
        &lab.edge.config_path,
        &["test-federation", "partner.test", "--timeout", "5s"],
    );
    lab.assert_ok("the partner's technical contact", &tech.wait(LIMIT));
    assert_eq!(code, 0, "{out}\n{err}");
    for step in [
        "resolve  ok",
        "connect  ok",
        "tls      ok",
        "options  ok",
        "message  ok",
    ] {
        assert!(out.contains(step), "no {step:?} in:\n{out}");
    }
    assert!(
        out.contains("partner certificate names sip.partner.test"),
        "{out}"
    );
    assert!(out.contains("all steps passed"), "{out}");

    // A partner whose edge does not answer: the step that failed, exit 1.
    let closed = free_port(true);
    lab.cli(&[
        "partner",
        "add",
        "--domain",
        "gone.test",
        "--org",
        "Gone Org",
        "--edge-fqdn",
        "sip.gone.test",
        "--address",
        &format!("127.0.0.1:{closed}"),
    ]);
    let (code, out, err) = fedge_cli(
        &lab.edge.config_path,
        &["test-federation", "gone.test", "--timeout", "2s"],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("resolve  ok") && out.contains("connect  FAILED"),
        "{out}"
    );
    assert!(err.contains("failed at step connect"), "{err}");
    // An unknown domain is a usage error.
    let (code, _, err) = fedge_cli(&lab.edge.config_path, &["test-federation", "nobody.test"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no partner has the domain nobody.test"),
        "{err}"
    );
}

// ---------------------------------------------------------------------
// Topology hiding, with a home pool of our own making: its headers name
// internal hosts that must never reach the partner.

const POOL_RR: &str =
    "<sip:pool01.corp.home.local:5061;transport=tls;opaque=state:T;lr;ms-route-sig=fe7bcd>";
const HOME_CONTACT: &str = "sip:bob@10.20.30.40:50123;transport=tls;ms-opaque=d3470f2e1d";
const UA_VIA: &str = "SIP/2.0/TLS 10.20.30.40:50123;branch=z9hG4bK-ua-1;ms-received-port=50123";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\na=x-fedge-test:body-kept-intact\r\n";
const SDP_ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7002 RTP/AVP 0\r\na=x-fedge-test:answer-kept-intact\r\n";

/// What the partner must never see.
fn leaks(pool_port: u16) -> String {
    format!(
        "corp\\.home\\.local|10\\.20\\.30\\.|ms-internal-info|ms-route-sig|targetname|127\\.0\\.0\\.1:{pool_port}"
    )
}

struct Pool {
    sock: UdpSocket,
    edge: SocketAddr,
    port: u16,
}

impl Pool {
    fn via(&self, n: u32) -> String {
        format!(
            "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-pool-{n};ms-internal-info=\"aa-pool01.corp.home.local\"",
            self.port
        )
    }

    fn send(&self, data: impl AsRef<[u8]>) {
        self.sock.send_to(data.as_ref(), self.edge).unwrap();
    }

    /// The next message from the edge that `want` accepts (others, such as
    /// retransmissions and 100 Trying, are skipped).
    fn recv(&self, what: &str, want: impl Fn(&SipMessage) -> bool) -> SipMessage {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut b = vec![0u8; 65535];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the pool never got {what}");
            self.sock.set_read_timeout(Some(left)).unwrap();
            let Ok((n, _)) = self.sock.recv_from(&mut b) else {
                continue;
            };
            match parse_datagram(Bytes::copy_from_slice(&b[..n]), &Limits::default()) {
                DatagramItem::Message(m) if want(&m) => return m,
                DatagramItem::Message(_) => {}
                other => panic!("the edge sent something unparsable: {other:?}"),
            }
        }
    }
}

fn is(method: &'static str) -> impl Fn(&SipMessage) -> bool {
    move |m| m.method().is_some_and(|x| x.as_str() == method)
}

fn answer(cseq: &'static str, status: u16) -> impl Fn(&SipMessage) -> bool {
    move |m| m.status() == Some(status) && m.cseq().is_some_and(|c| c.method == cseq)
}

fn values(m: &SipMessage, h: HeaderName) -> Vec<String> {
    m.values(h).map(str::to_string).collect()
}

fn tag(v: &str) -> String {
    v.split(";tag=")
        .nth(1)
        .map(|t| t.split(';').next().unwrap_or(t).to_string())
        .unwrap_or_default()
}

#[test]
fn partners_never_see_the_home_topology_and_dialogs_still_work() {
    let lab = Lab::new();
    let pool = Pool {
        sock: UdpSocket::bind(("127.0.0.1", lab.home)).unwrap(),
        edge: lab.edge.internal,
        port: lab.home,
    };
    let hidden_rr =
        "Record-Route: <sip:sip\\.fedge\\.test:[0-9]+;transport=tls;lr;fe-h=[A-Za-z0-9_-]+>";
    let hidden_contact =
        "Contact: <sip:fe1-[A-Za-z0-9_-]+@sip\\.fedge\\.test:[0-9]+;transport=tls>";
    let partner_checks = ereg(&leaks(pool.port), "msg", "leak", true)
        + &ereg(hidden_rr, "msg", "rr", false)
        + &ereg(hidden_contact, "msg", "ct", false);
    let partner_refs = refs(&["leak", "rr", "ct"]);

    // 1. Home calls the partner.
    let callee = Sipp::spawn(
        lab.dir(),
        &scenario(
            lab.dir(),
            "invite_uas.xml",
            &[
                ("CHECKS", &partner_checks),
                (
                    "REFERENCES",
                    &format!("{partner_refs}<Reference variables=\"remote,local\"/>"),
                ),
            ],
        ),
        lab.users,
        None,
        &[],
    );
    pool.send(format!(
        "INVITE sip:alice@partner.test SIP/2.0\r\nVia: {}\r\nVia: {UA_VIA}\r\nRecord-Route: {POOL_RR}\r\nMax-Forwards: 69\r\n\
         From: <sip:bob@fedge.test>;tag=home1;epid=0123456789\r\nTo: <sip:alice@partner.test>\r\nCall-ID: topo-1-5f2d\r\nCSeq: 1 INVITE\r\n\
         Contact: <{HOME_CONTACT}>;+sip.instance=\"<urn:uuid:0c3a2c6e-0000-0000-0000-000000000001>\"\r\n\
         User-Agent: UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)\r\nMs-Subnet: 10.20.30.0\r\n\
         Proxy-Authorization: TLS-DSK qop=\"auth\", realm=\"SIP Communications Service\", opaque=\"4B1B\", crand=\"1\", cnum=\"1\", targetname=\"pool01.corp.home.local\", response=\"abc\"\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        pool.via(1),
        SDP.len()
    ));
    let ok = pool.recv("the 200 to its INVITE", answer("INVITE", 200));
    // The Vias hidden from the partner are back, as they were.
    assert_eq!(
        values(&ok, HeaderName::Via),
        vec![pool.via(1), UA_VIA.to_string()]
    );
    let rr = values(&ok, HeaderName::RecordRoute);
    assert!(rr.len() >= 4, "{rr:?}");
    assert!(
        rr[rr.len() - 3].starts_with("<sip:sip.fedge.test:")
            && rr[rr.len() - 3].ends_with(";transport=tls;lr>"),
        "{rr:?}"
    );
    assert!(
        rr[rr.len() - 2].starts_with("<sip:sip.fedge.test:")
            && rr[rr.len() - 2].ends_with(";transport=udp;lr>"),
        "{rr:?}"
    );
    assert_eq!(rr[rr.len() - 1], POOL_RR);
    assert!(!rr.iter().any(|r| r.contains("fe-h=")), "{rr:?}");
    let to_tag = tag(ok.first(HeaderName::To).unwrap());
    let remote = fedge::sip::headers::NameAddr::parse(ok.first(HeaderName::Contact).unwrap())
        .unwrap()
        .uri
        .raw
        .to_string();
    // The caller's route set: the Record-Route reversed, without the pool's own entry.
    let route: Vec<&str> = rr[..rr.len() - 1]
        .iter()
        .rev()
        .map(String::as_str)
        .collect();
    let in_dialog = |method: &str, cseq: u32, branch: u32| {
        format!(
            "{method} {remote} SIP/2.0\r\nVia: {}\r\nVia: {UA_VIA}\r\nRoute: {}\r\nMax-Forwards: 69\r\n\
             From: <sip:bob@fedge.test>;tag=home1;epid=0123456789\r\nTo: <sip:alice@partner.test>;tag={to_tag}\r\n\
             Call-ID: topo-1-5f2d\r\nCSeq: {cseq} {method}\r\nContact: <{HOME_CONTACT}>\r\nContent-Length: 0\r\n\r\n",
            pool.via(branch),
            route.join(", ")
        )
    };
    pool.send(in_dialog("ACK", 1, 2));
    // The callee's INFO comes back to the home Contact and along the pool's route.
    let info = pool.recv("the callee's INFO", is("INFO"));
    assert_eq!(info.request_uri_str(), Some(HOME_CONTACT));
    assert_eq!(info.first(HeaderName::Route), Some(POOL_RR));
    pool.send(ResponseBuilder::new(&info, 200).build());
    // Kamailio may hand a response and a request on one connection to
    // different workers: give the INFO's 200 a head start on the BYE.
    std::thread::sleep(Duration::from_millis(200));
    pool.send(in_dialog("BYE", 2, 3));
    let bye_ok = pool.recv("the 200 to its BYE", answer("BYE", 200));
    assert_eq!(values(&bye_ok, HeaderName::Via)[0], pool.via(3));
    lab.assert_ok(
        "partner callee (nothing internal seen)",
        &callee.wait(LIMIT),
    );

    // 2. The partner calls home; the pool's answer names its internals.
    let caller = lab.spawn_uac(
        lab.kam.udp,
        &scenario(
            lab.dir(),
            "invite_uac.xml",
            &[("CHECKS", &partner_checks), ("REFERENCES", &partner_refs)],
        ),
        ("bob", "fedge.test"),
        "partner.test",
        &[],
    );
    let invite = pool.recv("the partner's INVITE", is("INVITE"));
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for v in invite.values(HeaderName::Via) {
        resp.push_str(&format!("Via: {v}\r\n"));
    }
    resp.push_str(&format!("Record-Route: {POOL_RR}\r\n"));
    for v in invite.values(HeaderName::RecordRoute) {
        resp.push_str(&format!("Record-Route: {v}\r\n"));
    }
    let partner_contact =
        fedge::sip::headers::NameAddr::parse(invite.first(HeaderName::Contact).unwrap())
            .unwrap()
            .uri
            .raw
            .to_string();
    resp.push_str(&format!(
        "From: {}\r\nTo: {};tag=home2\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContact: <{HOME_CONTACT}>\r\n\
         Authentication-Info: TLS-DSK qop=\"auth\", opaque=\"4B1B\", srand=\"1\", snum=\"1\", rspauth=\"aa\", targetname=\"pool01.corp.home.local\", realm=\"SIP Communications Service\", version=4\r\n\
         Server: RTC/6.0\r\nWarning: 399 pool01.corp.home.local \"answered by the pool\"\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP_ANSWER}",
        invite.first(HeaderName::From).unwrap(),
        invite.first(HeaderName::To).unwrap(),
        invite.call_id().unwrap(),
        SDP_ANSWER.len()
    ));
    pool.send(resp);
    // The partner's ACK finds its way to the home Contact through the pool.
    let ack = pool.recv("the partner's ACK", is("ACK"));
    assert_eq!(ack.request_uri_str(), Some(HOME_CONTACT));
    assert_eq!(ack.first(HeaderName::Route), Some(POOL_RR));
    // The callee's INFO, along the INVITE's Record-Route (the pool's entry popped).
    let route: Vec<String> = values(&invite, HeaderName::RecordRoute);
    pool.send(format!(
        "INFO {partner_contact} SIP/2.0\r\nVia: {}\r\nRoute: {}\r\nMax-Forwards: 69\r\nFrom: {};tag=home2\r\nTo: {}\r\n\
         Call-ID: {}\r\nCSeq: 1 INFO\r\nContact: <{HOME_CONTACT}>\r\nContent-Type: application/xml\r\nContent-Length: 5\r\n\r\n<a/>\n",
        pool.via(4),
        route.join(", "),
        invite.first(HeaderName::To).unwrap(),
        invite.first(HeaderName::From).unwrap(),
        invite.call_id().unwrap(),
    ));
    let info_ok = pool.recv("the 200 to its INFO", answer("INFO", 200));
    assert_eq!(values(&info_ok, HeaderName::Via), vec![pool.via(4)]);
    let bye = pool.recv("the partner's BYE", is("BYE"));
    assert_eq!(bye.request_uri_str(), Some(HOME_CONTACT));
    assert_eq!(bye.first(HeaderName::Route), Some(POOL_RR));
    pool.send(ResponseBuilder::new(&bye, 200).build());
    lab.assert_ok(
        "partner caller (nothing internal seen)",
        &caller.wait(LIMIT),
    );
}
