//! `fedge explain FILE`: why the edge would forward, answer or refuse one
//! SIP request, judged offline by the configured store's registry and the
//! configuration's policy (`federation::explain`, which runs the proxy's
//! own `policy::decide`). FILE is raw SIP text or a pcap/pcapng capture
//! (plain SIP over UDP/TCP, or HEP3).
//!
//! Owns the arguments, reading the file and the certificate, the peer a
//! capture's addresses imply, and printing (text, or `--json`). Exit 0
//! when the message was explained, whatever the verdict; 2 with one line
//! for a usage mistake (an empty or unreadable file, an unknown partner
//! domain, no peer named). Never sends anything.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use fedge::config::Config;
use fedge::federation::explain::{
    self, ExplainError, Explanation, HomePool, Judgement, Peer, Settings, capture,
};
use fedge::federation::registry::Registry;
use fedge::sip::parse::Limits;
use fedge::sip::proxy::Hop;
use fedge::sip::transport::tls;

use super::common::with_store;
use super::failure::Failure;

/// The arguments of `fedge explain`.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Raw SIP text (CRLF or LF line ends), or a pcap/pcapng capture.
    file: PathBuf,
    /// The sender's certificate (PEM): a partner's edge, identified as the
    /// TLS listener identifies it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from_partner", "from_home"])]
    from_cert: Option<PathBuf>,
    /// As if the partner holding DOMAIN sent it with its edge certificate.
    #[arg(long, value_name = "DOMAIN", conflicts_with = "from_home")]
    from_partner: Option<String>,
    /// From the home pool (the internal listener): outbound.
    #[arg(long)]
    from_home: bool,
    /// In a capture: the Call-ID of the message.
    #[arg(long, value_name = "ID")]
    call_id: Option<String>,
    /// In a capture: the Nth request of that Call-ID (from 1; default 1).
    #[arg(long, value_name = "N")]
    index: Option<usize>,
    /// Look up SRV and address records (else the look-ups are named).
    #[arg(long)]
    resolve: bool,
    /// Print JSON (a stable shape, "version": 1).
    #[arg(long)]
    json: bool,
}

fn usage(e: ExplainError) -> Failure {
    Failure::usage(e.to_string())
}

/// The peer the options name.
fn stated_peer(a: &ExplainArgs) -> Result<Option<Peer>, Failure> {
    if let Some(path) = &a.from_cert {
        let certs = tls::load_certs(path, "--from-cert certificate")
            .map_err(|e| Failure::usage(e.to_string()))?;
        let id = tls::identity_of(&certs[0], true).map_err(|e| {
            Failure::usage(format!(
                "--from-cert {}: the federation listener refuses this certificate in the handshake: {e}",
                path.display()
            ))
        })?;
        return Ok(Some(Peer::Certificate(id)));
    }
    if let Some(d) = &a.from_partner {
        return Ok(Some(Peer::Partner(d.clone())));
    }
    Ok(a.from_home.then_some(Peer::Home))
}

fn is_listener(listen: SocketAddr, dst: SocketAddr) -> bool {
    listen.port() == dst.port() && (listen.ip().is_unspecified() || listen.ip() == dst.ip())
}

/// The peer a captured message's destination implies, when none is named.
fn capture_peer(cfg: &Config, c: &capture::Captured) -> Result<(Peer, String), Failure> {
    if is_listener(cfg.internal.listen, c.dst) {
        return Ok((
            Peer::Home,
            format!(
                "direction from the capture: {} -> {} is the internal listener ([internal] listen), so from the home pool",
                c.src, c.dst
            ),
        ));
    }
    let on = if is_listener(cfg.federation.listen, c.dst) {
        "arrives on the federation listener"
    } else {
        "is to no configured listener"
    };
    Err(Failure::usage(format!(
        "the captured message ({} -> {}) {on}; name the sender with --from-cert FILE or --from-partner DOMAIN (a capture carries no certificate), or --from-home",
        c.src, c.dst
    )))
}

fn settings(cfg: &Config) -> Result<Settings, Failure> {
    let nh = cfg.next_hop().map_err(|e| Failure::usage(e.0))?;
    let ip = nh
        .host
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let hop = Hop::Udp(SocketAddr::new(ip, nh.port));
    let local = vec![cfg.federation.listen.ip(), cfg.internal.listen.ip()];
    let policy =
        fedge::server::policy_config(cfg, local, hop).map_err(|e| Failure::usage(e.to_string()))?;
    Ok(Settings {
        policy,
        home_pool: HomePool {
            uri: cfg.internal.next_hop.clone(),
            transport: nh.transport,
            host: nh.host,
            port: nh.port,
        },
        limits: Limits {
            max_head: cfg.sip.max_head_bytes,
            max_body: cfg.sip.max_body_bytes,
            max_headers: cfg.sip.max_headers,
        },
        rate: format!(
            "[policy] rate {}/s, burst {}",
            cfg.policy.rate, cfg.policy.burst
        ),
        media: cfg.media.enabled,
    })
}

/// Runs `fedge explain`.
pub fn run(cfg: &Config, a: ExplainArgs) -> Result<(), Failure> {
    let set = settings(cfg)?;
    let data = std::fs::read(&a.file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", a.file.display())))?;
    let mut peer = stated_peer(&a)?;
    let mut notes = Vec::new();
    let parsed = if capture::is_capture(&data) {
        let all = capture::read(&data, &set.limits).map_err(usage)?;
        let c = capture::pick(all, a.call_id.as_deref(), a.index).map_err(usage)?;
        notes.push(format!(
            "from the capture: packet {}, {} {} -> {}",
            c.packet, c.carried, c.src, c.dst
        ));
        if peer.is_none() {
            let (p, why) = capture_peer(cfg, &c)?;
            notes.push(why);
            peer = Some(p);
        }
        c.message
    } else {
        if a.call_id.is_some() || a.index.is_some() {
            return Err(Failure::usage(
                "--call-id and --index pick a message from a capture; this file is SIP text",
            ));
        }
        explain::parse_text(&data, &set.limits).map_err(usage)?
    };
    let Some(peer) = peer else {
        return Err(Failure::usage(
            "name the sender: --from-cert FILE, --from-partner DOMAIN or --from-home",
        ));
    };
    let resolver = cfg.dns.resolver;
    let resolve = a.resolve;
    let json = a.json;
    with_store(cfg, |store| async move {
        let registry = Registry::load(&store)
            .await
            .map_err(|e| Failure::runtime(format!("cannot load the partner registry: {e}")))?;
        let snap = registry.snapshot();
        let dns = if resolve {
            Some(fedge::dns::Dns::new(resolver).map_err(|e| Failure::runtime(e.to_string()))?)
        } else {
            None
        };
        let mut x = match parsed {
            Ok(msg) => explain::explain(&msg, &peer, &snap, &set, dns.as_ref())
                .await
                .map_err(usage)?,
            Err((status, reason)) => explain::malformed(status, reason, &peer),
        };
        notes.append(&mut x.notes);
        x.notes = notes;
        x.notes.push(format!(
            "registry version {} from the configured store",
            snap.version
        ));
        if json {
            println!("{}", x.to_json());
        } else {
            print_text(&x, &set.policy.fqdn);
        }
        Ok(())
    })
}

fn print_text(x: &Explanation, fqdn: &str) {
    match &x.outcome {
        Judgement::Forward(h) => {
            let to = if h.kind == "home_pool" {
                "the home pool ([internal] next_hop)"
            } else {
                "the partner's edge"
            };
            println!(
                "verdict: forwarded ({}) to {to}: {} {}:{}",
                x.rule, h.transport, h.host, h.port
            );
            if let Some(n) = &h.server_name {
                println!("  its certificate must name {n}");
            }
            if !h.addresses.is_empty() {
                let a: Vec<String> = h.addresses.iter().map(|a| a.to_string()).collect();
                println!("  addresses: {}", a.join(", "));
            }
            if let Some(l) = &h.lookup {
                println!("  would look up {l} (not resolved; --resolve does)");
            }
        }
        Judgement::Answer { status } => {
            println!("verdict: answered by the edge ({}) with {status}", x.rule)
        }
        Judgement::Refuse(r) => {
            println!("verdict: refused ({}) with {}", x.rule, r.status);
            println!("  Warning: {} {fqdn} {:?}", r.warning_code, r.reason);
            if let Some((code, text)) = r.diagnostic {
                println!("  ms-diagnostics-public: {code} ({text})");
            }
            for (n, v) in r
                .headers
                .iter()
                .filter(|(n, _)| n != "ms-diagnostics-public")
            {
                println!("  {n}: {v}");
            }
            if let Some(l) = &r.log_reason {
                println!("  log reason: {l}");
            }
        }
        Judgement::Malformed { status, reason } => {
            println!("verdict: refused by the parser with {status}");
            println!("  Warning: 399 {fqdn} {reason:?}");
        }
        Judgement::NeedsDns { lookup } => {
            println!("verdict: undecided: needs DNS ({lookup}); run again with --resolve")
        }
    }
    if !x.method.is_empty() {
        println!(
            "message: {} {} (Call-ID {}; From {}; To {})",
            x.method, x.request_uri, x.call_id, x.from, x.to
        );
    }
    println!("direction: {} ({})", x.direction, x.peer);
    if let Some((name, org, state)) = &x.partner {
        println!("partner: {name} ({org}), {state}");
    }
    if !x.checks.is_empty() {
        println!("checks passed:");
        for c in &x.checks {
            println!("  {:<16} {}", c.check, c.detail);
        }
    }
    if !x.notes.is_empty() {
        println!("notes:");
        for n in &x.notes {
            println!("  - {n}");
        }
    }
}
