//! H.225.0 RAS (RasMessage over UDP) as far as a gatekeeper-less gateway
//! answers it: a room's gatekeeper discovery (GRQ, answered GRJ) and
//! location requests (LRQ, answered LCF or LRJ). Owns the mapping to the
//! generated types; never sends anything and never panics on input.

use std::net::SocketAddr;

use super::{
    Alias, PROTOCOL_VERSION, address_from, address_to, alias_from, alias_to, endpoint, protocol_id,
};
use crate::Error;
use crate::asn::h225 as asn;
use crate::common::{per_decode, per_encode};

/// A RAS message, simplified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ras {
    /// GatekeeperRequest.
    Grq {
        seq: u16,
        ras: Option<SocketAddr>,
        aliases: Vec<Alias>,
    },
    /// GatekeeperReject.
    Grj { seq: u16, reason: GrjReason },
    /// LocationRequest.
    Lrq {
        seq: u16,
        destination: Vec<Alias>,
        reply: Option<SocketAddr>,
    },
    /// LocationConfirm.
    Lcf {
        seq: u16,
        call_signal: SocketAddr,
        ras: SocketAddr,
    },
    /// LocationReject.
    Lrj { seq: u16, reason: LrjReason },
    /// Any other RAS message, by its ASN.1 name.
    Other(&'static str),
}

/// Why a GRQ is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrjReason {
    ResourceUnavailable,
    TerminalExcluded,
    InvalidRevision,
    Undefined,
    SecurityDenial,
    Other,
}

/// Why an LRQ is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrjReason {
    NotRegistered,
    InvalidPermission,
    RequestDenied,
    Undefined,
    SecurityDenial,
    NoRouteToDestination,
    UnallocatedNumber,
    Other,
}

/// Decodes one RAS datagram.
pub fn decode_ras(b: &[u8]) -> Result<Ras, Error> {
    use asn::RasMessage as R;
    let m: R = per_decode(b)?;
    Ok(match m {
        R::gatekeeperRequest(g) => Ras::Grq {
            seq: g.request_seq_num.0,
            ras: address_from(&g.ras_address),
            aliases: g.endpoint_alias.iter().flatten().map(alias_from).collect(),
        },
        R::gatekeeperReject(g) => {
            use asn::GatekeeperRejectReason as G;
            let reason = match g.reject_reason {
                G::resourceUnavailable(()) => GrjReason::ResourceUnavailable,
                G::terminalExcluded(()) => GrjReason::TerminalExcluded,
                G::invalidRevision(()) => GrjReason::InvalidRevision,
                G::undefinedReason(()) => GrjReason::Undefined,
                G::securityDenial(()) => GrjReason::SecurityDenial,
                _ => GrjReason::Other,
            };
            Ras::Grj {
                seq: g.request_seq_num.0,
                reason,
            }
        }
        R::locationRequest(l) => Ras::Lrq {
            seq: l.request_seq_num.0,
            destination: l.destination_info.iter().map(alias_from).collect(),
            reply: address_from(&l.reply_address),
        },
        R::locationConfirm(l) => match (
            address_from(&l.call_signal_address),
            address_from(&l.ras_address),
        ) {
            (Some(call_signal), Some(ras)) => Ras::Lcf {
                seq: l.request_seq_num.0,
                call_signal,
                ras,
            },
            _ => Ras::Other("locationConfirm"),
        },
        R::locationReject(l) => {
            use asn::LocationRejectReason as L;
            let reason = match l.reject_reason {
                L::notRegistered(()) => LrjReason::NotRegistered,
                L::invalidPermission(()) => LrjReason::InvalidPermission,
                L::requestDenied(()) => LrjReason::RequestDenied,
                L::undefinedReason(()) => LrjReason::Undefined,
                L::securityDenial(()) => LrjReason::SecurityDenial,
                L::noRouteToDestination(()) => LrjReason::NoRouteToDestination,
                L::unallocatedNumber(()) => LrjReason::UnallocatedNumber,
                _ => LrjReason::Other,
            };
            Ras::Lrj {
                seq: l.request_seq_num.0,
                reason,
            }
        }
        other => Ras::Other(ras_name(&other)),
    })
}

fn ras_name(m: &asn::RasMessage) -> &'static str {
    use asn::RasMessage as R;
    match m {
        R::gatekeeperConfirm(_) => "gatekeeperConfirm",
        R::registrationRequest(_) => "registrationRequest",
        R::registrationConfirm(_) => "registrationConfirm",
        R::registrationReject(_) => "registrationReject",
        R::unregistrationRequest(_) => "unregistrationRequest",
        R::admissionRequest(_) => "admissionRequest",
        R::disengageRequest(_) => "disengageRequest",
        R::infoRequest(_) => "infoRequest",
        R::nonStandardMessage(_) => "nonStandardMessage",
        R::unknownMessageResponse(_) => "unknownMessageResponse",
        _ => "other",
    }
}

/// Encodes a RAS message (as this gateway, product id "fedge").
pub fn encode_ras(r: &Ras) -> Result<Vec<u8>, Error> {
    use asn::RasMessage as R;
    let m = match r {
        Ras::Grq { seq, ras, aliases } => R::gatekeeperRequest(asn::GatekeeperRequest {
            request_seq_num: asn::RequestSeqNum(*seq),
            protocol_identifier: protocol_id(PROTOCOL_VERSION)?,
            non_standard_data: None,
            ras_address: address_to(ras.ok_or(Error::Bad("GRQ without a RAS address"))?),
            endpoint_type: endpoint("fedge"),
            gatekeeper_identifier: None,
            call_services: None,
            endpoint_alias: super::list(aliases.iter().filter_map(alias_to).collect()),
            alternate_endpoints: None,
            tokens: None,
            crypto_tokens: None,
            authentication_capability: None,
            algorithm_oids: None,
            integrity: None,
            integrity_check_value: None,
            supports_alt_gk: None,
            feature_set: None,
            generic_data: None,
            supports_assigned_gk: Some(false),
            assigned_gatekeeper: None,
        }),
        Ras::Grj { seq, reason } => {
            use asn::GatekeeperRejectReason as G;
            R::gatekeeperReject(asn::GatekeeperReject {
                request_seq_num: asn::RequestSeqNum(*seq),
                protocol_identifier: protocol_id(PROTOCOL_VERSION)?,
                non_standard_data: None,
                gatekeeper_identifier: None,
                reject_reason: match reason {
                    GrjReason::ResourceUnavailable => G::resourceUnavailable(()),
                    GrjReason::TerminalExcluded => G::terminalExcluded(()),
                    GrjReason::InvalidRevision => G::invalidRevision(()),
                    GrjReason::SecurityDenial => G::securityDenial(()),
                    GrjReason::Undefined | GrjReason::Other => G::undefinedReason(()),
                },
                alt_gkinfo: None,
                tokens: None,
                crypto_tokens: None,
                integrity_check_value: None,
                feature_set: None,
                generic_data: None,
            })
        }
        Ras::Lrq {
            seq,
            destination,
            reply,
        } => R::locationRequest(lrq(*seq, destination, *reply)?),
        Ras::Lcf {
            seq,
            call_signal,
            ras,
        } => R::locationConfirm(lcf(*seq, *call_signal, *ras)),
        Ras::Lrj { seq, reason } => R::locationReject(lrj(*seq, *reason)),
        Ras::Other(name) => return Err(Error::Encode(format!("cannot encode RAS {name}"))),
    };
    per_encode(&m)
}

fn lrq(
    seq: u16,
    destination: &[Alias],
    reply: Option<SocketAddr>,
) -> Result<asn::LocationRequest, Error> {
    Ok(asn::LocationRequest {
        request_seq_num: asn::RequestSeqNum(seq),
        endpoint_identifier: None,
        destination_info: destination.iter().filter_map(alias_to).collect(),
        non_standard_data: None,
        reply_address: address_to(reply.ok_or(Error::Bad("LRQ without a reply address"))?),
        source_info: None,
        can_map_alias: Some(false),
        gatekeeper_identifier: None,
        tokens: None,
        crypto_tokens: None,
        integrity_check_value: None,
        desired_protocols: None,
        desired_tunnelled_protocol: None,
        feature_set: None,
        generic_data: None,
        hop_count: None,
        circuit_info: None,
        call_identifier: None,
        band_width: None,
        source_endpoint_info: None,
        can_map_src_alias: None,
        language: None,
    })
}

fn lcf(seq: u16, call_signal: SocketAddr, ras: SocketAddr) -> asn::LocationConfirm {
    asn::LocationConfirm {
        request_seq_num: asn::RequestSeqNum(seq),
        call_signal_address: address_to(call_signal),
        ras_address: address_to(ras),
        non_standard_data: None,
        destination_info: None,
        dest_extra_call_info: None,
        destination_type: Some(endpoint("fedge")),
        remote_extension_address: None,
        alternate_endpoints: None,
        tokens: None,
        crypto_tokens: None,
        integrity_check_value: None,
        alternate_transport_addresses: None,
        supported_protocols: None,
        multiple_calls: Some(false),
        feature_set: None,
        generic_data: None,
        circuit_info: None,
        service_control: None,
        modified_src_info: None,
        band_width: None,
        language: None,
    }
}

fn lrj(seq: u16, reason: LrjReason) -> asn::LocationReject {
    use asn::LocationRejectReason as L;
    asn::LocationReject {
        request_seq_num: asn::RequestSeqNum(seq),
        reject_reason: match reason {
            LrjReason::NotRegistered => L::notRegistered(()),
            LrjReason::InvalidPermission => L::invalidPermission(()),
            LrjReason::RequestDenied => L::requestDenied(()),
            LrjReason::SecurityDenial => L::securityDenial(()),
            LrjReason::NoRouteToDestination => L::noRouteToDestination(()),
            LrjReason::UnallocatedNumber => L::unallocatedNumber(()),
            LrjReason::Undefined | LrjReason::Other => L::undefinedReason(()),
        },
        non_standard_data: None,
        alt_gkinfo: None,
        tokens: None,
        crypto_tokens: None,
        integrity_check_value: None,
        feature_set: None,
        generic_data: None,
        service_control: None,
    }
}
