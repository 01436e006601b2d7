//! DNS end to end: an allowed-domain partner (no edge FQDN on its record)
//! found by `_sipfederationtls._tcp` SRV over mutual TLS in both
//! directions, the same-domain rule, certificate mismatches, missing
//! records, TTL caching and expiry, fedge's own DNS server answering for
//! its zone, and `fedge dns zone` checked by named-checkzone.
//!
//! The partner's records are served by fedge's DNS server code on
//! loopback (zones of the test's making, so that wrong records can be
//! published too); the edge under test asks it through `[dns] resolver`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use fedge::dns::zone::ZoneText;
use fedge::dns::{Dns, SrvAnswer};
use fedge_testkit::lab::*;
use fedge_testkit::peers::{Kamailio, Sipp, SippResult, free_port, scenario};
use fedge_testkit::*;
use tokio_util::sync::CancellationToken;

/// fedge's DNS server on 127.0.0.1, serving zones the test writes.
struct TestDns {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestDns {
    fn start(addr: SocketAddr, zones: Vec<ZoneText>) -> TestDns {
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                let server = tokio::spawn(fedge::dns::server::serve(addr, zones, s2, ready_tx));
                let ready = match ready_rx.await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err("no answer".to_string()),
                };
                let _ = tx.send(ready);
                let _ = server.await;
            });
        });
        rx.recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("test DNS server: {e}"));
        TestDns {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A zone for `domain` with SOA and NS, plus `records` (absolute names).
fn zone(domain: &str, ttl: u32, records: &[String]) -> ZoneText {
    let mut text = format!(
        "$ORIGIN {domain}.\n$TTL {ttl}\n{domain}. {ttl} IN SOA ns.{domain}. hostmaster.{domain}. 1 3600 600 604800 {ttl}\n{domain}. {ttl} IN NS ns.{domain}.\n"
    );
    for r in records {
        text.push_str(r);
        text.push('\n');
    }
    ZoneText {
        origin: format!("{domain}."),
        text,
    }
}

fn srv(domain: &str, ttl: u32, port: u16, target: &str) -> String {
    format!("_sipfederationtls._tcp.{domain}. {ttl} IN SRV 0 0 {port} {target}.")
}

fn a(name: &str, ttl: u32) -> String {
    format!("{name}. {ttl} IN A 127.0.0.1")
}

fn dns_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port(true)))
}

/// A lab whose edge asks `dns` and knows partner.test as an allowed domain.
fn lab_with_resolver(dns: SocketAddr) -> Lab {
    let lab = Lab::with(&format!("\n[dns]\nresolver = \"{dns}\""), None);
    lab.cli(&[
        "partner",
        "add",
        "--domain",
        "partner.test",
        "--org",
        "Partner Trust",
        "--state",
        "enabled",
        "--reason",
        "allowed domain, found by DNS SRV",
    ]);
    lab.wait_state("partner.test", Some("enabled"));
    lab
}

fn home_message(lab: &Lab, to: &str, status: u16, checks: (String, String)) -> SippResult {
    let (user, domain) = to.split_once('@').unwrap();
    let sc = scenario(
        lab.dir(),
        "message_uac.xml",
        &[
            ("STATUS", &status.to_string()),
            ("CHECKS", &checks.0),
            ("REFERENCES", &checks.1),
        ],
    );
    lab.home_uac(&sc, free_port(false), user, domain, "fedge.test")
}

/// The partner's user SIPp (behind `kam`) answers one MESSAGE.
fn partner_user(lab: &Lab, users_port: u16) -> Sipp {
    Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "message_uas.xml", &[]),
        users_port,
        None,
        &[],
    )
}

#[test]
fn an_allowed_domain_partner_is_routed_and_checked_by_srv_both_ways() {
    let addr = dns_addr();
    let lab = lab_with_resolver(addr);
    // The partner's DNS is a fedge too, publishing partner.test's zone:
    // its edge sip.partner.test (Kamailio here) on Kamailio's TLS port.
    let partner_dns_cfg = test_config(&lab.pki, "")
        .replace("fqdn = \"sip.fedge.test\"", "fqdn = \"sip.partner.test\"")
        .replace(
            "home_domains = [\"fedge.test\"]",
            "home_domains = [\"partner.test\"]",
        )
        .replace("fedge.db", "partner-dns.db")
        + &format!(
            "\n[dns]\nlisten = \"{addr}\"\naddresses = [\"127.0.0.1\"]\nsip_port = {}\nttl = \"30s\"\n",
            lab.kam.tls.port()
        );
    let dns = Edge::start(&lab.pki, &partner_dns_cfg);
    // Home to partner: SRV -> sip.partner.test:<port> -> A -> mutual TLS, its certificate naming the SRV target.
    let uas = partner_user(&lab, lab.users);
    lab.assert_ok(
        "home to the allowed-domain partner",
        &home_message(&lab, "alice@partner.test", 200, Default::default()),
    );
    lab.assert_ok("partner user", &uas.wait(LIMIT));
    assert!(
        lab.edge
            .wait_log(
                &["outbound TLS connection open", PARTNER_FQDN],
                Duration::from_secs(2)
            )
            .is_some()
    );
    // Partner to home: accepted because the certificate names the SRV target of the From domain.
    lab.message_delivered("bob", "partner to home, checked by SRV");
    // Cached for the TTL: with the DNS server gone the edge still routes.
    drop(dns);
    let uas = partner_user(&lab, lab.users);
    lab.assert_ok(
        "within the TTL, from the cache",
        &home_message(&lab, "alice@partner.test", 200, Default::default()),
    );
    lab.assert_ok("partner user", &uas.wait(LIMIT));
}

#[test]
fn srv_answers_that_break_the_rules_are_refused_with_their_codes() {
    let addr = dns_addr();
    let lab = lab_with_resolver(addr);
    let other = lab.other_partner(); // its edge's certificate names sip.other.test
    for (domain, org) in [
        ("elsewhere.test", "Elsewhere Org"),
        ("missing.test", "Missing Org"),
        ("liar.test", "Liar Org"),
    ] {
        lab.cli(&[
            "partner",
            "add",
            "--domain",
            domain,
            "--org",
            org,
            "--state",
            "enabled",
            "--reason",
            "allowed domain",
        ]);
        lab.wait_state(domain, Some("enabled"));
    }
    let _dns = TestDns::start(
        addr,
        vec![
            zone(
                "partner.test",
                30,
                &[
                    srv("partner.test", 30, lab.kam.tls.port(), PARTNER_FQDN),
                    a(PARTNER_FQDN, 30),
                ],
            ),
            // The SRV target is not in the domain: the same-domain rule.
            zone(
                "elsewhere.test",
                30,
                &[srv(
                    "elsewhere.test",
                    30,
                    lab.kam.tls.port(),
                    "sip.partner.test",
                )],
            ),
            // No SRV record at all.
            zone("missing.test", 30, &[]),
            // The target is in the domain, but the edge there presents sip.other.test's certificate.
            zone(
                "liar.test",
                30,
                &[
                    srv("liar.test", 30, other.tls.port(), "sip.liar.test"),
                    a("sip.liar.test", 30),
                ],
            ),
        ],
    );
    let cases = [
        (
            "bob@elsewhere.test",
            504,
            1009,
            "names sip.partner.test, which is not directly in elsewhere.test",
        ),
        (
            "bob@missing.test",
            504,
            1008,
            "missing.test publishes no _sipfederationtls._tcp.missing.test SRV record",
        ),
        (
            "bob@liar.test",
            504,
            1010,
            "the partner's certificate does not name its edge FQDN",
        ),
    ];
    for (to, status, code, frag) in cases {
        let checks = refusal(399, &frag.replace('.', "\\."), Some(code));
        let r = home_message(&lab, to, status, checks);
        lab.assert_ok(&format!("to {to}"), &r);
    }
    // Inbound: the other partner's edge sends in partner.test's name; its
    // certificate is not what partner.test's SRV record names.
    let (checks, references) = refusal(
        399,
        "certificate names sip\\.other\\.test, which is not a target of _sipfederationtls\\._tcp\\.partner\\.test",
        Some(1010),
    );
    let r = lab.spawn_uac(
        other.udp,
        &scenario(
            lab.dir(),
            "message_uac.xml",
            &[
                ("STATUS", "403"),
                ("CHECKS", &checks),
                ("REFERENCES", &references),
            ],
        ),
        ("bob", "fedge.test"),
        "partner.test",
        &[],
    );
    lab.assert_ok("spoofing partner.test from another edge", &r.wait(LIMIT));
    assert_eq!(
        metric(
            lab.edge.admin,
            "fedge_rejections_total",
            &["rule=\"no_srv\"", "direction=\"outbound\""]
        ),
        1.0
    );
    assert_eq!(
        metric(
            lab.edge.admin,
            "fedge_rejections_total",
            &["rule=\"srv_domain\""]
        ),
        1.0
    );
}

#[test]
fn a_changed_record_is_picked_up_when_its_ttl_expires() {
    let addr = dns_addr();
    let lab = lab_with_resolver(addr);
    // A second edge for partner.test (same certificate) with its own users.
    let users2 = free_port(false);
    let kam2 = Kamailio::start(
        lab.dir(),
        "partner2",
        PARTNER_FQDN,
        &lab.pki.partner,
        &lab.pki.ca_file,
        lab.edge.federation,
        localhost(users2),
    );
    let records = |port: u16| {
        vec![zone(
            "partner.test",
            1,
            &[
                srv("partner.test", 1, port, PARTNER_FQDN),
                a(PARTNER_FQDN, 1),
            ],
        )]
    };
    let dns = TestDns::start(addr, records(lab.kam.tls.port()));
    let uas = partner_user(&lab, lab.users);
    lab.assert_ok(
        "to the first edge",
        &home_message(&lab, "alice@partner.test", 200, Default::default()),
    );
    lab.assert_ok("first edge's user", &uas.wait(LIMIT));
    // The partner moves its edge; the 1 s TTL runs out.
    dns.stop();
    let _dns = TestDns::start(addr, records(kam2.tls.port()));
    std::thread::sleep(Duration::from_millis(1500));
    let uas = partner_user(&lab, users2);
    lab.assert_ok(
        "to the moved edge",
        &home_message(&lab, "alice@partner.test", 200, Default::default()),
    );
    lab.assert_ok("second edge's user", &uas.wait(LIMIT));
}

#[test]
fn fedge_publishes_its_zone_and_prints_it_for_named() {
    let pki = Pki::new();
    let dns = dns_addr();
    let cfg = test_config(&pki, "").replace(
        "home_domains = [\"fedge.test\"]",
        "home_domains = [\"fedge.test\", \"other-home.test\"]",
    ) + &format!(
        "\n[dns]\nlisten = \"{dns}\"\naddresses = [\"192.0.2.10\", \"2001:db8::10\"]\nsip_port = 5061\nttl = \"5m\"\ncvi_domain = \"cvi.fedge.test\"\n"
    );
    // (test_config ends with [log]; [dns] after it is its own section.)
    let edge = Edge::start(&pki, &cfg);
    // The running edge answers for its zone.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = Dns::new(Some(dns)).unwrap();
        let SrvAnswer::Targets(t) = r.federation_srv("fedge.test").await else {
            panic!("no SRV")
        };
        assert_eq!((t[0].target.as_str(), t[0].port), ("sip.fedge.test", 5061));
        let SrvAnswer::Targets(t) = r.federation_srv("other-home.test").await else {
            panic!("no SRV")
        };
        assert_eq!(
            t[0].target, "sip.other-home.test",
            "the same-domain rule for a second home domain"
        );
        let mut ips = r.addresses("sip.fedge.test").await.unwrap();
        ips.sort();
        assert_eq!(
            ips,
            vec![
                "192.0.2.10".parse::<std::net::IpAddr>().unwrap(),
                "2001:db8::10".parse().unwrap()
            ]
        );
        let SrvAnswer::Targets(t) = r.srv("_sips._tcp.cvi.fedge.test.").await else {
            panic!("no CVI SRV")
        };
        assert_eq!(t[0].port, 5061);
        // A domain it does not serve has no answer from it.
        assert!(!matches!(
            r.federation_srv("nowhere.test").await,
            SrvAnswer::Targets(_)
        ));
    });
    // `fedge dns zone` prints the same records, one zone file per domain,
    // each of which BIND's named-checkzone accepts.
    let out = fedge_ok(&edge.config_path, &["dns", "zone"]);
    let zones: Vec<&str> = out
        .split("; published by fedge for ")
        .filter(|z| !z.trim().is_empty())
        .collect();
    assert_eq!(zones.len(), 3, "{out}");
    for z in zones {
        let origin = z.lines().next().unwrap().trim();
        let file = pki.path().join(format!("{origin}.zone"));
        std::fs::write(&file, format!("; {z}")).unwrap();
        let check = Command::new("named-checkzone")
            .arg(origin)
            .arg(&file)
            .output()
            .expect("named-checkzone (bind9-utils) is installed by the test command");
        let text = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success() && text.contains("OK"),
            "{origin}: {text}\n{z}"
        );
    }
    assert!(
        out.contains("_sipfederationtls._tcp.fedge.test. 300 IN SRV 0 0 5061 sip.fedge.test."),
        "{out}"
    );
    assert!(
        out.contains("_sip._udp.cvi.fedge.test. 300 IN SRV 0 0 5060 sip.cvi.fedge.test."),
        "{out}"
    );
}
