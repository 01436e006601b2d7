//! A call's life after its Setup: presenting it to the gateway, then the
//! loop over the room's messages, the gateway's SIP messages and the
//! separate H.245 channel, to the call's end.
//!
//! Owns the order of what is sent each way; never decides about the
//! meeting (the gateway) and never panics on the room's input.

use super::*;

impl Call {
    /// Presents the Setup to the gateway: Call Proceeding to the room,
    /// the INVITE in. `None` when the call was refused here (and the
    /// room told why).
    pub(super) async fn start(
        h: Arc<H323>,
        mut wr: OwnedWriteHalf,
        remote: SocketAddr,
        local: SocketAddr,
        s: SetupIn,
    ) -> Option<(Call, InProcess)> {
        let refuse = |cause: u8, reason: ReleaseReason| {
            release_bytes(&h, s.call_ref, s.signal.call_id, cause, reason)
        };
        let alias = dialled_alias(&s);
        let uri = alias
            .as_deref()
            .and_then(|a| sip::request_uri(a, &h.cfg.domain));
        let proposals: Vec<Olc> = s
            .signal
            .fast_start
            .iter()
            .filter_map(|b| h245::decode_olc(b).ok())
            .collect();
        let mut offer = offer_of(&proposals);
        // Slow start: no fast start at all; the media comes by H.245, which
        // must be reachable before Connect (tunnelled, or the room's
        // address).
        let h245 = s.signal.h245_tunnelling || s.signal.h245_address.is_some();
        let slow = s.signal.fast_start.is_empty() && h245;
        let at_reception = uri.as_deref().is_some_and(|u| answered_locally(&h, u));
        // Fast start to the reception with H.245: the meeting's re-INVITE
        // moves the channels by H.245 (channels.rs), as for slow start.
        let managed = !slow && at_reception && h245;
        if !slow
            && !managed
            && at_reception
            && let Some(a) = offer.audio.as_mut()
        {
            // The reception (or test call) answers first and the meeting
            // comes later by re-INVITE, which cannot change fast-start
            // channels without H.245: one audio codec keeps both the same.
            a.codecs.truncate(1);
        }
        let why = match (&uri, offer.audio.is_some() || offer.video.is_some()) {
            (None, _) => Some((1, ReleaseReason::BadFormatAddress, "no alias names a user")),
            (_, false) if !slow => Some((
                BEARER_NOT_IMPLEMENTED,
                ReleaseReason::Undefined,
                "no fast start with G.711, G.722 or H.264, and no H.245 for slow start",
            )),
            _ => None,
        };
        if let Some((cause, reason, text)) = why {
            h.stats.refused.fetch_add(1, Ordering::Relaxed);
            if log_limit::allow(remote.ip(), H323_LOG) {
                info!(%remote, alias = ?alias, cause, reason = text, "H.323 call refused");
            }
            if let Some(b) = refuse(cause, reason) {
                let _ = write(&mut wr, &b).await;
            }
            let _ = wr.shutdown().await;
            return None;
        }
        h.stats.calls.fetch_add(1, Ordering::Relaxed);
        let (conn, inproc) = Connection::in_process(&h.table, Role::Cvi.tag(), remote, local);
        let n = h.next();
        let dialog = Dialog {
            uri: uri.unwrap_or_default(),
            call_id: format!("{}-{n}@h323.{}", random_token(), h.cfg.domain),
            from_tag: random_token(),
            to_tag: None,
            local,
            from_user: caller_name(&s),
            domain: h.cfg.domain.clone(),
            cseq: 1,
        };
        let mut call = Call {
            h: h.clone(),
            wr,
            remote,
            local,
            call_ref: s.call_ref,
            call_id: s.signal.call_id,
            conference_id: s.setup.conference_id,
            tunnelling: s.signal.h245_tunnelling,
            proposals,
            dialog,
            invite_branch: random_token(),
            conn,
            state: State::Calling,
            alerted: false,
            session: Session::new(rand::random::<u32>()),
            h245_wr: None,
            h245_target: s.signal.h245_address,
            h245_listener: None,
            room_media: offer.clone(),
            sdp_session: n,
            sdp_version: n,
            last_sdp: sip::offer_sdp(&offer, n),
            share: None,
            slow: (slow || managed).then(|| {
                let mut c = channels::Slow::new(tokio::time::Instant::now());
                c.invited = managed;
                c
            }),
            present: Default::default(),
        };
        call.session.slow = slow || managed;
        info!(%remote, uri = %call.dialog.uri, call_id = %call.dialog.call_id, "H.323 call");
        let proceeding = signal(Body::CallProceeding, call.call_id, call.tunnelling);
        call.send_q931(q931::MessageType::CallProceeding, &proceeding, None)
            .await;
        // Tunnelled H.245 carried in the Setup.
        for b in s.signal.h245_control.clone() {
            call.on_h245(&b).await;
        }
        if slow {
            // The INVITE waits for the room's addresses (channels.rs).
            // Tunnelled: our capabilities now; separate: once connected.
            if call.tunnelling {
                let open = call.session.opening();
                call.send_h245(open).await;
            }
            call.slow_progress().await;
            if call.state == State::Ended {
                let _ = call.wr.shutdown().await;
                return None;
            }
            return Some((call, inproc));
        }
        let sdp = call.last_sdp.clone();
        let invite = call.dialog.invite(&sdp, &call.invite_branch);
        if !call.to_gateway(Bytes::from(invite)).await {
            call.release(31, ReleaseReason::Undefined).await;
            let _ = call.wr.shutdown().await;
            return None;
        }
        Some((call, inproc))
    }

    /// Hands one SIP message of ours to the gateway.
    /// False when the message did not parse (a bug of ours, logged).
    pub(super) async fn to_gateway(&self, b: Bytes) -> bool {
        let ok =
            crate::cvi::inproc::to_gateway(&self.h.gateway, &self.conn, self.remote, self.local, b)
                .await;
        if !ok {
            debug!("an interworked SIP message did not parse");
        }
        ok
    }

    pub(super) async fn send_q931(
        &mut self,
        kind: q931::MessageType,
        s: &Signal,
        cause: Option<u8>,
    ) {
        let Some(b) = q931_frame(&self.h, self.call_ref, kind, s, cause) else {
            debug!("an H.225 message could not be encoded");
            return;
        };
        if !write(&mut self.wr, &b).await {
            self.state = State::Ended;
        }
    }

    /// Sends H.245 messages: on the separate channel when there is one,
    /// else tunnelled in a Facility.
    pub(super) async fn send_h245(&mut self, msgs: Vec<Control>) {
        let enc: Vec<Vec<u8>> = msgs.iter().filter_map(|c| h245::encode(c).ok()).collect();
        if enc.is_empty() {
            return;
        }
        if let Some(w) = self.h245_wr.as_mut() {
            for e in &enc {
                if !write(w, &tpkt::encode(e)).await {
                    self.h245_wr = None;
                    break;
                }
            }
            return;
        }
        if !self.tunnelling {
            return;
        }
        let mut s = signal(Body::Empty, self.call_id, true);
        s.h245_control = enc;
        self.send_q931(q931::MessageType::Facility, &s, None).await;
    }

    /// One H.245 message from the room (tunnelled or separate).
    pub(super) async fn on_h245(&mut self, b: &[u8]) {
        let c = match h245::decode(b) {
            Ok(c) => c,
            Err(e) => {
                if log_limit::allow(self.remote.ip(), H323_LOG) {
                    info!(remote = %self.remote, error = %e, "H.245 message not understood: ignored");
                }
                return;
            }
        };
        let (replies, events) = self.session.on_control(c);
        self.send_h245(replies).await;
        for e in events {
            match e {
                Event::Digit(d) => {
                    if self.state == State::Connected {
                        let body = sip::dtmf_body(d);
                        let info = self.dialog.request(
                            "INFO",
                            &random_token(),
                            Some(("application/dtmf-relay", &body)),
                        );
                        self.to_gateway(Bytes::from(info)).await;
                    }
                }
                Event::PresentationOpen(o) => self.presentation_open(o).await,
                Event::PresentationClose => self.presentation_close().await,
                Event::TokenAnswer(granted) => self.present_token(granted).await,
                Event::OutgoingAck(rtp, _) => self.present_opened(rtp).await,
                Event::OutgoingReject => self.present_opened(None).await,
                Event::EndSession => {
                    self.send_h245(vec![Control::EndSession]).await;
                    self.room_left(NORMAL).await;
                }
                e => self.on_channel_event(e).await,
            }
        }
        self.slow_progress().await;
    }

    /// The room is gone (Release Complete, endSession, closed): BYE or
    /// CANCEL into the gateway, Release Complete to the room.
    pub(super) async fn room_left(&mut self, cause: u8) {
        match self.state {
            State::Connected => {
                let bye = self.dialog.request("BYE", &random_token(), None);
                self.to_gateway(Bytes::from(bye)).await;
            }
            State::Calling if self.invited() => {
                let c = self.dialog.cancel(&self.invite_branch);
                self.to_gateway(Bytes::from(c)).await;
            }
            State::Calling => {}
            State::Ended => return,
        }
        self.release(cause, ReleaseReason::Undefined).await;
    }

    pub(super) async fn release(&mut self, cause: u8, reason: ReleaseReason) {
        if self.state == State::Ended {
            return;
        }
        if let Some(b) = release_bytes(&self.h, self.call_ref, self.call_id, cause, reason) {
            let _ = write(&mut self.wr, &b).await;
        }
        self.state = State::Ended;
    }

    /// One Q.931 message from the room during the call.
    pub(super) async fn on_frame(&mut self, frame: &[u8]) {
        let m = match q931::Message::decode(frame) {
            Ok(m) => m,
            Err(e) => return self.bad(INVALID_MESSAGE, &format!("Q.931: {e}")).await,
        };
        let sig = match m.user_user.as_deref().map(h225::decode) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => return self.bad(INVALID_IE, &format!("H.225: {e}")).await,
            None => None,
        };
        if let Some(s) = &sig {
            for b in &s.h245_control {
                self.on_h245(b).await;
            }
        }
        match m.kind {
            q931::MessageType::ReleaseComplete => {
                if self.state == State::Connected {
                    let bye = self.dialog.request("BYE", &random_token(), None);
                    self.to_gateway(Bytes::from(bye)).await;
                } else if self.state == State::Calling && self.invited() {
                    let c = self.dialog.cancel(&self.invite_branch);
                    self.to_gateway(Bytes::from(c)).await;
                }
                self.state = State::Ended;
            }
            q931::MessageType::StatusEnquiry => self.status().await,
            q931::MessageType::Setup => {
                // One call per connection.
                let s = signal(
                    Body::ReleaseComplete {
                        reason: Some(ReleaseReason::Undefined),
                    },
                    None,
                    false,
                );
                if let Some(b) = q931_frame(
                    &self.h,
                    m.call_ref,
                    q931::MessageType::ReleaseComplete,
                    &s,
                    Some(47),
                ) {
                    let _ = write(&mut self.wr, &b).await;
                }
            }
            _ => {}
        }
    }

    /// Status (Q.931 §5.8.10): cause 30 (response to STATUS ENQUIRY) and
    /// our call state as the called side.
    pub(super) async fn status(&mut self) {
        let state = match (self.state, self.alerted) {
            (State::Connected, _) => 10, // active
            (_, true) => 7,              // call received
            _ => 9,                      // incoming call proceeding
        };
        let s = signal(Body::Status, self.call_id, self.tunnelling);
        let Ok(uu) = h225::encode(&s, &self.h.cfg.vendor) else {
            return;
        };
        let mut m = q931::Message::new(q931::MessageType::Status, self.call_ref, true);
        m.cause = Some(30);
        m.other = vec![(0x14, vec![state])];
        m.user_user = Some(uu);
        if !write(&mut self.wr, &tpkt::encode(&m.encode())).await {
            self.state = State::Ended;
        }
    }

    /// Malformed input during the call: Release Complete with `cause`,
    /// the gateway's leg ended, logged.
    pub(super) async fn bad(&mut self, cause: u8, why: &str) {
        self.h.stats.malformed.fetch_add(1, Ordering::Relaxed);
        if log_limit::allow(self.remote.ip(), H323_LOG) {
            info!(remote = %self.remote, cause, reason = why, "H.323 input refused: malformed");
        }
        self.room_left(cause).await;
    }
}

/// Whether the gateway answers `uri` itself first (the reception, the
/// test call) rather than the meeting directly.
fn answered_locally(h: &H323, uri: &str) -> bool {
    let user = uri
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or("");
    matches!(
        crate::cvi::gateway::dialled(
            user,
            &h.cfg.reception,
            &h.cfg.test_call,
            h.cfg.tenant_key.as_deref()
        ),
        crate::cvi::gateway::Dialled::Reception | crate::cvi::gateway::Dialled::TestCall
    )
}
