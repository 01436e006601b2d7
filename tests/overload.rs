//! Overload (issue 13 §4), against the real binary on loopback: a partner
//! flooding at ten times what the edge can relay while another partner
//! under its limit is served; `fedge partner suspend` under 500 MESSAGE/s;
//! kill -9 of the edge in the middle of that load on SQLite and on
//! PostgreSQL. Partners are Rust TLS clients with the partners'
//! certificates (fedge-testkit); the home pool is a UDP responder that
//! records when each request arrived. Every load is bounded in count and
//! time; the figures are printed (docs/robustness.md (Overload) has them).

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fedge::pki::LeafSpec;
use fedge::sip::SipMessage;
use fedge::sip::framing::{DatagramItem, StreamDecoder, StreamItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge_testkit::bench::rss_mib;
use fedge_testkit::peers::free_port;
use fedge_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::codec::Decoder;

/// What the edge relays per second, partner to home over mutual TLS
/// (`cargo bench --bench relay`, release build, this machine; see
/// docs/robustness.md (Overload)). The flood offers ten times this.
const RELAY_CAPACITY: u64 = 16_000;

/// One request the home pool received.
#[derive(Debug, Clone)]
struct Arrival {
    at: Instant,
    from_domain: String,
    call_id: String,
}

/// The home pool: a UDP responder answering 200 to every request and
/// recording when each arrived. Stops when dropped.
struct Home {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    stop: Arc<AtomicBool>,
}

impl Home {
    fn start() -> Home {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (arrivals.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut b = vec![0u8; 65535];
            while !halt.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut b) else {
                    continue;
                };
                let at = Instant::now();
                let DatagramItem::Message(m) =
                    parse_datagram(Bytes::copy_from_slice(&b[..n]), &Limits::default())
                else {
                    continue;
                };
                if !m.is_request() {
                    continue;
                }
                log.lock().unwrap().push(Arrival {
                    at,
                    from_domain: m
                        .from()
                        .and_then(|f| f.uri.domain().map(str::to_string))
                        .unwrap_or_default(),
                    call_id: m.call_id().unwrap_or("").to_string(),
                });
                let r = ResponseBuilder::new(&m, 200).to_tag("home").build();
                let target = match m.top_via() {
                    Some(v) if v.rport().is_none() => {
                        SocketAddr::new(from.ip(), v.port.unwrap_or(5060))
                    }
                    _ => from,
                };
                let _ = sock.send_to(&r, target);
            }
        });
        Home {
            addr,
            arrivals,
            stop,
        }
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The edge's configuration: the test defaults, `home` as the next hop,
/// `extra` appended, and the admin listener on `admin` when given (the
/// CLI then finds the running edge).
fn config(pki: &Pki, home: SocketAddr, admin: Option<u16>, extra: &str) -> String {
    let mut c = test_config(pki, extra).replace(
        "next_hop = \"sip:127.0.0.1:5080;transport=udp\"",
        &format!("next_hop = \"sip:{home};transport=udp\""),
    );
    if let Some(port) = admin {
        c = c.replace(
            "[admin]\nlisten = \"127.0.0.1:0\"",
            &format!("[admin]\nlisten = \"127.0.0.1:{port}\""),
        );
    }
    c
}

/// Writes the configuration where the CLI reads it.
fn write_config(pki: &Pki, text: &str) -> PathBuf {
    let path = pki.path().join("cli.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn add_enabled(cfg: &Path, domain: &str, org: &str, edge_fqdn: &str) {
    fedge_ok(
        cfg,
        &[
            "partner",
            "add",
            "--domain",
            domain,
            "--org",
            org,
            "--edge-fqdn",
            edge_fqdn,
            "--state",
            "enabled",
            "--reason",
            "overload test",
        ],
    );
}

/// A MESSAGE from `user@domain` (its edge `edge`) to bob in the home domain.
fn message(domain: &str, edge: &str, tag: &str, n: u64) -> String {
    let body = "Overload test message across the edge";
    format!(
        "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS {edge}:5061;branch=z9hG4bK-{tag}-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{domain}>;tag={tag}{n}\r\nTo: <sip:bob@fedge.test>\r\n\
         Call-ID: {tag}-{n}@{domain}\r\nCSeq: 1 MESSAGE\r\nContact: <sip:alice@{domain};transport=tls>\r\n\
         User-Agent: UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)\r\n\
         Content-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// What one flooding connection got back.
#[derive(Debug, Default)]
struct Answers {
    ok: u64,
    unavailable: u64,
    /// Answers other than 200 and a well-formed 503 (with the first one).
    wrong: u64,
    first_wrong: Option<String>,
    /// When the edge closed the connection, if it did.
    closed_at: Option<Instant>,
}

fn header(m: &SipMessage, h: HeaderName) -> Option<String> {
    m.values(h).next().map(str::to_string)
}

/// Reads answers until `stop` says the writer is done and everything it
/// sent is answered, the edge closes, or nothing comes for `quiet`.
async fn read_answers(
    mut rd: ReadHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    sent: Arc<AtomicU64>,
    writer_done: Arc<AtomicBool>,
    quiet: Duration,
) -> Answers {
    let mut a = Answers::default();
    let mut dec = StreamDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some(item)) = dec.decode(&mut buf) {
            let StreamItem::Message(m) = item else {
                continue;
            };
            let status = m.status().unwrap_or(0);
            let warning = m.values(HeaderName::Warning).collect::<Vec<_>>().join(" ");
            match status {
                200 => a.ok += 1,
                503 if header(&m, HeaderName::RetryAfter).is_some()
                    && warning.contains("requests per second") =>
                {
                    a.unavailable += 1
                }
                _ => {
                    a.wrong += 1;
                    a.first_wrong
                        .get_or_insert_with(|| String::from_utf8_lossy(m.raw()).into_owned());
                }
            }
        }
        let answered = a.ok + a.unavailable + a.wrong;
        if writer_done.load(Ordering::Relaxed) && answered >= sent.load(Ordering::Relaxed) {
            return a;
        }
        match tokio::time::timeout(quiet, rd.read_buf(&mut buf)).await {
            Err(_) => return a,
            Ok(Ok(0)) | Ok(Err(_)) => {
                a.closed_at = Some(Instant::now());
                return a;
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Writes MESSAGEs at `rate` per second (in 10 ms batches) until `until`,
/// `max` are sent, `stop` is set, or a write fails. Counts what was sent.
async fn write_load(
    mut wr: WriteHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    (domain, edge, tag): (&'static str, &'static str, String),
    (rate, max, until): (u64, u64, Instant),
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let per_tick = (rate / 100).max(1);
    let mut n = 0u64;
    let mut next = tokio::time::Instant::now();
    while Instant::now() < until && n < max && !stop.load(Ordering::Relaxed) {
        let mut batch = String::new();
        let k = per_tick.min(max - n);
        for i in 0..k {
            batch.push_str(&message(domain, edge, &tag, n + i));
        }
        if wr.write_all(batch.as_bytes()).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        n += k;
        sent.store(n, Ordering::Relaxed);
        next += Duration::from_millis(10);
        tokio::time::sleep_until(next).await;
    }
}

/// Samples the edge's RSS every 100 ms until stopped; returns the peak.
fn rss_sampler(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak: f64 = 0.0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_mib(&[pid]));
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_at_ten_times_capacity_is_refused_while_a_partner_under_its_limit_is_served() {
    let pki = Pki::new();
    let other = pki.leaf("other", &LeafSpec::new("sip.other.test", 30));
    let home = Home::start();
    let text = config(&pki, home.addr, None, "\n[policy]\nrate = 20\nburst = 40\n");
    let cfg = write_config(&pki, &text);
    add_enabled(&cfg, "partner.test", "Flood Org", PARTNER_FQDN);
    add_enabled(&cfg, "other.test", "Steady Org", "sip.other.test");
    let mut edge = Edge::start(&pki, &text);
    let pid = edge.pid();

    // The steady partner connects and is answered before the flood.
    let mut steady = tls_connect(edge.federation, &pki, &other).await.unwrap();
    steady
        .send(message("other.test", "sip.other.test", "s", 0).as_bytes())
        .await
        .unwrap();
    match steady.recv(Duration::from_secs(10)).await {
        Reply::Message(m) => assert_eq!(m.status(), Some(200), "first steady IM"),
        r => panic!("first steady IM: {r:?}"),
    }
    let rss_before = rss_mib(&[pid]);
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = rss_sampler(pid, sampling.clone());

    // The flood: two connections from partner.test offering ten times
    // the relay capacity between them, for at most four seconds.
    const FLOOD_SECS: u64 = 4;
    let offered = 10 * RELAY_CAPACITY;
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(FLOOD_SECS);
    let mut floods = Vec::new();
    for c in 0..2 {
        let conn = tls_connect(edge.federation, &pki, &pki.partner)
            .await
            .unwrap();
        let (rd, wr) = tokio::io::split(conn.stream);
        let sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_answers(
            rd,
            sent.clone(),
            done.clone(),
            Duration::from_secs(15),
        ));
        let writer = tokio::spawn({
            let (sent, done) = (sent.clone(), done.clone());
            async move {
                write_load(
                    wr,
                    ("partner.test", PARTNER_FQDN, format!("f{c}")),
                    (offered / 2, offered / 2 * FLOOD_SECS, until),
                    sent,
                    Arc::new(AtomicBool::new(false)),
                )
                .await;
                done.store(true, Ordering::Relaxed);
            }
        });
        floods.push((writer, reader, sent));
    }

    // Meanwhile the steady partner: 30 MESSAGEs at 10/s (half its limit),
    // each answered before the next.
    let mut steady_ids = vec!["s-0@other.test".to_string()];
    let mut steady_status = Vec::new();
    for n in 1..=30u64 {
        steady
            .send(message("other.test", "sip.other.test", "s", n).as_bytes())
            .await
            .unwrap();
        steady_ids.push(format!("s-{n}@other.test"));
        let status = match steady.recv(Duration::from_secs(30)).await {
            Reply::Message(m) => m.status().unwrap_or(0),
            r => panic!("steady IM {n} got no answer: {r:?}"),
        };
        steady_status.push(status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut flood = Answers::default();
    let mut sent_total = 0;
    for (writer, reader, sent) in floods {
        writer.await.unwrap();
        let a = reader.await.unwrap();
        sent_total += sent.load(Ordering::Relaxed);
        flood.ok += a.ok;
        flood.unavailable += a.unavailable;
        flood.wrong += a.wrong;
        flood.first_wrong = flood.first_wrong.or(a.first_wrong);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    sampling.store(true, Ordering::Relaxed);
    let rss_during = sampler.join().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_mib(&[pid]);
    let health = admin_get(edge.admin, "/health");
    let shed = metric(
        edge.admin,
        "fedge_rejections_total",
        &["rule=\"overload_shed\"", "partner=\"partner.test\""],
    );
    let limited = metric(
        edge.admin,
        "fedge_rejections_total",
        &["rule=\"rate_limited\"", "partner=\"partner.test\""],
    );
    println!(
        "overload figures: offered {offered}/s for {FLOOD_SECS} s; sent {sent_total} in {elapsed:.1} s; \
         flood answered 200: {}, 503: {} (rate_limited {limited}, overload_shed {shed}); \
         steady 200: {}/{}; RSS MiB before {rss_before:.1}, peak during {rss_during:.1}, after {rss_after:.1}; \
         load {}",
        flood.ok,
        flood.unavailable,
        steady_status.iter().filter(|s| **s == 200).count() + 1,
        steady_status.len() + 1,
        health["load"]
    );

    // The edge stayed up and the steady partner had every request answered 200.
    edge.assert_healthy();
    assert_eq!(health["status"], "ok");
    assert!(
        steady_status.iter().all(|s| *s == 200),
        "the steady partner's answers: {steady_status:?}"
    );
    let at_home: HashSet<String> = home
        .arrivals()
        .into_iter()
        .filter(|a| a.from_domain == "other.test")
        .map(|a| a.call_id)
        .collect();
    for id in &steady_ids {
        assert!(at_home.contains(id), "{id} never reached the home pool");
    }
    // The flooder was told to wait, with Retry-After and the reason; no
    // more than its burst and rate got through.
    assert_eq!(
        flood.wrong,
        0,
        "answers other than 200 and 503 with Retry-After and a reason, first:\n{}",
        flood.first_wrong.unwrap_or_default()
    );
    assert!(flood.unavailable > 0, "the flood was never refused");
    assert!(
        flood.ok as f64 <= 40.0 + 20.0 * elapsed + 1.0,
        "{} of the flood got through in {elapsed:.1} s",
        flood.ok
    );
    assert!(shed + limited >= flood.unavailable as f64);
    assert!(
        edge.wait_log(
            &["request refused", "\"status\":503", "Flood Org"],
            Duration::from_secs(2)
        )
        .is_some(),
        "no refusal of the flood in the log"
    );
    // The flood is logged, not one line per refusal: the lines left out
    // are counted in a summary line.
    let logs = edge.logs();
    let lines = logs
        .iter()
        .filter(|l| l.contains("request refused") && l.contains("Flood Org"))
        .count() as u64;
    assert!(
        lines * 10 < flood.unavailable,
        "{lines} log lines for {} refusals",
        flood.unavailable
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("more requests of this partner refused")
                && l.contains("partner.test")),
        "no summary of the refusals left out of the log"
    );
    // Memory stayed bounded: the flood's backlog waits in its own TCP
    // window, not in the edge.
    assert!(
        rss_during < rss_before + 256.0,
        "RSS grew from {rss_before:.1} MiB to {rss_during:.1} MiB under the flood"
    );
}

/// The partner's load and its closing, for the suspend and kill tests.
struct Load {
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<Answers>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// partner.test sends 500 MESSAGE/s on one connection for at most `secs`.
async fn partner_load(edge: &Edge, pki: &Pki, tag: &str, secs: u64) -> Load {
    let conn = tls_connect(edge.federation, pki, &pki.partner)
        .await
        .unwrap();
    let (rd, wr) = tokio::io::split(conn.stream);
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(read_answers(
        rd,
        sent.clone(),
        done.clone(),
        Duration::from_secs(10),
    ));
    let until = Instant::now() + Duration::from_secs(secs);
    let writer = tokio::spawn({
        let (sent, stop, tag) = (sent.clone(), stop.clone(), tag.to_string());
        async move {
            write_load(
                wr,
                ("partner.test", PARTNER_FQDN, tag),
                (500, 500 * secs, until),
                sent,
                stop,
            )
            .await;
            done.store(true, Ordering::Relaxed);
        }
    });
    Load {
        writer,
        reader,
        sent,
        stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_under_load_stops_the_partner_before_the_command_returns() {
    let pki = Pki::new();
    let home = Home::start();
    let text = config(
        &pki,
        home.addr,
        Some(free_port(true)),
        "\n[policy]\nrate = 2000\nburst = 2000\n",
    );
    let cfg = write_config(&pki, &text);
    add_enabled(&cfg, "partner.test", "Busy Org", PARTNER_FQDN);
    let mut edge = Edge::start(&pki, &text);

    let load = partner_load(&edge, &pki, "b", 8).await;
    // Let the load run, then suspend while it does.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = home
        .arrivals()
        .iter()
        .filter(|a| a.from_domain == "partner.test")
        .count();
    let path = edge.config_path.clone();
    let returned = tokio::task::spawn_blocking(move || {
        let out = fedge_cli(
            &path,
            &[
                "partner",
                "suspend",
                "partner.test",
                "--reason",
                "suspended under load",
            ],
        );
        (out, Instant::now())
    });
    let ((code, out, err), returned) = returned.await.unwrap();
    assert_eq!(code, 0, "suspend failed: {out}{err}");
    assert!(
        !err.contains("note:"),
        "the CLI could not reach the edge: {err}"
    );
    let answers = load.reader.await.unwrap();
    load.stop.store(true, Ordering::Relaxed);
    load.writer.await.unwrap();

    // Not one request of the partner reached the home pool after the
    // command returned (a retransmission of an earlier one aside).
    let arrivals = home.arrivals();
    let mut seen = HashSet::new();
    let late: Vec<&Arrival> = arrivals
        .iter()
        .filter(|a| a.from_domain == "partner.test")
        .filter(|a| seen.insert(a.call_id.clone()))
        .filter(|a| a.at > returned)
        .collect();
    println!(
        "suspend figures: {} sent, {} at home before the suspend, {} in all; {} answered 200; connection closed {:?} after the command returned",
        load.sent.load(Ordering::Relaxed),
        before,
        seen.len(),
        answers.ok,
        answers
            .closed_at
            .map(|t| t.saturating_duration_since(returned))
    );
    assert!(
        before >= 100,
        "the load never reached the home pool ({before})"
    );
    assert!(
        late.is_empty(),
        "{} requests reached the home pool after suspend returned, first {:?}",
        late.len(),
        late.first()
    );
    // Its connection was closed by the edge, within a second.
    let closed = answers
        .closed_at
        .expect("the edge never closed the connection");
    assert!(
        closed.saturating_duration_since(returned) <= Duration::from_secs(1),
        "closed {:?} after the command returned",
        closed.saturating_duration_since(returned)
    );
    assert!(
        edge.wait_log(&["partner connections closed"], Duration::from_secs(2))
            .is_some()
    );
    edge.assert_healthy();
}

/// kill -9 of the edge while a partner sends 500 MESSAGE/s and the
/// registry changes through the CLI: on restart, every acknowledged
/// change is there, `fedge store check` passes, and the partner
/// reconnects and is served.
async fn kill_9_under_load(pki: Pki, text: String) {
    let home = Home::start();
    let text = text.replace(
        "next_hop = \"sip:127.0.0.1:5080;transport=udp\"",
        &format!("next_hop = \"sip:{};transport=udp\"", home.addr),
    );
    let cfg = write_config(&pki, &text);
    add_enabled(&cfg, "partner.test", "Busy Org", PARTNER_FQDN);
    let edge = Edge::start(&pki, &text);
    let load = partner_load(&edge, &pki, "k", 6).await;

    // Registry changes under the load; the edge is killed part-way.
    let path = cfg.clone();
    let pid = edge.pid();
    let changes = tokio::task::spawn_blocking(move || {
        let mut acked = Vec::new();
        for i in 0..12 {
            if i == 4 {
                let st = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status()
                    .unwrap();
                assert!(st.success(), "kill -9 {pid}");
            }
            let domain = format!("k{i}.test");
            let (code, out, err) = fedge_cli(
                &path,
                &[
                    "partner",
                    "add",
                    "--domain",
                    &domain,
                    "--org",
                    &format!("Org {i}"),
                ],
            );
            assert_eq!(code, 0, "{out}{err}");
            acked.push(domain.clone());
            if i % 2 == 0 {
                let (code, out, err) = fedge_cli(&path, &["partner", "agreement-sent", &domain]);
                assert_eq!(code, 0, "{out}{err}");
            }
        }
        acked
    });
    let acked = changes.await.unwrap();
    load.stop.store(true, Ordering::Relaxed);
    load.writer.await.unwrap();
    let before_kill = load.reader.await.unwrap();
    assert!(
        before_kill.closed_at.is_some(),
        "the partner's connection outlived the edge"
    );
    drop(edge);

    // The database is sound and holds every acknowledged change.
    let check = fedge_ok(&cfg, &["store", "check"]);
    assert!(check.trim_end().ends_with(": ok"), "{check}");
    for (i, d) in acked.iter().enumerate() {
        let p: serde_json::Value =
            serde_json::from_str(&fedge_ok(&cfg, &["partner", "show", d, "--json"])).unwrap();
        let want = if i % 2 == 0 {
            "agreement_sent"
        } else {
            "requested"
        };
        assert_eq!(p["state"], want, "{d}");
    }

    // The edge starts again on the same store and the partner reconnects.
    let mut edge = Edge::start(&pki, &text);
    let mut c = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    c.send(message("partner.test", PARTNER_FQDN, "again", 1).as_bytes())
        .await
        .unwrap();
    match c.recv(Duration::from_secs(10)).await {
        Reply::Message(m) => assert_eq!(m.status(), Some(200), "after the restart"),
        r => panic!("after the restart: {r:?}"),
    }
    assert!(
        home.arrivals()
            .iter()
            .any(|a| a.call_id == "again-1@partner.test")
    );
    println!(
        "kill -9 figures: {} sent before the kill, {} answered 200; {} registry changes acknowledged, all present",
        load.sent.load(Ordering::Relaxed),
        before_kill.ok,
        acked.len() + acked.len().div_ceil(2)
    );
    edge.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_on_sqlite_loses_no_acknowledged_change() {
    let pki = Pki::new();
    let text = test_config(&pki, "\n[policy]\nrate = 2000\nburst = 2000\n");
    kill_9_under_load(pki, text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_on_postgres_loses_no_acknowledged_change() {
    let pg = fedge_testkit::pg::Postgres::start();
    let pki = Pki::new();
    let sqlite = format!("url = \"sqlite://{}/fedge.db\"", pki.path().display());
    let text = test_config(&pki, "\n[policy]\nrate = 2000\nburst = 2000\n")
        .replace(&sqlite, &format!("url = \"{}\"", pg.url));
    kill_9_under_load(pki, text).await;
}
