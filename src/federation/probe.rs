//! `fedge test-federation DOMAIN`: checks the way to a partner step by
//! step, as SfB's Test-CsFederatedPartner does: resolve its edge, connect,
//! mutual TLS with our certificate (its certificate must name its edge
//! FQDN), an OPTIONS to its edge, and an IM to its technical contact.
//!
//! Owns this one-shot client. It opens its own connection and does not
//! need a running edge, so an operator can run it before enabling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::codec::Decoder;

use super::partner::Partner;
use super::policy::partner_target;
use crate::dns::Dns;
use crate::sip::framing::{StreamDecoder, StreamItem};
use crate::sip::message::SipMessage;
use crate::sip::parse::Limits;
use crate::sip::request::RequestBuilder;
use crate::sip::response::random_token;
use crate::sip::transport::tls::identity_of;

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Who we are in the test.
#[derive(Debug, Clone)]
pub struct Me {
    pub fqdn: String,
    /// The port of our federation listener (for the Via).
    pub port: u16,
    /// e.g. `sip:federation-test@fedge.test`.
    pub address: String,
}

fn step(name: &'static str, ok: bool, detail: impl Into<String>) -> Step {
    Step {
        name,
        ok,
        detail: detail.into(),
    }
}

async fn request(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    text: bytes::Bytes,
    within: Duration,
) -> Result<SipMessage, String> {
    tls.write_all(&text)
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let mut buf = BytesMut::new();
    let mut dec = StreamDecoder::new(Limits::default());
    let deadline = tokio::time::Instant::now() + within;
    loop {
        while let Ok(Some(item)) = dec.decode(&mut buf) {
            if let StreamItem::Message(m) = item
                && m.status().is_some_and(|s| s >= 200)
            {
                return Ok(m);
            }
        }
        match tokio::time::timeout_at(deadline, tls.read_buf(&mut buf)).await {
            Err(_) => {
                return Err(format!(
                    "no final answer within {}",
                    humantime::format_duration(within)
                ));
            }
            Ok(Ok(0)) => return Err("the partner's edge closed the connection".into()),
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
            Ok(Ok(_)) => {}
        }
    }
}

fn describe(m: &SipMessage) -> String {
    let mut d = format!(
        "{} {}",
        m.status().unwrap_or(0),
        m.reason_phrase().unwrap_or("")
    );
    if let Some(server) = m.values_named("Server").next() {
        d.push_str(&format!(" (Server: {server})"));
    }
    if let Some(w) = m.values_named("Warning").next() {
        d.push_str(&format!(" Warning: {w}"));
    }
    d
}

/// Runs the steps in order; stops at the first one that cannot go on.
pub async fn run(
    partner: &Partner,
    domain: &str,
    dns: &Dns,
    tls: Arc<rustls::ClientConfig>,
    me: &Me,
    within: Duration,
) -> Vec<Step> {
    let mut out = Vec::new();
    // An allowed partner server is pinned; an allowed domain is found by SRV.
    let target = match &partner.details.edge_fqdn {
        Some(edge) => partner_target(partner, edge, 1),
        None => match super::partner_hop(dns, partner, domain, 1).await {
            Ok(t) => {
                let name = t.server_name.clone().unwrap_or_default();
                out.push(step(
                    "srv",
                    true,
                    format!("_sipfederationtls._tcp.{domain} -> {name}:{}", t.port),
                ));
                t
            }
            Err(why) => {
                out.push(step("srv", false, why));
                return out;
            }
        },
    };
    let edge = target
        .server_name
        .clone()
        .unwrap_or_else(|| target.host.clone());
    let addrs: Vec<SocketAddr> = match target.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => match dns.addresses(&target.host).await {
            Ok(a) => a
                .into_iter()
                .map(|ip| SocketAddr::new(ip, target.port))
                .collect(),
            Err(e) => {
                out.push(step(
                    "resolve",
                    false,
                    format!("{}:{}: {e}", target.host, target.port),
                ));
                return out;
            }
        },
    };
    let Some(addr) = addrs.first().copied() else {
        out.push(step(
            "resolve",
            false,
            format!("{} has no address", target.host),
        ));
        return out;
    };
    out.push(step(
        "resolve",
        true,
        format!("{}:{} -> {addr}", target.host, target.port),
    ));
    let tcp = match tokio::time::timeout(within, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            out.push(step("connect", false, format!("{addr}: {e}")));
            return out;
        }
        Err(_) => {
            out.push(step("connect", false, format!("{addr}: timed out")));
            return out;
        }
    };
    out.push(step("connect", true, addr.to_string()));
    let Ok(name) = ServerName::try_from(edge.clone()) else {
        out.push(step(
            "tls",
            false,
            format!("{edge:?} is not a valid server name"),
        ));
        return out;
    };
    let mut stream =
        match tokio::time::timeout(within, TlsConnector::from(tls).connect(name, tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                out.push(step(
                    "tls",
                    false,
                    crate::sip::transport::tls::describe_handshake_error(&e),
                ));
                return out;
            }
            Err(_) => {
                out.push(step("tls", false, "handshake timed out"));
                return out;
            }
        };
    let (_, conn) = stream.get_ref();
    let names = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| identity_of(c, false).ok())
        .map(|id| id.to_string())
        .unwrap_or_default();
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    out.push(step(
        "tls",
        true,
        format!("{version}, partner certificate names {names}; ours was accepted"),
    ));

    let via = |b: &str| {
        format!(
            "SIP/2.0/TLS {}:{};branch=z9hG4bK-probe-{b}",
            me.fqdn, me.port
        )
    };
    let options = RequestBuilder::new("OPTIONS", format!("sip:{edge};transport=tls"))
        .via(via(&random_token()))
        .from(format!("<{}>;tag={}", me.address, random_token()))
        .to(format!("<sip:{edge}>"))
        .call_id(format!("{}@{}", random_token(), me.fqdn))
        .build();
    match request(&mut stream, options, within).await {
        Ok(m) => {
            let ok = m.status().is_some_and(|s| s < 300);
            out.push(step("options", ok, describe(&m)));
        }
        Err(e) => {
            out.push(step("options", false, e));
            return out;
        }
    }
    let Some(contact) = partner.details.contacts.tech_sip.clone() else {
        out.push(step(
            "message",
            false,
            "no technical contact SIP address on record (set tech_sip)",
        ));
        return out;
    };
    let body = format!(
        "Federation test from {}: please reply to confirm IM works both ways.",
        me.address
    );
    let message = RequestBuilder::new("MESSAGE", contact.as_str())
        .via(via(&random_token()))
        .from(format!("<{}>;tag={}", me.address, random_token()))
        .to(format!("<{contact}>"))
        .call_id(format!("{}@{}", random_token(), me.fqdn))
        .body("text/plain; charset=UTF-8", body)
        .build();
    match request(&mut stream, message, within).await {
        Ok(m) => {
            let ok = m.status().is_some_and(|s| (200..300).contains(&s));
            out.push(step(
                "message",
                ok,
                format!("to {contact}: {}", describe(&m)),
            ));
        }
        Err(e) => out.push(step("message", false, format!("to {contact}: {e}"))),
    }
    let _ = stream.shutdown().await;
    out
}
