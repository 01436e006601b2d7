//! Presentation sharing (issue 19): a mid-call offer from either leg that
//! adds or removes streams (a content stream, `a=content:slides`, RFC 4796;
//! BFCP floor control, RFC 8856), or turns one off or changes its
//! direction, passed through to the other leg as a B2BUA: the relay takes
//! the offer (new ports for new streams), the other leg gets a re-INVITE
//! (or UPDATE) with it rewritten, and its answer, rewritten, answers the
//! offering leg. A refusal reaches the offering leg with the same status
//! and the relay's state is rolled back.
//!
//! Owns that exchange and its retransmissions; never ends a call, never
//! answers an offer that keeps the streams (`dialog::refresh` does).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::sip::proxy::txn::Reliability as _;

use bytes::Bytes;

use super::call::Call;
use super::sdp::{continue_origin, sdp_of};
use super::{Gateway, lock};
use crate::media::{Side, sdp};
use crate::sip::message::{Method, SipMessage};
use crate::sip::transport::Source;

/// The offer being passed through, and the last one's final answer (for
/// retransmissions of that request).
#[derive(Debug, Default)]
pub(super) struct Passing {
    /// (from the room, CSeq) of the offer in progress.
    busy: Option<(bool, u32)>,
    /// (from the room, CSeq, our final answer) of the last one.
    done: Option<(bool, u32, Bytes)>,
    /// The offerer ACKed our 2xx to `done` (an INVITE's).
    acked: bool,
}

/// An ACK in `call`'s dialog that is not the room's first: the ACK of our
/// 2xx to the re-INVITE passed last, if its CSeq says so.
pub(super) fn acked(call: &Call, from_room: bool, msg: &SipMessage) {
    let seq = msg.cseq().map(|c| c.seq);
    let mut p = lock(&call.passing);
    if p.done
        .as_ref()
        .is_some_and(|(r, s, _)| *r == from_room && Some(*s) == seq)
    {
        p.acked = true;
    }
}

/// Whether `offer` changes the streams of the session whose SDP we last
/// sent that leg (`last`): another number of m= lines, a stream turned on
/// or off (port 0), or a direction that is not the mirror of ours.
pub(super) fn changes_streams(offer: &[u8], last: &[u8]) -> bool {
    let (Ok(o), Ok(l)) = (sdp::describe(offer), sdp::describe(last)) else {
        return false;
    };
    if o.streams.len() != l.streams.len() {
        return true;
    }
    o.streams.iter().zip(&l.streams).any(|(o, l)| {
        (o.port == 0) != (l.port == 0) || (o.port != 0 && o.direction != mirror(l.direction))
    })
}

fn mirror(d: sdp::Direction) -> sdp::Direction {
    match d {
        sdp::Direction::SendOnly => sdp::Direction::RecvOnly,
        sdp::Direction::RecvOnly => sdp::Direction::SendOnly,
        d => d,
    }
}

/// `out` (the relay's rewrite of `offer`) with port 0 on every m= line the
/// relay does not carry: the other leg is offered only what can reach it.
pub(super) fn refuse_unrelayed(offer: &[u8], out: &[u8]) -> Vec<u8> {
    let Ok(d) = sdp::describe(offer) else {
        return out.to_vec();
    };
    let text = String::from_utf8_lossy(out);
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut i = 0usize;
    let mut s = String::with_capacity(text.len());
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            continue;
        }
        match line.strip_prefix("m=") {
            Some(m) => {
                let keep = d.streams.get(i).is_some_and(|st| st.relayed);
                i += 1;
                if keep {
                    s.push_str(line);
                } else {
                    let f: Vec<&str> = m.split_ascii_whitespace().collect();
                    let rest = f.get(2..).map(|r| r.join(" ")).unwrap_or_default();
                    s.push_str(&format!("m={} 0 {rest}", f.first().unwrap_or(&"")));
                }
            }
            None => s.push_str(line),
        }
        s.push_str(eol);
    }
    s.into_bytes()
}

impl Gateway {
    /// A retransmission of the offer passed through last (or being passed
    /// through): its answer again, or nothing while it is pending. False
    /// when `msg` is no such retransmission.
    pub(super) async fn passed_again(
        &self,
        call: &Call,
        msg: &SipMessage,
        source: &Source,
        from_room: bool,
    ) -> bool {
        let Some(seq) = msg.cseq().map(|c| c.seq) else {
            return false;
        };
        let again = {
            let p = lock(&call.passing);
            if p.busy == Some((from_room, seq)) {
                Some(None)
            } else {
                p.done
                    .as_ref()
                    .filter(|(r, s, _)| (*r, *s) == (from_room, seq))
                    .map(|(_, _, b)| Some(b.clone()))
            }
        };
        match again {
            None => false,
            Some(None) => true,
            Some(Some(r)) => {
                self.respond(msg, source, r).await;
                true
            }
        }
    }

    /// Passes an offer that changes the streams to the other leg and its
    /// answer back (see the module's documentation).
    pub(super) async fn pass_offer(
        self: Arc<Self>,
        call: Arc<Call>,
        method: Method,
        msg: SipMessage,
        source: Source,
        from_room: bool,
    ) {
        let Some(seq) = msg.cseq().map(|c| c.seq) else {
            return;
        };
        let glare = {
            let mut p = lock(&call.passing);
            let glare = p.busy.is_some() || (!from_room && call.reinviting.load(Ordering::Relaxed));
            if !glare {
                p.busy = Some((from_room, seq));
            }
            glare
        };
        if glare {
            // Glare: an offer of ours is out on one of the legs
            // (RFC 3261 §14.2); the peer tries again later.
            let r = self
                .response(&msg, 491, None, None)
                .header("Retry-After", "2")
                .build();
            self.respond(&msg, &source, r).await;
            return;
        }
        if method == Method::Invite {
            let r = self.response(&msg, 100, None, None).build();
            self.respond(&msg, &source, r).await;
        }
        let (status, reason, body) = self.exchange(&call, &method, &msg, from_room).await;
        let contact = if from_room {
            call.room.contact.clone()
        } else {
            lock(&call.connector)
                .as_ref()
                .map(|l| l.contact.clone())
                .unwrap_or_default()
        };
        let mut b = self.response(&msg, status, None, reason.as_deref());
        if (200..300).contains(&status) {
            b = b.header("Contact", contact);
        }
        if let Some(sdp) = body {
            b = b.body("application/sdp", Bytes::from(sdp));
        }
        let r = b.build();
        {
            let mut p = lock(&call.passing);
            p.busy = None;
            p.done = Some((from_room, seq, r.clone()));
            p.acked = false;
        }
        self.respond(&msg, &source, r.clone()).await;
        let leg = if from_room {
            Some(call.room.clone())
        } else {
            lock(&call.connector).clone()
        };
        if method == Method::Invite
            && (200..300).contains(&status)
            && leg.is_some_and(|l| !l.path.reliable())
        {
            self.until_acked(&call, from_room, seq, &msg, &source, r)
                .await;
        }
    }

    /// Our 2xx to a re-INVITE over UDP, again at T1, 2·T1, ... T2 until its
    /// ACK (RFC 3261 §13.3.1.4), for 64·T1 at most.
    async fn until_acked(
        &self,
        call: &Call,
        from_room: bool,
        seq: u32,
        msg: &SipMessage,
        source: &Source,
        r: Bytes,
    ) {
        let deadline = tokio::time::Instant::now() + self.cfg.t1 * 64;
        let mut every = self.cfg.t1;
        loop {
            tokio::select! {
                _ = call.ended.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            {
                let p = lock(&call.passing);
                let ours = p
                    .done
                    .as_ref()
                    .is_some_and(|(f, s, _)| (*f, *s) == (from_room, seq));
                if p.acked || !ours {
                    return;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            self.respond(msg, source, r.clone()).await;
            every = (every * 2).min(self.cfg.t2);
        }
    }

    /// The offer through the relay and to the other leg: the status, the
    /// reason (a Warning) and the SDP for the offering leg.
    async fn exchange(
        &self,
        call: &Call,
        method: &Method,
        msg: &SipMessage,
        from_room: bool,
    ) -> (u16, Option<String>, Option<Vec<u8>>) {
        let (x, y) = if from_room {
            (Side::A, Side::B)
        } else {
            (Side::B, Side::A)
        };
        let other = if from_room {
            lock(&call.connector).clone()
        } else {
            Some(call.room.clone())
        };
        // The connector's dialog exists once it answered (before that, or
        // at the reception, there is no one to pass the offer to).
        let Some(other) = other.filter(|l| lock(&l.peer_tag).is_some()) else {
            return (
                488,
                Some("the meeting is not connected yet: streams cannot change now".into()),
                None,
            );
        };
        let Some(offer) = sdp_of(msg) else {
            return (400, Some("the offer has no SDP".into()), None);
        };
        // An offer: the relay keeps what it replaces, to roll it back.
        let open = self.relay.has(&call.key);
        let rewritten = match self.relay.update(&call.key, x, &[&offer], open) {
            Ok(mut v) => v.pop().unwrap_or_default(),
            Err(e) => return (488, Some(format!("media cannot be relayed: {e}")), None),
        };
        let previous_y = lock(&call.last_sdp)[y.index()].clone();
        let for_y = continue_origin(&previous_y, &refuse_unrelayed(&offer, &rewritten));
        let req = other.request(
            method.as_str(),
            &[("User-Agent".to_string(), self.cfg.agent.clone())],
            Some(("application/sdp", &for_y)),
        );
        if from_room {
            // Not answered until the connector has: no glare there to take.
        } else {
            call.reinviting.store(true, Ordering::Relaxed);
        }
        let outcome = self.transact(&other.path, req.data, None, None).await;
        if !from_room {
            call.reinviting.store(false, Ordering::Relaxed);
        }
        let answered = match outcome {
            Ok(a) => a,
            Err(e) => {
                self.relay.rollback(&call.key);
                return (
                    408,
                    Some(format!("the other party did not answer the offer: {e}")),
                    None,
                );
            }
        };
        let status = answered.response.status().unwrap_or(500);
        if !(200..300).contains(&status) {
            // The transaction layer ACKed it; the call goes on as it was.
            self.relay.rollback(&call.key);
            let why = format!(
                "the other party answered {status} {}",
                answered.response.reason_phrase().unwrap_or("")
            );
            return (status, Some(why), None);
        }
        if *method == Method::Invite {
            self.ack(&other, &answered, req.cseq).await;
        }
        let Some(answer) = sdp_of(&answered.response) else {
            self.relay.rollback(&call.key);
            return (
                502,
                Some("the other party answered without SDP".into()),
                None,
            );
        };
        let for_x = match self.relay.update(&call.key, y, &[&answer], false) {
            Ok(mut v) => v.pop().unwrap_or_default(),
            Err(e) => {
                self.relay.rollback(&call.key);
                return (
                    502,
                    Some(format!("the other party's SDP cannot be relayed: {e}")),
                    None,
                );
            }
        };
        self.relay.commit(&call.key);
        let mut last = lock(&call.last_sdp);
        last[y.index()] = for_y;
        let for_x = continue_origin(&last[x.index()], &for_x);
        last[x.index()] = for_x.clone();
        (status, None, Some(for_x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIO: &str = "v=0\r\no=r 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8\r\na=sendrecv\r\n";

    #[test]
    fn what_changes_the_streams() {
        let slides = format!(
            "{AUDIO}m=video 5002 RTP/AVP 96\r\na=content:slides\r\na=sendonly\r\nm=application 9 TCP/BFCP *\r\n"
        );
        assert!(!changes_streams(AUDIO.as_bytes(), AUDIO.as_bytes()));
        assert!(changes_streams(slides.as_bytes(), AUDIO.as_bytes()));
        // Our answer said recvonly to the room's sendonly: the same again
        // is a refresh; port 0 or sendrecv is a change.
        let ours = slides.replace("a=sendonly", "a=recvonly");
        assert!(!changes_streams(slides.as_bytes(), ours.as_bytes()));
        let stop = slides.replace("m=video 5002", "m=video 0");
        assert!(changes_streams(stop.as_bytes(), ours.as_bytes()));
        let both = slides.replace("a=sendonly", "a=sendrecv");
        assert!(changes_streams(both.as_bytes(), ours.as_bytes()));
        // Garbage is no change (the refresh path answers it).
        assert!(!changes_streams(b"\xff", AUDIO.as_bytes()));
    }

    #[test]
    fn streams_the_relay_cannot_carry_get_port_0() {
        let offer = format!("{AUDIO}m=application 5070 TCP/TLS/BFCP *\r\na=floorctrl:c-s\r\n");
        let out = refuse_unrelayed(offer.as_bytes(), offer.as_bytes());
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("m=audio 5000 RTP/AVP 8\r\n")
                && out.contains("m=application 0 TCP/TLS/BFCP *\r\na=floorctrl:c-s\r\n"),
            "{out}"
        );
    }
}
