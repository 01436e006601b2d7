//! What responses carry across the edge: towards partners, the home
//! side's internal diagnostics, trust header, authentication and subnet
//! headers and other hosts' Warnings never leave; towards the home side, a
//! partner's failure without a diagnostic gets SfB's 1034, so the home
//! side can tell "the partner said no" from "we said no".
//!
//! Owns those edits as rules over the response and the leg it goes to.
//! Never touches the body (the media relay's SDP rewrite is `anchor`'s)
//! and never sends anything: `Edge::edit_response` applies them.

use super::{INTERNAL_AUTH_HEADERS, INTERNAL_HEADERS, PolicyConfig, TRUST_HEADER};
use crate::federation::refusal::diag;
use crate::role::Role;
use crate::sip::edit::Editor;
use crate::sip::headers::HeaderName;
use crate::sip::message::SipMessage;
use crate::sip::response::quote;

/// Edits a response going out on a leg of `to`.
pub fn edit(resp: &SipMessage, to: Role, cfg: &PolicyConfig, ed: &mut Editor<'_>) {
    match to {
        Role::Federation => towards_partner(resp, cfg, ed),
        Role::Internal => towards_home(resp, cfg, ed),
        Role::Cvi => {}
    }
}

/// Internal diagnostics and the home pool's message signing
/// (`targetname=` names a pool) never leave.
fn towards_partner(resp: &SipMessage, cfg: &PolicyConfig, ed: &mut Editor<'_>) {
    ed.remove_all(HeaderName::MsDiagnostics);
    ed.remove_header(TRUST_HEADER);
    for h in INTERNAL_AUTH_HEADERS.iter().chain(&INTERNAL_HEADERS) {
        ed.remove_header(h);
    }
    // A Warning's agent names the host that wrote it: only the edge's own leave.
    for i in resp.indices(HeaderName::Warning) {
        let agent = resp.value(&resp.headers()[i]).split_whitespace().nth(1);
        if !agent.is_some_and(|a| a.eq_ignore_ascii_case(&cfg.fqdn)) {
            ed.remove_value(i);
        }
    }
}

/// A partner's failure without a diagnostic gets 1034.
fn towards_home(resp: &SipMessage, cfg: &PolicyConfig, ed: &mut Editor<'_>) {
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
                quote(&cfg.fqdn)
            ),
        );
    }
}
