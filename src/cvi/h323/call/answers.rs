//! The call's loop, and the gateway's SIP messages turned into H.323:
//! provisional answers into Alerting, the 200 into Connect with the
//! fast-start answers (and our ACK), a refusal into Release Complete with
//! its cause, the gateway's BYE into endSessionCommand and Release
//! Complete.
//!
//! Owns the order of the two sides' messages; never decides about the
//! meeting.

use super::*;

impl Call {
    /// Runs the call to its end.
    pub(super) async fn run(
        &mut self,
        mut frames: Frames,
        mut inproc: InProcess,
        stop: CancellationToken,
    ) {
        let mut h245: Option<Frames> = None;
        let mut listen: Option<TcpListener> = None;
        // The gateway answers every INVITE (its own timers bound the
        // connector's ringing); this only bounds a call that never hears.
        let give_up = tokio::time::Instant::now() + CALLING_LIMIT;
        let slow_until = self.slow.as_ref().map_or(give_up, |s| s.deadline);
        // Slow start on the room's H.245 address: connected before Connect.
        if !self.invited()
            && let Some(t) = self.h245_target.take()
        {
            h245 = self.open_h245(t).await;
        }
        while self.state != State::Ended {
            let pause_until = self.slow.as_ref().and_then(|s| s.pause_until);
            tokio::select! {
                _ = stop.cancelled() => self.room_left(NORMAL).await,
                _ = tokio::time::sleep_until(give_up), if self.state == State::Calling => {
                    self.room_left(RECOVERY_ON_TIMER_EXPIRY).await;
                }
                _ = tokio::time::sleep_until(slow_until), if !self.invited() => {
                    if log_limit::allow(self.remote.ip(), H323_LOG) {
                        info!(remote = %self.remote, "H.323 slow start: no receive address from the room in time");
                    }
                    self.h.stats.refused.fetch_add(1, Ordering::Relaxed);
                    self.release(RECOVERY_ON_TIMER_EXPIRY, ReleaseReason::Undefined).await;
                }
                _ = tokio::time::sleep_until(pause_until.unwrap_or(give_up)), if pause_until.is_some() => {
                    self.pause_ignored().await;
                }
                i = frames.next() => match i {
                    Input::Frame(f) => self.on_frame(&f).await,
                    Input::Closed => {
                        // Nobody to tell: only the gateway's leg ends.
                        self.room_left(NORMAL).await;
                    }
                    Input::Bad(why) => self.bad(INVALID_MESSAGE, &why).await,
                },
                i = next_of(&mut h245) => match i {
                    Input::Frame(f) => self.on_h245(&f).await,
                    _ => {
                        h245 = None;
                        self.h245_wr = None;
                    }
                },
                a = accept_of(&mut listen) => {
                    listen = None;
                    match a {
                        Ok((s, from)) if from.ip() == self.remote.ip() && h245.is_none() => {
                            h245 = Some(self.adopt_h245(s).await);
                        }
                        _ => debug!(remote = %self.remote, "no H.245 connection to our address"),
                    }
                }
                w = present::wake(&mut self.share, &mut self.present) => self.on_wake(w).await,
                m = inproc.recv() => match m.and_then(crate::cvi::inproc::parse) {
                    Some(msg) => self.on_sip(msg).await,
                    None => self.release(NORMAL, ReleaseReason::Undefined).await,
                },
            }
            if listen.is_none() {
                listen = self.h245_listener.take();
            }
            if (self.state == State::Connected || !self.invited())
                && h245.is_none()
                && let Some(t) = self.h245_target.take()
            {
                h245 = self.open_h245(t).await;
            }
        }
        if let Some(mut w) = self.h245_wr.take() {
            let _ = w.shutdown().await;
        }
        let _ = self.wr.shutdown().await;
    }

    /// Connects to the H.245 address the room gave (its own address only:
    /// a room names no third party for us to connect to).
    pub(super) async fn open_h245(&mut self, to: SocketAddr) -> Option<Frames> {
        if to.ip() != self.remote.ip() {
            if log_limit::allow(self.remote.ip(), H323_LOG) {
                info!(remote = %self.remote, h245 = %to, "H.245 address of another host: not connected");
            }
            return None;
        }
        let s = match tokio::time::timeout(H245_CONNECT, TcpStream::connect(to)).await {
            Ok(Ok(s)) => s,
            _ => {
                debug!(h245 = %to, "the room's H.245 address did not answer");
                return None;
            }
        };
        Some(self.adopt_h245(s).await)
    }

    /// A separate H.245 connection (ours or the room's) becomes the call's
    /// H.245 channel: our capabilities go first.
    async fn adopt_h245(&mut self, s: TcpStream) -> Frames {
        let _ = s.set_nodelay(true);
        let (rd, wr) = s.into_split();
        self.h245_wr = Some(wr);
        let open = self.session.opening();
        self.send_h245(open).await;
        Frames::new(rd, self.h.cfg.max_frame)
    }

    /// One SIP message from the gateway.
    pub(super) async fn on_sip(&mut self, msg: SipMessage) {
        match msg.status() {
            Some(status) => {
                let invite = msg.cseq().is_some_and(|c| c.method == "INVITE");
                let seq = msg.cseq().map(|c| c.seq);
                if invite && self.share.as_ref().is_some_and(|s| Some(s.cseq) == seq) {
                    self.on_share_answer(status, &msg).await;
                } else if invite {
                    self.on_invite_answer(status, &msg).await;
                }
            }
            None => self.on_gateway_request(msg).await,
        }
    }

    pub(super) async fn on_invite_answer(&mut self, status: u16, msg: &SipMessage) {
        match status {
            180 | 183 if self.state == State::Calling && !self.alerted => {
                self.alerted = true;
                let s = signal(Body::Alerting, self.call_id, self.tunnelling);
                self.send_q931(q931::MessageType::Alerting, &s, None).await;
            }
            200..=299 => {
                self.dialog.to_tag = msg.to().and_then(|t| t.tag().map(str::to_string));
                let ack = self.dialog.ack(&random_token());
                if self.state != State::Calling {
                    // A retransmission: ACK again.
                    self.to_gateway(Bytes::from(ack)).await;
                    return;
                }
                self.connect(msg.body()).await;
                self.to_gateway(Bytes::from(ack)).await;
            }
            300.. if self.state == State::Calling => {
                let mut d = self.dialog.clone();
                d.to_tag = msg.to().and_then(|t| t.tag().map(str::to_string));
                let ack = d.ack_failure(&self.invite_branch);
                self.to_gateway(Bytes::from(ack)).await;
                let (cause, reason) = sip::cause_of(status);
                self.h.stats.refused.fetch_add(1, Ordering::Relaxed);
                if log_limit::allow(self.remote.ip(), H323_LOG) {
                    info!(remote = %self.remote, status, cause, "H.323 call refused by the gateway");
                }
                self.release(cause, reason_of(reason)).await;
            }
            _ => {}
        }
    }

    /// The gateway answered: Connect with our fast-start answers.
    pub(super) async fn connect(&mut self, sdp: &[u8]) {
        let answer = sip::read_answer(sdp);
        let olcs = fast_start_answers(&self.proposals, &answer);
        self.slow_fast_start(&olcs);
        self.slow_answered(answer.clone()).await;
        let mut s = signal(
            Body::Connect {
                conference_id: self.conference_id,
            },
            self.call_id,
            self.tunnelling,
        );
        s.fast_start = olcs
            .iter()
            .filter_map(|o| h245::encode_olc(o).ok())
            .collect();
        if !self.tunnelling && self.h245_target.is_none() && self.slow.is_none() {
            // No tunnelling and no address of the room's: offer ours.
            self.h245_listener = bind_h245(&self.h).await;
            s.h245_address = self
                .h245_listener
                .as_ref()
                .and_then(|l| l.local_addr().ok());
        }
        self.send_q931(q931::MessageType::Connect, &s, None).await;
        if self.state == State::Ended {
            return;
        }
        self.state = State::Connected;
        self.h.stats.connected.fetch_add(1, Ordering::Relaxed);
        if self.tunnelling {
            let open = self.session.opening();
            self.send_h245(open).await;
        }
    }

    /// A request from the gateway in the call's dialog.
    pub(super) async fn on_gateway_request(&mut self, msg: SipMessage) {
        let status = match msg.method() {
            Some(Method::Ack) => return,
            Some(Method::Invite) if self.state == State::Connected => {
                if self.present_offer(&msg).await {
                    return;
                }
                // The gateway's re-INVITE (after the reception): the room's
                // channels stay as they are.
                self.sdp_version += 1;
                let sdp = sip::answer_sdp(
                    msg.body(),
                    &self.room_media,
                    self.sdp_session,
                    self.sdp_version,
                );
                self.last_sdp = sdp.clone();
                // What the gateway now has from us: the offer's first
                // format per stream, the relay's addresses.
                let moved = sip::read_answer(msg.body());
                let r = ResponseBuilder::new(&msg, 200)
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
                self.slow_answered(moved).await;
                return;
            }
            Some(Method::Bye) => 200,
            Some(Method::Info) | Some(Method::Options) | Some(Method::Update) => 200,
            _ => 501,
        };
        let r = ResponseBuilder::new(&msg, status).build();
        self.to_gateway(r).await;
        if msg.method() == Some(&Method::Bye) {
            self.send_h245(vec![Control::EndSession]).await;
            self.release(NORMAL, ReleaseReason::Undefined).await;
        }
    }
}
