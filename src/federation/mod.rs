//! Who may talk to whom across the edge.
//!
//! `partner` is the record and its lifecycle, `fpa` the agreement a partner
//! submits, `registry` the live snapshot each node enforces, `policy` the
//! one place that decides what crosses (with `content` and `product` for
//! what a message carries and who sent it), `limits` the per-partner rates,
//! `metrics` the counters. [`Edge`] is the proxy's [`Router`]: it asks
//! `policy::decide`, applies the rate limits to what the policy lets
//! through, answers the onboarding IM test, counts every outcome, and
//! keeps internal diagnostics from leaving towards partners.

pub mod anchor;
pub mod content;
pub mod fpa;
pub mod ig;
pub mod limits;
pub mod metrics;
pub mod partner;
pub mod policy;
pub mod probe;
pub mod product;
pub mod registry;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tracing::{info, warn};

use crate::role::Role;
use crate::sip::edit::Editor;
use crate::sip::headers::HeaderName;
use crate::sip::message::{Method, SipMessage};
use crate::sip::proxy::{Decision, Hop, Proxy, Reject, RequestInfo, Router};
use crate::sip::request::RequestBuilder;
use crate::sip::response::{quote, random_token};
use crate::sip::transport::Source;
use crate::sip::transport::outbound::ConnectError;
use crate::store::Store;
use limits::Limits;
use metrics::Metrics;
use partner::Partner;
use policy::{PolicyConfig, diag};
use registry::Registry;

/// Where a partner's edge is: its pinned edge FQDN (an allowed partner
/// server), or what `_sipfederationtls._tcp.<domain>` names (an allowed
/// domain), under the same-domain rule.
pub async fn partner_hop(
    dns: &crate::dns::Dns,
    partner: &Partner,
    domain: &str,
    max_conns: usize,
) -> Result<crate::sip::transport::outbound::StreamTarget, String> {
    use crate::dns::SrvAnswer;
    match &partner.details.edge_fqdn {
        Some(edge) => Ok(policy::partner_target(partner, edge, max_conns)),
        None => match dns.federation_srv(domain).await {
            SrvAnswer::Targets(ts) => ts
                .iter()
                .find(|t| crate::dns::zone::directly_in(&t.target, domain))
                .map(|t| policy::srv_stream_target(partner, t, max_conns))
                .ok_or_else(|| {
                    format!("_sipfederationtls._tcp.{domain} names no host directly in {domain}")
                }),
            SrvAnswer::NotFound => Err(format!(
                "{domain} publishes no _sipfederationtls._tcp SRV record"
            )),
            SrvAnswer::Failed(e) => Err(format!("DNS: {e}")),
        },
    }
}

/// Rates applied to partners' requests.
#[derive(Debug, Clone)]
pub struct RateConfig {
    pub rate: u32,
    pub burst: u32,
    pub enumeration_limit: u32,
    pub enumeration_window: Duration,
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
}

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

    /// Rate limits and the enumeration guard, for what the policy let through.
    fn limit(
        &self,
        req: &SipMessage,
        partner: &Partner,
        info: &RequestInfo,
    ) -> Option<(Reject, &'static str)> {
        if req.method() == Some(&Method::Ack) {
            return None;
        }
        let now = tokio::time::Instant::now();
        let rate = partner
            .details
            .rate_limit
            .as_deref()
            .and_then(|r| r.parse().ok())
            .unwrap_or(self.rates.rate);
        let burst = self.rates.burst.max(rate);
        if let Err(wait) = self.limits.take(&partner.id, rate, burst, now) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut r = Reject::new(
                503,
                format!(
                    "partner {} exceeds its {rate} requests per second; retry after {secs} s",
                    partner.details.org_name
                ),
            )
            .diag(diag::TEMPORARILY);
            r.headers.push(("Retry-After".into(), secs.to_string()));
            return Some((r, "rate_limited"));
        }
        if !info.in_dialog {
            let target = req
                .request_uri()
                .map(|u| {
                    format!("{}@{}", u.user.unwrap_or(""), u.domain().unwrap_or(""))
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let w = self.rates.enumeration_window;
            if !self
                .limits
                .reach(&partner.id, &target, self.rates.enumeration_limit, w, now)
            {
                let r = Reject::new(
                    403,
                    format!(
                        "partner {} has reached {} distinct home addresses within {}; requests to new ones are refused",
                        partner.details.org_name,
                        self.rates.enumeration_limit,
                        humantime::format_duration(w)
                    ),
                )
                .diag(diag::NOT_AUTHORIZED);
                return Some((r, "enumeration"));
            }
        }
        None
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
                    .body("text/plain; charset=UTF-8", body.clone())
                    .build()
            };
            let outcome = match partner_hop(&dns, &partner, &domain, max).await {
                Err(why) => Err(format!("the partner's edge could not be found: {why}")),
                Ok(t) => match proxy
                    .originate(Role::Federation.side(), &Hop::Stream(t), build)
                    .await
                {
                    Ok(resp) if resp.status().is_some_and(|s| (200..300).contains(&s)) => Ok(()),
                    Ok(resp) => Err(format!(
                        "the reply was refused with {}",
                        resp.status().unwrap_or(0)
                    )),
                    Err(e) => Err(format!("the reply could not be delivered: {e}")),
                },
            };
            match outcome {
                Ok(()) => {
                    let recorded = match &store {
                        Some(s) => s
                            .record_im_test(&partner.id, &from, "fedge")
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
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
        let v = policy::decide(
            req,
            Role::of(source.tag),
            source.identity.as_deref(),
            info,
            snap,
            &self.policy,
            srv,
        );
        let dir = Edge::direction(Role::of(source.tag));
        let partner_name = v
            .partner
            .as_ref()
            .map(|p| p.name().to_string())
            .unwrap_or_else(|| "-".into());
        let mut decision = v.decision;
        let mut rule = v.rule;
        // Everything a partner gets through is held to its rate, the
        // onboarding IM test's answer included (it costs a store write).
        if Role::of(source.tag) == Role::Federation
            && matches!(decision, Decision::Forward(_) | Decision::Answer { .. })
            && let Some(p) = &v.partner
            && let Some((r, why)) = self.limit(req, p, info)
        {
            decision = Decision::Reject(r);
            rule = why;
        }
        if let (Decision::Forward(fwd), Some(relay)) = (&mut decision, &self.media) {
            match anchor::request(relay, req, Role::of(source.tag)) {
                Ok(body) => fwd.body = body,
                Err(r) => {
                    decision = Decision::Reject(r);
                    rule = "media";
                }
            }
        }
        match &decision {
            Decision::Reject(_) => self.metrics.inc(
                REJECTIONS,
                REJECTIONS_HELP,
                &[
                    ("rule", rule),
                    ("partner", &partner_name),
                    ("direction", dir),
                ],
            ),
            _ => self.metrics.inc(
                REQUESTS,
                REQUESTS_HELP,
                &[("outcome", rule), ("direction", dir)],
            ),
        }
        if v.im_test
            && !matches!(decision, Decision::Reject(_))
            && let Some(p) = v.partner
        {
            self.im_test(req, p);
        }
        decision
    }
}

impl Router for Edge {
    async fn route(&self, req: &SipMessage, source: &Source, info: &RequestInfo) -> Decision {
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

    fn forward_failed(&self, _req: &SipMessage, source: &Source, err: &ConnectError) -> Reject {
        let r = policy::forward_failed(Role::of(source.tag), err);
        self.metrics.inc(
            REJECTIONS,
            REJECTIONS_HELP,
            &[
                ("rule", "next_hop_unreachable"),
                ("partner", "-"),
                ("direction", Edge::direction(Role::of(source.tag))),
            ],
        );
        r
    }

    fn refused(&self, req: &SipMessage, status: u16) {
        if let Some(relay) = &self.media {
            anchor::refused(relay, req, status);
        }
    }

    fn edit_response(&self, resp: &SipMessage, to: &Source, ed: &mut Editor<'_>) {
        if let Some(relay) = &self.media
            && let Some(body) = anchor::response(relay, resp, Role::of(to.tag))
        {
            ed.set_body(body);
        }
        match Role::of(to.tag) {
            // Internal diagnostics and the home pool's message signing
            // (`targetname=` names a pool) never leave.
            Role::Federation => {
                ed.remove_all(HeaderName::MsDiagnostics);
                ed.remove_header(policy::TRUST_HEADER);
                for h in policy::INTERNAL_AUTH_HEADERS
                    .iter()
                    .chain(&policy::INTERNAL_HEADERS)
                {
                    ed.remove_header(h);
                }
                // A Warning's agent names the host that wrote it: only the
                // edge's own leave.
                for i in resp.indices(HeaderName::Warning) {
                    let agent = resp.value(&resp.headers()[i]).split_whitespace().nth(1);
                    if !agent.is_some_and(|a| a.eq_ignore_ascii_case(&self.policy.fqdn)) {
                        ed.remove_value(i);
                    }
                }
            }
            Role::Cvi => {}
            // A partner's failure without a diagnostic gets SfB's 1034, so
            // the home side can tell "the partner said no" from "we said no".
            Role::Internal => {
                let failed = resp.status().is_some_and(|s| s >= 300);
                let has_diag = resp.first(HeaderName::MsDiagnostics).is_some()
                    || resp.first(HeaderName::MsDiagnosticsPublic).is_some();
                if failed && !has_diag {
                    let (code, text) = diag::NO_PEER_DIAGNOSTIC;
                    let domain = resp
                        .to()
                        .and_then(|t| t.uri.domain().map(str::to_string))
                        .unwrap_or_default();
                    ed.append(
                        "ms-diagnostics-public",
                        &format!(
                            "{code};reason={};Domain={};source={}",
                            quote(text),
                            quote(&domain),
                            quote(&self.policy.fqdn)
                        ),
                    );
                }
            }
        }
    }
}
