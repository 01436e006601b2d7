//! `fedge explain`: one SIP request judged by the live registry and the
//! policy, without sending anything: forwarded where, answered, or refused
//! with status, Warning, ms-diagnostics code, rule and reason, plus each
//! check it passed on the way.
//!
//! Owns turning a message and a stated peer (a certificate, a partner, or
//! the home pool) into the proxy's inputs (`RequestInfo`, the SRV facts),
//! running [`policy::decide_traced`] (the proxy's own decision, never a
//! copy), and the explanation with its stable JSON shape
//! ([`Explanation::to_json`], documented in docs/notes/explain.md and
//! docs/operations.md). `capture` picks a message out of a pcap/pcapng
//! file. Never sends a SIP message, never counts, and never touches a
//! rate bucket: per-node state (rates, enumeration, dialogs) is named as
//! not evaluated.

pub mod capture;

use std::net::IpAddr;

use bytes::Bytes;
use serde_json::{Value, json};

use super::policy::{self, Check, Outcome, PolicyConfig, SrvFacts, Trace};
use super::refusal::Refusal;
use super::registry::Snapshot;
use crate::dns::Dns;
use crate::role::Role;
use crate::sip::framing::{DatagramItem, parse_datagram};
use crate::sip::headers::{HeaderName, NameAddr};
use crate::sip::message::SipMessage;
use crate::sip::parse::Limits;
use crate::sip::proxy::{Decision, Hop, RequestInfo};
use crate::sip::transport::PeerIdentity;
use crate::sip::uri::Host;

/// Who sent the message, as the operator states it.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A partner's edge presenting this certificate (its names).
    Certificate(PeerIdentity),
    /// The partner holding this domain, with its own edge certificate.
    Partner(String),
    /// The home pool (the internal listener): outbound.
    Home,
}

/// Why a message cannot be explained (each a usage mistake: exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("the file is empty")]
    Empty,
    #[error("no partner holds domain {0}")]
    UnknownPartner(String),
    #[error("the message is a response ({0}); explain judges requests")]
    Response(u16),
    #[error("{0}")]
    Capture(String),
}

/// The home pool as configured (`[internal] next_hop`), for the answer.
#[derive(Debug, Clone)]
pub struct HomePool {
    /// The configured URI.
    pub uri: String,
    pub transport: String,
    pub host: String,
    pub port: u16,
}

/// What the explanation is judged with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: PolicyConfig,
    pub home_pool: HomePool,
    pub limits: Limits,
    /// `[policy] rate` and `burst`, to name in the note on rates.
    pub rate: String,
    /// `[media] enabled`: the relay would rewrite SDP.
    pub media: bool,
}

/// Where a forwarded request would go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// `home_pool` (inbound) or `partner_edge` (outbound).
    pub kind: &'static str,
    pub transport: String,
    pub host: String,
    pub port: u16,
    /// The name the peer's certificate must carry (TLS).
    pub server_name: Option<String>,
    /// Addresses found (with `--resolve`).
    pub addresses: Vec<IpAddr>,
    /// The look-up that would find the address (without `--resolve`).
    pub lookup: Option<String>,
}

/// The refusal's answer, as the sender would read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub warning_code: u16,
    pub diagnostic: Option<(u16, &'static str)>,
    /// What the sender reads (Warning).
    pub reason: String,
    /// The full reason of the log line, when it says more.
    pub log_reason: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Forward(NextHop),
    /// The edge answers it itself (OPTIONS to the edge, the IM test).
    Answer {
        status: u16,
    },
    Refuse(Refused),
    /// The parser refuses it: the listener's answer.
    Malformed {
        status: u16,
        reason: String,
    },
    /// An allowed-domain partner: the decision needs its SRV records.
    NeedsDns {
        lookup: String,
    },
}

/// One message explained.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    pub peer: String,
    pub method: String,
    pub request_uri: String,
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub outcome: Judgement,
    /// The rule that decided (the metrics label), or `parse`/`dns`.
    pub rule: &'static str,
    /// The partner concerned (its name, organisation and state).
    pub partner: Option<(String, String, String)>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl Explanation {
    /// `forward`, `answer`, `refuse`, `malformed` or `needs_dns`.
    pub fn verdict(&self) -> &'static str {
        match self.outcome {
            Judgement::Forward(_) => "forward",
            Judgement::Answer { .. } => "answer",
            Judgement::Refuse(_) => "refuse",
            Judgement::Malformed { .. } => "malformed",
            Judgement::NeedsDns { .. } => "needs_dns",
        }
    }

    /// The SIP status of the answer the sender would get (none when forwarded).
    pub fn status(&self) -> Option<u16> {
        match &self.outcome {
            Judgement::Answer { status } | Judgement::Malformed { status, .. } => Some(*status),
            Judgement::Refuse(r) => Some(r.status),
            _ => None,
        }
    }

    /// The stable JSON shape (version 1; see docs/notes/explain.md).
    pub fn to_json(&self) -> Value {
        let (refusal, next_hop, lookup) = match &self.outcome {
            Judgement::Refuse(r) => (
                json!({
                    "status": r.status,
                    "warning_code": r.warning_code,
                    "diagnostic": r.diagnostic.map(|d| d.0),
                    "diagnostic_text": r.diagnostic.map(|d| d.1),
                    "reason": r.reason,
                    "log_reason": r.log_reason,
                    "headers": r.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                }),
                Value::Null,
                Value::Null,
            ),
            Judgement::Malformed { status, reason } => (
                json!({"status": status, "warning_code": 399, "diagnostic": null,
                       "diagnostic_text": null, "reason": reason, "log_reason": null, "headers": []}),
                Value::Null,
                Value::Null,
            ),
            Judgement::Forward(h) => (
                Value::Null,
                json!({
                    "kind": h.kind, "transport": h.transport, "host": h.host, "port": h.port,
                    "server_name": h.server_name,
                    "addresses": h.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "lookup": h.lookup,
                }),
                Value::Null,
            ),
            Judgement::NeedsDns { lookup } => (Value::Null, Value::Null, json!(lookup)),
            Judgement::Answer { .. } => (Value::Null, Value::Null, Value::Null),
        };
        json!({
            "version": 1,
            "verdict": self.verdict(),
            "status": self.status(),
            "rule": self.rule,
            "direction": self.direction,
            "peer": self.peer,
            "message": {
                "method": self.method, "request_uri": self.request_uri,
                "call_id": self.call_id, "from": self.from, "to": self.to,
            },
            "partner": self.partner.as_ref().map(|(name, org, state)|
                json!({"name": name, "org": org, "state": state})),
            "refusal": refusal,
            "next_hop": next_hop,
            "dns_needed": lookup,
            "checks": self.checks.iter().map(|c| json!({"check": c.check, "detail": c.detail})).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}

/// Reads raw SIP text as the listener would (CRLF or LF line ends: a file
/// with no CR at all has its header lines' LFs made CRLF).
pub fn parse_text(
    raw: &[u8],
    limits: &Limits,
) -> Result<Result<SipMessage, (u16, String)>, ExplainError> {
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(ExplainError::Empty)?;
    let raw = &raw[start..];
    let data = if raw.contains(&b'\r') {
        Bytes::copy_from_slice(raw)
    } else {
        Bytes::from(lf_to_crlf(raw))
    };
    Ok(match parse_datagram(data, limits) {
        DatagramItem::Message(m) => Ok(m),
        DatagramItem::Rejected(r) => Err((r.error.status, r.error.reason)),
        DatagramItem::KeepAlive => return Err(ExplainError::Empty),
    })
}

/// LF line ends of the header section (up to the first empty line) made
/// CRLF; the body is kept as it is.
fn lf_to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
            if raw.get(i + 1) == Some(&b'\n') {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&raw[i + 2..]);
                return out;
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
    out
}

fn text(s: Option<&str>) -> String {
    s.unwrap_or("").to_string()
}

/// Explains an unparsable message: what the listener answers.
pub fn malformed(status: u16, reason: String, peer: &Peer) -> Explanation {
    Explanation {
        direction: direction(peer),
        peer: describe_peer(peer),
        method: String::new(),
        request_uri: String::new(),
        call_id: String::new(),
        from: String::new(),
        to: String::new(),
        outcome: Judgement::Malformed { status, reason },
        rule: "parse",
        partner: None,
        checks: Vec::new(),
        notes: vec![
            "the listener's parser refuses this message: it answers a request with this status and a Warning naming the reason (a response is dropped); the policy never sees it".into(),
        ],
    }
}

fn direction(peer: &Peer) -> &'static str {
    match peer {
        Peer::Home => "outbound",
        _ => "inbound",
    }
}

fn describe_peer(peer: &Peer) -> String {
    match peer {
        Peer::Certificate(id) => format!("certificate naming {id}"),
        Peer::Partner(d) => format!("the edge certificate of the partner holding {d}"),
        Peer::Home => "the home pool (internal listener)".into(),
    }
}

/// The certificate names a partner's edge would present.
async fn partner_identity(
    snap: &Snapshot,
    domain: &str,
    dns: Option<&Dns>,
) -> Result<PeerIdentity, ExplainError> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let p = snap
        .by_domain(&d)
        .ok_or_else(|| ExplainError::UnknownPartner(d.clone()))?;
    let names = match (&p.details.edge_fqdn, dns) {
        (Some(edge), _) => vec![edge.to_ascii_lowercase()],
        (None, Some(dns)) => {
            let answer = dns.federation_srv(&d).await;
            answer
                .same_domain(&d)
                .map(|t| t.iter().map(|t| t.target.to_ascii_lowercase()).collect())
                .unwrap_or_default()
        }
        (None, None) => Vec::new(),
    };
    Ok(PeerIdentity {
        names,
        from_cn: false,
        subject: format!("(the edge certificate of partner {})", p.name()),
        serial: String::new(),
        issuer: String::new(),
    })
}

/// The proxy's view of the request's place: in a dialog when the To
/// header has a tag (as if the edge knew the dialog), and which Route
/// entries name the edge.
fn request_info(msg: &SipMessage, cfg: &PolicyConfig) -> RequestInfo {
    let in_dialog = msg.to().is_some_and(|t| {
        t.param("tag")
            .is_some_and(|v| v.is_some_and(|t| !t.is_empty()))
    });
    let mut own_routes = 0;
    let mut next_route = None;
    for v in msg.values(HeaderName::Route) {
        let own = NameAddr::parse(v).ok().is_some_and(|na| match na.uri.host {
            Some(Host::Name(n)) => n.trim_end_matches('.').eq_ignore_ascii_case(&cfg.fqdn),
            Some(Host::V4(a)) => cfg.local_addrs.contains(&a.into()),
            Some(Host::V6(a)) => cfg.local_addrs.contains(&a.into()),
            None => false,
        });
        if own && next_route.is_none() {
            own_routes += 1;
        } else if next_route.is_none() {
            next_route = Some(v.trim().to_string());
        }
    }
    RequestInfo {
        in_dialog,
        own_routes,
        next_route,
        pressure: Default::default(),
    }
}

/// Judges `msg` from `peer` with the registry snapshot and the policy, as
/// the proxy would; `dns` (with `--resolve`) looks SRV and address records
/// up, else the look-ups are named.
pub async fn explain(
    msg: &SipMessage,
    peer: &Peer,
    snap: &Snapshot,
    set: &Settings,
    dns: Option<&Dns>,
) -> Result<Explanation, ExplainError> {
    if let Some(status) = msg.status() {
        return Err(ExplainError::Response(status));
    }
    let cfg = &set.policy;
    let (role, identity) = match peer {
        Peer::Home => (Role::Internal, None),
        Peer::Certificate(id) => (Role::Federation, Some(id.clone())),
        Peer::Partner(d) => (
            Role::Federation,
            Some(partner_identity(snap, d, dns).await?),
        ),
    };
    let info = request_info(msg, cfg);
    let mut notes = Vec::new();
    let mut checks = vec![Check {
        check: "parse",
        detail: "the message parses as the listener parses it".into(),
    }];
    checks.push(Check {
        check: "direction",
        detail: match role {
            Role::Internal => "outbound: from the home pool on the internal listener".into(),
            _ => format!(
                "inbound: from a partner's edge on the federation listener ({})",
                describe_peer(peer)
            ),
        },
    });
    if info.in_dialog {
        notes.push("in dialog (the To header has a tag): judged as if this edge knew the dialog; the running proxy judges a request of a dialog it did not record-route (and whose token it did not seal) as out of dialog".into());
    }
    let mut srv = None;
    let mut needs = None;
    if let Some(domain) = policy::srv_needed(msg, role, &info, snap) {
        match dns {
            Some(dns) => {
                srv = Some(SrvFacts {
                    answer: dns.federation_srv(&domain).await,
                    domain,
                })
            }
            None => needs = Some(format!("SRV _sipfederationtls._tcp.{domain}")),
        }
    }
    let mut trace = Trace::on();
    let v = policy::decide_traced(
        msg,
        role,
        identity.as_ref(),
        &info,
        snap,
        cfg,
        srv.as_ref(),
        &mut trace,
    );
    checks.extend(trace.into_checks());
    let partner = v.partner.as_ref().map(|p| {
        (
            p.name().to_string(),
            p.details.org_name.clone(),
            p.state.to_string(),
        )
    });
    let (outcome, rule) = match (&v.outcome, &v.decision) {
        (Outcome::Refused(Refusal::DnsNotLookedUp { .. }), _) if needs.is_some() => {
            let lookup = needs.clone().unwrap_or_default();
            notes.push(format!(
                "the partner is found by DNS (no edge FQDN on record): the verdict needs {lookup}; run again with --resolve"
            ));
            (Judgement::NeedsDns { lookup }, "dns")
        }
        (Outcome::Refused(r), _) => {
            let j = r.reject();
            let refused = Refused {
                status: j.status,
                warning_code: j.warn_code,
                diagnostic: r.diagnostic(),
                reason: j.reason,
                log_reason: j.detail,
                headers: j.headers,
            };
            (Judgement::Refuse(refused), r.label())
        }
        (Outcome::Admitted(a), Decision::Forward(fwd)) => {
            let hop = next_hop(role, &fwd.hop, set, dns).await;
            after_admission(&mut notes, role, msg, set, v.partner.as_deref());
            (Judgement::Forward(hop), a.label())
        }
        (Outcome::Admitted(a), Decision::Answer { status, .. }) => {
            if v.im_test {
                notes.push("the edge answers 200 and then writes back to the sender with a MESSAGE of its own; the IM test passes when the partner's side accepts that reply (explain sends nothing)".into());
            }
            after_admission(&mut notes, role, msg, set, v.partner.as_deref());
            (Judgement::Answer { status: *status }, a.label())
        }
        (Outcome::Admitted(a), Decision::Reject(r)) => {
            (Judgement::Answer { status: r.status }, a.label())
        }
        // The policy never drops; the proxy alone does (absorbed retransmissions).
        (Outcome::Admitted(a), Decision::Drop(_)) => (Judgement::Answer { status: 0 }, a.label()),
    };
    Ok(Explanation {
        direction: if role == Role::Internal {
            "outbound"
        } else {
            "inbound"
        },
        peer: describe_peer(peer),
        method: msg.method().map(|m| m.to_string()).unwrap_or_default(),
        request_uri: text(msg.request_uri_str()),
        call_id: text(msg.call_id()),
        from: msg
            .from()
            .map(|f| f.uri.raw.to_string())
            .unwrap_or_default(),
        to: msg.to().map(|t| t.uri.raw.to_string()).unwrap_or_default(),
        outcome,
        rule,
        partner,
        checks,
        notes,
    })
}

/// What the running node checks after the policy admits a request, which
/// explain does not evaluate offline.
fn after_admission(
    notes: &mut Vec<String>,
    role: Role,
    msg: &SipMessage,
    set: &Settings,
    partner: Option<&crate::model::partner::Partner>,
) {
    if role == Role::Federation
        && let Some(p) = partner
    {
        let rate = p
            .details
            .rate_limit
            .as_deref()
            .map(|r| format!("{r}/s (the partner's rate_limit)"))
            .unwrap_or_else(|| set.rate.clone());
        notes.push(format!(
            "not evaluated offline: the partner's token bucket ({rate}) and the user-enumeration guard are shared out over the running nodes and depend on their counters; over them the node answers 503 rate_limited / 403 enumeration"
        ));
    }
    let opens_dialog = matches!(
        msg.method(),
        Some(
            crate::sip::message::Method::Invite
                | crate::sip::message::Method::Subscribe
                | crate::sip::message::Method::Refer
        )
    ) && msg.to().and_then(|t| t.tag()).is_none();
    if opens_dialog {
        notes.push("not evaluated offline: a draining node (`fedge drain`, SIGTERM) answers a new INVITE, SUBSCRIBE or REFER 503 with Retry-After (rule draining)".into());
    }
    let sdp = msg.first(HeaderName::ContentType).is_some_and(|c| {
        c.to_ascii_lowercase().contains("sdp") || c.to_ascii_lowercase().starts_with("multipart/")
    });
    if set.media && sdp {
        notes.push("not evaluated offline: the media relay would rewrite the SDP to its own ports (or refuse it: rule media)".into());
    }
}

/// Where the forward goes: the home pool as configured (inbound), or the
/// partner's edge the policy chose (outbound); addresses with `--resolve`.
async fn next_hop(role: Role, hop: &Hop, set: &Settings, dns: Option<&Dns>) -> NextHop {
    let mut h = match (role, hop) {
        (Role::Internal, Hop::Stream(t)) => NextHop {
            kind: "partner_edge",
            transport: t.transport.to_string().to_ascii_lowercase(),
            host: t.host.clone(),
            port: t.port,
            server_name: t.server_name.clone(),
            addresses: Vec::new(),
            lookup: None,
        },
        _ => {
            let p = &set.home_pool;
            NextHop {
                kind: "home_pool",
                transport: p.transport.clone(),
                host: p.host.clone(),
                port: p.port,
                server_name: (p.transport == "tls").then(|| p.host.clone()),
                addresses: Vec::new(),
                lookup: None,
            }
        }
    };
    if let Ok(ip) = h.host.parse::<IpAddr>() {
        h.addresses.push(ip);
        return h;
    }
    match dns {
        Some(dns) => match dns.addresses(&h.host).await {
            Ok(a) => h.addresses = a,
            Err(e) => h.lookup = Some(format!("A/AAAA {} (failed: {e})", h.host)),
        },
        None => h.lookup = Some(format!("A/AAAA {}", h.host)),
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lf_only_text_gets_crlf_in_the_head_only() {
        let out = lf_to_crlf(b"A\nB: c\n\nbody\nline\n");
        assert_eq!(out, b"A\r\nB: c\r\n\r\nbody\nline\n");
    }
}
