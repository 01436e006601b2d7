//! SDP helpers of the gateway: the SDP of a message, the reception's and
//! the test call's answers, the audio stream the reception speaks on, and
//! the room's session continued across a re-INVITE.
//!
//! Pure functions over bytes and `media::sdp` descriptions: they never
//! touch sockets, the relay or SIP state.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::cvi::audio::Codec;
use crate::media::sdp;
use crate::sip::body::leaves;
use crate::sip::headers::HeaderName;
use crate::sip::message::SipMessage;

/// The first SDP of a message body.
pub(super) fn sdp_of(msg: &SipMessage) -> Option<Vec<u8>> {
    leaves(
        msg.first(HeaderName::ContentType),
        msg.first(HeaderName::ContentDisposition),
        msg.body(),
    )
    .into_iter()
    .find(|p| p.media_type == "application/sdp")
    .map(|p| p.body.to_vec())
}

/// `next` (an SDP for the room) as the next version of the session the
/// room already has from us in `previous`: `previous`'s o= line with its
/// version raised by one (RFC 3264 §8). Unchanged when either has no o=.
pub(super) fn continue_origin(previous: &[u8], next: &[u8]) -> Vec<u8> {
    let origin = |b: &[u8]| {
        let text = std::str::from_utf8(b).ok()?;
        let at = if text.starts_with("o=") {
            0
        } else {
            text.find("\no=")? + 1
        };
        let end = text[at..].find(['\r', '\n']).map_or(text.len(), |e| at + e);
        Some((at, end, text[at..end].to_string()))
    };
    let (Some((_, _, prev)), Some((at, end, _))) = (origin(previous), origin(next)) else {
        return next.to_vec();
    };
    let mut f: Vec<&str> = prev.split(' ').collect();
    let Some(version) = f.get(2).and_then(|v| v.parse::<u64>().ok()) else {
        return next.to_vec();
    };
    let bumped = version.saturating_add(1).to_string();
    if let Some(v) = f.get_mut(2) {
        *v = &bumped;
    }
    let mut out = next[..at].to_vec();
    out.extend_from_slice(f.join(" ").as_bytes());
    out.extend_from_slice(&next[end..]);
    out
}

/// The offer's first audio stream the reception can speak: its index, the
/// G.711 codec (the first of PCMU/PCMA offered) and the telephone-event
/// payload type if offered.
pub(super) fn choose_audio(
    offer: &[u8],
    desc: &sdp::Description,
) -> Option<(usize, Codec, Option<u8>)> {
    let text = std::str::from_utf8(offer).ok()?;
    let sections: Vec<&str> = text.split("\nm=").skip(1).collect();
    for (i, s) in desc.streams.iter().enumerate() {
        if s.media != "audio" || s.port == 0 || !s.relayed {
            continue;
        }
        let section = sections.get(i)?;
        let fmts: Vec<&str> = section
            .lines()
            .next()?
            .split_ascii_whitespace()
            .skip(2)
            .collect();
        let codec = fmts.iter().find_map(|f| match *f {
            "0" => Some(Codec::Pcmu),
            "8" => Some(Codec::Pcma),
            _ => None,
        })?;
        let te = section.lines().find_map(|l| {
            let v = l.trim_end_matches('\r').strip_prefix("a=rtpmap:")?;
            let (pt, name) = v.split_once(' ')?;
            name.to_ascii_lowercase()
                .starts_with("telephone-event/8000")
                .then(|| pt.parse().ok())
                .flatten()
        });
        return Some((i, codec, te));
    }
    None
}

fn sdp_head(addr: IpAddr) -> String {
    let kind = if addr.is_ipv4() { "IP4" } else { "IP6" };
    format!("v=0\r\no=fedge 1 1 IN {kind} {addr}\r\ns=fedge\r\nc=IN {kind} {addr}\r\nt=0 0\r\n")
}

/// The reception's SDP: G.711 (and telephone-event) on its socket for the
/// chosen audio stream; every other stream declined (port 0).
pub(super) fn player_sdp(
    desc: &sdp::Description,
    offer: &[u8],
    audio_i: usize,
    local: SocketAddr,
    codec: Codec,
    te: Option<u8>,
) -> String {
    let mut s = sdp_head(local.ip());
    let text = String::from_utf8_lossy(offer);
    let m_lines: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.trim_end_matches('\r')
                .strip_prefix("m=")
                .map(str::to_string)
        })
        .collect();
    for (i, st) in desc.streams.iter().enumerate() {
        if i == audio_i {
            let mut fmts = codec.payload_type().to_string();
            if let Some(pt) = te {
                fmts.push_str(&format!(" {pt}"));
            }
            s.push_str(&format!("m=audio {} {} {fmts}\r\n", local.port(), st.proto));
            s.push_str(&format!(
                "a=rtpmap:{} {}/8000\r\n",
                codec.payload_type(),
                codec.name()
            ));
            if let Some(pt) = te {
                s.push_str(&format!(
                    "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-15\r\n"
                ));
            }
            s.push_str("a=sendrecv\r\n");
        } else {
            let fmts = m_lines
                .get(i)
                .map(|l| {
                    l.split_ascii_whitespace()
                        .skip(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| "0".into());
            s.push_str(&format!(
                "m={} 0 {} {}\r\n",
                st.media,
                st.proto,
                if fmts.is_empty() { "0".into() } else { fmts }
            ));
        }
    }
    s
}

/// The test call's SDP: every relayed stream of the offer, as offered,
/// pointing at an echo socket.
pub(super) fn echo_sdp(offer: &[u8], socks: &[Option<Arc<UdpSocket>>]) -> String {
    let text = String::from_utf8_lossy(offer);
    let ip = socks
        .iter()
        .flatten()
        .find_map(|s| s.local_addr().ok().map(|a| a.ip()))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut out = sdp_head(ip);
    let mut i = 0usize;
    let mut in_media = false;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_ascii_whitespace();
            let media = parts.next().unwrap_or("audio");
            let _port = parts.next();
            let rest: Vec<&str> = parts.collect();
            let port = socks
                .get(i)
                .cloned()
                .flatten()
                .and_then(|s| s.local_addr().ok())
                .map(|a| a.port())
                .unwrap_or(0);
            out.push_str(&format!("m={media} {port} {}\r\n", rest.join(" ")));
            i += 1;
            in_media = true;
            continue;
        }
        // Keep codec and format lines; the relay owns addresses and ICE.
        if in_media
            && (line.starts_with("a=rtpmap:")
                || line.starts_with("a=fmtp:")
                || line.starts_with("a=rtcp-fb:"))
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meetings_sdp_continues_the_rooms_session() {
        let prev = b"v=0\r\no=fedge 7 3 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n";
        let next = b"v=0\r\no=pexip 99 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 4000 RTP/AVP 8\r\n";
        assert_eq!(
            continue_origin(prev, next),
            b"v=0\r\no=fedge 7 4 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 4000 RTP/AVP 8\r\n".to_vec()
        );
        // Nothing to continue (or garbage): unchanged, no panic.
        assert_eq!(continue_origin(b"", next), next.to_vec());
        assert_eq!(continue_origin(b"o=x y z", next), next.to_vec());
        assert_eq!(continue_origin(prev, b"\xff\xfe"), b"\xff\xfe".to_vec());
        assert_eq!(
            continue_origin(
                b"o=a 1 18446744073709551615 IN IP4 h\n",
                b"o=b 2 2 IN IP4 h\n"
            ),
            b"o=a 1 18446744073709551615 IN IP4 h\n".to_vec()
        );
    }

    #[test]
    fn reception_and_echo_sdp() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                     m=audio 5000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
                     m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f\r\n";
        let d = sdp::describe(offer.as_bytes()).unwrap();
        assert_eq!(
            choose_audio(offer.as_bytes(), &d),
            Some((0, Codec::Pcma, Some(101)))
        );
        let local: SocketAddr = "127.0.0.2:6000".parse().unwrap();
        let p = player_sdp(&d, offer.as_bytes(), 0, local, Codec::Pcma, Some(101));
        assert!(p.contains("m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000"), "{p}");
        assert!(p.contains("m=video 0 RTP/AVP 96\r\n"), "{p}");
        let pd = sdp::describe(p.as_bytes()).unwrap();
        assert_eq!(pd.streams.len(), 2);
        assert_eq!(pd.streams[0].address, Some(local.ip()));
        let no_g711 = offer.replace("9 8 0 101", "9 101");
        assert_eq!(
            choose_audio(
                no_g711.as_bytes(),
                &sdp::describe(no_g711.as_bytes()).unwrap()
            ),
            None
        );
        let e = echo_sdp(offer.as_bytes(), &[None, None]);
        assert!(
            e.contains("m=audio 0 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000")
                && e.contains("m=video 0 RTP/AVP 96"),
            "{e}"
        );
    }
}
