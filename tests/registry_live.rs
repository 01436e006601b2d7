//! Registry changes reaching a running edge, and surviving kill -9.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fedge_testkit::*;

/// Polls the edge's registry view until `pred` holds; returns how long it took.
fn wait_registry(edge: &Edge, pred: impl Fn(&serde_json::Value) -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        let v = admin_get(edge.admin, "/registry");
        if pred(&v) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "registry never changed: {v}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state_of(v: &serde_json::Value, domain: &str) -> Option<String> {
    v["partners"]
        .as_array()?
        .iter()
        .find(|p| {
            p["domains"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == domain))
        })
        .map(|p| p["state"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_the_running_edge_and_close_connections() {
    let pki = Pki::new();
    let mut edge = Edge::start(&pki, &test_config(&pki, ""));
    let cfg = edge.config_path.clone();
    let c2 = cfg.clone();
    let import = move |domain: &str, org: &str| {
        fedge_ok(
            &c2,
            &[
                "partner",
                "add",
                "--domain",
                domain,
                "--org",
                org,
                "--edge-fqdn",
                PARTNER_FQDN,
                "--state",
                "enabled",
                "--reason",
                "test import",
            ],
        )
    };

    import("partner.test", "Partner Trust");
    let seen = wait_registry(&edge, |v| {
        state_of(v, "partner.test").as_deref() == Some("enabled")
    });
    eprintln!("propagation of an added partner: {seen:?}");

    // Two partners hosted on the same edge (one certificate, two From domains).
    import("hosted.test", "Hosted Practice");
    wait_registry(&edge, |v| {
        state_of(v, "hosted.test").as_deref() == Some("enabled")
    });
    let mut c = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    c.send(options_to_edge(1).as_bytes()).await.unwrap();
    assert!(
        matches!(c.recv(Duration::from_secs(5)).await, Reply::Message(m) if m.status() == Some(200))
    );

    // Suspending one keeps the connection: the edge still serves the other.
    fedge_ok(
        &cfg,
        &["partner", "suspend", "hosted.test", "--reason", "test"],
    );
    wait_registry(&edge, |v| {
        state_of(v, "hosted.test").as_deref() == Some("suspended")
    });
    assert!(
        edge.wait_log(
            &["edge still serves another enabled partner"],
            Duration::from_secs(5)
        )
        .is_some()
    );
    c.send(options_to_edge(2).as_bytes()).await.unwrap();
    assert!(
        matches!(c.recv(Duration::from_secs(5)).await, Reply::Message(m) if m.status() == Some(200)),
        "connection dropped while the edge still serves an enabled partner"
    );

    // Suspending the last enabled partner on that edge closes its connection at once.
    let t0 = Instant::now();
    fedge_ok(
        &cfg,
        &[
            "partner",
            "suspend",
            "partner.test",
            "--reason",
            "IG lapsed",
        ],
    );
    let acked = t0.elapsed();
    match c.recv(Duration::from_secs(10)).await {
        Reply::Closed => {}
        other => panic!("connection not closed after suspension: {other:?}"),
    }
    eprintln!(
        "suspend acknowledged after {acked:?}; connection closed {:?} after the command started",
        t0.elapsed()
    );
    assert!(
        edge.wait_log(
            &["partner connections closed", "partner.test"],
            Duration::from_secs(2)
        )
        .is_some()
    );

    // Reinstating lets it connect again; revoking closes it again.
    fedge_ok(
        &cfg,
        &[
            "partner",
            "reinstate",
            "partner.test",
            "--reason",
            "IG renewed",
        ],
    );
    wait_registry(&edge, |v| {
        state_of(v, "partner.test").as_deref() == Some("enabled")
    });
    let mut c = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    c.send(options_to_edge(3).as_bytes()).await.unwrap();
    assert!(matches!(
        c.recv(Duration::from_secs(5)).await,
        Reply::Message(_)
    ));
    fedge_ok(
        &cfg,
        &[
            "partner",
            "revoke",
            "partner.test",
            "--reason",
            "de-federation",
        ],
    );
    assert!(matches!(
        c.recv(Duration::from_secs(10)).await,
        Reply::Closed
    ));
    edge.assert_healthy();
}

fn spawn_cli(cfg: &Path, args: &[&str]) -> std::process::Child {
    Command::new(fedge_bin())
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env("USER", "durability")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// kill -9 at random moments of writes: nothing acknowledged is lost and
/// nothing is half-written.
#[test]
fn kill_9_mid_write_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fedge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nurl = \"sqlite://{}/reg.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    fedge_ok(&cfg, &["store", "check"]);

    let mut seed: u64 = 0x0dd_ba11;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut acked_adds = Vec::new();
    let mut acked_sent = Vec::new();
    let mut killed = 0;
    for i in 0..60 {
        let domain = format!("d{i}.test");
        let org = format!("Org {i}");
        let mut child = spawn_cli(
            &cfg,
            &["partner", "add", "--domain", &domain, "--org", &org],
        );
        std::thread::sleep(Duration::from_millis(rnd(40)));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        if out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("added as requested")
        {
            acked_adds.push(domain.clone());
        } else {
            killed += 1;
        }
        // Move an earlier acknowledged partner on, also under fire.
        if let Some(d) = acked_adds
            .get(rnd(acked_adds.len().max(1) as u64) as usize)
            .cloned()
            && !acked_sent.contains(&d)
        {
            let mut child = spawn_cli(&cfg, &["partner", "agreement-sent", &d]);
            std::thread::sleep(Duration::from_millis(rnd(40)));
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            if out.status.success() {
                acked_sent.push(d);
            }
        }
    }
    eprintln!(
        "{} adds acknowledged, {killed} killed before acknowledging, {} transitions acknowledged",
        acked_adds.len(),
        acked_sent.len()
    );
    assert!(
        killed > 0 && !acked_adds.is_empty(),
        "the kill timing never hit both sides; adjust the delays"
    );

    // The database is sound and every audit trail matches its partner.
    let check = fedge_ok(&cfg, &["store", "check"]);
    assert!(check.trim_end().ends_with(": ok"), "{check}");
    for d in &acked_adds {
        let p: serde_json::Value =
            serde_json::from_str(&fedge_ok(&cfg, &["partner", "show", d, "--json"])).unwrap();
        // An unacknowledged transition may or may not have landed; an acknowledged one must have.
        if acked_sent.contains(d) {
            assert_eq!(p["state"], "agreement_sent", "{d}");
        } else {
            assert!(
                p["state"] == "requested" || p["state"] == "agreement_sent",
                "{d}: {}",
                p["state"]
            );
        }
    }
    // Partners that were killed before acknowledging either exist whole or not at all.
    let list: serde_json::Value =
        serde_json::from_str(&fedge_ok(&cfg, &["partner", "list", "--json"])).unwrap();
    for p in list.as_array().unwrap() {
        let d = p["domains"][0].as_str().unwrap();
        let h: serde_json::Value =
            serde_json::from_str(&fedge_ok(&cfg, &["partner", "history", d, "--json"])).unwrap();
        assert_eq!(h["entries"][0]["action"], "add", "{d} has no add entry");
    }
}
