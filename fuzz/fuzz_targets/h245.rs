//! Fuzz target: H.245 as the H.323 gateway reads it (from its H.245 TCP
//! connection or tunnelled in H.225.0): `h245::decode` of a message and
//! `h245::decode_olc` of a fast start element. Whatever decodes must
//! encode again without a panic, and what the encoder writes must decode
//! to the same simplified value.

#![no_main]

use fedge_h323::h245;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = h245::decode(data) {
        if let Ok(b) = h245::encode(&c) {
            let again = h245::decode(&b);
            assert!(again.is_ok(), "own H.245 encoding decodes: {c:?}");
        }
    }
    if let Ok(o) = h245::decode_olc(data) {
        if let Ok(b) = h245::encode_olc(&o) {
            assert!(h245::decode_olc(&b).is_ok(), "own OLC encoding decodes: {o:?}");
        }
    }
});
