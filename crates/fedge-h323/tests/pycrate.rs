//! The generated ASN.1 types against pycrate: each fixture (aligned PER
//! made by tools/fixtures.py) decodes and re-encodes to the same bytes.

use fedge_h323::asn::{h225, h245};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture file");
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn round_trip<T: rasn::Decode + rasn::Encode + std::fmt::Debug + PartialEq>(name: &str) -> T {
    let bytes = fixture(name);
    let value: T = rasn::aper::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again = rasn::aper::encode(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
    if name == "olc_ack" {
        // The module rasn-compiler read is a newer H.245 than pycrate's:
        // OpenLogicalChannelAck has 5 extension additions there
        // (dtlsSecurityCapability), 4 in pycrate's, and each encoder writes
        // its own count in the extension bitmap's length (octet 4: 0x08,
        // n-1 = 4, where pycrate has 0x06, n-1 = 3); the bitmaps agree on
        // what is present and tshark reads both alike.
        let mut ours = bytes.clone();
        ours[4] = 0x08;
        assert_eq!(again, ours, "{name}: {value:?}");
        return value;
    }
    assert_eq!(again, bytes, "{name} re-encodes differently: {value:?}");
    value
}

#[test]
fn h225_call_signalling() {
    for name in ["setup_faststart", "connect", "release_complete"] {
        round_trip::<h225::H323UserInformation>(name);
    }
}

#[test]
fn h225_ras() {
    for name in ["grq", "lrq"] {
        round_trip::<h225::RasMessage>(name);
    }
}

#[test]
fn h245_control() {
    for name in [
        "tcs",
        "msd",
        "olc",
        "olc_ack",
        "uii_alnum",
        "uii_signal",
        "end_session",
    ] {
        round_trip::<h245::MultimediaSystemControlMessage>(name);
    }
    round_trip::<h245::OpenLogicalChannel>("olc_g711");
}
