//! CVI enrolment and meetings through the operator CLI on SQLite and on
//! PostgreSQL: enrol, meetings with unique random IDs, expiry, withdrawal.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use fedge_testkit::*;

fn store_config(dir: &Path, url: &str) -> PathBuf {
    let p = dir.join(format!("store-{:08x}.toml", rand::random::<u32>()));
    std::fs::write(&p, format!("[store]\nurl = \"{url}\"\n")).unwrap();
    p
}

fn scenario(cfg: &Path) {
    let out = fedge_ok(
        cfg,
        &[
            "cvi",
            "enrol",
            "--org",
            "Leeds Teaching Hospitals",
            "--ods",
            "RR8",
            "--teams-enabled",
            "--email",
            "a@nhs.net",
            "--email",
            "B@NHS.net",
        ],
    );
    assert!(out.contains("2 organiser(s) enrolled"), "{out}");
    let shown = fedge_ok(cfg, &["cvi", "show", "--email", "b@nhs.net"]);
    assert!(
        shown.contains("b@nhs.net: enrolled (Leeds Teaching Hospitals, RR8"),
        "{shown}"
    );

    // Meetings: unique, random, 10 digits, with their invite block.
    let mut ids = Vec::new();
    for _ in 0..25 {
        let invite = fedge_ok(
            cfg,
            &["cvi", "meeting", "create", "--organiser", "a@nhs.net"],
        );
        assert!(
            invite.contains("Join with a video conferencing device\nteams@cvi.fedge.test\n"),
            "{invite}"
        );
        ids.push(conference_id(&invite));
    }
    assert!(ids.iter().all(|i| i.len() == 10), "{ids:?}");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "{ids:?}"
    );
    let n: Vec<u64> = ids.iter().map(|i| i.parse().unwrap()).collect();
    assert!(
        n.windows(2).filter(|w| w[1].abs_diff(w[0]) <= 1000).count() < 3,
        "not sequential: {ids:?}"
    );

    let invite = fedge_ok(
        cfg,
        &[
            "cvi",
            "meeting",
            "create",
            "--organiser",
            "B@nhs.net",
            "--subject",
            "MDT",
            "--expires",
            "2099-01-01T10:00:00+01:00",
        ],
    );
    let id = conference_id(&invite);
    let v: serde_json::Value =
        serde_json::from_str(&fedge_ok(cfg, &["cvi", "meeting", "show", &id, "--json"])).unwrap();
    assert_eq!(v["state"], "can be joined", "{v}");
    assert_eq!(v["meeting"]["organiser"], "b@nhs.net", "{v}");
    assert_eq!(v["meeting"]["subject"], "MDT", "{v}");
    assert_eq!(
        v["meeting"]["expires_at"], "2099-01-01T09:00:00.000Z",
        "{v}"
    );

    // Withdrawal ends the organiser's meetings and new ones are refused.
    let out = fedge_ok(cfg, &["cvi", "withdraw", "--email", "b@nhs.net"]);
    assert!(out.contains("b@nhs.net withdrawn from CVI"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&fedge_ok(cfg, &["cvi", "meeting", "show", &id, "--json"])).unwrap();
    assert_eq!(v["state"], "its organiser is no longer enrolled", "{v}");
    let (code, _, err) = fedge_cli(cfg, &["cvi", "withdraw", "--email", "b@nhs.net"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already withdrawn"), "{err}");
    let (code, _, err) = fedge_cli(
        cfg,
        &["cvi", "meeting", "create", "--organiser", "b@nhs.net"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CVI enrolment was withdrawn on"), "{err}");
    // Enrolling again restores the organiser.
    fedge_ok(
        cfg,
        &[
            "cvi",
            "enrol",
            "--org",
            "Leeds",
            "--ods",
            "RR8",
            "--teams-enabled",
            "--email",
            "b@nhs.net",
        ],
    );
    let v: serde_json::Value =
        serde_json::from_str(&fedge_ok(cfg, &["cvi", "meeting", "show", &id, "--json"])).unwrap();
    assert_eq!(v["state"], "can be joined", "{v}");
    let (code, _, err) = fedge_cli(cfg, &["cvi", "meeting", "show", "0000000000"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no meeting has conference ID 0000000000"),
        "{err}"
    );
}

#[test]
fn enrolment_and_meetings_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = store_config(
        dir.path(),
        &format!("sqlite://{}/cvi.db", dir.path().display()),
    );
    scenario(&cfg);
}

#[test]
fn enrolment_and_meetings_on_postgresql() {
    let pg = fedge_testkit::pg::Postgres::start();
    let cfg = store_config(pg.dir(), &pg.url);
    scenario(&cfg);
}
