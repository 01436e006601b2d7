//! Which call an in-dialog request belongs to: a call is found by its
//! Call-ID, but a request is the dialog's only when it comes from the
//! dialog's transport peer (the room's address and port over UDP, its very
//! connection over TCP or TLS; the connector's address) and carries the
//! dialog's tags; its CSeq must be new (RFC 3261 §12.2.2). A CANCEL must
//! match the INVITE's peer, From tag, CSeq and branch (§9.2).
//!
//! Decides "is this request the dialog's" only; never acts on a call.
//! A request that is not the dialog's gets the same 481 as one whose
//! Call-ID is unknown, so a stranger learns nothing from it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::debug;

use super::call::Call;
use super::leg::{Leg, Path};
use super::{Gateway, lock};
use crate::sip::message::{Method, SipMessage};
use crate::sip::transport::Source;

/// True when `b` came from the transport peer `a` did: the same
/// connection for TCP and TLS, the same address and port for UDP.
pub(super) fn same_peer(a: &Source, b: &Source) -> bool {
    match (&a.conn, &b.conn) {
        (Some(x), Some(y)) => x.id == y.id,
        (None, None) => a.remote == b.remote,
        _ => false,
    }
}

/// True when `source` is the connector leg's peer: over UDP its address
/// and port; over TCP or TLS a connection from its address (a connector
/// may open its own connection to send its requests).
fn connector_peer(leg: &Leg, source: &Source) -> bool {
    match &leg.path {
        Path::Udp(_, to, _) => source.conn.is_none() && source.remote == *to,
        Path::Pooled(p) => {
            let conn = lock(&p.conn).clone();
            source
                .conn
                .as_ref()
                .is_some_and(|c| c.id == conn.id || c.remote.ip() == conn.remote.ip())
        }
        Path::Stream(c) => source.conn.as_ref().is_some_and(|s| s.id == c.id),
    }
}

/// True when `msg`'s From tag is the peer's and its To tag ours.
fn tags_match(leg: &Leg, msg: &SipMessage) -> bool {
    let from = msg.from().and_then(|f| f.tag().map(str::to_string));
    let to = msg.to().and_then(|t| t.tag().map(str::to_string));
    let peer = lock(&leg.peer_tag).clone();
    peer.is_some() && from == peer && to.as_deref() == Some(leg.our_tag.as_str())
}

/// True when `msg` is a CANCEL of the room's INVITE of `call`.
pub(super) fn cancels(call: &Call, msg: &SipMessage, source: &Source) -> bool {
    let branch = |m: &SipMessage| m.top_via().and_then(|v| v.branch().map(str::to_string));
    let from_tag = |m: &SipMessage| m.from().and_then(|f| f.tag().map(str::to_string));
    let seq = |m: &SipMessage| m.cseq().map(|c| c.seq);
    same_peer(&call.source, source)
        && branch(msg).is_some()
        && branch(msg) == branch(&call.invite)
        && from_tag(msg) == from_tag(&call.invite)
        && seq(msg) == seq(&call.invite)
}

impl Gateway {
    /// The call whose dialog `msg` is in, and whether it is the room's;
    /// `None` when no call has its Call-ID or the request is not the
    /// dialog's (counted, logged at debug: strangers must not flood the log).
    pub(super) fn dialog_of(
        &self,
        msg: &SipMessage,
        source: &Source,
        call_id: &str,
    ) -> Option<(Arc<Call>, bool)> {
        let call = self.call(call_id)?;
        let from_room = call.room.call_id == call_id;
        let ok = if from_room {
            same_peer(&call.source, source) && tags_match(&call.room, msg)
        } else {
            let leg = lock(&call.connector).clone();
            leg.is_some_and(|l| connector_peer(&l, source) && tags_match(&l, msg))
        };
        if !ok {
            self.stats.mismatched.fetch_add(1, Ordering::Relaxed);
            debug!(remote = %source.remote, "CVI request does not match its dialog: 481");
            return None;
        }
        Some((call, from_room))
    }

    /// Whether `msg`'s CSeq is new in its dialog (then it is recorded). An
    /// older one is answered 500 (RFC 3261 §12.2.2); the same one again is
    /// a retransmission: an INFO is answered 200 and not acted on.
    pub(super) async fn fresh_cseq(
        &self,
        call: &Call,
        from_room: bool,
        msg: &SipMessage,
        source: &Source,
    ) -> bool {
        let Some(seq) = msg.cseq().map(|c| c.seq) else {
            return false;
        };
        let verdict = if from_room {
            let mut last = lock(&call.room_cseq);
            let v = seq.cmp(&last);
            if v.is_gt() {
                *last = seq;
            }
            v
        } else {
            let mut last = lock(&call.connector_cseq);
            let v = last.map_or(std::cmp::Ordering::Greater, |l| seq.cmp(&l));
            if v.is_gt() {
                *last = Some(seq);
            }
            v
        };
        match verdict {
            std::cmp::Ordering::Greater => true,
            // A re-INVITE, UPDATE or BYE again is answered again (each is
            // idempotent here); a key press again is not pressed twice.
            std::cmp::Ordering::Equal if msg.method() != Some(&Method::Info) => true,
            std::cmp::Ordering::Equal => {
                let r = self.response(msg, 200, None, None).build();
                self.respond(msg, source, r).await;
                false
            }
            std::cmp::Ordering::Less => {
                let r = self
                    .response(msg, 500, None, Some("CSeq lower than the dialog's last"))
                    .build();
                self.respond(msg, source, r).await;
                false
            }
        }
    }
}
