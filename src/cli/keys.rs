//! `fedge keys`: the topology-hiding keys. `rotate-topology` makes a new
//! key current (the previous one opens its tokens for `[topology]
//! key_grace` more), `list` shows the keys without their secrets, and
//! `history` the audit trail.
//!
//! Owns these commands' output. It never prints a secret, and it prints
//! "rotated" only after the store has committed the new key; running edges
//! pick it up within a second or two.

use clap::Subcommand;
use fedge::config::Config;

use super::common::with_store;
use super::failure::Failure;
use super::partner::actor;

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Make a new topology-hiding key current; the previous one still
    /// opens the tokens it sealed for [topology] key_grace.
    RotateTopology {
        #[arg(long)]
        reason: Option<String>,
        /// Who rotates (default: $USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// The topology-hiding keys (ids and dates, never the secrets).
    List,
    /// Every key created, rotated in, retired and deleted.
    History,
}

pub fn run(cmd: KeysCmd, cfg: &Config) -> Result<(), Failure> {
    let grace = cfg.topology.key_grace;
    with_store(cfg, |store| async move {
        let fail = |e: fedge::store::StoreError| Failure::runtime(e.to_string());
        match cmd {
            KeysCmd::RotateTopology { reason, actor: a } => {
                let mut fresh = [0u8; 32];
                rand::fill(&mut fresh);
                let r = store
                    .rotate_topology_key(fresh, grace, &actor(&a), reason.as_deref())
                    .await
                    .map_err(fail)?;
                match r.previous {
                    Some((id, until)) => println!(
                        "topology key {} is current; key {id} opens the tokens it sealed until {until}",
                        r.new_id
                    ),
                    None => println!("topology key {} is current", r.new_id),
                }
            }
            KeysCmd::List => {
                for k in store.topology_key_list().await.map_err(fail)? {
                    match k.retire_at {
                        None => println!("{}\tcreated {}\tcurrent", k.id, k.created_at),
                        Some(t) => println!("{}\tcreated {}\tretires {t}", k.id, k.created_at),
                    }
                }
            }
            KeysCmd::History => {
                for e in store.key_audit().await.map_err(fail)? {
                    println!(
                        "{}\t{}\tkey {}\t{}\t{}",
                        e.at,
                        e.actor,
                        e.key_id,
                        e.action,
                        e.detail.unwrap_or_default()
                    );
                }
            }
        }
        Ok(())
    })
}
