//! Features across nodes (issue 17 §1): two `fedge serve` nodes on one
//! PostgreSQL. The onboarding IM test passed through node A is seen in
//! both nodes' API and lets node B's operator enable the partner; an IG
//! certification lapse suspends the partner once (one audit entry, not one
//! per node) and both nodes refuse it; a CVI organiser enrolled and a
//! meeting created through node A is dialled by a room system (SIPp) on
//! node B and reaches the connector (SIPp UAS), and once the organiser is
//! withdrawn on A, node B refuses the meeting. Partners are Kamailio
//! edges over mutual TLS, one per node.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use fedge_testkit::cluster::node_config;
use fedge_testkit::cvi::{ORGANISER, enrol};
use fedge_testkit::lab::{LIMIT, Lab, ereg, localhost, refs, refusal};
use fedge_testkit::peers::{Kamailio, Sipp, SippResult, free_port, scenario};
use fedge_testkit::pg::Postgres;
use fedge_testkit::rtp::write_pcap;
use fedge_testkit::*;

/// Node A inside a [`Lab`] (with its Kamailio), node B beside it with its
/// own Kamailio for the same partner, one PostgreSQL. Fields drop in
/// order: the nodes before the database.
struct Site {
    lab: Lab,
    b: Edge,
    kam_b: Kamailio,
    _pg: Postgres,
}

/// A node's configuration: home pool at `home`, `extra` appended.
fn config(pki: &Pki, pg: &Postgres, name: &str, home: u16, extra: &str) -> String {
    let cfg = node_config(pki, &pg.url, name, extra).replace(
        "next_hop = \"sip:127.0.0.1:5080;transport=udp\"",
        &format!("next_hop = \"sip:127.0.0.1:{home};transport=udp\""),
    );
    assert!(
        cfg.contains(&format!("127.0.0.1:{home};")),
        "next hop moved"
    );
    cfg.replace("[sip]\n", "[sip]\nt1 = \"100ms\"\n")
}

impl Site {
    /// Two nodes with `extra` in their configuration; partner.test
    /// imported through node A in `state` (with Kamailio A as its edge's
    /// address), seen by both.
    fn start(extra: &str, state: &str) -> Site {
        let pki = Pki::new();
        let pg = Postgres::start();
        let home = free_port(false);
        let users = free_port(false);
        let a = Edge::start(&pki, &config(&pki, &pg, "node-a", home, extra));
        let b = Edge::start(&pki, &config(&pki, &pg, "node-b", home, extra));
        let kam = |name: &str, edge: &Edge| {
            Kamailio::start(
                pki.path(),
                name,
                PARTNER_FQDN,
                &pki.partner,
                &pki.ca_file,
                edge.federation,
                localhost(users),
            )
        };
        let kam_a = kam("partner", &a);
        let kam_b = kam("partner-b", &b);
        let lab = Lab {
            pki,
            edge: a,
            kam: kam_a,
            home,
            users,
        };
        lab.import_as(
            "partner.test",
            "Partner Trust",
            PARTNER_FQDN,
            lab.kam.tls,
            state,
        );
        let mut site = Site {
            lab,
            b,
            kam_b,
            _pg: pg,
        };
        site.on_b(|lab| lab.wait_state("partner.test", Some(state)));
        site
    }

    /// Runs `f` with node B (and its Kamailio) in the lab's place.
    fn on_b<R>(&mut self, f: impl FnOnce(&Lab) -> R) -> R {
        std::mem::swap(&mut self.lab.edge, &mut self.b);
        std::mem::swap(&mut self.lab.kam, &mut self.kam_b);
        let r = f(&self.lab);
        std::mem::swap(&mut self.lab.edge, &mut self.b);
        std::mem::swap(&mut self.lab.kam, &mut self.kam_b);
        r
    }

    fn nodes(&self) -> [&Edge; 2] {
        [&self.lab.edge, &self.b]
    }
}

/// partner.test's id, from a node's API.
fn partner_id(node: &Edge) -> String {
    let v = admin_get(node.admin, "/api/v1/partners");
    v.as_array()
        .and_then(|ps| {
            ps.iter().find(|p| {
                p["domains"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == "partner.test"))
            })
        })
        .and_then(|p| p["id"].as_str())
        .unwrap_or_else(|| panic!("partner.test in {v}"))
        .to_string()
}

#[test]
fn an_im_test_passed_through_one_node_is_seen_on_both_and_enables_on_the_other() {
    let mut site = Site::start("", "approved");
    let lab = &site.lab;
    // The partner's tester writes to the test address through node A; node
    // A answers and writes back; the tester's client accepts the reply.
    let reply_checks = ereg("this reply proves the way back", "body", "b", false);
    let tester = Sipp::spawn(
        lab.dir(),
        &scenario(
            lab.dir(),
            "message_uas.xml",
            &[("CHECKS", &reply_checks), ("REFERENCES", &refs(&["b"]))],
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
    lab.assert_ok("IM to the test address through node A", &r);
    lab.assert_ok("the reply reaches the tester", &tester.wait(LIMIT));

    // Both nodes' API report it passed, with the same time and sender.
    let id = partner_id(&lab.edge);
    let t0 = Instant::now();
    let seen: Vec<serde_json::Value> = loop {
        let v: Vec<serde_json::Value> = site
            .nodes()
            .iter()
            .map(|n| admin_get(n.admin, &format!("/api/v1/partners/{id}/tests")))
            .collect();
        if v.iter().all(|t| t["im_test"]["passed_at"].is_string()) {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "IM test not seen on both nodes: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(seen[0]["im_test"], seen[1]["im_test"]);
    assert_eq!(seen[1]["im_test"]["from"], "sip:alice@partner.test");
    for t in &seen {
        let trail = t["im_tests"].as_array().unwrap();
        assert_eq!(trail.len(), 1, "one IM test entry: {t}");
    }
    // Node B's operator may now enable the partner; both nodes enforce it.
    let out = fedge_ok(
        &site.b.config_path,
        &[
            "partner",
            "enable",
            "partner.test",
            "--reason",
            "IM test passed through node A",
        ],
    );
    assert!(out.contains("approved -> enabled"), "{out}");
    site.lab.wait_state("partner.test", Some("enabled"));
    site.on_b(|lab| {
        lab.wait_state("partner.test", Some("enabled"));
        lab.message_delivered("bob", "enabled partner to a user, through node B");
    });
}

fn date_in(days: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[test]
fn an_ig_lapse_suspends_the_partner_once_and_both_nodes_refuse_it() {
    let mut site = Site::start("\n[policy]\nig_check_interval = \"200ms\"\n", "enabled");
    let lapsed = date_in(-1);
    site.lab.cli(&[
        "partner",
        "update",
        "partner.test",
        "--set",
        &format!("ig_expires={lapsed}"),
        "--reason",
        "DSPT date from the register",
    ]);
    site.lab.wait_state("partner.test", Some("suspended"));
    site.on_b(|lab| lab.wait_state("partner.test", Some("suspended")));
    // Ten more check intervals on each node: still one suspension.
    std::thread::sleep(Duration::from_secs(2));
    let why = format!("IG certification expired on {lapsed} (automatic suspension)");
    for node in site.nodes() {
        let id = partner_id(node);
        let h = admin_get(node.admin, &format!("/api/v1/partners/{id}/history"));
        let entries = h["trail"]
            .as_array()
            .unwrap_or_else(|| panic!("a trail: {h}"))
            .iter()
            .filter(|e| e["action"] == "suspend")
            .collect::<Vec<_>>();
        assert_eq!(entries.len(), 1, "one suspension entry: {h}");
        assert_eq!(entries[0]["reason"], why.as_str());
        assert_eq!(entries[0]["actor"], "fedge");
    }
    let suspensions: f64 = site
        .nodes()
        .iter()
        .map(|n| metric(n.admin, "fedge_ig_suspensions_total", &[]))
        .sum();
    assert_eq!(
        suspensions, 1.0,
        "one node suspended, the other found it done"
    );
    let refused = |lab: &Lab| {
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
        )
    };
    refused(&site.lab);
    site.on_b(refused);
}

const DOMAIN: &str = "cvi.fedge.test";

/// `[cvi]` for a node: its own media ports, the connector at `connector`.
fn cvi_section(connector: u16, media: (u16, u16)) -> String {
    format!(
        "\n[cvi]\nenabled = true\nlisten = \"127.0.0.2:0\"\nlisten_tls = \"127.0.0.2:0\"\n\
         connector = \"sip:{{id}}@connector.fedge.test;transport=tcp\"\n\
         connector_address = \"127.0.0.1:{connector}\"\ntenant_key = \"87654321\"\n\
         trusted = [\"127.0.0.1\"]\ntrust_udp = true\ninstructions_base = \"https://cvi.fedge.test\"\n\
         media_port_min = {}\nmedia_port_max = {}\n",
        media.0, media.1
    )
}

/// Waits until something listens on TCP `port` (the connector SIPp).
fn wait_tcp_listen(port: u16, sipp: &mut Sipp) {
    let want = format!(":{port:04X} ");
    let t0 = Instant::now();
    loop {
        if let Some(r) = sipp.exited() {
            panic!("the connector exited ({:?}): {}", r.code, r.errors);
        }
        let listening = std::fs::read_to_string("/proc/net/tcp")
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1).is_some_and(|a| format!("{a} ").ends_with(&want))
                    && f.get(3) == Some(&"0A")
            });
        if listening {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "connector not listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The room system's BYE in the dialog (then its 200).
fn room_bye(user: &str) -> String {
    format!(
        r#"  <pause milliseconds="500"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Room 101" <sip:room101@rooms.leeds.nhs.uk>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{user}@{DOMAIN}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Contact: <sip:room101@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
"#
    )
}

/// A room system (SIPp over UDP, from 127.0.0.1) dials `id`@DOMAIN on the
/// CVI listener `cvi`; it must be answered `status` and pass `checks`.
fn room(dir: &Path, cvi: SocketAddr, id: &str, status: &str, checks: (&str, &str)) -> SippResult {
    let ok = status == "200";
    let sc = scenario(
        dir,
        "cvi_room_uac.xml",
        &[
            ("KEYS", ""),
            ("THEN", &if ok { room_bye(id) } else { String::new() }),
            ("CHECKS", checks.0),
            ("REFERENCES", checks.1),
            ("USER", id),
            ("DOMAIN", DOMAIN),
            ("FROM_DOMAIN", "rooms.leeds.nhs.uk"),
            ("MPORT", "[media_port]"),
            ("STATUS", status),
            (
                "ACK_URI",
                &if ok {
                    "[next_url]".to_string()
                } else {
                    format!("sip:{id}@{DOMAIN}")
                },
            ),
            ("ACK_BRANCH", if ok { "[branch]" } else { "[branch-4]" }),
            ("ACK_ROUTES", if ok { "[routes]" } else { "" }),
        ],
    );
    let media = free_port(false).to_string();
    Sipp::spawn(
        dir,
        &sc,
        free_port(false),
        Some(cvi),
        &["-mp", &media, "-timeout", "60s", "-aa"],
    )
    .wait(LIMIT)
}

#[test]
fn a_meeting_created_through_node_a_is_joined_on_node_b_and_withdrawn_everywhere() {
    let pki = Pki::new();
    let pg = Postgres::start();
    let connector = free_port(true);
    let home = free_port(false);
    let a = Edge::start(
        &pki,
        &config(
            &pki,
            &pg,
            "node-a",
            home,
            &cvi_section(connector, (41000, 41999)),
        ),
    );
    let b = Edge::start(
        &pki,
        &config(
            &pki,
            &pg,
            "node-b",
            home,
            &cvi_section(connector, (42000, 42999)),
        ),
    );
    let cvi_b = b.cvi.expect("node B's CVI listener");
    // Enrolled and created through node A's CLI.
    enrol(&a.config_path);
    let out = fedge_ok(
        &a.config_path,
        &["cvi", "meeting", "create", "--organiser", ORGANISER],
    );
    let id = conference_id(&out);
    assert_eq!(id.len(), 10, "{out}");
    // Node B's API knows the meeting.
    let (status, body) = http(b.admin, "GET", &format!("/api/v1/cvi/meetings/{id}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(ORGANISER), "{body}");

    // The connector (the Teams side): SIPp UAS over TCP, checking that the
    // call is for this meeting and that node B's relay carries its media.
    let pcap = pki.path().join("meeting.pcap");
    write_pcap(&pcap, 0x2222_2222, 0xbb, 20);
    let checks = ereg(&format!("^ *{id}$"), "X-Fedge-Conference-Id:", "cid", false)
        + &ereg("m=audio 42[0-9]{3} RTP/AVP", "body", "m", false);
    let sc = scenario(
        pki.path(),
        "cvi_connector_uas.xml",
        &[
            ("CHECKS", &checks),
            ("REFERENCES", &refs(&["cid", "m", "from", "to"])),
            ("PCAP", pcap.to_str().unwrap()),
            (
                "END",
                r#"  <recv request="BYE" timeout="45000"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"#,
            ),
        ],
    );
    let media = free_port(false).to_string();
    let mut conn = Sipp::spawn(
        pki.path(),
        &sc,
        connector,
        None,
        &["-t", "t1", "-mp", &media, "-timeout", "60s"],
    );
    wait_tcp_listen(connector, &mut conn);
    let logs = |e: &Edge| e.logs().join("\n");
    let r = room(
        pki.path(),
        cvi_b,
        &id,
        "200",
        (
            &ereg("m=audio 42[0-9]{3} RTP/AVP", "body", "a", false),
            &refs(&["a"]),
        ),
    );
    assert!(r.ok(), "room on node B: {r:?}\nnode B:\n{}", logs(&b));
    let c = conn.wait(LIMIT);
    assert!(c.ok(), "connector: {c:?}\nnode B:\n{}", logs(&b));
    assert!(
        b.wait_log(&["calling the connector"], Duration::from_secs(2))
            .is_some(),
        "node B placed the call"
    );
    assert!(
        a.logs()
            .iter()
            .all(|l| !l.contains("calling the connector")),
        "node A had no part in the call"
    );

    // Withdrawn through node A: node B refuses the meeting (404, the same
    // answer as an unknown ID).
    let out = fedge_ok(&a.config_path, &["cvi", "withdraw", "--email", ORGANISER]);
    assert!(out.contains("withdrawn from CVI"), "{out}");
    let warning = ereg(
        &format!("^ *399 cvi\\.fedge\\.test \".*no meeting can be joined with conference ID {id}"),
        "Warning:",
        "w",
        false,
    );
    let r = room(pki.path(), cvi_b, &id, "404", (&warning, &refs(&["w"])));
    assert!(
        r.ok(),
        "withdrawn meeting on node B: {r:?}\nnode B:\n{}",
        logs(&b)
    );
    assert!(
        b.wait_log(
            &[
                "conference ID not accepted",
                "its organiser is no longer enrolled"
            ],
            Duration::from_secs(2)
        )
        .is_some(),
        "node B says why:\n{}",
        logs(&b)
    );
    drop((a, b));
    drop(pg);
}
