//! The browser's SDP offer, checked before anything is allocated: size,
//! syntax (str0m's parser), a DTLS fingerprint, ICE credentials, and an
//! audio section.
//!
//! Pure: text in, a verdict out. It never binds a socket and never
//! panics, whatever the input (a fuzz target drives it).

use str0m::change::SdpOffer;

/// The largest offer taken (Chromium's with audio and video is ~6 KB).
pub const MAX_OFFER: usize = 32 * 1024;

/// Why an offer was refused (each a sentence for the page).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the offer is empty")]
    Empty,
    #[error("the offer is larger than {MAX_OFFER} bytes")]
    TooLarge,
    #[error("the offer is not SDP: {0}")]
    Syntax(String),
    #[error("the offer has no DTLS fingerprint (a=fingerprint)")]
    NoFingerprint,
    #[error("the offer has no ICE credentials (a=ice-ufrag, a=ice-pwd)")]
    NoIce,
    #[error("the offer has no audio")]
    NoAudio,
}

/// An offer that passed the checks.
#[derive(Debug)]
pub struct Checked {
    pub offer: SdpOffer,
    pub video: bool,
}

/// Checks a browser's offer.
pub fn check_offer(text: &str) -> Result<Checked, OfferError> {
    if text.trim().is_empty() {
        return Err(OfferError::Empty);
    }
    if text.len() > MAX_OFFER {
        return Err(OfferError::TooLarge);
    }
    let has = |prefix: &str| text.lines().any(|l| l.trim_start().starts_with(prefix));
    if !text.trim_start().starts_with("v=0") {
        return Err(OfferError::Syntax("it does not start with v=0".into()));
    }
    if !has("a=fingerprint:") {
        return Err(OfferError::NoFingerprint);
    }
    if !has("a=ice-ufrag:") || !has("a=ice-pwd:") {
        return Err(OfferError::NoIce);
    }
    if !has("m=audio ") {
        return Err(OfferError::NoAudio);
    }
    let video = has("m=video ");
    let offer = SdpOffer::from_sdp_string(text).map_err(|e| {
        let mut s = e.to_string();
        s.truncate(200);
        OfferError::Syntax(s)
    })?;
    Ok(Checked { offer, video })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=setup:actpass\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\na=ssrc:1 cname:x\r\n";

    #[test]
    fn a_browser_offer_passes() {
        let c = check_offer(OFFER).unwrap();
        assert!(!c.video);
    }

    #[test]
    fn chromiums_offer_passes_with_video() {
        // The fuzz seed: Debian's Chromium 156 with camera and microphone.
        let real = include_str!("../../../fuzz/seeds/webrtc_offer/chromium-156.sdp");
        let c = check_offer(real).unwrap();
        assert!(c.video);
        let cut = real.replace("a=ice-pwd:", "a=ice-pw:");
        assert_eq!(check_offer(&cut).unwrap_err(), OfferError::NoIce);
    }

    #[test]
    fn bad_offers_are_refused_with_their_reason() {
        assert_eq!(check_offer("").unwrap_err(), OfferError::Empty);
        assert!(matches!(
            check_offer("hello").unwrap_err(),
            OfferError::Syntax(_)
        ));
        let no_fp: String = OFFER
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(check_offer(&no_fp).unwrap_err(), OfferError::NoFingerprint);
        let no_audio = OFFER.replace("m=audio", "m=application");
        assert_eq!(check_offer(&no_audio).unwrap_err(), OfferError::NoAudio);
        let big = format!("{OFFER}{}", "a=x\r\n".repeat(MAX_OFFER / 4));
        assert_eq!(check_offer(&big).unwrap_err(), OfferError::TooLarge);
    }
}
