//! `fedge serve`: logging set-up (src/cli/logging.rs), the async runtime, the signals that stop
//! the edge (SIGTERM: a drain, see `server::drain`; a second SIGTERM or
//! SIGINT: at once), the development PKI when no --config is given, and the
//! first-run notice when no operator account exists.
//!
//! Owns turning [`ServeError`] into an exit code (2 for configuration and
//! for a listener address that cannot be bound, 1 otherwise). It never builds listeners itself (`fedge::server` does).

use std::path::PathBuf;

use anyhow::Context as _;
use fedge::pki::DevFiles;
use fedge::server::{self, ServeError};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::certs::create_dev;
use super::common::load_config;
use super::failure::Failure;

pub fn run(config: Option<PathBuf>) -> Result<(), Failure> {
    let cfg = load_config(&config)?;
    if config.is_some() {
        // Certificates named by a config file are part of the configuration:
        // a bad one is reported as one line before logging starts.
        server::preflight(&cfg).map_err(|e| Failure::usage(e.to_string()))?;
    }
    super::logging::init(&cfg);
    if config.is_none() {
        let files = DevFiles {
            dir: PathBuf::from("certs/dev"),
        };
        if !files.complete() {
            create_dev(&files, &cfg)?;
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
    let config_arg = config
        .as_ref()
        .map(|p| format!(" --config {}", p.display()))
        .unwrap_or_default();
    rt.block_on(async move {
        super::logging::spawn_summaries();
        first_run_notice(&cfg.store.url, &config_arg).await;
        let shutdown = CancellationToken::new();
        let drain = CancellationToken::new();
        tokio::spawn(wait_for_signals(shutdown.clone(), drain.clone()));
        match server::run_with_drain(cfg, shutdown, drain).await {
            Ok(()) => {
                info!("stopped");
                Ok(())
            }
            Err(ServeError::Config(m)) => Err(Failure::usage(m)),
            // An address that cannot be bound (another edge holds it, or it
            // is not this host's) is a configuration mistake: one line (the
            // CLI's), exit code 2.
            Err(ServeError::Runtime(m)) if m.starts_with("cannot listen on") => {
                Err(Failure::usage(m))
            }
            Err(ServeError::Runtime(m)) => {
                error!("{m}");
                Err(Failure::runtime(m))
            }
        }
    })
}

/// On a node with no active operator account (a fresh install), says so
/// in the log and, when stderr is a terminal, on stderr, with the command
/// that creates the first one. Says nothing when the store cannot be
/// opened (the server reports that itself).
async fn first_run_notice(url: &str, config_arg: &str) {
    use std::io::IsTerminal as _;
    let Ok(store) = fedge::store::Store::open(url).await else {
        return;
    };
    let operators = store.active_operators().await;
    store.close().await;
    if operators.is_ok_and(|n| n == 0) {
        let command = format!("fedge{config_arg} user add --role operator NAME");
        warn!(
            "no operator account exists yet: the admin API and console refuse everyone until one does; create the first operator with: {command}"
        );
        if std::io::stderr().is_terminal() {
            eprintln!(
                "fedge: no operator account exists yet; create the first one with: {command}"
            );
        }
    }
}

/// SIGTERM (what systemd sends) starts a drain: new dialogs are refused,
/// calls finish, the node exits by itself. A second SIGTERM, or SIGINT at
/// any time (Ctrl-C), stops at once (with the usual 5 s for the tasks).
async fn wait_for_signals(shutdown: CancellationToken, drain: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    info!("SIGINT: stopping now");
                    break;
                }
                _ = term.recv() => {
                    if drain.is_cancelled() {
                        info!("second SIGTERM: stopping now, without waiting for the drain");
                        break;
                    }
                    info!("SIGTERM: draining (a second SIGTERM or SIGINT stops at once)");
                    drain.cancel();
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}
