//! A room's H.239 presentation, interworked to the SIP share path: the
//! room's presentation channel (an OpenLogicalChannel with an
//! extendedVideoCapability, after its token request was acknowledged)
//! becomes a re-INVITE on the room's dialog into the gateway, whose offer
//! is the last one plus a content stream (`a=content:slides`, send only,
//! H.264 with the channel's payload type); the gateway passes it to the
//! connector (`gateway::share`). Its 200 gives the relay's content port,
//! sent to the room in the OpenLogicalChannelAck; a refusal becomes
//! OpenLogicalChannelReject. Closing the channel (or releasing the token)
//! turns the content stream off (port 0) the same way.
//!
//! Owns the presentation's exchange on the call; never decides whether the
//! meeting takes it (the gateway and the connector do) and never touches
//! media. The offer carries a `TCP/BFCP` stream too: with the floor named
//! in the answer, the gateway is the room's BFCP client (`h323::bfcp`):
//! FloorRequest while the room presents, FloorRelease when it stops.

use super::*;
use crate::cvi::h323::bfcp;

/// Where the presentation's offer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The re-INVITE adding the content stream is out.
    Opening,
    /// Answered: the room sends to the relay.
    Open,
    /// The re-INVITE turning it off is out.
    Closing,
}

/// The room's presentation channel and its re-INVITE.
#[derive(Debug)]
pub(super) struct Share {
    /// The room's logical channel number.
    pub number: u16,
    /// The CSeq and branch of the re-INVITE in progress (or last).
    pub cseq: u32,
    branch: String,
    pub phase: Phase,
    /// Our offer's content section (as sent when opening) parameters.
    rtp: SocketAddr,
    pt: u8,
    codec: Codec,
    /// The m= index of the content stream.
    index: usize,
    /// The room closed it while it was being opened.
    close_pending: bool,
    /// The BFCP client's release (fired or dropped: FloorRelease).
    release: Option<tokio::sync::oneshot::Sender<()>>,
    /// The BFCP client's task.
    client: Option<tokio::task::JoinHandle<()>>,
    /// The client's word that the server denied or revoked the floor.
    pub floor: Option<tokio::sync::oneshot::Receiver<u8>>,
}

/// How long closing waits for the BFCP client's FloorRelease to go out.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// The payload type H.239 rooms use when the channel names none.
const CONTENT_PT: u8 = 97;

impl Call {
    /// The room opened its presentation channel: offer the content stream.
    pub(super) async fn presentation_open(&mut self, o: Olc) {
        let codec = codec_of(&o.media).filter(|c| matches!(c, Codec::H264 { .. }));
        let rtp = o
            .rtp
            .or_else(|| {
                o.rtcp
                    .map(|a| SocketAddr::new(a.ip(), a.port().saturating_sub(1)))
            })
            .unwrap_or_else(|| SocketAddr::new(self.remote.ip(), 9));
        let ok = (codec, self.state == State::Connected, &self.share);
        let (Some(codec), true, None, None) = (ok.0, ok.1, ok.2, &self.present.out) else {
            self.session.presentation_closed();
            self.send_h245(vec![Control::OpenLogicalChannelReject { number: o.number }])
                .await;
            return;
        };
        if !self.present.bucket.take(tokio::time::Instant::now()) {
            // D222: one re-INVITE per presentation, so a room opening and
            // closing in a loop is bounded here.
            self.h.stats.refused.fetch_add(1, Ordering::Relaxed);
            if log_limit::allow(self.remote.ip(), H323_LOG) {
                info!(remote = %self.remote, channel = o.number, "H.239 presentation refused: too many presentations in a short time");
            }
            self.session.presentation_closed();
            self.send_h245(vec![Control::OpenLogicalChannelReject { number: o.number }])
                .await;
            return;
        }
        let mut share = Share {
            number: o.number,
            cseq: 0,
            branch: random_token(),
            phase: Phase::Opening,
            rtp,
            pt: o.payload_type.unwrap_or(CONTENT_PT),
            codec,
            index: sip::stream_count(self.last_sdp.as_bytes()),
            close_pending: false,
            release: None,
            client: None,
            floor: None,
        };
        info!(remote = %self.remote, channel = o.number, "H.239 presentation from the room: offered to the gateway");
        self.offer_content(&mut share, true).await;
        self.share = Some(share);
    }

    /// The room closed its presentation channel or released the token.
    pub(super) async fn presentation_close(&mut self) {
        let Some(mut share) = self.share.take() else {
            return;
        };
        match share.phase {
            Phase::Opening => {
                share.close_pending = true;
                self.share = Some(share);
            }
            Phase::Closing => self.share = Some(share),
            Phase::Open => {
                if let Some(r) = share.release.take() {
                    let _ = r.send(());
                }
                // The FloorRelease first: the offer below turns BFCP off.
                if let Some(c) = share.client.take() {
                    let _ = tokio::time::timeout(RELEASE_WAIT, c).await;
                }
                share.phase = Phase::Closing;
                share.branch = random_token();
                self.offer_content(&mut share, false).await;
                self.share = Some(share);
            }
        }
    }

    /// The re-INVITE with the content stream on (`on`) or off.
    async fn offer_content(&mut self, share: &mut Share, on: bool) {
        self.sdp_version += 1;
        let rtp = if on {
            share.rtp
        } else {
            SocketAddr::new(share.rtp.ip(), 0)
        };
        let mut sdp = sip::with_version(&self.last_sdp, self.sdp_version);
        sdp.push_str(&sip::content_section(rtp, share.pt, share.codec, 3));
        sdp.push_str(&bfcp::offer_section(self.local.ip(), on));
        let invite = self
            .dialog
            .request("INVITE", &share.branch, Some(("application/sdp", &sdp)));
        share.cseq = self.dialog.cseq;
        self.to_gateway(Bytes::from(invite)).await;
    }

    /// The gateway's final answer to the presentation's re-INVITE.
    pub(super) async fn on_share_answer(&mut self, status: u16, msg: &SipMessage) {
        if status < 200 {
            return;
        }
        let Some(mut share) = self.share.take() else {
            return;
        };
        let ok = (200..300).contains(&status);
        let ack = if ok {
            self.dialog.ack_at(share.cseq, &random_token())
        } else {
            self.dialog.ack_at(share.cseq, &share.branch)
        };
        self.to_gateway(Bytes::from(ack)).await;
        match share.phase {
            Phase::Opening => {
                let relay = ok
                    .then(|| sip::stream_at(msg.body(), share.index))
                    .flatten();
                let Some((rtp, rtcp)) = relay else {
                    if log_limit::allow(self.remote.ip(), H323_LOG) {
                        info!(remote = %self.remote, status, "H.239 presentation refused by the gateway");
                    }
                    self.session.presentation_closed();
                    self.send_h245(vec![Control::OpenLogicalChannelReject {
                        number: share.number,
                    }])
                    .await;
                    return;
                };
                let floor = bfcp::floor_at(msg.body(), share.index + 1);
                info!(remote = %self.remote, relay = %rtp, bfcp = floor.is_some(), "H.239 presentation open");
                if let Some(f) = floor {
                    // The room holds the token: its floor is requested.
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
                    share.release = Some(tx);
                    share.floor = Some(lost_rx);
                    share.client =
                        Some(tokio::spawn(bfcp::client(self.local.ip(), f, rx, lost_tx)));
                }
                self.send_h245(vec![Control::OpenLogicalChannelAck {
                    number: share.number,
                    media: Some(rtp),
                    control: Some(rtcp),
                }])
                .await;
                share.phase = Phase::Open;
                let close = share.close_pending;
                self.share = Some(share);
                if close {
                    self.presentation_close().await;
                }
            }
            // Closed (or the close refused: the room stopped sending
            // anyway); the next presentation starts over.
            Phase::Closing | Phase::Open => self.session.presentation_closed(),
        }
    }
}

impl Call {
    /// The BFCP client's word: the server denied or revoked the room's
    /// floor (`Ok(status)`), or the client ended (`Err`: nothing to do).
    /// The room is asked for the H.239 token back (H.239 §7.2: the holder
    /// answers, closes its channel and releases it) and the content stream
    /// goes off towards the gateway at once, whether the room complies or
    /// not (D221).
    pub(super) async fn floor_lost(
        &mut self,
        r: Result<u8, tokio::sync::oneshot::error::RecvError>,
    ) {
        let Some(mut share) = self.share.take() else {
            return;
        };
        share.floor = None;
        let (Ok(status), Phase::Open) = (r, share.phase) else {
            self.share = Some(share);
            return;
        };
        info!(remote = %self.remote, channel = share.number, status, "H.239 presentation ended: the meeting's floor control took the floor back");
        let take = self.session.token_request(share.number);
        self.send_h245(vec![take]).await;
        // The room's CLC and token release that follow are only
        // acknowledged: the presentation is over here already.
        self.session.presentation_closed();
        share.release = None;
        share.client = None;
        share.phase = Phase::Closing;
        share.branch = random_token();
        self.offer_content(&mut share, false).await;
        self.share = Some(share);
    }
}
