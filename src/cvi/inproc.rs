//! The in-process SIP leg that H.323 calls (`cvi::h323`) and browser calls
//! (`cvi::webrtc`) use to reach the gateway (D196/D197, D240): reading
//! back what the gateway wrote on the in-process connection, and handing
//! a message of ours to the gateway as if it came from the caller's real
//! TCP address on that connection.
//!
//! It owns no state and never decides anything about a call; it never
//! marks a source trusted (the gateway decides that from the address and
//! the connection, as for any room).

use std::net::SocketAddr;

use bytes::Bytes;

use crate::cvi::gateway::Gateway;
use crate::role::Role;
use crate::sip::framing::{DatagramItem, parse_datagram};
use crate::sip::message::SipMessage;
use crate::sip::parse::Limits;
use crate::sip::transport::{Connection, Handler, Inbound, Source, Transport};

/// One whole SIP message written on an in-process connection (each chunk
/// is one message), parsed with the SIP stack's own parser.
pub fn parse(b: Bytes) -> Option<SipMessage> {
    match parse_datagram(b, &Limits::default()) {
        DatagramItem::Message(m) => Some(m),
        _ => None,
    }
}

/// Hands `b`, a SIP message of ours, to the gateway as received on `conn`
/// from `remote` (the caller's real address) at `local`. False when it
/// did not parse (a bug of ours: the caller logs it).
pub async fn to_gateway(
    gateway: &Gateway,
    conn: &Connection,
    remote: SocketAddr,
    local: SocketAddr,
    b: Bytes,
) -> bool {
    let Some(msg) = parse(b) else {
        return false;
    };
    let source = Source {
        tag: Role::Cvi.tag(),
        transport: Transport::Tcp,
        remote,
        local,
        identity: None,
        conn: Some(conn.clone()),
        udp: None,
        capture: None,
    };
    gateway.on_message(Inbound { msg, source }).await;
    true
}
