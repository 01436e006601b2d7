//! Several nodes on one real PostgreSQL (fedge_testkit::cluster): a change
//! made through one node (CLI and API) acts on the others at once (LISTEN/
//! NOTIFY), `fedge nodes` shows up / gone / stopped nodes, and a node that
//! loses its database keeps serving, says so, refuses changes, and catches
//! up when PostgreSQL returns.

use std::process::Command;
use std::time::{Duration, Instant};

use fedge_testkit::cluster::{
    Cluster, add_enabled_partner, api_call, partner_id, wait_partner_state,
};
use fedge_testkit::*;
use serde_json::{Value, json};

const DOMAIN: &str = "partner.test";

/// A partner connection to `edge` whose OPTIONS was answered 200.
async fn connected(edge: &Edge, pki: &Pki, n: u32) -> SipTlsClient {
    let mut c = tls_connect(edge.federation, pki, &pki.partner)
        .await
        .unwrap();
    c.send(options_to_edge(n).as_bytes()).await.unwrap();
    match c.recv(Duration::from_secs(5)).await {
        Reply::Message(m) => assert_eq!(m.status(), Some(200), "OPTIONS on {}", edge.admin),
        other => panic!("OPTIONS on {}: {other:?}", edge.admin),
    }
    c
}

/// The partner's next request on `edge` is refused: 403 naming the
/// suspension, or its handshake is refused.
async fn refused_everywhere(edge: &Edge, pki: &Pki, n: u32) {
    let Ok(mut c) = tls_connect(edge.federation, pki, &pki.partner).await else {
        // The handshake was refused, not the node gone: it still accepts TCP.
        assert!(
            std::net::TcpStream::connect(edge.federation).is_ok(),
            "node {} is not listening: a dead node is no refusal",
            edge.admin
        );
        return;
    };
    let msg = format!(
        "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS {PARTNER_FQDN};branch=z9hG4bK-c{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@partner.test>;tag=a{n}\r\nTo: <sip:bob@fedge.test>\r\nCall-ID: c{n}\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    );
    let _ = c.send(msg.as_bytes()).await;
    match c.recv(Duration::from_secs(5)).await {
        Reply::Message(m) => {
            assert_eq!(
                m.status(),
                Some(403),
                "a suspended partner's MESSAGE on {}",
                edge.admin
            );
            let w = m.values_named("Warning").next().unwrap_or("").to_string();
            assert!(w.contains("suspended"), "{w}");
        }
        Reply::Closed => {}
        other => panic!("a suspended partner's MESSAGE on {}: {other:?}", edge.admin),
    }
}

async fn assert_closed(c: &mut SipTlsClient, what: &str) {
    match c.recv(Duration::from_secs(5)).await {
        Reply::Closed => {}
        other => panic!("{what}: the connection stayed open: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_through_one_node_acts_on_the_others() {
    let pki = Pki::new();
    let mut cluster = Cluster::start(&pki, 2, "");
    cluster.add_node(&pki, "");
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let cli_a = a.cli_config("cli-a.toml");
    add_enabled_partner(&cli_a, DOMAIN);
    for n in [b, c] {
        wait_partner_state(n, DOMAIN, "enabled", Duration::from_secs(5));
    }

    // Through A's CLI: B's and C's connections close; no node takes it.
    let mut on_b = connected(b, &pki, 1).await;
    let mut on_c = connected(c, &pki, 2).await;
    let t0 = Instant::now();
    fedge_ok(
        &cli_a,
        &["partner", "suspend", DOMAIN, "--reason", "IG lapsed"],
    );
    let acked = t0.elapsed();
    assert_closed(&mut on_b, "B after a suspension on A").await;
    assert_closed(&mut on_c, "C after a suspension on A").await;
    eprintln!(
        "CLI suspend returned after {acked:?}; B and C closed {:?} after the command started",
        t0.elapsed()
    );
    for (i, n) in [a, b, c].into_iter().enumerate() {
        refused_everywhere(n, &pki, 10 + i as u32).await;
    }

    // Through A's API, with A's token: the same.
    let id = partner_id(a, DOMAIN);
    let (st, v) = api_call(
        a.admin,
        &a.token,
        "POST",
        &format!("/api/v1/partners/{id}/reinstate"),
        Some(&json!({"reason": "IG renewed"})),
    );
    assert_eq!(st, 200, "{v}");
    for n in [b, c] {
        wait_partner_state(n, DOMAIN, "enabled", Duration::from_secs(5));
    }
    let mut on_b = connected(b, &pki, 3).await;
    let mut on_c = connected(c, &pki, 4).await;
    let (st, v) = api_call(
        a.admin,
        &a.token,
        "POST",
        &format!("/api/v1/partners/{id}/suspend"),
        Some(&json!({"reason": "IG lapsed again"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_closed(&mut on_b, "B after a suspension through A's API").await;
    assert_closed(&mut on_c, "C after a suspension through A's API").await;
    for (i, n) in [a, b, c].into_iter().enumerate() {
        refused_everywhere(n, &pki, 20 + i as u32).await;
    }
    // The change came by notification, not only by the poll.
    for n in [b, c] {
        assert!(
            n.wait_log(
                &["listening for registry notifications"],
                Duration::from_secs(1)
            )
            .is_some(),
            "no LISTEN on {}",
            n.admin
        );
    }
    for n in cluster.nodes.iter_mut() {
        n.assert_healthy();
    }
}

fn nodes_json(cli: &std::path::Path) -> Vec<Value> {
    let out = fedge_ok(cli, &["nodes", "--json"]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{out}"))
}

fn state_of(nodes: &[Value], name: &str) -> String {
    nodes
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

#[test]
fn fedge_nodes_shows_up_gone_and_stopped_nodes() {
    let pki = Pki::new();
    let mut cluster = Cluster::start(&pki, 3, "");
    let cli_a = cluster.nodes[0].cli_config("cli-a.toml");
    // The CLI judges "gone" by its own configuration's [cluster]
    // gone_after, as an operator's would (the nodes' own: 1 s).
    let mut text = std::fs::read_to_string(&cli_a).unwrap();
    text.push_str("\n[cluster]\nheartbeat = \"200ms\"\ngone_after = \"1s\"\n");
    std::fs::write(&cli_a, text).unwrap();
    // All three up (give each a heartbeat or two to land).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let nodes = nodes_json(&cli_a);
        let up = ["node-a", "node-b", "node-c"]
            .iter()
            .all(|n| state_of(&nodes, n) == "up");
        if up {
            assert_eq!(nodes.len(), 3, "{nodes:?}");
            assert!(
                nodes[0]["listeners"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|l| l["role"] == "federation")),
                "{nodes:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not all up: {nodes:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let table = fedge_ok(&cli_a, &["nodes"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" up ")).count(),
        3,
        "{table}"
    );

    // The same through A's API and the CLI's remote mode.
    let a = &cluster.nodes[0];
    let (st, v) = api_call(a.admin, &a.token, "GET", "/api/v1/nodes", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}");
    let (code, out, err) = fedge_cli(
        &cli_a,
        &[
            "--server",
            &format!("http://{}", a.admin),
            "--token",
            &a.token,
            "nodes",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node-c"), "{out}");

    // A live node cannot be forgotten.
    let (code, _, err) = fedge_cli(&cli_a, &["nodes", "forget", "node-a"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("only a gone or stopped node"), "{err}");

    // B stopped with SIGTERM is shown stopped; C killed (SIGKILL: no
    // goodbye) is gone once its last heartbeat is older than gone_after:
    // by construction within gone_after + one heartbeat of the kill (the
    // bound below adds 2 s for running the CLI itself).
    let b_pid = cluster.nodes[1].pid();
    let st = Command::new("kill")
        .args(["-TERM", &b_pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.nodes[1].alive() {
        assert!(Instant::now() < deadline, "node-b did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state_of(&nodes_json(&cli_a), "node-b"), "stopped");
    let killed = cluster.nodes.pop().unwrap();
    drop(killed);
    let t_kill = Instant::now();
    let bound = Duration::from_millis(1000 + 200) + Duration::from_secs(2);
    let gone_seen = loop {
        let nodes = nodes_json(&cli_a);
        if state_of(&nodes, "node-c") == "gone" {
            assert_eq!(state_of(&nodes, "node-b"), "stopped", "{nodes:?}");
            assert_eq!(state_of(&nodes, "node-a"), "up", "{nodes:?}");
            break t_kill.elapsed();
        }
        assert!(
            t_kill.elapsed() < bound,
            "node-c not shown gone within gone_after + heartbeat: {nodes:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("a killed node shown gone after {gone_seen:?} (gone_after 1s, heartbeat 200ms)");
    // A's live count (the rate limits' share) is down to itself at its
    // next heartbeat (the CLI above judged by its own reading).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let h = admin_get(cluster.nodes[0].admin, "/health");
        if h["cluster"]["live_nodes"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "A still counts {h}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A gone node is forgotten.
    let out = fedge_ok(&cli_a, &["nodes", "forget", "node-c"]);
    assert!(out.contains("forgot node node-c"), "{out}");
    let nodes = nodes_json(&cli_a);
    assert_eq!(state_of(&nodes, "node-c"), "missing", "{nodes:?}");
    cluster.nodes[0].assert_healthy();
}

/// While `edge`'s database is unreachable: a token whose account was
/// disabled before the outage is refused; the operator's remembered token
/// reads (`/api/v1/me`, the drain's progress; `/api/v1/nodes` passes the
/// token check and then needs the database), and every change, the
/// drain and reload included, is refused with 503 and the reason.
fn remembered_tokens_only_read(edge: &Edge, disabled: &str) {
    let (st, v) = api_call(edge.admin, disabled, "GET", "/api/v1/me", None);
    assert!(
        st == 401 || st == 503,
        "a disabled account's token in the outage: {st} {v}"
    );
    let (st, me) = api_call(edge.admin, &edge.token, "GET", "/api/v1/me", None);
    assert_eq!(st, 200, "{me}");
    assert!(
        me["via"]
            .as_str()
            .unwrap_or_default()
            .starts_with("remembered token"),
        "{me}"
    );
    let (st, v) = api_call(edge.admin, &edge.token, "GET", "/api/v1/node/drain", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["draining"], false, "{v}");
    let (st, v) = api_call(edge.admin, &edge.token, "GET", "/api/v1/nodes", None);
    assert_eq!(st, 503, "{v}");
    let reason = v["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the database is unreachable") && !reason.contains("read-only"),
        "the token passed, the database did not answer: {reason}"
    );
    for path in [
        "/api/v1/node/drain",
        "/api/v1/node/reload",
        "/api/v1/media/drain",
    ] {
        let (st, v) = api_call(edge.admin, &edge.token, "POST", path, None);
        assert_eq!(st, 503, "POST {path} with a remembered token: {v}");
        let reason = v["error"].as_str().unwrap_or_default();
        assert!(
            reason.contains("only read-only requests are served from the last verified tokens"),
            "POST {path}: {reason}"
        );
    }
    let (st, v) = api_call(edge.admin, &edge.token, "GET", "/api/v1/node/drain", None);
    assert_eq!(
        (st, &v["draining"]),
        (200, &json!(false)),
        "no drain began: {v}"
    );
    assert!(
        edge.wait_log(
            &["a change refused: the token was taken from the outage memory"],
            Duration::from_secs(5)
        )
        .is_some(),
        "the refusal is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_database_serves_refuses_changes_and_catches_up() {
    let pki = Pki::new();
    let mut cluster = Cluster::start(&pki, 1, "");
    let a = &cluster.nodes[0];
    let cli_a = a.cli_config("cli-a.toml");
    add_enabled_partner(&cli_a, DOMAIN);
    wait_partner_state(a, DOMAIN, "enabled", Duration::from_secs(5));
    let id = partner_id(a, DOMAIN);
    let mut conn = connected(a, &pki, 1).await;

    // A second operator's token is used, then its account disabled
    // through this node: the disable forgets the node's token memory.
    let (st, made) = api_call(
        a.admin,
        &a.token,
        "POST",
        "/api/v1/accounts",
        Some(&json!({"name": "ops-leaked", "role": "operator"})),
    );
    assert_eq!(st, 201, "{made}");
    let leaked = made["token"].as_str().unwrap().to_string();
    let (st, me) = api_call(a.admin, &leaked, "GET", "/api/v1/me", None);
    assert_eq!((st, me["via"].as_str()), (200, Some("token")), "{me}");
    let (st, v) = api_call(
        a.admin,
        &a.token,
        "POST",
        "/api/v1/accounts/ops-leaked/disable",
        Some(&json!({"reason": "leaked"})),
    );
    assert_eq!(st, 200, "{v}");
    // The operator's own token is verified again before the outage.
    let (st, me) = api_call(a.admin, &a.token, "GET", "/api/v1/me", None);
    assert_eq!(st, 200, "{me}");

    cluster.pg.stop();
    let lost = a
        .wait_log(
            &["store unreachable; serving from the last registry snapshot"],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no log of the loss:\n{}", a.logs().join("\n")));
    assert!(lost.contains("version"), "{lost}");
    let (st, body) = http(a.admin, "GET", "/health");
    assert_eq!(
        st, 200,
        "a degraded node stays in the load balancer: {body}"
    );
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["store"]["reachable"], false, "{h}");
    assert!(
        h["store"]["since"].is_string() && h["store"]["last_error"].is_string(),
        "{h}"
    );

    // Partners are still served from the snapshot: on the open connection
    // and on a new one.
    conn.send(options_to_edge(2).as_bytes()).await.unwrap();
    match conn.recv(Duration::from_secs(5)).await {
        Reply::Message(m) => assert_eq!(m.status(), Some(200)),
        other => panic!("OPTIONS without the database: {other:?}"),
    }
    let _fresh = connected(a, &pki, 3).await;

    remembered_tokens_only_read(a, &leaked);

    // Changes are refused, through the API and the CLI, with the reason.
    let t0 = Instant::now();
    let (st, v) = api_call(
        a.admin,
        &a.token,
        "POST",
        &format!("/api/v1/partners/{id}/suspend"),
        Some(&json!({"reason": "while the database is down"})),
    );
    eprintln!("the API refused a change after {:?}", t0.elapsed());
    assert_eq!(st, 503, "{v}");
    let reason = v["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the database is unreachable")
            && reason.contains("only read-only requests are served from the last verified tokens")
            && reason.contains("no change was made"),
        "{reason}"
    );
    let (code, _, err) = fedge_cli(&cli_a, &["partner", "suspend", DOMAIN, "--reason", "x"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("the database is unreachable"), "{err}");

    // PostgreSQL returns: the node says so, and a change made now acts.
    cluster.pg.start_again();
    a.wait_log(
        &["store reachable again; registry caught up to version"],
        Duration::from_secs(15),
    )
    .unwrap_or_else(|| panic!("no log of the return:\n{}", a.logs().join("\n")));
    let h = admin_get(a.admin, "/health");
    assert_eq!(h["status"], "ok", "{h}");
    fedge_ok(
        &cli_a,
        &["partner", "suspend", DOMAIN, "--reason", "after the outage"],
    );
    assert_closed(&mut conn, "the partner's connection after a suspension").await;
    refused_everywhere(a, &pki, 30).await;
    let said: Vec<String> = a
        .logs()
        .into_iter()
        .filter(|l| l.contains("store unreachable") || l.contains("store reachable again"))
        .collect();
    assert_eq!(
        said.len(),
        2,
        "the loss and the return are logged once each: {said:#?}"
    );
    cluster.nodes[0].assert_healthy();
}

#[test]
fn two_processes_with_one_node_name_are_warned_about() {
    let pki = Pki::new();
    let cluster = Cluster::start(&pki, 1, "");
    let rival = Edge::start(
        &pki,
        &fedge_testkit::cluster::node_config(&pki, &cluster.pg.url, "node-a", ""),
    );
    let warned = [&cluster.nodes[0], &rival].into_iter().any(|n| {
        n.wait_log(
            &["another fedge process heartbeats under this node's name"],
            Duration::from_secs(5),
        )
        .is_some()
    });
    assert!(
        warned,
        "no rival warning:\n{}\n---\n{}",
        cluster.nodes[0].logs().join("\n"),
        rival.logs().join("\n")
    );
}
