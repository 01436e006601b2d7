//! Who may talk to whom across the edge.
//!
//! The partner record and its lifecycle are `model::partner` (below the
//! store, which persists them); `fpa` is the agreement a partner submits,
//! `registry` the live snapshot each node enforces, `identity` which
//! partner a certificate names, `policy` the one place that decides what
//! crosses and how (request rules by direction, rate limits, response
//! edits; with `content` and `product` for what a message carries and who
//! sent it), `refusal` every reason it refuses, `hop` where a partner's
//! edge is, `sources` who may use the internal listener, `metrics` the
//! counters. [`Edge`] is the proxy's [`Router`]:
//! thin glue that asks the policy, hands SDP to the media relay
//! (`anchor`), answers the onboarding IM test and counts every outcome.
//! It decides nothing itself.

pub mod anchor;
pub mod cluster;
pub mod content;
pub mod explain;
pub mod fpa;
pub mod hop;
pub mod identity;
pub mod ig;
pub mod metrics;
pub mod policy;
pub mod probe;
pub mod product;
pub mod refusal;
pub mod registry;
pub mod sources;
pub mod verdicts;

use std::sync::{Arc, OnceLock, Weak};

use tracing::{info, warn};

use crate::model::partner::Partner;
use crate::role::Role;
use crate::sip::edit::Editor;
use crate::sip::message::SipMessage;
use crate::sip::proxy::{Decision, Hop, Proxy, Reject, RequestInfo, Router};
use crate::sip::request::RequestBuilder;
use crate::sip::response::random_token;
use crate::sip::transport::Source;
use crate::sip::transport::outbound::ConnectError;
use crate::store::Store;
use hop::partner_hop;
use metrics::Metrics;
use policy::limits::Limits;
pub use policy::limits::RateConfig;
use policy::{Outcome, PolicyConfig, Verdict};
use refusal::Refusal;
use registry::Registry;

/// Why the edge's reply to an IM test did not get through.
#[derive(Debug, thiserror::Error)]
enum ImTestFailure {
    #[error("the partner's edge could not be found: {0}")]
    NoEdge(hop::HopError),
    #[error("the reply was refused with {0}")]
    Refused(u16),
    #[error("the reply could not be delivered: {0}")]
    Undelivered(crate::sip::proxy::OriginateError),
}

/// The federation edge's decisions, for the proxy core.
#[derive(Debug)]
pub struct Edge {
    pub registry: Arc<Registry>,
    pub policy: PolicyConfig,
    pub rates: RateConfig,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// Where IM test results are recorded.
    pub store: Option<Store>,
    /// The proxy this edge routes for, to send its own requests (IM test replies).
    pub proxy: OnceLock<Weak<Proxy<Edge>>>,
    /// The media relay that anchors A/V calls, when enabled.
    pub media: Option<Arc<crate::media::Relay>>,
    /// Where partners' SRV and address records are looked up.
    pub dns: crate::dns::Dns,
    /// The home pool's addresses: the internal listener takes no one else.
    pub internal_sources: sources::InternalSources,
    /// The other nodes, and whether this one is draining.
    pub cluster: Arc<cluster::ClusterView>,
    /// This node's name (logged), the edge's FQDN (told) and `[drain]
    /// retry_after`, for a draining node's 503.
    pub drain: DrainAnswer,
}

/// What a draining node tells a sender of a new dialog.
#[derive(Debug, Clone, Default)]
pub struct DrainAnswer {
    /// This node's name, for the log line only.
    pub node: String,
    /// The edge's `[federation] fqdn`, which the sender reads.
    pub fqdn: String,
    pub retry_after: u32,
}

/// Whether a draining node refuses `req`: a request that would open a
/// dialog (INVITE, SUBSCRIBE, REFER) outside any dialog the edge knows,
/// from either side. Everything else (in-dialog requests, MESSAGE,
/// OPTIONS, NOTIFY, INFO, BYE...) is carried: single transactions finish
/// within the drain, and in-dialog requests belong to calls it waits for.
pub fn refused_while_draining(req: &SipMessage, info: &RequestInfo) -> bool {
    use crate::sip::message::Method;
    !info.in_dialog
        && matches!(
            req.method(),
            Some(Method::Invite | Method::Subscribe | Method::Refer)
        )
}

/// Marks the IM test's reply, so that an edge that is itself fedge
/// answers it without replying again.
const IM_TEST_REPLY_HEADER: &str = "X-Fedge-IM-Test";
const REJECTIONS: &str = "fedge_rejections_total";
const REJECTIONS_HELP: &str = "Requests refused by the edge, by rule, partner and direction";
const REQUESTS: &str = "fedge_requests_total";
const REQUESTS_HELP: &str = "Requests decided by the federation policy, by outcome and direction";

impl Edge {
    fn direction(role: Role) -> &'static str {
        match role {
            Role::Federation => "inbound",
            Role::Internal => "outbound",
            Role::Cvi => "cvi",
        }
    }

    /// Answers the onboarding IM test with a MESSAGE back to the sender,
    /// and records the test as passed once that reply is accepted.
    fn im_test(&self, req: &SipMessage, partner: Arc<Partner>) {
        let Some(proxy) = self.proxy.get().and_then(Weak::upgrade) else {
            return;
        };
        let Some(from) = req.from().map(|f| f.uri.raw.to_string()) else {
            return;
        };
        // Another fedge's IM test reply (marked so): answered (200) but not
        // replied to, or two edges would test each other forever.
        if req.values_named(IM_TEST_REPLY_HEADER).next().is_some() {
            info!(partner = partner.name(), from = %from, "IM test reply from the partner's test address accepted");
            return;
        }
        let domain = req
            .from()
            .and_then(|f| f.uri.domain().map(|d| d.to_ascii_lowercase()))
            .unwrap_or_default();
        let home = self
            .policy
            .home_domains
            .first()
            .cloned()
            .unwrap_or_default();
        let me = format!("sip:{}@{home}", self.policy.test_user);
        let dns = self.dns.clone();
        let max = self.policy.partner_connections;
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let fqdn = self.policy.fqdn.clone();
        info!(partner = partner.name(), from = %from, "IM test received; replying");
        tokio::spawn(async move {
            let body = format!(
                "This is the federation edge of {home}. Your message from {from} arrived, and this reply proves the way back. \
                 The IM test for {} passes when your side accepts this message.",
                partner.details.org_name
            );
            let build = |via: &str| {
                RequestBuilder::new("MESSAGE", from.as_str())
                    .via(via)
                    .from(format!("<{me}>;tag={}", random_token()))
                    .to(format!("<{from}>"))
                    .call_id(format!("{}@{fqdn}", random_token()))
                    .header(IM_TEST_REPLY_HEADER, "reply")
                    .body("text/plain; charset=UTF-8", body.clone())
                    .build()
            };
            let outcome = match partner_hop(&dns, &partner, &domain, max).await {
                Err(why) => Err(ImTestFailure::NoEdge(why)),
                Ok(t) => match proxy
                    .originate(Role::Federation.side(), &Hop::Stream(t), build)
                    .await
                {
                    Ok(resp) if resp.status().is_some_and(|s| (200..300).contains(&s)) => Ok(()),
                    Ok(resp) => Err(ImTestFailure::Refused(resp.status().unwrap_or(0))),
                    Err(e) => Err(ImTestFailure::Undelivered(e)),
                },
            };
            match outcome {
                Ok(()) => {
                    let recorded = match &store {
                        Some(s) => s
                            .record_im_test(&partner.id, &from, "fedge")
                            .await
                            .map(|_| ()),
                        None => Ok(()),
                    };
                    match recorded {
                        Ok(()) => {
                            metrics.inc(
                                "fedge_im_tests_total",
                                "Onboarding IM tests",
                                &[("partner", partner.name()), ("result", "passed")],
                            );
                            info!(partner = partner.name(), from = %from, "IM test passed and recorded");
                        }
                        Err(e) => {
                            warn!(partner = partner.name(), error = %e, "IM test passed but could not be recorded")
                        }
                    }
                }
                Err(why) => {
                    metrics.inc(
                        "fedge_im_tests_total",
                        "Onboarding IM tests",
                        &[("partner", partner.name()), ("result", "failed")],
                    );
                    warn!(partner = partner.name(), from = %from, reason = %why, "IM test failed");
                }
            }
        });
    }
}

impl Edge {
    /// The policy's verdict with the rates, the media relay and the IM
    /// test applied, counted.
    fn decide(
        &self,
        req: &SipMessage,
        source: &Source,
        info: &RequestInfo,
        snap: &registry::Snapshot,
        srv: Option<&policy::SrvFacts>,
    ) -> Decision {
        let mut v = policy::decide(
            req,
            Role::of(source.tag),
            source.identity.as_deref(),
            info,
            snap,
            &self.policy,
            srv,
        );
        // Everything a partner gets through is held to its rate, the
        // onboarding IM test's answer included (it costs a store write).
        if Role::of(source.tag) == Role::Federation
            && v.admitted()
            && let Some(p) = &v.partner
            && let Err(r) = policy::limits::check(
                &self.limits,
                &self.rates,
                (req, p),
                info,
                &self.cluster,
                tokio::time::Instant::now(),
            )
        {
            v = v.refused(r);
            // A flood is logged once a second, with the count left out.
            if let (Decision::Reject(rej), Some(p)) = (&mut v.decision, &v.partner) {
                match self.limits.log_refusal(&p.id, tokio::time::Instant::now()) {
                    Some(0) => {}
                    Some(n) => {
                        warn!(partner = p.name(), org = %p.details.org_name, refused = n, reason = %rej.reason,
                            "more requests of this partner refused for its rate than logged (one line a second)")
                    }
                    None => rej.log = false,
                }
            }
        }
        let partner_id = v.partner.as_ref().map(|p| p.id.clone());
        if let (Decision::Forward(fwd), Some(relay)) = (&mut v.decision, &self.media) {
            match anchor::request(relay, req, source, partner_id.as_deref()) {
                Ok(body) => fwd.body = body,
                Err(e) => v = v.refused(Refusal::media(e)),
            }
        }
        self.count(&v, Role::of(source.tag));
        if v.im_test
            && let Some(p) = v.partner.clone()
        {
            self.im_test(req, p);
        }
        v.decision
    }

    /// One count per request: refusals by rule, the rest by outcome.
    fn count(&self, v: &Verdict, role: Role) {
        let dir = Edge::direction(role);
        match &v.outcome {
            Outcome::Refused(r) => {
                let partner = v.partner.as_ref().map_or("-", |p| p.name());
                self.metrics.inc(
                    REJECTIONS,
                    REJECTIONS_HELP,
                    &[
                        ("rule", r.label()),
                        ("partner", partner),
                        ("direction", dir),
                    ],
                )
            }
            Outcome::Admitted(a) => self.metrics.inc(
                REQUESTS,
                REQUESTS_HELP,
                &[("outcome", a.label()), ("direction", dir)],
            ),
        }
    }
}

impl Router for Edge {
    async fn route(&self, req: &SipMessage, source: &Source, info: &RequestInfo) -> Decision {
        if refused_while_draining(req, info) && self.cluster.draining().is_some() {
            let r = Refusal::Draining {
                node: self.drain.node.clone(),
                fqdn: self.drain.fqdn.clone(),
                retry_after: self.drain.retry_after,
            };
            let dir = Edge::direction(Role::of(source.tag));
            let labels = [("rule", r.label()), ("partner", "-"), ("direction", dir)];
            self.metrics.inc(REJECTIONS, REJECTIONS_HELP, &labels);
            return Decision::Reject(r.reject());
        }
        let snap = self.registry.snapshot();
        // An allowed-domain partner is found (and checked) by DNS first.
        let srv = match policy::srv_needed(req, Role::of(source.tag), info, &snap) {
            Some(domain) => Some(policy::SrvFacts {
                answer: self.dns.federation_srv(&domain).await,
                domain,
            }),
            None => None,
        };
        self.decide(req, source, info, &snap, srv.as_ref())
    }

    /// Tokens in a partner's request must be that partner's: the one its
    /// From domain names (the policy then checks its certificate).
    fn token_peer(&self, req: &SipMessage, source: &Source) -> String {
        if Role::of(source.tag) != Role::Federation {
            return String::new();
        }
        req.from()
            .and_then(|f| f.uri.domain().map(str::to_string))
            .and_then(|d| self.registry.snapshot().by_domain(&d).map(|p| p.id.clone()))
            .unwrap_or_default()
    }

    fn forward_failed(&self, _req: &SipMessage, source: &Source, err: &ConnectError) -> Reject {
        let r = policy::forward_failed(Role::of(source.tag), err);
        self.metrics.inc(
            REJECTIONS,
            REJECTIONS_HELP,
            &[
                ("rule", r.label()),
                ("partner", "-"),
                ("direction", Edge::direction(Role::of(source.tag))),
            ],
        );
        r.reject()
    }

    fn admits(
        &self,
        tag: crate::sip::transport::Tag,
        remote: std::net::SocketAddr,
        transport: crate::sip::transport::Transport,
    ) -> bool {
        Role::of(tag) != Role::Internal
            || self.internal_sources.admits(remote, &transport.to_string())
    }

    /// A connection whose certificate names a partner's edge in the
    /// registry (in whatever state: its refusals are the policy's and its
    /// rate's business, not the stranger's budget).
    fn identified(&self, source: &Source) -> bool {
        Role::of(source.tag) == Role::Federation
            && source.identity.as_deref().is_some_and(|id| {
                !identity::partners_named(&self.registry.snapshot(), id).is_empty()
            })
    }

    fn refused(&self, req: &SipMessage, source: &Source, status: u16) {
        if let Some(relay) = &self.media {
            anchor::refused(relay, req, source, status);
        }
    }

    fn edit_response(&self, resp: &SipMessage, to: &Source, ed: &mut Editor<'_>) {
        if let Some(relay) = &self.media
            && let Some(body) = anchor::response(relay, resp, to)
        {
            ed.set_body(body);
        }
        policy::responses::edit(resp, Role::of(to.tag), &self.policy, ed);
    }
}
