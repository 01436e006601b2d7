//! `fedge certs dev`: a development PKI (CA, the edge's certificate and a
//! sample partner's), also created by `fedge serve` without --config.
//!
//! Owns where the development files go and what names they carry. It never
//! touches certificates a configuration file names.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use fedge::config::Config;
use fedge::pki::{DevFiles, DevNames, create_dev_pki};

use super::failure::Failure;

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// Create a development PKI (CA, edge and sample partner certificates).
    Dev {
        /// Where to write the files.
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

/// The sample partner's edge in the development PKI.
const DEV_PARTNER: &str = "sip.partner.test";

pub fn run(cmd: CertsCmd, cfg: &Config) -> Result<(), Failure> {
    let CertsCmd::Dev { dir, force } = cmd;
    let files = DevFiles { dir };
    if files.complete() && !force {
        println!(
            "{}: development PKI already present (use --force to replace it)",
            files.dir.display()
        );
        return Ok(());
    }
    create_dev(&files, cfg)?;
    println!(
        "{}: development PKI created (CA, edge {}, partner {}); for development only",
        files.dir.display(),
        cfg.federation.fqdn,
        DEV_PARTNER
    );
    Ok(())
}

/// Writes the development PKI into `files`.
pub fn create_dev(files: &DevFiles, cfg: &Config) -> Result<(), Failure> {
    let names = DevNames {
        edge_fqdn: cfg.federation.fqdn.clone(),
        partner_fqdn: DEV_PARTNER.into(),
    };
    create_dev_pki(files, &names).context("cannot create the development PKI")?;
    Ok(())
}
