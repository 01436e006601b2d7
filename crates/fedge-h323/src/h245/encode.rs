//! Encoding of `Control` into H.245 PER (the other half of `h245`): the
//! capability table the gateway sends and every message it answers with.
//! Never panics; a value H.245 cannot carry is an error.

use rasn::types::{GeneralString, Ia5String};

use super::media::{self, H239_EXTENDED_VIDEO_OID, Media};
use super::{Capability, Control, PROTOCOL_VERSION, UserInput, parse_oid, user_input_cap};
use crate::Error;
use crate::asn::h245 as asn;
use crate::common::{oid, per_encode};

/// Encodes one H.245 message.
pub fn encode(c: &Control) -> Result<Vec<u8>, Error> {
    use asn::MultimediaSystemControlMessage as M;
    use asn::RequestMessage as Rq;
    use asn::ResponseMessage as Rs;
    let m = match c {
        Control::TerminalCapabilitySet { seq, caps } => {
            M::request(Rq::terminalCapabilitySet(tcs(*seq, caps)?))
        }
        Control::TerminalCapabilitySetAck { seq } => M::response(Rs::terminalCapabilitySetAck(
            asn::TerminalCapabilitySetAck {
                sequence_number: asn::SequenceNumber(*seq),
                generic_information: None,
            },
        )),
        Control::TerminalCapabilitySetReject { seq } => M::response(
            Rs::terminalCapabilitySetReject(asn::TerminalCapabilitySetReject {
                sequence_number: asn::SequenceNumber(*seq),
                cause: asn::TerminalCapabilitySetRejectCause::unspecified(()),
                generic_information: None,
            }),
        ),
        Control::MasterSlaveDetermination {
            terminal_type,
            random,
        } => M::request(Rq::masterSlaveDetermination(
            asn::MasterSlaveDetermination {
                terminal_type: *terminal_type,
                status_determination_number: random & 0x00FF_FFFF,
            },
        )),
        Control::MasterSlaveDeterminationAck { receiver_is_master } => M::response(
            Rs::masterSlaveDeterminationAck(asn::MasterSlaveDeterminationAck {
                decision: if *receiver_is_master {
                    asn::MasterSlaveDeterminationAckDecision::master(())
                } else {
                    asn::MasterSlaveDeterminationAckDecision::slave(())
                },
            }),
        ),
        Control::MasterSlaveDeterminationReject => M::response(Rs::masterSlaveDeterminationReject(
            asn::MasterSlaveDeterminationReject {
                cause: asn::MasterSlaveDeterminationRejectCause::identicalNumbers(()),
            },
        )),
        Control::OpenLogicalChannel(o) => M::request(Rq::openLogicalChannel(media::olc_to(o)?)),
        Control::OpenLogicalChannelAck {
            number,
            media,
            control,
        } => M::response(Rs::openLogicalChannelAck(olc_ack(
            *number, *media, *control,
        ))),
        Control::OpenLogicalChannelReject { number } => M::response(Rs::openLogicalChannelReject(
            asn::OpenLogicalChannelReject {
                forward_logical_channel_number: asn::LogicalChannelNumber((*number).max(1)),
                cause: asn::OpenLogicalChannelRejectCause::unspecified(()),
                generic_information: None,
            },
        )),
        Control::CloseLogicalChannel { number } => {
            M::request(Rq::closeLogicalChannel(asn::CloseLogicalChannel {
                forward_logical_channel_number: asn::LogicalChannelNumber((*number).max(1)),
                source: asn::CloseLogicalChannelSource::user(()),
                reason: None,
            }))
        }
        Control::CloseLogicalChannelAck { number } => {
            M::response(Rs::closeLogicalChannelAck(asn::CloseLogicalChannelAck {
                forward_logical_channel_number: asn::LogicalChannelNumber((*number).max(1)),
            }))
        }
        Control::UserInput(u) => M::indication(asn::IndicationMessage::userInput(user_input(u)?)),
        Control::EndSession => M::command(asn::CommandMessage::endSessionCommand(
            asn::EndSessionCommand::disconnect(()),
        )),
        Control::RoundTripDelayRequest { seq } => {
            M::request(Rq::roundTripDelayRequest(asn::RoundTripDelayRequest {
                sequence_number: asn::SequenceNumber(*seq),
            }))
        }
        Control::RoundTripDelayResponse { seq } => {
            M::response(Rs::roundTripDelayResponse(asn::RoundTripDelayResponse {
                sequence_number: asn::SequenceNumber(*seq),
            }))
        }
        Control::Generic(g) => g.to_asn()?,
        Control::Other(name) => return Err(Error::Encode(format!("cannot encode H.245 {name}"))),
    };
    per_encode(&m)
}

fn olc_ack(
    number: u16,
    rtp: Option<std::net::SocketAddr>,
    rtcp: Option<std::net::SocketAddr>,
) -> asn::OpenLogicalChannelAck {
    let params = asn::H2250LogicalChannelAckParameters {
        non_standard: None,
        session_id: None,
        media_channel: rtp.map(media::address_to),
        media_control_channel: rtcp.map(media::address_to),
        dynamic_rtppayload_type: None,
        flow_control_to_zero: None,
        port_number: None,
        multiple_payload_stream: None,
    };
    asn::OpenLogicalChannelAck {
        forward_logical_channel_number: asn::LogicalChannelNumber(number.max(1)),
        reverse_logical_channel_parameters: None,
        separate_stack: None,
        forward_multiplex_ack_parameters: Some(
            asn::OpenLogicalChannelAckForwardMultiplexAckParameters::h2250LogicalChannelAckParameters(params),
        ),
        encryption_sync: None,
        generic_information: None,
        dtls_security_capability: None,
    }
}

fn user_input(u: &UserInput) -> Result<asn::UserInputIndication, Error> {
    Ok(match u {
        UserInput::Alphanumeric(s) => asn::UserInputIndication::alphanumeric(
            GeneralString::from_bytes(s.as_bytes()).map_err(|_| Error::Bad("GeneralString"))?,
        ),
        UserInput::Signal(c) => {
            if !matches!(c, '0'..='9' | '*' | '#' | 'A'..='D' | '!') {
                return Err(Error::Bad("DTMF signal"));
            }
            let mut buf = [0u8; 4];
            let t = Ia5String::try_from(&*c.encode_utf8(&mut buf))
                .map_err(|_| Error::Bad("DTMF signal"))?;
            asn::UserInputIndication::signal(asn::UserInputIndicationSignal {
                signal_type: t,
                duration: None,
                rtp: None,
                rtp_payload_indication: None,
                param_s: None,
                encrypted_signal_type: None,
                algorithm_oid: None,
            })
        }
        UserInput::Other => return Err(Error::Encode("cannot encode UserInput::Other".into())),
    })
}

/// The capability of `c` as this gateway sends it (receive), None when
/// H.245 has no form for it here.
fn capability_to(c: &Capability) -> Result<Option<asn::Capability>, Error> {
    use asn::Capability as C;
    Ok(match c {
        Capability::Audio(m) => media::audio_to(m).map(C::receiveAudioCapability),
        Capability::Video(m) => media::video_to(m)?.map(C::receiveVideoCapability),
        Capability::UserInput(i) => user_input_cap(*i).map(C::receiveUserInputCapability),
        Capability::Extended(id)
            if id
                .split('.')
                .map(str::parse::<u32>)
                .eq(H239_EXTENDED_VIDEO_OID.iter().map(|a| Ok(*a))) =>
        {
            let h264 = media::video_to(&Media::H264 {
                profile: 64,
                level: 71,
            })?;
            h264.map(media::extended_video)
                .transpose()?
                .map(C::receiveVideoCapability)
        }
        Capability::Extended(id) => Some(C::genericControlCapability(asn::GenericCapability {
            capability_identifier: asn::CapabilityIdentifier::standard(parse_oid(id)?),
            max_bit_rate: None,
            collapsing: None,
            non_collapsing: None,
            non_collapsing_raw: None,
            transport: None,
        })),
        Capability::Other => None,
    })
}

fn tcs(seq: u8, caps: &[Capability]) -> Result<asn::TerminalCapabilitySet, Error> {
    let mut table = Vec::new();
    let mut audio = Vec::new();
    let mut video = Vec::new();
    let mut others = Vec::new();
    for c in caps {
        let Some(cap) = capability_to(c)? else {
            continue;
        };
        let n = u16::try_from(table.len() + 1).map_err(|_| Error::TooLong("capability table"))?;
        if n > 256 {
            return Err(Error::TooLong("capability table"));
        }
        let number = asn::CapabilityTableEntryNumber(n);
        match c {
            Capability::Audio(_) => audio.push(number.clone()),
            Capability::Video(_) => video.push(number.clone()),
            _ => others.push(vec![number.clone()]),
        }
        table.push(asn::CapabilityTableEntry {
            capability_table_entry_number: number,
            capability: Some(cap),
        });
    }
    let mut sets: Vec<asn::AlternativeCapabilitySet> = Vec::new();
    for set in [audio, video].into_iter().chain(others) {
        if !set.is_empty() {
            sets.push(asn::AlternativeCapabilitySet(set));
        }
    }
    let descriptors = (!sets.is_empty()).then(|| {
        rasn::types::SetOf::from_vec(vec![asn::CapabilityDescriptor {
            capability_descriptor_number: asn::CapabilityDescriptorNumber(0),
            simultaneous_capabilities: Some(rasn::types::SetOf::from_vec(sets)),
        }])
    });
    Ok(asn::TerminalCapabilitySet {
        sequence_number: asn::SequenceNumber(seq),
        protocol_identifier: oid(&[0, 0, 8, 245, 0, PROTOCOL_VERSION])?,
        multiplex_capability: None,
        capability_table: (!table.is_empty()).then(|| rasn::types::SetOf::from_vec(table)),
        capability_descriptors: descriptors,
        generic_information: None,
    })
}
