//! The proxy's use of its dialog table ([`super::dialogs`]): whether a
//! request with a To tag is in a dialog the edge knows, whether its sender
//! may speak in it, and whether a new dialog may take a Call-ID and tag.
//!
//! Owns those three judgements, made on the edge's own knowledge (a dialog
//! it record-routed, a token it sealed), never on what the sender wrote.
//! It never answers a request itself: it returns the refusal to send.
//! Also: the calls among the dialogs (begun when an INVITE is forwarded,
//! ended by the far side's answer to a BYE forwarded in the dialog or by
//! a failure on the INVITE's own transaction, never by a refusal of
//! another request) and the transactions still waiting for an answer,
//! which a draining node counts.

use super::dialogs::Membership;
use super::router::{Reject, Router};
use super::txn::ServerTxn;
use super::{Prep, Proxy};
use crate::message::{Method, SipMessage};
use crate::transport::{Side, Source};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

impl<R: Router> Proxy<R> {
    /// Whether `msg` (with its To tag, if any) is in a dialog the edge
    /// knows: Ok(true) or Ok(false), or the refusal when the dialog was
    /// set up with another outside peer. Inside (home pool, whose sources
    /// are restricted) a To tag is enough, so that a restart or a full
    /// table never cuts the home side's in-dialog requests.
    pub(super) fn dialog_state(
        &self,
        msg: &SipMessage,
        source: &Source,
        prep: &Prep,
        now: Instant,
    ) -> Result<bool, Reject> {
        let Some(to) = msg.to().and_then(|t| t.tag()) else {
            return Ok(false);
        };
        let outside = source.tag.side == Side::Outside;
        let sender = outside.then(|| self.router.token_peer(msg, source));
        let from = msg.from().and_then(|f| f.tag()).unwrap_or("");
        let call_id = msg.call_id().unwrap_or("");
        let membership = (self.dialogs).membership(call_id, from, to, sender.as_deref(), now);
        if membership == Membership::Foreign {
            self.stats.foreign_dialog.fetch_add(1, Ordering::Relaxed);
            return Err(Reject::new(
                481,
                "no dialog of this peer matches the request",
            ));
        }
        Ok(!outside
            || !prep.restored_routes.is_empty()
            || prep.restored_target.is_some()
            || membership == Membership::Member)
    }

    /// Records the dialog a forwarded dialog-creating request sets up with
    /// `peer` (the router's partner name; empty for none). From outside, a
    /// Call-ID and From tag that name another peer's live dialog are
    /// refused (482): a partner cannot take over another's call by
    /// reusing its identifiers. An INVITE's call is counted with its
    /// server transaction `server`.
    pub(super) fn claim_dialog(
        &self,
        (msg, source): (&SipMessage, &Source),
        server: Option<&ServerTxn>,
        peer: &str,
        now: Instant,
    ) -> Result<(), Reject> {
        let (Some(call_id), Some(tag)) = (msg.call_id(), msg.from().and_then(|f| f.tag())) else {
            return Ok(());
        };
        let peer = Some(peer).filter(|p| !p.is_empty());
        let outside = source.tag.side == Side::Outside;
        if outside && self.dialogs.held_by_other(call_id, tag, peer, now) {
            self.stats.foreign_dialog.fetch_add(1, Ordering::Relaxed);
            return Err(Reject::new(
                482,
                "this Call-ID and From tag belong to another peer's dialog",
            ));
        }
        self.dialogs.record(call_id, tag, peer, now);
        if msg.method() == Some(&crate::message::Method::Invite)
            && let Some(server) = server
        {
            (self.dialogs.calls).offered(call_id, tag, &server.key, now);
        }
        Ok(())
    }

    /// The far side's final answer `status` to a request forwarded on
    /// `server` (`msg` is the answer, or the request when none came and
    /// the proxy answers the timeout): an INVITE's call is confirmed or,
    /// on its own transaction, ended; a BYE forwarded in the dialog ends
    /// its call whatever the status (RFC 5057 §5.1).
    pub(super) fn note_answer(&self, msg: &SipMessage, server: &ServerTxn, status: u16) {
        let (Some(call_id), Some(cseq)) = (msg.call_id(), msg.cseq()) else {
            return;
        };
        let from = msg.from().and_then(|f| f.tag()).unwrap_or("");
        let to = msg.to().and_then(|t| t.tag()).unwrap_or("");
        let calls = &self.dialogs.calls;
        if cseq.method.eq_ignore_ascii_case("INVITE") {
            calls.invite_answered(call_id, from, &server.key, status);
        } else if cseq.method.eq_ignore_ascii_case("BYE") && status >= 200 && server.in_dialog() {
            calls.bye_answered(call_id, (from, to));
        }
    }

    /// The edge refused `req` itself with `status`: only an INVITE's
    /// refusal on the transaction that offered its call ends the call (a
    /// next hop that cannot be reached, or no answer). A refused BYE (the
    /// rate limit, a foreign peer) or another INVITE reusing the
    /// identifiers ends nothing.
    pub(super) fn note_refusal(
        &self,
        req: &SipMessage,
        server: Option<&Arc<ServerTxn>>,
        status: u16,
    ) {
        if let (Some(server), Some(Method::Invite)) = (server, req.method())
            && let (Some(call_id), Some(from)) = (req.call_id(), req.from().and_then(|f| f.tag()))
        {
            (self.dialogs.calls).invite_answered(call_id, from, &server.key, status);
        }
    }

    /// The calls this proxy carries (INVITE dialogs up or ringing).
    pub fn calls(&self) -> usize {
        self.dialogs.calls.count(Instant::now())
    }

    /// Requests received and not yet answered with a final status (the
    /// transactions a drain waits for; ended ones that only absorb
    /// retransmissions are not counted).
    pub fn in_progress(&self) -> usize {
        self.tables.pending()
    }

    /// As [`Proxy::in_progress`], counting only the requests received at
    /// or before `at` (a drain's start: what arrives later does not hold
    /// the drain).
    pub fn in_progress_since(&self, at: Instant) -> usize {
        self.tables.pending_since(at)
    }
}
