//! The partner registry through the operator CLI: the lifecycle, the audit
//! trail, FPA files, exit codes and messages, on SQLite and on PostgreSQL.

use std::path::{Path, PathBuf};

use fedge_testkit::*;

fn store_config(dir: &Path, url: &str) -> PathBuf {
    let p = dir.join(format!("store-{:08x}.toml", rand::random::<u32>()));
    std::fs::write(&p, format!("[store]\nurl = \"{url}\"\n")).unwrap();
    p
}

fn fpa_example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fpa-schemas/examples/fpa-valid.json"
    ))
    .unwrap()
}

/// Exit code 2 with one stderr line containing `needle`.
fn refused(cfg: &Path, args: &[&str], needle: &str) {
    let (code, _, err) = fedge_cli(cfg, args);
    assert_eq!(code, 2, "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: want one line: {err}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: {:?} lacks {needle:?}",
        lines[0]
    );
}

/// The whole operator story, run against whichever store `cfg` names.
fn lifecycle_scenario(cfg: &Path) {
    let add = fedge_ok(
        cfg,
        &[
            "partner",
            "add",
            "--domain",
            "partner.test",
            "--domain",
            "Partner2.TEST",
            "--org",
            "Partner Trust",
            "--tech-sip",
            "sip:it@partner.test",
            "--actor",
            "alice",
        ],
    );
    assert!(add.contains("added as requested"), "{add}");

    // Invalid transitions exit 2 and name the allowed next states.
    refused(
        cfg,
        &["partner", "approve", "partner2.test"],
        "cannot approve partner partner.test: it is requested; from requested it can go to: agreement_sent (agreement-sent), revoked (revoke)",
    );
    fedge_ok(cfg, &["partner", "agreement-sent", "partner.test"]);
    fedge_ok(
        cfg,
        &[
            "partner",
            "agreement-signed",
            "partner2.test",
            "--actor",
            "bob",
        ],
    );
    fedge_ok(cfg, &["partner", "approve", "PARTNER.test"]);
    fedge_ok(
        cfg,
        &[
            "partner",
            "update",
            "partner.test",
            "--set",
            "edge_fqdn=SIP.partner.test",
            "--reason",
            "FPA technical details",
        ],
    );
    // Without a passed onboarding IM test, enabling needs an explicit, reasoned skip.
    refused(
        cfg,
        &["partner", "enable", "partner.test"],
        "no IM test has passed",
    );
    refused(
        cfg,
        &["partner", "enable", "partner.test", "--skip-im-test"],
        "--reason is required for enable",
    );
    let out = fedge_ok(
        cfg,
        &[
            "partner",
            "enable",
            "partner.test",
            "--skip-im-test",
            "--reason",
            "IM tested by phone with the SPOC",
        ],
    );
    assert!(out.contains("approved -> enabled"), "{out}");
    refused(
        cfg,
        &["partner", "suspend", "partner.test"],
        "--reason is required for suspend",
    );
    fedge_ok(
        cfg,
        &[
            "partner",
            "suspend",
            "partner.test",
            "--reason",
            "IG certification lapsed",
            "--actor",
            "carol",
        ],
    );
    refused(
        cfg,
        &["partner", "reinstate", "partner.test"],
        "--reason is required for reinstate",
    );
    fedge_ok(
        cfg,
        &[
            "partner",
            "reinstate",
            "partner.test",
            "--reason",
            "IG renewed",
        ],
    );

    // A domain belongs to one partner at most.
    refused(
        cfg,
        &[
            "partner",
            "add",
            "--domain",
            "partner2.test",
            "--org",
            "Impostor Ltd",
        ],
        "domain partner2.test already belongs to Partner Trust (enabled)",
    );
    // Importing an existing federation needs a reason; unknown states are named.
    refused(
        cfg,
        &[
            "partner",
            "add",
            "--domain",
            "legacy.test",
            "--org",
            "Legacy",
            "--edge-fqdn",
            "sip.legacy.test",
            "--state",
            "enabled",
        ],
        "--reason is required",
    );
    refused(
        cfg,
        &[
            "partner",
            "add",
            "--domain",
            "legacy.test",
            "--org",
            "Legacy",
            "--state",
            "live",
        ],
        "unknown state \"live\"",
    );
    fedge_ok(
        cfg,
        &[
            "partner",
            "add",
            "--domain",
            "legacy.test",
            "--org",
            "Legacy",
            "--edge-fqdn",
            "sip.legacy.test",
            "--state",
            "enabled",
            "--reason",
            "federated since 2019, imported",
        ],
    );
    refused(
        cfg,
        &["partner", "add", "--domain", "bad domain", "--org", "X"],
        "not a valid SIP domain",
    );
    refused(
        cfg,
        &["partner", "show", "nobody.test"],
        "no partner has the domain nobody.test",
    );

    // Revocation is final, and releases the domains for a new request.
    fedge_ok(
        cfg,
        &[
            "partner",
            "revoke",
            "partner.test",
            "--reason",
            "organisation merged",
        ],
    );
    refused(
        cfg,
        &["partner", "reinstate", "partner.test", "--reason", "x"],
        "revoked is final",
    );
    refused(
        cfg,
        &["partner", "update", "partner.test", "--set", "comment=x"],
        "is revoked",
    );
    let again = fedge_ok(
        cfg,
        &[
            "partner",
            "add",
            "--domain",
            "partner.test",
            "--org",
            "Partner Trust (merged)",
        ],
    );
    assert!(again.contains("added as requested"), "{again}");

    // The audit trail: every change, in order, with actor, states and reason.
    let h = fedge_ok(cfg, &["partner", "history", "partner2.test", "--json"]);
    let h: serde_json::Value = serde_json::from_str(&h).unwrap();
    let entries = h["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "add",
            "agreement-sent",
            "agreement-signed",
            "approve",
            "update",
            "enable",
            "suspend",
            "reinstate",
            "revoke"
        ]
    );
    assert_eq!(entries[0]["actor"], "alice");
    assert_eq!(entries[2]["actor"], "bob");
    assert_eq!(entries[6]["actor"], "carol");
    assert_eq!(entries[6]["from_state"], "enabled");
    assert_eq!(entries[6]["to_state"], "suspended");
    assert_eq!(entries[6]["reason"], "IG certification lapsed");
    assert_eq!(entries[5]["detail"], "{\"im_test\":\"skipped\"}");
    assert!(
        entries[4]["detail"]
            .as_str()
            .unwrap()
            .contains("sip.partner.test")
    );
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1);
        assert!(e["at"].as_str().unwrap().ends_with('Z'));
    }
    let text = fedge_ok(cfg, &["partner", "history", "partner.test"]);
    assert!(
        text.contains("Partner Trust (merged)") && text.contains("add"),
        "{text}"
    );

    // list / show.
    let list: serde_json::Value =
        serde_json::from_str(&fedge_ok(cfg, &["partner", "list", "--json"])).unwrap();
    let states: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["domains"][0].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("partner.test".into(), "revoked".into()),
            ("legacy.test".into(), "enabled".into()),
            ("partner.test".into(), "requested".into())
        ]
    );
    let enabled = fedge_ok(cfg, &["partner", "list", "--state", "enabled"]);
    assert!(
        enabled.contains("legacy.test") && !enabled.contains("Partner Trust"),
        "{enabled}"
    );
    let show: serde_json::Value = serde_json::from_str(&fedge_ok(
        cfg,
        &["partner", "show", "legacy.test", "--json"],
    ))
    .unwrap();
    assert_eq!(show["state"], "enabled");
    assert!(show["federated_at"].as_str().is_some());
    assert!(
        fedge_ok(cfg, &["store", "check"])
            .trim_end()
            .ends_with(": ok")
    );
}

#[test]
fn lifecycle_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = store_config(
        dir.path(),
        &format!("sqlite://{}/reg.db", dir.path().display()),
    );
    lifecycle_scenario(&cfg);
}

#[test]
fn lifecycle_on_postgresql() {
    let pg = fedge_testkit::pg::Postgres::start();
    let cfg = store_config(pg.dir(), &pg.url);
    lifecycle_scenario(&cfg);
}

#[test]
fn fpa_files_good_and_bad() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = store_config(
        dir.path(),
        &format!("sqlite://{}/reg.db", dir.path().display()),
    );

    // A bad FPA: every violation reported with its JSON path, nothing written.
    let mut bad: serde_json::Value = serde_json::from_str(&fpa_example()).unwrap();
    bad["technical"]["sip_domains"][0] = "not a domain".into();
    bad["technical"]["product"] = "cisco_jabber".into();
    bad["contacts"]["technical"]
        .as_object_mut()
        .unwrap()
        .remove("sip_address");
    bad["organisation"]["information_governance"]["expires"] = "soon".into();
    let bad_path = dir.path().join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let (code, _, err) = fedge_cli(
        &cfg,
        &["partner", "add", "--from-fpa", bad_path.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    for path in [
        "/technical/sip_domains/0",
        "/technical/product",
        "/contacts/technical",
        "/organisation/information_governance/expires",
    ] {
        assert!(
            err.contains(&format!("bad.json: {path}: ")),
            "no violation at {path}: {err}"
        );
    }
    let list: serde_json::Value =
        serde_json::from_str(&fedge_ok(&cfg, &["partner", "list", "--json"])).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "a bad FPA wrote something"
    );

    // Not JSON at all.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{ \"fpa_version\": 1,").unwrap();
    let (code, _, err) = fedge_cli(
        &cfg,
        &["partner", "add", "--from-fpa", junk.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(err.contains("not valid JSON"), "{err}");

    // The good one.
    let good = dir.path().join("good.json");
    std::fs::write(&good, fpa_example()).unwrap();
    let out = fedge_ok(
        &cfg,
        &[
            "partner",
            "add",
            "--from-fpa",
            good.to_str().unwrap(),
            "--actor",
            "onboarding",
        ],
    );
    assert!(
        out.contains("northshire.gov.test, care.northshire.gov.test"),
        "{out}"
    );
    let p: serde_json::Value = serde_json::from_str(&fedge_ok(
        &cfg,
        &["partner", "show", "care.northshire.gov.test", "--json"],
    ))
    .unwrap();
    assert_eq!(p["org_name"], "Northshire County Council Adult Social Care");
    assert_eq!(p["edge_fqdn"], "sip.northshire.gov.test");
    assert_eq!(
        p["contacts"]["tech_sip"],
        "sip:sam.patel@northshire.gov.test"
    );
    assert_eq!(p["ig_expires"], "2027-06-30");
    assert_eq!(p["state"], "requested");
    // The same FPA twice: its domains are taken.
    let (code, _, err) = fedge_cli(
        &cfg,
        &["partner", "add", "--from-fpa", good.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(err.contains("already belongs to Northshire"), "{err}");
}

#[test]
fn usage_mistakes_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = store_config(
        dir.path(),
        &format!("sqlite://{}/reg.db", dir.path().display()),
    );
    refused(&cfg, &["partner", "add", "--org", "X"], "needs --domain");
    refused(
        &cfg,
        &["partner", "add", "--domain", "x.test"],
        "needs --org",
    );
    refused(
        &cfg,
        &["partner", "frobnicate", "x.test"],
        "unrecognized subcommand 'frobnicate'",
    );
    refused(
        &cfg,
        &[
            "partner",
            "add",
            "--from-fpa",
            "f.json",
            "--domain",
            "x.test",
        ],
        "cannot be used with",
    );
    fedge_ok(
        &cfg,
        &["partner", "add", "--domain", "x.test", "--org", "X"],
    );
    refused(
        &cfg,
        &["partner", "update", "x.test", "--set", "colour=blue"],
        "unknown field \"colour\"",
    );
    refused(
        &cfg,
        &["partner", "update", "x.test", "--set", "address=nowhere"],
        "is not HOST:PORT",
    );
    refused(
        &cfg,
        &[
            "partner",
            "update",
            "x.test",
            "--set",
            "ig_expires=31/12/2027",
        ],
        "is not a date",
    );
    refused(
        &cfg,
        &["partner", "list", "--state", "sleeping"],
        "unknown state",
    );
}
