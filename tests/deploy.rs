//! deploy/: the systemd units pass `systemd-analyze verify` without a
//! word (their ExecStart pointed at the binary cargo built) and keep an
//! exposure level of "OK" in `systemd-analyze security --offline`; and
//! the binary speaks systemd's notify protocol: READY=1 once it serves,
//! WATCHDOG=1 when WATCHDOG_USEC asks, STOPPING=1 when SIGTERM starts the
//! drain (on a NOTIFY_SOCKET the test binds).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fedge_testkit::*;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The unit `name` from deploy/, its binary replaced by the built one, in `dir`.
fn staged(dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(deploy_dir().join(name)).unwrap();
    assert!(text.contains("/usr/local/bin/fedge"), "{name} runs fedge");
    let text = text.replace("/usr/local/bin/fedge", &fedge_bin().display().to_string());
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `systemd-analyze ARGS` with the staged units' directory as the
/// only unit path; (status, stdout, stderr).
fn analyze(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .expect("systemd-analyze is installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The overall exposure `systemd-analyze security` prints (0 best, 10 worst).
fn exposure(dir: &Path, unit: &str) -> f64 {
    let (_, out, err) = analyze(dir, &["security", "--offline=true", unit]);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level:\n{out}\n{err}"));
    line.split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn both_units_verify_cleanly_and_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    staged(dir.path(), "fedge.service");
    staged(dir.path(), "fedge@.service");
    for unit in ["fedge.service", "fedge@node-a.service"] {
        let (ok, out, err) = analyze(dir.path(), &["verify", unit]);
        assert!(ok, "{unit}: {out}{err}");
        assert!(
            err.trim().is_empty() && out.trim().is_empty(),
            "{unit}: systemd-analyze verify said:\n{out}{err}"
        );
        let level = exposure(dir.path(), unit);
        println!("{unit}: exposure {level}");
        assert!(level <= 2.0, "{unit}: exposure {level}");
    }
    // The checks see the units: a mistake in one is reported.
    let bad = dir.path().join("fedge.service");
    let text = std::fs::read_to_string(&bad).unwrap();
    std::fs::write(&bad, text.replace("KillMode=mixed", "KillMode=sometimes")).unwrap();
    let (_, out, err) = analyze(dir.path(), &["verify", "fedge.service"]);
    assert!(format!("{out}{err}").contains("kill mode"), "{out}{err}");

    let unit = std::fs::read_to_string(deploy_dir().join("fedge.service")).unwrap();
    for want in [
        "Type=notify",
        "KillSignal=SIGTERM",
        "ExecReload=/usr/local/bin/fedge --config /etc/fedge/fedge.toml reload",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "SystemCallFilter=@system-service",
        "User=fedge",
    ] {
        assert!(unit.contains(want), "fedge.service lacks {want}");
    }
    let template = std::fs::read_to_string(deploy_dir().join("fedge@.service")).unwrap();
    assert!(template.contains("--config /etc/fedge/%i.toml serve"));
    // The stop timeout outlasts the default drain deadline and the 5 s stop.
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim().parse().ok())
        .expect("TimeoutStopSec in seconds");
    let deadline = fedge::config::Config::default().drain.deadline.as_secs();
    assert!(
        stop > deadline + 5,
        "TimeoutStopSec={stop}, deadline {deadline}"
    );
}

/// Datagrams received on `sock` until one contains `want` (or 10 s).
fn until(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> bool {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.lines().any(|l| l == want);
            seen.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

#[test]
fn serve_notifies_ready_watchdog_and_stopping() {
    let pki = Pki::new();
    let config = pki.path().join("fedge.toml");
    std::fs::write(&config, test_config(&pki, "")).unwrap();
    let sock_path = pki.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = Command::new(fedge_bin())
        .args(["--config", &config.display().to_string(), "serve"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let ready = until(&sock, "READY=1", &mut seen);
    let watchdog = ready && until(&sock, "WATCHDOG=1", &mut seen);
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    let stopping = until(&sock, "STOPPING=1", &mut seen);
    let t0 = Instant::now();
    let exited = loop {
        match child.try_wait().unwrap() {
            Some(st) => break Some(st),
            None if t0.elapsed() > Duration::from_secs(15) => break None,
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(ready, "no READY=1: {seen:?}");
    assert!(watchdog, "no WATCHDOG=1 with WATCHDOG_USEC set: {seen:?}");
    assert!(stopped && stopping, "no STOPPING=1 after SIGTERM: {seen:?}");
    // With no call up, the drain ends at once and the node exits cleanly.
    assert!(
        exited.is_some_and(|st| st.success()),
        "exit after SIGTERM: {exited:?}"
    );
}
