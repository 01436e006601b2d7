//! Anchoring federated A/V calls on the media relay: which SIP messages
//! carry SDP for it, which side of the relay each comes from (partners are
//! side A, the home pool side B), how the SDP parts of a body (Lync's
//! two-SDP multipart/alternative included) are rewritten in place, and
//! the call's life as the relay sees it.
//!
//! A relay session belongs to one dialog of one partner: its key is the
//! partner (the authenticated peer; for calls from the home pool, the
//! partner called), the Call-ID and the caller's tag. A request finds its
//! session only under its own partner, so another partner who knows a
//! Call-ID (and even its tags) reaches a session of its own, never the
//! call's. A request that acts on a session (INVITE, UPDATE, BYE) is noted
//! as an exchange of that session, by its Call-ID, CSeq and From tag and
//! the address it came from; its answer (or the edge's own refusal or
//! timeout of it) acts on that session alone.
//!
//! A relay session opens with an INVITE's (or UPDATE's) offer, or is
//! reserved by an INVITE without one (the offer then comes in the answer).
//! It ends when a BYE is answered (anything but a challenge), when the
//! INVITE (or the UPDATE that opened it) fails before the call was
//! answered (CANCEL's 487 included), or when the edge itself refuses or
//! times out the INVITE or the BYE; a refused re-offer is undone. The relay
//! closes sessions that go silent. Sessions count against the partner's
//! share of the relay.
//!
//! Owns that mapping only: the relay knows no SIP, the proxy knows no media.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use crate::media::{MediaError, Relay, Side, Who};
use crate::role::Role;
use crate::sip::body::{leaves, range_in, replace_ranges};
use crate::sip::headers::HeaderName;
use crate::sip::message::{Method, SipMessage};
use crate::sip::transport::Source;

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

/// Methods whose final answer acts on the session.
fn exchanges(m: &Method) -> bool {
    matches!(m, Method::Invite | Method::Update | Method::Bye)
}

/// The relay session key of one dialog of one partner.
fn key(call: &str, owner: &str, caller_tag: &str) -> String {
    format!("{call};partner={owner};tag={caller_tag}")
}

/// The name of a request's exchange (its answers share it).
fn exchange_name(msg: &SipMessage, call: &str) -> Option<String> {
    let cseq = msg.cseq()?;
    let from_tag = msg.from().and_then(|f| f.tag().map(str::to_string))?;
    Some(format!("{call}\n{} {}\n{from_tag}", cseq.seq, cseq.method))
}

/// The session `req` (in a dialog) belongs to under `owner`, when there is
/// one: the dialog's caller tag is its From tag or its To tag.
fn find(relay: &Relay, call: &str, owner: &str, req: &SipMessage) -> Option<String> {
    let from = req.from().and_then(|f| f.tag().map(str::to_string));
    let to = req.to().and_then(|t| t.tag().map(str::to_string));
    [from, to]
        .into_iter()
        .flatten()
        .map(|t| key(call, owner, &t))
        .find(|k| relay.has(k))
}

/// The body with every SDP part rewritten by the relay, or `None` when it
/// has no SDP the relay carries.
fn rewrite(
    relay: &Relay,
    session: &str,
    from: Side,
    msg: &SipMessage,
    open: bool,
    who: Who<'_>,
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
    if sdps.is_empty() || (!Relay::wants(&sdps) && !relay.has(session)) {
        return Ok(None);
    }
    let out = relay.update_as(session, from, &sdps, open, who)?;
    let edits: Vec<_> = sdps
        .iter()
        .zip(out)
        .filter_map(|(old, new)| range_in(body, old).map(|r| (r, new)))
        .collect();
    Ok(Some(Bytes::from(replace_ranges(body, &edits))))
}

/// Who a request's session belongs to: the partner (found by the policy),
/// else the address of a federation peer, else the home pool.
fn owner_of(source: &Source, partner: Option<&str>) -> String {
    match (partner, Role::of(source.tag)) {
        (Some(p), _) => p.to_string(),
        (None, Role::Federation) => format!("peer:{}", source.remote.ip()),
        (None, _) => "home".to_string(),
    }
}

/// A request the policy lets through, from `source` and of (or for)
/// `partner`: its new body, or why the call cannot be carried (the answer
/// is `Refusal::media`'s).
pub fn request(
    relay: &Arc<Relay>,
    req: &SipMessage,
    source: &Source,
    partner: Option<&str>,
) -> Result<Option<Bytes>, MediaError> {
    let (Some(method), Some(call)) = (req.method(), req.call_id()) else {
        return Ok(None);
    };
    if !negotiates(method) && !exchanges(method) {
        return Ok(None);
    }
    let owner = owner_of(source, partner);
    let from = side(Role::of(source.tag));
    let who = Who {
        owner: Some(&owner),
        peer: Some::<IpAddr>(source.remote.ip()),
    };
    let initial = *method == Method::Invite && req.to().is_none_or(|t| t.tag().is_none());
    let session = if initial {
        let tag = req.from().and_then(|f| f.tag().map(str::to_string));
        Some(key(call, &owner, tag.as_deref().unwrap_or("")))
    } else {
        find(relay, call, &owner, req)
    };
    let note = |session: &str, opened: bool| {
        if exchanges(method)
            && let Some(name) = exchange_name(req, call)
        {
            relay
                .exchanges
                .begin(&name, &source.remote.to_string(), session, opened);
        }
    };
    if *method == Method::Bye {
        if let Some(s) = &session {
            note(s, false);
        }
        return Ok(None);
    }
    if initial && req.body().is_empty() {
        // A late offer: keep the call's place; the offer comes in the 2xx.
        let s = session.unwrap_or_default();
        let had = relay.has(&s);
        relay.reserve_as(&s, Some(&owner))?;
        note(&s, !had);
        return Ok(None);
    }
    // Offers in INVITE and UPDATE may open a session (under the From tag,
    // for a dialog that had none); answers (ACK, PRACK) belong to one.
    let open = matches!(method, Method::Invite | Method::Update);
    let session = match session {
        Some(s) => s,
        None if open => {
            let tag = req.from().and_then(|f| f.tag().map(str::to_string));
            key(call, &owner, tag.as_deref().unwrap_or(""))
        }
        None => {
            if !req.body().is_empty() {
                warn!(call_id = call, method = method.as_str(), partner = %owner,
                    "SDP for a call the relay does not carry for this partner passes as it is");
            }
            return Ok(None);
        }
    };
    // A session that exists hears of this request's failure (a refused
    // re-offer is undone) even when the edge refuses it for its SDP.
    let had = relay.has(&session);
    if had {
        note(&session, false);
    }
    let body = rewrite(relay, &session, from, req, open, who)?;
    if !had && relay.has(&session) {
        note(&session, true);
    }
    Ok(body)
}

/// What happens to relay session `s` when its INVITE, UPDATE or BYE gets
/// final answer `status` (from downstream or from the edge itself);
/// `opened`: that request's offer opened the session.
fn on_final(relay: &Relay, s: &str, method: &Method, status: u16, opened: bool) {
    match method {
        Method::Invite if (200..300).contains(&status) => {
            relay.mark_answered(s);
            relay.commit(s);
        }
        Method::Update if (200..300).contains(&status) => relay.commit(s),
        Method::Invite if status >= 300 => {
            if relay.answered(s) {
                relay.rollback(s);
            } else {
                relay.close(s, &format!("INVITE failed with {status}"));
            }
        }
        // An UPDATE that opened the session and failed leaves nothing.
        Method::Update if status >= 300 && opened && !relay.answered(s) => {
            relay.close(s, &format!("UPDATE failed with {status}"));
        }
        Method::Update if status >= 300 => relay.rollback(s),
        // A challenged BYE is sent again with credentials; any other answer ends the call.
        Method::Bye if status >= 200 && status != 401 && status != 407 => {
            relay.close(s, &format!("BYE answered {status}"));
        }
        _ => {}
    }
}

/// The edge answered a request from `source` itself with `status` (refused
/// it, could not forward it, or timed it out). Only an exchange that this
/// sender started acts: a refused request with another call's name (its
/// Call-ID, From tag and CSeq) touches nothing of that call.
pub fn refused(relay: &Arc<Relay>, req: &SipMessage, source: &Source, status: u16) {
    let (Some(m), Some(call)) = (req.method(), req.call_id()) else {
        return;
    };
    if !exchanges(m) || status < 200 {
        return;
    }
    if let Some(name) = exchange_name(req, call)
        && let Some(x) = relay
            .exchanges
            .finish(&name, Some(&source.remote.to_string()))
        && !x.done
    {
        on_final(relay, &x.session, m, status, x.opened);
    }
}

/// A response going to `to`: its new body when it carries SDP. It acts on
/// the session of the exchange `to` started, and no other.
pub fn response(relay: &Arc<Relay>, resp: &SipMessage, to: &Source) -> Option<Bytes> {
    let call = resp.call_id()?;
    let method = Method::from_token(resp.cseq()?.method);
    let status = resp.status()?;
    let name = exchange_name(resp, call)?;
    let who = to.remote.to_string();
    let x = if status >= 200 {
        let x = relay.exchanges.finish(&name, Some(&who))?;
        if !x.done {
            on_final(relay, &x.session, &method, status, x.opened);
        }
        x
    } else {
        relay.exchanges.get(&name, Some(&who))?
    };
    if !negotiates(&method) || !(101..300).contains(&status) {
        return None;
    }
    let side_of_sender = side(Role::of(to.tag)).other();
    match rewrite(
        relay,
        &x.session,
        side_of_sender,
        resp,
        false,
        Who::default(),
    ) {
        Ok(b) => b,
        Err(e) => {
            // A response cannot be refused: it passes as it is, and says so.
            warn!(call_id = call, status, error = %e, "SDP in a response not relayed");
            None
        }
    }
}
