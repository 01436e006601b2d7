//! Slow start: a room whose Setup carries no fast start gets its media by
//! H.245 logical channels. Before Connect (H.245 tunnelled in Facility, or
//! on the room's separate H.245 channel, which we connect to at once):
//! capability exchange and master/slave determination, then our channels
//! towards the room (audio with the room's first codec we know, H.264 when
//! both sides have it), whose OpenLogicalChannelAcks give the room's
//! receive addresses; only then is the INVITE made (every codec the room
//! has: the offer carries real addresses, so the gateway and the relay
//! need nothing new). The 200 gives the relay's addresses: our audio
//! channel is reopened when the chosen codec differs, Connect goes out,
//! and the room's own channels are acknowledged with the relay's address
//! (those that arrive before the answer wait for it).
//!
//! After the reception, the gateway's re-INVITE (answered with the room's
//! addresses, as before) is followed here: our audio channel is reopened
//! on a codec change, and when the relay's address or the streams the room
//! may send change, an empty TerminalCapabilitySet (H.323 §8.4.6's pause:
//! the room closes its transmit channels) and then our whole set again
//! make the room open its channels anew, acknowledged with the relay's new
//! addresses: video both ways in the meeting. A fast-start call to the
//! reception that has H.245 is handled the same way after Connect: the
//! channels fast start accepted are taken into this bookkeeping.
//!
//! A room that does not honour the pause (its channels still open
//! `PAUSE_LIMIT` after the empty set) gets our whole set again and keeps
//! its old channels: logged, never left paused.
//!
//! Owns the channel bookkeeping of one call; never decides about the
//! meeting, never touches media, never trusts a channel number or address
//! it did not see acknowledged.

use fedge_h323::h245::Capability;
use tokio::time::Instant;

use super::*;

/// How long a slow-start room has to bring its receive addresses (the
/// H.245 exchange before the INVITE).
pub(super) const SLOW_START_LIMIT: Duration = Duration::from_secs(15);

/// How long the room has to close its channels after our empty
/// TerminalCapabilitySet before we give the pause up.
pub(super) const PAUSE_LIMIT: Duration = Duration::from_secs(5);

/// Our logical channel numbers start here (the room's are its own).
const FIRST_NUMBER: u16 = 101;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Audio,
    Video,
}

impl Kind {
    fn of(c: Codec) -> Kind {
        match c {
            Codec::H264 { .. } => Kind::Video,
            _ => Kind::Audio,
        }
    }

    fn session_id(self) -> u8 {
        match self {
            Kind::Audio => 1,
            Kind::Video => 2,
        }
    }
}

/// One of our channels towards the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ours {
    pub number: u16,
    pub codec: Codec,
    /// Where the room receives (its OpenLogicalChannelAck); `None` while
    /// unanswered.
    pub rtp: Option<SocketAddr>,
    /// The room refused it.
    pub refused: bool,
}

/// A slow-start call's channels.
#[derive(Debug)]
pub(super) struct Slow {
    /// The INVITE went to the gateway.
    pub invited: bool,
    /// The room's H.245 exchange must give its addresses by then.
    pub deadline: Instant,
    /// The room's codecs (its TerminalCapabilitySet), in its order.
    pub audio_caps: Vec<Codec>,
    pub video_cap: Option<Codec>,
    pub caps_seen: bool,
    /// Our channels towards the room.
    pub audio: Option<Ours>,
    pub video: Option<Ours>,
    /// The room's channels acknowledged (number, kind).
    pub theirs: Vec<(u16, Kind)>,
    /// The room's channels waiting for the relay's address.
    pub pending: Vec<Olc>,
    /// The relay's side of the last answer (where the room sends).
    pub relay: sip::Answer,
    /// An empty TerminalCapabilitySet is out (`Some(seq)`): the room's
    /// channels are being closed before our set goes again.
    pub paused: Option<u8>,
    pub pause_acked: bool,
    /// The pause is given up then (the room ignored it).
    pub pause_until: Option<Instant>,
    next: u16,
}

impl Slow {
    pub fn new(now: Instant) -> Slow {
        Slow {
            invited: false,
            deadline: now + SLOW_START_LIMIT,
            audio_caps: Vec::new(),
            video_cap: None,
            caps_seen: false,
            audio: None,
            video: None,
            theirs: Vec::new(),
            pending: Vec::new(),
            relay: sip::Answer::default(),
            paused: None,
            pause_acked: false,
            pause_until: None,
            next: FIRST_NUMBER,
        }
    }

    /// Takes the room's capabilities: the codecs the gateway can carry.
    pub fn take_caps(&mut self, caps: &[Capability]) {
        self.caps_seen = true;
        self.audio_caps.clear();
        self.video_cap = None;
        for c in caps {
            let m = match c {
                Capability::Audio(m) | Capability::Video(m) => m,
                _ => continue,
            };
            match codec_of(m) {
                Some(v @ Codec::H264 { .. }) => {
                    self.video_cap.get_or_insert(v);
                }
                Some(a) if !self.audio_caps.contains(&a) => self.audio_caps.push(a),
                _ => {}
            }
        }
    }

    /// A new channel of ours for `codec` (the number, the OLC).
    pub fn open(&mut self, codec: Codec, payload_type: Option<u8>) -> Olc {
        let number = self.next;
        self.next = self.next.wrapping_add(1).max(FIRST_NUMBER);
        let ours = Ours {
            number,
            codec,
            rtp: None,
            refused: false,
        };
        let kind = Kind::of(codec);
        match kind {
            Kind::Audio => self.audio = Some(ours),
            Kind::Video => self.video = Some(ours),
        }
        Olc {
            number,
            media: media_of(codec),
            session_id: kind.session_id(),
            payload_type: payload_type.or(matches!(kind, Kind::Video).then_some(VIDEO_PT)),
            forward: true,
            rtp: None,
            rtcp: None,
            reverse: None,
            presentation: false,
        }
    }

    /// The channels the INVITE waits for, before it can be made: none
    /// opened yet, or one unanswered.
    pub fn waiting(&self) -> bool {
        let open = |o: &Option<Ours>| o.as_ref().is_some_and(|o| o.rtp.is_none() && !o.refused);
        self.audio.is_none() || open(&self.audio) || open(&self.video)
    }

    /// The SDP offer from the room's receive addresses and codecs.
    pub fn offer(&self) -> Offer {
        let stream = |o: &Option<Ours>, codecs: Vec<Codec>| {
            let o = o.as_ref()?;
            Some(sip::Stream {
                rtp: o.rtp?,
                codecs,
            })
        };
        Offer {
            audio: stream(&self.audio, self.audio_caps.clone()),
            video: stream(&self.video, self.video_cap.into_iter().collect()),
        }
    }

    /// A room channel acknowledged or refused, by the relay's address for
    /// its kind (it sends there).
    pub fn answer_theirs(&mut self, o: &Olc) -> Control {
        let kind = codec_of(&o.media).map(Kind::of);
        let relay = match kind {
            Some(Kind::Audio) => self.relay.audio,
            Some(Kind::Video) => self.relay.video,
            None => None,
        };
        match (kind, relay) {
            (Some(kind), Some(r)) if !self.theirs.iter().any(|(n, _)| *n == o.number) => {
                self.theirs.push((o.number, kind));
                Control::OpenLogicalChannelAck {
                    number: o.number,
                    media: Some(r.rtp),
                    control: Some(r.rtcp),
                }
            }
            _ => Control::OpenLogicalChannelReject { number: o.number },
        }
    }

    /// Starts the pause (our empty set `seq` is going out).
    pub fn pause(&mut self, seq: u8, now: Instant) {
        self.paused = Some(seq);
        self.pause_acked = false;
        self.pause_until = Some(now + PAUSE_LIMIT);
    }

    /// Ends the pause (the room closed its channels, or ignored the pause
    /// too long): the room's channels that waited are answered. Our whole
    /// set goes before these answers (the caller's).
    pub fn resume(&mut self) -> Vec<Control> {
        self.paused = None;
        self.pause_acked = false;
        self.pause_until = None;
        std::mem::take(&mut self.pending)
            .iter()
            .map(|o| self.answer_theirs(o))
            .collect()
    }

    /// Whether the room's channels must be opened anew for `next` (the
    /// relay's side after a re-INVITE): an address moved, or a stream the
    /// room sends on appeared or went.
    pub fn must_reroute(&self, next: &sip::Answer) -> bool {
        let moved = |a: &Option<sip::Answered>, b: &Option<sip::Answered>| {
            a.map(|x| x.rtp) != b.map(|x| x.rtp)
        };
        let video_possible = self.video_cap.is_some() && next.video.is_some();
        let video_open = self.theirs.iter().any(|(_, k)| *k == Kind::Video);
        moved(&self.relay.audio, &next.audio)
            || (video_open && moved(&self.relay.video, &next.video))
            || video_possible != video_open
    }
}

/// The payload type our H.264 channel offers before an answer names one.
const VIDEO_PT: u8 = 96;

fn media_of(c: Codec) -> Media {
    match c {
        Codec::Pcmu => Media::G711Ulaw { frames: 20 },
        Codec::Pcma => Media::G711Alaw { frames: 20 },
        Codec::G722 => Media::G722 { frames: 20 },
        Codec::H264 { profile, level } => Media::H264 { profile, level },
    }
}

impl Call {
    /// Whether the gateway has the call (the INVITE was made).
    pub(super) fn invited(&self) -> bool {
        self.slow.as_ref().is_none_or(|s| s.invited)
    }

    /// A slow-start event from the room's H.245.
    pub(super) async fn on_channel_event(&mut self, e: Event) {
        let Some(slow) = self.slow.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        match e {
            Event::Capabilities(caps) => slow.take_caps(&caps),
            Event::CapabilitiesAcked(seq) if slow.paused == Some(seq) => slow.pause_acked = true,
            Event::ChannelAck { number, rtp } => {
                for o in [&mut slow.audio, &mut slow.video].into_iter().flatten() {
                    if o.number != number {
                        continue;
                    }
                    if o.rtp.is_none() {
                        o.rtp = rtp;
                        o.refused = rtp.is_none();
                    } else if rtp.is_some() && rtp != o.rtp {
                        // A reopened channel's new address is not followed
                        // (D213): the gateway keeps the first.
                        if log_limit::allow(self.remote.ip(), H323_LOG) {
                            info!(remote = %self.remote, kept = ?o.rtp, named = ?rtp, "H.323 room named a new receive address for a reopened channel: the first is kept");
                        }
                    }
                }
            }
            Event::ChannelRefused(number) => {
                for o in [&mut slow.audio, &mut slow.video].into_iter().flatten() {
                    if o.number == number {
                        o.refused = true;
                    }
                }
            }
            Event::ChannelClosed(number) => slow.theirs.retain(|(n, _)| *n != number),
            Event::ChannelOpen(o) if self.state == State::Connected && slow.paused.is_none() => {
                out.push(slow.answer_theirs(&o));
            }
            Event::ChannelOpen(o) if slow.pending.len() < 4 => slow.pending.push(o),
            Event::ChannelOpen(o) => {
                out.push(Control::OpenLogicalChannelReject { number: o.number })
            }
            _ => {}
        }
        // The pause is over once the room acknowledged it and closed its
        // channels: our set again, and the room opens anew.
        if slow.paused.is_some() && slow.pause_acked && slow.theirs.is_empty() {
            out.push(self.session.capabilities(true));
            out.extend(slow.resume());
        }
        self.send_h245(out).await;
        self.slow_progress().await;
    }

    /// The room did not close its channels within `PAUSE_LIMIT` of our
    /// empty set: our whole set again, its old channels kept (they go on
    /// sending where they did), the channels that waited answered.
    pub(super) async fn pause_ignored(&mut self) {
        let Some(slow) = self.slow.as_mut() else {
            return;
        };
        if slow.paused.is_none() {
            return;
        }
        let kept = slow.theirs.len();
        let acked = slow.pause_acked;
        let mut out = vec![self.session.capabilities(true)];
        out.extend(slow.resume());
        if log_limit::allow(self.remote.ip(), H323_LOG) {
            info!(remote = %self.remote, kept, acked, "H.323 room did not close its channels for the pause: our capabilities restored, its channels kept");
        }
        self.send_h245(out).await;
    }

    /// Moves a slow-start call on: our channels once H.245 is ready, the
    /// INVITE once the room's addresses are known.
    pub(super) async fn slow_progress(&mut self) {
        let ready = self.session.ready();
        let Some(slow) = self.slow.as_mut() else {
            return;
        };
        if slow.invited || !ready || !slow.caps_seen {
            return;
        }
        if slow.audio.is_none() {
            let Some(&audio) = slow.audio_caps.first() else {
                if log_limit::allow(self.remote.ip(), H323_LOG) {
                    info!(remote = %self.remote, "H.323 slow start refused: no G.711 or G.722 in the room's capabilities");
                }
                self.h.stats.refused.fetch_add(1, Ordering::Relaxed);
                return self
                    .release(BEARER_NOT_IMPLEMENTED, ReleaseReason::Undefined)
                    .await;
            };
            let mut olcs = vec![Control::OpenLogicalChannel(slow.open(audio, None))];
            if let Some(v) = slow.video_cap {
                olcs.push(Control::OpenLogicalChannel(slow.open(v, None)));
            }
            return self.send_h245(olcs).await;
        }
        if slow.waiting() {
            return;
        }
        let offer = slow.offer();
        if offer.audio.is_none() {
            if log_limit::allow(self.remote.ip(), H323_LOG) {
                info!(remote = %self.remote, "H.323 slow start refused: the room gave no audio receive address");
            }
            self.h.stats.refused.fetch_add(1, Ordering::Relaxed);
            return self
                .release(BEARER_NOT_IMPLEMENTED, ReleaseReason::Undefined)
                .await;
        }
        slow.invited = true;
        self.room_media = offer.clone();
        self.last_sdp = sip::offer_sdp(&offer, self.sdp_session);
        let invite = self.dialog.invite(&self.last_sdp, &self.invite_branch);
        info!(remote = %self.remote, video = offer.video.is_some(), "H.323 slow start: channels known, calling the gateway");
        if !self.to_gateway(Bytes::from(invite)).await {
            self.release(31, ReleaseReason::Undefined).await;
        }
    }

    /// A fast-start call whose channels H.245 moves later (to the
    /// reception): the channels Connect accepts, as if opened by H.245.
    pub(super) fn slow_fast_start(&mut self, answers: &[Olc]) {
        let Some(slow) = self.slow.as_mut() else {
            return;
        };
        for o in answers {
            let Some(codec) = codec_of(&o.media) else {
                continue;
            };
            if o.forward {
                // The room's transmit proposal: the room sends on it.
                slow.theirs.push((o.number, Kind::of(codec)));
                continue;
            }
            let ours = Some(Ours {
                number: o.number,
                codec,
                rtp: o.rtp,
                refused: false,
            });
            match Kind::of(codec) {
                Kind::Audio => slow.audio = ours,
                Kind::Video => slow.video = ours,
            }
        }
    }

    /// The gateway's answer (its 200, or a re-INVITE's offer we answered
    /// with its first formats): our channels follow the chosen codecs, the
    /// room's are acknowledged or opened anew.
    pub(super) async fn slow_answered(&mut self, answer: sip::Answer) {
        let Some(slow) = self.slow.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        // Our audio follows the codec the answer chose.
        if let (Some(a), Some(ours)) = (answer.audio, slow.audio.clone())
            && ours.codec != a.codec
            && !ours.refused
        {
            out.push(Control::CloseLogicalChannel {
                number: ours.number,
            });
            out.push(Control::OpenLogicalChannel(
                slow.open(a.codec, Some(a.payload_type)),
            ));
            // The room's receive address is not expected to move; the one
            // it gave stays what the gateway has.
            if let Some(o) = slow.audio.as_mut() {
                o.rtp = ours.rtp;
            }
        }
        // The meeting brings video the room can receive and we have no
        // channel for (the reception refused it): open ours.
        if let (Some(v), None, Some(av)) = (slow.video_cap, &slow.video, answer.video)
            && self.state == State::Connected
        {
            out.push(Control::OpenLogicalChannel(
                slow.open(v, Some(av.payload_type)),
            ));
        }
        let first = self.state != State::Connected;
        if first {
            slow.relay = answer;
            let pending = std::mem::take(&mut slow.pending);
            for o in &pending {
                out.push(slow.answer_theirs(o));
            }
        } else if slow.must_reroute(&answer) {
            slow.relay = answer;
            if slow.theirs.is_empty() && slow.paused.is_none() {
                out.push(self.session.capabilities(true));
            } else {
                out.push(self.session.capabilities(false));
                slow.pause(self.session.tcs_seq, Instant::now());
            }
            info!(remote = %self.remote, "H.323 slow start: the room's channels opened anew for the meeting");
        } else {
            slow.relay = answer;
        }
        self.send_h245(out).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(port: u16, codec: Codec) -> sip::Answered {
        sip::Answered {
            rtp: SocketAddr::from(([127, 0, 0, 9], port)),
            rtcp: SocketAddr::from(([127, 0, 0, 9], port + 1)),
            codec,
            payload_type: 8,
        }
    }

    const H264: Codec = Codec::H264 {
        profile: 66,
        level: 31,
    };

    #[test]
    fn capabilities_channels_and_the_offer() {
        let mut s = Slow::new(Instant::now());
        s.take_caps(&[
            Capability::Audio(Media::G711Ulaw { frames: 20 }),
            Capability::Audio(Media::Other("g729")),
            Capability::Audio(Media::G711Alaw { frames: 20 }),
            Capability::Video(Media::H264 {
                profile: 66,
                level: 31,
            }),
            Capability::UserInput(1),
        ]);
        assert_eq!(s.audio_caps, vec![Codec::Pcmu, Codec::Pcma]);
        assert_eq!(s.video_cap, Some(H264));
        assert!(s.waiting());
        let a = s.open(Codec::Pcmu, None);
        let v = s.open(H264, None);
        assert_eq!((a.number, a.session_id, a.forward), (101, 1, true));
        assert_eq!((v.number, v.session_id, v.payload_type), (102, 2, Some(96)));
        assert!(s.waiting());
        s.audio.as_mut().unwrap().rtp = Some(SocketAddr::from(([127, 0, 0, 5], 4000)));
        assert!(s.waiting(), "the video channel is not answered yet");
        s.video.as_mut().unwrap().refused = true;
        assert!(!s.waiting());
        let offer = s.offer();
        let audio = offer.audio.unwrap();
        assert_eq!(audio.rtp.port(), 4000);
        assert_eq!(audio.codecs, vec![Codec::Pcmu, Codec::Pcma]);
        assert!(offer.video.is_none(), "a refused channel offers nothing");
    }

    #[test]
    fn the_rooms_channels_get_the_relays_address_or_a_refusal() {
        let mut s = Slow::new(Instant::now());
        s.relay.audio = Some(answered(5000, Codec::Pcma));
        let olc = |number, media| Olc {
            number,
            media,
            session_id: 1,
            payload_type: None,
            forward: true,
            rtp: None,
            rtcp: None,
            reverse: None,
            presentation: false,
        };
        let a = olc(1001, Media::G711Alaw { frames: 20 });
        assert_eq!(
            s.answer_theirs(&a),
            Control::OpenLogicalChannelAck {
                number: 1001,
                media: Some(SocketAddr::from(([127, 0, 0, 9], 5000))),
                control: Some(SocketAddr::from(([127, 0, 0, 9], 5001))),
            }
        );
        // The same number twice, a stream the relay has not, unknown media.
        assert!(matches!(
            s.answer_theirs(&a),
            Control::OpenLogicalChannelReject { number: 1001 }
        ));
        let v = olc(
            1003,
            Media::H264 {
                profile: 66,
                level: 31,
            },
        );
        assert!(matches!(
            s.answer_theirs(&v),
            Control::OpenLogicalChannelReject { number: 1003 }
        ));
        assert!(matches!(
            s.answer_theirs(&olc(7, Media::Other("g729"))),
            Control::OpenLogicalChannelReject { number: 7 }
        ));
        assert_eq!(s.theirs, vec![(1001, Kind::Audio)]);
    }

    #[test]
    fn the_pause_ends_and_the_waiting_channels_are_answered() {
        let now = Instant::now();
        let mut s = Slow::new(now);
        s.relay.audio = Some(answered(5000, Codec::Pcma));
        s.theirs.push((1001, Kind::Audio));
        s.pause(3, now);
        assert_eq!(s.paused, Some(3));
        assert_eq!(s.pause_until, Some(now + PAUSE_LIMIT));
        // A room that ignored the pause opened one more meanwhile.
        s.pending.push(Olc {
            number: 1005,
            media: Media::G711Alaw { frames: 20 },
            session_id: 1,
            payload_type: None,
            forward: true,
            rtp: None,
            rtcp: None,
            reverse: None,
            presentation: false,
        });
        let answers = s.resume();
        assert!(matches!(
            answers.as_slice(),
            [Control::OpenLogicalChannelAck { number: 1005, .. }]
        ));
        assert_eq!(
            (s.paused, s.pause_until, s.pause_acked),
            (None, None, false)
        );
        // The old channel is kept, the new one taken.
        assert_eq!(s.theirs, vec![(1001, Kind::Audio), (1005, Kind::Audio)]);
        assert!(s.pending.is_empty());
    }

    #[test]
    fn a_moved_relay_or_new_video_reroutes_the_room() {
        let mut s = Slow::new(Instant::now());
        s.video_cap = Some(H264);
        s.relay.audio = Some(answered(5000, Codec::Pcmu));
        s.theirs.push((1001, Kind::Audio));
        let same = s.relay.clone();
        assert!(!s.must_reroute(&same));
        let mut moved = same.clone();
        moved.audio = Some(answered(6000, Codec::Pcma));
        assert!(s.must_reroute(&moved));
        // The meeting brings video the room can send: open anew.
        let mut video = same.clone();
        video.video = Some(answered(6002, H264));
        assert!(s.must_reroute(&video));
        // A room without video is not disturbed by the meeting's.
        s.video_cap = None;
        assert!(!s.must_reroute(&video));
    }
}
