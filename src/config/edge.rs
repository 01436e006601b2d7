//! The edge's own sections: the whole [`Config`] and its listener, store,
//! admin, SIP, policy, runtime and log sections, with their defaults.
//!
//! Owns the shape and the defaults of these settings (what serde reads and
//! `fedge config show` writes). It never checks values (validate.rs does)
//! and never reads files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::operations::{CaptureConfig, ClusterConfig, DrainConfig};
use super::services::{CviSection, DnsSection, MediaSection};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub federation: FederationConfig,
    pub internal: InternalConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub public: PublicConfig,
    pub sip: SipConfig,
    pub policy: PolicyConfig,
    pub media: MediaSection,
    pub dns: DnsSection,
    pub cvi: CviSection,
    pub runtime: RuntimeConfig,
    pub log: LogConfig,
    pub topology: TopologyConfig,
    pub cluster: ClusterConfig,
    pub drain: DrainConfig,
    pub capture: CaptureConfig,
}

/// Topology hiding's tokens and keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    /// How long a Route/Contact token opens after the edge made it (the
    /// longest dialog that keeps working).
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// How long the previous key still opens tokens after
    /// `fedge keys rotate-topology`.
    #[serde(with = "humantime_serde")]
    pub key_grace: Duration,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            token_lifetime: Duration::from_secs(24 * 3600),
            key_grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// What may cross the edge, and how fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Requests per second a partner may send (token bucket), unless its
    /// record says otherwise.
    pub rate: u32,
    /// How many requests a partner may send at once above the rate.
    pub burst: u32,
    /// Most distinct home addresses one partner may reach per window.
    pub enumeration_limit: u32,
    #[serde(with = "humantime_serde")]
    pub enumeration_window: Duration,
    /// Media types allowed in bodies (every part of a multipart body).
    pub body_types: Vec<String>,
    /// Largest body allowed across the edge.
    pub max_body_bytes: usize,
    /// Oldest Lync/SfB client build accepted (UCCAPI and OC in User-Agent).
    pub min_client_version: String,
    /// Oldest Lync/SfB server version accepted (RTC and RTCC in User-Agent).
    pub min_server_version: String,
    /// Accept products other than Lync and Skype for Business (off: refused).
    pub allow_other_products: bool,
    /// The user part of the onboarding test address in each home domain.
    pub test_user: String,
    /// How often IG certification expiry dates are checked.
    #[serde(with = "humantime_serde")]
    pub ig_check_interval: Duration,
    /// Days before expiry that a warning is logged.
    pub ig_warning_days: u32,
}

/// Body types allowed by default (the content rule's own list).
pub use crate::federation::content::DEFAULT_BODY_TYPES;

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            rate: 20,
            burst: 40,
            enumeration_limit: 1000,
            enumeration_window: Duration::from_secs(3600),
            body_types: DEFAULT_BODY_TYPES.iter().map(|s| s.to_string()).collect(),
            max_body_bytes: 64 * 1024,
            min_client_version: "4.0.7577.4103".into(),
            min_server_version: "4.0".into(),
            allow_other_products: false,
            test_user: "federation-test".into(),
            ig_check_interval: Duration::from_secs(3600),
            ig_warning_days: 30,
        }
    }
}

/// The async runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads. 1 runs the edge on one thread, which costs the least
    /// CPU per message (no hand-offs between threads); more spread the load
    /// over cores at some cost per message.
    pub threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { threads: 1 }
    }
}

/// The partner-facing listener (SIP over mutual TLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    pub listen: SocketAddr,
    /// The edge's public FQDN: in Record-Route, Warning headers and its certificate.
    pub fqdn: String,
    /// SIP domains the home organisation owns.
    pub home_domains: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM bundle of the CAs partner certificates must chain to.
    pub trust: PathBuf,
    /// Certificate revocation lists (PEM or DER) checked in every handshake.
    pub crls: Vec<PathBuf>,
    /// Most certificates a peer's chain may hold (its own included).
    pub max_chain_certs: usize,
    /// Most bytes of certificates a peer's chain may hold.
    pub max_chain_bytes: usize,
    /// A TLS handshake must finish this long after the accept (a total
    /// deadline: bytes trickling in do not extend it).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Most authenticated partner connections at once.
    pub max_connections: usize,
    /// Most authenticated connections one certificate identity (one
    /// partner's edge) may hold, so that it cannot take the others' room.
    pub max_connections_per_identity: usize,
    /// Most authenticated connections from one source address (an IPv6
    /// /64), whatever certificates they show: one host holding many
    /// identities cannot take every slot either.
    pub max_connections_per_source: usize,
    /// Most connections still in their TLS handshake, from all sources;
    /// when full, the busiest source's oldest handshake is closed.
    pub max_handshakes: usize,
    /// Most connections in their TLS handshake from one source address
    /// (an IPv6 /64); more from it are closed at once.
    pub max_handshakes_per_source: usize,
    /// Most TLS connections opened to one partner edge (SfB allows 1 to 4).
    pub partner_connections: usize,
    /// Most requests of one source address in progress at once (live
    /// server transactions), before any policy has admitted them.
    pub max_transactions_per_source: usize,
    /// Refusals per second one source address may cause (sustained); over
    /// it, its connection is closed without an answer.
    pub refusals_per_second: u32,
    /// Refusals one source address may cause at once.
    pub refusal_burst: u32,
    /// How often the certificate, key, trust bundle and CRL files are
    /// checked for changes (reloaded when they change); 0s: only on
    /// SIGHUP or `fedge reload`.
    #[serde(with = "humantime_serde")]
    pub file_check: Duration,
    /// Resume partners' TLS sessions (TLS 1.3 tickets, TLS 1.2 session IDs
    /// and tickets). A resumed session's certificate chain is checked again
    /// (trust bundle, CRLs, expiry, CA pins, names) before it is used; a
    /// reload starts a new cache and new ticket keys.
    pub tls_resumption: bool,
    /// Most TLS 1.2 sessions kept for resumption by session ID.
    pub tls_session_cache: usize,
    /// How long one ticket key encrypts new tickets; a ticket is accepted
    /// for at most twice this, then its key is erased.
    #[serde(with = "humantime_serde")]
    pub tls_ticket_rotation: Duration,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5061)),
            fqdn: "sip.fedge.test".into(),
            home_domains: vec!["fedge.test".into()],
            cert: "certs/dev/edge.crt".into(),
            key: "certs/dev/edge.key".into(),
            trust: "certs/dev/ca.crt".into(),
            crls: Vec::new(),
            max_chain_certs: crate::sip::transport::tls::DEFAULT_MAX_CHAIN_CERTS,
            max_chain_bytes: crate::sip::transport::tls::DEFAULT_MAX_CHAIN_BYTES,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_identity: 64,
            max_connections_per_source: 256,
            max_handshakes: 256,
            max_handshakes_per_source: 32,
            partner_connections: 4,
            max_transactions_per_source: 256,
            refusals_per_second: 20,
            refusal_burst: 40,
            file_check: Duration::from_secs(2),
            tls_resumption: true,
            tls_session_cache: 10_000,
            tls_ticket_rotation: Duration::from_secs(3600),
        }
    }
}

/// The listener for the home pool, and where admitted requests go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InternalConfig {
    /// UDP and TCP on this address.
    pub listen: SocketAddr,
    /// A SIP URI such as `sip:127.0.0.1:5080;transport=udp` (udp, tcp or tls).
    pub next_hop: String,
    pub max_connections: usize,
    /// The name the home pool knows this edge by (in its Record-Route);
    /// the federation FQDN when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// The home pool's addresses (IPs or CIDR networks): the only sources
    /// the internal listener accepts. Empty: the next hop's address (which
    /// must then be an address, not a host name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_sources: Vec<String>,
}

impl Default for InternalConfig {
    fn default() -> Self {
        InternalConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5065)),
            next_hop: "sip:127.0.0.1:5080;transport=udp".into(),
            max_connections: 256,
            fqdn: None,
            allowed_sources: Vec::new(),
        }
    }
}

/// The database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created when missing) or `postgres://...`.
    pub url: String,
    /// How often a running edge checks the registry for changes.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// On PostgreSQL, also LISTEN for the change notifications every
    /// registry write sends, and reload at once (the poll stays the
    /// fallback). Off: the poll alone.
    pub notify: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://var/fedge.db".into(),
            poll_interval: Duration::from_millis(250),
            notify: true,
        }
    }
}

/// The admin HTTP listener: the API, the console, health and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Serve HTTPS with the federation certificate and key (no client
    /// certificate); console cookies are then marked Secure.
    pub tls: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8061)),
            tls: false,
        }
    }
}

/// The public HTTP listener: the published list of federated
/// organisations, the CVI dialling instructions pages and the FPA intake
/// form. Needs no account; the admin API never listens here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicConfig {
    pub listen: SocketAddr,
    /// FPA submissions one source address (an IPv6 /64) may make per hour.
    pub fpa_per_hour: u32,
    /// Connections at once; more wait until one closes.
    pub max_connections: usize,
    /// Connections at once from one source address (an IPv6 /64); more
    /// are closed at once.
    pub max_connections_per_source: usize,
    /// A public connection is closed this long after it was accepted,
    /// whatever it is doing (a client trickling bytes cannot hold a slot).
    #[serde(with = "humantime_serde")]
    pub connection_lifetime: Duration,
    /// Anonymous FPA submissions are refused (503) while this many
    /// partners are in `requested` state, awaiting the home team.
    pub fpa_pending_max: usize,
    /// FPA submissions the public form takes per hour from all sources
    /// together; more are refused (503) until the hour ends.
    pub fpa_per_hour_total: u32,
}

impl Default for PublicConfig {
    fn default() -> Self {
        PublicConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8062)),
            fpa_per_hour: 10,
            max_connections: 256,
            max_connections_per_source: 32,
            connection_lifetime: Duration::from_secs(30),
            fpa_pending_max: 50,
            fpa_per_hour_total: 60,
        }
    }
}

/// SIP limits and timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    pub max_headers: usize,
    /// A connection with no traffic for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// RFC 3261 timer T1 (round-trip estimate): retransmissions start at
    /// T1 and transactions time out after 64*T1 (Timers B and F).
    #[serde(with = "humantime_serde")]
    pub t1: Duration,
    /// T2: the longest retransmission interval of non-INVITE requests.
    #[serde(with = "humantime_serde")]
    pub t2: Duration,
    /// T4: how long a message may linger in the network.
    #[serde(with = "humantime_serde")]
    pub t4: Duration,
    /// Timer C: how long an INVITE may ring before the edge cancels it.
    #[serde(with = "humantime_serde")]
    pub timer_c: Duration,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            max_head_bytes: 32 * 1024,
            max_body_bytes: 1024 * 1024,
            max_headers: 256,
            idle_timeout: Duration::from_secs(600),
            message_timeout: Duration::from_secs(10),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(181),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `fedge=debug,info`, ... (RUST_LOG overrides it).
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// Warnings of one kind that one source may cause per `repeat_window`
    /// (malformed messages, refused CVI calls); the rest are counted and
    /// summarised in one "suppressed N" line per window.
    pub repeat_limit: u32,
    #[serde(with = "humantime_serde")]
    pub repeat_window: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
            repeat_limit: 5,
            repeat_window: Duration::from_secs(10),
        }
    }
}
