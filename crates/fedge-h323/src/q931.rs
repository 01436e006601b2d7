//! Q.931 messages as H.225.0 carries them over TPKT: protocol
//! discriminator 8, a 2-byte call reference (15-bit value and the "from
//! destination" flag), the message type, then information elements. Owns
//! the byte layout of the IEs H.323 uses (bearer capability, cause,
//! display, calling and called party numbers, user-user with the H.225.0
//! PER bytes); keeps any other IE raw. Never interprets the H.225.0 bytes
//! (that is `h225`) and never panics on hostile input.

use crate::Error;

const DISCRIMINATOR: u8 = 0x08;
const IE_BEARER: u8 = 0x04;
const IE_CAUSE: u8 = 0x08;
const IE_DISPLAY: u8 = 0x28;
const IE_CALLING: u8 = 0x6C;
const IE_CALLED: u8 = 0x70;
const IE_USER_USER: u8 = 0x7E;
/// The user-user protocol discriminator of X.208/X.209 coded user
/// information, which H.225.0 uses.
const UU_DISCRIMINATOR: u8 = 0x05;
/// The type/plan octet written before numbers: unknown type, ISDN/E.164 plan.
const NUMBER_TYPE_PLAN: u8 = 0x81;

/// The message types H.225.0 uses, and any other as its byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Alerting,
    CallProceeding,
    Connect,
    Setup,
    ReleaseComplete,
    Facility,
    Progress,
    Information,
    Status,
    StatusEnquiry,
    Notify,
    Other(u8),
}

const TYPES: [(MessageType, u8); 11] = [
    (MessageType::Alerting, 0x01),
    (MessageType::CallProceeding, 0x02),
    (MessageType::Progress, 0x03),
    (MessageType::Setup, 0x05),
    (MessageType::Connect, 0x07),
    (MessageType::ReleaseComplete, 0x5A),
    (MessageType::Facility, 0x62),
    (MessageType::Notify, 0x6E),
    (MessageType::StatusEnquiry, 0x75),
    (MessageType::Information, 0x7B),
    (MessageType::Status, 0x7D),
];

impl MessageType {
    /// The message type octet.
    pub fn code(self) -> u8 {
        match self {
            MessageType::Other(b) => b,
            known => TYPES
                .iter()
                .find(|(t, _)| *t == known)
                .map_or(0, |(_, c)| *c),
        }
    }

    /// The type of a message type octet.
    pub fn from_code(b: u8) -> MessageType {
        TYPES
            .iter()
            .find(|(_, c)| *c == b)
            .map_or(MessageType::Other(b), |(t, _)| *t)
    }
}

/// One Q.931 message with the IEs H.323 uses decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The call reference value (15 bits).
    pub call_ref: u16,
    /// The call reference flag: set in messages sent by the side that did
    /// not allocate the call reference (the called side).
    pub from_destination: bool,
    pub kind: MessageType,
    /// Bearer capability contents, raw.
    pub bearer: Option<Vec<u8>>,
    /// Cause value (Q.850, 7 bits).
    pub cause: Option<u8>,
    pub display: Option<String>,
    /// Calling party number digits.
    pub calling: Option<String>,
    /// Called party number digits.
    pub called: Option<String>,
    /// The H.225.0 PER bytes of the user-user IE (after its protocol
    /// discriminator).
    pub user_user: Option<Vec<u8>>,
    /// Any other IE as (identifier, contents), in order; a single-octet IE
    /// (identifier with the high bit set) has empty contents.
    pub other: Vec<(u8, Vec<u8>)>,
}

impl Message {
    /// A message with no IEs.
    pub fn new(kind: MessageType, call_ref: u16, from_destination: bool) -> Message {
        Message {
            call_ref: call_ref & 0x7FFF,
            from_destination,
            kind,
            bearer: None,
            cause: None,
            display: None,
            calling: None,
            called: None,
            user_user: None,
            other: Vec::new(),
        }
    }

    /// Decodes one message (a whole TPKT payload).
    pub fn decode(b: &[u8]) -> Result<Message, Error> {
        let (&disc, rest) = b.split_first().ok_or(Error::Truncated("Q.931 header"))?;
        if disc != DISCRIMINATOR {
            return Err(Error::Bad("Q.931 protocol discriminator"));
        }
        let (&crl, rest) = rest.split_first().ok_or(Error::Truncated("Q.931 header"))?;
        let crl = usize::from(crl & 0x0F);
        if crl > 2 {
            return Err(Error::Bad("Q.931 call reference length"));
        }
        let cr = rest.get(..crl).ok_or(Error::Truncated("call reference"))?;
        let (flag, value) = match cr {
            [a, b] => (a & 0x80 != 0, (u16::from(a & 0x7F) << 8) | u16::from(*b)),
            [a] => (a & 0x80 != 0, u16::from(a & 0x7F)),
            _ => (false, 0),
        };
        let rest = &rest[crl..];
        let (&kind, mut ies) = rest.split_first().ok_or(Error::Truncated("message type"))?;
        let mut m = Message::new(MessageType::from_code(kind & 0x7F), value, flag);
        while let Some((&id, after)) = ies.split_first() {
            if id & 0x80 != 0 {
                m.other.push((id, Vec::new()));
                ies = after;
                continue;
            }
            let (len, after) = if id == IE_USER_USER {
                let l = after.get(..2).ok_or(Error::Truncated("IE length"))?;
                (usize::from(u16::from_be_bytes([l[0], l[1]])), &after[2..])
            } else {
                let (&l, a) = after.split_first().ok_or(Error::Truncated("IE length"))?;
                (usize::from(l), a)
            };
            let body = after.get(..len).ok_or(Error::Truncated("IE"))?;
            m.set_ie(id, body)?;
            ies = &after[len..];
        }
        Ok(m)
    }

    fn set_ie(&mut self, id: u8, body: &[u8]) -> Result<(), Error> {
        match id {
            IE_BEARER => self.bearer = Some(body.to_vec()),
            IE_CAUSE => self.cause = Some(decode_cause(body)?),
            IE_DISPLAY => self.display = Some(String::from_utf8_lossy(body).into_owned()),
            IE_CALLING => self.calling = Some(decode_number(body, true)?),
            IE_CALLED => self.called = Some(decode_number(body, false)?),
            IE_USER_USER => match body.split_first() {
                Some((&UU_DISCRIMINATOR, pdu)) => self.user_user = Some(pdu.to_vec()),
                Some(_) => return Err(Error::Bad("user-user protocol discriminator")),
                None => return Err(Error::Truncated("user-user")),
            },
            _ => self.other.push((id, body.to_vec())),
        }
        Ok(())
    }

    /// Encodes the message; IEs go in ascending identifier order. A value
    /// longer than its IE's length field allows is cut to fit.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![DISCRIMINATOR, 2];
        let cr = (self.call_ref & 0x7FFF) | if self.from_destination { 0x8000 } else { 0 };
        out.extend_from_slice(&cr.to_be_bytes());
        out.push(self.kind.code() & 0x7F);
        let mut ies: Vec<(u8, Vec<u8>)> = Vec::new();
        if let Some(b) = &self.bearer {
            ies.push((IE_BEARER, b.clone()));
        }
        if let Some(c) = self.cause {
            ies.push((IE_CAUSE, vec![0x80, 0x80 | (c & 0x7F)]));
        }
        if let Some(d) = &self.display {
            ies.push((IE_DISPLAY, d.as_bytes().to_vec()));
        }
        for (id, num) in [(IE_CALLING, &self.calling), (IE_CALLED, &self.called)] {
            if let Some(n) = num {
                let mut v = vec![NUMBER_TYPE_PLAN];
                v.extend(n.bytes().filter(u8::is_ascii));
                ies.push((id, v));
            }
        }
        if let Some(uu) = &self.user_user {
            let mut v = vec![UU_DISCRIMINATOR];
            v.extend_from_slice(uu);
            ies.push((IE_USER_USER, v));
        }
        ies.extend(self.other.iter().cloned());
        ies.sort_by_key(|(id, _)| *id);
        for (id, mut body) in ies {
            out.push(id);
            if id & 0x80 != 0 {
                continue;
            }
            if id == IE_USER_USER {
                body.truncate(usize::from(u16::MAX));
                out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
            } else {
                body.truncate(usize::from(u8::MAX));
                out.push(u8::try_from(body.len()).unwrap_or(u8::MAX));
            }
            out.extend_from_slice(&body);
        }
        out
    }
}

/// The cause value: octet 3 (coding standard, location; octet 3a when its
/// extension bit is clear), then octet 4 with the value.
fn decode_cause(b: &[u8]) -> Result<u8, Error> {
    let (&o3, rest) = b.split_first().ok_or(Error::Truncated("cause"))?;
    let rest = if o3 & 0x80 == 0 {
        rest.get(1..).ok_or(Error::Truncated("cause"))?
    } else {
        rest
    };
    rest.first()
        .map(|v| v & 0x7F)
        .ok_or(Error::Truncated("cause"))
}

/// The digits of a party number: octet 3 (type, plan; for a calling
/// number, octet 3a follows when its extension bit is clear), then IA5.
fn decode_number(b: &[u8], calling: bool) -> Result<String, Error> {
    let (&o3, rest) = b.split_first().ok_or(Error::Truncated("party number"))?;
    let digits = if calling && o3 & 0x80 == 0 {
        rest.get(1..).ok_or(Error::Truncated("party number"))?
    } else {
        rest
    };
    Ok(String::from_utf8_lossy(digits).into_owned())
}

#[cfg(test)]
mod tests;
