//! Requests inside a call's dialogs, from the room system or the
//! connector: BYE (ends the other leg too), INFO (key presses), re-INVITE
//! and UPDATE (refreshes and address changes, glare with our own
//! re-INVITE; offers that change the streams go to `share`), OPTIONS,
//! and 405 for the rest.
//!
//! Answers in-dialog requests only; never starts or refuses a call.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::call::Call;
use super::sdp::sdp_of;
use super::{ALLOW, Gateway, lock, share};
use crate::cvi::dtmf;
use crate::media::Side;
use crate::sip::headers::HeaderName;
use crate::sip::message::{Method, SipMessage};
use crate::sip::transport::Source;

impl Gateway {
    /// A request in the dialog of `call` (the room's when `from_room`,
    /// else the connector's).
    pub(super) async fn in_dialog(
        self: Arc<Self>,
        call: Arc<Call>,
        method: Method,
        msg: SipMessage,
        source: Source,
        from_room: bool,
    ) {
        match method {
            Method::Bye => {
                let r = self.response(&msg, 200, None, None).build();
                self.respond(&msg, &source, r).await;
                let who = if from_room {
                    "the room system hung up"
                } else {
                    "the meeting service hung up"
                };
                // The other leg's BYE waits for its answer, which
                // may arrive on this very socket or connection: not
                // on the reader's time.
                let me = self.clone();
                tokio::spawn(async move { me.hang_up(&call, from_room, who).await });
            }
            Method::Info => {
                let r = self.response(&msg, 200, None, None).build();
                self.respond(&msg, &source, r).await;
                if from_room
                    && let Some(d) = dtmf::info_digit(
                        msg.first(HeaderName::ContentType).unwrap_or(""),
                        msg.body(),
                    )
                {
                    let _ = call.keys.try_send(d);
                }
            }
            Method::Invite if from_room && call.reinviting.load(Ordering::Relaxed) => {
                // Glare with our own re-INVITE (RFC 3261 §14.2).
                let r = self
                    .response(&msg, 491, None, None)
                    .header("Retry-After", "2")
                    .build();
                self.respond(&msg, &source, r).await;
            }
            Method::Invite | Method::Update => {
                if self.passed_again(&call, &msg, &source, from_room).await {
                    return;
                }
                let last = lock(&call.last_sdp)[if from_room { 0 } else { 1 }].clone();
                if sdp_of(&msg)
                    .is_some_and(|o| !last.is_empty() && share::changes_streams(&o, &last))
                {
                    // Its answer comes from the other leg, whose answer
                    // may arrive on this very socket: not on the reader's time.
                    tokio::spawn(self.pass_offer(call, method, msg, source, from_room));
                    return;
                }
                self.refresh(&call, &method, &msg, &source, from_room).await;
            }
            Method::Options => {
                let r = self
                    .response(&msg, 200, None, None)
                    .header("Allow", ALLOW)
                    .build();
                self.respond(&msg, &source, r).await;
            }
            _ => {
                let r = self
                    .response(&msg, 405, None, None)
                    .header("Allow", ALLOW)
                    .build();
                self.respond(&msg, &source, r).await;
            }
        }
    }

    /// A re-INVITE or UPDATE that keeps the streams: a refresh or a change
    /// of address. The relay follows it; the answer is what we sent that
    /// leg last.
    async fn refresh(
        &self,
        call: &Call,
        method: &Method,
        msg: &SipMessage,
        source: &Source,
        from_room: bool,
    ) {
        let offer = sdp_of(msg);
        let last = lock(&call.last_sdp)[if from_room { 0 } else { 1 }].clone();
        if let Some(s) = &offer {
            let side = if from_room { Side::A } else { Side::B };
            let _ = self.relay.update(&call.key, side, &[s], false);
        }
        let contact = if from_room {
            call.room.contact.clone()
        } else {
            lock(&call.connector)
                .as_ref()
                .map(|l| l.contact.clone())
                .unwrap_or_default()
        };
        let mut b = self
            .response(msg, 200, None, None)
            .header("Contact", contact);
        // An INVITE gets an answer (or our offer, if it had
        // none); an UPDATE only when it made an offer.
        if !last.is_empty() && (*method == Method::Invite || offer.is_some()) {
            b = b.body("application/sdp", Bytes::from(last));
        }
        let r = b.build();
        self.respond(msg, source, r).await;
    }
}
