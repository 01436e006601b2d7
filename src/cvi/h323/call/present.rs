//! The meeting's presentation towards an H.323 room: the gateway's
//! re-INVITE adding the connector's content stream (the second video m=
//! line, H.264) is answered only once the room takes it. fedge asks the
//! room for the H.239 token (presentationTokenRequest), opens an H.239
//! presentation channel to it (OpenLogicalChannel, extendedVideoCapability
//! with the presentation role, the offer's H.264 and payload type, the
//! relay's RTCP) and answers the gateway with the room's receive address
//! from the OpenLogicalChannelAck (`a=recvonly`), the BFCP stream as a
//! floor participant (`a=floorctrl:c-only`). A refusal, or silence past
//! `PRESENT_WAIT`, answers with the content stream off (port 0). When the
//! content stream goes (port 0, or removed), the channel is closed and the
//! token released. Also the bound on the room's own presentations (a
//! token bucket per call, D222).
//!
//! Owns the outgoing presentation's state on the call; never decides who
//! presents (the connector does), never touches media (the relay sends to
//! the address the room gave).

use super::*;
use crate::cvi::h323::bfcp;
use crate::cvi::h323::h245::token_release;
use tokio::time::Instant;

/// Our logical channel number for the presentation towards the room.
const OUT_CHANNEL: u16 = 2039;
/// The H.245 session of the presentation (the room's channel uses 3).
const OUT_SESSION: u8 = 3;
/// How long the room may take to grant the token and take the channel.
const PRESENT_WAIT: Duration = Duration::from_secs(5);
/// The room's presentations: at most `BURST` re-INVITEs at once, one more
/// each `REFILL` (D222).
const BURST: u32 = 3;
const REFILL: Duration = Duration::from_secs(20);

/// A token bucket: `BURST` tokens, one back each `REFILL`.
#[derive(Debug, Default)]
pub(super) struct Bucket {
    /// Tokens spent and not yet back.
    spent: u32,
    /// When the oldest spent token comes back.
    since: Option<Instant>,
}

impl Bucket {
    /// Takes a token at `now`: false when none is left.
    pub fn take(&mut self, now: Instant) -> bool {
        while self.spent > 0
            && let Some(t) = self.since
            && now >= t + REFILL
        {
            self.spent -= 1;
            self.since = (self.spent > 0).then_some(t + REFILL);
        }
        if self.spent >= BURST {
            return false;
        }
        self.spent += 1;
        self.since.get_or_insert(now);
        true
    }
}

/// Where our presentation towards the room is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Our presentationTokenRequest is out.
    Token,
    /// Our OpenLogicalChannel is out.
    Opening,
    /// The room takes the content at `room`.
    Open,
}

/// The meeting's presentation towards the room.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The gateway's re-INVITE, until it is answered.
    request: Option<SipMessage>,
    phase: Phase,
    offer: sip::ContentOffer,
    codec: Codec,
    /// The room's receive address for the content (from its Ack).
    room: Option<SocketAddr>,
    /// When the room's silence turns the offer down.
    deadline: Instant,
    /// The meeting's floor watcher (D224): its stop (dropped with this)
    /// and its word that the floor was released.
    watch_stop: Option<tokio::sync::oneshot::Sender<()>>,
    watch: Option<tokio::sync::oneshot::Receiver<u8>>,
}

/// The call's presentation state besides the room's own (`share`).
#[derive(Debug, Default)]
pub(super) struct Present {
    pub out: Option<Outgoing>,
    pub bucket: Bucket,
    /// The meeting's floor was released while its content stream stays
    /// on: a refresh does not open it again (until the stream goes).
    floor_released: bool,
}

/// What woke the call's loop for a presentation.
pub(super) enum Wake {
    /// The BFCP client's word on the room's floor.
    Floor(Result<u8, tokio::sync::oneshot::error::RecvError>),
    /// The room did not take our presentation in time.
    Deadline,
    /// The floor watcher's word: the meeting's floor was released.
    FloorFree(Result<u8, tokio::sync::oneshot::error::RecvError>),
}

/// Waits for the next presentation matter (never, without one).
pub(super) async fn wake(share: &mut Option<share::Share>, present: &mut Present) -> Wake {
    let floor = async {
        match share.as_mut().and_then(|s| s.floor.as_mut()) {
            Some(rx) => rx.await,
            None => std::future::pending().await,
        }
    };
    let wait = present
        .out
        .as_ref()
        .filter(|o| o.request.is_some())
        .map(|o| o.deadline);
    let deadline = async {
        match wait {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let watch = async {
        match present.out.as_mut().and_then(|o| o.watch.as_mut()) {
            Some(rx) => rx.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = floor => Wake::Floor(r),
        _ = deadline => Wake::Deadline,
        r = watch => Wake::FloorFree(r),
    }
}

impl Call {
    /// One presentation matter from the loop.
    pub(super) async fn on_wake(&mut self, w: Wake) {
        match w {
            Wake::Floor(r) => self.floor_lost(r).await,
            Wake::FloorFree(Ok(status)) => {
                info!(remote = %self.remote, status, "the meeting's floor was released: its presentation towards the room closed");
                self.present_close().await;
                self.present.floor_released = true;
            }
            Wake::FloorFree(Err(_)) => {
                if let Some(o) = self.present.out.as_mut() {
                    o.watch = None;
                }
            }
            Wake::Deadline => {
                if log_limit::allow(self.remote.ip(), H323_LOG) {
                    info!(remote = %self.remote, "the meeting's presentation: the room did not take it in time");
                }
                self.present_refused().await;
            }
        }
    }

    /// The gateway's re-INVITE, seen first here: true when it is answered
    /// here (now or once the room took the presentation), false when the
    /// usual answer applies (no content stream of ours is on or coming).
    pub(super) async fn present_offer(&mut self, msg: &SipMessage) -> bool {
        let offer = sip::content_offer(msg.body());
        let on = offer.as_ref().is_some_and(|o| o.relay.is_some());
        if !on {
            self.present.floor_released = false;
        }
        match (self.present.out.as_ref(), offer) {
            (Some(o), _) if o.request.is_some() => {
                // Ours is still being opened (the gateway passes one offer
                // at a time: not expected).
                let r = ResponseBuilder::new(msg, 491)
                    .header("Retry-After", "2")
                    .build();
                self.to_gateway(r).await;
                true
            }
            (Some(o), Some(c)) if on => {
                // Still presenting (a refresh of the session): the same.
                let room = o.room;
                let codec = o.codec;
                self.answer_present(msg, room.map(|r| (r, c.pt, codec)), c.bfcp)
                    .await;
                true
            }
            (Some(_), _) => {
                // The content stream went: the channel closes.
                self.present_close().await;
                false
            }
            (None, Some(c)) if on => {
                let free = self.share.is_none() && !self.present.floor_released;
                let Some(codec) = c.codec.filter(|_| free) else {
                    return false;
                };
                info!(remote = %self.remote, "the meeting presents: H.239 token asked of the room");
                let ask = self.session.token_request(OUT_CHANNEL);
                self.send_h245(vec![ask]).await;
                self.present.out = Some(Outgoing {
                    request: Some(msg.clone()),
                    phase: Phase::Token,
                    offer: c,
                    codec,
                    room: None,
                    deadline: Instant::now() + PRESENT_WAIT,
                    watch_stop: None,
                    watch: None,
                });
                true
            }
            (None, _) => false,
        }
    }

    /// The room answered our token request.
    pub(super) async fn present_token(&mut self, granted: bool) {
        let Some(o) = self
            .present
            .out
            .as_mut()
            .filter(|o| o.phase == Phase::Token)
        else {
            return;
        };
        if !granted {
            // The room keeps the token (it presents, or will not take ours).
            if log_limit::allow(self.remote.ip(), H323_LOG) {
                info!(remote = %self.remote, "the meeting's presentation: the room refused the H.239 token");
            }
            return self.present_answer_off().await;
        }
        o.phase = Phase::Opening;
        let rtcp = o.offer.relay.map(|(_, rtcp)| rtcp);
        let Codec::H264 { profile, level } = o.codec else {
            return self.present_refused().await;
        };
        let olc = Olc {
            number: OUT_CHANNEL,
            media: h245::Media::H264 { profile, level },
            session_id: OUT_SESSION,
            payload_type: Some(o.offer.pt),
            forward: true,
            rtp: None,
            rtcp,
            reverse: None,
            presentation: true,
        };
        self.session.outgoing = Some(OUT_CHANNEL);
        self.send_h245(vec![Control::OpenLogicalChannel(olc)]).await;
    }

    /// The room took our presentation channel (`rtp`: where it receives)
    /// or refused it (`None`).
    pub(super) async fn present_opened(&mut self, rtp: Option<SocketAddr>) {
        let Some(o) = self
            .present
            .out
            .as_mut()
            .filter(|o| o.phase == Phase::Opening)
        else {
            return;
        };
        let (Some(rtp), Some(msg)) = (rtp, o.request.take()) else {
            if log_limit::allow(self.remote.ip(), H323_LOG) {
                info!(remote = %self.remote, "the meeting's presentation: the room refused the H.239 channel");
            }
            return self.present_refused().await;
        };
        o.phase = Phase::Open;
        o.room = Some(rtp);
        let (pt, codec, bfcp) = (o.offer.pt, o.codec, o.offer.bfcp);
        info!(remote = %self.remote, room = %rtp, "the meeting's presentation open towards the room");
        // The meeting's floor, watched when its offer names it (D224).
        if let Some(f) = bfcp.and_then(|b| bfcp::floor_at(msg.body(), b)) {
            let (stop, stop_rx) = tokio::sync::oneshot::channel();
            let (tx, rx) = tokio::sync::oneshot::channel();
            o.watch_stop = Some(stop);
            o.watch = Some(rx);
            tokio::spawn(bfcp::watcher(self.local.ip(), f, stop_rx, tx));
        }
        self.answer_present(&msg, Some((rtp, pt, codec)), bfcp)
            .await;
    }

    /// Our presentation did not open (refused, or the room was silent):
    /// whatever was opened is closed, the token given back, the gateway
    /// answered with the content stream off.
    async fn present_refused(&mut self) {
        let Some(o) = self.present.out.take() else {
            return;
        };
        let mut msgs = Vec::new();
        if o.phase == Phase::Opening && self.session.outgoing.take().is_some() {
            msgs.push(Control::CloseLogicalChannel {
                number: OUT_CHANNEL,
            });
        }
        if o.phase != Phase::Token {
            msgs.push(token_release(OUT_CHANNEL));
        }
        self.session.token_asked = false;
        self.send_h245(msgs).await;
        self.present.out = Some(o);
        self.present_answer_off().await;
    }

    /// Answers the pending re-INVITE with the content stream off.
    async fn present_answer_off(&mut self) {
        let Some(msg) = self.present.out.take().and_then(|o| o.request) else {
            return;
        };
        self.answer_present(&msg, None, None).await;
    }

    /// The content stream went: our channel closes, the token goes back.
    pub(super) async fn present_close(&mut self) {
        let Some(o) = self.present.out.take() else {
            return;
        };
        info!(remote = %self.remote, "the meeting's presentation towards the room closed");
        self.session.outgoing = None;
        let mut msgs = Vec::new();
        if o.phase != Phase::Token {
            msgs.push(Control::CloseLogicalChannel {
                number: OUT_CHANNEL,
            });
        }
        msgs.push(token_release(OUT_CHANNEL));
        self.send_h245(msgs).await;
    }

    /// Our 200 to the gateway's re-INVITE: the usual answer (the room's
    /// own streams), with the content stream at the room's `content`
    /// address (else off) and the BFCP stream at `bfcp` answered as a
    /// floor participant.
    async fn answer_present(
        &mut self,
        msg: &SipMessage,
        content: Option<(SocketAddr, u8, Codec)>,
        bfcp: Option<usize>,
    ) {
        self.sdp_version += 1;
        let base = sip::answer_sdp(
            msg.body(),
            &self.room_media,
            self.sdp_session,
            self.sdp_version,
        );
        self.last_sdp = base.clone();
        let mut sdp = base;
        if let (Some((rtp, pt, codec)), Some(c)) = (content, sip::content_offer(msg.body())) {
            sdp = sip::replace_section(&sdp, c.index, &sip::content_answer(rtp, pt, codec));
            if let Some(b) = bfcp {
                let section = bfcp::answer_section(msg.body(), b, self.local.ip());
                sdp = sip::replace_section(&sdp, b, &section);
            }
        }
        let r = ResponseBuilder::new(msg, 200)
            .header(
                "Contact",
                format!(
                    "<sip:{}@{};transport=tcp>",
                    self.dialog.from_user, self.local
                ),
            )
            .body("application/sdp", Bytes::from(sdp))
            .build();
        self.to_gateway(r).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_one_per_refill() {
        let mut b = Bucket::default();
        let t = Instant::now();
        assert!((0..BURST).all(|_| b.take(t)));
        assert!(!b.take(t));
        assert!(!b.take(t + REFILL / 2));
        assert!(b.take(t + REFILL));
        assert!(!b.take(t + REFILL));
        assert!(b.take(t + REFILL * 2));
        // Long quiet: the whole burst again.
        let later = t + REFILL * 10;
        assert!((0..BURST).all(|_| b.take(later)));
        assert!(!b.take(later));
    }
}
