//! Who may talk to whom across the edge.
//!
//! [`Edge`] is the layer above the transports: every well-formed message
//! from the federation and internal listeners arrives here with its source
//! and peer identity. It applies the generic request checks, answers
//! OPTIONS pings addressed to the edge itself, and refuses everything it
//! cannot admit with a status, a Warning that says why, and a log line
//! carrying the same reason.

pub mod fpa;
pub mod partner;
pub mod registry;

use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::sip::headers::HeaderName;
use crate::sip::message::{Method, SipMessage};
use crate::sip::response::ResponseBuilder;
use crate::sip::transport::{Handler, Inbound, Role, Source};
use crate::sip::uri::Host;
use crate::sip::validate::{Refusal, check_request};

/// Option tags this edge implements when they appear in Proxy-Require.
pub const PROXY_EXTENSIONS: &[&str] = &["ms-benotify"];

/// Methods the edge relays (advertised in Allow when it answers OPTIONS).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, SUBSCRIBE, NOTIFY, BENOTIFY, SERVICE, UPDATE, PRACK, REFER";

/// Static facts the edge needs to answer for itself.
#[derive(Debug, Clone)]
pub struct EdgeIdentity {
    /// The edge's FQDN (Warning agent, names it answers to).
    pub fqdn: String,
    /// Addresses of our own listeners, which also name the edge.
    pub local_addrs: Vec<std::net::IpAddr>,
    /// The Server header value.
    pub server: String,
}

/// The message handler behind every listener.
#[derive(Debug)]
pub struct Edge {
    me: EdgeIdentity,
}

impl Edge {
    pub fn new(me: EdgeIdentity) -> Arc<Edge> {
        Arc::new(Edge { me })
    }

    /// True when the Request-URI names the edge itself rather than a user.
    fn addressed_to_edge(&self, msg: &SipMessage) -> bool {
        let Some(uri) = msg.request_uri() else {
            return false;
        };
        if uri.user.is_some() {
            return false;
        }
        match uri.host {
            Some(Host::Name(n)) => {
                n.eq_ignore_ascii_case(&self.me.fqdn) || n.eq_ignore_ascii_case("localhost")
            }
            Some(Host::V4(a)) => self.me.local_addrs.contains(&a.into()),
            Some(Host::V6(a)) => self.me.local_addrs.contains(&a.into()),
            None => false,
        }
    }

    async fn refuse(&self, msg: &SipMessage, source: &Source, r: Refusal) {
        let identity = source
            .identity
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_default();
        warn!(
            role = %source.role,
            remote = %source.remote,
            identity = %identity,
            status = r.status,
            reason = %r.reason,
            request = %msg.summary(),
            call_id = msg.call_id().unwrap_or(""),
            "request refused"
        );
        let mut b = ResponseBuilder::new(msg, r.status).warning(399, &self.me.fqdn, &r.reason);
        for (n, v) in &r.headers {
            b = b.header(*n, v.clone());
        }
        self.send(
            b.header("Server", self.me.server.clone()).build(),
            msg,
            source,
        )
        .await;
    }

    async fn send(&self, data: bytes::Bytes, msg: &SipMessage, source: &Source) {
        if let Err(e) = source
            .send_back(data, Some(source.response_target(msg)))
            .await
        {
            warn!(role = %source.role, remote = %source.remote, error = %e, "response not sent");
        }
    }

    async fn on_request(&self, msg: SipMessage, source: Source) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        if method == Method::Ack {
            debug!(role = %source.role, remote = %source.remote, "ACK without a transaction dropped");
            return;
        }
        if let Err(r) = check_request(&msg, PROXY_EXTENSIONS) {
            if method != Method::Benotify {
                self.refuse(&msg, &source, r).await;
            }
            return;
        }
        if method == Method::Options && self.addressed_to_edge(&msg) {
            let resp = ResponseBuilder::new(&msg, 200)
                .header("Allow", ALLOW)
                .header("Supported", PROXY_EXTENSIONS.join(", "))
                .header("Accept", "application/sdp")
                .header("Server", self.me.server.clone())
                .build();
            debug!(role = %source.role, remote = %source.remote, "OPTIONS to the edge answered");
            self.send(resp, &msg, &source).await;
            return;
        }
        if method == Method::Benotify {
            // Never answered ([MS-SIP] §3.5): nothing to say even when refusing.
            info!(role = %source.role, remote = %source.remote, request = %msg.summary(), "BENOTIFY dropped: no enabled partner matches it");
            return;
        }
        let reason = match source.role {
            Role::Federation => format!(
                "no enabled federation partner matches this connection (certificate names {})",
                source
                    .identity
                    .as_ref()
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "nothing".into())
            ),
            Role::Internal => {
                let domain = msg
                    .request_uri()
                    .and_then(|u| u.domain().map(str::to_string))
                    .unwrap_or_default();
                format!("no enabled federation partner serves domain {domain}")
            }
        };
        let status = match source.role {
            Role::Federation => 403,
            Role::Internal => 404,
        };
        self.refuse(
            &msg,
            &source,
            Refusal {
                status,
                reason,
                headers: Vec::new(),
            },
        )
        .await;
    }
}

impl Handler for Edge {
    async fn on_message(&self, inbound: Inbound) {
        let Inbound { msg, source } = inbound;
        if msg.is_request() {
            self.on_request(msg, source).await;
        } else {
            debug!(
                role = %source.role,
                remote = %source.remote,
                response = %msg.summary(),
                via = msg.first(HeaderName::Via).unwrap_or(""),
                "response matching no transaction dropped"
            );
        }
    }
}
