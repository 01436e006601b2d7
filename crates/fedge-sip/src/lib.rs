//! SIP on the wire: URIs, header grammars, framing, parsing into a
//! byte-preserving [`message::SipMessage`], in-place editing for forwarding,
//! responses the edge originates, generic request validation, and the
//! transports (mutual TLS, TCP, UDP).
//!
//! Knows SIP and nothing else: it never asks who a partner is or whether a
//! message is allowed. Those questions belong to `federation`.

pub mod body;
pub mod edit;
pub mod framing;
pub mod grammar;
pub mod headers;
pub mod hep;
pub mod log_limit;
pub mod message;
pub mod parse;
pub mod proxy;
pub mod request;
pub mod response;
pub mod transport;
pub mod ua;
pub mod uri;
pub mod validate;

#[cfg(test)]
mod conformance;

pub use message::{Method, SipMessage};
pub use request::RequestBuilder;
pub use response::ResponseBuilder;
