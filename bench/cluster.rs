//! Benchmark (not a test): how fast a registry change made through one
//! node reaches the others. Three `fedge serve` nodes on one PostgreSQL;
//! N rounds of `fedge partner suspend` then `fedge partner reinstate` run
//! with node A's CLI configuration. For each suspension: the time from the
//! command's return until the partner's connections on B and C are closed.
//! For each reinstatement: the time from the command's return until B's
//! and C's `/registry` show the partner enabled (polled every 5 ms over
//! HTTP, so figures include up to ~5 ms of polling). Both with LISTEN/
//! NOTIFY (`[store] notify = true`, the default) and with the version poll
//! alone (`notify = false`, `poll_interval` 250 ms).
//!
//! A time after the return can be negative: the other node acted before
//! the CLI process had exited (the CLI waits for node A's reload before it
//! returns), so the time from the command's start is printed too.
//!
//! Run: `cargo bench --bench cluster -- [--rounds 20]`

use std::time::{Duration, Instant};

use fedge_testkit::Pki;
use fedge_testkit::bench::flags;
use fedge_testkit::cluster::{Cluster, add_enabled_partner, partner_state};
use fedge_testkit::*;

const DOMAIN: &str = "partner.test";
const LIMIT: Duration = Duration::from_secs(5);

/// Milliseconds from `from` to `to` (negative when `to` came first).
fn ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

async fn connect(edge: &Edge, pki: &Pki, n: u32) -> SipTlsClient {
    let mut c = tls_connect(edge.federation, pki, &pki.partner)
        .await
        .expect("partner connection");
    c.send(options_to_edge(n).as_bytes()).await.expect("send");
    match c.recv(LIMIT).await {
        Reply::Message(m) if m.status() == Some(200) => c,
        other => panic!("OPTIONS on {}: {other:?}", edge.admin),
    }
}

/// When `c` was closed (at most [`LIMIT`]).
async fn closed_at(mut c: SipTlsClient) -> Option<Instant> {
    match c.recv(LIMIT).await {
        Reply::Closed => Some(Instant::now()),
        _ => None,
    }
}

/// When `edge`'s registry showed `state` (at most [`LIMIT`]).
fn state_at(edge: &Edge, state: &str) -> Option<Instant> {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if partner_state(edge, DOMAIN).as_deref() == Some(state) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn summary(name: &str, v: &mut [f64]) {
    if v.is_empty() {
        println!("{name:<44} no samples");
        return;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!(
        "{name:<44} n={:<3} min {:>7.1}  median {:>7.1}  p95 {:>7.1}  max {:>7.1} ms",
        v.len(),
        v[0],
        at(0.5),
        at(0.95),
        v[v.len() - 1]
    );
}

async fn run(mode: &str, store_lines: &str, rounds: u32) {
    let pki = Pki::new();
    let cluster = Cluster::start_with_store(&pki, 3, "", store_lines);
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let cli = a.cli_config("cli-a.toml");
    add_enabled_partner(&cli, DOMAIN);
    for n in [b, c] {
        state_at(n, "enabled").expect("the partner never reached B or C");
    }
    let (mut closed, mut enabled, mut missed) = (Vec::new(), Vec::new(), 0);
    let (mut closed_start, mut cli_time) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let on_b = connect(b, &pki, 2 * r).await;
        let on_c = connect(c, &pki, 2 * r + 1).await;
        let wb = tokio::spawn(closed_at(on_b));
        let wc = tokio::spawn(closed_at(on_c));
        let started = Instant::now();
        fedge_ok(&cli, &["partner", "suspend", DOMAIN, "--reason", "bench"]);
        let returned = Instant::now();
        cli_time.push(ms(started, returned));
        for w in [wb, wc] {
            match w.await.ok().flatten() {
                Some(t) => {
                    closed.push(ms(returned, t));
                    closed_start.push(ms(started, t));
                }
                None => missed += 1,
            }
        }
        fedge_ok(&cli, &["partner", "reinstate", DOMAIN, "--reason", "bench"]);
        let returned = Instant::now();
        for n in [b, c] {
            match state_at(n, "enabled") {
                Some(t) => enabled.push(ms(returned, t)),
                None => missed += 1,
            }
        }
    }
    println!("-- {mode} ({rounds} rounds, nodes B and C) --");
    summary("suspend: the CLI command's own time", &mut cli_time);
    summary("suspend: connection closed after start", &mut closed_start);
    summary("suspend: connection closed after return", &mut closed);
    summary("reinstate: /registry enabled after return", &mut enabled);
    if missed > 0 {
        println!("{missed} effects not seen within {LIMIT:?}");
    }
}

fn main() {
    let f = flags();
    let rounds: u32 = f
        .get("rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(20)
        .clamp(1, 200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        run("LISTEN/NOTIFY, poll 250ms as fallback", "", rounds).await;
        run(
            "poll alone (notify = false), 250ms",
            "notify = false",
            rounds,
        )
        .await;
    });
}
