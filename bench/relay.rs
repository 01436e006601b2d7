//! Benchmark (not a test): MESSAGE relayed partner to home over mutual TLS
//! at fixed rates, and mutual-TLS handshakes, against the real `fedge`
//! binary (or, with `--target kamailio`, against Kamailio doing the same
//! relay, for a baseline on the same machine).
//!
//! Partner side: several TLS connections with a partner certificate send
//! MESSAGEs at a fixed total rate. Home side: a UDP responder answers 200.
//! The relay's CPU time is read from /proc before and after each step, so
//! "CPU per message" is the relay's own cost while the load generator runs
//! on the same two cores.
//!
//! Two client shapes (`--shapes`, default both): `8:ecdsa`, eight
//! connections with an ECDSA P-256 partner certificate (the project's
//! historical shape), and `1:rsa`, ONE connection with an RSA-2048 partner
//! certificate (made with the openssl CLI), the shape of an independent
//! SfB-like generator. Messages are paced evenly in time by a thread of
//! their own (one every 1/rate s, round robin over the connections), as an
//! independent generator sends them; `--pace burst` keeps the old pacing
//! (tokio timers of 1 ms: each connection's messages leave together).
//!
//! `--target both` starts fedge and Kamailio side by side and measures
//! them alternately (the order swapped each round) for `--rounds` rounds,
//! then prints the medians: the figures to compare on a shared machine.
//!
//! Run: `cargo bench --bench relay -- [--rates 1000,2000,4000] [--secs 8]
//!       [--shapes 8:ecdsa,1:rsa] [--conns N --key ecdsa|rsa]
//!       [--rounds 3] [--handshake-secs 5] [--target fedge|kamailio|both]`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fedge::sip::framing::{StreamDecoder, StreamItem};
use fedge::sip::parse::Limits;
use fedge::sip::transport::tls::{TlsFiles, client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use fedge_testkit::Pki;
use fedge_testkit::bench::*;
use fedge_testkit::peers::{free_port, kamailio_modules};
use fedge_testkit::pki::PARTNER_FQDN;

struct Args {
    threads: usize,
    rates: Vec<u64>,
    secs: u64,
    shapes: Vec<Shape>,
    handshake_secs: u64,
    target: String,
    rounds: usize,
    burst: bool,
}

/// How the partner's side connects: how many connections, which key.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Shape {
    conns: usize,
    rsa: bool,
}

impl Shape {
    fn parse(s: &str) -> Option<Shape> {
        let (c, k) = s.trim().split_once(':').unwrap_or((s.trim(), "ecdsa"));
        Some(Shape {
            conns: c.parse().ok().filter(|&n: &usize| n > 0)?,
            rsa: match k {
                "rsa" => true,
                "ecdsa" => false,
                _ => return None,
            },
        })
    }

    fn label(&self) -> String {
        format!("{}:{}", self.conns, if self.rsa { "rsa" } else { "ecdsa" })
    }
}

fn args() -> Args {
    let mut a = Args {
        threads: 1,
        rates: vec![1000, 2000, 4000, 6000],
        secs: 8,
        shapes: vec![
            Shape {
                conns: 8,
                rsa: false,
            },
            Shape {
                conns: 1,
                rsa: true,
            },
        ],
        handshake_secs: 5,
        target: "fedge".into(),
        rounds: 1,
        burst: false,
    };
    let mut conns = None;
    let mut rsa = None;
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--rates" => {
                a.rates = next
                    .split(',')
                    .filter_map(|r| r.trim().parse().ok())
                    .collect()
            }
            "--secs" => a.secs = next.parse().unwrap_or(a.secs),
            "--conns" => conns = next.parse().ok(),
            "--key" => rsa = Some(next == "rsa"),
            "--shapes" => a.shapes = next.split(',').filter_map(Shape::parse).collect(),
            "--rounds" => a.rounds = next.parse().unwrap_or(1).max(1),
            "--pace" => a.burst = next == "burst",
            "--handshake-secs" => a.handshake_secs = next.parse().unwrap_or(a.handshake_secs),
            "--target" => a.target = next,
            "--threads" => a.threads = next.parse().unwrap_or(1),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    if conns.is_some() || rsa.is_some() {
        a.shapes = vec![Shape {
            conns: conns.unwrap_or(8),
            rsa: rsa.unwrap_or(false),
        }];
    }
    a
}

fn start_kamailio(p: &Pki, home: SocketAddr) -> Relay {
    use std::os::unix::process::CommandExt;
    let fed = free_port(true);
    let mpath = kamailio_modules();
    let tls = p.path().join("tls.cfg");
    std::fs::write(
        &tls,
        format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\nprivate_key = {}\ncertificate = {}\nca_list = {}\n",
            p.edge.key.display(),
            p.edge.cert.display(),
            p.ca_file.display()
        ),
    )
    .unwrap();
    let cfg = p.path().join("kamailio.cfg");
    // The same job as fedge: a stateful relay of TLS requests to the UDP pool.
    std::fs::write(
        &cfg,
        format!(
            "#!KAMAILIO\ndebug=1\nlog_stderror=yes\nfork=yes\nchildren=2\ntcp_children=2\nauto_aliases=no\ndisable_sctp=yes\n\
             listen=udp:127.0.0.1:{}\nlisten=tls:127.0.0.1:{fed}\nenable_tls=yes\nmpath=\"{}\"\n\
             loadmodule \"tls.so\"\nloadmodule \"tm.so\"\nloadmodule \"sl.so\"\nloadmodule \"rr.so\"\nloadmodule \"pv.so\"\nloadmodule \"maxfwd.so\"\n\
             modparam(\"tls\", \"config\", \"{}\")\n\
             request_route {{\n  if (!mf_process_maxfwd_header(\"10\")) {{ sl_send_reply(\"483\",\"Too Many Hops\"); exit; }}\n\
               $du = \"sip:{home};transport=udp\";\n  if (!t_relay()) {{ sl_reply_error(); }}\n  exit;\n}}\n",
            free_port(true),
            mpath,
            tls.display()
        ),
    )
    .unwrap();
    let child = Command::new("kamailio")
        .arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-m", "256", "-M", "16", "-Y"])
        .arg(p.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("kamailio");
    wait_port(fed);
    Relay {
        child,
        fed: SocketAddr::from(([127, 0, 0, 1], fed)),
        group: true,
        admin: None,
    }
}

fn message(conn: usize, seq: u64) -> Vec<u8> {
    let body = "Bench message across the edge";
    format!(
        "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS sip.partner.test:5061;branch=z9hG4bK-b{conn}-{seq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@partner.test>;tag=b{conn}\r\nTo: <sip:bob@fedge.test>\r\n\
         Call-ID: b{conn}-{seq}@partner.test\r\nCSeq: {seq} MESSAGE\r\nContact: <sip:alice@partner.test;transport=tls>\r\n\
         User-Agent: UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)\r\n\
         Content-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct StepResult {
    sent: u64,
    ok: u64,
    failed: u64,
    lat_us: Vec<u64>,
    cpu: f64,
    rss: f64,
    secs: f64,
}

async fn run_step(
    relay: &Relay,
    p: &Pki,
    partner: &fedge_testkit::pki::CertFiles,
    (rate, secs, conns, burst): (u64, u64, usize, bool),
) -> StepResult {
    let cfg = client_config(&TlsFiles {
        cert: partner.cert.clone(),
        key: partner.key.clone(),
        trust: p.ca_file.clone(),
    })
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let mut streams = Vec::new();
    for _ in 0..conns {
        let tcp = tokio::net::TcpStream::connect(relay.fed).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let s = connector
            .connect(
                rustls::pki_types::ServerName::try_from("sip.fedge.test").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        streams.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity((rate * secs) as usize)));
    let pids = relay.pids();
    let cpu0 = cpu_seconds(&pids);
    let t0 = Instant::now();
    let per_conn = rate as f64 / conns as f64;
    let total = rate * secs;
    // Even pacing: one thread sends each message's turn to its connection's
    // writer at its time (std's sleep, not tokio's 1 ms timer wheel).
    let mut ticks = Vec::new();
    let mut pacer_tx = Vec::new();
    for _ in 0..conns {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        pacer_tx.push(tx);
        ticks.push(rx);
    }
    let pacer = (!burst).then(|| {
        std::thread::spawn(move || {
            let every = Duration::from_secs_f64(1.0 / rate as f64);
            let start = Instant::now();
            for i in 0..total {
                let at = start + every * i as u32;
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let c = (i % pacer_tx.len() as u64) as usize;
                if pacer_tx[c].send(i / pacer_tx.len() as u64 + 1).is_err() {
                    break;
                }
            }
        })
    });
    let mut tasks = Vec::new();
    for (ci, (s, mut tick)) in streams.into_iter().zip(ticks).enumerate() {
        let (mut rd, mut wr) = tokio::io::split(s);
        let inflight: Arc<Mutex<HashMap<u64, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
        let (i2, ok2, bad2, lat2) = (inflight.clone(), ok.clone(), bad.clone(), lat.clone());
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut dec = StreamDecoder::new(Limits::default());
            loop {
                while let Ok(Some(item)) = dec.decode(&mut buf) {
                    if let StreamItem::Message(m) = item {
                        let Some(st) = m.status() else { continue };
                        if st < 200 {
                            continue;
                        }
                        let seq = m.cseq().map(|c| u64::from(c.seq)).unwrap_or(0);
                        if let Some(t) = i2.lock().unwrap().remove(&seq) {
                            if st == 200 {
                                ok2.fetch_add(1, Ordering::Relaxed);
                                lat2.lock().unwrap().push(t.elapsed().as_micros() as u64);
                            } else {
                                bad2.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                match tokio::time::timeout(Duration::from_secs(5), rd.read_buf(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            }
        });
        let sent2 = sent.clone();
        let writer = tokio::spawn(async move {
            let mine = (per_conn * secs as f64) as u64;
            let every = Duration::from_secs_f64(1.0 / per_conn);
            let start = tokio::time::Instant::now();
            for n in 1..=mine {
                let seq = if burst {
                    tokio::time::sleep_until(start + every * (n as u32 - 1)).await;
                    n
                } else {
                    match tick.recv().await {
                        Some(seq) => seq,
                        None => break,
                    }
                };
                inflight.lock().unwrap().insert(seq, Instant::now());
                if wr.write_all(&message(ci, seq)).await.is_err() {
                    break;
                }
                sent2.fetch_add(1, Ordering::Relaxed);
            }
            // Wait for the stragglers, then stop.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !inflight.lock().unwrap().is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let left = inflight.lock().unwrap().len() as u64;
            let _ = wr.shutdown().await;
            left
        });
        tasks.push((writer, reader));
    }
    let mut lost = 0;
    for (w, r) in tasks {
        lost += w.await.unwrap_or(0);
        r.abort();
    }
    if let Some(t) = pacer {
        let _ = t.join();
    }
    let secs_f = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pids) - cpu0;
    let mut lat_us = std::mem::take(&mut *lat.lock().unwrap());
    lat_us.sort_unstable();
    StepResult {
        sent: sent.load(Ordering::Relaxed),
        ok: ok.load(Ordering::Relaxed),
        failed: bad.load(Ordering::Relaxed) + lost,
        lat_us,
        cpu,
        rss: rss_mib(&pids),
        secs: secs_f,
    }
}

async fn handshakes(relay: &Relay, p: &Pki, secs: u64, parallel: usize) -> (u64, f64, f64) {
    let cfg = client_config(&TlsFiles {
        cert: p.partner.cert.clone(),
        key: p.partner.key.clone(),
        trust: p.ca_file.clone(),
    })
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let pids = relay.pids();
    let cpu0 = cpu_seconds(&pids);
    let t0 = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (c, d, fed) = (connector.clone(), done.clone(), relay.fed);
        tasks.push(tokio::spawn(async move {
            while t0.elapsed() < Duration::from_secs(secs) {
                let Ok(tcp) = tokio::net::TcpStream::connect(fed).await else { continue };
                let name = rustls::pki_types::ServerName::try_from("sip.fedge.test").unwrap();
                if let Ok(mut s) = c.connect(name, tcp).await {
                    // Make sure the server finished its side (TLS 1.3 client
                    // auth completes after the client's Finished): a CRLF ping
                    // is answered only by a fully authenticated connection.
                    if s.write_all(b"\r\n\r\n").await.is_ok() {
                        let mut b = [0u8; 8];
                        if matches!(tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await, Ok(Ok(n)) if n > 0) {
                            d.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let _ = s.shutdown().await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    let el = t0.elapsed().as_secs_f64();
    (
        n,
        n as f64 / el,
        (cpu_seconds(&pids) - cpu0) / n.max(1) as f64,
    )
}

/// fedge's live (server, client) transactions, from its admin listener.
fn transactions(relay: &Relay) -> String {
    use std::io::{Read, Write};
    let Some(a) = relay.admin else {
        return "-".into();
    };
    let Ok(mut s) = std::net::TcpStream::connect(a) else {
        return "?".into();
    };
    let token = fedge_testkit::admin::token_for(a).unwrap_or_default();
    let _ = write!(
        s,
        "GET /health HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    let body = r.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    format!(
        "{}/{}",
        v["transactions"]["server"], v["transactions"]["client"]
    )
}

/// (target, shape, rate): what a median is taken over.
type StepKey<'a> = (&'a str, String, u64);

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let a = args();
    let p = Pki::new();
    let stop = Arc::new(AtomicBool::new(false));
    let home = home_responder(stop.clone());
    let mut relays: Vec<(&str, Relay)> = Vec::new();
    if a.target == "fedge" || a.target == "both" {
        relays.push(("fedge", start_fedge(&p, home, a.threads, "")));
    }
    if a.target == "kamailio" || a.target == "both" {
        relays.push(("kamailio", start_kamailio(&p, home)));
    }
    assert!(!relays.is_empty(), "--target fedge, kamailio or both");
    let rsa = a
        .shapes
        .iter()
        .any(|s| s.rsa)
        .then(|| p.rsa_leaf("partner-rsa", &[PARTNER_FQDN]));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "relay: {} (fedge: {} runtime thread{})   shapes: {}   step: {} s   rounds: {}   pacing: {}   (load generator on the same 2 cores; machine shared)",
        a.target,
        a.threads,
        if a.threads == 1 { "" } else { "s" },
        a.shapes
            .iter()
            .map(Shape::label)
            .collect::<Vec<_>>()
            .join(","),
        a.secs,
        a.rounds,
        if a.burst {
            "burst (tokio 1 ms ticks)"
        } else {
            "even"
        },
    );
    println!(
        "{:>5} {:>9} {:>8} {:>8} {:>10} {:>8} {:>8} {:>9} {:>9} {:>12} {:>9} {:>12}",
        "round",
        "target",
        "shape",
        "rate",
        "achieved/s",
        "ok",
        "failed",
        "p50 ms",
        "p99 ms",
        "CPU us/msg",
        "RSS MiB",
        "txns s/c"
    );
    // (target, shape, rate) -> CPU per message of each round.
    let mut cpu: Vec<(StepKey, Vec<f64>)> = Vec::new();
    for round in 0..a.rounds {
        for shape in &a.shapes {
            let partner = if shape.rsa {
                rsa.clone().unwrap()
            } else {
                p.partner.clone()
            };
            for &rate in &a.rates {
                // Alternate which relay goes first, round by round.
                let mut order: Vec<usize> = (0..relays.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for i in order {
                    let (name, relay) = (&relays[i].0, &relays[i].1);
                    let r = rt.block_on(run_step(
                        relay,
                        &p,
                        &partner,
                        (rate, a.secs, shape.conns, a.burst),
                    ));
                    let achieved = r.ok as f64 / r.secs;
                    let per_msg = r.cpu * 1e6 / r.ok.max(1) as f64;
                    println!(
                        "{:>5} {:>9} {:>8} {:>8} {:>10.0} {:>8} {:>8} {:>9.2} {:>9.2} {:>12.1} {:>9.1} {:>12}",
                        round + 1,
                        name,
                        shape.label(),
                        rate,
                        achieved,
                        r.ok,
                        r.failed + r.sent.saturating_sub(r.ok + r.failed),
                        pct(&r.lat_us, 0.50),
                        pct(&r.lat_us, 0.99),
                        per_msg,
                        r.rss,
                        transactions(relay)
                    );
                    let key = (*name, shape.label(), rate);
                    match cpu.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => v.push(per_msg),
                        None => cpu.push((key, vec![per_msg])),
                    }
                }
            }
        }
    }
    if a.rounds > 1 || relays.len() > 1 {
        println!("\nmedian CPU us per MESSAGE over {} round(s):", a.rounds);
        println!(
            "{:>9} {:>8} {:>8} {:>12} {:>16}",
            "target", "shape", "rate", "CPU us/msg", "fedge/kamailio"
        );
        let med: Vec<(StepKey, f64)> = cpu
            .iter()
            .map(|(k, v)| (k.clone(), median(&mut v.clone())))
            .collect();
        for ((name, shape, rate), m) in &med {
            let ratio = if *name == "fedge" {
                med.iter()
                    .find(|((n, s, r), _)| *n == "kamailio" && s == shape && r == rate)
                    .map(|(_, k)| format!("{:.2}", m / k))
                    .unwrap_or_else(|| "-".into())
            } else {
                "-".into()
            };
            println!("{name:>9} {shape:>8} {rate:>8} {m:>12.1} {ratio:>16}");
        }
    }
    if a.handshake_secs > 0 {
        for (name, relay) in &relays {
            let (n, per_s, cpu) = rt.block_on(handshakes(relay, &p, a.handshake_secs, 4));
            println!(
                "{name}: mutual-TLS handshakes: {n} in {} s = {per_s:.0}/s, relay CPU {:.2} ms per handshake",
                a.handshake_secs,
                cpu * 1e3
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
}
