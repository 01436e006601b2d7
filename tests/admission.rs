//! Connection admission on the federation listener of the real binary,
//! under attack from several loopback sources (127.0.0.2 to 127.0.0.110):
//! thousands of idle TCP connections, 500 TLS ClientHellos (captured from
//! openssl s_client) trickled a byte per second, and a loop of connections
//! closed mid-handshake; meanwhile two enabled partners (Kamailio as each
//! partner's edge, SIPp as users and home pool) exchange MESSAGEs and
//! calls, every one answered. Also: an identity at its connection cap
//! cannot take another partner's room. Every load loop is bounded in count
//! and time.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use fedge::pki::LeafSpec;
use fedge_testkit::lab::{LIMIT, Lab};
use fedge_testkit::peers::{Sipp, SippResult, scenario};
use fedge_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The lab of tests/policy_peers.rs with `federation` keys added to the
/// edge's [federation] section: partner.test enabled behind Kamailio.
fn admission_lab(federation: &str) -> Lab {
    Lab::with_config(
        "t1 = \"100ms\"",
        |c| {
            c.replace(
                "handshake_timeout = \"2s\"\n",
                &format!("handshake_timeout = \"3s\"\n{federation}"),
            )
        },
        Some("enabled"),
    )
}

/// Asserts a SIPp run succeeded, with the end of the edge's log if not.
fn ok(lab: &Lab, what: &str, r: &SippResult) {
    if !r.ok() {
        let logs = lab.edge.logs();
        let tail = logs[logs.len().saturating_sub(150)..].join("\n");
        panic!(
            "{what}: SIPp exit {:?}\nerrors:\n{}\nfedge (last lines):\n{tail}\nkamailio:\n{}",
            r.code,
            r.errors,
            lab.kam.logs()
        );
    }
}

/// A real TLS ClientHello: the first record openssl s_client sends.
fn client_hello() -> Vec<u8> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-servername"])
        .arg(EDGE_FQDN)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is installed (the test command installs it)");
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(head[0], 0x16, "a TLS handshake record");
    assert_eq!(body[0], 0x01, "a ClientHello");
    let mut hello = head.to_vec();
    hello.extend_from_slice(&body);
    hello
}

/// The resident set of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What the attackers saw.
#[derive(Default, Debug)]
struct Stats {
    idle_attempts: AtomicU64,
    idle_opened: AtomicU64,
    idle_closed_by_edge: AtomicU64,
    trickle_opened: AtomicU64,
    /// Trickled connections the edge closed before the ClientHello was all sent.
    trickle_cut: AtomicU64,
    /// Trickled connections the edge answered (it must not: the hello is never whole).
    trickle_answered: AtomicU64,
    trickle_bytes: AtomicU64,
    churned: AtomicU64,
    rss_max_kib: AtomicU64,
    rss_samples: AtomicU64,
}

/// Where the attack comes from and what it sends.
#[derive(Clone)]
struct Target {
    edge: SocketAddr,
    hello: Arc<Vec<u8>>,
    stop: CancellationToken,
    stats: Arc<Stats>,
}

impl Target {
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((src, 0)))?;
    tokio::time::timeout(Duration::from_secs(3), s.connect(to))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// One idle connection from `src`, opened again 3 s after the edge closes it.
async fn idle_slot(t: Target, src: Ipv4Addr, start: Duration) {
    if !t.pause(start).await {
        return;
    }
    while !t.stop.is_cancelled() {
        t.stats.idle_attempts.fetch_add(1, Relaxed);
        if let Ok(mut s) = connect_from(src, t.edge).await {
            t.stats.idle_opened.fetch_add(1, Relaxed);
            let mut b = [0u8; 64];
            tokio::select! {
                _ = t.stop.cancelled() => return,
                r = s.read(&mut b) => {
                    if matches!(r, Ok(0) | Err(_)) {
                        t.stats.idle_closed_by_edge.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        if !t.pause(Duration::from_secs(3)).await {
            return;
        }
    }
}

/// A ClientHello sent one byte per second from `src`, again and again.
async fn trickle_slot(t: Target, src: Ipv4Addr, start: Duration) {
    if !t.pause(start).await {
        return;
    }
    while !t.stop.is_cancelled() {
        let Ok(s) = connect_from(src, t.edge).await else {
            if !t.pause(Duration::from_secs(1)).await {
                return;
            }
            continue;
        };
        t.stats.trickle_opened.fetch_add(1, Relaxed);
        let (mut rd, mut wr) = s.into_split();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut sent = 0;
        let mut b = [0u8; 64];
        loop {
            tokio::select! {
                _ = t.stop.cancelled() => return,
                r = rd.read(&mut b) => {
                    match r {
                        Ok(0) | Err(_) if sent < t.hello.len() => {
                            t.stats.trickle_cut.fetch_add(1, Relaxed);
                        }
                        Ok(0) | Err(_) => {}
                        Ok(_) => {
                            t.stats.trickle_answered.fetch_add(1, Relaxed);
                        }
                    }
                    break;
                }
                _ = tick.tick(), if sent < t.hello.len() => {
                    if wr.write_all(&t.hello[sent..sent + 1]).await.is_err() {
                        t.stats.trickle_cut.fetch_add(1, Relaxed);
                        break;
                    }
                    sent += 1;
                    t.stats.trickle_bytes.fetch_add(1, Relaxed);
                }
            }
        }
        if !t.pause(Duration::from_millis(500)).await {
            return;
        }
    }
}

/// Connections closed mid-handshake, at most 20 a second and 1,000 in all:
/// half a ClientHello then a reset, or a whole one, the start of the
/// answer, then a reset.
async fn churn(t: Target, src: Ipv4Addr) {
    for n in 0..1000u32 {
        if t.stop.is_cancelled() {
            return;
        }
        if let Ok(mut s) = connect_from(src, t.edge).await {
            if n % 2 == 0 {
                let _ = s.write_all(&t.hello[..t.hello.len() / 2]).await;
            } else {
                let _ = s.write_all(&t.hello).await;
                let mut b = [0u8; 16];
                let _ = tokio::time::timeout(Duration::from_secs(1), s.read(&mut b)).await;
            }
            let _ = s.set_zero_linger();
            drop(s);
            t.stats.churned.fetch_add(1, Relaxed);
        }
        if !t.pause(Duration::from_millis(50)).await {
            return;
        }
    }
}

/// Samples the edge's resident set every 250 ms.
async fn watch_rss(t: Target, pid: u32) {
    loop {
        let kib = rss_kib(pid);
        t.stats.rss_max_kib.fetch_max(kib, Relaxed);
        t.stats.rss_samples.fetch_add(1, Relaxed);
        if !t.pause(Duration::from_millis(250)).await {
            return;
        }
    }
}

/// The attack, on its own runtime in its own thread until `stop`.
struct Attack {
    stop: CancellationToken,
    stats: Arc<Stats>,
    thread: std::thread::JoinHandle<()>,
}

impl Attack {
    fn start(edge: SocketAddr, pid: u32, idle: usize, trickle: usize) -> Attack {
        let t = Target {
            edge,
            hello: Arc::new(client_hello()),
            stop: CancellationToken::new(),
            stats: Arc::new(Stats::default()),
        };
        let (stop, stats) = (t.stop.clone(), t.stats.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut set = JoinSet::new();
                set.spawn(watch_rss(t.clone(), pid));
                // Idle connections from 127.0.0.2-9, started over about a second.
                for i in 0..idle {
                    let src = Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8);
                    let start = Duration::from_micros((i as u64 * 1_000_000) / idle as u64);
                    set.spawn(idle_slot(t.clone(), src, start));
                }
                // Trickled hellos from 127.0.0.10-109, 5 from each: fewer
                // pending per source than the idle sources hold, so the
                // budget sheds those and the trickles meet their deadline.
                for j in 0..trickle {
                    let src = Ipv4Addr::new(127, 0, 0, 10 + (j % 100) as u8);
                    let start = Duration::from_millis(j as u64 * 2);
                    set.spawn(trickle_slot(t.clone(), src, start));
                }
                set.spawn(churn(t.clone(), Ipv4Addr::new(127, 0, 0, 110)));
                t.stop.cancelled().await;
                let all = async { while set.join_next().await.is_some() {} };
                if tokio::time::timeout(Duration::from_secs(10), all)
                    .await
                    .is_err()
                {
                    set.abort_all();
                }
            });
            rt.shutdown_timeout(Duration::from_secs(5));
        });
        Attack {
            stop,
            stats,
            thread,
        }
    }

    /// Waits (at most 30 s) until every idle slot has tried once and every
    /// trickle has started.
    fn wait_full_strength(&self, idle: usize, trickle: usize) {
        let t0 = Instant::now();
        while self.stats.idle_attempts.load(Relaxed) < idle as u64
            || self.stats.trickle_opened.load(Relaxed) < trickle as u64
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the attack never reached full strength: {:?}",
                self.stats
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(self) -> Arc<Stats> {
        self.stop.cancel();
        let _ = self.thread.join();
        self.stats
    }
}

/// Raises this process's open-files limit; returns how many idle
/// connections it can open (5,000 when the limit allows).
fn idle_budget() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let spare = usize::try_from(limit.saturating_sub(1500)).unwrap_or(usize::MAX);
    spare.min(5000)
}

#[test]
fn partners_get_every_answer_while_several_hosts_flood_the_handshakes() {
    let idle = idle_budget();
    let trickle = 500;
    assert!(
        idle >= 1000,
        "the open-files limit allows only {idle} idle connections"
    );
    let mut lab = admission_lab("max_handshakes = 640\nmax_handshakes_per_source = 32\n");
    let other = lab.other_partner();
    let rss_before = rss_kib(lab.edge.pid());

    let attack = Attack::start(lab.edge.federation, lab.edge.pid(), idle, trickle);
    attack.wait_full_strength(idle, trickle);
    // The handshake budget is full and the busiest sources are being shed.
    assert!(
        lab.edge
            .wait_log(
                &["connection shed", "\"reason\":\"handshake_budget\""],
                Duration::from_secs(10)
            )
            .is_some(),
        "the handshake budget never filled: {:?}",
        attack.stats
    );

    // Neither partner's edge has a connection yet: both connect now, in
    // the middle of the attack. MESSAGEs first, every one answered 200.
    let msg = || scenario(lab.dir(), "message_uac.xml", &[]);
    let home = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "message_uas.xml", &[]),
        lab.home,
        None,
        &["-m", "40"],
    );
    let a = lab.spawn_uac(
        lab.kam.udp,
        &msg(),
        ("bob", "fedge.test"),
        "partner.test",
        &["-m", "20", "-r", "10"],
    );
    let b = lab.spawn_uac(
        other.udp,
        &msg(),
        ("carol", "fedge.test"),
        "other.test",
        &["-m", "20", "-r", "10"],
    );
    ok(&lab, "partner.test's MESSAGEs", &a.wait(LIMIT));
    ok(&lab, "other.test's MESSAGEs", &b.wait(LIMIT));
    ok(&lab, "home pool, 40 MESSAGEs", &home.wait(LIMIT));

    // Then calls: INVITE, ACK, INFO, BYE, every request answered.
    let refs = [("REFERENCES", "<Reference variables=\"remote,local\"/>")];
    let home = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "invite_uas.xml", &refs),
        lab.home,
        None,
        &["-m", "10"],
    );
    let call = || scenario(lab.dir(), "invite_uac.xml", &[]);
    let a = lab.spawn_uac(
        lab.kam.udp,
        &call(),
        ("bob", "fedge.test"),
        "partner.test",
        &["-m", "5", "-r", "2"],
    );
    let b = lab.spawn_uac(
        other.udp,
        &call(),
        ("carol", "fedge.test"),
        "other.test",
        &["-m", "5", "-r", "2"],
    );
    ok(&lab, "partner.test's calls", &a.wait(LIMIT));
    ok(&lab, "other.test's calls", &b.wait(LIMIT));
    ok(&lab, "home pool, 10 calls", &home.wait(LIMIT));

    let stats = attack.stop();
    let rss_after = rss_kib(lab.edge.pid());
    eprintln!(
        "admission attack: {idle} idle slots, {trickle} trickled hellos; stats {stats:?}; \
         edge RSS before {rss_before} KiB, max during {} KiB, after {rss_after} KiB",
        stats.rss_max_kib.load(Relaxed)
    );

    // What the attackers saw: idle connections closed by the edge, every
    // trickled hello cut before it was whole and never answered.
    assert!(
        stats.idle_opened.load(Relaxed) >= idle as u64 / 2,
        "{stats:?}"
    );
    assert!(stats.idle_closed_by_edge.load(Relaxed) > 0, "{stats:?}");
    assert!(stats.trickle_cut.load(Relaxed) > 0, "{stats:?}");
    assert_eq!(stats.trickle_answered.load(Relaxed), 0, "{stats:?}");
    assert!(stats.churned.load(Relaxed) > 0, "{stats:?}");
    assert!(stats.rss_samples.load(Relaxed) > 0);

    // What the log says: what was shed, why, from where, with counts.
    let logs = lab.edge.logs();
    let shed: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("connection shed") || l.contains("handshake_deadline"))
        .collect();
    for (reason, what) in [
        (
            "source_cap",
            "connection shed: the source has its most pending",
        ),
        (
            "handshake_budget",
            "the busiest source's oldest pending handshake",
        ),
        ("handshake_deadline", "TLS handshake refused: timed out"),
    ] {
        let line = shed
            .iter()
            .find(|l| l.contains(&format!("\"reason\":\"{reason}\"")))
            .unwrap_or_else(|| panic!("no {reason} line in the log"));
        eprintln!("{line}");
        assert!(line.contains(what), "{line}");
        assert!(line.contains("\"source_pending\":"), "{line}");
        assert!(line.contains("\"pending\":"), "{line}");
        assert!(line.contains("\"limit\":"), "{line}");
    }
    // Only attacking sources were shed: never the partners' (127.0.0.1).
    for l in &shed {
        assert!(
            !l.contains("\"source\":\"127.0.0.1\""),
            "a partner was shed: {l}"
        );
    }
    eprintln!(
        "log lines about shedding: {}; the open-files line: {:?}",
        shed.len(),
        logs.iter().find(|l| l.contains("open-files limit"))
    );
    // The flood did not flood the log: lines are per source and reason per
    // second, with the rest counted.
    assert!(
        shed.iter().any(|l| l.contains("(repeated)")),
        "no summary line"
    );
    lab.edge.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_at_its_cap_cannot_take_another_partners_room() {
    let mut lab = admission_lab("max_connections_per_identity = 2\n");
    let third = lab.pki.leaf("third", &LeafSpec::new("sip.third.test", 30));
    let fed = lab.edge.federation;
    let ping = async |c: &mut SipTlsClient| {
        let _ = c.send(b"\r\n\r\n").await;
        c.recv(Duration::from_secs(5)).await
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = tls_connect(fed, &lab.pki, &third).await.unwrap();
        assert!(matches!(ping(&mut c).await, Reply::Pong));
        held.push(c);
    }
    // A third connection of the same identity is closed after its handshake.
    let mut c = tls_connect(fed, &lab.pki, &third).await.unwrap();
    let r = ping(&mut c).await;
    assert!(matches!(r, Reply::Closed), "{r:?}");
    let line = lab
        .edge
        .wait_log(
            &["\"reason\":\"identity_cap\"", "sip.third.test"],
            Duration::from_secs(5),
        )
        .expect("the refusal is logged");
    assert!(
        line.contains("the identity holds its most connections") && line.contains("\"limit\":2"),
        "{line}"
    );
    // Another partner's edge still gets in: its MESSAGE is delivered.
    lab.message_delivered(
        "bob",
        "partner.test's IM while sip.third.test is at its cap",
    );
    // A place given back is a place again.
    drop(held.pop());
    let t0 = Instant::now();
    loop {
        let mut c = tls_connect(fed, &lab.pki, &third).await.unwrap();
        if matches!(ping(&mut c).await, Reply::Pong) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the freed place was never given back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lab.edge.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_showing_many_certificates_cannot_take_every_slot() {
    // Issue 14: a cap per source address on authenticated connections,
    // apart from the cap per certificate identity.
    let mut lab = admission_lab("max_connections_per_source = 2\n");
    let third = lab.pki.leaf("third", &LeafSpec::new("sip.third.test", 30));
    let fourth = lab
        .pki
        .leaf("fourth", &LeafSpec::new("sip.fourth.test", 30));
    let fed = lab.edge.federation;
    let host = Some(std::net::IpAddr::from([127, 0, 0, 9]));
    let ping = async |c: &mut SipTlsClient| {
        let _ = c.send(b"\r\n\r\n").await;
        c.recv(Duration::from_secs(5)).await
    };
    // Two identities from one host: both in (each under its own cap).
    let mut held = Vec::new();
    for who in [&third, &fourth] {
        let mut c = tls_connect_from(fed, &lab.pki, who, host).await.unwrap();
        assert!(matches!(ping(&mut c).await, Reply::Pong));
        held.push(c);
    }
    // A third connection from that host is closed, whichever certificate
    // it shows.
    let mut c = tls_connect_from(fed, &lab.pki, &fourth, host)
        .await
        .unwrap();
    let r = ping(&mut c).await;
    assert!(matches!(r, Reply::Closed), "{r:?}");
    let line = lab
        .edge
        .wait_log(
            &["\"reason\":\"source_connection_cap\"", "127.0.0.9"],
            Duration::from_secs(5),
        )
        .expect("the refusal is logged");
    assert!(line.contains("\"limit\":2"), "{line}");
    // The same identity from another host still gets in, and the partner's
    // MESSAGE is delivered.
    let other = Some(std::net::IpAddr::from([127, 0, 0, 10]));
    let mut c = tls_connect_from(fed, &lab.pki, &fourth, other)
        .await
        .unwrap();
    assert!(matches!(ping(&mut c).await, Reply::Pong));
    lab.message_delivered("bob", "partner.test's IM while 127.0.0.9 is at its cap");
    drop(held);
    lab.edge.assert_healthy();
}
