//! Who may talk to whom across the edge.
//!
//! `partner` is the record and its lifecycle, `fpa` the agreement a partner
//! submits, `registry` the live snapshot each node enforces, and `policy`
//! the one place that decides what crosses. [`Edge`] is the proxy's
//! [`Router`]: it hands every request to `policy::decide` with the current
//! snapshot and keeps internal diagnostics from leaving towards partners.

pub mod fpa;
pub mod partner;
pub mod policy;
pub mod registry;

use std::sync::Arc;

use crate::sip::edit::Editor;
use crate::sip::headers::HeaderName;
use crate::sip::message::SipMessage;
use crate::sip::proxy::{Decision, Reject, RequestInfo, Router};
use crate::sip::response::quote;
use crate::sip::transport::outbound::ConnectError;
use crate::sip::transport::{Role, Source};
use policy::{PolicyConfig, diag};
use registry::Registry;

/// The federation edge's decisions, for the proxy core.
#[derive(Debug)]
pub struct Edge {
    pub registry: Arc<Registry>,
    pub policy: PolicyConfig,
}

impl Router for Edge {
    fn route(&self, req: &SipMessage, source: &Source, info: &RequestInfo) -> Decision {
        let snap = self.registry.snapshot();
        policy::decide(
            req,
            source.role,
            source.identity.as_deref(),
            info,
            &snap,
            &self.policy,
        )
    }

    fn forward_failed(&self, _req: &SipMessage, source: &Source, err: &ConnectError) -> Reject {
        policy::forward_failed(source.role, err)
    }

    fn edit_response(&self, resp: &SipMessage, to: &Source, ed: &mut Editor<'_>) {
        match to.role {
            // Internal diagnostics name internal servers: they never leave.
            Role::Federation => {
                ed.remove_all(HeaderName::MsDiagnostics);
                ed.remove_header(policy::TRUST_HEADER);
            }
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
