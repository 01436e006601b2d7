//! `fedge config example|check|show`: the commented example, a check of
//! the configuration (the file, then the federation certificate: readable,
//! fits its key, names `[federation] fqdn`, chains to `[federation] trust`,
//! not expired; a warning under 30 days), and the effective configuration
//! as TOML (with any database password masked).
//!
//! Owns these three commands' output. It never writes a file and never
//! binds a socket.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use fedge::config::{Config, EXAMPLE};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

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
            let cert = if path.is_none() && !cfg.federation.cert.exists() {
                "the development PKI is created by the first `fedge serve`".to_string()
            } else {
                check_certificate(&cfg)?
            };
            println!(
                "{what}: ok (federation {} as {}, internal {}); {cert}",
                cfg.federation.listen, cfg.federation.fqdn, cfg.internal.listen
            );
            Ok(())
        }
        ConfigCmd::Show => {
            let mut cfg = load_config(path)?;
            // Shown to be read or pasted elsewhere: never with the password.
            cfg.store.url = fedge::store::redact_url(&cfg.store.url);
            if cfg.capture.password.is_some() {
                cfg.capture.password = Some("***".into());
            }
            let text = toml::to_string(&cfg).context("cannot render the configuration")?;
            print!("{text}");
            Ok(())
        }
    }
}

/// Days of validity under which `config check` warns.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// The federation certificate checked as partners will check it: loads
/// with its key, names the FQDN, is within its validity. A chain that does
/// not reach the trust bundle and an expiry within 30 days are warnings
/// (stderr); the rest are configuration errors (exit 2).
fn check_certificate(cfg: &Config) -> Result<String, Failure> {
    let f = &cfg.federation;
    // Readable, parsable, and the key fits: what `serve` checks first.
    fedge::server::preflight(cfg).map_err(|e| Failure::usage(e.to_string()))?;
    let cert_path = f.cert.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&f.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Failure::usage(format!("[federation] cert {cert_path}: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(Failure::usage(format!(
            "[federation] cert {cert_path}: no certificate in the file"
        )));
    };
    let (_, x) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| Failure::usage(format!("[federation] cert {cert_path}: {e}")))?;
    let names = fedge::sip::transport::tls::identity_of(leaf, false)
        .map(|id| id.names)
        .unwrap_or_default();
    let fqdn = f.fqdn.to_ascii_lowercase();
    if !names
        .iter()
        .any(|n| fedge::server::cert_name_matches(n, &fqdn))
    {
        return Err(Failure::usage(format!(
            "[federation] cert {cert_path} names {} but not [federation] fqdn {fqdn}: partners would refuse it",
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    let now = time::OffsetDateTime::now_utc();
    let not_after = x.validity().not_after.to_datetime();
    let not_before = x.validity().not_before.to_datetime();
    let date = |t: time::OffsetDateTime| t.date().to_string();
    if not_after <= now {
        return Err(Failure::usage(format!(
            "[federation] cert {cert_path} expired on {}",
            date(not_after)
        )));
    }
    if not_before > now {
        return Err(Failure::usage(format!(
            "[federation] cert {cert_path} is not valid before {}",
            date(not_before)
        )));
    }
    let days = (not_after - now).whole_days();
    if days < EXPIRY_WARNING_DAYS {
        eprintln!(
            "fedge: warning: [federation] cert {cert_path} expires in {days} day(s), on {}: renew it",
            date(not_after)
        );
    }
    let chained = match chains_to_trust(cfg, &chain, &fqdn) {
        Ok(()) => "chains to [federation] trust".to_string(),
        Err(why) => {
            eprintln!(
                "fedge: warning: [federation] cert {cert_path} does not chain to [federation] trust {} ({why}): partners that trust only those CAs will refuse it",
                f.trust.display()
            );
            "does not chain to [federation] trust".to_string()
        }
    };
    Ok(format!(
        "certificate names {fqdn}, {chained}, expires {} ({days} days)",
        date(not_after)
    ))
}

/// Whether the chain verifies, for `fqdn`, against the trust bundle.
fn chains_to_trust(
    cfg: &Config,
    chain: &[CertificateDer<'static>],
    fqdn: &str,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    let bundle = CertificateDer::pem_file_iter(&cfg.federation.trust)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?;
    roots.add_parsable_certificates(bundle);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(fqdn.to_string()).map_err(|e| e.to_string())?;
    let (leaf, rest) = chain.split_first().ok_or("no certificate")?;
    use rustls::client::danger::ServerCertVerifier as _;
    verifier
        .verify_server_cert(leaf, rest, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}
