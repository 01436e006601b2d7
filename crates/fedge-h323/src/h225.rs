//! H.225.0 call signalling (H323-UserInformation, the Q.931 user-user
//! bytes) and RAS, simplified both ways for the gateway: the message body
//! with what a gateway needs, the call identifier, H.245 tunnelling and
//! fast start (the OLC bytes, for `h245::decode_olc`). Owns the mapping
//! between these and the generated ASN.1 types; never keeps call state,
//! never panics on hostile bytes.

use std::net::SocketAddr;

use rasn::types::{FixedOctetString, OctetString, SequenceOf};

use crate::Error;
use crate::asn::h225 as asn;
use crate::common::{bmp, bmp_to_string, ia5, octets, oid, per_decode, per_encode, socket};

mod ras;
mod reasons;

pub use ras::{GrjReason, LrjReason, Ras, decode_ras, encode_ras};
pub use reasons::{FacilityReason, ReleaseReason};

/// The H.225.0 version this gateway announces (protocolIdentifier
/// 0.0.8.2250.0.N) outside a Setup.
pub const PROTOCOL_VERSION: u8 = 4;

/// One H.225.0 call signalling message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub body: Body,
    pub call_id: Option<[u8; 16]>,
    pub h245_tunnelling: bool,
    /// Tunnelled H.245 messages (PER bytes of each).
    pub h245_control: Vec<Vec<u8>>,
    /// Fast start: OpenLogicalChannel PER bytes.
    pub fast_start: Vec<Vec<u8>>,
    pub h245_address: Option<SocketAddr>,
}

impl Signal {
    /// A signal with `body` and nothing else.
    pub fn new(body: Body) -> Signal {
        Signal {
            body,
            call_id: None,
            h245_tunnelling: false,
            h245_control: Vec::new(),
            fast_start: Vec::new(),
            h245_address: None,
        }
    }
}

/// The H.323 message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Setup(Setup),
    CallProceeding,
    Alerting,
    Connect {
        conference_id: [u8; 16],
    },
    ReleaseComplete {
        reason: Option<ReleaseReason>,
    },
    Facility {
        reason: FacilityReason,
    },
    Progress,
    Information,
    Status,
    Empty,
    /// A body the gateway does not handle, by its ASN.1 name.
    Other(&'static str),
}

/// What a Setup says about the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub conference_id: [u8; 16],
    pub destination: Vec<Alias>,
    pub source: Vec<Alias>,
    /// The caller's vendor product id, as text.
    pub vendor: Option<String>,
    pub media_wait_for_connect: bool,
    pub source_call_signal: Option<SocketAddr>,
    /// N of the protocolIdentifier 0.0.8.2250.0.N.
    pub protocol_version: u8,
}

/// An H.225.0 AliasAddress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alias {
    Dialled(String),
    H323Id(String),
    Url(String),
    Email(String),
    Transport(SocketAddr),
    /// A party number's digits.
    Party(String),
    Other,
}

/// Decodes the user-user bytes of a Q.931 message.
pub fn decode(uu: &[u8]) -> Result<Signal, Error> {
    let info: asn::H323UserInformation = per_decode(uu)?;
    let pdu = info.h323_uu_pdu;
    let mut s = Signal::new(Body::Empty);
    s.h245_tunnelling = pdu.h245_tunneling.unwrap_or(false);
    s.h245_control = octet_list(pdu.h245_control);
    use asn::H323UUPDUH323MessageBody as B;
    let (body, call_id, fast_start, h245) = match pdu.h323_message_body {
        B::setup(u) => (
            Body::Setup(setup_from(&u)),
            u.call_identifier,
            u.fast_start,
            u.h245_address,
        ),
        B::callProceeding(u) => (
            Body::CallProceeding,
            u.call_identifier,
            u.fast_start,
            u.h245_address,
        ),
        B::alerting(u) => (
            Body::Alerting,
            u.call_identifier,
            u.fast_start,
            u.h245_address,
        ),
        B::connect(u) => (
            Body::Connect {
                conference_id: *u.conference_id.0.0,
            },
            u.call_identifier,
            u.fast_start,
            u.h245_address,
        ),
        B::releaseComplete(u) => (
            Body::ReleaseComplete {
                reason: u.reason.as_ref().map(ReleaseReason::from_asn),
            },
            u.call_identifier,
            None,
            None,
        ),
        B::facility(u) => (
            Body::Facility {
                reason: FacilityReason::from_asn(&u.reason),
            },
            u.call_identifier,
            u.fast_start,
            u.h245_address,
        ),
        B::progress(u) => (
            Body::Progress,
            Some(u.call_identifier),
            u.fast_start,
            u.h245_address,
        ),
        B::information(u) => (Body::Information, u.call_identifier, u.fast_start, None),
        B::status(u) => (Body::Status, Some(u.call_identifier), None, None),
        B::empty(()) => (Body::Empty, None, None, None),
        B::statusInquiry(u) => (
            Body::Other("statusInquiry"),
            Some(u.call_identifier),
            None,
            None,
        ),
        B::setupAcknowledge(u) => (
            Body::Other("setupAcknowledge"),
            Some(u.call_identifier),
            None,
            None,
        ),
        B::notify(u) => (Body::Other("notify"), Some(u.call_identifier), None, None),
    };
    s.body = body;
    s.call_id = call_id.map(|c| *c.guid.0);
    s.fast_start = octet_list(fast_start);
    s.h245_address = h245.as_ref().and_then(address_from);
    Ok(s)
}

fn octet_list(l: Option<SequenceOf<OctetString>>) -> Vec<Vec<u8>> {
    l.unwrap_or_default()
        .into_iter()
        .map(|o| o.to_vec())
        .collect()
}

fn setup_from(u: &asn::SetupUUIE) -> Setup {
    let aliases = |l: &Option<SequenceOf<asn::AliasAddress>>| {
        l.iter().flatten().map(alias_from).collect::<Vec<_>>()
    };
    let vendor = u.source_info.vendor.as_ref().and_then(|v| {
        v.product_id.as_ref().map(|p| {
            String::from_utf8_lossy(p)
                .trim_end_matches('\0')
                .to_string()
        })
    });
    let version = u.protocol_identifier.0.last().copied().unwrap_or(0);
    Setup {
        conference_id: *u.conference_id.0.0,
        destination: aliases(&u.destination_address),
        source: aliases(&u.source_address),
        vendor,
        media_wait_for_connect: u.media_wait_for_connect.unwrap_or(false),
        source_call_signal: u.source_call_signal_address.as_ref().and_then(address_from),
        protocol_version: u8::try_from(version).unwrap_or(u8::MAX),
    }
}

/// A socket address of an H.225.0 TransportAddress (IPv4 or IPv6).
pub fn address_from(t: &asn::TransportAddress) -> Option<SocketAddr> {
    match t {
        asn::TransportAddress::ipAddress(a) => socket(&a.ip, a.port),
        asn::TransportAddress::ip6Address(a) => socket(&a.ip, a.port),
        _ => None,
    }
}

/// An H.225.0 TransportAddress of a socket address.
pub fn address_to(a: SocketAddr) -> asn::TransportAddress {
    match a {
        SocketAddr::V4(_) => asn::TransportAddress::ipAddress(asn::TransportAddressIpAddress {
            ip: octets(a),
            port: a.port(),
        }),
        SocketAddr::V6(_) => asn::TransportAddress::ip6Address(asn::TransportAddressIp6Address {
            ip: octets(a),
            port: a.port(),
        }),
    }
}

pub(crate) fn alias_from(a: &asn::AliasAddress) -> Alias {
    use asn::AliasAddress as A;
    match a {
        A::dialedDigits(d) => Alias::Dialled(d.to_string()),
        A::h323_ID(b) => Alias::H323Id(bmp_to_string(b)),
        A::url_ID(u) => Alias::Url(u.to_string()),
        A::email_ID(e) => Alias::Email(e.to_string()),
        A::transportID(t) => address_from(t).map_or(Alias::Other, Alias::Transport),
        A::partyNumber(asn::PartyNumber::e164Number(p)) => {
            Alias::Party(p.public_number_digits.0.to_string())
        }
        A::partyNumber(_) | A::mobileUIM(_) | A::isupNumber(_) => Alias::Other,
    }
}

/// The ASN.1 alias of `a`; None for `Alias::Other` and for text its type
/// cannot carry (non-ASCII URL, a dialled string with other than digits).
pub(crate) fn alias_to(a: &Alias) -> Option<asn::AliasAddress> {
    use asn::AliasAddress as A;
    let digits = |d: &str| {
        (!d.is_empty()
            && d.len() <= 128
            && d.bytes().all(|c| c.is_ascii_digit() || b"#*,".contains(&c)))
        .then(|| ia5(d).ok())
        .flatten()
    };
    let sized = |s: &str, max: usize| {
        (!s.is_empty() && s.len() <= max)
            .then(|| ia5(s).ok())
            .flatten()
    };
    Some(match a {
        Alias::Dialled(d) => A::dialedDigits(digits(d)?),
        Alias::H323Id(h) if !h.is_empty() && h.chars().count() <= 256 => A::h323_ID(bmp(h).ok()?),
        Alias::Url(u) => A::url_ID(sized(u, 512)?),
        Alias::Email(e) => A::email_ID(sized(e, 512)?),
        Alias::Transport(t) => A::transportID(address_to(*t)),
        Alias::Party(p) => A::partyNumber(asn::PartyNumber::e164Number(asn::PublicPartyNumber {
            public_type_of_number: asn::PublicTypeOfNumber::unknown(()),
            public_number_digits: asn::NumberDigits(digits(p)?),
        })),
        Alias::H323Id(_) | Alias::Other => return None,
    })
}

fn protocol_id(version: u8) -> Result<asn::ProtocolIdentifier, Error> {
    Ok(asn::ProtocolIdentifier(oid(&[
        0,
        0,
        8,
        2250,
        0,
        u32::from(version.max(1)),
    ])?))
}

fn guid(b: [u8; 16]) -> asn::GloballyUniqueID {
    asn::GloballyUniqueID(FixedOctetString::new(b))
}

/// This gateway as an H.225.0 endpoint: a gateway with `vendor` as its
/// product id.
pub(crate) fn endpoint(vendor: &str) -> asn::EndpointType {
    let product: Vec<u8> = vendor.bytes().take(256).collect();
    let product = if product.is_empty() {
        b"fedge".to_vec()
    } else {
        product
    };
    asn::EndpointType {
        non_standard_data: None,
        vendor: Some(asn::VendorIdentifier {
            vendor: asn::H221NonStandard {
                t35_country_code: 181,
                t35_extension: 0,
                manufacturer_code: 0,
            },
            product_id: Some(OctetString::from(product)),
            version_id: Some(OctetString::from(
                env!("CARGO_PKG_VERSION").as_bytes().to_vec(),
            )),
            enterprise_number: None,
        }),
        gatekeeper: None,
        gateway: Some(asn::GatewayInfo {
            protocol: None,
            non_standard_data: None,
        }),
        mcu: None,
        terminal: None,
        mc: false,
        undefined_node: false,
        set: None,
        supported_tunnelled_protocols: None,
    }
}

fn list<T>(v: Vec<T>) -> Option<SequenceOf<T>> {
    (!v.is_empty()).then_some(v)
}

/// Encodes `s` as this gateway (vendor product id `vendor`) would send it.
pub fn encode(s: &Signal, vendor: &str) -> Result<Vec<u8>, Error> {
    let cid = asn::CallIdentifier {
        guid: guid(s.call_id.unwrap_or([0; 16])),
    };
    let call_id = Some(cid.clone());
    let fast: Vec<OctetString> = s
        .fast_start
        .iter()
        .map(|b| OctetString::from(b.clone()))
        .collect();
    let fast_start = list(fast);
    let h245 = s.h245_address.map(address_to);
    let pid = protocol_id(PROTOCOL_VERSION)?;
    use asn::H323UUPDUH323MessageBody as B;
    let body = match &s.body {
        Body::Setup(u) => B::setup(encode_setup(u, vendor, call_id, fast_start, h245)?),
        Body::CallProceeding => B::callProceeding(asn::CallProceedingUUIE {
            protocol_identifier: pid,
            destination_info: endpoint(vendor),
            h245_address: h245,
            call_identifier: call_id,
            h245_security_mode: None,
            tokens: None,
            crypto_tokens: None,
            fast_start,
            multiple_calls: Some(false),
            maintain_connection: Some(false),
            fast_connect_refused: None,
            feature_set: None,
        }),
        Body::Alerting => B::alerting(asn::AlertingUUIE {
            protocol_identifier: pid,
            destination_info: endpoint(vendor),
            h245_address: h245,
            call_identifier: call_id,
            h245_security_mode: None,
            tokens: None,
            crypto_tokens: None,
            fast_start,
            multiple_calls: Some(false),
            maintain_connection: Some(false),
            alerting_address: None,
            presentation_indicator: None,
            screening_indicator: None,
            fast_connect_refused: None,
            service_control: None,
            capacity: None,
            feature_set: None,
            display_name: None,
        }),
        Body::Connect { conference_id } => B::connect(asn::ConnectUUIE {
            protocol_identifier: pid,
            h245_address: h245,
            destination_info: endpoint(vendor),
            conference_id: asn::ConferenceIdentifier(guid(*conference_id)),
            call_identifier: call_id,
            h245_security_mode: None,
            tokens: None,
            crypto_tokens: None,
            fast_start,
            multiple_calls: Some(false),
            maintain_connection: Some(false),
            language: None,
            connected_address: None,
            presentation_indicator: None,
            screening_indicator: None,
            fast_connect_refused: None,
            service_control: None,
            capacity: None,
            feature_set: None,
            display_name: None,
        }),
        Body::ReleaseComplete { reason } => B::releaseComplete(asn::ReleaseCompleteUUIE {
            protocol_identifier: pid,
            reason: reason.map(ReleaseReason::to_asn),
            call_identifier: call_id,
            tokens: None,
            crypto_tokens: None,
            busy_address: None,
            presentation_indicator: None,
            screening_indicator: None,
            capacity: None,
            service_control: None,
            feature_set: None,
            destination_info: None,
            display_name: None,
        }),
        Body::Facility { reason } => {
            B::facility(encode_facility(*reason, pid, call_id, fast_start, h245))
        }
        Body::Progress => B::progress(asn::ProgressUUIE {
            protocol_identifier: pid,
            destination_info: endpoint(vendor),
            h245_address: h245,
            call_identifier: cid.clone(),
            h245_security_mode: None,
            tokens: None,
            crypto_tokens: None,
            fast_start,
            multiple_calls: Some(false),
            maintain_connection: Some(false),
            fast_connect_refused: None,
        }),
        Body::Information => B::information(asn::InformationUUIE {
            protocol_identifier: pid,
            call_identifier: call_id,
            tokens: None,
            crypto_tokens: None,
            fast_start,
            fast_connect_refused: None,
            circuit_info: None,
        }),
        Body::Status => B::status(asn::StatusUUIE {
            protocol_identifier: pid,
            call_identifier: cid.clone(),
            tokens: None,
            crypto_tokens: None,
        }),
        Body::Empty => B::empty(()),
        Body::Other(name) => return Err(Error::Encode(format!("cannot encode an H.225.0 {name}"))),
    };
    let control: Vec<OctetString> = s
        .h245_control
        .iter()
        .map(|b| OctetString::from(b.clone()))
        .collect();
    let pdu = asn::H323UUPDU {
        h323_message_body: body,
        non_standard_data: None,
        h4501_supplementary_service: None,
        h245_tunneling: Some(s.h245_tunnelling),
        h245_control: list(control),
        non_standard_control: None,
        call_linkage: None,
        tunnelled_signalling_message: None,
        provisional_resp_to_h245_tunneling: None,
        stimulus_control: None,
        generic_data: None,
    };
    per_encode(&asn::H323UserInformation {
        h323_uu_pdu: pdu,
        user_data: None,
    })
}

fn encode_facility(
    reason: FacilityReason,
    pid: asn::ProtocolIdentifier,
    call_id: Option<asn::CallIdentifier>,
    fast_start: Option<SequenceOf<OctetString>>,
    h245: Option<asn::TransportAddress>,
) -> asn::FacilityUUIE {
    asn::FacilityUUIE {
        protocol_identifier: pid,
        alternative_address: None,
        alternative_alias_address: None,
        conference_id: None,
        reason: reason.to_asn(),
        call_identifier: call_id,
        dest_extra_call_info: None,
        remote_extension_address: None,
        tokens: None,
        crypto_tokens: None,
        conferences: None,
        h245_address: h245,
        fast_start,
        multiple_calls: Some(false),
        maintain_connection: Some(false),
        fast_connect_refused: None,
        service_control: None,
        circuit_info: None,
        feature_set: None,
        destination_info: None,
        h245_security_mode: None,
    }
}

fn encode_setup(
    u: &Setup,
    vendor: &str,
    call_id: Option<asn::CallIdentifier>,
    fast_start: Option<SequenceOf<OctetString>>,
    h245: Option<asn::TransportAddress>,
) -> Result<asn::SetupUUIE, Error> {
    let aliases = |l: &[Alias]| list(l.iter().filter_map(alias_to).collect());
    Ok(asn::SetupUUIE {
        protocol_identifier: protocol_id(u.protocol_version)?,
        h245_address: h245,
        source_address: aliases(&u.source),
        source_info: endpoint(vendor),
        destination_address: aliases(&u.destination),
        dest_call_signal_address: None,
        dest_extra_call_info: None,
        dest_extra_crv: None,
        active_mc: false,
        conference_id: asn::ConferenceIdentifier(guid(u.conference_id)),
        conference_goal: asn::SetupUUIEConferenceGoal::create(()),
        call_services: None,
        call_type: asn::CallType::pointToPoint(()),
        source_call_signal_address: u.source_call_signal.map(address_to),
        remote_extension_address: None,
        call_identifier: call_id,
        h245_security_capability: None,
        tokens: None,
        crypto_tokens: None,
        fast_start,
        media_wait_for_connect: Some(u.media_wait_for_connect),
        can_overlap_send: Some(false),
        endpoint_identifier: None,
        multiple_calls: Some(false),
        maintain_connection: Some(false),
        connection_parameters: None,
        language: None,
        presentation_indicator: None,
        screening_indicator: None,
        service_control: None,
        symmetric_operation_required: None,
        capacity: None,
        circuit_info: None,
        desired_protocols: None,
        needed_features: None,
        desired_features: None,
        supported_features: None,
        parallel_h245_control: None,
        additional_source_addresses: None,
        hop_count: None,
        display_name: None,
    })
}

#[cfg(test)]
mod tests;
