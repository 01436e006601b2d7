//! Anchoring federated A/V calls on the media relay: which SIP messages
//! carry SDP for it, which side of the relay each comes from (partners are
//! side A, the home pool side B), how the SDP parts of a body (Lync's
//! two-SDP multipart/alternative included) are rewritten in place, and
//! the call's life as the relay sees it.
//!
//! A relay session opens with an INVITE's (or UPDATE's) offer, or is
//! reserved by an INVITE without one (the offer then comes in the answer).
//! It ends when a BYE is answered (anything but a challenge), when the
//! INVITE fails before it was answered (CANCEL's 487 included), or when the
//! edge itself refuses or times out the INVITE or the BYE; a refused
//! re-offer is undone. The relay closes sessions that go silent.
//!
//! Owns that mapping only: the relay knows no SIP, the proxy knows no media.

use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use crate::media::{MediaError, Relay, Side};
use crate::role::Role;
use crate::sip::body::{leaves, range_in, replace_ranges};
use crate::sip::headers::HeaderName;
use crate::sip::message::{Method, SipMessage};
use crate::sip::proxy::Reject;

/// The relay side of a SIP leg.
pub fn side(role: Role) -> Side {
    match role {
        Role::Federation => Side::A,
        Role::Internal | Role::Cvi => Side::B,
    }
}

/// Methods whose requests or answers carry offers and answers.
fn negotiates(m: &Method) -> bool {
    matches!(
        m,
        Method::Invite | Method::Update | Method::Prack | Method::Ack
    )
}

/// The body with every SDP part rewritten by the relay, or `None` when it
/// has no SDP the relay carries.
fn rewrite(
    relay: &Relay,
    call: &str,
    from: Side,
    msg: &SipMessage,
    open: bool,
) -> Result<Option<Bytes>, MediaError> {
    let body = msg.body();
    if body.is_empty() {
        return Ok(None);
    }
    let parts = leaves(
        msg.first(HeaderName::ContentType),
        msg.first(HeaderName::ContentDisposition),
        body,
    );
    let sdps: Vec<&[u8]> = parts
        .iter()
        .filter(|p| p.media_type == "application/sdp")
        .map(|p| p.body)
        .collect();
    if sdps.is_empty() || (!Relay::wants(&sdps) && !relay.has(call)) {
        return Ok(None);
    }
    let out = relay.update(call, from, &sdps, open)?;
    let edits: Vec<_> = sdps
        .iter()
        .zip(out)
        .filter_map(|(old, new)| range_in(body, old).map(|r| (r, new)))
        .collect();
    Ok(Some(Bytes::from(replace_ranges(body, &edits))))
}

fn refusal(e: MediaError) -> Reject {
    match e {
        MediaError::Sdp(_) | MediaError::TooManyStreams(_) => {
            Reject::new(488, format!("the SDP cannot be relayed: {e}"))
        }
        other => {
            let mut r = Reject::new(
                503,
                format!("media for this call cannot be relayed: {other}"),
            );
            r.headers.push(("Retry-After".into(), "30".into()));
            r
        }
    }
}

/// A request the policy lets through: its new body, or why the call cannot
/// be carried.
pub fn request(relay: &Arc<Relay>, req: &SipMessage, from: Role) -> Result<Option<Bytes>, Reject> {
    let (Some(method), Some(call)) = (req.method(), req.call_id()) else {
        return Ok(None);
    };
    if !negotiates(method) {
        return Ok(None);
    }
    let initial = *method == Method::Invite && req.to().is_none_or(|t| t.tag().is_none());
    if initial && req.body().is_empty() {
        // A late offer: keep the call's place; the offer comes in the 2xx.
        return relay.reserve(call).map(|_| None).map_err(refusal);
    }
    // Offers in INVITE and UPDATE may open a session; answers (ACK, PRACK)
    // belong to one.
    let open = matches!(method, Method::Invite | Method::Update);
    match rewrite(relay, call, side(from), req, open) {
        Ok(b) => Ok(b),
        Err(MediaError::NoSession) => {
            warn!(
                call_id = call,
                method = method.as_str(),
                "SDP for a call the relay does not carry passes as it is"
            );
            Ok(None)
        }
        Err(e) => Err(refusal(e)),
    }
}

/// What happens to a call's relay session when its INVITE, UPDATE or BYE
/// gets final answer `status` (from downstream or from the edge itself).
fn on_final(relay: &Relay, call: &str, method: &Method, status: u16) {
    match method {
        Method::Invite if (200..300).contains(&status) => {
            relay.mark_answered(call);
            relay.commit(call);
        }
        Method::Update if (200..300).contains(&status) => relay.commit(call),
        Method::Invite if status >= 300 => {
            if relay.answered(call) {
                relay.rollback(call);
            } else {
                relay.close(call, &format!("INVITE failed with {status}"));
            }
        }
        Method::Update if status >= 300 => relay.rollback(call),
        // A challenged BYE is sent again with credentials; any other answer ends the call.
        Method::Bye if status >= 200 && status != 401 && status != 407 => {
            relay.close(call, &format!("BYE answered {status}"));
        }
        _ => {}
    }
}

/// The edge answered a request itself with `status` (refused it, could not
/// forward it, or timed it out).
pub fn refused(relay: &Arc<Relay>, req: &SipMessage, status: u16) {
    if let (Some(m), Some(call)) = (req.method(), req.call_id()) {
        on_final(relay, call, m, status);
    }
}

/// A response going to `to`: its new body when it carries SDP.
pub fn response(relay: &Arc<Relay>, resp: &SipMessage, to: Role) -> Option<Bytes> {
    let call = resp.call_id()?;
    let method = Method::from_token(resp.cseq()?.method);
    let status = resp.status()?;
    if status >= 200 {
        on_final(relay, call, &method, status);
    }
    if !negotiates(&method) || !(101..300).contains(&status) {
        return None;
    }
    match rewrite(relay, call, side(to).other(), resp, false) {
        Ok(b) => b,
        Err(e) => {
            // A response cannot be refused: it passes as it is, and says so.
            warn!(call_id = call, status, error = %e, "SDP in a response not relayed");
            None
        }
    }
}
