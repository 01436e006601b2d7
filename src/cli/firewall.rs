//! `fedge firewall`: an nftables ruleset for the configured listeners and
//! media ranges.
//!
//! Owns naming where the ruleset came from. It never loads the rules (the
//! operator runs `nft -f`).

use std::path::PathBuf;

use fedge::config::Config;

use super::failure::Failure;

pub fn run(cfg: &Config, path: &Option<PathBuf>) -> Result<(), Failure> {
    let what = path
        .as_ref()
        .map_or("the embedded defaults".to_string(), |p| {
            p.display().to_string()
        });
    print!("{}", fedge::firewall::ruleset(cfg, &what));
    Ok(())
}
