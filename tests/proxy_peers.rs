//! The federation proxy with real peers: SIPp as users and as the home
//! pool, Kamailio as a partner organisation's edge (SIPp has no TLS), fedge
//! in between over mutual TLS. Messages, full dialogs in both directions,
//! CANCEL, and every refusal with its reason.

use std::time::{Duration, Instant};

use fedge::pki::LeafSpec;
use fedge_testkit::lab::*;
use fedge_testkit::peers::{Kamailio, Sipp, free_port, scenario};
use fedge_testkit::*;

#[test]
fn messages_cross_in_both_directions() {
    let lab = Lab::new();
    // Partner to home: the pool sees the edge's trust header, the
    // partner's User-Agent untouched, and Max-Forwards down by one per hop.
    let checks = "<ereg regexp=\"ms-source-type=DirectPartner;ms-ep-fqdn=sip\\.fedge\\.test\" search_in=\"hdr\" header=\"ms-edge-proxy-message-trust:\" check_it=\"true\" assign_to=\"t\"/>\
                  <ereg regexp=\"UCCAPI/16\\.0\\.4266\\.1001\" search_in=\"hdr\" header=\"User-Agent:\" check_it=\"true\" assign_to=\"u\"/>\
                  <ereg regexp=\"68\" search_in=\"hdr\" header=\"Max-Forwards:\" check_it=\"true\" assign_to=\"m\"/>";
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(
            lab.dir(),
            "message_uas.xml",
            &[
                ("CHECKS", checks),
                ("REFERENCES", "<Reference variables=\"t,u,m\"/>"),
            ],
        ),
        lab.home,
        None,
        &[],
    );
    let uac = lab.partner_uac(
        &scenario(lab.dir(), "message_uac.xml", &[]),
        "bob",
        "fedge.test",
        "partner.test",
    );
    lab.assert_ok("partner MESSAGE", &uac);
    lab.assert_ok("home pool", &uas.wait(LIMIT));

    // Home to partner, over a TLS connection fedge opens to Kamailio.
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "message_uas.xml", &[]),
        lab.users,
        None,
        &[],
    );
    let uac = lab.home_uac(
        &scenario(lab.dir(), "message_uac.xml", &[]),
        free_port(false),
        "alice",
        "partner.test",
        "fedge.test",
    );
    lab.assert_ok("home MESSAGE", &uac);
    lab.assert_ok("partner user", &uas.wait(LIMIT));
    assert!(
        lab.edge
            .wait_log(
                &["outbound TLS connection open", PARTNER_FQDN],
                Duration::from_secs(2)
            )
            .is_some()
    );
}

#[test]
fn invite_dialogs_in_both_directions_follow_the_record_route() {
    let lab = Lab::new();
    let refs = "<Reference variables=\"remote,local\"/>";
    // Partner calls home. The pool must see fedge's two Record-Route
    // entries (FQDN, never an address) on top of Kamailio's.
    let rr = "<ereg regexp=\"Record-Route: &lt;sip:sip\\.fedge\\.test:[0-9]+;transport=udp;lr&gt;[[:cntrl:]]+Record-Route: &lt;sip:sip\\.fedge\\.test:[0-9]+;transport=tls;lr&gt;[[:cntrl:]]+Record-Route: &lt;sip:127\\.0\\.0\\.1\" search_in=\"msg\" check_it=\"true\" assign_to=\"rr\"/>";
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(
            lab.dir(),
            "invite_uas.xml",
            &[
                ("CHECKS", rr),
                (
                    "REFERENCES",
                    &format!("{refs}<Reference variables=\"rr\"/>"),
                ),
            ],
        ),
        lab.home,
        None,
        &[],
    );
    let uac = lab.partner_uac(
        &scenario(lab.dir(), "invite_uac.xml", &[]),
        "bob",
        "fedge.test",
        "partner.test",
    );
    let callee = uas.wait(LIMIT);
    lab.assert_ok("home callee", &callee);
    lab.assert_ok("partner caller", &uac);

    // Home calls the partner. The callee's in-dialog INFO comes back to the
    // home side through fedge's next hop, where the caller listens.
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "invite_uas.xml", &[("REFERENCES", refs)]),
        lab.users,
        None,
        &[],
    );
    let uac = lab.home_uac(
        &scenario(lab.dir(), "invite_uac.xml", &[]),
        lab.home,
        "alice",
        "partner.test",
        "fedge.test",
    );
    lab.assert_ok("home caller", &uac);
    lab.assert_ok("partner callee", &uas.wait(LIMIT));
}

#[test]
fn cancel_of_a_ringing_invite() {
    let lab = Lab::new();
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "cancel_uas.xml", &[]),
        lab.home,
        None,
        &[],
    );
    let uac = lab.partner_uac(
        &scenario(lab.dir(), "cancel_uac.xml", &[]),
        "bob",
        "fedge.test",
        "partner.test",
    );
    lab.assert_ok("partner caller cancelling", &uac);
    lab.assert_ok("home callee", &uas.wait(LIMIT));
    // The cancelled call's media relay session ends with it.
    assert!(
        lab.edge
            .wait_log(
                &["media session closed", "INVITE failed with 487"],
                Duration::from_secs(5)
            )
            .is_some(),
        "{}",
        lab.edge.logs().join("\n")
    );
    // The other way round.
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "cancel_uas.xml", &[]),
        lab.users,
        None,
        &[],
    );
    let uac = lab.home_uac(
        &scenario(lab.dir(), "cancel_uac.xml", &[]),
        free_port(false),
        "alice",
        "partner.test",
        "fedge.test",
    );
    lab.assert_ok("home caller cancelling", &uac);
    lab.assert_ok("partner callee", &uas.wait(LIMIT));
}

#[test]
fn refusals_say_why_in_both_directions() {
    let lab = Lab::new();
    // A second partner with its own edge, for spoofing and transit.
    let _other = lab.other_partner();

    // Unknown domain, inbound and outbound.
    refused_message(
        &lab,
        true,
        "bob@fedge.test",
        "unknown.test",
        403,
        "From domain unknown.test is not a domain of the partner whose edge certificate sip.partner.test names",
        1002,
    );
    refused_message(
        &lab,
        false,
        "carol@unknown.test",
        "fedge.test",
        404,
        "no federation partner serves domain unknown.test",
        1005,
    );
    // A From domain that belongs to another partner (spoofing).
    refused_message(
        &lab,
        true,
        "bob@fedge.test",
        "other.test",
        403,
        // Other Org and its edge are not told (issue 14.12).
        "certificate names sip.partner.test, which is not the federation edge on record for domain other.test",
        1010,
    );
    // Partner to partner through the edge (transit).
    refused_message(
        &lab,
        true,
        "dave@other.test",
        "partner.test",
        403,
        "domain other.test is not served here",
        1017,
    );
    // A home user pretending to be a partner's.
    refused_message(
        &lab,
        false,
        "alice@partner.test",
        "other.test",
        403,
        "From domain other.test is not a home domain",
        1017,
    );

    // Suspended: refused both ways, with the state named.
    lab.cli(&[
        "partner",
        "suspend",
        "partner.test",
        "--reason",
        "IG certification lapsed",
    ]);
    lab.wait_state("partner.test", Some("suspended"));
    refused_message(
        &lab,
        true,
        "bob@fedge.test",
        "partner.test",
        403,
        "partner Partner Trust \\(domain partner\\.test\\) is suspended",
        1002,
    );
    refused_message(
        &lab,
        false,
        "alice@partner.test",
        "fedge.test",
        403,
        "partner Partner Trust \\(domain partner\\.test\\) is suspended",
        1005,
    );

    // Revoked: the partner is gone from the registry altogether.
    lab.cli(&[
        "partner",
        "revoke",
        "partner.test",
        "--reason",
        "de-federated",
    ]);
    lab.wait_state("partner.test", None);
    refused_message(
        &lab,
        true,
        "bob@fedge.test",
        "partner.test",
        403,
        "domain partner.test is not a federation partner",
        1002,
    );
    refused_message(
        &lab,
        false,
        "alice@partner.test",
        "fedge.test",
        404,
        "no federation partner serves domain partner.test",
        1005,
    );
}

#[test]
fn certificates_for_another_fqdn_are_refused() {
    let lab = Lab::new();
    // Inbound: a trusted certificate, but for an FQDN that is not the partner's edge.
    let wrong = lab.pki.leaf("wrong", &LeafSpec::new("sip.wrong.test", 30));
    let wrong_users = free_port(false);
    let wrong_kam = Kamailio::start(
        lab.dir(),
        "wrong",
        "sip.wrong.test",
        &wrong,
        &lab.pki.ca_file,
        lab.edge.federation,
        localhost(wrong_users),
    );
    let (checks, refs) = refusal_checks(
        "certificate names sip\\.wrong\\.test, which is not the federation edge on record for domain partner\\.test",
        1010,
    );
    let sc = scenario(
        lab.dir(),
        "message_uac.xml",
        &[
            ("STATUS", "403"),
            ("CHECKS", &checks),
            ("REFERENCES", &refs),
        ],
    );
    let r = Sipp::spawn(
        lab.dir(),
        &sc,
        free_port(false),
        Some(wrong_kam.udp),
        &[
            "-s",
            "bob",
            "-key",
            "to_domain",
            "fedge.test",
            "-key",
            "from_domain",
            "partner.test",
            "-key",
            "from_user",
            "mallory",
        ],
    )
    .wait(LIMIT);
    lab.assert_ok("inbound with another FQDN's certificate", &r);

    // Outbound: the partner's record points at an edge whose certificate
    // names another FQDN: TLS refuses the name, the home side gets 504/1010.
    lab.import(
        "misrouted.test",
        "Misrouted Org",
        "sip.misrouted.test",
        wrong_kam.tls,
    );
    refused_message(
        &lab,
        false,
        "erin@misrouted.test",
        "fedge.test",
        504,
        "TLS with tls:127\\.0\\.0\\.1:[0-9]+ \\(sip\\.misrouted\\.test\\)",
        1010,
    );
    assert!(
        lab.edge
            .wait_log(
                &["outbound TLS refused", "sip.misrouted.test"],
                Duration::from_secs(2)
            )
            .is_some()
    );
}

#[test]
fn suspending_a_connected_partner_closes_its_connections_at_once() {
    let lab = Lab::new();
    // Get both directions connected: Kamailio to fedge, and fedge to Kamailio.
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "message_uas.xml", &[]),
        lab.home,
        None,
        &[],
    );
    lab.assert_ok(
        "before",
        &lab.partner_uac(
            &scenario(lab.dir(), "message_uac.xml", &[]),
            "bob",
            "fedge.test",
            "partner.test",
        ),
    );
    lab.assert_ok("home pool", &uas.wait(LIMIT));
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "message_uas.xml", &[]),
        lab.users,
        None,
        &[],
    );
    lab.assert_ok(
        "before, outbound",
        &lab.home_uac(
            &scenario(lab.dir(), "message_uac.xml", &[]),
            free_port(false),
            "alice",
            "partner.test",
            "fedge.test",
        ),
    );
    lab.assert_ok("partner user", &uas.wait(LIMIT));
    let before = admin_get(lab.edge.admin, "/health")["connections"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        before >= 2,
        "expected an inbound and an outbound connection, have {before}"
    );

    let t0 = Instant::now();
    lab.cli(&[
        "partner",
        "suspend",
        "partner.test",
        "--reason",
        "security incident",
    ]);
    let acked = t0.elapsed();
    let line = lab
        .edge
        .wait_log(
            &["partner connections closed", "partner.test"],
            Duration::from_secs(10),
        )
        .expect("connections were not closed");
    let closed_after = t0.elapsed();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(v["fields"]["closed"].as_u64().unwrap_or(0) >= 2, "{line}");
    eprintln!(
        "suspend acknowledged after {acked:?}; both connections closed {closed_after:?} after the command started"
    );
    // New requests are refused.
    refused_message(
        &lab,
        true,
        "bob@fedge.test",
        "partner.test",
        403,
        "is suspended",
        1002,
    );
}

#[test]
fn internal_diagnostics_never_reach_a_partner() {
    let lab = Lab::new();
    // The home pool refuses with an internal ms-diagnostics naming an internal server.
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(
            lab.dir(),
            "message_uas.xml",
            &[
                ("RESPONSE", "480 Temporarily Unavailable"),
                (
                    "EXTRA",
                    "\n      ms-diagnostics: 4141;reason=\"User disabled\";source=\"fe01.pool.fedge.test\"\n      ms-diagnostics-public: 4141;reason=\"User disabled\"",
                ),
            ],
        ),
        lab.home,
        None,
        &[],
    );
    let checks = "<ereg regexp=\"ms-diagnostics:\" search_in=\"msg\" check_it_inverse=\"true\" assign_to=\"internal\"/>\
                  <ereg regexp=\"^ *4141;reason=\" search_in=\"hdr\" header=\"ms-diagnostics-public:\" check_it=\"true\" assign_to=\"public\"/>";
    let sc = scenario(
        lab.dir(),
        "message_uac.xml",
        &[
            ("STATUS", "480"),
            ("CHECKS", checks),
            ("REFERENCES", "<Reference variables=\"internal,public\"/>"),
        ],
    );
    lab.assert_ok(
        "partner sees the public diagnostic only",
        &lab.partner_uac(&sc, "bob", "fedge.test", "partner.test"),
    );
    lab.assert_ok("home pool", &uas.wait(LIMIT));

    // A partner that refuses without a diagnostic: the home side gets SfB's 1034.
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(
            lab.dir(),
            "message_uas.xml",
            &[("RESPONSE", "486 Busy Here")],
        ),
        lab.users,
        None,
        &[],
    );
    let checks = "<ereg regexp=\"^ *1034;reason=&quot;Previous hop federated peer did not report diagnostic information&quot;\" search_in=\"hdr\" header=\"ms-diagnostics-public:\" check_it=\"true\" assign_to=\"d\"/>";
    let sc = scenario(
        lab.dir(),
        "message_uac.xml",
        &[
            ("STATUS", "486"),
            ("CHECKS", checks),
            ("REFERENCES", "<Reference variables=\"d\"/>"),
        ],
    );
    lab.assert_ok(
        "home sees 1034",
        &lab.home_uac(&sc, free_port(false), "alice", "partner.test", "fedge.test"),
    );
    lab.assert_ok("partner user", &uas.wait(LIMIT));
}
