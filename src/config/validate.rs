//! Checking values the types cannot: names, ranges, listeners that clash,
//! media addresses each side can reach.
//!
//! Owns the rules a configuration must meet before the edge starts, in a
//! fixed order (the first problem found is the one reported). It never
//! changes a value and never touches the network or files.

use std::net::SocketAddr;
use std::time::Duration;

use crate::sip::uri::{Host, parse_host};

use super::edge::Config;
use super::error::ConfigError;

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

impl Config {
    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_federation()?;
        self.check_store_and_sip()?;
        self.check_policy()?;
        self.check_media()?;
        self.check_dns()?;
        self.check_cvi()?;
        self.check_public()?;
        self.check_runtime_and_log()?;
        self.check_operations()?;
        Ok(())
    }

    /// The public listener: its own address, and a positive FPA budget.
    fn check_public(&self) -> Result<(), ConfigError> {
        let p = &self.public;
        let clash = |b: SocketAddr| {
            // Port 0 takes a free port: it clashes with nothing.
            p.listen.port() != 0
                && p.listen.port() == b.port()
                && (p.listen.ip() == b.ip()
                    || p.listen.ip().is_unspecified()
                    || b.ip().is_unspecified())
        };
        let mut others = vec![
            ("[admin] listen", self.admin.listen),
            ("[federation] listen", self.federation.listen),
            ("[internal] listen", self.internal.listen),
        ];
        if let Some(d) = self.dns.listen {
            others.push(("[dns] listen", d));
        }
        if self.cvi.enabled {
            others.push(("[cvi] listen", self.cvi.listen));
            if let Some(t) = self.cvi.listen_tls {
                others.push(("[cvi] listen_tls", t));
            }
        }
        if let Some((what, _)) = others.iter().find(|(_, a)| clash(*a)) {
            return Err(ConfigError(format!(
                "[public] listen {} is the address of {what}: give the public listener its own port",
                p.listen
            )));
        }
        if p.fpa_per_hour == 0 {
            return Err(ConfigError(
                "[public] fpa_per_hour must be at least 1".into(),
            ));
        }
        if p.fpa_per_hour_total == 0 || p.fpa_pending_max == 0 {
            return Err(ConfigError(
                "[public] fpa_per_hour_total and fpa_pending_max must be at least 1".into(),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&p.connection_lifetime) {
            return Err(ConfigError(format!(
                "[public] connection_lifetime {} must be from 1s to 1h",
                humantime::format_duration(p.connection_lifetime)
            )));
        }
        if p.max_connections_per_source == 0 || p.max_connections_per_source > p.max_connections {
            return Err(ConfigError(format!(
                "[public] max_connections_per_source must be from 1 to max_connections ({})",
                p.max_connections
            )));
        }
        Ok(())
    }

    /// The federation listener's identity and limits, and the next hop.
    fn check_federation(&self) -> Result<(), ConfigError> {
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
        if f.max_chain_certs == 0 || f.max_chain_bytes < 512 {
            return Err(ConfigError(
                "[federation] max_chain_certs must be at least 1 and max_chain_bytes at least 512"
                    .into(),
            ));
        }
        if f.max_connections == 0 || self.internal.max_connections == 0 {
            return Err(ConfigError("max_connections must be at least 1".into()));
        }
        self.check_admission()?;
        self.next_hop()?;
        self.internal_sources()?;
        Ok(())
    }

    /// The federation listener's admission budgets.
    fn check_admission(&self) -> Result<(), ConfigError> {
        let f = &self.federation;
        if f.max_handshakes == 0 {
            return Err(ConfigError(
                "[federation] max_handshakes must be at least 1".into(),
            ));
        }
        if !(1..=f.max_handshakes).contains(&f.max_handshakes_per_source) {
            return Err(ConfigError(format!(
                "[federation] max_handshakes_per_source must be from 1 to max_handshakes ({})",
                f.max_handshakes
            )));
        }
        if f.max_transactions_per_source == 0 || f.refusals_per_second == 0 || f.refusal_burst == 0
        {
            return Err(ConfigError(
                "[federation] max_transactions_per_source, refusals_per_second and refusal_burst must be at least 1"
                    .into(),
            ));
        }
        if !(1..=f.max_connections).contains(&f.max_connections_per_source) {
            return Err(ConfigError(format!(
                "[federation] max_connections_per_source must be from 1 to max_connections ({})",
                f.max_connections
            )));
        }
        if !(1..=1_000_000).contains(&f.tls_session_cache) {
            return Err(ConfigError(
                "[federation] tls_session_cache must be from 1 to 1000000".into(),
            ));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&f.tls_ticket_rotation)
        {
            return Err(ConfigError(
                "[federation] tls_ticket_rotation must be from 1m to 24h".into(),
            ));
        }
        if !(1..=f.max_connections).contains(&f.max_connections_per_identity) {
            return Err(ConfigError(format!(
                "[federation] max_connections_per_identity must be from 1 to max_connections ({})",
                f.max_connections
            )));
        }
        Ok(())
    }

    /// The store, the SIP limits and timers, and the internal name.
    fn check_store_and_sip(&self) -> Result<(), ConfigError> {
        let f = &self.federation;
        let url = &self.store.url;
        if !(url.starts_with("sqlite://")
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(format!(
                "[store] url {:?} must start with sqlite:// or postgres://",
                crate::store::redact_url(url)
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
        Ok(())
    }

    /// The policy: rates, body types, product versions, the test user.
    fn check_policy(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The media relay: ports, limits, and addresses both sides can reach.
    fn check_media(&self) -> Result<(), ConfigError> {
        let m = &self.media;
        port_range("[media] port_min", "port_max", m.port_min, m.port_max)?;
        if m.max_sessions == 0 || m.timeout.is_zero() {
            return Err(ConfigError(
                "[media] max_sessions and timeout must be positive".into(),
            ));
        }
        if m.max_sessions_per_partner == 0 || m.max_pairs_per_partner < 2 {
            return Err(ConfigError(
                "[media] max_sessions_per_partner must be positive and max_pairs_per_partner at least 2 (one stream)".into(),
            ));
        }
        m.networks()
            .map_err(|e| ConfigError(format!("[media] networks: {e}")))?;
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
        Ok(())
    }

    /// DNS: the TTL, the CVI domain, and what is published.
    fn check_dns(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The CVI gateway (only when enabled): connector, listeners, ports, trust.
    fn check_cvi(&self) -> Result<(), ConfigError> {
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
            c.check_guards()?;
            self.check_h323()?;
            if let Some(p) = c.webrtc_tcp {
                let at = SocketAddr::new(c.media_address, p);
                let taken = [
                    Some(c.listen),
                    c.listen_tls,
                    c.h323.then_some(c.h323_listen),
                ]
                .into_iter()
                .flatten()
                .any(|l| clash(at, l))
                    || clash(at, self.admin.listen);
                if !c.webrtc || p == 0 || taken {
                    return Err(ConfigError(format!(
                        "[cvi] webrtc_tcp {p} needs webrtc = true and a port of its own on media_address {}",
                        c.media_address
                    )));
                }
            }
            for t in &c.trusted {
                if crate::cvi::Trust::parse(t).is_none() {
                    return Err(ConfigError(format!(
                        "[cvi] trusted {t:?} is not an address, a subnet or a domain"
                    )));
                }
            }
        }
        Ok(())
    }

    /// `[cvi] h323*`: specific addresses, no clash with the SIP listeners,
    /// an H.245 range away from the media ports.
    fn check_h323(&self) -> Result<(), ConfigError> {
        let c = &self.cvi;
        if !c.h323 {
            return Ok(());
        }
        if c.h323_listen.ip().is_unspecified() {
            return Err(ConfigError(format!(
                "[cvi] h323_listen {}: give the gateway's own address, not a wildcard (room systems are sent it in LCF and Connect)",
                c.h323_listen
            )));
        }
        let same = |a: SocketAddr, b: SocketAddr| {
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        let mut tcp = vec![
            self.federation.listen,
            self.internal.listen,
            self.admin.listen,
            c.listen,
        ];
        tcp.extend(c.listen_tls);
        tcp.extend(self.dns.listen);
        if tcp.iter().any(|o| same(c.h323_listen, *o)) {
            return Err(ConfigError(format!(
                "[cvi] h323_listen {} is the address of another listener",
                c.h323_listen
            )));
        }
        let mut udp = vec![c.listen];
        udp.extend(self.dns.listen);
        if udp.iter().any(|o| same(c.h323_ras, *o)) {
            return Err(ConfigError(format!(
                "[cvi] h323_ras {} is the address of another listener",
                c.h323_ras
            )));
        }
        if c.h245_port_min < 1024 || c.h245_port_max < c.h245_port_min {
            return Err(ConfigError(format!(
                "[cvi] h245_port_min {} - h245_port_max {} must be a range above 1023",
                c.h245_port_min, c.h245_port_max
            )));
        }
        if c.h245_port_min <= c.media_port_max && c.media_port_min <= c.h245_port_max {
            return Err(ConfigError(format!(
                "[cvi] h245 ports {}-{} overlap the media ports {}-{}",
                c.h245_port_min, c.h245_port_max, c.media_port_min, c.media_port_max
            )));
        }
        Ok(())
    }

    /// The runtime's threads and the log's format and filter.
    fn check_runtime_and_log(&self) -> Result<(), ConfigError> {
        if !(1..=64).contains(&self.runtime.threads) {
            return Err(ConfigError("[runtime] threads must be from 1 to 64".into()));
        }
        if !(1..=64).contains(&self.media.threads) {
            return Err(ConfigError("[media] threads must be from 1 to 64".into()));
        }
        if !matches!(self.media.io.as_str(), "epoll" | "io_uring") {
            return Err(ConfigError(format!(
                "[media] io {:?} must be \"epoll\" or \"io_uring\"",
                self.media.io
            )));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError(format!(
                "[log] format {:?} must be \"text\" or \"json\"",
                self.log.format
            )));
        }
        let month = Duration::from_secs(30 * 24 * 3600);
        if self.topology.token_lifetime < Duration::from_secs(1)
            || self.topology.token_lifetime > month
        {
            return Err(ConfigError(
                "[topology] token_lifetime must be from 1s to 30 days".into(),
            ));
        }
        if self.topology.key_grace > month {
            return Err(ConfigError(
                "[topology] key_grace must be at most 30 days".into(),
            ));
        }
        if !(1..=10_000).contains(&self.log.repeat_limit) {
            return Err(ConfigError(
                "[log] repeat_limit must be from 1 to 10000".into(),
            ));
        }
        if self.log.repeat_window < Duration::from_secs(1)
            || self.log.repeat_window > Duration::from_secs(3600)
        {
            return Err(ConfigError(
                "[log] repeat_window must be from 1s to 1h".into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError(format!(
                "[log] level {:?} is not a valid filter: {e}",
                self.log.level
            ))
        })?;
        Ok(())
    }
}

impl super::services::CviSection {
    /// The per-source limits, the guess budgets and the listeners' admission.
    fn check_guards(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_calls_per_source", self.max_calls_per_source),
            ("guess_budget", self.guess_budget as usize),
            ("guess_budget_global", self.guess_budget_global as usize),
            ("max_connections", self.max_connections),
            (
                "max_connections_per_source",
                self.max_connections_per_source,
            ),
            ("max_handshakes", self.max_handshakes),
            ("max_handshakes_per_source", self.max_handshakes_per_source),
        ];
        if let Some((k, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError(format!("[cvi] {k} must be at least 1")));
        }
        let durations = [
            ("ack_timeout", self.ack_timeout),
            ("udp_probe_timeout", self.udp_probe_timeout),
            ("udp_proven_for", self.udp_proven_for),
            ("guess_window", self.guess_window),
            ("guess_lockout", self.guess_lockout),
            ("meeting_lifetime", self.meeting_lifetime),
            ("handshake_timeout", self.handshake_timeout),
            ("first_message_timeout", self.first_message_timeout),
        ];
        if let Some((k, _)) = durations.iter().find(|(_, v)| v.is_zero()) {
            return Err(ConfigError(format!("[cvi] {k} must be greater than zero")));
        }
        if self.max_connections_per_source > self.max_connections
            || self.max_handshakes_per_source > self.max_handshakes
        {
            return Err(ConfigError(
                "[cvi] max_connections_per_source and max_handshakes_per_source must not exceed max_connections and max_handshakes".into(),
            ));
        }
        if self.guess_budget > self.guess_budget_global {
            return Err(ConfigError(
                "[cvi] guess_budget must not exceed guess_budget_global".into(),
            ));
        }
        Ok(())
    }
}
