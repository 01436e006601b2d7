//! Fuzz target: a browser's SDP offer on the WebRTC join path (issue 20).
//! Any text is checked without panicking; an offer that passes has the
//! DTLS fingerprint, ICE credentials and audio the bridge needs, and is
//! no larger than the limit.

#![no_main]

use fedge::cvi::webrtc::sdp::{MAX_OFFER, check_offer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = check_offer(text) {
        assert!(text.len() <= MAX_OFFER);
        assert!(text.contains("a=fingerprint:"));
        assert!(text.contains("a=ice-ufrag:") && text.contains("a=ice-pwd:"));
        assert!(text.contains("m=audio "));
        assert_eq!(c.video, text.lines().any(|l| l.trim_start().starts_with("m=video ")));
    }
});
