//! `fedge media`: the running edge's media relay, through its admin
//! listener (the relay's sessions live in the edge process, not in the
//! database): list live sessions with their counters, start or stop
//! draining. Authenticates with a node token from the database, or
//! `FEDGE_TOKEN` (see `cli/notify.rs`).

use std::time::Duration;

use clap::Subcommand;
use fedge::config::Config;
use serde_json::Value;

use super::failure::Failure;

#[derive(Subcommand, Debug)]
pub enum MediaCmd {
    /// List the relay's live sessions: per stream, each side's relay port,
    /// packets, bytes, drops and seconds since its last packet.
    List {
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop taking new calls (existing ones finish); --off resumes.
    Drain {
        #[arg(long)]
        off: bool,
    },
}

/// One authenticated HTTP/1.1 exchange with the admin listener named in
/// `cfg`: a token from [`super::notify::admin_token`] (the database in
/// `cfg`), given back after the exchange. The body as JSON.
pub(crate) fn call(cfg: &Config, method: &str, path: &str) -> Result<Value, Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))?;
    let no_token = |e: fedge::store::StoreError| {
        Failure::runtime(format!(
            "cannot authenticate to the edge's admin listener: the database ({}) gave no token: {e}; \
             or set FEDGE_TOKEN to an operator's API token",
            fedge::store::redact_url(&cfg.store.url)
        ))
    };
    let (store, token) = rt.block_on(async {
        if std::env::var("FEDGE_TOKEN").is_ok_and(|t| !t.trim().is_empty()) {
            // No database needed.
            let t = std::env::var("FEDGE_TOKEN").unwrap_or_default();
            return Ok((None, super::notify::AdminToken::Given(t.trim().to_string())));
        }
        let store = fedge::store::Store::open(&cfg.store.url)
            .await
            .map_err(no_token)?;
        let token = super::notify::admin_token(&store).await.map_err(no_token)?;
        Ok::<_, Failure>((Some(store), token))
    })?;
    let target = super::notify::AdminTarget::of(cfg)?;
    let result = rt.block_on(exchange(&target, method, path, token.value()));
    if let Some(store) = store {
        rt.block_on(async {
            super::notify::give_back(&store, token).await;
            store.close().await;
        });
    }
    result
}

/// One HTTP/1.1 exchange with the admin listener; the body as JSON.
async fn exchange(
    target: &super::notify::AdminTarget,
    method: &str,
    path: &str,
    token: &str,
) -> Result<Value, Failure> {
    let addr = target.addr;
    let unreachable = |e: String| {
        Failure::runtime(format!(
            "cannot reach the edge's admin listener at {addr} (is `fedge serve` running with this configuration?): {e}"
        ))
    };
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        super::notify::admin_request(target, method, path, token),
    )
    .await
    .map_err(|_| unreachable("no answer within 10 s".into()))?
    .map_err(|e| unreachable(e.to_string()))?
    .ok_or_else(|| unreachable("connection refused".into()))?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| Failure::runtime(format!("{addr}: not an HTTP answer")))?;
    let v = serde_json::from_str::<Value>(body);
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        // The edge's JSON error when it wrote one, else its status line
        // (e.g. a 404 from an edge that predates this command).
        let why = v.as_ref().ok().and_then(|v| v["error"].as_str());
        return Err(Failure::runtime(why.unwrap_or(status).to_string()));
    }
    v.map_err(|e| Failure::runtime(format!("{addr}: not JSON: {e}")))
}

/// `fedge --server URL media ...`: the same through the admin API.
pub fn remote(cmd: MediaCmd, api: &super::remote::Remote) -> Result<(), Failure> {
    match cmd {
        MediaCmd::List { json } => print_list(&api.get("/api/v1/media")?, json),
        MediaCmd::Drain { off } => {
            let v = api.post(
                &format!("/api/v1/media/drain?on={}", !off),
                &serde_json::json!({}),
            )?;
            print_drain(&v["draining"], &v["live"]);
            Ok(())
        }
    }
}

/// What `fedge media drain` prints.
fn print_drain(draining: &Value, sessions: &Value) {
    println!(
        "media relay {}; {sessions} session(s) live",
        if *draining == true {
            "draining: no new calls"
        } else {
            "taking new calls"
        },
    );
}

pub fn run(cmd: MediaCmd, cfg: &Config) -> Result<(), Failure> {
    match cmd {
        MediaCmd::List { json } => print_list(&call(cfg, "GET", "/media")?, json),
        MediaCmd::Drain { off } => {
            let v = call(cfg, "POST", &format!("/media/drain?on={}", !off))?;
            print_drain(&v["draining"], &v["sessions"]);
            Ok(())
        }
    }
}

/// The relay's sessions as `fedge media list` prints them.
fn print_list(v: &Value, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let sessions = v["sessions"].as_array().cloned().unwrap_or_default();
    println!(
        "{} session(s), {} port pair(s) in use{}",
        sessions.len(),
        v["ports_in_use"],
        if v["draining"] == true {
            ", DRAINING"
        } else {
            ""
        }
    );
    for s in &sessions {
        println!(
            "{}  started {}  {}",
            s["id"].as_str().unwrap_or(""),
            s["started"].as_str().unwrap_or(""),
            if s["confirmed"] == true {
                "confirmed"
            } else {
                "offered"
            }
        );
        for (i, st) in s["streams"].as_array().into_iter().flatten().enumerate() {
            for (side, e) in ["A (partner)", "B (home)"]
                .iter()
                .zip(st.as_array().into_iter().flatten())
            {
                let idle = e["idle_secs"]
                    .as_u64()
                    .map_or("never".to_string(), |s| format!("{s}s ago"));
                println!(
                    "  stream {i} {side:<11} port {:<5} packets {:<8} bytes {:<10} drops {:<6} last packet {idle}",
                    e["port"], e["packets"], e["bytes"], e["drops"]
                );
            }
        }
    }
    Ok(())
}
