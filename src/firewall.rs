//! `fedge firewall`: an nftables ruleset for what this configuration
//! serves: the federation listener (SIP over mutual TLS), the internal
//! listener (from the home pool's addresses only: `[internal]
//! allowed_sources`, else the next hop's address), the admin listener, the
//! public listener,
//! the DNS server, the federation media relay's range, and in CVI gateway
//! mode the room systems' SIP listeners (UDP and TCP 5060, TLS 5061) and
//! the gateway's media range (UDP and TCP, as in Pexip's port tables that
//! the CVI service publishes), and the PostgreSQL server of a shared
//! store. Pure text from the configuration.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use crate::config::Config;

/// `ip daddr A ` / `ip6 daddr A ` for a specific address; nothing for a
/// wildcard (any address of the host).
fn daddr(ip: IpAddr) -> String {
    match ip {
        ip if ip.is_unspecified() => String::new(),
        IpAddr::V4(a) => format!("ip daddr {a} "),
        IpAddr::V6(a) => format!("ip6 daddr {a} "),
    }
}

fn sport_addr(ip: IpAddr) -> String {
    match ip {
        ip if ip.is_unspecified() => String::new(),
        IpAddr::V4(a) => format!("ip saddr {a} "),
        IpAddr::V6(a) => format!("ip6 saddr {a} "),
    }
}

struct Rules {
    input: Vec<String>,
    output: Vec<String>,
}

impl Rules {
    fn listen(&mut self, from: &str, at: SocketAddr, protos: &[&str], what: &str) {
        for p in protos {
            self.input.push(format!(
                "{from}{}{p} dport {} accept comment \"{what} ({p})\"",
                daddr(at.ip()),
                at.port()
            ));
        }
    }

    fn range(&mut self, at: IpAddr, lo: u16, hi: u16, what: &str) {
        for p in ["udp", "tcp"] {
            self.input.push(format!(
                "{}{p} dport {lo}-{hi} accept comment \"{what} ({p})\"",
                daddr(at)
            ));
            self.output.push(format!(
                "{}{p} sport {lo}-{hi} accept comment \"{what} ({p})\"",
                sport_addr(at)
            ));
        }
    }
}

/// The ruleset; `source` names the configuration in its header.
pub fn ruleset(cfg: &Config, source: &str) -> String {
    let mut r = Rules {
        input: Vec::new(),
        output: Vec::new(),
    };
    sip_rules(&mut r, cfg);
    media_rules(&mut r, cfg);
    render(r, source)
}

/// The federation, internal, admin and DNS listeners, and what the edge
/// sends to partners, the next hop and name servers.
fn sip_rules(r: &mut Rules, cfg: &Config) {
    r.listen(
        "",
        cfg.federation.listen,
        &["tcp"],
        "federation: partners' Access Edges, SIP over mutual TLS",
    );
    r.output.push(
        "tcp dport 5061 accept comment \"federation: to partners' Access Edges (SRV may name other ports)\""
            .into(),
    );
    // The internal listener takes only the home pool's addresses, as the
    // edge itself does ([internal] allowed_sources, else the next hop's
    // address); never any source.
    let next_hop_ip = cfg
        .next_hop()
        .ok()
        .and_then(|n| n.host.parse::<IpAddr>().ok());
    match cfg.internal_sources() {
        Ok(nets) => {
            for net in nets {
                let from = match net {
                    ipnet::IpNet::V4(n) => format!("ip saddr {n} "),
                    ipnet::IpNet::V6(n) => format!("ip6 saddr {n} "),
                };
                r.listen(
                    &from,
                    cfg.internal.listen,
                    &["udp", "tcp"],
                    "internal: the home pool ([internal] allowed_sources)",
                );
            }
        }
        Err(e) => r.input.push(format!(
            "# internal listener not opened: {}",
            e.0.replace('"', "'")
        )),
    }
    if let Ok(n) = cfg.next_hop() {
        let proto = if n.transport == "udp" { "udp" } else { "tcp" };
        let to = next_hop_ip
            .map(|ip| match ip {
                IpAddr::V4(a) => format!("ip daddr {a} "),
                IpAddr::V6(a) => format!("ip6 daddr {a} "),
            })
            .unwrap_or_default();
        r.output.push(format!(
            "{to}{proto} dport {} accept comment \"internal: to the next hop {}\"",
            n.port, n.host
        ));
    }
    r.listen(
        "",
        cfg.admin.listen,
        &["tcp"],
        "admin API and console: restrict to your management network",
    );
    r.listen(
        "",
        cfg.public.listen,
        &["tcp"],
        "public: published list, /cvi/<id> pages, FPA intake",
    );
    if let Some(d) = cfg.dns.listen {
        r.listen("", d, &["udp", "tcp"], "DNS: the edge's published records");
    }
    r.output
        .push("udp dport 53 accept comment \"DNS lookups\"".into());
    r.output
        .push("tcp dport 53 accept comment \"DNS lookups\"".into());
    if let Some((host, port)) = postgres_server(&cfg.store.url) {
        let to = match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => format!("ip daddr {a} "),
            Ok(IpAddr::V6(a)) => format!("ip6 daddr {a} "),
            Err(_) => String::new(),
        };
        r.output.push(format!(
            "{to}tcp dport {port} accept comment \"store: PostgreSQL at {host}\""
        ));
    }
}

/// The PostgreSQL server of a `postgres://` store URL: host and port
/// (5432 when none is given); `None` for SQLite or a socket directory.
fn postgres_server(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    if host.is_empty() || host.contains(['"', '\\']) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 5432,
    };
    Some((host.to_string(), port))
}

/// The federation relay's media ranges and, in CVI gateway mode, the
/// gateway's listeners and media ranges.
fn media_rules(r: &mut Rules, cfg: &Config) {
    if cfg.media.enabled {
        let m = &cfg.media;
        r.range(
            m.federation_address,
            m.port_min,
            m.port_max,
            "federation media relay: partners' A/V",
        );
        if m.internal_address != m.federation_address {
            r.range(
                m.internal_address,
                m.port_min,
                m.port_max,
                "federation media relay: home side",
            );
        }
    }
    if cfg.cvi.enabled {
        let c = &cfg.cvi;
        r.listen("", c.listen, &["udp", "tcp"], "CVI: room systems' SIP");
        if let Some(t) = c.listen_tls {
            r.listen("", t, &["tcp"], "CVI: room systems' SIP over TLS");
        }
        r.output.push(format!(
            "{}udp sport {} accept comment \"CVI: requests to room systems over UDP\"",
            sport_addr(c.listen.ip()),
            c.listen.port()
        ));
        r.output.push(
            "tcp dport { 5060, 5061 } accept comment \"CVI: to room systems and the meeting service\""
                .into(),
        );
        // Browsers (`webrtc`) use the same range: ICE, DTLS and SRTP.
        r.range(
            c.media_address,
            c.media_port_min,
            c.media_port_max,
            if c.webrtc {
                "CVI media: room systems and browsers (WebRTC)"
            } else {
                "CVI media: room systems"
            },
        );
        if c.connector_media_address != c.media_address {
            r.range(
                c.connector_media_address,
                c.media_port_min,
                c.media_port_max,
                "CVI media: the meeting service",
            );
        }
        if c.h323 {
            h323_rules(r, c);
        }
        if let Some(p) = c.webrtc_tcp.filter(|_| c.webrtc) {
            r.listen(
                "",
                SocketAddr::new(c.media_address, p),
                &["tcp"],
                "CVI: browsers' ICE-TCP (WebRTC)",
            );
        }
    }
}

/// H.323 room systems: call signalling (TCP), RAS (UDP), and H.245 on
/// separate channels both ways (rooms connect to our range; we connect to
/// the H.245 address a room gives).
fn h323_rules(r: &mut Rules, c: &crate::config::CviSection) {
    r.listen(
        "",
        c.h323_listen,
        &["tcp"],
        "CVI: room systems' H.323 call signalling",
    );
    r.listen("", c.h323_ras, &["udp"], "CVI: room systems' H.323 RAS");
    r.input.push(format!(
        "{}tcp dport {}-{} accept comment \"CVI: room systems' H.245 (tcp)\"",
        daddr(c.h323_listen.ip()),
        c.h245_port_min,
        c.h245_port_max
    ));
    r.output.push(format!(
        "{}udp sport {} accept comment \"CVI: RAS answers to room systems\"",
        sport_addr(c.h323_ras.ip()),
        c.h323_ras.port()
    ));
    r.output
        .push("tcp dport 1024-65535 accept comment \"CVI: H.245 channels rooms offer\"".into());
}

/// The nftables text: header, input chain (policy drop), output chain.
fn render(r: Rules, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#!/usr/sbin/nft -f");
    let _ = writeln!(
        out,
        "# fedge {}: firewall for {source}, printed by `fedge firewall`.",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# Input is dropped unless a rule below accepts it. Keep (or adapt) the\n\
         # management SSH rule before loading: `nft -c -f` checks, `nft -f` loads.\n\
         # Output stays open (policy accept); its rules list what fedge sends, so\n\
         # that a site filtering egress can set the policy to drop."
    );
    let _ = writeln!(out, "table inet fedge {{");
    let _ = writeln!(out, "\tchain input {{");
    let _ = writeln!(
        out,
        "\t\ttype filter hook input priority filter; policy drop;"
    );
    for line in [
        "ct state established,related accept",
        "ct state invalid drop",
        "iif \"lo\" accept",
        "meta l4proto { icmp, ipv6-icmp } accept",
        "tcp dport 22 accept comment \"management SSH: adapt before loading\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(r.input)
    {
        let _ = writeln!(out, "\t\t{line}");
    }
    let _ = writeln!(out, "\t}}");
    let _ = writeln!(out, "\tchain output {{");
    let _ = writeln!(
        out,
        "\t\ttype filter hook output priority filter; policy accept;"
    );
    for line in [
        "ct state established,related accept".to_string(),
        "oif \"lo\" accept".into(),
    ]
    .into_iter()
    .chain(r.output)
    {
        let _ = writeln!(out, "\t\t{line}");
    }
    let _ = writeln!(out, "\t}}");
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_cvi() {
        let mut cfg = Config::default();
        let plain = ruleset(&cfg, "defaults");
        assert!(
            plain.contains("ip daddr 127.0.0.1 tcp dport 5061 accept"),
            "{plain}"
        );
        assert!(!plain.contains("CVI"), "CVI is off by default: {plain}");
        cfg.cvi.enabled = true;
        cfg.cvi.listen = "0.0.0.0:5060".parse().unwrap();
        cfg.cvi.listen_tls = Some("0.0.0.0:5061".parse().unwrap());
        cfg.cvi.media_address = "0.0.0.0".parse().unwrap();
        cfg.cvi.connector_media_address = "0.0.0.0".parse().unwrap();
        let t = ruleset(&cfg, "test");
        for want in [
            "\t\tudp dport 5060 accept comment \"CVI: room systems' SIP (udp)\"",
            "\t\ttcp dport 5060 accept comment \"CVI: room systems' SIP (tcp)\"",
            "\t\ttcp dport 5061 accept comment \"CVI: room systems' SIP over TLS (tcp)\"",
            "\t\tudp dport 40000-49999 accept comment \"CVI media: room systems (udp)\"",
            "\t\ttcp dport 40000-49999 accept comment \"CVI media: room systems (tcp)\"",
            "policy drop;",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
        // One rule per port, not repeated for the same wildcard address.
        assert_eq!(t.matches("udp dport 40000-49999").count(), 1, "{t}");
        assert!(!t.contains("PostgreSQL"), "SQLite needs no rule: {t}");
        assert!(!t.contains("H.323"), "H.323 is off by default: {t}");
        cfg.cvi.h323 = true;
        cfg.cvi.h323_listen = "0.0.0.0:1720".parse().unwrap();
        cfg.cvi.h323_ras = "0.0.0.0:1719".parse().unwrap();
        let t = ruleset(&cfg, "test");
        for want in [
            "\t\ttcp dport 1720 accept comment \"CVI: room systems' H.323 call signalling (tcp)\"",
            "\t\tudp dport 1719 accept comment \"CVI: room systems' H.323 RAS (udp)\"",
            "\t\ttcp dport 33000-39999 accept comment \"CVI: room systems' H.245 (tcp)\"",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
        // Browsers (WebRTC) share the media range, and say so.
        cfg.cvi.webrtc = true;
        let t = ruleset(&cfg, "test");
        let want = "\t\tudp dport 40000-49999 accept comment \"CVI media: room systems and browsers (WebRTC) (udp)\"";
        assert!(t.contains(want), "{want:?} not in\n{t}");
        assert!(!t.contains("ICE-TCP"), "{t}");
        cfg.cvi.webrtc_tcp = Some(3478);
        let t = ruleset(&cfg, "test");
        let want = "tcp dport 3478 accept comment \"CVI: browsers' ICE-TCP (WebRTC) (tcp)\"";
        assert!(t.contains(want), "{want:?} not in\n{t}");
    }

    /// A node sharing a PostgreSQL database may reach its server.
    #[test]
    fn the_postgresql_server_is_reachable() {
        let mut cfg = Config::default();
        cfg.store.url = "postgres://fedge:s3cret@10.0.0.20:5433/fedge?sslmode=require".into();
        let t = ruleset(&cfg, "test");
        assert!(
            t.contains("\t\tip daddr 10.0.0.20 tcp dport 5433 accept comment \"store: PostgreSQL at 10.0.0.20\""),
            "{t}"
        );
        assert!(!t.contains("s3cret"), "{t}");
        assert_eq!(
            postgres_server("postgresql://db.example.net/fedge"),
            Some(("db.example.net".into(), 5432))
        );
        assert_eq!(
            postgres_server("postgres://u@[2001:db8::20]:6432/fedge"),
            Some(("2001:db8::20".into(), 6432))
        );
        assert_eq!(postgres_server("sqlite:///var/lib/fedge/fedge.db"), None);
    }
}
