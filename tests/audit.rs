//! The tamper-evident audit chain through the CLI, on SQLite and on
//! PostgreSQL: partner, account and CVI changes are chained; `fedge audit
//! verify` holds on an untouched database and names the first entry that
//! was edited, deleted or reordered directly in the database; an export
//! verifies on its own and a changed export line is named; `--expect-head`
//! catches removal of the latest entries.

use std::path::{Path, PathBuf};

use fedge_testkit::*;
use sqlx::Connection as _;

fn store_config(dir: &Path, url: &str) -> PathBuf {
    let p = dir.join(format!("audit-{:08x}.toml", rand::random::<u32>()));
    std::fs::write(&p, format!("[store]\nurl = \"{url}\"\n")).unwrap();
    p
}

/// Makes partner, CVI and account changes through the CLI and the store.
fn make_history(cfg: &Path, url: &str) {
    fedge_ok(
        cfg,
        &[
            "partner",
            "add",
            "--domain",
            "partner.test",
            "--org",
            "Partner Trust",
            "--actor",
            "alice",
        ],
    );
    fedge_ok(
        cfg,
        &[
            "partner",
            "agreement-sent",
            "partner.test",
            "--actor",
            "alice",
        ],
    );
    fedge_ok(
        cfg,
        &[
            "partner",
            "revoke",
            "partner.test",
            "--reason",
            "withdrew",
            "--actor",
            "bob",
        ],
    );
    let csv = cfg.with_extension("csv");
    std::fs::write(&csv, "EmailAddress\norganiser@nhs.net\n").unwrap();
    fedge_ok(
        cfg,
        &[
            "cvi",
            "enrol",
            "--org",
            "Home Trust",
            "--ods",
            "RXX",
            "--teams-enabled",
            "--csv",
            csv.to_str().unwrap(),
        ],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = fedge::store::Store::open(url).await.unwrap();
        store
            .add_account(
                "ops.carol",
                fedge::model::account::Role::Operator,
                None,
                "test",
            )
            .await
            .unwrap();
        store.close().await;
    });
}

async fn exec(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
}

fn tamper(url: &str, sql: &str) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(exec(url, sql));
}

fn verify_fails(cfg: &Path, args: &[&str], needle: &str) {
    let (code, out, err) = fedge_cli(cfg, args);
    assert_eq!(code, 1, "{args:?} should fail: {out} {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

fn scenario(dir: &Path, url: &str) {
    let cfg = store_config(dir, url);
    make_history(&cfg, url);

    // Untouched: it holds, and says how many entries and the head.
    let out = fedge_ok(&cfg, &["audit", "verify"]);
    assert!(out.contains("audit chain: ok,"), "{out}");
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("head "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (last, _) = head.split_once(':').unwrap();
    let last: i64 = last.parse().unwrap();
    // partner add, agreement-sent, revoke, cvi enrol, account add + credentials
    assert!(last >= 6, "{out}");

    // The export holds every kind of change, each line verifiable alone.
    let export = dir.join("export.jsonl");
    fedge_ok(
        &cfg,
        &[
            "audit",
            "export",
            "--since",
            "2000-01-01",
            "--output",
            export.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as i64, last);
    for kind in ["partner", "cvi", "account"] {
        assert!(
            lines.iter().any(|l| l["kind"] == kind),
            "no {kind} entry: {text}"
        );
    }
    let revoke = lines.iter().find(|l| l["action"] == "revoke").unwrap();
    assert_eq!(revoke["actor"], "bob");
    assert!(revoke["detail"].as_str().unwrap().contains("withdrew"));
    let out = fedge_ok(
        &cfg,
        &["audit", "verify", "--file", export.to_str().unwrap()],
    );
    assert!(out.contains(": ok,"), "{out}");
    // A later slice of the export verifies on its own and says where it joins.
    let tail = dir.join("tail.jsonl");
    std::fs::write(&tail, text.lines().skip(2).collect::<Vec<_>>().join("\n")).unwrap();
    let out = fedge_ok(&cfg, &["audit", "verify", "--file", tail.to_str().unwrap()]);
    assert!(out.contains("starts after hash"), "{out}");
    // An edited export line is named.
    let edited = dir.join("edited.jsonl");
    std::fs::write(&edited, text.replacen("\"bob\"", "\"eve\"", 1)).unwrap();
    verify_fails(
        &cfg,
        &["audit", "verify", "--file", edited.to_str().unwrap()],
        &format!(
            "audit entry {}: its fields do not match its hash",
            revoke["seq"]
        ),
    );
    // The recorded head holds now.
    fedge_ok(&cfg, &["audit", "verify", "--expect-head", &head]);

    // Editing a row in the database: named, then put back.
    let actor3 = lines[2]["actor"].as_str().unwrap().to_string();
    tamper(
        url,
        "UPDATE audit_chain SET actor = 'mallory' WHERE seq = 3",
    );
    verify_fails(
        &cfg,
        &["audit", "verify"],
        "audit entry 3: its fields do not match its hash: the entry was edited",
    );
    verify_fails(&cfg, &["store", "check"], "problem(s) found");
    tamper(
        url,
        &format!(
            "UPDATE audit_chain SET actor = '{}' WHERE seq = 3",
            actor3.replace('\'', "''")
        ),
    );
    fedge_ok(&cfg, &["audit", "verify"]);

    // Deleting a row: the next one is named, with the gap.
    tamper(url, "DELETE FROM audit_chain WHERE seq = 2");
    verify_fails(
        &cfg,
        &["audit", "verify"],
        "audit entry 3: follows entry 1: entries 2..2 were deleted",
    );
    tamper(url, &insert_sql(&lines[1]));
    fedge_ok(&cfg, &["audit", "verify"]);

    // Reordering two rows: the first out of place is named.
    tamper(url, "UPDATE audit_chain SET seq = -1 WHERE seq = 4");
    tamper(url, "UPDATE audit_chain SET seq = 4 WHERE seq = 5");
    tamper(url, "UPDATE audit_chain SET seq = 5 WHERE seq = -1");
    verify_fails(
        &cfg,
        &["audit", "verify"],
        "audit entry 4: its prev_hash does not match entry 3's hash",
    );
    tamper(url, "UPDATE audit_chain SET seq = -1 WHERE seq = 5");
    tamper(url, "UPDATE audit_chain SET seq = 5 WHERE seq = 4");
    tamper(url, "UPDATE audit_chain SET seq = 4 WHERE seq = -1");
    fedge_ok(&cfg, &["audit", "verify"]);

    // Removing the latest entry leaves a chain that holds on its own; the
    // head recorded earlier shows what went.
    tamper(url, &format!("DELETE FROM audit_chain WHERE seq = {last}"));
    fedge_ok(&cfg, &["audit", "verify"]);
    verify_fails(
        &cfg,
        &["audit", "verify", "--expect-head", &head],
        &format!("entry {last} recorded earlier is missing"),
    );

    // Emptying the chain is not a fresh start: it shows as broken, and is
    // not sealed again from the older tables at the next open.
    tamper(url, "DELETE FROM audit_chain");
    verify_fails(&cfg, &["audit", "verify"], "every entry was deleted");
    verify_fails(&cfg, &["audit", "verify"], "every entry was deleted");
    // Deleting the record of the chain's start as well does not make the
    // next open seal the older tables into a fresh chain that passes.
    tamper(
        url,
        "DELETE FROM store_info WHERE name = 'audit_chain_started'",
    );
    verify_fails(&cfg, &["audit", "verify"], "every entry was deleted");
    verify_fails(&cfg, &["audit", "verify"], "every entry was deleted");

    // Usage mistakes: one line, exit 2.
    let (code, _, err) = fedge_cli(&cfg, &["audit", "export", "--format", "csv"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, _, err) = fedge_cli(&cfg, &["audit", "verify", "--expect-head", "nonsense"]);
    assert_eq!(code, 2, "{err}");
}

/// The SQL that puts an exported entry back as it was.
fn insert_sql(e: &serde_json::Value) -> String {
    let q = |k: &str| format!("'{}'", e[k].as_str().unwrap().replace('\'', "''"));
    format!(
        "INSERT INTO audit_chain (seq, at, actor, kind, subject, action, detail, prev_hash, hash) \
         VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
        e["seq"],
        q("at"),
        q("actor"),
        q("kind"),
        q("subject"),
        q("action"),
        q("detail"),
        q("prev_hash"),
        q("hash")
    )
}

#[test]
fn chain_on_postgresql() {
    let pg = fedge_testkit::pg::Postgres::start();
    scenario(pg.dir(), &pg.url);
}

#[test]
fn chain_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/audit.db", dir.path().display());
    scenario(dir.path(), &url);
}

/// The edge's log journals every entry's head, and its head at start-up:
/// a collector keeping those lines holds an outside anchor that
/// `--expect-head` checks.
#[test]
fn the_edges_log_journals_the_chain_head() {
    let pki = fedge_testkit::pki::Pki::new();
    let edge = fedge_testkit::edge::Edge::start(&pki, &fedge_testkit::edge::test_config(&pki, ""));
    let auth = format!("Bearer {}", edge.token);
    let (code, _, body) = fedge_testkit::admin::request(
        edge.admin,
        "POST",
        "/api/v1/accounts",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"name":"ig.auditor","role":"viewer"}"#,
    );
    assert_eq!(code, 201, "{body}");
    let line = edge
        .wait_log(
            &["audit entry appended", "ig.auditor"],
            std::time::Duration::from_secs(5),
        )
        .expect("the append is logged");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let fields = &v["fields"];
    let head = format!("{}:{}", fields["seq"], fields["hash"].as_str().unwrap());
    let cli = edge.cli_config("audit-cli.toml");
    let out = fedge_ok(&cli, &["audit", "verify", "--expect-head", &head]);
    assert!(out.contains("audit chain: ok"), "{out}");
    assert!(
        edge.logs().iter().any(|l| l.contains("audit chain head")),
        "the head is logged at start-up"
    );
}

/// The partners' hourly verdict totals add up on PostgreSQL as on SQLite
/// (two nodes adding to one hour's row).
#[test]
fn verdict_counts_add_up_on_postgresql() {
    let pg = fedge_testkit::pg::Postgres::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = fedge::store::Store::open(&pg.url).await.unwrap();
        let row = |count: i64| fedge::store::VerdictCount {
            hour: "2026-12-03T16".into(),
            partner: "partner.test".into(),
            kind: "refused".into(),
            rule: "file_transfer".into(),
            direction: "inbound".into(),
            count,
        };
        store.add_verdict_counts(&[row(2)]).await.unwrap();
        store.add_verdict_counts(&[row(5)]).await.unwrap();
        let rows = store
            .verdict_history("partner.test", "2026-12-03T00")
            .await
            .unwrap();
        assert_eq!(rows, vec![row(7)]);
        assert!(
            store
                .verdict_history("partner.test", "2026-12-03T17")
                .await
                .unwrap()
                .is_empty()
        );
        store.close().await;
    });
}
