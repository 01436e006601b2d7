//! `fedge drain [--wait]`: asks this node (its admin listener, like
//! `fedge media drain`; or `--server URL` through `/api/v1/node/drain`)
//! to drain: new INVITEs and SUBSCRIBEs get 503 with Retry-After, calls
//! in progress finish, and the node exits when none is left or at
//! `[drain] deadline`. Prints the progress; with `--wait`, follows it
//! until the node has exited.
//!
//! Owns the command's output and its waiting. The drain itself is the
//! node's (`server::drain`); this never stops a process itself.

use std::time::{Duration, Instant};

use clap::Args;
use fedge::config::Config;
use serde_json::Value;

use super::failure::Failure;

/// `fedge drain`'s options.
#[derive(Args, Debug)]
pub struct DrainArgs {
    /// Follow the drain until the node has exited (its admin listener no
    /// longer answers).
    #[arg(long)]
    pub wait: bool,
}

/// How often `--wait` asks.
const POLL: Duration = Duration::from_millis(500);
/// How long `--wait` waits beyond the drain's deadline (the node's own
/// stop takes up to 5 s more).
const GRACE: Duration = Duration::from_secs(15);

/// One line of progress.
fn line(v: &Value) -> String {
    format!(
        "node {} draining since {}: {} call(s), {} transaction(s), {} CVI call(s), {} media session(s) left; exits at the latest in {} s",
        v["node"].as_str().unwrap_or("?"),
        v["since"].as_str().unwrap_or("?"),
        v["calls"],
        v["transactions"],
        v["cvi_calls"],
        v["media_sessions"],
        v["deadline_secs"],
    )
}

/// Prints progress from `ask` until it fails (the node has gone), or
/// until the deadline it announced and [`GRACE`] have passed.
fn follow(first: &Value, mut ask: impl FnMut() -> Result<Value, Failure>) -> Result<(), Failure> {
    let node = first["node"].as_str().unwrap_or("?").to_string();
    let limit = Duration::from_secs(first["deadline_secs"].as_u64().unwrap_or(0)) + GRACE;
    let start = Instant::now();
    let mut last = line(first);
    while start.elapsed() < limit {
        std::thread::sleep(POLL);
        match ask() {
            Ok(v) => {
                let now = line(&v);
                if now != last {
                    println!("{now}");
                    last = now;
                }
            }
            Err(_) => {
                println!("node {node} has exited");
                return Ok(());
            }
        }
    }
    Err(Failure::runtime(format!(
        "node {node} still answers {} s after the drain's deadline",
        limit.as_secs()
    )))
}

/// On this host, through the admin listener the configuration names.
pub fn run(args: DrainArgs, cfg: &Config) -> Result<(), Failure> {
    let v = super::media::call(cfg, "POST", "/api/v1/node/drain")?;
    println!("{}", line(&v));
    if !args.wait {
        return Ok(());
    }
    follow(&v, || super::media::call(cfg, "GET", "/api/v1/node/drain"))
}

/// `fedge --server URL drain`: the same through the admin API.
pub fn remote(args: DrainArgs, api: &super::remote::Remote) -> Result<(), Failure> {
    let v = api.post("/api/v1/node/drain", &serde_json::json!({}))?;
    println!("{}", line(&v));
    if !args.wait {
        return Ok(());
    }
    follow(&v, || api.get("/api/v1/node/drain"))
}
