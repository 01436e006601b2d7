//! `fedge config example|check|show`: the commented example, a check of
//! the configuration, and the effective configuration as TOML (with any
//! database password masked).
//!
//! Owns these three commands' output. It never writes a file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use fedge::config::EXAMPLE;

use super::common::load_config;
use super::failure::Failure;

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print a complete, commented configuration file.
    Example,
    /// Check the configuration (the --config file, or the embedded defaults).
    Check,
    /// Print the effective configuration as TOML.
    Show,
}

pub fn run(cmd: ConfigCmd, path: &Option<PathBuf>) -> Result<(), Failure> {
    match cmd {
        ConfigCmd::Example => {
            print!("{EXAMPLE}");
            Ok(())
        }
        ConfigCmd::Check => {
            let cfg = load_config(path)?;
            let what = path
                .as_ref()
                .map_or("embedded defaults".to_string(), |p| p.display().to_string());
            println!(
                "{what}: ok (federation {} as {}, internal {})",
                cfg.federation.listen, cfg.federation.fqdn, cfg.internal.listen
            );
            Ok(())
        }
        ConfigCmd::Show => {
            let mut cfg = load_config(path)?;
            // Shown to be read or pasted elsewhere: never with the password.
            cfg.store.url = fedge::store::redact_url(&cfg.store.url);
            let text = toml::to_string(&cfg).context("cannot render the configuration")?;
            print!("{text}");
            Ok(())
        }
    }
}
