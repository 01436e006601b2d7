//! The `fedge` command line: argument definitions, the one-line usage
//! errors, and the dispatch to one file per subcommand (`serve`, `partner`,
//! `store`, `keys`, `config`, `certs`, `dns`, `cvi`, `firewall`, `media`,
//! `reload`, `drain`, `test-federation`, `user`, `explain`). Part of the binary, not the library.
//!
//! Owns exit codes: 0 on success, 2 with one line on stderr for any usage
//! or configuration mistake, 1 for runtime failures. It never holds edge
//! logic; each subcommand calls the library. `anyhow` is used here and in
//! main.rs only.

mod audit;
mod certs;
mod common;
mod config;
mod cvi;
mod dns;
mod drain;
mod explain;
mod failure;
mod firewall;
mod keys;
mod logging;
mod media;
mod nodes;
mod notify;
mod partner;
mod reload;
mod remote;
mod serve;
mod store;
mod test_federation;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use self::common::{load_config, with_store};
use self::failure::Failure;

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

    /// Act through this edge's admin API (https://HOST:PORT or
    /// http://HOST:PORT) instead of on the database: partner, cvi, media,
    /// nodes, drain, reload and test-federation.
    /// Also read from FEDGE_SERVER.
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,

    /// The API token sent with --server (Authorization: Bearer); also
    /// read from FEDGE_TOKEN.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,

    /// Trust this CA (PEM) for the admin listener's TLS certificate with
    /// --server https://... (default: the configuration's [federation] trust).
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,

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
        cmd: partner::PartnerCmd,
    },
    /// The topology-hiding keys: rotate, list, history.
    Keys {
        #[command(subcommand)]
        cmd: keys::KeysCmd,
    },
    /// The tamper-evident audit chain: verify it, export it for an IG audit.
    Audit {
        #[command(subcommand)]
        cmd: audit::AuditCmd,
    },
    /// Database helpers.
    Store {
        #[command(subcommand)]
        cmd: store::StoreCmd,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        cmd: config::ConfigCmd,
    },
    /// Certificate helpers.
    Certs {
        #[command(subcommand)]
        cmd: certs::CertsCmd,
    },
    /// DNS helpers.
    Dns {
        #[command(subcommand)]
        cmd: dns::DnsCmd,
    },
    /// CVI gateway mode: enrol organisers, give meetings conference IDs,
    /// and watch or drain the running gateway.
    Cvi {
        #[command(subcommand)]
        cmd: cvi::CviCmd,
    },
    /// Print an nftables ruleset for the configured listeners and media
    /// ranges (load it with `nft -f`).
    Firewall,
    /// Accounts of the API and console (the first: `user add --role operator NAME`).
    User {
        #[command(subcommand)]
        cmd: user::UserCmd,
    },
    /// Drain this node: refuse new dialogs (503), let calls finish, exit
    /// when none is left or at [drain] deadline.
    Drain(drain::DrainArgs),
    /// The running edge's media relay (through its admin listener).
    Media {
        #[command(subcommand)]
        cmd: media::MediaCmd,
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
    /// Why the edge would forward, answer or refuse one SIP request (raw
    /// text or picked from a pcap/HEP capture), judged by the configured
    /// store's registry and policy without sending anything.
    Explain(explain::ExplainArgs),
    /// Make the running edge read its certificate, key, trust bundle and
    /// CRL files again (as SIGHUP does); connections stay up.
    Reload,
    /// The nodes sharing this database (up, draining, stopped, gone);
    /// `nodes forget NAME` removes a gone node's row.
    Nodes {
        #[command(subcommand)]
        cmd: Option<nodes::NodesCmd>,
        /// Print JSON (an array of nodes) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The admin HTTP API: print its OpenAPI document.
    Api {
        #[command(subcommand)]
        cmd: remote::ApiCmd,
    },
}

/// Parses the arguments, runs the subcommand, and maps the outcome to an
/// exit code (printing one line on failure).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("fedge: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}

/// clap's error as one line with exit code 2 (help and version: 0).
fn usage_error(e: clap::Error) -> ExitCode {
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
    // One line: clap's first line says what is wrong; when it ends in a
    // colon, the indented lines after it name what (missing arguments).
    let mut lines = rendered.lines();
    let mut first = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    if first.ends_with(':') {
        let named: Vec<&str> = lines
            .take_while(|l| l.starts_with(' '))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        first = format!("{} {}", first, named.join(", "));
    }
    eprintln!("fedge: {first} (see fedge --help)");
    ExitCode::from(2)
}

/// One arm per subcommand; the work is in the subcommand's file.
fn run(cli: Cli) -> Result<(), Failure> {
    let path = cli.config;
    if let Some(server) = cli.server.or_else(|| remote::env("FEDGE_SERVER")) {
        let ca = remote::trust(cli.ca, &path);
        let token = cli.token.or_else(|| remote::env("FEDGE_TOKEN"));
        let api = remote::Remote::new(&server, token, ca)?;
        return remote::run(&api, cli.command);
    }
    match cli.command {
        Command::Api { cmd } => remote::api(cmd),
        Command::Serve => serve::run(path),
        Command::Config { cmd } => config::run(cmd, &path),
        Command::Certs { cmd } => certs::run(cmd, &load_config(&path)?),
        Command::Dns { cmd } => dns::run(cmd, &load_config(&path)?),
        Command::Cvi { cmd } => cvi::command(cmd, &load_config(&path)?),
        Command::Firewall => firewall::run(&load_config(&path)?, &path),
        Command::Explain(args) => explain::run(&load_config(&path)?, args),
        Command::Media { cmd } => media::run(cmd, &load_config(&path)?),
        Command::Drain(args) => drain::run(args, &load_config(&path)?),
        Command::Reload => reload::run(&load_config(&path)?),
        Command::TestFederation { domain, timeout } => {
            test_federation::run(&load_config(&path)?, domain, timeout)
        }
        Command::Partner { cmd } => {
            let cfg = load_config(&path)?;
            let admin = notify::AdminTarget::of(&cfg)?;
            with_store(&cfg, |store| async move {
                partner::run(cmd, &store, &admin).await
            })
        }
        Command::User { cmd } => with_store(&load_config(&path)?, |store| async move {
            user::run(cmd, &store).await
        }),
        Command::Store { cmd } => store::run(cmd, &load_config(&path)?),
        Command::Audit { cmd } => audit::run(cmd, &load_config(&path)?),
        Command::Keys { cmd } => keys::run(cmd, &load_config(&path)?),
        Command::Nodes { cmd, json } => nodes::run(cmd, json, &load_config(&path)?),
    }
}
