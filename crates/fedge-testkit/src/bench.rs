//! Pieces the benchmarks add to the lab: starting the real `fedge` binary
//! (the tests' PKI and CLI) with a partner enabled and fixed ports, reading
//! a process's CPU time and RSS from /proc, percentiles, the benches'
//! command-line flags, and a UDP home pool that answers 200. It never
//! asserts on figures: it measures.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedge::sip::framing::{DatagramItem, parse_datagram};
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;

use crate::edge::{fedge_bin, fedge_ok};
use crate::peers::free_port;
use crate::pki::Pki;

/// CPU seconds (user + system, own and reaped children's) of a set of processes, from /proc.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let tck: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|s| {
            // Fields after the ")" that ends the command name.
            let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime, stime, and the reaped children's cutime, cstime (a
            // Kamailio child that exits hands its CPU to its parent).
            (11..=14)
                .map(|i| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
                .sum::<f64>()
                / tck
        })
        .sum()
}

pub fn rss_mib(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .sum::<f64>()
        / 1024.0
}

/// The relay's processes: the child and, for Kamailio, its process group.
pub fn relay_pids(child: &Child, group: bool) -> Vec<u32> {
    if !group {
        return vec![child.id()];
    }
    let pgid = child.id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|x| x.1.split_whitespace().nth(2).map(str::to_string))
                })
                .flatten()
                .is_some_and(|g| g == pgid)
        })
        .collect()
}

pub struct Relay {
    pub child: Child,
    pub fed: SocketAddr,
    pub group: bool,
    /// fedge's admin listener (for its transaction counts).
    pub admin: Option<SocketAddr>,
}

impl Relay {
    pub fn pids(&self) -> Vec<u32> {
        relay_pids(&self.child, self.group)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", self.child.id())])
                .status();
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Starts `fedge` with partner.test enabled, `home` as its next hop, and
/// `extra` appended to its configuration (written as `fedge.toml` in the
/// PKI's directory).
pub fn start_fedge(p: &Pki, home: SocketAddr, threads: usize, extra: &str) -> Relay {
    start_fedge_with(p, home, threads, "", extra)
}

/// As [`start_fedge`], with `federation` added to its `[federation]`
/// section (e.g. a larger `max_transactions_per_source` for a bench that
/// sets up more calls from one partner than the default allows at once).
pub fn start_fedge_with(
    p: &Pki,
    home: SocketAddr,
    threads: usize,
    federation: &str,
    extra: &str,
) -> Relay {
    let fed = free_port(true);
    let admin = free_port(true);
    let cfg = p.path().join("fedge.toml");
    std::fs::write(
        &cfg,
        crate::edge::with_test_media(&format!(
            "[federation]\nlisten = \"127.0.0.1:{fed}\"\nfqdn = \"sip.fedge.test\"\nhome_domains = [\"fedge.test\"]\n\
             cert = \"{}\"\nkey = \"{}\"\ntrust = \"{}\"\n{federation}[internal]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"sip:{home};transport=udp\"\n\
             [store]\nurl = \"sqlite://{}/fedge.db\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[public]\nlisten = \"127.0.0.1:0\"\n[runtime]\nthreads = {threads}\n[log]\nlevel = \"warn\"\n\
             [policy]\nrate = 1000000\nburst = 1000000\n{extra}",
            p.edge.cert.display(),
            p.edge.key.display(),
            p.ca_file.display(),
            p.path().display()
        )),
    )
    .unwrap();
    fedge_ok(
        &cfg,
        &[
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
        ],
    );
    let child = Command::new(fedge_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_port(fed);
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    // The admin listener wants an account (its token goes with crate::admin::http).
    let token = crate::admin::operator_token(
        &format!("sqlite://{}/fedge.db", p.path().display()),
        crate::edge::TESTKIT_OPERATOR,
    );
    crate::admin::register_token(admin, &token);
    Relay {
        child,
        fed: SocketAddr::from(([127, 0, 0, 1], fed)),
        group: false,
        admin: Some(admin),
    }
}

pub fn wait_port(port: u16) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "relay did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
}

pub fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

/// The `--name value` pairs on the command line (cargo's own `--bench`
/// flag, which has no value, is skipped).
pub fn flags() -> std::collections::HashMap<String, String> {
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::collections::HashMap::new();
    let mut i = 0;
    while i < v.len() {
        match (v[i].strip_prefix("--"), v.get(i + 1)) {
            (Some(name), Some(value)) if name != "bench" && !value.starts_with("--") => {
                out.insert(name.to_string(), value.clone());
                i += 2;
            }
            _ => i += 1,
        }
    }
    out
}

/// A comma-separated list of numbers (`100,200,400`).
pub fn numbers(v: &str) -> Vec<usize> {
    v.split(',').filter_map(|c| c.trim().parse().ok()).collect()
}

/// Home pool for the benches: answers every request with 200 from a
/// thread of its own (to the Via's port unless rport was asked), until
/// `stop`.
pub fn home_responder(stop: Arc<AtomicBool>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut b = vec![0u8; 65535];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut b) else {
                continue;
            };
            if let DatagramItem::Message(m) =
                parse_datagram(Bytes::copy_from_slice(&b[..n]), &Limits::default())
                && m.is_request()
            {
                let r = ResponseBuilder::new(&m, 200).to_tag("home").build();
                let target = match m.top_via() {
                    Some(v) if v.rport().is_none() => {
                        SocketAddr::new(from.ip(), v.port.unwrap_or(5060))
                    }
                    _ => from,
                };
                let _ = sock.send_to(&r, target);
            }
        }
    });
    addr
}
