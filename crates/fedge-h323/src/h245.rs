//! H.245 control (MultimediaSystemControlMessage), simplified for the
//! gateway: capability exchange, master/slave determination, logical
//! channels, user input (DTMF), round trip delay, end session and H.239
//! generic messages. Owns the mapping to the generated types and the
//! gateway's own capability set; never keeps channel state, never panics
//! on hostile bytes.

use rasn::types::ObjectIdentifier;

use crate::Error;
use crate::asn::h245 as asn;
use crate::common::{oid, per_decode};

mod encode;
mod generic;
mod media;

pub use encode::encode;

pub use generic::{GenericKind, GenericMessage, GenericValue};
pub use media::{
    H239_CONTROL_OID, H239_EXTENDED_VIDEO_OID, H264_OID, Media, Olc, VIDEO_MAX_BIT_RATE,
    address_from, address_to, decode_olc, encode_olc,
};

/// The H.245 version this gateway announces (0.0.8.245.0.N).
pub const PROTOCOL_VERSION: u32 = 13;

/// UserInputCapability alternatives, by their index in the ASN.1 CHOICE.
pub const UII_BASIC_STRING: u8 = 1;
pub const UII_IA5_STRING: u8 = 2;
pub const UII_GENERAL_STRING: u8 = 3;
pub const UII_DTMF: u8 = 4;
pub const UII_HOOKFLASH: u8 = 5;

/// One H.245 message, simplified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    TerminalCapabilitySet {
        seq: u8,
        caps: Vec<Capability>,
    },
    TerminalCapabilitySetAck {
        seq: u8,
    },
    TerminalCapabilitySetReject {
        seq: u8,
    },
    MasterSlaveDetermination {
        terminal_type: u8,
        random: u32,
    },
    /// `receiver_is_master`: the decision for the terminal that receives
    /// the Ack.
    MasterSlaveDeterminationAck {
        receiver_is_master: bool,
    },
    MasterSlaveDeterminationReject,
    OpenLogicalChannel(Olc),
    OpenLogicalChannelAck {
        number: u16,
        media: Option<std::net::SocketAddr>,
        control: Option<std::net::SocketAddr>,
    },
    OpenLogicalChannelReject {
        number: u16,
    },
    CloseLogicalChannel {
        number: u16,
    },
    CloseLogicalChannelAck {
        number: u16,
    },
    UserInput(UserInput),
    EndSession,
    RoundTripDelayRequest {
        seq: u8,
    },
    RoundTripDelayResponse {
        seq: u8,
    },
    /// H.239 and other generic requests, responses, commands, indications.
    Generic(GenericMessage),
    /// Any other message, by its ASN.1 name.
    Other(&'static str),
}

/// A capability (its direction is not kept: the gateway only sends
/// receive capabilities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    Audio(Media),
    Video(Media),
    /// A UserInputCapability, by its CHOICE index (`UII_*`).
    UserInput(u8),
    /// An H.239 capability, by the dotted object identifier of its generic
    /// capability (extended video: 0.0.8.239.1.2, control: 0.0.8.239.1.1).
    Extended(String),
    Other,
}

/// User input (UserInputIndication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserInput {
    Alphanumeric(String),
    /// A DTMF signal: one of 0-9 * # A-D !.
    Signal(char),
    Other,
}

/// Decodes one H.245 message.
pub fn decode(b: &[u8]) -> Result<Control, Error> {
    let m: asn::MultimediaSystemControlMessage = per_decode(b)?;
    Ok(match m {
        asn::MultimediaSystemControlMessage::request(r) => request_from(r)?,
        asn::MultimediaSystemControlMessage::response(r) => response_from(r),
        asn::MultimediaSystemControlMessage::command(c) => match c {
            asn::CommandMessage::endSessionCommand(_) => Control::EndSession,
            asn::CommandMessage::genericCommand(g) => {
                Control::Generic(GenericMessage::from_asn(GenericKind::Command, &g))
            }
            asn::CommandMessage::miscellaneousCommand(_) => Control::Other("miscellaneousCommand"),
            asn::CommandMessage::flowControlCommand(_) => Control::Other("flowControlCommand"),
            _ => Control::Other("command"),
        },
        asn::MultimediaSystemControlMessage::indication(i) => match i {
            asn::IndicationMessage::userInput(u) => Control::UserInput(user_input_from(&u)),
            asn::IndicationMessage::genericIndication(g) => {
                Control::Generic(GenericMessage::from_asn(GenericKind::Indication, &g))
            }
            asn::IndicationMessage::miscellaneousIndication(_) => {
                Control::Other("miscellaneousIndication")
            }
            asn::IndicationMessage::functionNotUnderstood(_) => {
                Control::Other("functionNotUnderstood")
            }
            _ => Control::Other("indication"),
        },
    })
}

fn request_from(r: asn::RequestMessage) -> Result<Control, Error> {
    use asn::RequestMessage as R;
    Ok(match r {
        R::terminalCapabilitySet(t) => Control::TerminalCapabilitySet {
            seq: t.sequence_number.0,
            caps: t
                .capability_table
                .iter()
                .flat_map(|s| s.iter())
                .filter_map(|e| e.capability.as_ref())
                .map(capability_from)
                .collect(),
        },
        R::masterSlaveDetermination(m) => Control::MasterSlaveDetermination {
            terminal_type: m.terminal_type,
            random: m.status_determination_number,
        },
        R::openLogicalChannel(o) => Control::OpenLogicalChannel(media::olc_from(&o)?),
        R::closeLogicalChannel(c) => Control::CloseLogicalChannel {
            number: c.forward_logical_channel_number.0,
        },
        R::roundTripDelayRequest(d) => Control::RoundTripDelayRequest {
            seq: d.sequence_number.0,
        },
        R::genericRequest(g) => {
            Control::Generic(GenericMessage::from_asn(GenericKind::Request, &g))
        }
        R::requestMode(_) => Control::Other("requestMode"),
        R::requestChannelClose(_) => Control::Other("requestChannelClose"),
        _ => Control::Other("request"),
    })
}

fn response_from(r: asn::ResponseMessage) -> Control {
    use asn::ResponseMessage as R;
    match r {
        R::masterSlaveDeterminationAck(a) => Control::MasterSlaveDeterminationAck {
            receiver_is_master: matches!(
                a.decision,
                asn::MasterSlaveDeterminationAckDecision::master(())
            ),
        },
        R::masterSlaveDeterminationReject(_) => Control::MasterSlaveDeterminationReject,
        R::terminalCapabilitySetAck(a) => Control::TerminalCapabilitySetAck {
            seq: a.sequence_number.0,
        },
        R::terminalCapabilitySetReject(a) => Control::TerminalCapabilitySetReject {
            seq: a.sequence_number.0,
        },
        R::openLogicalChannelAck(a) => {
            let p = match &a.forward_multiplex_ack_parameters {
                Some(asn::OpenLogicalChannelAckForwardMultiplexAckParameters::h2250LogicalChannelAckParameters(p)) => Some(p),
                _ => None,
            };
            Control::OpenLogicalChannelAck {
                number: a.forward_logical_channel_number.0,
                media: p
                    .and_then(|p| p.media_channel.as_ref())
                    .and_then(address_from),
                control: p
                    .and_then(|p| p.media_control_channel.as_ref())
                    .and_then(address_from),
            }
        }
        R::openLogicalChannelReject(r) => Control::OpenLogicalChannelReject {
            number: r.forward_logical_channel_number.0,
        },
        R::closeLogicalChannelAck(a) => Control::CloseLogicalChannelAck {
            number: a.forward_logical_channel_number.0,
        },
        R::roundTripDelayResponse(d) => Control::RoundTripDelayResponse {
            seq: d.sequence_number.0,
        },
        R::genericResponse(g) => {
            Control::Generic(GenericMessage::from_asn(GenericKind::Response, &g))
        }
        R::requestModeAck(_) => Control::Other("requestModeAck"),
        _ => Control::Other("response"),
    }
}

pub(crate) fn oid_text(id: &ObjectIdentifier) -> String {
    id.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

fn capability_from(c: &asn::Capability) -> Capability {
    use asn::Capability as C;
    match c {
        C::receiveAudioCapability(a)
        | C::transmitAudioCapability(a)
        | C::receiveAndTransmitAudioCapability(a) => Capability::Audio(media::audio_from(a)),
        C::receiveVideoCapability(v)
        | C::transmitVideoCapability(v)
        | C::receiveAndTransmitVideoCapability(v) => match v {
            asn::VideoCapability::extendedVideoCapability(e) => {
                let id = e.video_capability_extension.iter().flatten().find_map(|g| {
                    match &g.capability_identifier {
                        asn::CapabilityIdentifier::standard(id) => Some(oid_text(id)),
                        _ => None,
                    }
                });
                Capability::Extended(id.unwrap_or_else(|| "extendedVideoCapability".into()))
            }
            v => Capability::Video(media::video_from(v)),
        },
        C::receiveUserInputCapability(u)
        | C::transmitUserInputCapability(u)
        | C::receiveAndTransmitUserInputCapability(u) => Capability::UserInput(user_input_index(u)),
        C::genericControlCapability(g) => match &g.capability_identifier {
            asn::CapabilityIdentifier::standard(id) => Capability::Extended(oid_text(id)),
            _ => Capability::Other,
        },
        _ => Capability::Other,
    }
}

fn user_input_index(u: &asn::UserInputCapability) -> u8 {
    use asn::UserInputCapability as U;
    match u {
        U::nonStandard(_) => 0,
        U::basicString(()) => UII_BASIC_STRING,
        U::iA5String(()) => UII_IA5_STRING,
        U::generalString(()) => UII_GENERAL_STRING,
        U::dtmf(()) => UII_DTMF,
        U::hookflash(()) => UII_HOOKFLASH,
        U::extendedAlphanumeric(()) => 6,
        U::encryptedBasicString(()) => 7,
        U::encryptedIA5String(()) => 8,
        U::encryptedGeneralString(()) => 9,
        U::secureDTMF(()) => 10,
        U::genericUserInputCapability(_) => 11,
    }
}

fn user_input_cap(i: u8) -> Option<asn::UserInputCapability> {
    use asn::UserInputCapability as U;
    Some(match i {
        UII_BASIC_STRING => U::basicString(()),
        UII_IA5_STRING => U::iA5String(()),
        UII_GENERAL_STRING => U::generalString(()),
        UII_DTMF => U::dtmf(()),
        UII_HOOKFLASH => U::hookflash(()),
        6 => U::extendedAlphanumeric(()),
        _ => return None,
    })
}

fn user_input_from(u: &asn::UserInputIndication) -> UserInput {
    match u {
        asn::UserInputIndication::alphanumeric(s) => {
            UserInput::Alphanumeric(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        asn::UserInputIndication::signal(s) => s
            .signal_type
            .as_iso646_bytes()
            .first()
            .map_or(UserInput::Other, |c| UserInput::Signal(char::from(*c))),
        _ => UserInput::Other,
    }
}

/// The gateway's capability set: G.711 u-law and A-law, G.722, H.264
/// (baseline, level 3.1), H.239 presentation (H.264), user input as DTMF,
/// basic string and hookflash.
pub fn gateway_capabilities(seq: u8) -> Control {
    Control::TerminalCapabilitySet {
        seq,
        caps: vec![
            Capability::Audio(Media::G711Ulaw { frames: 20 }),
            Capability::Audio(Media::G711Alaw { frames: 20 }),
            Capability::Audio(Media::G722 { frames: 20 }),
            Capability::Video(Media::H264 {
                profile: 64,
                level: 71,
            }),
            Capability::Extended(dotted(&H239_CONTROL_OID)),
            Capability::Extended(dotted(&H239_EXTENDED_VIDEO_OID)),
            Capability::UserInput(UII_DTMF),
            Capability::UserInput(UII_BASIC_STRING),
            Capability::UserInput(UII_HOOKFLASH),
        ],
    }
}

fn dotted(arcs: &[u32]) -> String {
    arcs.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

pub(crate) fn parse_oid(text: &str) -> Result<ObjectIdentifier, Error> {
    let arcs: Result<Vec<u32>, _> = text.split('.').map(str::parse).collect();
    oid(&arcs.map_err(|_| Error::Bad("object identifier text"))?)
}

#[cfg(test)]
mod tests;
