//! `fedge store check`: the database's integrity and the registry's
//! invariants.
//!
//! Owns the report's format and its exit code (1 when a problem is found).
//! It never repairs anything.

use clap::Subcommand;
use fedge::config::Config;

use super::common::with_store;
use super::failure::Failure;

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Check the database's integrity and the registry's invariants.
    Check,
}

pub fn run(cmd: StoreCmd, cfg: &Config) -> Result<(), Failure> {
    let StoreCmd::Check = cmd;
    let url = fedge::store::redact_url(&cfg.store.url);
    with_store(cfg, |store| async move {
        let problems = store
            .verify()
            .await
            .map_err(|e| Failure::runtime(e.to_string()))?;
        if problems.is_empty() {
            println!("{url}: ok");
            Ok(())
        } else {
            for p in &problems {
                println!("{p}");
            }
            Err(Failure::runtime(format!(
                "{} problem(s) found in {url}",
                problems.len()
            )))
        }
    })
}
