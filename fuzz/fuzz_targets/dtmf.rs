//! Fuzz target: digits from a room system. The first byte picks the
//! path: RFC 4733 telephone-events in an RTP packet (with that payload
//! type), or a SIP INFO body under one of the content types the gateway
//! reads. Whatever the bytes, a digit read is one a keypad has, and the
//! collector that turns digits into a conference ID stays bounded.

#![no_main]

use std::time::Duration;

use fedge::cvi::dtmf::{Collected, Collector, info_digit, rtp_event};
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 5] = [
    "application/dtmf-relay",
    "application/dtmf",
    "Application/DTMF-Relay; charset=utf-8",
    "text/plain",
    "",
];

fn keypad(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let mut collector = Collector::new(Duration::from_secs(3), 9);
    let mut digits = Vec::new();
    if op & 1 == 0 {
        let pt = op >> 1;
        // A packet stream: the rest cut into packets at every 0xfe byte.
        for packet in rest.split(|&b| b == 0xfe) {
            if let Some(e) = rtp_event(packet, pt) {
                assert!(keypad(e.digit), "RTP event {:?}", e.digit);
                assert_eq!(e.timestamp.to_be_bytes(), packet[4..8]);
                digits.push(e.digit);
            }
        }
    } else {
        let ct = TYPES[usize::from(op >> 1) % TYPES.len()];
        if let Some(d) = info_digit(ct, rest) {
            assert!(keypad(d), "INFO digit {d:?}");
            digits.push(d);
        }
        let _ = info_digit(&String::from_utf8_lossy(rest), b"Signal=5");
    }
    for d in digits {
        if let Collected::Entry(id) = collector.key(d) {
            assert!(id.len() <= 9 + 8 && id.bytes().all(|b| b.is_ascii_digit()));
        }
    }
    let _ = collector.timeout();
    assert!(!collector.started());
});
