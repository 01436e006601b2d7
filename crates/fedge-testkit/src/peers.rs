//! Third-party SIP peers for the end-to-end tests: Kamailio as a partner
//! organisation's edge (mutual TLS towards fedge) and SIPp as users and as
//! the home pool. Each is started in its own process group and stopped by
//! that group's id; never by name.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::pki::CertFiles;
use crate::workspace_root;

/// A free UDP port on 127.0.0.1 (also free for TCP when `tcp_too`).
pub fn free_port(tcp_too: bool) -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if !tcp_too || std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A UDP port P on 127.0.0.1 such that P..P+3 are all free now: SIPp's
/// `-mp P` takes P and P+1 for audio and P+2 and P+3 for video.
pub fn free_media_ports() -> u16 {
    loop {
        let first = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port > u16::MAX - 3 {
            continue;
        }
        let rest: Vec<_> = (1..4)
            .map(|i| UdpSocket::bind(("127.0.0.1", port + i)))
            .collect();
        if rest.iter().all(Result::is_ok) {
            return port;
        }
    }
}

/// Renders a template (`@KEY@` placeholders, all of which must be filled)
/// into `out`.
pub fn render(template: &Path, out: &Path, values: &[(&str, String)]) {
    let mut s =
        std::fs::read_to_string(template).unwrap_or_else(|e| panic!("{}: {e}", template.display()));
    for (k, v) in values {
        s = s.replace(&format!("@{k}@"), v);
    }
    assert!(
        unfilled(&s).is_none(),
        "unfilled placeholder {:?} in {}",
        unfilled(&s),
        template.display()
    );
    std::fs::write(out, s).unwrap();
}

/// The first `@NAME@` placeholder left in `s`, if any.
fn unfilled(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(p) = s[i..].find('@') {
        let start = i + p + 1;
        let len = b[start..]
            .iter()
            .take_while(|c| c.is_ascii_uppercase() || **c == b'_')
            .count();
        if len > 0 && b.get(start + len) == Some(&b'@') {
            return Some(s[start..start + len].to_string());
        }
        i = start;
    }
    None
}

/// tests/peers: the third-party peers' configuration templates.
pub fn peers_dir() -> PathBuf {
    workspace_root().join("tests/peers")
}

fn sipp_dir() -> PathBuf {
    workspace_root().join("tests/sipp")
}

/// The directory of the installed Kamailio's modules (the one with TLS).
pub fn kamailio_modules() -> String {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("kamailio/modules"))
        .filter(|p| p.join("tls.so").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("Kamailio with its TLS module is not installed: run .ci/test, which installs kamailio and kamailio-tls-modules")
        .display()
        .to_string()
}

/// Stops `child`'s process group (TERM, then KILL after 3 s) and reaps it.
pub(crate) fn kill_group(child: &mut Child) {
    let pgid = child.id().to_string();
    let quiet = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    };
    quiet("-TERM");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    quiet("-KILL");
    let _ = child.wait();
}

/// A running Kamailio acting as a partner's edge.
pub struct Kamailio {
    child: Child,
    /// Where the partner's users (SIPp) send.
    pub udp: SocketAddr,
    /// Its TLS listener, where fedge connects.
    pub tls: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Kamailio {
    /// Starts Kamailio with `cert` (its edge certificate), trusting `ca`,
    /// relaying its users to `fedge` (TLS) and fedge's requests to `users` (UDP).
    pub fn start(
        dir: &Path,
        name: &str,
        fqdn: &str,
        cert: &CertFiles,
        ca: &Path,
        fedge: SocketAddr,
        users: SocketAddr,
    ) -> Kamailio {
        let udp_port = free_port(false);
        let tls_port = free_port(true);
        let kdir = dir.join(format!("kamailio-{name}"));
        std::fs::create_dir_all(&kdir).unwrap();
        let tls_cfg = kdir.join("tls.cfg");
        render(
            &peers_dir().join("kamailio-tls.cfg"),
            &tls_cfg,
            &[
                ("KEY", cert.key.display().to_string()),
                ("CERT", cert.cert.display().to_string()),
                ("CA", ca.display().to_string()),
            ],
        );
        let cfg = kdir.join("kamailio.cfg");
        render(
            &peers_dir().join("kamailio-partner.cfg"),
            &cfg,
            &[
                ("UDP_PORT", udp_port.to_string()),
                ("TLS_PORT", tls_port.to_string()),
                ("FQDN", fqdn.to_string()),
                ("MPATH", kamailio_modules()),
                ("TLS_CFG", tls_cfg.display().to_string()),
                ("FEDGE", fedge.to_string()),
                ("USERS", users.to_string()),
            ],
        );
        Kamailio::spawn(name, &kdir, &cfg, udp_port, tls_port)
    }

    /// Starts Kamailio from `cfg` (rendered by the caller into `kdir`),
    /// which listens on UDP `udp_port` and TLS `tls_port` of 127.0.0.1;
    /// returns once the TLS listener accepts.
    pub fn spawn(name: &str, kdir: &Path, cfg: &Path, udp_port: u16, tls_port: u16) -> Kamailio {
        let mut child = Command::new("kamailio")
            .arg("-f")
            .arg(cfg)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(kdir)
            .arg("-P")
            .arg(kdir.join("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("kamailio is installed (the test command installs it)");
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let tls = SocketAddr::from(([127, 0, 0, 1], tls_port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(tls).is_err() {
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                let l = log.lock().unwrap().join("\n");
                kill_group(&mut child);
                panic!("kamailio {name} did not start:\n{l}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Kamailio {
            child,
            udp: SocketAddr::from(([127, 0, 0, 1], udp_port)),
            tls,
            log,
        }
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// How a SIPp run ended.
#[derive(Debug)]
pub struct SippResult {
    pub code: Option<i32>,
    pub errors: String,
    pub messages: String,
}

impl SippResult {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// A SIPp process.
pub struct Sipp {
    child: Child,
    err_file: PathBuf,
    msg_file: PathBuf,
}

/// Renders a scenario template from tests/sipp with `@KEY@` values into `dir`.
pub fn scenario(dir: &Path, template: &str, values: &[(&str, &str)]) -> PathBuf {
    let out = dir.join(format!(
        "{}-{:08x}.xml",
        template.trim_end_matches(".xml"),
        rand::random::<u32>()
    ));
    let vals: Vec<(&str, String)> = values.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let mut s = std::fs::read_to_string(sipp_dir().join(template)).unwrap();
    for (k, v) in &vals {
        s = s.replace(&format!("@{k}@"), v);
    }
    // Placeholders the caller did not fill take their defaults.
    for (key, default) in [
        ("CHECKS", ""),
        ("REFERENCES", ""),
        ("STATUS", "200"),
        ("RESPONSE", "200 OK"),
        ("EXTRA", ""),
        ("USER", "[service]"),
        (
            "HEADERS",
            "\n      User-Agent: UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)",
        ),
        ("CT", "text/plain; charset=UTF-8"),
        ("BODY", "Hello across the edge, message [call_number]"),
    ] {
        s = s.replace(&format!("@{key}@"), default);
    }
    assert!(
        unfilled(&s).is_none(),
        "unfilled placeholder {:?} in {template}",
        unfilled(&s)
    );
    std::fs::write(&out, s).unwrap();
    out
}

impl Sipp {
    /// Starts SIPp on 127.0.0.1:`port` with `scenario`; `remote` for a UAC.
    pub fn spawn(
        dir: &Path,
        scenario: &Path,
        port: u16,
        remote: Option<SocketAddr>,
        args: &[&str],
    ) -> Sipp {
        let tag = format!("{:08x}", rand::random::<u32>());
        let err_file = dir.join(format!("sipp-{tag}.err"));
        let msg_file = dir.join(format!("sipp-{tag}.msg"));
        let mut cmd = Command::new("sipp");
        if let Some(r) = remote {
            cmd.arg(r.to_string());
        }
        cmd.arg("-sf")
            .arg(scenario)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "30s",
                "-timeout_error",
            ])
            .args(["-trace_err", "-error_file"])
            .arg(&err_file)
            .args(["-trace_msg", "-message_file"])
            .arg(&msg_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = cmd
            .spawn()
            .expect("sipp is installed (the test command installs sip-tester)");
        Sipp {
            child,
            err_file,
            msg_file,
        }
    }

    /// SIPp's result if it has already exited.
    pub fn exited(&mut self) -> Option<SippResult> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(SippResult {
                code: st.code(),
                errors: std::fs::read_to_string(&self.err_file).unwrap_or_default(),
                messages: std::fs::read_to_string(&self.msg_file).unwrap_or_default(),
            }),
            _ => None,
        }
    }

    /// Waits for SIPp to finish (killing it after `limit`).
    pub fn wait(mut self, limit: Duration) -> SippResult {
        let deadline = Instant::now() + limit;
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st.code(),
                _ if Instant::now() > deadline => {
                    kill_group(&mut self.child);
                    break None;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        SippResult {
            code,
            errors: std::fs::read_to_string(&self.err_file).unwrap_or_default(),
            messages: std::fs::read_to_string(&self.msg_file).unwrap_or_default(),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_group(&mut self.child);
        }
    }
}
