//! H.323 for the CVI gateway: the wire formats a room system speaks when
//! it calls over H.323 (TPKT and Q.931 framing, H.225.0 call signalling
//! and RAS, H.245 control), as typed messages in ASN.1 aligned PER.
//!
//! It owns encoding and decoding only. It never opens a socket, never
//! keeps call state, and never decides anything about a call: that is the
//! gateway's (fedge's `cvi::h323`). Decoding hostile bytes returns an
//! error, never panics.

pub mod asn;
mod common;
mod error;
pub mod h225;
pub mod h245;
pub mod q931;
pub mod tpkt;

pub use error::Error;
