//! One call's H.245 control session, as a gateway endpoint (terminal type
//! 60): capability exchange (the gateway's set: G.711, G.722, H.264, user
//! input), master/slave determination (the room's answered; ours sent
//! with our capabilities where H.245 moves the channels: H.245 §8.2),
//! logical channels, user input (the digits go on to the gateway as SIP
//! INFO), round trip delay and end of session. Where H.245 moves the
//! channels (`slow`: slow start, and a fast-start call with H.245 to the
//! reception or the test call), the room's audio/video channels and the
//! answers to ours are reported as events for the call's channel
//! bookkeeping (`call/channels.rs`); on a plain fast-start call new
//! channels of the room's are refused. The H.239 token and presentation
//! channels both ways are reported as events for `call/share.rs` and
//! `call/present.rs`.
//!
//! Pure: decoded messages in, replies and events out. It never touches a
//! socket and never knows whether the channel is tunnelled or separate
//! (the call task carries the bytes).

use std::net::SocketAddr;

use fedge_h323::h245::{
    Capability, Control, GenericKind, GenericMessage, GenericValue, Olc, UserInput,
};

/// H.239's generic message identifier (H.239 §9: presentation token
/// messages are generic messages with this identifier).
pub const H239_MESSAGE: &str = "0.0.8.239.2";
/// H.239 sub-message identifiers and parameter identifiers.
const TOKEN_REQUEST: u8 = 3;
const TOKEN_RESPONSE: u8 = 4;
const TOKEN_RELEASE: u8 = 5;
const P_CHANNEL: u8 = 42;
const P_SYMMETRY: u8 = 43;
const P_LABEL: u8 = 44;
const P_ACKNOWLEDGE: u8 = 126;

/// Our terminal type: an H.323 gateway (H.245 Table 1).
pub const TERMINAL_TYPE: u8 = 60;

/// How many times our master/slave determination is tried when the
/// numbers tie (H.245 §8.2's N236).
const MSD_TRIES: u8 = 3;

/// What the call task does besides sending the replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key the room pressed.
    Digit(char),
    /// The room ended the session (endSessionCommand).
    EndSession,
    /// The room opened its H.239 presentation channel: the call offers
    /// the content stream to the gateway and answers the OLC later.
    PresentationOpen(Olc),
    /// The room closed its presentation channel (CLC, acknowledged
    /// already) or released the token.
    PresentationClose,
    /// Slow start: the room opened one of its audio/video channels (the
    /// call answers it once the relay's address is known).
    ChannelOpen(Olc),
    /// The room acknowledged one of our channels: where it receives.
    ChannelAck {
        number: u16,
        rtp: Option<std::net::SocketAddr>,
    },
    /// The room refused one of our channels.
    ChannelRefused(u16),
    /// Slow start: the room closed one of its channels (acknowledged).
    ChannelClosed(u16),
    /// The room's capabilities (a non-empty TerminalCapabilitySet).
    Capabilities(Vec<Capability>),
    /// The room acknowledged our TerminalCapabilitySet `seq`.
    CapabilitiesAcked(u8),
    /// The room answered our presentationTokenRequest (true: granted).
    TokenAnswer(bool),
    /// The room acknowledged our presentation channel: where it takes
    /// the content's RTP and RTCP.
    OutgoingAck(Option<SocketAddr>, Option<SocketAddr>),
    /// The room refused our presentation channel.
    OutgoingReject,
}

/// The session's state.
#[derive(Debug)]
pub struct Session {
    /// Our statusDeterminationNumber (24 bits).
    random: u32,
    /// Our TerminalCapabilitySet went out.
    pub tcs_sent: bool,
    /// The room acknowledged it.
    pub tcs_acked: bool,
    /// Whether the room is master, once determined.
    pub room_is_master: Option<bool>,
    /// Messages handled (bounded by the caller's frame limits).
    pub handled: u64,
    /// The room's presentation channel number, while one is open or
    /// being opened.
    pub presentation: Option<u16>,
    /// Slow start: the room's audio/video channels are opened by H.245
    /// (reported as events) rather than refused.
    pub slow: bool,
    /// The sequence number of our last TerminalCapabilitySet.
    pub tcs_seq: u8,
    /// Our presentation channel towards the room (the meeting's
    /// content), while it is being opened or open.
    pub outgoing: Option<u16>,
    /// Our presentationTokenRequest awaits the room's response.
    pub token_asked: bool,
    /// Our MasterSlaveDetermination awaits the room's answer (H.245
    /// §8.2's OUTGOING AWAITING RESPONSE).
    pub msd_out: bool,
    /// How many times we sent it.
    msd_tries: u8,
}

impl Session {
    pub fn new(random: u32) -> Session {
        Session {
            random: random & 0x00ff_ffff,
            tcs_sent: false,
            tcs_acked: false,
            room_is_master: None,
            handled: 0,
            presentation: None,
            slow: false,
            tcs_seq: 1,
            outgoing: None,
            token_asked: false,
            msd_out: false,
            msd_tries: 0,
        }
    }

    /// Our opening messages, once: our capabilities, and (when H.245
    /// moves the channels, `slow`: our channels wait for `ready`) our own
    /// master/slave determination unless the room's already decided it
    /// (H.245 §8.2: each terminal initiates; a room that waits for ours
    /// before sending its own does not stall). A fast-start call's
    /// channels need no determination: there the room's is answered.
    pub fn opening(&mut self) -> Vec<Control> {
        if self.tcs_sent {
            return Vec::new();
        }
        self.tcs_sent = true;
        let mut out = vec![fedge_h323::h245::gateway_capabilities(1)];
        if self.slow && self.room_is_master.is_none() && !self.msd_out {
            out.push(self.determination());
        }
        out
    }

    /// Our MasterSlaveDetermination (a new number after a tie).
    fn determination(&mut self) -> Control {
        if self.msd_tries > 0 {
            self.random = rand::random::<u32>() & 0x00ff_ffff;
        }
        self.msd_tries += 1;
        self.msd_out = true;
        Control::MasterSlaveDetermination {
            terminal_type: TERMINAL_TYPE,
            random: self.random,
        }
    }

    /// The room's MasterSlaveDetermination: acknowledged with the result,
    /// or (the numbers tie) ours again with a new number while ours is
    /// out and tries are left, else rejected.
    fn on_determination(&mut self, terminal_type: u8, random: u32) -> Control {
        match self.room_is_master(terminal_type, random) {
            Some(m) => {
                // INCOMING AWAITING RESPONSE: the room's Ack of ours, if
                // one comes, only confirms.
                self.room_is_master = Some(m);
                self.msd_out = false;
                Control::MasterSlaveDeterminationAck {
                    receiver_is_master: m,
                }
            }
            None if self.msd_out && self.msd_tries < MSD_TRIES => self.determination(),
            None => Control::MasterSlaveDeterminationReject,
        }
    }

    /// The room's answer to our determination: an Ack decides (and is
    /// acknowledged in turn, H.245 §8.2.4); a reject (a tie) makes us try
    /// again with a new number while tries are left.
    fn on_determination_answer(&mut self, ack: Option<bool>) -> Option<Control> {
        if !self.msd_out {
            return None;
        }
        match ack {
            Some(we_are_master) => {
                self.msd_out = false;
                self.room_is_master = Some(!we_are_master);
                Some(Control::MasterSlaveDeterminationAck {
                    receiver_is_master: !we_are_master,
                })
            }
            None if self.msd_tries < MSD_TRIES => Some(self.determination()),
            None => {
                self.msd_out = false;
                None
            }
        }
    }

    /// A new TerminalCapabilitySet: empty (`full` false: H.323 §8.4.6's
    /// pause, the room closes the channels it transmits on) or our whole
    /// set again (the room opens its channels anew).
    pub fn capabilities(&mut self, full: bool) -> Control {
        self.tcs_seq = self.tcs_seq.wrapping_add(1);
        self.tcs_sent = true;
        if full {
            fedge_h323::h245::gateway_capabilities(self.tcs_seq)
        } else {
            Control::TerminalCapabilitySet {
                seq: self.tcs_seq,
                caps: Vec::new(),
            }
        }
    }

    /// Capability exchange and master/slave determination are done: the
    /// logical channels may be opened.
    pub fn ready(&self) -> bool {
        self.tcs_acked && self.room_is_master.is_some()
    }

    /// Master/slave determination per H.245 §8.2: the larger terminal type
    /// is master; with equal types the statusDeterminationNumbers decide
    /// (modulo 2^24: the one whose number minus the other's is below
    /// 2^23 and not zero is master); `None` when undecidable.
    fn room_is_master(&self, terminal_type: u8, random: u32) -> Option<bool> {
        if terminal_type != TERMINAL_TYPE {
            return Some(terminal_type > TERMINAL_TYPE);
        }
        let diff = (random & 0x00ff_ffff).wrapping_sub(self.random) & 0x00ff_ffff;
        match diff {
            0 | 0x0080_0000 => None,
            d => Some(d < 0x0080_0000),
        }
    }

    /// Handles one message from the room: the replies to send, and what
    /// it means for the call.
    pub fn on_control(&mut self, c: Control) -> (Vec<Control>, Vec<Event>) {
        self.handled += 1;
        let mut out = Vec::new();
        let mut ev = Vec::new();
        match c {
            Control::TerminalCapabilitySet { seq, caps } => {
                out.push(Control::TerminalCapabilitySetAck { seq });
                out.extend(self.opening());
                if !caps.is_empty() {
                    ev.push(Event::Capabilities(caps));
                }
            }
            Control::TerminalCapabilitySetAck { seq } => {
                self.tcs_acked = true;
                ev.push(Event::CapabilitiesAcked(seq));
            }
            Control::MasterSlaveDetermination {
                terminal_type,
                random,
            } => out.push(self.on_determination(terminal_type, random)),
            Control::MasterSlaveDeterminationAck { receiver_is_master } => {
                out.extend(self.on_determination_answer(Some(receiver_is_master)));
            }
            Control::MasterSlaveDeterminationReject => {
                out.extend(self.on_determination_answer(None));
            }
            Control::OpenLogicalChannel(o)
                if o.presentation && o.forward && self.presentation.is_none() =>
            {
                self.presentation = Some(o.number);
                ev.push(Event::PresentationOpen(o));
            }
            Control::OpenLogicalChannel(o) if self.slow && !o.presentation && o.forward => {
                ev.push(Event::ChannelOpen(o));
            }
            Control::OpenLogicalChannelAck {
                number,
                media,
                control,
            } if self.outgoing == Some(number) => ev.push(Event::OutgoingAck(media, control)),
            Control::OpenLogicalChannelReject { number } if self.outgoing == Some(number) => {
                self.outgoing = None;
                ev.push(Event::OutgoingReject);
            }
            Control::OpenLogicalChannel(o) => {
                // After fast start, channels of the room's own are refused.
                out.push(Control::OpenLogicalChannelReject { number: o.number });
            }
            Control::OpenLogicalChannelAck { number, media, .. } => {
                ev.push(Event::ChannelAck { number, rtp: media });
            }
            Control::OpenLogicalChannelReject { number } => ev.push(Event::ChannelRefused(number)),
            Control::CloseLogicalChannel { number } => {
                out.push(Control::CloseLogicalChannelAck { number });
                if self.presentation == Some(number) {
                    self.presentation = None;
                    ev.push(Event::PresentationClose);
                } else if self.slow {
                    ev.push(Event::ChannelClosed(number));
                }
            }
            Control::Generic(g) if g.id == H239_MESSAGE => {
                let (o, e) = self.on_h239(&g);
                out.extend(o);
                ev.extend(e);
            }
            Control::UserInput(UserInput::Alphanumeric(s)) => {
                ev.extend(s.chars().filter(|c| is_key(*c)).take(32).map(Event::Digit));
            }
            Control::UserInput(UserInput::Signal(c)) if is_key(c) => ev.push(Event::Digit(c)),
            Control::RoundTripDelayRequest { seq } => {
                out.push(Control::RoundTripDelayResponse { seq });
            }
            Control::EndSession => ev.push(Event::EndSession),
            _ => {}
        }
        (out, ev)
    }
}

impl Session {
    /// H.239 token messages: a request is acknowledged (the gateway has
    /// one presentation per call, the room's; the meeting's floor is the
    /// connector's business), a release closes the presentation.
    fn on_h239(&mut self, g: &GenericMessage) -> (Vec<Control>, Vec<Event>) {
        let param = |id: u8| {
            g.params
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, v)| v.clone())
        };
        match (g.kind, g.sub) {
            (GenericKind::Request, Some(TOKEN_REQUEST)) => {
                let mut params = vec![(P_ACKNOWLEDGE, GenericValue::Logical)];
                params.extend(param(P_LABEL).map(|v| (P_LABEL, v)));
                params.extend(param(P_CHANNEL).map(|v| (P_CHANNEL, v)));
                let r = Control::Generic(GenericMessage {
                    kind: GenericKind::Response,
                    id: H239_MESSAGE.into(),
                    sub: Some(TOKEN_RESPONSE),
                    params,
                });
                (vec![r], Vec::new())
            }
            (GenericKind::Response, Some(TOKEN_RESPONSE)) if self.token_asked => {
                self.token_asked = false;
                let granted = param(P_ACKNOWLEDGE).is_some();
                (Vec::new(), vec![Event::TokenAnswer(granted)])
            }
            (GenericKind::Command, Some(TOKEN_RELEASE)) if self.presentation.is_some() => {
                (Vec::new(), vec![Event::PresentationClose])
            }
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// The presentation channel is gone (refused, or closed by us).
    pub fn presentation_closed(&mut self) {
        self.presentation = None;
    }

    /// Our presentationTokenRequest (H.239 §7.2): asks the room for the
    /// token, to present on `channel` ourselves, or (the meeting's floor
    /// revoked) to take it back from the room presenting.
    pub fn token_request(&mut self, channel: u16) -> Control {
        self.token_asked = true;
        Control::Generic(GenericMessage {
            kind: GenericKind::Request,
            id: H239_MESSAGE.into(),
            sub: Some(TOKEN_REQUEST),
            params: vec![
                (P_LABEL, GenericValue::UnsignedMin(0)),
                (P_CHANNEL, GenericValue::UnsignedMin(channel)),
                (
                    P_SYMMETRY,
                    GenericValue::UnsignedMin(rand::random_range(1..=127)),
                ),
            ],
        })
    }
}

/// Our presentationTokenRelease (H.239 §7.2): we stopped presenting on
/// `channel`.
pub fn token_release(channel: u16) -> Control {
    Control::Generic(GenericMessage {
        kind: GenericKind::Command,
        id: H239_MESSAGE.into(),
        sub: Some(TOKEN_RELEASE),
        params: vec![
            (P_LABEL, GenericValue::UnsignedMin(0)),
            (P_CHANNEL, GenericValue::UnsignedMin(channel)),
        ],
    })
}

/// A key a room system has (DTMF 0-9, *, #, A-D).
fn is_key(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_acknowledged_and_ours_go_once() {
        let mut s = Session::new(5);
        let (out, _) = s.on_control(Control::TerminalCapabilitySet {
            seq: 3,
            caps: Vec::new(),
        });
        assert!(matches!(
            out[0],
            Control::TerminalCapabilitySetAck { seq: 3 }
        ));
        assert_eq!(
            out.len(),
            2,
            "Ack and our set (fast start: no determination)"
        );
        let (out, _) = s.on_control(Control::TerminalCapabilitySet {
            seq: 4,
            caps: Vec::new(),
        });
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn master_slave_by_the_rules() {
        let mut s = Session::new(100);
        let (out, _) = s.on_control(Control::MasterSlaveDetermination {
            terminal_type: 50,
            random: 7,
        });
        assert!(matches!(
            out[0],
            Control::MasterSlaveDeterminationAck {
                receiver_is_master: false
            }
        ));
        let (out, _) = s.on_control(Control::MasterSlaveDetermination {
            terminal_type: 60,
            random: 101,
        });
        assert!(matches!(
            out[0],
            Control::MasterSlaveDeterminationAck {
                receiver_is_master: true
            }
        ));
        let (out, _) = s.on_control(Control::MasterSlaveDetermination {
            terminal_type: 60,
            random: 100,
        });
        assert!(matches!(out[0], Control::MasterSlaveDeterminationReject));
    }

    #[test]
    fn our_determination_goes_with_our_capabilities_and_decides() {
        // A room that waits for ours: it acknowledges, we acknowledge back.
        let mut s = Session::new(100);
        s.slow = true;
        let open = s.opening();
        assert_eq!(
            open[1],
            Control::MasterSlaveDetermination {
                terminal_type: TERMINAL_TYPE,
                random: 100
            }
        );
        assert!(s.msd_out && s.room_is_master.is_none());
        let (out, _) = s.on_control(Control::MasterSlaveDeterminationAck {
            receiver_is_master: true,
        });
        assert_eq!(
            out,
            vec![Control::MasterSlaveDeterminationAck {
                receiver_is_master: false
            }]
        );
        assert_eq!(s.room_is_master, Some(false));
        // A stray Ack afterwards: nothing.
        let (out, _) = s.on_control(Control::MasterSlaveDeterminationAck {
            receiver_is_master: true,
        });
        assert!(out.is_empty());
        // Both initiate: the room's determination decides, its Ack of ours
        // only confirms.
        let mut s = Session::new(100);
        s.slow = true;
        s.opening();
        let (out, _) = s.on_control(Control::MasterSlaveDetermination {
            terminal_type: 190,
            random: 7,
        });
        assert_eq!(
            out,
            vec![Control::MasterSlaveDeterminationAck {
                receiver_is_master: true
            }]
        );
        let (out, _) = s.on_control(Control::MasterSlaveDeterminationAck {
            receiver_is_master: false,
        });
        assert!(out.is_empty());
        assert_eq!(s.room_is_master, Some(true));
        // Our capabilities after the room's decided: no determination.
        let mut s = Session::new(100);
        s.slow = true;
        s.on_control(Control::MasterSlaveDetermination {
            terminal_type: 50,
            random: 7,
        });
        assert_eq!(s.opening().len(), 1);
    }

    #[test]
    fn a_tie_is_tried_again_with_a_new_number_a_bounded_number_of_times() {
        let mut s = Session::new(100);
        s.slow = true;
        s.opening();
        // Same type, same number while ours is out: ours again.
        let (out, _) = s.on_control(Control::MasterSlaveDetermination {
            terminal_type: TERMINAL_TYPE,
            random: 100,
        });
        assert!(matches!(
            out.as_slice(),
            [Control::MasterSlaveDetermination {
                terminal_type: TERMINAL_TYPE,
                ..
            }]
        ));
        // The room rejects (a tie on its side): the third and last try.
        let (out, _) = s.on_control(Control::MasterSlaveDeterminationReject);
        assert!(matches!(
            out.as_slice(),
            [Control::MasterSlaveDetermination { .. }]
        ));
        let (out, _) = s.on_control(Control::MasterSlaveDeterminationReject);
        assert!(out.is_empty(), "no fourth try");
        assert!(!s.msd_out && !s.ready());
        // Undecidable with nothing of ours out: rejected.
        let random = s.random;
        let (out, _) = s.on_control(Control::MasterSlaveDetermination {
            terminal_type: TERMINAL_TYPE,
            random,
        });
        assert_eq!(out, vec![Control::MasterSlaveDeterminationReject]);
    }

    #[test]
    fn digits_and_the_end() {
        let mut s = Session::new(1);
        let (_, ev) = s.on_control(Control::UserInput(UserInput::Alphanumeric("12x#".into())));
        assert_eq!(
            ev,
            vec![Event::Digit('1'), Event::Digit('2'), Event::Digit('#')]
        );
        let (_, ev) = s.on_control(Control::UserInput(UserInput::Signal('9')));
        assert_eq!(ev, vec![Event::Digit('9')]);
        let (_, ev) = s.on_control(Control::EndSession);
        assert_eq!(ev, vec![Event::EndSession]);
    }

    #[test]
    fn the_presentation_token_is_acknowledged_and_the_channel_reported() {
        let mut s = Session::new(1);
        let (out, ev) = s.on_control(Control::Generic(GenericMessage {
            kind: GenericKind::Request,
            id: H239_MESSAGE.into(),
            sub: Some(TOKEN_REQUEST),
            params: vec![
                (P_LABEL, GenericValue::UnsignedMin(1)),
                (P_CHANNEL, GenericValue::UnsignedMin(1005)),
                (43, GenericValue::UnsignedMin(9)),
            ],
        }));
        assert!(ev.is_empty());
        assert_eq!(
            out,
            vec![Control::Generic(GenericMessage {
                kind: GenericKind::Response,
                id: H239_MESSAGE.into(),
                sub: Some(TOKEN_RESPONSE),
                params: vec![
                    (P_ACKNOWLEDGE, GenericValue::Logical),
                    (P_LABEL, GenericValue::UnsignedMin(1)),
                    (P_CHANNEL, GenericValue::UnsignedMin(1005)),
                ],
            })]
        );
        // Another generic message: nothing.
        let (out, _) = s.on_control(Control::Generic(GenericMessage {
            kind: GenericKind::Request,
            id: "0.0.8.241.0".into(),
            sub: Some(3),
            params: vec![],
        }));
        assert!(out.is_empty());
        let olc = Olc {
            number: 1005,
            media: fedge_h323::h245::Media::H264 {
                profile: 66,
                level: 31,
            },
            session_id: 3,
            payload_type: Some(97),
            forward: true,
            rtp: None,
            rtcp: None,
            reverse: None,
            presentation: true,
        };
        let (out, ev) = s.on_control(Control::OpenLogicalChannel(olc.clone()));
        assert!(out.is_empty());
        assert_eq!(ev, vec![Event::PresentationOpen(olc.clone())]);
        // A second presentation channel while one is open: refused.
        let mut two = olc.clone();
        two.number = 1006;
        let (out, ev) = s.on_control(Control::OpenLogicalChannel(two));
        assert_eq!(
            out,
            vec![Control::OpenLogicalChannelReject { number: 1006 }]
        );
        assert!(ev.is_empty());
        let (out, ev) = s.on_control(Control::CloseLogicalChannel { number: 1005 });
        assert_eq!(out, vec![Control::CloseLogicalChannelAck { number: 1005 }]);
        assert_eq!(ev, vec![Event::PresentationClose]);
        assert_eq!(s.presentation, None);
    }

    #[test]
    fn slow_start_channels_are_events_and_the_pause_is_an_empty_set() {
        let olc = Olc {
            number: 1001,
            media: fedge_h323::h245::Media::G711Alaw { frames: 20 },
            session_id: 1,
            payload_type: None,
            forward: true,
            rtp: None,
            rtcp: None,
            reverse: None,
            presentation: false,
        };
        // Without slow start the room's channel is refused at once.
        let mut fast = Session::new(1);
        let (out, ev) = fast.on_control(Control::OpenLogicalChannel(olc.clone()));
        assert_eq!(
            out,
            vec![Control::OpenLogicalChannelReject { number: 1001 }]
        );
        assert!(ev.is_empty());
        let mut s = Session::new(1);
        s.slow = true;
        assert!(!s.ready());
        let (out, ev) = s.on_control(Control::TerminalCapabilitySet {
            seq: 1,
            caps: vec![Capability::Audio(fedge_h323::h245::Media::G711Ulaw {
                frames: 20,
            })],
        });
        assert_eq!(out.len(), 3, "Ack, our set and our determination");
        assert!(matches!(ev.as_slice(), [Event::Capabilities(c)] if c.len() == 1));
        let (_, ev) = s.on_control(Control::TerminalCapabilitySetAck { seq: 1 });
        assert_eq!(ev, vec![Event::CapabilitiesAcked(1)]);
        s.on_control(Control::MasterSlaveDetermination {
            terminal_type: 50,
            random: 9,
        });
        assert!(s.ready());
        let (out, ev) = s.on_control(Control::OpenLogicalChannel(olc.clone()));
        assert!(out.is_empty(), "answered by the call later");
        assert_eq!(ev, vec![Event::ChannelOpen(olc)]);
        let at = "127.0.0.5:4000".parse().ok();
        let (_, ev) = s.on_control(Control::OpenLogicalChannelAck {
            number: 101,
            media: at,
            control: None,
        });
        assert_eq!(
            ev,
            vec![Event::ChannelAck {
                number: 101,
                rtp: at
            }]
        );
        let (_, ev) = s.on_control(Control::OpenLogicalChannelReject { number: 102 });
        assert_eq!(ev, vec![Event::ChannelRefused(102)]);
        let (out, ev) = s.on_control(Control::CloseLogicalChannel { number: 1001 });
        assert_eq!(out, vec![Control::CloseLogicalChannelAck { number: 1001 }]);
        assert_eq!(ev, vec![Event::ChannelClosed(1001)]);
        // The pause: an empty set with the next number, then ours again.
        assert_eq!(
            s.capabilities(false),
            Control::TerminalCapabilitySet {
                seq: 2,
                caps: Vec::new()
            }
        );
        assert!(matches!(
            s.capabilities(true),
            Control::TerminalCapabilitySet { seq: 3, caps } if !caps.is_empty()
        ));
    }

    #[test]
    fn our_token_request_and_channel_are_answered_by_events() {
        let mut s = Session::new(1);
        let Control::Generic(g) = s.token_request(2039) else {
            panic!("a generic request");
        };
        assert_eq!((g.kind, g.sub), (GenericKind::Request, Some(TOKEN_REQUEST)));
        assert!(
            g.params
                .contains(&(P_CHANNEL, GenericValue::UnsignedMin(2039)))
        );
        let answer = |ok: bool| {
            Control::Generic(GenericMessage {
                kind: GenericKind::Response,
                id: H239_MESSAGE.into(),
                sub: Some(TOKEN_RESPONSE),
                params: vec![(if ok { P_ACKNOWLEDGE } else { 127 }, GenericValue::Logical)],
            })
        };
        assert_eq!(s.on_control(answer(true)).1, vec![Event::TokenAnswer(true)]);
        // Not asked (any more): nothing.
        assert!(s.on_control(answer(true)).1.is_empty());
        s.token_request(2039);
        assert_eq!(
            s.on_control(answer(false)).1,
            vec![Event::TokenAnswer(false)]
        );
        // The Ack of our channel, another's ignored, the reject.
        s.outgoing = Some(2039);
        let to: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let ack = |n: u16| Control::OpenLogicalChannelAck {
            number: n,
            media: Some(to),
            control: None,
        };
        assert_eq!(
            s.on_control(ack(2039)).1,
            vec![Event::OutgoingAck(Some(to), None)]
        );
        // Another channel's Ack is the audio/video channels' business.
        assert!(
            !s.on_control(ack(7))
                .1
                .iter()
                .any(|e| matches!(e, Event::OutgoingAck(..)))
        );
        assert_eq!(
            s.on_control(Control::OpenLogicalChannelReject { number: 2039 })
                .1,
            vec![Event::OutgoingReject]
        );
        assert_eq!(s.outgoing, None);
        let Control::Generic(r) = token_release(2039) else {
            panic!("a generic command");
        };
        assert_eq!((r.kind, r.sub), (GenericKind::Command, Some(TOKEN_RELEASE)));
    }
}
