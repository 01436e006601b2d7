//! Benchmark (not a test): what TLS costs the edge, fedge against Kamailio
//! 5.6 (its TLS module, OpenSSL) in the same run, alternating rounds:
//!
//! - full mutual-TLS handshakes, each followed by one MESSAGE relayed to
//!   the home pool and its 200: the relay's CPU per handshake (with its
//!   MESSAGE), from /proc, with ECDSA P-256 and RSA-2048 certificates;
//! - the same with session resumption (a client that keeps its TLS 1.3
//!   tickets / TLS 1.2 sessions): how many were resumed, and their cost;
//! - `openssl s_time` as an independent client (full handshakes, `-new`,
//!   and resumed ones, `-reuse`), no SIP;
//! - idle memory: `--idle N` mutual-TLS connections each send one OPTIONS,
//!   get their answer and stay open; the growth of the relay's Pss
//!   (/proc/PID/smaps_rollup, summed over Kamailio's processes) and RSS,
//!   per connection.
//!
//! The load generator runs on the same cores (its CPU is not counted).
//! Medians of the rounds are printed last.
//!
//! Run: `cargo bench --bench tls -- [--certs ecdsa,rsa] [--targets
//!       fedge,kamailio] [--rounds 3] [--secs 4] [--parallel 4] [--idle 1000]
//!       [--stime-secs 3] [--threads 1] [--resumption true] [--alt-bin PATH]
//!       [--steps full,res13,res12,stime,idle] [--rate 0]`
//!
//! `--rate N` paces the handshakes at N per second in all (the relay's idle
//! CPU then weighs on each handshake as it does in production); 0, the
//! default, lets each client go as fast as it can.
//!
//! `--alt-bin PATH` adds a third system, "fedge-alt": another fedge binary
//! (an earlier build, for a before/after in the same run).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fedge::sip::framing::{StreamDecoder, StreamItem};
use fedge::sip::parse::Limits;
use fedge::sip::transport::tls::{load_certs, load_key, load_roots};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use fedge_testkit::Pki;
use fedge_testkit::bench::{Relay, cpu_seconds, flags, home_responder};
use fedge_testkit::edge::fedge_bin;
use fedge_testkit::peers::{free_port, kamailio_modules};
use fedge_testkit::{fedge_ok, options_to_edge};

/// A relay under test, by the name the tables print (stopped when dropped,
/// by `Relay`).
struct Target {
    name: &'static str,
    relay: Relay,
}

impl Target {
    fn pids(&self) -> Vec<u32> {
        self.relay.pids()
    }
}

/// Waits (60 s at most: the machine may be busy) until `port` takes
/// connections; false when it never does or the child exited.
fn listening(child: &mut std::process::Child, port: u16) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::thread::sleep(Duration::from_millis(300));
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// fedge with partner.test enabled, room for `conns` connections from one
/// partner, and `fed_extra` in its `[federation]` section.
fn start_fedge(
    p: &Pki,
    home: SocketAddr,
    threads: usize,
    conns: usize,
    fed_extra: &str,
    alt: Option<&str>,
) -> Option<Target> {
    let fed = free_port(true);
    // The internal listener takes TCP and UDP on one port: a port free for
    // both (with "127.0.0.1:0" the UDP bind may find the port taken).
    let internal = free_port(true);
    // Each start its own configuration and database.
    let cfg = p.path().join(format!("fedge-tls-{fed}.toml"));
    let conns = conns.max(1024);
    std::fs::write(
        &cfg,
        fedge_testkit::edge::with_test_media(&format!(
            "[federation]\nlisten = \"127.0.0.1:{fed}\"\nfqdn = \"sip.fedge.test\"\nhome_domains = [\"fedge.test\"]\n\
             cert = \"{}\"\nkey = \"{}\"\ntrust = \"{}\"\nmax_connections = {conns}\nmax_connections_per_identity = {conns}\n\
             max_connections_per_source = {conns}\nmax_handshakes_per_source = 256\n{fed_extra}\n\
             [internal]\nlisten = \"127.0.0.1:{internal}\"\nnext_hop = \"sip:{home};transport=udp\"\n\
             [store]\nurl = \"sqlite://{}/fedge-tls-{fed}.db\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[public]\nlisten = \"127.0.0.1:0\"\n\
             [runtime]\nthreads = {threads}\n[log]\nlevel = \"warn\"\n[policy]\nrate = 1000000\nburst = 1000000\n",
            p.edge.cert.display(),
            p.edge.key.display(),
            p.ca_file.display(),
            p.path().display()
        )),
    )
    .unwrap();
    let cli = |args: &[&str]| match alt {
        None => {
            fedge_ok(&cfg, args);
        }
        Some(bin) => {
            let ok = Command::new(bin)
                .arg("--config")
                .arg(&cfg)
                .args(args)
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "{bin} {args:?}");
        }
    };
    cli(&[
        "partner",
        "add",
        "--domain",
        "partner.test",
        "--org",
        "Bench Partner",
        "--edge-fqdn",
        "sip.partner.test",
        "--state",
        "enabled",
        "--reason",
        "benchmark",
    ]);
    let bin = alt.map(std::path::PathBuf::from).unwrap_or_else(fedge_bin);
    // Its log, for when it does not start (overwritten by each start).
    let log = std::fs::File::create(std::env::temp_dir().join("fedge-bench-tls-fedge.log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut t = Target {
        name: if alt.is_some() { "fedge-alt" } else { "fedge" },
        relay: Relay {
            child,
            fed: SocketAddr::from(([127, 0, 0, 1], fed)),
            group: false,
            admin: None,
        },
    };
    listening(&mut t.relay.child, fed).then_some(t)
}

/// Kamailio doing the same job: a stateful relay of mutual-TLS requests to
/// the UDP home pool. Its TLS session cache (`modparam("tls",
/// "session_cache", 1)`) is left off: with Debian's Kamailio 5.6.3 and
/// OpenSSL 3.0 it corrupts shared memory within seconds ("freeing already
/// freed pointer ... tls_init.c") and the processes die. OpenSSL's own
/// stateless tickets stay on.
fn start_kamailio(p: &Pki, home: SocketAddr) -> Option<Target> {
    use std::os::unix::process::CommandExt;
    let fed = free_port(true);
    let mpath = kamailio_modules();
    let tls = p.path().join("kamailio-tls.cfg");
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
    let cfg = p.path().join("kamailio-tls-bench.cfg");
    std::fs::write(
        &cfg,
        format!(
            "#!KAMAILIO\ndebug=1\nlog_stderror=yes\nfork=yes\nchildren=2\ntcp_children=2\nauto_aliases=no\ndisable_sctp=yes\n\
             tcp_max_connections=4096\ntls_max_connections=4096\ntcp_connection_lifetime=3600\n\
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
    // Its log, for when it misbehaves (overwritten by each start).
    let log = std::fs::File::create(std::env::temp_dir().join("fedge-bench-tls-kamailio.log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let child = Command::new("kamailio")
        .arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-m", "256", "-M", "16", "-Y"])
        .arg(p.path())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("kamailio");
    let mut t = Target {
        name: "kamailio",
        relay: Relay {
            child,
            fed: SocketAddr::from(([127, 0, 0, 1], fed)),
            group: true,
            admin: None,
        },
    };
    listening(&mut t.relay.child, fed).then_some(t)
}

fn message(conn: u64, seq: u64) -> Vec<u8> {
    let body = "Bench message across the edge";
    format!(
        "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS sip.partner.test:5061;branch=z9hG4bK-h{conn}-{seq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@partner.test>;tag=h{conn}\r\nTo: <sip:bob@fedge.test>\r\n\
         Call-ID: h{conn}-{seq}@partner.test\r\nCSeq: {seq} MESSAGE\r\nContact: <sip:alice@partner.test;transport=tls>\r\n\
         User-Agent: UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)\r\n\
         Content-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The partner's client configuration: TLS 1.3 and 1.2 (or `versions`),
/// resuming when `resume` (rustls's in-memory session store).
fn client(p: &Pki, resume: bool, tls12_only: bool) -> Arc<rustls::ClientConfig> {
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(load_roots(&p.ca_file).unwrap())
    .with_client_auth_cert(
        load_certs(&p.partner.cert, "certificate").unwrap(),
        load_key(&p.partner.key).unwrap(),
    )
    .unwrap();
    if !resume {
        c.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(c)
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(cfg: &Arc<rustls::ClientConfig>, to: SocketAddr) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(to).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("sip.fedge.test").unwrap();
    tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, tcp)
        .await
}

/// Sends `req` and waits (bounded) for its final response's status.
async fn ask(s: &mut Tls, req: &[u8]) -> Option<u16> {
    s.write_all(req).await.ok()?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut dec = StreamDecoder::new(Limits::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        while let Ok(Some(item)) = dec.decode(&mut buf) {
            if let StreamItem::Message(m) = item
                && let Some(st) = m.status()
                && st >= 200
            {
                return Some(st);
            }
        }
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

struct Handshakes {
    done: u64,
    resumed: u64,
    cpu_ms: f64,
    per_s: f64,
}

/// Handshake + one MESSAGE + its 200, from `parallel` clients for `secs`.
async fn handshakes(
    t: &Target,
    cfg: Arc<rustls::ClientConfig>,
    secs: u64,
    parallel: usize,
    rate: u64,
) -> Handshakes {
    // One connection first, so that a resuming client has a ticket.
    if let Ok(mut s) = connect(&cfg, t.relay.fed).await {
        let _ = ask(&mut s, &message(999_999, 1)).await;
        let _ = s.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pids = t.pids();
    let cpu0 = cpu_seconds(&pids);
    let t0 = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..parallel as u64 {
        let (cfg, done, resumed, fed) = (cfg.clone(), done.clone(), resumed.clone(), t.relay.fed);
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            // Each client's share of a fixed total rate (0: as fast as it goes).
            let every = (rate > 0).then(|| Duration::from_secs_f64(parallel as f64 / rate as f64));
            let start = tokio::time::Instant::now()
                + Duration::from_secs_f64(w as f64 / rate.max(1) as f64);
            // Bounded in time and in count.
            while t0.elapsed() < Duration::from_secs(secs) && seq < 100_000 {
                if let Some(every) = every {
                    tokio::time::sleep_until(start + every * seq as u32).await;
                }
                seq += 1;
                let Ok(mut s) = connect(&cfg, fed).await else {
                    continue;
                };
                let kind = s.get_ref().1.handshake_kind();
                if ask(&mut s, &message(w, seq)).await == Some(200) {
                    done.fetch_add(1, Ordering::Relaxed);
                    if kind == Some(rustls::HandshakeKind::Resumed) {
                        resumed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let _ = s.shutdown().await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let el = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    // Let the relay finish closing the last connections before reading its CPU.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Handshakes {
        done: n,
        resumed: resumed.load(Ordering::Relaxed),
        cpu_ms: (cpu_seconds(&pids) - cpu0) * 1e3 / n.max(1) as f64,
        per_s: n as f64 / el,
    }
}

/// `openssl s_time` (full handshakes with `-new`, resumed with `-reuse`),
/// no SIP: connections made and the relay's CPU per connection.
fn s_time(t: &Target, p: &Pki, reuse: bool, secs: u64) -> (u64, f64) {
    let pids = t.pids();
    let cpu0 = cpu_seconds(&pids);
    let out = Command::new("openssl")
        .args(["s_time", "-connect", &t.relay.fed.to_string()])
        .arg("-cert")
        .arg(&p.partner.cert)
        .arg("-key")
        .arg(&p.partner.key)
        .arg("-CAfile")
        .arg(&p.ca_file)
        .arg(if reuse { "-reuse" } else { "-new" })
        .args(["-time", &secs.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("openssl is installed");
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_seconds(&pids) - cpu0;
    let text = String::from_utf8_lossy(&out.stdout);
    // "1234 connections in 3 real seconds, ..." (-reuse prints the
    // new-session line first, then the reused one: the last counts).
    let n = text
        .lines()
        .rev()
        .filter(|l| l.contains("connections in") && l.contains("real seconds"))
        .find_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    (n, cpu * 1e3 / n.max(1) as f64)
}

/// Pss and RSS in kB, summed over the processes.
fn memory_kb(pids: &[u32]) -> (u64, u64) {
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .map(|s| (field(&s, "Pss:"), field(&s, "Rss:")))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Opens `n` connections that each send one OPTIONS and stay idle; the
/// growth of Pss and RSS per connection, in bytes.
async fn idle(t: &Target, p: &Pki, n: usize) -> (f64, f64, usize) {
    let cfg = client(p, false, false);
    // Warm up: the first connections pay for the allocator's arenas.
    let mut warm = Vec::new();
    for i in 0..20 {
        if let Ok(mut s) = connect(&cfg, t.relay.fed).await {
            let _ = ask(&mut s, options_to_edge(900_000 + i).as_bytes()).await;
            warm.push(s);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = t.pids();
    let (pss0, rss0) = memory_kb(&pids);
    let mut held = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        if t0.elapsed() > Duration::from_secs(120) {
            break;
        }
        if let Ok(mut s) = connect(&cfg, t.relay.fed).await
            && ask(&mut s, options_to_edge(i as u32).as_bytes())
                .await
                .is_some()
        {
            held.push(s);
        }
    }
    // Settle (Kamailio's TCP readers take the connections over).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (pss1, rss1) = memory_kb(&t.pids());
    let k = held.len().max(1) as f64;
    let per = |a: u64, b: u64| (b as f64 - a as f64) * 1024.0 / k;
    let ok = held.len();
    for mut s in held.into_iter().chain(warm) {
        let _ = s.shutdown().await;
    }
    (per(pss0, pss1), per(rss0, rss1), ok)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let f = flags();
    let get = |k: &str, d: &str| f.get(k).cloned().unwrap_or_else(|| d.to_string());
    let certs: Vec<String> = get("certs", "ecdsa,rsa")
        .split(',')
        .map(str::to_string)
        .collect();
    let targets: Vec<String> = get("targets", "fedge,kamailio")
        .split(',')
        .map(str::to_string)
        .collect();
    let rounds: usize = get("rounds", "3").parse().unwrap_or(3);
    let secs: u64 = get("secs", "4").parse().unwrap_or(4);
    let parallel: usize = get("parallel", "4").parse().unwrap_or(4);
    // Handshakes per second in all (0: each client as fast as it can).
    let rate: u64 = get("rate", "0").parse().unwrap_or(0);
    let idle_n: usize = get("idle", "1000").parse().unwrap_or(1000);
    let stime_secs: u64 = get("stime-secs", "3").parse().unwrap_or(3);
    let threads: usize = get("threads", "1").parse().unwrap_or(1);
    let resumption = get("resumption", "true") == "true";
    // Which measures: full, res13, res12, stime, idle.
    let steps = get("steps", "full,res13,res12,stime,idle");
    let wanted: Vec<&str> = steps.split(',').collect();
    // `--alt-bin PATH` adds the target "fedge-alt": that fedge binary.
    let alt_bin = f.get("alt-bin").cloned();
    let mut targets = targets;
    if alt_bin.is_some() && !targets.iter().any(|t| t == "fedge-alt") {
        targets.push("fedge-alt".into());
    }
    let fed_extra = if resumption {
        "tls_resumption = true"
    } else {
        "tls_resumption = false"
    };
    let _ = rlimit::increase_nofile_limit(20_000);
    let stop = Arc::new(AtomicBool::new(false));
    let home = home_responder(stop.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "tls bench: rounds {rounds}, {secs} s per handshake step, {parallel} clients, rate {rate}/s (0: flat out), idle {idle_n}, \
         fedge {threads} runtime thread(s), fedge resumption {resumption}; load generator on the same cores"
    );
    // (cert, target, measure) -> values over rounds
    let mut results: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    let mut put = |c: &str, t: &str, m: &str, v: f64| {
        results
            .entry((c.to_string(), t.to_string(), m.to_string()))
            .or_default()
            .push(v);
    };
    println!(
        "{:>6} {:>5} {:>9} {:<34} {:>8} {:>8} {:>9} {:>12}",
        "certs", "round", "relay", "measure", "done", "resumed", "per s", "relay CPU"
    );
    for cert in &certs {
        let p = if cert == "rsa" {
            Pki::new_rsa()
        } else {
            Pki::new()
        };
        for round in 0..rounds {
            // Alternate which system goes first.
            let mut order: Vec<&String> = targets.iter().collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for target in order {
                // A fresh relay for each step: one step's leftovers (or a
                // crash) do not weigh on the next.
                let start = || match target.as_str() {
                    "kamailio" => start_kamailio(&p, home),
                    // Another fedge binary (an earlier build), which may
                    // know no resumption keys: its defaults.
                    "fedge-alt" => {
                        start_fedge(&p, home, threads, idle_n + 64, "", alt_bin.as_deref())
                    }
                    _ => start_fedge(&p, home, threads, idle_n + 64, fed_extra, None),
                };
                let steps: [(&str, &str, bool, bool); 3] = [
                    ("full", "full handshake + MESSAGE", false, false),
                    ("res13", "resumed (1.3) + MESSAGE", true, false),
                    ("res12", "resumed (1.2) + MESSAGE", true, true),
                ];
                for (key, what, resume, tls12) in steps {
                    if !wanted.contains(&key) {
                        continue;
                    }
                    let Some(t) = start() else {
                        println!("{cert:>6} {round:>5} {target:>9} did not start");
                        continue;
                    };
                    let h = rt.block_on(handshakes(
                        &t,
                        client(&p, resume, tls12),
                        secs,
                        parallel,
                        rate,
                    ));
                    println!(
                        "{:>6} {:>5} {:>9} {:<34} {:>8} {:>8} {:>9.0} {:>9.3} ms",
                        cert, round, t.name, what, h.done, h.resumed, h.per_s, h.cpu_ms
                    );
                    if h.done > 0 {
                        put(cert, t.name, what, h.cpu_ms);
                        if resume {
                            put(
                                cert,
                                t.name,
                                &format!("{what}: share resumed"),
                                h.resumed as f64 / h.done as f64,
                            );
                        }
                    }
                }
                for (key, what, reuse) in [
                    ("stime", "s_time -new (no SIP)", false),
                    ("stime", "s_time -reuse (no SIP)", true),
                ] {
                    if !wanted.contains(&key) || stime_secs == 0 {
                        continue;
                    }
                    let Some(t) = start() else {
                        println!("{cert:>6} {round:>5} {target:>9} did not start");
                        continue;
                    };
                    let (n, ms) = s_time(&t, &p, reuse, stime_secs);
                    println!(
                        "{:>6} {:>5} {:>9} {:<34} {:>8} {:>8} {:>9.0} {:>9.3} ms",
                        cert,
                        round,
                        t.name,
                        what,
                        n,
                        "-",
                        n as f64 / stime_secs as f64,
                        ms
                    );
                    if n > 0 {
                        put(cert, t.name, what, ms);
                    }
                }
                if wanted.contains(&"idle") && idle_n > 0 {
                    let Some(t) = start() else {
                        println!("{cert:>6} {round:>5} {target:>9} did not start");
                        continue;
                    };
                    let (pss, rss, ok) = rt.block_on(idle(&t, &p, idle_n));
                    println!(
                        "{:>6} {:>5} {:>9} {:<34} {:>8} {:>8} {:>9} {:>6.1} kB Pss {:>6.1} kB RSS per connection",
                        cert,
                        round,
                        t.name,
                        "idle connections (1 OPTIONS each)",
                        ok,
                        "-",
                        "-",
                        pss / 1000.0,
                        rss / 1000.0
                    );
                    if ok > 0 {
                        put(cert, t.name, "idle kB Pss per connection", pss / 1000.0);
                        put(cert, t.name, "idle kB RSS per connection", rss / 1000.0);
                    }
                }
            }
        }
    }
    println!(
        "\nmedians over {rounds} round(s) (CPU in ms per handshake; memory in kB per idle connection):"
    );
    let mut by: BTreeMap<(String, String), BTreeMap<String, f64>> = BTreeMap::new();
    for ((c, t, m), mut v) in results {
        by.entry((c, m)).or_default().insert(t, median(&mut v));
    }
    println!(
        "{:>6} {:<46} {:>10} {:>10} {:>10} {:>14}",
        "certs", "measure", "fedge", "fedge-alt", "kamailio", "kamailio/fedge"
    );
    for ((c, m), row) in by {
        let v = |t: &str| row.get(t).copied().unwrap_or(f64::NAN);
        let (fe, alt, ka) = (v("fedge"), v("fedge-alt"), v("kamailio"));
        println!(
            "{c:>6} {m:<46} {fe:>10.3} {alt:>10.3} {ka:>10.3} {:>14.2}",
            ka / fe
        );
    }
    stop.store(true, Ordering::Relaxed);
}
