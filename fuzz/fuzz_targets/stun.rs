//! Fuzz target: STUN as the relay's ICE-lite agent reads it. Any packet
//! on a media port goes through `is_stun` and `parse_binding_request`; a
//! request read is checked with the relay's password (which a fuzzer
//! cannot know, so it must not verify unless it was made with it), and
//! the answer the relay would send must carry the sender's address and
//! verify with the password it was made with.

#![no_main]

use std::net::SocketAddr;

use fedge_media::stun;
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"relaypasswordrelaypassword";

fuzz_target!(|data: &[u8]| {
    let _ = stun::mapped_address(data);
    let _ = stun::response_verifies(data, KEY);
    if !stun::is_stun(data) {
        assert!(stun::parse_binding_request(data).is_none());
        return;
    }
    let Some(req) = stun::parse_binding_request(data) else {
        return;
    };
    let _ = req.ufrags();
    let _ = req.verify(data, b"");
    let _ = req.verify(data, KEY);
    let from: SocketAddr = if data.len() % 2 == 0 {
        SocketAddr::from(([198, 51, 100, data[19]], u16::from(data[18]) << 8 | 7))
    } else {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(data[19])], 5004))
    };
    let ok = stun::binding_success(&req.transaction, from, KEY);
    assert_eq!(stun::mapped_address(&ok), Some(from));
    assert!(stun::response_verifies(&ok, KEY));
    assert!(!stun::response_verifies(&ok, b"another password"));
    assert!(
        stun::parse_binding_request(&ok).is_none(),
        "a response is no request"
    );
    let err = stun::binding_error(&req.transaction, 401, "Unauthorized");
    assert!(stun::is_stun(&err) && stun::parse_binding_request(&err).is_none());
});
