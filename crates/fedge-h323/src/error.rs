//! The one error type of the crate: why bytes could not be decoded or a
//! message could not be encoded. Carries no call state and never panics.

/// Why a frame or a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A TPKT header with a version other than 3.
    #[error("TPKT version {0}, expected 3")]
    TpktVersion(u8),
    /// A TPKT length below the 4-byte header or above the decoder's maximum.
    #[error("TPKT length {0} out of range")]
    TpktLength(usize),
    /// The input ended inside a field.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A field holds a value this crate does not accept.
    #[error("bad {0}")]
    Bad(&'static str),
    /// A payload too large for its length field.
    #[error("{0} too long")]
    TooLong(&'static str),
    /// The ASN.1 PER decoder refused the bytes.
    #[error("PER decode: {0}")]
    Decode(String),
    /// The ASN.1 PER encoder refused the value.
    #[error("PER encode: {0}")]
    Encode(String),
}
