//! Fuzz target: H.225.0 call signalling and RAS as the H.323 gateway reads
//! them. The bytes are a TCP stream cut into TPKT frames, each frame a
//! Q.931 message whose user-user IE goes through `h225::decode`, and the
//! fast start elements through `h245::decode_olc`; the same bytes are
//! also one RAS datagram. Whatever decodes must encode again without a
//! panic, and what the encoder writes must decode.

#![no_main]

use bytes::BytesMut;
use fedge_h323::{h225, h245, q931, tpkt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ras) = h225::decode_ras(data) {
        if let Ok(b) = h225::encode_ras(&ras) {
            assert!(h225::decode_ras(&b).is_ok(), "own RAS encoding decodes");
        }
    }
    signal(data);
    let mut decoder = tpkt::Decoder::new(4096);
    let mut buf = BytesMut::from(data);
    for _ in 0..64 {
        let Ok(Some(frame)) = decoder.decode(&mut buf) else { break };
        let Ok(m) = q931::Message::decode(&frame) else { continue };
        assert!(q931::Message::decode(&m.encode()).is_ok(), "own Q.931 encoding decodes");
        if let Some(uu) = &m.user_user {
            signal(uu);
        }
    }
});

fn signal(uu: &[u8]) {
    let Ok(s) = h225::decode(uu) else { return };
    for olc in &s.fast_start {
        if let Ok(o) = h245::decode_olc(olc) {
            if let Ok(b) = h245::encode_olc(&o) {
                assert!(h245::decode_olc(&b).is_ok(), "own OLC encoding decodes");
            }
        }
    }
    if let Ok(b) = h225::encode(&s, "fedge") {
        assert!(h225::decode(&b).is_ok(), "own H.225.0 encoding decodes");
    }
}
