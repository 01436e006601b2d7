//! The `fedge` command line: `serve`, `partner ...`, `store check`,
//! `config example|check|show`, and `certs dev`.
//!
//! Owns argument parsing, logging set-up and exit codes: 0 on success, 2
//! with one line on stderr for any usage or configuration mistake, 1 for
//! runtime failures.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fedge::config::{Config, EXAMPLE};
use fedge::pki::{DevFiles, DevNames, create_dev_pki};
use fedge::server::{self, ServeError};
use fedge::store::Store;

use cli::Failure;
use cli::partner::PartnerCmd;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// mimalloc: the edge allocates and frees small buffers for every message;
/// glibc's allocator spent ~8% of the relay's CPU on that (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "fedge",
    version,
    about = "Federation edge for health and care unified communications"
)]
struct Cli {
    /// Configuration file (TOML). Without it, embedded loopback defaults are used.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the edge.
    Serve,
    /// Manage federation partners (the registry the edge enforces).
    Partner {
        #[command(subcommand)]
        cmd: PartnerCmd,
    },
    /// Database helpers.
    Store {
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Certificate helpers.
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// DNS helpers.
    Dns {
        #[command(subcommand)]
        cmd: DnsCmd,
    },
    /// CVI gateway mode: enrol organisers, give meetings conference IDs,
    /// and watch or drain the running gateway.
    Cvi {
        #[command(subcommand)]
        cmd: cli::cvi::CviCmd,
    },
    /// Print an nftables ruleset for the configured listeners and media
    /// ranges (load it with `nft -f`).
    Firewall,
    /// The running edge's media relay (through its admin listener).
    Media {
        #[command(subcommand)]
        cmd: cli::media::MediaCmd,
    },
    /// Check the way to a partner step by step: DNS, TCP, mutual TLS, an
    /// OPTIONS to its edge and an IM to its technical contact (like SfB's
    /// Test-CsFederatedPartner). Needs no running edge.
    TestFederation {
        /// One of the partner's SIP domains.
        domain: String,
        /// How long each step may take.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Print a complete, commented configuration file.
    Example,
    /// Check the configuration (the --config file, or the embedded defaults).
    Check,
    /// Print the effective configuration as TOML.
    Show,
}

#[derive(Subcommand, Debug)]
enum DnsCmd {
    /// Print the records the edge publishes, as BIND zone files (one per
    /// domain), for operators who run their own DNS.
    Zone,
}

#[derive(Subcommand, Debug)]
enum StoreCmd {
    /// Check the database's integrity and the registry's invariants.
    Check,
}

#[derive(Subcommand, Debug)]
enum CertsCmd {
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let rendered = e.render().to_string();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let usage = rendered
                    .lines()
                    .find_map(|l| l.strip_prefix("Usage: "))
                    .unwrap_or("fedge <COMMAND>");
                eprintln!("fedge: a subcommand is missing; usage: {usage} (see --help)");
                return ExitCode::from(2);
            }
            // One line: clap's first line says what is wrong.
            let first = rendered
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("fedge: {first} (see fedge --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("fedge: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}

fn load_config(path: &Option<PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => Config::load(p).map_err(|e| Failure::usage(e.0)),
        None => Ok(Config::default()),
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Config {
            cmd: ConfigCmd::Example,
        } => {
            print!("{EXAMPLE}");
            Ok(())
        }
        Command::Config {
            cmd: ConfigCmd::Check,
        } => {
            let cfg = load_config(&cli.config)?;
            let what = cli
                .config
                .as_ref()
                .map_or("embedded defaults".to_string(), |p| p.display().to_string());
            println!(
                "{what}: ok (federation {} as {}, internal {})",
                cfg.federation.listen, cfg.federation.fqdn, cfg.internal.listen
            );
            Ok(())
        }
        Command::Config {
            cmd: ConfigCmd::Show,
        } => {
            let cfg = load_config(&cli.config)?;
            let text = toml::to_string(&cfg).context("cannot render the configuration")?;
            print!("{text}");
            Ok(())
        }
        Command::Certs {
            cmd: CertsCmd::Dev { dir, force },
        } => {
            let cfg = load_config(&cli.config)?;
            let files = DevFiles { dir };
            if files.complete() && !force {
                println!(
                    "{}: development PKI already present (use --force to replace it)",
                    files.dir.display()
                );
                return Ok(());
            }
            create_dev_pki(&files, &dev_names(&cfg))
                .context("cannot create the development PKI")?;
            println!(
                "{}: development PKI created (CA, edge {}, partner {}); for development only",
                files.dir.display(),
                cfg.federation.fqdn,
                DEV_PARTNER
            );
            Ok(())
        }
        Command::Serve => serve(cli.config),
        Command::Dns { cmd: DnsCmd::Zone } => {
            let cfg = load_config(&cli.config)?;
            let publish = cfg.publish().map_err(|e| Failure::usage(e.0))?;
            for z in fedge::dns::zone::zones(&publish) {
                println!("{}", z.text);
            }
            Ok(())
        }
        Command::Cvi { cmd } => {
            let cfg = load_config(&cli.config)?;
            if cli::cvi::needs_store(&cmd) {
                let c = cfg.clone();
                with_store(
                    &cfg,
                    |store| async move { cli::cvi::run(cmd, &c, &store).await },
                )
            } else {
                cli::cvi::admin(cmd, cfg.admin.listen)
            }
        }
        Command::Firewall => {
            let cfg = load_config(&cli.config)?;
            let what = cli
                .config
                .as_ref()
                .map_or("the embedded defaults".to_string(), |p| {
                    p.display().to_string()
                });
            print!("{}", fedge::firewall::ruleset(&cfg, &what));
            Ok(())
        }
        Command::Media { cmd } => {
            let cfg = load_config(&cli.config)?;
            cli::media::run(cmd, cfg.admin.listen)
        }
        Command::TestFederation { domain, timeout } => {
            let cfg = load_config(&cli.config)?;
            test_federation(&cfg, domain, timeout)
        }
        Command::Partner { cmd } => {
            let cfg = load_config(&cli.config)?;
            with_store(
                &cfg,
                |store| async move { cli::partner::run(cmd, &store).await },
            )
        }
        Command::Store {
            cmd: StoreCmd::Check,
        } => {
            let cfg = load_config(&cli.config)?;
            let url = cfg.store.url.clone();
            with_store(&cfg, |store| async move {
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
    }
}

/// `fedge test-federation`: prints one line per step; exit 0 only when all passed.
fn test_federation(
    cfg: &Config,
    domain: String,
    timeout: std::time::Duration,
) -> Result<(), Failure> {
    use fedge::federation::probe::{self, Me};
    let tls = fedge::sip::transport::tls::client_config(&server::tls_files(cfg))
        .map_err(|e| Failure::usage(format!("[federation] {e}")))?;
    let me = Me {
        fqdn: cfg.federation.fqdn.clone(),
        port: cfg.federation.listen.port(),
        address: format!(
            "sip:{}@{}",
            cfg.policy.test_user,
            cfg.federation
                .home_domains
                .first()
                .map(String::as_str)
                .unwrap_or(&cfg.federation.fqdn)
        ),
    };
    let resolver = cfg.dns.resolver;
    with_store(cfg, |store| async move {
        let dns = fedge::dns::Dns::new(resolver).map_err(|e| Failure::runtime(e.to_string()))?;
        let partner = store.partner_by_domain(&domain).await.map_err(|e| {
            if e.is_usage() {
                Failure::usage(e.to_string())
            } else {
                Failure::runtime(e.to_string())
            }
        })?;
        println!(
            "federation test: {} ({}, {}) from {} as {}",
            domain, partner.details.org_name, partner.state, me.fqdn, me.address
        );
        let steps = probe::run(
            &partner,
            &domain.to_ascii_lowercase(),
            &dns,
            tls,
            &me,
            timeout,
        )
        .await;
        for s in &steps {
            println!(
                "  {:<8} {:<6} {}",
                s.name,
                if s.ok { "ok" } else { "FAILED" },
                s.detail
            );
        }
        match steps.iter().find(|s| !s.ok) {
            None if steps.last().is_some_and(|s| s.name == "message") => {
                println!(
                    "all steps passed: ask the technical contact to reply, then check `fedge partner show {domain}`"
                );
                Ok(())
            }
            None => Err(Failure::runtime(format!(
                "federation test with {domain} did not finish"
            ))),
            Some(s) => Err(Failure::runtime(format!(
                "federation test with {domain} failed at step {}",
                s.name
            ))),
        }
    })
}

/// Opens the store on a small runtime and runs `f` with it.
fn with_store<F, Fut>(cfg: &Config, f: F) -> Result<(), Failure>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let store = Store::open(&cfg.store.url)
            .await
            .map_err(|e| Failure::runtime(e.to_string()))?;
        let result = f(store.clone()).await;
        store.close().await;
        result
    })
}

const DEV_PARTNER: &str = "sip.partner.test";

fn dev_names(cfg: &Config) -> DevNames {
    DevNames {
        edge_fqdn: cfg.federation.fqdn.clone(),
        partner_fqdn: DEV_PARTNER.into(),
    }
}

fn serve(config: Option<PathBuf>) -> Result<(), Failure> {
    let cfg = load_config(&config)?;
    if config.is_some() {
        // Certificates named by a config file are part of the configuration:
        // a bad one is reported as one line before logging starts.
        server::preflight(&cfg).map_err(|e| Failure::usage(e.to_string()))?;
    }
    init_logging(&cfg);
    if config.is_none() {
        let files = DevFiles {
            dir: PathBuf::from("certs/dev"),
        };
        if !files.complete() {
            create_dev_pki(&files, &dev_names(&cfg))
                .context("cannot create the development PKI")?;
            warn!(
                dir = %files.dir.display(),
                "DEVELOPMENT CERTIFICATES CREATED: a throw-away CA, the edge's certificate and a sample partner's. \
                 They are for development only; never use them in production"
            );
        }
        warn!(
            "running on embedded defaults with DEVELOPMENT CERTIFICATES from certs/dev (for development only); pass --config for real use"
        );
    }
    let rt = match cfg.runtime.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signals.cancel();
        });
        match server::run(cfg, shutdown).await {
            Ok(()) => {
                info!("stopped");
                Ok(())
            }
            Err(ServeError::Config(m)) => Err(Failure::usage(m)),
            Err(ServeError::Runtime(m)) => {
                error!("{m}");
                Err(Failure::runtime(m))
            }
        }
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
