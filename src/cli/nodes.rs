//! `fedge nodes` and `fedge nodes forget NAME`: the nodes sharing this
//! edge's database, from the node table their heartbeats write (or through
//! a node's API with --server).
//!
//! Owns the table's and the JSON's layout and the exit codes (a live node
//! refused to forget: 2). It never writes a heartbeat; what a row means is
//! `fedge::federation::cluster`'s.

use clap::Subcommand;
use fedge::config::Config;
use fedge::federation::cluster::{ForgetError, NodeView, forget, node_views};

use super::common::with_store;
use super::failure::Failure;
use super::remote::{Remote, seg};

#[derive(Subcommand, Debug)]
pub enum NodesCmd {
    /// Remove a gone or stopped node's row (a node retired for good).
    Forget {
        /// The node's name (`[cluster] node`).
        name: String,
    },
}

/// A store failure in one line; an unreachable database says that no
/// change was made.
fn store_failure(e: fedge::store::StoreError) -> Failure {
    if e.is_unreachable() {
        Failure::runtime(format!(
            "the database is unreachable: {e}; no change was made"
        ))
    } else {
        Failure::runtime(e.to_string())
    }
}

pub fn run(cmd: Option<NodesCmd>, json: bool, cfg: &Config) -> Result<(), Failure> {
    let gone_after = cfg.cluster.gone_after;
    match cmd {
        None => with_store(cfg, |store| async move {
            let rows = store.nodes().await.map_err(store_failure)?;
            let now = store.db_now_ms().await.map_err(store_failure)?;
            print(&node_views(rows, now, gone_after), json)
        }),
        Some(NodesCmd::Forget { name }) => with_store(cfg, |store| async move {
            match forget(&store, &name, gone_after).await {
                Ok(v) => {
                    println!("forgot node {} ({})", v.name, v.state.as_str());
                    Ok(())
                }
                Err(ForgetError::Store(e)) => Err(store_failure(e)),
                Err(e) => Err(Failure::usage(e.to_string())),
            }
        }),
    }
}

/// The same through a node's API.
pub fn remote(cmd: Option<NodesCmd>, json: bool, api: &Remote) -> Result<(), Failure> {
    match cmd {
        None => {
            let v = api.get("/api/v1/nodes")?;
            let nodes: Vec<NodeView> = serde_json::from_value(v).map_err(|e| {
                Failure::runtime(format!("{}: unexpected node list: {e}", api.server()))
            })?;
            print(&nodes, json)
        }
        Some(NodesCmd::Forget { name }) => {
            let v = api.send::<()>(
                reqwest::Method::DELETE,
                &format!("/api/v1/nodes/{}", seg(&name)),
                None,
            )?;
            println!(
                "forgot node {} ({})",
                v["name"].as_str().unwrap_or(&name),
                v["state"].as_str().unwrap_or("?")
            );
            Ok(())
        }
    }
}

/// How long ago, shortly: `350ms`, `12s`, `3m`, `5h`, `2d`.
fn age(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}s", ms / 1_000)
    } else if ms < 3_600_000 {
        format!("{}m", ms / 60_000)
    } else if ms < 86_400_000 {
        format!("{}h", ms / 3_600_000)
    } else {
        format!("{}d", ms / 86_400_000)
    }
}

fn print(nodes: &[NodeView], json: bool) -> Result<(), Failure> {
    if json {
        let text = serde_json::to_string_pretty(nodes)
            .map_err(|e| Failure::runtime(format!("cannot write JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    if nodes.is_empty() {
        println!("no node has written a heartbeat to this database");
        return Ok(());
    }
    let rows: Vec<[String; 6]> = nodes
        .iter()
        .map(|n| {
            [
                n.name.clone(),
                n.state.as_str().to_string(),
                age(n.heartbeat_age_ms),
                n.registry_version.to_string(),
                n.version.clone(),
                n.listeners
                    .iter()
                    .map(|l| format!("{} {} {}", l.role, l.transport, l.addr))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "STATE",
        "HEARTBEAT",
        "REGISTRY",
        "VERSION",
        "LISTENERS",
    ];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 5 {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(head);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]);
    }
    Ok(())
}
