//! `fedge dns zone`: the records the edge publishes, as BIND zone files.
//!
//! Owns printing them. It never serves DNS (the server does, with
//! `[dns] listen`).

use clap::Subcommand;
use fedge::config::Config;

use super::failure::Failure;

#[derive(Subcommand, Debug)]
pub enum DnsCmd {
    /// Print the records the edge publishes, as BIND zone files (one per
    /// domain), for operators who run their own DNS.
    Zone,
}

pub fn run(cmd: DnsCmd, cfg: &Config) -> Result<(), Failure> {
    let DnsCmd::Zone = cmd;
    let publish = cfg.publish().map_err(|e| Failure::usage(e.0))?;
    for z in fedge::dns::zone::zones(&publish) {
        println!("{}", z.text);
    }
    Ok(())
}
