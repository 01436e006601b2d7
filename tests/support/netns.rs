//! A private network namespace for tests that must use fixed ports (the
//! embedded defaults 5061, 5065, 8061, the README's 127.0.0.3 partner
//! edge): a holder process made with `unshare --net` keeps it alive with
//! its loopback up, and commands join it with `nsenter`, so the tests pass
//! while an edge runs on the same ports outside. As root it is made
//! directly; otherwise in a user namespace, or else with `sudo -n` (commands
//! then run with the caller's uid and gid). The holder lives 15 minutes at
//! most and is stopped by its PID on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// How the namespace was made, and so how commands join it.
#[derive(Clone, Copy)]
enum Mode {
    Root,
    UserNs,
    Sudo { uid: u32, gid: u32 },
}

/// A network namespace held open by a child process.
pub struct NetNs {
    holder: Child,
    /// The holder's PID inside (`sh`, then `sleep`), which nsenter targets.
    pid: u32,
    mode: Mode,
}

/// The real uid and gid of this process (from /proc).
fn ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    (field("Uid:"), field("Gid:"))
}

/// Starts `prefix unshare ARGS --net` with the holder script; its inner PID
/// once `lo` is up, or why not.
fn holder(prefix: &[&str]) -> Result<(Child, u32), String> {
    let (program, rest) = prefix.split_first().ok_or("no program")?;
    let mut child = Command::new(program)
        .args(rest)
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && echo $$ && exec sleep 900",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{prefix:?}: {e}"))?;
    let mut line = String::new();
    let out = child.stdout.take().ok_or("no stdout")?;
    let _ = BufReader::new(out).read_line(&mut line);
    match line.trim().parse::<u32>() {
        Ok(pid) => Ok((child, pid)),
        Err(_) => {
            let _ = child.kill();
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            Err(format!(
                "{prefix:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl NetNs {
    /// A new namespace with `lo` up.
    pub fn new() -> NetNs {
        let (uid, gid) = ids();
        let tries: Vec<(Mode, Vec<&str>)> = if uid == 0 {
            vec![(Mode::Root, vec!["unshare"])]
        } else {
            vec![
                (Mode::UserNs, vec!["unshare", "--user", "--map-root-user"]),
                (Mode::Sudo { uid, gid }, vec!["sudo", "-n", "unshare"]),
            ]
        };
        let mut why = Vec::new();
        for (mode, prefix) in tries {
            match holder(&prefix) {
                Ok((holder, pid)) => return NetNs { holder, pid, mode },
                Err(e) => why.push(e),
            }
        }
        panic!(
            "cannot make a network namespace (needs root, user namespaces or sudo, and iproute2): {}",
            why.join("; ")
        );
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let target = self.pid.to_string();
        let mut c = match self.mode {
            Mode::Root => Command::new("nsenter"),
            Mode::UserNs => {
                let mut c = Command::new("nsenter");
                c.args(["--user", "--preserve-credentials"]);
                c
            }
            Mode::Sudo { uid, gid } => {
                let mut c = Command::new("sudo");
                c.args(["-n", "--preserve-env", "nsenter"]);
                c.arg(format!("--setuid={uid}"))
                    .arg(format!("--setgid={gid}"));
                c
            }
        };
        c.arg("--target")
            .arg(target)
            .arg("--net")
            .arg("--")
            .arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Mode::Sudo { .. } = self.mode {
            let _ = Command::new("sudo")
                .args(["-n", "kill", &self.pid.to_string()])
                .status();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
