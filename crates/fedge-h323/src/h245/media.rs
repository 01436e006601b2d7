//! H.245 media descriptions (audio and video capabilities and data types),
//! H.245 transport addresses and logical channels (OpenLogicalChannel,
//! also as fast start proposals), simplified for the gateway. Owns the
//! mapping to the generated types; never panics on hostile values.

use std::net::SocketAddr;

use rasn::types::{ObjectIdentifier, OctetString};

use crate::Error;
use crate::asn::h245 as asn;
use crate::common::{octets, oid, per_decode, per_encode, socket};

/// H.241's H.264 capability identifier.
pub const H264_OID: [u32; 7] = [0, 0, 8, 241, 0, 0, 1];
/// H.239's extended video capability identifier (presentation role).
pub const H239_EXTENDED_VIDEO_OID: [u32; 6] = [0, 0, 8, 239, 1, 2];
/// H.239's control capability identifier.
pub const H239_CONTROL_OID: [u32; 6] = [0, 0, 8, 239, 1, 1];
/// Maximum bit rate this gateway announces for video, in 100 bit/s.
pub const VIDEO_MAX_BIT_RATE: u32 = 40_960;

/// A codec, as capability or as a channel's data type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    G711Ulaw {
        frames: u16,
    },
    G711Alaw {
        frames: u16,
    },
    G722 {
        frames: u16,
    },
    /// H.241 profile (booleanArray) and level (unsignedMin).
    H264 {
        profile: u8,
        level: u8,
    },
    H263,
    H261,
    /// Another codec, by its ASN.1 name.
    Other(&'static str),
}

/// A logical channel (OpenLogicalChannel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Olc {
    pub number: u16,
    pub media: Media,
    pub session_id: u8,
    pub payload_type: Option<u8>,
    /// True: a channel from the OLC's sender to its receiver (the media and
    /// addresses are the forward parameters); false: a reverse-only
    /// channel (fast start's proposal of what its sender receives).
    pub forward: bool,
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
    /// The reverse direction of a bidirectional channel.
    pub reverse: Option<(Media, Option<SocketAddr>, Option<SocketAddr>)>,
    /// H.239 presentation role (extended video capability).
    pub presentation: bool,
}

pub(crate) fn oid_eq(id: &ObjectIdentifier, arcs: &[u32]) -> bool {
    id.as_ref() == arcs
}

pub(crate) fn audio_from(a: &asn::AudioCapability) -> Media {
    use asn::AudioCapability as A;
    match a {
        A::g711Ulaw64k(f) => Media::G711Ulaw { frames: *f },
        A::g711Alaw64k(f) => Media::G711Alaw { frames: *f },
        A::g722_64k(f) => Media::G722 { frames: *f },
        A::g7231(_) => Media::Other("g7231"),
        A::g729(_) | A::g729AnnexA(_) => Media::Other("g729"),
        A::genericAudioCapability(_) => Media::Other("genericAudioCapability"),
        _ => Media::Other("audio"),
    }
}

pub(crate) fn video_from(v: &asn::VideoCapability) -> Media {
    use asn::VideoCapability as V;
    match v {
        V::h261VideoCapability(_) => Media::H261,
        V::h263VideoCapability(_) => Media::H263,
        V::genericVideoCapability(g) => match &g.capability_identifier {
            asn::CapabilityIdentifier::standard(id) if oid_eq(id, &H264_OID) => {
                let mut profile = 0;
                let mut level = 0;
                for p in g.collapsing.iter().flatten() {
                    match (&p.parameter_identifier, &p.parameter_value) {
                        (
                            asn::ParameterIdentifier::standard(41),
                            asn::ParameterValue::booleanArray(v),
                        ) => profile = *v,
                        (
                            asn::ParameterIdentifier::standard(42),
                            asn::ParameterValue::unsignedMin(v),
                        ) => {
                            level = u8::try_from(*v).unwrap_or(u8::MAX);
                        }
                        _ => {}
                    }
                }
                Media::H264 { profile, level }
            }
            _ => Media::Other("genericVideoCapability"),
        },
        V::extendedVideoCapability(e) => e
            .video_capability
            .first()
            .map_or(Media::Other("extendedVideoCapability"), video_from),
        _ => Media::Other("video"),
    }
}

pub(crate) fn audio_to(m: &Media) -> Option<asn::AudioCapability> {
    use asn::AudioCapability as A;
    let f = |n: u16| n.clamp(1, 256);
    Some(match m {
        Media::G711Ulaw { frames } => A::g711Ulaw64k(f(*frames)),
        Media::G711Alaw { frames } => A::g711Alaw64k(f(*frames)),
        Media::G722 { frames } => A::g722_64k(f(*frames)),
        _ => return None,
    })
}

fn param(id: u8, value: asn::ParameterValue) -> asn::GenericParameter {
    asn::GenericParameter {
        parameter_identifier: asn::ParameterIdentifier::standard(id),
        parameter_value: value,
        supersedes: None,
    }
}

pub(crate) fn generic_capability(
    id: &[u32],
    max: Option<u32>,
    collapsing: Vec<asn::GenericParameter>,
) -> Result<asn::GenericCapability, Error> {
    Ok(asn::GenericCapability {
        capability_identifier: asn::CapabilityIdentifier::standard(oid(id)?),
        max_bit_rate: max,
        collapsing: (!collapsing.is_empty()).then_some(collapsing),
        non_collapsing: None,
        non_collapsing_raw: None,
        transport: None,
    })
}

pub(crate) fn video_to(m: &Media) -> Result<Option<asn::VideoCapability>, Error> {
    use asn::VideoCapability as V;
    Ok(Some(match m {
        Media::H264 { profile, level } => V::genericVideoCapability(generic_capability(
            &H264_OID,
            Some(VIDEO_MAX_BIT_RATE),
            vec![
                param(41, asn::ParameterValue::booleanArray(*profile)),
                param(42, asn::ParameterValue::unsignedMin(u16::from(*level))),
            ],
        )?),
        Media::H263 => V::h263VideoCapability(asn::H263VideoCapability {
            sqcif_mpi: None,
            qcif_mpi: Some(1),
            cif_mpi: Some(1),
            cif4_mpi: None,
            cif16_mpi: None,
            max_bit_rate: 19_200,
            unrestricted_vector: false,
            arithmetic_coding: false,
            advanced_prediction: false,
            pb_frames: false,
            temporal_spatial_trade_off_capability: false,
            hrd_b: None,
            bpp_max_kb: None,
            slow_sqcif_mpi: None,
            slow_qcif_mpi: None,
            slow_cif_mpi: None,
            slow_cif4_mpi: None,
            slow_cif16_mpi: None,
            error_compensation: Some(false),
            enhancement_layer_info: None,
            h263_options: None,
        }),
        Media::H261 => V::h261VideoCapability(asn::H261VideoCapability {
            qcif_mpi: Some(1),
            cif_mpi: Some(1),
            temporal_spatial_trade_off_capability: false,
            max_bit_rate: 19_200,
            still_image_transmission: false,
            video_bad_mbs_cap: Some(false),
        }),
        _ => return Ok(None),
    }))
}

/// The H.239 presentation form of a video capability.
pub(crate) fn extended_video(v: asn::VideoCapability) -> Result<asn::VideoCapability, Error> {
    let role = generic_capability(
        &H239_EXTENDED_VIDEO_OID,
        None,
        vec![param(1, asn::ParameterValue::booleanArray(1))],
    )?;
    Ok(asn::VideoCapability::extendedVideoCapability(
        asn::ExtendedVideoCapability {
            video_capability: vec![v],
            video_capability_extension: Some(vec![role]),
        },
    ))
}

fn data_type_to(m: &Media, presentation: bool) -> Result<asn::DataType, Error> {
    if let Some(a) = audio_to(m) {
        return Ok(asn::DataType::audioData(a));
    }
    let v = video_to(m)?.ok_or_else(|| Error::Encode(format!("no H.245 data type for {m:?}")))?;
    Ok(asn::DataType::videoData(if presentation {
        extended_video(v)?
    } else {
        v
    }))
}

/// Media, and whether it is an H.239 presentation, of a data type; None
/// for nullData.
fn data_type_from(d: &asn::DataType) -> Option<(Media, bool)> {
    match d {
        asn::DataType::nullData(()) => None,
        asn::DataType::audioData(a) => Some((audio_from(a), false)),
        asn::DataType::videoData(v) => Some((
            video_from(v),
            matches!(v, asn::VideoCapability::extendedVideoCapability(_)),
        )),
        _ => Some((Media::Other("dataType"), false)),
    }
}

/// A socket address of an H.245 TransportAddress (unicast IPv4 or IPv6).
pub fn address_from(t: &asn::H245TransportAddress) -> Option<SocketAddr> {
    match t {
        asn::H245TransportAddress::unicastAddress(asn::UnicastAddress::iPAddress(a)) => {
            socket(&a.network, a.tsap_identifier)
        }
        asn::H245TransportAddress::unicastAddress(asn::UnicastAddress::iP6Address(a)) => {
            socket(&a.network, a.tsap_identifier)
        }
        _ => None,
    }
}

/// An H.245 unicast TransportAddress of a socket address.
pub fn address_to(a: SocketAddr) -> asn::H245TransportAddress {
    let network: OctetString = octets(a);
    let tsap_identifier = a.port();
    asn::H245TransportAddress::unicastAddress(match a {
        SocketAddr::V4(_) => asn::UnicastAddress::iPAddress(asn::UnicastAddressIPAddress {
            network,
            tsap_identifier,
        }),
        SocketAddr::V6(_) => asn::UnicastAddress::iP6Address(asn::UnicastAddressIP6Address {
            network,
            tsap_identifier,
        }),
    })
}

fn h2250(
    session: u8,
    rtp: Option<SocketAddr>,
    rtcp: Option<SocketAddr>,
    pt: Option<u8>,
) -> asn::H2250LogicalChannelParameters {
    asn::H2250LogicalChannelParameters {
        non_standard: None,
        session_id: session,
        associated_session_id: None,
        media_channel: rtp.map(address_to),
        media_guaranteed_delivery: None,
        media_control_channel: rtcp.map(address_to),
        media_control_guaranteed_delivery: None,
        silence_suppression: None,
        destination: None,
        dynamic_rtppayload_type: pt.filter(|p| (96..=127).contains(p)),
        media_packetization: None,
        transport_capability: None,
        redundancy_encoding: None,
        source: None,
        nominal_audio_level: None,
    }
}

/// Decodes an OpenLogicalChannel (a fast start element).
pub fn decode_olc(b: &[u8]) -> Result<Olc, Error> {
    olc_from(&per_decode::<asn::OpenLogicalChannel>(b)?)
}

/// Encodes an OpenLogicalChannel (a fast start element).
pub fn encode_olc(o: &Olc) -> Result<Vec<u8>, Error> {
    per_encode(&olc_to(o)?)
}

type Mux = asn::OpenLogicalChannelForwardLogicalChannelParametersMultiplexParameters;
type RevMux = asn::OpenLogicalChannelReverseLogicalChannelParametersMultiplexParameters;

pub(crate) fn olc_from(o: &asn::OpenLogicalChannel) -> Result<Olc, Error> {
    let fwd = &o.forward_logical_channel_parameters;
    let fwd_h2250 = match &fwd.multiplex_parameters {
        Mux::h2250LogicalChannelParameters(p) => Some(p),
        _ => None,
    };
    let rev = o.reverse_logical_channel_parameters.as_ref().map(|r| {
        let p = match &r.multiplex_parameters {
            Some(RevMux::h2250LogicalChannelParameters(p)) => Some(p),
            _ => None,
        };
        (data_type_from(&r.data_type), p)
    });
    let addr = |p: Option<&asn::H2250LogicalChannelParameters>| {
        (
            p.and_then(|p| p.media_channel.as_ref())
                .and_then(address_from),
            p.and_then(|p| p.media_control_channel.as_ref())
                .and_then(address_from),
        )
    };
    let number = o.forward_logical_channel_number.0;
    match (data_type_from(&fwd.data_type), rev) {
        (Some((media, presentation)), rev) => {
            let (rtp, rtcp) = addr(fwd_h2250);
            let reverse = match rev {
                Some((Some((m, _)), p)) => {
                    let (r, c) = addr(p);
                    Some((m, r, c))
                }
                _ => None,
            };
            Ok(Olc {
                number,
                media,
                session_id: fwd_h2250.map_or(0, |p| p.session_id),
                payload_type: fwd_h2250.and_then(|p| p.dynamic_rtppayload_type),
                forward: true,
                rtp,
                rtcp,
                reverse,
                presentation,
            })
        }
        (None, Some((Some((media, presentation)), p))) => {
            let (rtp, rtcp) = addr(p);
            Ok(Olc {
                number,
                media,
                session_id: p.map_or(0, |p| p.session_id),
                payload_type: p.and_then(|p| p.dynamic_rtppayload_type),
                forward: false,
                rtp,
                rtcp,
                reverse: None,
                presentation,
            })
        }
        _ => Err(Error::Bad("OpenLogicalChannel without a data type")),
    }
}

pub(crate) fn olc_to(o: &Olc) -> Result<asn::OpenLogicalChannel, Error> {
    let params = h2250(o.session_id, o.rtp, o.rtcp, o.payload_type);
    let (forward, reverse) = if o.forward {
        let reverse = match &o.reverse {
            Some((m, rtp, rtcp)) => Some(asn::OpenLogicalChannelReverseLogicalChannelParameters {
                data_type: data_type_to(m, false)?,
                multiplex_parameters: Some(RevMux::h2250LogicalChannelParameters(h2250(
                    o.session_id,
                    *rtp,
                    *rtcp,
                    None,
                ))),
                reverse_logical_channel_dependency: None,
                replacement_for: None,
            }),
            None => None,
        };
        let fwd = asn::OpenLogicalChannelForwardLogicalChannelParameters {
            port_number: None,
            data_type: data_type_to(&o.media, o.presentation)?,
            multiplex_parameters: Mux::h2250LogicalChannelParameters(params),
            forward_logical_channel_dependency: None,
            replacement_for: None,
        };
        (fwd, reverse)
    } else {
        let fwd = asn::OpenLogicalChannelForwardLogicalChannelParameters {
            port_number: None,
            data_type: asn::DataType::nullData(()),
            multiplex_parameters: Mux::none(()),
            forward_logical_channel_dependency: None,
            replacement_for: None,
        };
        let rev = asn::OpenLogicalChannelReverseLogicalChannelParameters {
            data_type: data_type_to(&o.media, o.presentation)?,
            multiplex_parameters: Some(RevMux::h2250LogicalChannelParameters(params)),
            reverse_logical_channel_dependency: None,
            replacement_for: None,
        };
        (fwd, Some(rev))
    };
    Ok(asn::OpenLogicalChannel {
        forward_logical_channel_number: asn::LogicalChannelNumber(o.number.max(1)),
        forward_logical_channel_parameters: forward,
        reverse_logical_channel_parameters: reverse,
        separate_stack: None,
        encryption_sync: None,
        generic_information: None,
    })
}
