//! A private network namespace for tests that must use fixed ports (the
//! embedded defaults 5061, 5065, 8061, the README's 127.0.0.3 partner
//! edge): a holder process made with `unshare --net` keeps it alive with
//! its loopback up, and commands join it with `nsenter`, so the tests pass
//! while an edge runs on the same ports outside. Root, or user namespaces
//! for an ordinary user, are needed; the holder is stopped by its PID on
//! drop, and with it the namespace once the last process in it ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A network namespace held open by a child process.
pub struct NetNs {
    holder: Child,
    root: bool,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl NetNs {
    /// A new namespace with `lo` up (bounded: the holder lives 15 minutes at most).
    pub fn new() -> NetNs {
        let root = is_root();
        let mut cmd = Command::new("unshare");
        if !root {
            cmd.args(["--user", "--map-root-user"]);
        }
        let mut holder = cmd
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && echo up && exec sleep 900",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) runs");
        let mut line = String::new();
        let out = holder.stdout.take().expect("holder stdout");
        let _ = BufReader::new(out).read_line(&mut line);
        if line.trim() != "up" {
            let _ = holder.kill();
            let out = holder.wait_with_output().expect("holder output");
            panic!(
                "cannot make a network namespace (needs root or user namespaces, and iproute2): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        NetNs { holder, root }
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("--target").arg(self.holder.id().to_string());
        if !self.root {
            c.args(["--user", "--preserve-credentials"]);
        }
        c.arg("--net").arg("--").arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
