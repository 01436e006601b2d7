//! The records the edge publishes for its domains, as BIND zone files:
//! `_sipfederationtls._tcp` and `_sip._tls` SRV records for each home
//! domain, A/AAAA for the names they point at, and the SIP records of the
//! CVI domain. The same text is what `fedge dns zone` prints and what the
//! edge's own DNS server loads (`dns::server`), so the two cannot differ.
//!
//! Owns the naming rules: an SRV target must sit directly in the domain it
//! serves (SfB's same-domain rule), so a home domain whose edge FQDN lies
//! elsewhere points at `sip.<domain>`, which the edge certificate must name.

use std::fmt::Write as _;
use std::net::IpAddr;

/// What to publish.
#[derive(Debug, Clone)]
pub struct Publish {
    pub home_domains: Vec<String>,
    pub edge_fqdn: String,
    /// The port partners reach SIP over mutual TLS at.
    pub sip_port: u16,
    /// The edge's addresses for A/AAAA records.
    pub addresses: Vec<IpAddr>,
    pub cvi_domain: Option<String>,
    pub cvi_port: u16,
    pub cvi_tls_port: u16,
    /// H.323 on the CVI domain: the call signalling (TCP) and RAS (UDP)
    /// ports for `_h323cs._tcp` and `_h323ls._udp`; `None`: not published.
    pub h323: Option<(u16, u16)>,
    pub ttl: u32,
    pub serial: u32,
}

/// One zone: its origin (absolute, lower-case, with the final dot) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneText {
    pub origin: String,
    pub text: String,
}

fn norm(n: &str) -> String {
    n.trim_end_matches('.').to_ascii_lowercase()
}

/// True when `name` is `domain` or below it.
pub fn in_domain(name: &str, domain: &str) -> bool {
    let (n, d) = (norm(name), norm(domain));
    n == d || n.ends_with(&format!(".{d}"))
}

/// SfB's same-domain rule: `target` is one label directly in `domain`
/// (`sip.example.com` for `example.com`; not `sip.sub.example.com`, not
/// `sip.example.net`).
pub fn directly_in(target: &str, domain: &str) -> bool {
    let (t, d) = (norm(target), norm(domain));
    t.split_once('.')
        .is_some_and(|(label, rest)| !label.is_empty() && rest == d)
}

/// The SRV target for `domain`: the edge FQDN when it obeys the
/// same-domain rule there, else `sip.<domain>`.
pub fn srv_target(edge_fqdn: &str, domain: &str) -> String {
    if directly_in(edge_fqdn, domain) {
        norm(edge_fqdn)
    } else {
        format!("sip.{}", norm(domain))
    }
}

fn addresses(out: &mut String, name: &str, ttl: u32, addrs: &[IpAddr]) {
    for a in addrs {
        let kind = if a.is_ipv4() { "A" } else { "AAAA" };
        let _ = writeln!(out, "{name}. {ttl} IN {kind} {a}");
    }
}

fn zone(p: &Publish, domain: &str, body: impl FnOnce(&mut String, &mut Vec<String>)) -> ZoneText {
    let d = norm(domain);
    let ns = norm(&p.edge_fqdn);
    let mut out = String::new();
    let _ = writeln!(out, "; published by fedge for {d}");
    let _ = writeln!(out, "$ORIGIN {d}.");
    let _ = writeln!(out, "$TTL {}", p.ttl);
    let _ = writeln!(
        out,
        "{d}. {ttl} IN SOA {ns}. hostmaster.{d}. {serial} 3600 600 604800 {ttl}",
        ttl = p.ttl,
        serial = p.serial
    );
    let _ = writeln!(out, "{d}. {} IN NS {ns}.", p.ttl);
    // Names with addresses in this zone.
    let mut named = Vec::new();
    body(&mut out, &mut named);
    if in_domain(&ns, &d) {
        named.push(ns.clone());
    }
    named.sort();
    named.dedup();
    for n in named {
        addresses(&mut out, &n, p.ttl, &p.addresses);
    }
    ZoneText {
        origin: format!("{d}."),
        text: out,
    }
}

/// The zones to publish: one per home domain, and the CVI domain's.
pub fn zones(p: &Publish) -> Vec<ZoneText> {
    let mut out: Vec<ZoneText> = Vec::new();
    for h in &p.home_domains {
        let d = norm(h);
        let target = srv_target(&p.edge_fqdn, &d);
        out.push(zone(p, &d, |text, named| {
            if target != norm(&p.edge_fqdn) {
                let _ = writeln!(
                    text,
                    "; {target} is the edge for {d} (the same-domain rule): the edge certificate must name it"
                );
            }
            for service in ["_sipfederationtls._tcp", "_sip._tls"] {
                let _ = writeln!(text, "{service}.{d}. {} IN SRV 0 0 {} {target}.", p.ttl, p.sip_port);
            }
            named.push(target.clone());
            named.push(format!("sip.{d}"));
        }));
    }
    if let Some(c) = &p.cvi_domain {
        let d = norm(c);
        let target = srv_target(&p.edge_fqdn, &d);
        out.push(zone(p, &d, |text, named| {
            for (service, port) in [
                ("_sip._tcp", p.cvi_port),
                ("_sip._udp", p.cvi_port),
                ("_sips._tcp", p.cvi_tls_port),
            ] {
                let _ = writeln!(text, "{service}.{d}. {} IN SRV 0 0 {port} {target}.", p.ttl);
            }
            if let Some((cs, ls)) = p.h323 {
                for (service, port) in [("_h323cs._tcp", cs), ("_h323ls._udp", ls)] {
                    let _ = writeln!(text, "{service}.{d}. {} IN SRV 0 0 {port} {target}.", p.ttl);
                }
            }
            // Room systems that dial teams@<domain> without SRV look up its A record.
            named.push(d.clone());
            named.push(target.clone());
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish() -> Publish {
        Publish {
            home_domains: vec!["fedge.test".into(), "Other.TEST".into()],
            edge_fqdn: "sip.fedge.test".into(),
            sip_port: 5061,
            addresses: vec![
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
            cvi_domain: Some("cvi.fedge.test".into()),
            cvi_port: 5060,
            cvi_tls_port: 5061,
            h323: Some((1720, 1719)),
            ttl: 300,
            serial: 1_795_000_000,
        }
    }

    #[test]
    fn the_same_domain_rule() {
        assert!(directly_in("sip.example.com", "example.com"));
        assert!(directly_in("SIP.Example.com.", "example.com"));
        assert!(!directly_in("sip.sub.example.com", "example.com"));
        assert!(!directly_in("sip.example.net", "example.com"));
        assert!(!directly_in("example.com", "example.com"));
        assert!(!directly_in(".example.com", "example.com"));
        assert!(
            in_domain("a.b.example.com", "example.com") && in_domain("example.com", "EXAMPLE.com")
        );
        assert!(!in_domain("badexample.com", "example.com"));
        assert_eq!(srv_target("sip.fedge.test", "fedge.test"), "sip.fedge.test");
        assert_eq!(srv_target("sip.fedge.test", "other.test"), "sip.other.test");
    }

    #[test]
    fn zones_name_every_record_the_issue_asks_for() {
        let z = zones(&publish());
        assert_eq!(
            z.iter().map(|z| z.origin.as_str()).collect::<Vec<_>>(),
            ["fedge.test.", "other.test.", "cvi.fedge.test."]
        );
        let home = &z[0].text;
        for line in [
            "fedge.test. 300 IN SOA sip.fedge.test. hostmaster.fedge.test. 1795000000 3600 600 604800 300",
            "fedge.test. 300 IN NS sip.fedge.test.",
            "_sipfederationtls._tcp.fedge.test. 300 IN SRV 0 0 5061 sip.fedge.test.",
            "_sip._tls.fedge.test. 300 IN SRV 0 0 5061 sip.fedge.test.",
            "sip.fedge.test. 300 IN A 192.0.2.10",
            "sip.fedge.test. 300 IN AAAA 2001:db8::10",
        ] {
            assert!(home.lines().any(|l| l == line), "{line} not in\n{home}");
        }
        let other = &z[1].text;
        assert!(
            other
                .contains("_sipfederationtls._tcp.other.test. 300 IN SRV 0 0 5061 sip.other.test."),
            "{other}"
        );
        assert!(
            other.contains("sip.other.test. 300 IN A 192.0.2.10"),
            "{other}"
        );
        assert!(
            other.contains("the edge certificate must name it"),
            "{other}"
        );
        let cvi = &z[2].text;
        for line in [
            "_sip._tcp.cvi.fedge.test. 300 IN SRV 0 0 5060 sip.cvi.fedge.test.",
            "_sip._udp.cvi.fedge.test. 300 IN SRV 0 0 5060 sip.cvi.fedge.test.",
            "_sips._tcp.cvi.fedge.test. 300 IN SRV 0 0 5061 sip.cvi.fedge.test.",
            "_h323cs._tcp.cvi.fedge.test. 300 IN SRV 0 0 1720 sip.cvi.fedge.test.",
            "_h323ls._udp.cvi.fedge.test. 300 IN SRV 0 0 1719 sip.cvi.fedge.test.",
            "cvi.fedge.test. 300 IN A 192.0.2.10",
        ] {
            assert!(cvi.lines().any(|l| l == line), "{line} not in\n{cvi}");
        }
    }

    #[test]
    fn hickory_reads_the_zones_back() {
        use hickory_server::proto::rr::{Name, RecordType};
        use hickory_server::proto::serialize::txt::Parser;
        use std::str::FromStr;
        for z in zones(&publish()) {
            let (origin, records) = Parser::new(
                z.text.as_str(),
                None,
                Some(Name::from_str(&z.origin).unwrap()),
            )
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", z.origin, z.text));
            assert_eq!(origin.to_string(), z.origin);
            assert!(records.keys().any(|k| k.record_type == RecordType::SOA));
            assert!(records.keys().any(|k| k.record_type == RecordType::SRV));
        }
    }
}
