//! The optional services' sections: the media relay, DNS, and the CVI
//! gateway, with their defaults.
//!
//! Owns the shape and the defaults of these settings. It never checks
//! values (validate.rs does) and never reads files.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// Where the dialling instructions pages are published (the public
    /// listener serves them at /cvi/<id>).
    pub instructions_base: String,
    /// A pause this long ends a conference ID entry.
    #[serde(with = "humantime_serde")]
    pub digit_pause: Duration,
    /// Wrong IDs before the reception says goodbye.
    pub tries: u32,
    /// Calls one source address (an IPv4 address or an IPv6 /64) may hold
    /// at once; more get 503. An SBC carrying many rooms needs more.
    pub max_calls_per_source: usize,
    /// How long the gateway's 200 to a room (reception, test call, direct
    /// dial) waits for the room's ACK before it hangs up.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// A new UDP source must answer an OPTIONS probe (proof that the
    /// address is its own) before its INVITE commits anything. Off only
    /// where every UDP source is known not to be spoofable.
    pub udp_probe: bool,
    /// How long the probe waits for its answer.
    #[serde(with = "humantime_serde")]
    pub udp_probe_timeout: Duration,
    /// How long a UDP source that answered the probe stays proven.
    #[serde(with = "humantime_serde")]
    pub udp_proven_for: Duration,
    /// Trust (lobby bypass) by source address for UDP calls too. UDP
    /// source addresses can be spoofed: off unless the network in front of
    /// the gateway drops spoofed packets.
    pub trust_udp: bool,
    /// Wrong conference IDs one source may try within `guess_window`
    /// before it is locked out.
    pub guess_budget: u32,
    /// Wrong conference IDs from all sources within `guess_window`; once
    /// spent, a source that has tried a wrong ID is locked out at once.
    pub guess_budget_global: u32,
    #[serde(with = "humantime_serde")]
    pub guess_window: Duration,
    /// The first lockout; each further one from the same source doubles
    /// it, up to an hour.
    #[serde(with = "humantime_serde")]
    pub guess_lockout: Duration,
    /// A meeting created without `--expires` ends this long after it was
    /// created.
    #[serde(with = "humantime_serde")]
    pub meeting_lifetime: Duration,
    /// The CVI TCP and TLS listeners' admission, each: established
    /// connections in all and from one source address, TLS handshakes in
    /// all and from one source, and the handshake's deadline.
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub max_handshakes: usize,
    pub max_handshakes_per_source: usize,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A room's TCP or TLS connection that sends no message this long
    /// after it was accepted is closed.
    #[serde(with = "humantime_serde")]
    pub first_message_timeout: Duration,
    /// H.323 room systems too (call signalling, RAS, H.245), interworked
    /// to SIP inside the gateway.
    pub h323: bool,
    /// H.225.0/Q.931 call signalling over TCP (1720 on the CVI address).
    pub h323_listen: SocketAddr,
    /// RAS over UDP (1719): LRQ answered, GRQ refused.
    pub h323_ras: SocketAddr,
    /// The range separate H.245 channels listen on (our H.245 address).
    pub h245_port_min: u16,
    pub h245_port_max: u16,
    /// Browsers may join from the instructions page (WebRTC, issue 20):
    /// ICE and plain RTP on the media range of `media_address`.
    pub webrtc: bool,
    /// ICE-TCP for browsers on networks that block UDP: this TCP port on
    /// `media_address` (advertised on `media_advertise`), shared by every
    /// browser call (RFC 6544 passive candidate, RFC 4571 framing). Off
    /// when absent; needs `webrtc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webrtc_tcp: Option<u16>,
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
            instructions_base: "http://127.0.0.1:8062".into(),
            digit_pause: Duration::from_secs(3),
            tries: 3,
            max_calls_per_source: 4,
            ack_timeout: Duration::from_secs(8),
            udp_probe: true,
            udp_probe_timeout: Duration::from_secs(2),
            udp_proven_for: Duration::from_secs(600),
            trust_udp: false,
            guess_budget: 5,
            guess_budget_global: 100,
            guess_window: Duration::from_secs(600),
            guess_lockout: Duration::from_secs(60),
            meeting_lifetime: Duration::from_secs(90 * 86400),
            max_connections: 80,
            max_connections_per_source: 8,
            max_handshakes: 80,
            max_handshakes_per_source: 8,
            handshake_timeout: Duration::from_secs(10),
            first_message_timeout: Duration::from_secs(20),
            h323: false,
            h323_listen: SocketAddr::new(lo2, 1720),
            h323_ras: SocketAddr::new(lo2, 1719),
            h245_port_min: 33000,
            h245_port_max: 39999,
            webrtc: false,
            webrtc_tcp: None,
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
    /// Relay sessions one partner may hold at once (calls either way).
    pub max_sessions_per_partner: usize,
    /// Port pairs one partner's calls may hold at once (a stream takes one
    /// pair per side).
    pub max_pairs_per_partner: usize,
    /// Networks the relay may send media to (SDP addresses, latched
    /// sources), on both relays and both sides.
    pub allowed_networks: Vec<String>,
    /// Networks never sent to, even inside `allowed_networks`.
    pub refused_networks: Vec<String>,
    /// Further networks refused on the partner side (federation partners,
    /// and CVI room systems): private space by default.
    pub partner_refused_networks: Vec<String>,
    /// Latch a side to its first packet from any allowed host, not only
    /// from the hosts it signalled: for endpoints whose media comes from a
    /// host neither their SDP nor their SIP names, without ICE. Whoever
    /// sends first then takes the stream.
    pub latch_any_host: bool,
    /// Threads that read and forward the relay's UDP media, each with its
    /// own event loop, apart from the `[runtime]` threads (shared by the
    /// federation relay and the CVI gateway's). 1 to 64.
    pub threads: usize,
    /// How the media threads move packets: "epoll" (a system call per
    /// packet each way) or "io_uring" (one per round, issue 18; a thread
    /// whose ring the kernel refuses serves with epoll and says so).
    pub io: String,
    /// With io_uring: give each latched peer a socket connected to it on
    /// the relay's port (`SO_REUSEPORT`; no route lookup per packet sent to
    /// it, D258). Off: every packet goes through the relay sockets.
    pub connect_peers: bool,
}

impl MediaSection {
    /// `io` as the engine's setting (validated at load).
    pub fn engine_io(&self) -> crate::media::engine::Io {
        match self.io.as_str() {
            "io_uring" => crate::media::engine::Io::IoUring,
            _ => crate::media::engine::Io::Epoll,
        }
    }
}

impl MediaSection {
    /// Where the relay may send media on the home side (and the CVI
    /// connector side), and on the partner (and room) side.
    pub fn networks(
        &self,
    ) -> Result<[crate::media::networks::Networks; 2], crate::media::networks::NetworkError> {
        use crate::media::networks::Networks;
        let home = Networks::new(&self.allowed_networks, &self.refused_networks)?;
        let both: Vec<&String> = self
            .refused_networks
            .iter()
            .chain(&self.partner_refused_networks)
            .collect();
        let partner = Networks::new(&self.allowed_networks, &both)?;
        Ok([partner, home])
    }
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
            max_sessions_per_partner: 250,
            max_pairs_per_partner: 1000,
            allowed_networks: vec!["0.0.0.0/0".into(), "::/0".into()],
            refused_networks: crate::media::networks::DEFAULT_REFUSED
                .iter()
                .map(|s| s.to_string())
                .collect(),
            partner_refused_networks: crate::media::networks::DEFAULT_PARTNER_REFUSED
                .iter()
                .map(|s| s.to_string())
                .collect(),
            latch_any_host: false,
            threads: crate::media::engine::DEFAULT_THREADS,
            io: match crate::media::engine::DEFAULT_IO {
                crate::media::engine::Io::IoUring => "io_uring".into(),
                crate::media::engine::Io::Epoll => "epoll".into(),
            },
            connect_peers: true,
        }
    }
}
