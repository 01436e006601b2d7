//! The one TOML configuration file, its embedded defaults, and the
//! commented example `fedge config example` prints.
//!
//! Owns reading and checking settings. Every mistake becomes a
//! [`ConfigError`] whose message fits on one line and names the file, the
//! key and what is wrong; the CLI turns it into exit code 2. Relative paths
//! in a file are taken relative to that file's directory; the embedded
//! defaults are relative to the working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sip::uri::{Host, Scheme, Uri, parse_host};

/// A configuration problem, printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub federation: FederationConfig,
    pub internal: InternalConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub sip: SipConfig,
    pub policy: PolicyConfig,
    pub media: MediaSection,
    pub dns: DnsSection,
    pub cvi: CviSection,
    pub runtime: RuntimeConfig,
    pub log: LogConfig,
}

/// CVI gateway mode: room systems into Teams meetings by conference ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CviSection {
    pub enabled: bool,
    /// The SIP domain room systems dial (`teams@<domain>`, `<id>@<domain>`).
    pub domain: String,
    /// The reception's user part.
    pub reception: String,
    /// The test call's user part.
    pub test_call: String,
    /// How long the test call echoes before it hangs up.
    #[serde(with = "humantime_serde")]
    pub test_call_time: Duration,
    /// A tenant key room systems may dial as `<key>.<id>@<domain>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_key: Option<String>,
    /// SIP over UDP and TCP for room systems.
    pub listen: SocketAddr,
    /// SIP over TLS for room systems (the federation certificate; client
    /// certificates optional); off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_tls: Option<SocketAddr>,
    /// Where a meeting's calls go: a SIP URI template with `{id}` (and
    /// `{tenant}`), e.g. `sip:{id}@connector.example;transport=tls`.
    pub connector: String,
    /// `HOST:PORT` to send to instead of resolving the connector's host (labs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector_address: Option<String>,
    /// The relay's address towards room systems and towards the connector.
    pub media_address: std::net::IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_advertise: Option<std::net::IpAddr>,
    pub connector_media_address: std::net::IpAddr,
    pub media_port_min: u16,
    pub media_port_max: u16,
    /// Gateway calls at once on this node; more get 503 with Retry-After.
    pub max_calls: usize,
    /// Room systems trusted to bypass the lobby: IP addresses or subnets
    /// (`10.0.0.0/8`) and domains (`example.nhs.uk`) a room's verified TLS
    /// client certificate must name (a From domain is never proof).
    pub trusted: Vec<String>,
    /// Domains organisers may be enrolled from.
    pub organiser_domains: Vec<String>,
    /// Where the dialling instructions pages are published (the admin
    /// listener serves them at /cvi/<id>).
    pub instructions_base: String,
    /// A pause this long ends a conference ID entry.
    #[serde(with = "humantime_serde")]
    pub digit_pause: Duration,
    /// Wrong IDs before the reception says goodbye.
    pub tries: u32,
}

impl Default for CviSection {
    fn default() -> Self {
        let lo2 = std::net::IpAddr::from([127, 0, 0, 2]);
        CviSection {
            enabled: false,
            domain: "cvi.fedge.test".into(),
            reception: "teams".into(),
            test_call: "test_call".into(),
            test_call_time: Duration::from_secs(60),
            tenant_key: None,
            listen: SocketAddr::new(lo2, 5060),
            listen_tls: None,
            connector: "sip:{id}@connector.fedge.test;transport=tcp".into(),
            connector_address: None,
            media_address: lo2,
            media_advertise: None,
            connector_media_address: lo2,
            media_port_min: 40000,
            media_port_max: 49999,
            max_calls: 16,
            trusted: Vec::new(),
            organiser_domains: vec!["nhs.net".into()],
            instructions_base: "http://127.0.0.1:8061".into(),
            digit_pause: Duration::from_secs(3),
            tries: 3,
        }
    }
}

/// DNS: the zone the edge publishes, and where it looks partners up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// Serve the zone here (UDP and TCP); off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The edge's public addresses for A/AAAA records (default: the
    /// federation listener's address, when it is a specific one).
    pub addresses: Vec<std::net::IpAddr>,
    /// The port published in SRV records (default: the federation
    /// listener's port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_port: Option<u16>,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// The CVI gateway's SIP domain, published with SIP SRV records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvi_domain: Option<String>,
    pub cvi_port: u16,
    pub cvi_tls_port: u16,
    /// The name server fedge asks for partners' records (`IP:PORT`);
    /// default: the system's (/etc/resolv.conf).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<SocketAddr>,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            listen: None,
            addresses: Vec::new(),
            sip_port: None,
            ttl: Duration::from_secs(3600),
            cvi_domain: None,
            cvi_port: 5060,
            cvi_tls_port: 5061,
            resolver: None,
        }
    }
}

impl Config {
    /// What the edge publishes in DNS, from the configuration.
    pub fn publish(&self) -> Result<crate::dns::zone::Publish, ConfigError> {
        let listen = self.federation.listen;
        let addresses = if self.dns.addresses.is_empty() {
            if listen.ip().is_unspecified() {
                return Err(ConfigError(format!(
                    "[dns] addresses is empty and the federation listener is on {}: name the edge's public addresses",
                    listen.ip()
                )));
            }
            vec![listen.ip()]
        } else {
            self.dns.addresses.clone()
        };
        Ok(crate::dns::zone::Publish {
            home_domains: self.federation.home_domains.clone(),
            edge_fqdn: self.federation.fqdn.clone(),
            sip_port: self.dns.sip_port.unwrap_or(listen.port()),
            addresses,
            cvi_domain: self.dns.cvi_domain.clone(),
            cvi_port: self.dns.cvi_port,
            cvi_tls_port: self.dns.cvi_tls_port,
            ttl: self.dns.ttl.as_secs() as u32,
            serial: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(1),
        })
    }
}

/// The media relay for federated A/V calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// Anchor A/V media of calls crossing the edge on the relay.
    pub enabled: bool,
    /// Where the relay binds towards partners, and what it writes into
    /// their SDP when that differs (a 1:1 NAT).
    pub federation_address: std::net::IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub federation_advertise: Option<std::net::IpAddr>,
    /// The same towards the home pool.
    pub internal_address: std::net::IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_advertise: Option<std::net::IpAddr>,
    pub port_min: u16,
    pub port_max: u16,
    pub max_sessions: usize,
    /// A call with no media packet for this long has its relay session closed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for MediaSection {
    fn default() -> Self {
        let lo = std::net::IpAddr::from([127, 0, 0, 1]);
        MediaSection {
            enabled: true,
            federation_address: lo,
            federation_advertise: None,
            internal_address: lo,
            internal_advertise: None,
            port_min: 50000,
            port_max: 59999,
            max_sessions: 2500,
            timeout: Duration::from_secs(60),
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
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    /// Most TLS connections opened to one partner edge (SfB allows 1 to 4).
    pub partner_connections: usize,
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
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            partner_connections: 4,
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
}

impl Default for InternalConfig {
    fn default() -> Self {
        InternalConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5065)),
            next_hop: "sip:127.0.0.1:5080;transport=udp".into(),
            max_connections: 256,
            fqdn: None,
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://var/fedge.db".into(),
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// The admin HTTP listener (health and, later, pages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8061)),
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
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// The commented example printed by `fedge config example`; it equals the
/// embedded defaults (a test holds it to that).
pub const EXAMPLE: &str = r#"# fedge configuration. Every key is optional: what you leave out keeps the
# value shown here, which is also what `fedge serve` uses without --config.
# Relative paths are relative to this file's directory.

[federation]
# Where partners' edges connect: SIP over mutual TLS (SfB/Lync use 5061).
listen = "127.0.0.1:5061"
# This edge's public FQDN. It must be a name, not an address: it goes into
# Record-Route (Lync follows only FQDN routes), Warning headers and logs, and
# partners check it against our certificate.
fqdn = "sip.fedge.test"
# SIP domains of the home organisation. Partners may reach these only.
home_domains = ["fedge.test"]
# Our certificate chain and key (PEM). The certificate must name `fqdn`.
# Without --config, a development PKI is created under certs/dev/.
cert = "certs/dev/edge.crt"
key = "certs/dev/edge.key"
# PEM bundle of the CAs a partner's certificate must chain to.
trust = "certs/dev/ca.crt"
# A TLS handshake must finish within this time.
handshake_timeout = "10s"
# Most simultaneous partner connections.
max_connections = 1024
# Most TLS connections the edge opens to one partner's edge (1 to 4, as in
# SfB's OutgoingTlsCountForFederatedPartners); they are reused.
partner_connections = 4

[internal]
# Where the home pool (our SfB/Lync servers) sends traffic for partners:
# UDP and TCP on this address.
listen = "127.0.0.1:5065"
# Where admitted partner requests go: a SIP URI with transport udp, tcp or tls.
next_hop = "sip:127.0.0.1:5080;transport=udp"
# Most simultaneous TCP connections from the home pool.
max_connections = 256
# The name the home pool uses for this edge's internal side, as written in
# Record-Route. Unset: the federation fqdn.
# fqdn = "edge-int.fedge.test"

[store]
# sqlite://PATH (created if missing) for one node, postgres://... for several.
url = "sqlite://var/fedge.db"
# How often a running edge checks the store for registry changes (partners
# added, enabled, suspended, revoked). Changes act within about this time.
poll_interval = "250ms"

[admin]
# HTTP listener for health checks and operator pages. Keep it private.
listen = "127.0.0.1:8061"

[sip]
# Largest header section and body accepted; larger messages are refused
# with 513 and the connection is closed.
max_head_bytes = 32768
max_body_bytes = 1048576
# Most header fields in one message.
max_headers = 256
# A connection with no traffic for this long is closed.
idle_timeout = "10m"
# A message must be complete this long after its first byte arrived.
message_timeout = "10s"
# Transaction timers (RFC 3261 §17). T1 is the round-trip estimate: UDP
# retransmissions start at T1 and a request with no answer times out after
# 64*T1 (408). T2 caps non-INVITE retransmission intervals; T4 is how long
# a message may linger. Timer C bounds how long an INVITE may ring.
t1 = "500ms"
t2 = "4s"
t4 = "5s"
timer_c = "3m 1s"

[policy]
# Requests per second each partner may send (a token bucket refilled at this
# rate, holding up to `burst`); more are answered 503 with Retry-After. A
# partner's record may set its own rate (`fedge partner update D --set
# rate_limit=N`). SfB uses 20/s for discovered partners.
rate = 20
burst = 40
# User-enumeration guard: a partner may reach at most this many distinct home
# addresses per window; requests to further ones are refused (403).
enumeration_limit = 1000
enumeration_window = "1h"
# Media types allowed in bodies, in both directions; every part of a
# multipart body must be one of them. File transfer and recording are
# refused before this list is consulted.
body_types = [
    "text/plain",
    "text/html",
    "text/rtf",
    "application/sdp",
    "multipart/alternative",
    "multipart/mixed",
    "multipart/related",
    "application/im-iscomposing+xml",
    "application/ms-imdn+xml",
    "message/imdn+xml",
    "application/pidf+xml",
    "application/xpidf+xml",
    "text/xml+msrtc.pidf",
    "application/rlmi+xml",
    "application/msrtc-event-categories+xml",
    "application/msrtc-adrl-categorylist+xml",
    "application/msrtc-category-publish+xml",
    "application/xml",
]
# Largest body allowed across the edge (a larger one is refused with 413).
max_body_bytes = 65536
# Oldest products accepted from partners, read from User-Agent: Lync and
# SfB clients (UCCAPI/OC builds; Lync 2010 is 4.0.7577) and servers (RTC,
# RTCC). Other products (Cisco Jabber, consumer Skype, ...) are refused
# unless allowed here or on a partner's record (`--set product_check=off`).
min_client_version = "4.0.7577.4103"
min_server_version = "4.0"
allow_other_products = false
# The onboarding test address is sip:<test_user>@<each home domain>: a
# partner's technical contact sends it a MESSAGE and gets one back, which
# records the passed IM test that `partner enable` asks for.
test_user = "federation-test"
# IG certification: partners whose expiry date has passed are suspended
# automatically; a warning is logged this many days before.
ig_check_interval = "1h"
ig_warning_days = 30

[media]
# The relay that anchors the A/V media of calls crossing the edge (RTP,
# RTCP, SRTP, ICE-lite, RFC 4571 TCP). Each side of a call gets an even/odd
# port pair per stream from port_min-port_max.
enabled = true
# Where the relay binds towards partners; federation_advertise is written
# into SDP instead when partners reach it at another address (1:1 NAT).
federation_address = "127.0.0.1"
# federation_advertise = "192.0.2.10"
# The same towards the home pool.
internal_address = "127.0.0.1"
# internal_advertise = "10.0.0.10"
port_min = 50000
port_max = 59999
# Calls relayed at once; more are refused with 503 and the reason. Each
# stream of a call takes a port pair on each side: 5000 pairs carry 2500
# audio calls, 1250 with video.
max_sessions = 2500
# A call's relay session closes after this long without a media packet.
timeout = "60s"

[dns]
# fedge can publish its domains' records itself (hickory-server, UDP and
# TCP): _sipfederationtls._tcp and _sip._tls SRV for each home domain, A/AAAA
# for the names they point at, and the CVI domain's SIP records. Off unless
# listen is set; `fedge dns zone` prints the same records as zone files for
# your own DNS.
# listen = "0.0.0.0:53"
# The edge's public addresses for A/AAAA (default: the federation
# listener's address when it is a specific one).
addresses = []
# The port published in SRV records (default: the federation listener's).
# sip_port = 5061
ttl = "1h"
# cvi_domain = "cvi.example.org"
cvi_port = 5060
cvi_tls_port = 5061
# The name server fedge asks for partners' SRV and A records, as IP:PORT
# (default: the system's, from /etc/resolv.conf).
# resolver = "192.0.2.53:53"

[cvi]
# CVI gateway mode: video room systems dial teams@<domain> and type a
# meeting's 10-digit conference ID, or dial <id>@<domain>; fedge bridges
# them to the connector (the Teams side) as a B2BUA, media through its
# relay. Off by default; its loopback defaults use 127.0.0.2, away from the
# federation listener.
enabled = false
domain = "cvi.fedge.test"
reception = "teams"
test_call = "test_call"
test_call_time = "1m"
# tenant_key = "12345678"          # also dialable as <key>.<id>@<domain>
# SIP over UDP and TCP for room systems (5060 on their own address in
# production), and over TLS (5061; client certificates optional).
listen = "127.0.0.2:5060"
# listen_tls = "127.0.0.2:5061"
# A meeting's calls go here; {id} is its conference ID, {tenant} the key.
connector = "sip:{id}@connector.fedge.test;transport=tcp"
# connector_address = "192.0.2.20:5061"
media_address = "127.0.0.2"
# media_advertise = "203.0.113.20"
connector_media_address = "127.0.0.2"
media_port_min = 40000
media_port_max = 49999
# Gateway calls at once on this node (one Teams Connector VM handles 16).
max_calls = 16
# Room systems that may bypass the lobby: addresses, subnets, and domains
# that a room's TLS client certificate must name (the From is not proof).
trusted = []
organiser_domains = ["nhs.net"]
instructions_base = "http://127.0.0.1:8061"
digit_pause = "3s"
tries = 3

[runtime]
# Worker threads. 1 runs the edge on one thread: the least CPU per message,
# since no message is handed between threads (measured in docs/benchmarks.md).
# More threads spread load over cores at some cost per message.
threads = 1

[log]
# A tracing filter such as "info" or "fedge=debug,info"; RUST_LOG overrides it.
level = "info"
# "text" for people, "json" for log collectors.
format = "text"
"#;

/// A media port range: above the well-known ports and holding at least two
/// even/odd pairs (`lo` and `hi` are keys as the user wrote them).
fn port_range(lo: &str, hi: &str, min: u16, max: u16) -> Result<(), ConfigError> {
    if min < 1024 || u32::from(max) < u32::from(min) + 3 {
        return Err(ConfigError(format!(
            "{lo} {min} - {hi} {max} must be a range above 1023 holding at least two even/odd pairs"
        )));
    }
    Ok(())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        let mut cfg = Config::from_toml(&text)
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))?;
        Ok(cfg)
    }

    /// Parses TOML text (no path resolution, no checks).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let (l, c) = line_col(text, span.start);
                    ConfigError(format!("line {l}, column {c}: {msg}"))
                }
                None => ConfigError(msg),
            }
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.federation.cert,
            &mut self.federation.key,
            &mut self.federation.trust,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(rest) = self.store.url.strip_prefix("sqlite://") {
            let p = Path::new(rest);
            if p.is_relative() && !rest.starts_with(':') && !rest.is_empty() {
                self.store.url = format!("sqlite://{}", base.join(p).display());
            }
        }
    }

    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.federation;
        match parse_host(&f.fqdn) {
            Ok(Host::Name(n)) if n.contains('.') => {}
            Ok(Host::Name(_)) => {
                return Err(ConfigError(format!(
                    "[federation] fqdn {:?} must be a fully qualified domain name",
                    f.fqdn
                )));
            }
            Ok(_) => {
                return Err(ConfigError(format!(
                    "[federation] fqdn {:?} must be a name, not an IP address (Lync follows only FQDN routes)",
                    f.fqdn
                )));
            }
            Err(_) => {
                return Err(ConfigError(format!(
                    "[federation] fqdn {:?} is not a valid host name",
                    f.fqdn
                )));
            }
        }
        if f.home_domains.is_empty() {
            return Err(ConfigError(
                "[federation] home_domains must name at least one SIP domain".into(),
            ));
        }
        for (i, d) in f.home_domains.iter().enumerate() {
            if !matches!(parse_host(d), Ok(Host::Name(_))) {
                return Err(ConfigError(format!(
                    "[federation] home_domains: {d:?} is not a valid domain name"
                )));
            }
            if f.home_domains[..i]
                .iter()
                .any(|o| o.eq_ignore_ascii_case(d))
            {
                return Err(ConfigError(format!(
                    "[federation] home_domains lists {d:?} twice"
                )));
            }
        }
        if f.handshake_timeout.is_zero() {
            return Err(ConfigError(
                "[federation] handshake_timeout must be greater than zero".into(),
            ));
        }
        if f.max_connections == 0 || self.internal.max_connections == 0 {
            return Err(ConfigError("max_connections must be at least 1".into()));
        }
        self.next_hop()?;
        let url = &self.store.url;
        if !(url.starts_with("sqlite://")
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(format!(
                "[store] url {url:?} must start with sqlite:// or postgres://"
            )));
        }
        let s = &self.sip;
        if s.max_head_bytes < 1024 {
            return Err(ConfigError(
                "[sip] max_head_bytes must be at least 1024".into(),
            ));
        }
        if s.max_headers < 8 {
            return Err(ConfigError("[sip] max_headers must be at least 8".into()));
        }
        if !(1..=4).contains(&f.partner_connections) {
            return Err(ConfigError(
                "[federation] partner_connections must be from 1 to 4".into(),
            ));
        }
        if let Some(n) = &self.internal.fqdn
            && !matches!(parse_host(n), Ok(Host::Name(_)))
        {
            return Err(ConfigError(format!(
                "[internal] fqdn {n:?} must be a host name"
            )));
        }
        if self.sip.t1.is_zero()
            || self.sip.t2 < self.sip.t1
            || self.sip.t4.is_zero()
            || self.sip.timer_c.is_zero()
        {
            return Err(ConfigError(
                "[sip] timers must be positive and t2 at least t1".into(),
            ));
        }
        if self.store.poll_interval.is_zero() || self.store.poll_interval > Duration::from_secs(1) {
            return Err(ConfigError(
                "[store] poll_interval must be more than 0 and at most 1s".into(),
            ));
        }
        if s.idle_timeout.is_zero() || s.message_timeout.is_zero() {
            return Err(ConfigError(
                "[sip] idle_timeout and message_timeout must be greater than zero".into(),
            ));
        }
        let p = &self.policy;
        if p.rate == 0 || p.burst == 0 {
            return Err(ConfigError(
                "[policy] rate and burst must be at least 1".into(),
            ));
        }
        if p.enumeration_limit == 0 || p.enumeration_window.is_zero() {
            return Err(ConfigError(
                "[policy] enumeration_limit and enumeration_window must be positive".into(),
            ));
        }
        for t in &p.body_types {
            if crate::sip::body::media_type(t) != t.to_ascii_lowercase() {
                return Err(ConfigError(format!(
                    "[policy] body_types: {t:?} is not a media type like text/plain"
                )));
            }
        }
        for (k, v) in [
            ("min_client_version", &p.min_client_version),
            ("min_server_version", &p.min_server_version),
        ] {
            if crate::federation::product::Version::parse(v).is_none() {
                return Err(ConfigError(format!(
                    "[policy] {k} {v:?} is not a dotted version like 4.0.7577.4103"
                )));
            }
        }
        if !crate::sip::grammar::is_token(&p.test_user) {
            return Err(ConfigError(format!(
                "[policy] test_user {:?} is not a valid SIP user",
                p.test_user
            )));
        }
        if p.ig_check_interval.is_zero() {
            return Err(ConfigError(
                "[policy] ig_check_interval must be positive".into(),
            ));
        }
        let m = &self.media;
        port_range("[media] port_min", "port_max", m.port_min, m.port_max)?;
        if m.max_sessions == 0 || m.timeout.is_zero() {
            return Err(ConfigError(
                "[media] max_sessions and timeout must be positive".into(),
            ));
        }
        if m.enabled {
            // What each side is told to send media to must reach the relay.
            for (side, bind, adv, listener) in [
                (
                    "federation",
                    m.federation_address,
                    m.federation_advertise,
                    self.federation.listen.ip(),
                ),
                (
                    "internal",
                    m.internal_address,
                    m.internal_advertise,
                    self.internal.listen.ip(),
                ),
            ] {
                let told = adv.unwrap_or(bind);
                if told.is_unspecified() {
                    return Err(ConfigError(format!(
                        "[media] {side}_address {bind} binds every interface: set {side}_advertise to the address the {side} side reaches the relay at"
                    )));
                }
                if told.is_loopback() && !listener.is_loopback() {
                    return Err(ConfigError(format!(
                        "[media] {side}_address is {told} (loopback) while the {side} SIP listener is on {listener}: set [media] {side}_address (and {side}_advertise behind NAT), or enabled = false"
                    )));
                }
            }
        }
        let ttl = self.dns.ttl.as_secs();
        if !(1..=604_800).contains(&ttl) {
            return Err(ConfigError("[dns] ttl must be from 1s to 7 days".into()));
        }
        if let Some(c) = &self.dns.cvi_domain
            && (c.is_empty()
                || !c.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }))
        {
            return Err(ConfigError(format!(
                "[dns] cvi_domain {c:?} is not a domain name"
            )));
        }
        if self.dns.listen.is_some() {
            self.publish()?;
        }
        let c = &self.cvi;
        if c.enabled {
            if !c.connector.contains("{id}") || !c.connector.starts_with("sip") {
                return Err(ConfigError(format!(
                    "[cvi] connector {:?} must be a SIP URI template with {{id}}",
                    c.connector
                )));
            }
            // Room systems are given these in Via and Contact headers.
            for (key, a) in [("listen", Some(c.listen)), ("listen_tls", c.listen_tls)] {
                if let Some(a) = a
                    && a.ip().is_unspecified()
                {
                    return Err(ConfigError(format!(
                        "[cvi] {key} {a}: give the gateway's own address, not a wildcard (room systems are sent it in Contact headers)"
                    )));
                }
            }
            let clash = |a: SocketAddr, b: SocketAddr| {
                // Port 0 takes a free port: it clashes with nothing.
                a.port() != 0
                    && a.port() == b.port()
                    && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
            };
            if clash(c.listen, self.federation.listen)
                || clash(c.listen, self.internal.listen)
                || clash(c.listen, self.admin.listen)
                || self.dns.listen.is_some_and(|d| clash(c.listen, d))
            {
                return Err(ConfigError(format!(
                    "[cvi] listen {} is the address of another listener",
                    c.listen
                )));
            }
            port_range(
                "[cvi] media_port_min",
                "media_port_max",
                c.media_port_min,
                c.media_port_max,
            )?;
            if let Some(t) = c.listen_tls
                && (clash(t, self.federation.listen)
                    || clash(t, c.listen)
                    || clash(t, self.admin.listen))
            {
                return Err(ConfigError(format!(
                    "[cvi] listen_tls {t} is the address of another listener"
                )));
            }
            self.cvi_connector_address()?;
            if self.media.enabled
                && c.media_port_min <= self.media.port_max
                && self.media.port_min <= c.media_port_max
            {
                return Err(ConfigError(format!(
                    "[cvi] media ports {}-{} overlap [media] ports {}-{}",
                    c.media_port_min, c.media_port_max, self.media.port_min, self.media.port_max
                )));
            }
            if c.max_calls == 0 || c.tries == 0 {
                return Err(ConfigError(
                    "[cvi] max_calls and tries must be positive".into(),
                ));
            }
            for t in &c.trusted {
                if crate::cvi::Trust::parse(t).is_none() {
                    return Err(ConfigError(format!(
                        "[cvi] trusted {t:?} is not an address, a subnet or a domain"
                    )));
                }
            }
        }
        if !(1..=64).contains(&self.runtime.threads) {
            return Err(ConfigError("[runtime] threads must be from 1 to 64".into()));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError(format!(
                "[log] format {:?} must be \"text\" or \"json\"",
                self.log.format
            )));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError(format!(
                "[log] level {:?} is not a valid filter: {e}",
                self.log.level
            ))
        })?;
        Ok(())
    }

    /// The parsed `[cvi] connector_address` (`HOST:PORT`, IPv6 in brackets).
    pub fn cvi_connector_address(&self) -> Result<Option<(String, u16)>, ConfigError> {
        let Some(raw) = &self.cvi.connector_address else {
            return Ok(None);
        };
        let bad = || ConfigError(format!("[cvi] connector_address {raw:?} must be HOST:PORT"));
        let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Some((host.to_string(), port)))
    }

    /// The parsed `[internal] next_hop`: host, port and transport.
    pub fn next_hop(&self) -> Result<NextHop, ConfigError> {
        let raw = &self.internal.next_hop;
        let bad = |why: &str| ConfigError(format!("[internal] next_hop {raw:?}: {why}"));
        let u = Uri::parse(raw).map_err(|e| bad(&e.to_string()))?;
        if !u.is_sip() {
            return Err(bad("must be a sip: or sips: URI"));
        }
        if u.user.is_some() {
            return Err(bad("must name a host, not a user"));
        }
        let transport = match u.transport().map(str::to_ascii_lowercase) {
            None if u.scheme == Scheme::Sips => "tls".to_string(),
            None => "udp".to_string(),
            Some(t) if matches!(t.as_str(), "udp" | "tcp" | "tls") => t,
            Some(t) => return Err(bad(&format!("transport {t:?} is not udp, tcp or tls"))),
        };
        // Bare (an IPv6 address without its URI brackets): it is resolved,
        // parsed as an address and used as a TLS server name as it is.
        let host = match u.host.ok_or_else(|| bad("has no host"))? {
            crate::sip::uri::Host::V6(a) => a.to_string(),
            h => h.to_string(),
        };
        let port = u
            .port
            .unwrap_or(if transport == "tls" { 5061 } else { 5060 });
        Ok(NextHop {
            host,
            port,
            transport,
        })
    }
}

/// Where admitted partner requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: String,
    pub port: u16,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_equals_the_embedded_defaults() {
        let parsed = Config::from_toml(EXAMPLE).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn example_names_every_key() {
        let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let defaults: toml::Table =
            toml::from_str(&toml::to_string(&Config::default()).unwrap()).unwrap();
        for (section, table) in &defaults {
            let ex = example
                .get(section)
                .and_then(|v| v.as_table())
                .unwrap_or_else(|| panic!("example lacks [{section}]"));
            for key in table.as_table().unwrap().keys() {
                assert!(ex.contains_key(key), "example lacks [{section}] {key}");
            }
        }
        Config::default().validate().unwrap();
    }

    #[test]
    fn media_addresses_must_reach_the_relay() {
        let check = |toml: &str| Config::from_toml(toml).unwrap().validate();
        // A public federation listener with the loopback media default.
        let e = check("[federation]\nlisten = \"192.0.2.10:5061\"\n").unwrap_err();
        assert!(
            e.0.contains("[media] federation_address is 127.0.0.1 (loopback)"),
            "{}",
            e.0
        );
        // Binding every interface needs an address to advertise.
        let e = check("[media]\nfederation_address = \"0.0.0.0\"\n").unwrap_err();
        assert!(e.0.contains("set federation_advertise"), "{}", e.0);
        check("[federation]\nlisten = \"192.0.2.10:5061\"\n[media]\nfederation_address = \"0.0.0.0\"\nfederation_advertise = \"192.0.2.10\"\n").unwrap();
        // Or no relay at all.
        check("[federation]\nlisten = \"192.0.2.10:5061\"\n[media]\nenabled = false\n").unwrap();
        let e = check("[media]\nport_min = 60000\nport_max = 60001\n").unwrap_err();
        assert!(e.0.contains("at least two even/odd pairs"), "{}", e.0);
    }

    #[test]
    fn errors_are_one_line_and_say_where() {
        let e = Config::from_toml("[federation]\nlisen = \"1.2.3.4:5\"\n").unwrap_err();
        assert!(
            e.0.starts_with("line 2, column 1: unknown field `lisen`"),
            "{}",
            e.0
        );
        assert!(!e.0.contains('\n'));
        let e = Config::from_toml("[federation]\nlisten = \"nonsense\"\n").unwrap_err();
        assert!(e.0.contains("line 2"), "{}", e.0);
        let e = Config::from_toml("[sip]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert!(e.0.contains("line 2"), "{}", e.0);
    }

    #[test]
    fn values_are_checked() {
        let mut c = Config::default();
        c.federation.fqdn = "192.0.2.1".into();
        assert!(c.validate().unwrap_err().0.contains("not an IP address"));
        let mut c = Config::default();
        c.internal.next_hop = "sip:pool.fedge.test;transport=sctp".into();
        assert!(c.validate().unwrap_err().0.contains("sctp"));
        let mut c = Config::default();
        c.store.url = "mysql://x".into();
        assert!(c.validate().is_err());
        let c = Config::default();
        assert_eq!(
            c.next_hop().unwrap(),
            NextHop {
                host: "127.0.0.1".into(),
                port: 5080,
                transport: "udp".into()
            }
        );
        let mut c = Config::default();
        c.internal.next_hop = "sip:[::1]:5090;transport=tcp".into();
        let nh = c.next_hop().unwrap();
        assert_eq!((nh.host.as_str(), nh.port), ("::1", 5090));
        assert!(nh.host.parse::<std::net::IpAddr>().is_ok());
    }

    #[test]
    fn cvi_listeners_are_checked() {
        let cvi = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            c.cvi.enabled = true;
            f(&mut c);
            c.validate().err().map(|e| e.0).unwrap_or_default()
        };
        assert_eq!(cvi(&|_| {}), "", "the defaults are valid");
        assert!(
            cvi(&|c| c.cvi.listen = "0.0.0.0:5060".parse().unwrap()).contains("not a wildcard")
        );
        assert!(
            cvi(&|c| c.cvi.listen_tls = Some("[::]:5061".parse().unwrap())).contains("listen_tls")
        );
        let e = cvi(&|c| c.cvi.listen = c.internal.listen);
        assert!(
            e.contains("[cvi] listen") && e.contains("another listener"),
            "{e}"
        );
        let e = cvi(&|c| c.cvi.listen_tls = Some(c.federation.listen));
        assert!(e.contains("another listener"), "{e}");
        let e = cvi(&|c| {
            c.media.enabled = true;
            c.cvi.media_port_min = 50000;
            c.cvi.media_port_max = 50100;
        });
        assert!(e.contains("overlap"), "{e}");
        assert!(cvi(&|c| c.cvi.trusted = vec!["not a/thing".into()]).contains("trusted"));
        assert!(cvi(&|c| c.cvi.max_calls = 0).contains("max_calls"));
        // The top of the port space is refused, not overflowed.
        let e = cvi(&|c| {
            c.cvi.media_port_min = 65535;
            c.cvi.media_port_max = 65535;
        });
        assert!(e.contains("[cvi] media_port_min 65535"), "{e}");
        let mut c = Config::default();
        c.media.enabled = true;
        c.media.port_min = 50000;
        c.media.port_max = 50002;
        let e = c.validate().err().map(|e| e.0).unwrap_or_default();
        assert!(e.contains("two even/odd pairs"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fedge.toml");
        std::fs::write(
            &p,
            "[federation]\ncert = \"tls/edge.crt\"\n[store]\nurl = \"sqlite://db/fedge.db\"\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.federation.cert, dir.path().join("tls/edge.crt"));
        assert_eq!(
            c.store.url,
            format!("sqlite://{}", dir.path().join("db/fedge.db").display())
        );
    }
}
