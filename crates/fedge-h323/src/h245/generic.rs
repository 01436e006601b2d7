//! H.245 GenericMessage (genericRequest, -Response, -Command,
//! -Indication), the carrier of H.239's presentation token messages:
//! a message identifier (an object identifier such as 0.0.8.239.2), a sub
//! message number and parameters with standard identifiers. Owns that
//! mapping; parameters with non-standard identifiers are dropped.

use super::{oid_text, parse_oid};
use crate::Error;
use crate::asn::h245 as asn;

/// Which of the four generic messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenericKind {
    Request,
    Response,
    Command,
    Indication,
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenericValue {
    Logical,
    BooleanArray(u8),
    UnsignedMin(u16),
    UnsignedMax(u16),
    Unsigned32Min(u32),
    Unsigned32Max(u32),
    Octets(Vec<u8>),
    /// Nested generic parameters (not kept).
    Other,
}

/// A generic message: `id` is the dotted message identifier (empty when
/// it is not a standard object identifier), `params` the standard
/// parameters as (identifier, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericMessage {
    pub kind: GenericKind,
    pub id: String,
    pub sub: Option<u8>,
    pub params: Vec<(u8, GenericValue)>,
}

impl GenericMessage {
    pub(crate) fn from_asn(kind: GenericKind, g: &asn::GenericMessage) -> GenericMessage {
        let id = match &g.message_identifier {
            asn::CapabilityIdentifier::standard(o) => oid_text(o),
            _ => String::new(),
        };
        let params = g
            .message_content
            .iter()
            .flatten()
            .filter_map(|p| match &p.parameter_identifier {
                asn::ParameterIdentifier::standard(n) => Some((*n, value_from(&p.parameter_value))),
                _ => None,
            })
            .collect();
        GenericMessage {
            kind,
            id,
            sub: g.sub_message_identifier,
            params,
        }
    }

    pub(crate) fn to_asn(&self) -> Result<asn::MultimediaSystemControlMessage, Error> {
        use asn::MultimediaSystemControlMessage as M;
        let content: Vec<asn::GenericParameter> = self
            .params
            .iter()
            .map(|(n, v)| {
                Ok(asn::GenericParameter {
                    parameter_identifier: asn::ParameterIdentifier::standard((*n).min(127)),
                    parameter_value: value_to(v)?,
                    supersedes: None,
                })
            })
            .collect::<Result<_, Error>>()?;
        let g = asn::GenericMessage {
            message_identifier: asn::CapabilityIdentifier::standard(parse_oid(&self.id)?),
            sub_message_identifier: self.sub.map(|s| s.min(127)),
            message_content: (!content.is_empty()).then_some(content),
        };
        Ok(match self.kind {
            GenericKind::Request => M::request(asn::RequestMessage::genericRequest(g)),
            GenericKind::Response => M::response(asn::ResponseMessage::genericResponse(g)),
            GenericKind::Command => M::command(asn::CommandMessage::genericCommand(g)),
            GenericKind::Indication => M::indication(asn::IndicationMessage::genericIndication(g)),
        })
    }
}

fn value_from(v: &asn::ParameterValue) -> GenericValue {
    use asn::ParameterValue as P;
    match v {
        P::logical(()) => GenericValue::Logical,
        P::booleanArray(b) => GenericValue::BooleanArray(*b),
        P::unsignedMin(n) => GenericValue::UnsignedMin(*n),
        P::unsignedMax(n) => GenericValue::UnsignedMax(*n),
        P::unsigned32Min(n) => GenericValue::Unsigned32Min(*n),
        P::unsigned32Max(n) => GenericValue::Unsigned32Max(*n),
        P::octetString(o) => GenericValue::Octets(o.to_vec()),
        P::genericParameter(_) => GenericValue::Other,
    }
}

fn value_to(v: &GenericValue) -> Result<asn::ParameterValue, Error> {
    use asn::ParameterValue as P;
    Ok(match v {
        GenericValue::Logical => P::logical(()),
        GenericValue::BooleanArray(b) => P::booleanArray(*b),
        GenericValue::UnsignedMin(n) => P::unsignedMin(*n),
        GenericValue::UnsignedMax(n) => P::unsignedMax(*n),
        GenericValue::Unsigned32Min(n) => P::unsigned32Min(*n),
        GenericValue::Unsigned32Max(n) => P::unsigned32Max(*n),
        GenericValue::Octets(o) => P::octetString(o.clone().into()),
        GenericValue::Other => {
            return Err(Error::Encode("cannot encode GenericValue::Other".into()));
        }
    })
}
