//! SDP (RFC 8866) as a media relay needs it: what a side says about where
//! it receives each stream, and the same description rewritten so that the
//! other side sends to the relay instead.
//!
//! Owns reading and rewriting SDP text, line by line. Every line the relay
//! does not own (codecs, `a=crypto`, `a=fingerprint`, `x-` and Microsoft
//! attributes, bandwidth, ...) is copied as it was. The relay owns:
//! connection addresses (`c=`, the address in `o=`), ports (`m=`,
//! `a=rtcp`), ICE attributes (the peer's candidates and credentials are
//! replaced by the relay's own, as an ICE-lite agent), and `a=setup` of
//! RFC 4571 TCP streams (the relay listens). It never opens sockets.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Why an SDP could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not text")]
    NotText,
    #[error("SDP line {line}: {what}")]
    Line { line: usize, what: &'static str },
    #[error("SDP has no m= line")]
    NoMedia,
}

/// Media direction (RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// What one m= section says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// `audio`, `video`, ...
    pub media: String,
    pub port: u16,
    pub proto: String,
    /// The relay carries it (an RTP profile over UDP or TCP).
    pub relayed: bool,
    /// RFC 4571 framing over TCP (`TCP/RTP/...`).
    pub tcp_proto: bool,
    /// Where the side receives RTP: the media-level or session-level `c=`.
    pub address: Option<IpAddr>,
    /// Where it receives RTCP (`a=rtcp`, else RTP port + 1).
    pub rtcp_port: u16,
    pub rtcp_address: Option<IpAddr>,
    pub rtcp_mux: bool,
    pub direction: Direction,
    /// RFC 5245 ICE credentials of the side, if it does ICE.
    pub ice_ufrag: Option<String>,
    /// The side offered ICE TCP candidates (RFC 6544, or MS-ICE2 TCP).
    pub tcp_candidates: bool,
    /// BFCP floor control (RFC 8856: `UDP/BFCP` or `TCP/BFCP`): relayed
    /// as opaque messages, never as RTP.
    pub bfcp: bool,
    /// `a=setup` (RFC 4145) of a TCP stream, as the side wrote it.
    pub setup: Option<Setup>,
}

/// Who opens a TCP stream's connection (RFC 4145 `a=setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
    HoldConn,
}

impl Stream {
    /// Old-style hold (`c=0.0.0.0`) or a rejected stream (port 0).
    pub fn silent(&self) -> bool {
        // With ICE (trickle), 0.0.0.0 only means "candidates follow".
        self.port == 0
            || (self.address.is_some_and(|a| a.is_unspecified()) && self.ice_ufrag.is_none())
    }
}

/// What an SDP says, stream by stream (index = m= line order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub streams: Vec<Stream>,
}

/// The relay's ports for one stream on the side the SDP is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPorts {
    pub rtp: u16,
    pub rtcp: u16,
    /// The relay also listens on TCP (RFC 4571) at `rtp`.
    pub tcp: bool,
    /// The relay opens the TCP connection (`a=setup:active`: the side
    /// said passive).
    pub active: bool,
}

/// ICE-lite credentials the relay uses towards one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// What to write into an SDP going to one side.
#[derive(Debug, Clone)]
pub struct Rewrite<'a> {
    /// The relay's address on that side.
    pub address: IpAddr,
    /// Ports by stream index; `None` for streams the relay does not carry.
    pub ports: &'a [Option<StreamPorts>],
    /// The relay's credentials towards that side (used where the SDP does ICE).
    pub ice: &'a IceCredentials,
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// BFCP over UDP or TCP (RFC 8856 §4); TLS and DTLS variants are not
/// relayed (the relay reads the messages' framing).
fn is_bfcp_proto(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("UDP/BFCP") || proto.eq_ignore_ascii_case("TCP/BFCP")
}

fn is_relayed_proto(proto: &str) -> bool {
    if is_bfcp_proto(proto) {
        return true;
    }
    const RELAYED: [&str; 14] = [
        "RTP/AVP",
        "RTP/AVPF",
        "RTP/SAVP",
        "RTP/SAVPF",
        "UDP/TLS/RTP/SAVP",
        "UDP/TLS/RTP/SAVPF",
        "TCP/RTP/AVP",
        "TCP/RTP/AVPF",
        "TCP/RTP/SAVP",
        "TCP/RTP/SAVPF",
        "TCP/TLS/RTP/SAVP",
        "TCP/TLS/RTP/SAVPF",
        "TCP/DTLS/RTP/SAVP",
        "TCP/DTLS/RTP/SAVPF",
    ];
    RELAYED.iter().any(|p| p.eq_ignore_ascii_case(proto))
}

/// `c=IN IP4 a.b.c.d[/ttl]` -> the address.
fn connection_address(value: &str) -> Option<IpAddr> {
    let mut it = value.split_ascii_whitespace();
    let (_net, _kind, addr) = (it.next()?, it.next()?, it.next()?);
    addr.split('/').next()?.parse().ok()
}

/// An RFC 5245 candidate line (`a=candidate:F C TRANSPORT PRIO ADDR PORT typ ...`)
/// and whether its transport is TCP. MS-ICE v6 lines put a username third
/// and are not RFC 5245 candidates.
fn candidate_transport(value: &str) -> Option<&str> {
    let mut it = value.split_ascii_whitespace();
    let _foundation = it.next()?;
    let _component = it.next()?;
    let transport = it.next()?;
    (transport.eq_ignore_ascii_case("udp")
        || transport.eq_ignore_ascii_case("tcp")
        || transport.eq_ignore_ascii_case("tcp-act")
        || transport.eq_ignore_ascii_case("tcp-pass"))
    .then_some(transport)
}

/// Reads what each stream of an SDP is and where its side receives it.
pub fn describe(sdp: &[u8]) -> Result<Description, SdpError> {
    let text = std::str::from_utf8(sdp).map_err(|_| SdpError::NotText)?;
    let mut session_addr = None;
    let mut session_dir = Direction::SendRecv;
    let mut session_ufrag: Option<String> = None;
    let mut streams: Vec<Stream> = Vec::new();
    let mut media_addr: Vec<Option<IpAddr>> = Vec::new();
    let mut media_dir: Vec<Option<Direction>> = Vec::new();
    for (n, line) in lines(text).enumerate() {
        if line.is_empty() {
            continue;
        }
        let (kind, value) = line.split_once('=').ok_or(SdpError::Line {
            line: n + 1,
            what: "not type=value",
        })?;
        let in_media = !streams.is_empty();
        match kind {
            "m" => {
                let mut it = value.split_ascii_whitespace();
                let media = it.next().ok_or(SdpError::Line {
                    line: n + 1,
                    what: "m= without media",
                })?;
                let port = it
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or(SdpError::Line {
                        line: n + 1,
                        what: "m= without a valid port",
                    })?;
                let proto = it.next().ok_or(SdpError::Line {
                    line: n + 1,
                    what: "m= without a protocol",
                })?;
                streams.push(Stream {
                    media: media.to_string(),
                    port,
                    proto: proto.to_string(),
                    relayed: is_relayed_proto(proto),
                    tcp_proto: proto
                        .as_bytes()
                        .get(..4)
                        .is_some_and(|p| p.eq_ignore_ascii_case(b"TCP/")),
                    address: None,
                    rtcp_port: port.saturating_add(1),
                    rtcp_address: None,
                    rtcp_mux: false,
                    direction: Direction::SendRecv,
                    ice_ufrag: None,
                    tcp_candidates: false,
                    bfcp: is_bfcp_proto(proto),
                    setup: None,
                });
                media_addr.push(None);
                media_dir.push(None);
            }
            "c" => {
                let a = connection_address(value);
                if in_media {
                    if let Some(m) = media_addr.last_mut() {
                        *m = a;
                    }
                } else {
                    session_addr = a;
                }
            }
            "a" => {
                let (name, val) = value.split_once(':').unwrap_or((value, ""));
                let dir = match name {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                if let Some(d) = dir {
                    match media_dir.last_mut() {
                        Some(m) if in_media => *m = Some(d),
                        _ => session_dir = d,
                    }
                    continue;
                }
                match (name, streams.last_mut()) {
                    ("ice-ufrag", Some(s)) if in_media => {
                        s.ice_ufrag = Some(val.trim().to_string())
                    }
                    ("ice-ufrag", _) => session_ufrag = Some(val.trim().to_string()),
                    ("rtcp-mux", Some(s)) => s.rtcp_mux = true,
                    ("setup", Some(s)) if in_media => {
                        s.setup = match val.trim().to_ascii_lowercase().as_str() {
                            "active" => Some(Setup::Active),
                            "passive" => Some(Setup::Passive),
                            "actpass" => Some(Setup::ActPass),
                            "holdconn" => Some(Setup::HoldConn),
                            _ => None,
                        }
                    }
                    ("rtcp", Some(s)) => {
                        let mut it = val.split_ascii_whitespace();
                        if let Some(p) = it.next().and_then(|p| p.parse().ok()) {
                            s.rtcp_port = p;
                        }
                        let rest: Vec<&str> = it.collect();
                        if rest.len() == 3 {
                            s.rtcp_address = rest[2].parse().ok();
                        }
                    }
                    ("candidate", Some(s))
                        if candidate_transport(val).is_some_and(|t| {
                            t.as_bytes()
                                .get(..3)
                                .is_some_and(|p| p.eq_ignore_ascii_case(b"tcp"))
                        }) =>
                    {
                        s.tcp_candidates = true;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if streams.is_empty() {
        return Err(SdpError::NoMedia);
    }
    for (i, s) in streams.iter_mut().enumerate() {
        s.address = media_addr[i].or(session_addr);
        s.rtcp_address = s.rtcp_address.or(s.address);
        s.direction = media_dir[i].unwrap_or(session_dir);
        if s.ice_ufrag.is_none() {
            s.ice_ufrag = session_ufrag.clone();
        }
    }
    Ok(Description { streams })
}

/// Attribute lines the relay owns when it answers for ICE.
fn is_ice_attribute(name: &str) -> bool {
    matches!(
        name,
        "candidate"
            | "remote-candidates"
            | "ice-ufrag"
            | "ice-pwd"
            | "ice-lite"
            | "ice-options"
            | "ice-mismatch"
            | "end-of-candidates"
            | "x-candidate-ipv6"
    )
}

fn ip_kind(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IP4" } else { "IP6" }
}

/// The lines the relay adds at the end of a relayed m= section.
fn relay_ice_lines(
    out: &mut String,
    eol: &str,
    a: IpAddr,
    p: StreamPorts,
    mux: bool,
    ice: &IceCredentials,
) {
    let _ = write!(
        out,
        "a=ice-ufrag:{}{eol}a=ice-pwd:{}{eol}",
        ice.ufrag, ice.pwd
    );
    let _ = write!(
        out,
        "a=candidate:1 1 UDP 2130706431 {a} {} typ host{eol}",
        p.rtp
    );
    // Component 2 even with rtcp-mux offered: an answerer that declines
    // mux needs it (RFC 5761 §5.1.3).
    let _ = mux;
    let _ = write!(
        out,
        "a=candidate:1 2 UDP 2130706430 {a} {} typ host{eol}",
        p.rtcp
    );
    if p.tcp {
        let _ = write!(
            out,
            "a=candidate:2 1 TCP 1684798975 {a} {} typ host tcptype passive{eol}",
            p.rtp
        );
    }
}

/// The session-level c= line, if any, and which streams have a c= of
/// their own.
fn connection_lines(text: &str, streams: usize) -> (Option<&str>, Vec<bool>) {
    let mut session_c: Option<&str> = None;
    let mut has_media_c = vec![false; streams];
    let mut idx: Option<usize> = None;
    for line in lines(text) {
        if line.starts_with("m=") {
            idx = Some(idx.map_or(0, |i| i + 1));
        } else if line.starts_with("c=") {
            match idx {
                Some(i) => {
                    if let Some(m) = has_media_c.get_mut(i) {
                        *m = true;
                    }
                }
                None => session_c = Some(line),
            }
        }
    }
    (session_c, has_media_c)
}

/// The o= line with the relay's address; the session id and version kept.
fn origin_line(out: &mut String, line: &str, value: &str, kind: &str, a: IpAddr, eol: &str) {
    let parts: Vec<&str> = value.split_ascii_whitespace().collect();
    if parts.len() == 6 {
        let _ = write!(
            out,
            "o={} {} {} {} {kind} {a}{eol}",
            parts[0], parts[1], parts[2], parts[3]
        );
    } else {
        out.push_str(line);
        out.push_str(eol);
    }
}

/// Rewrites an SDP for the side `rw` describes: addresses and ports point
/// at the relay; ICE becomes the relay's (ICE-lite) where the SDP did ICE.
pub fn rewrite(sdp: &[u8], rw: &Rewrite<'_>) -> Result<Vec<u8>, SdpError> {
    let text = std::str::from_utf8(sdp).map_err(|_| SdpError::NotText)?;
    let desc = describe(sdp)?;
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let a = rw.address;
    let kind = ip_kind(a);
    let session_ice = desc.streams.iter().enumerate().any(|(i, s)| {
        s.ice_ufrag.is_some()
            && s.port != 0
            && rw.ports.get(i).copied().flatten().is_some()
            && s.relayed
    });
    // A session-level c= that unrelayed streams rely on moves into them.
    let (session_c, has_media_c) = connection_lines(text, desc.streams.len());
    let relayed_at = |i: usize| -> Option<StreamPorts> {
        rw.ports
            .get(i)
            .copied()
            .flatten()
            .filter(|_| desc.streams[i].relayed)
    };
    let mut out = String::with_capacity(text.len() + 256);
    let mut idx: Option<usize> = None;
    let mut pending_ice: Option<(StreamPorts, bool)> = None;
    let mut pending_c: Option<&str> = None;
    let flush = |out: &mut String, pending: &mut Option<(StreamPorts, bool)>| {
        if let Some((p, mux)) = pending.take() {
            relay_ice_lines(out, eol, a, p, mux, rw.ice);
        }
    };
    let mut session_ice_lite_written = false;
    for line in lines(text) {
        if line.is_empty() {
            continue;
        }
        let Some((k, value)) = line.split_once('=') else {
            out.push_str(line);
            out.push_str(eol);
            continue;
        };
        if k != "i"
            && let Some(c) = pending_c.take()
        {
            out.push_str(c);
            out.push_str(eol);
        }
        if k == "m" {
            flush(&mut out, &mut pending_ice);
            if idx.is_none() && session_ice && !session_ice_lite_written {
                out.push_str("a=ice-lite");
                out.push_str(eol);
                session_ice_lite_written = true;
            }
            let i = idx.map_or(0, |i| i + 1);
            idx = Some(i);
            let s = &desc.streams[i];
            match relayed_at(i) {
                Some(p) if s.port != 0 => {
                    let mut it = value.split_ascii_whitespace();
                    let media = it.next().unwrap_or("");
                    let _port = it.next();
                    let rest: Vec<&str> = it.collect();
                    let _ = write!(out, "m={media} {} {}{eol}", p.rtp, rest.join(" "));
                    if s.ice_ufrag.is_some() {
                        pending_ice = Some((p, s.rtcp_mux));
                    }
                }
                _ => {
                    out.push_str(line);
                    out.push_str(eol);
                    // A stream the relay does not carry keeps its own
                    // address (after any i= line, RFC 8866 §5 order).
                    if !has_media_c[i] && relayed_at(i).is_none() {
                        pending_c = session_c;
                    }
                }
            }
            continue;
        }
        let in_relayed = idx
            .and_then(relayed_at)
            .filter(|_| idx.is_some_and(|i| desc.streams[i].port != 0));
        match k {
            "o" => origin_line(&mut out, line, value, kind, a, eol),
            "c" if idx.is_none() || in_relayed.is_some() => {
                let ice = match idx {
                    Some(i) => desc.streams[i].ice_ufrag.is_some(),
                    None => session_ice,
                };
                let held = connection_address(value).is_some_and(|x| x.is_unspecified()) && !ice;
                if held {
                    out.push_str(line);
                } else {
                    let _ = write!(out, "c=IN {kind} {a}");
                }
                out.push_str(eol);
            }
            "a" => {
                let (name, _val) = value.split_once(':').unwrap_or((value, ""));
                let relayed_section = in_relayed.is_some();

                if is_ice_attribute(name) && (idx.is_none() || relayed_section) {
                    // The peer's ICE (and MS-ICE v6 candidates) goes; ours is
                    // added at the end of the section where the SDP did ICE.
                    continue;
                }
                match (name, in_relayed) {
                    ("rtcp", Some(p)) => {
                        let _ = write!(out, "a=rtcp:{} IN {kind} {a}{eol}", p.rtcp);
                    }
                    ("setup", Some(p)) if idx.is_some_and(|i| desc.streams[i].tcp_proto) => {
                        out.push_str(if p.active {
                            "a=setup:active"
                        } else {
                            "a=setup:passive"
                        });
                        out.push_str(eol);
                    }
                    _ => {
                        out.push_str(line);
                        out.push_str(eol);
                    }
                }
            }
            _ => {
                out.push_str(line);
                out.push_str(eol);
            }
        }
    }
    flush(&mut out, &mut pending_ice);
    if let Some(c) = pending_c {
        out.push_str(c);
        out.push_str(eol);
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "203.0.113.5";

    fn creds() -> IceCredentials {
        IceCredentials {
            ufrag: "RLAY".into(),
            pwd: "relaypasswordrelaypassword".into(),
        }
    }

    fn rw(ports: &[Option<StreamPorts>], f: impl FnOnce(&Rewrite<'_>) -> Vec<u8>) -> String {
        let ice = creds();
        let r = Rewrite {
            address: RELAY.parse().unwrap(),
            ports,
            ice: &ice,
        };
        String::from_utf8(f(&r)).unwrap()
    }

    fn p(rtp: u16) -> Option<StreamPorts> {
        Some(StreamPorts {
            rtp,
            rtcp: rtp + 1,
            tcp: false,
            active: false,
        })
    }

    const PLAIN: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
        m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=x-fedge:keep\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n\
        m=video 51372 RTP/AVP 96\r\nc=IN IP4 10.1.1.2\r\na=rtcp:53020 IN IP4 10.1.1.3\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n\
        a=rtcp-fb:* nack pli\r\n";

    #[test]
    fn describe_reads_addresses_ports_and_directions() {
        let d = describe(PLAIN.as_bytes()).unwrap();
        assert_eq!(d.streams.len(), 2);
        let a = &d.streams[0];
        assert_eq!(
            (a.media.as_str(), a.port, a.rtcp_port),
            ("audio", 49170, 49171)
        );
        assert_eq!(a.address, Some("10.1.1.1".parse().unwrap()));
        assert!(a.relayed && !a.tcp_proto && !a.rtcp_mux);
        assert_eq!(a.direction, Direction::SendRecv);
        let v = &d.streams[1];
        assert_eq!(v.address, Some("10.1.1.2".parse().unwrap()));
        assert_eq!(
            (v.rtcp_port, v.rtcp_address),
            (53020, Some("10.1.1.3".parse().unwrap()))
        );
        assert_eq!(v.direction, Direction::SendOnly);
        assert_eq!(describe(b"v=0\r\ns=-\r\n"), Err(SdpError::NoMedia));
        assert!(matches!(
            describe(b"v=0\r\nbad line\r\nm=audio 1 RTP/AVP 0\r\n"),
            Err(SdpError::Line { line: 2, .. })
        ));
        assert!(matches!(
            describe(b"m=audio x RTP/AVP 0\r\n"),
            Err(SdpError::Line { .. })
        ));
        assert_eq!(describe(&[0xff, 0xfe]), Err(SdpError::NotText));
        // Multi-byte text where the relay looks at prefixes: no panic.
        let d = describe(
            "m=audio 1 TCPé 0\r\na=candidate:1 1 tcé 1 10.0.0.1 9 typ host\r\n".as_bytes(),
        )
        .unwrap();
        assert!(!d.streams[0].tcp_proto && !d.streams[0].relayed && !d.streams[0].tcp_candidates);
    }

    #[test]
    fn rewrite_points_at_the_relay_and_keeps_everything_else() {
        let out = rw(&[p(50000), p(50002)], |r| {
            rewrite(PLAIN.as_bytes(), r).unwrap()
        });
        assert_eq!(
            out,
            "v=0\r\no=alice 2890844526 2890844526 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 50000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=x-fedge:keep\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n\
             m=video 50002 RTP/AVP 96\r\nc=IN IP4 203.0.113.5\r\na=rtcp:50003 IN IP4 203.0.113.5\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n\
             a=rtcp-fb:* nack pli\r\n"
        );
        let d = describe(out.as_bytes()).unwrap();
        assert_eq!(d.streams[0].port, 50000);
        assert_eq!(d.streams[1].rtcp_port, 50003);
    }

    #[test]
    fn ice_candidates_become_the_relays_and_unrelayed_streams_keep_their_address() {
        let sdp = "v=0\no=- 1 2 IN IP4 192.168.1.9\ns=-\nc=IN IP4 192.168.1.9\nt=0 0\na=ice-options:trickle\n\
            m=audio 7000 RTP/SAVP 0\na=ice-ufrag:peer\na=ice-pwd:peerpasswordpeerpassword\n\
            a=candidate:1 1 UDP 2130706431 192.168.1.9 7000 typ host\na=candidate:1 2 UDP 2130706430 192.168.1.9 7001 typ host\n\
            a=candidate:2 1 tcp 1684798975 192.168.1.9 9 typ host tcptype active\na=candidate:3 1 UDP 16777215 198.51.100.7 40000 typ relay raddr 192.168.1.9 rport 7000\n\
            a=x-candidate-ipv6:1 1 UDP 2 ::1 7000 typ host\na=rtcp-mux\na=label:main-audio\n\
            m=application 5070 TCP/TLS/BFCP *\na=floorctrl:c-s\n";
        let d = describe(sdp.as_bytes()).unwrap();
        assert_eq!(d.streams[0].ice_ufrag.as_deref(), Some("peer"));
        assert!(d.streams[0].tcp_candidates && d.streams[0].rtcp_mux);
        assert!(!d.streams[1].relayed);
        let ports = [
            Some(StreamPorts {
                rtp: 50010,
                rtcp: 50011,
                tcp: true,
                active: false,
            }),
            None,
        ];
        let out = rw(&ports, |r| rewrite(sdp.as_bytes(), r).unwrap());
        assert_eq!(
            out,
            "v=0\no=- 1 2 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\na=ice-lite\n\
             m=audio 50010 RTP/SAVP 0\na=rtcp-mux\na=label:main-audio\n\
             a=ice-ufrag:RLAY\na=ice-pwd:relaypasswordrelaypassword\n\
             a=candidate:1 1 UDP 2130706431 203.0.113.5 50010 typ host\n\
             a=candidate:1 2 UDP 2130706430 203.0.113.5 50011 typ host\n\
             a=candidate:2 1 TCP 1684798975 203.0.113.5 50010 typ host tcptype passive\n\
             m=application 5070 TCP/TLS/BFCP *\nc=IN IP4 192.168.1.9\na=floorctrl:c-s\n"
        );
        assert!(!out.contains("192.168.1.9 7000") && !out.contains("198.51.100.7"));
    }

    #[test]
    fn bfcp_streams_are_relayed_and_their_setup_follows_the_relay() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\n\
            m=video 6000 RTP/AVP 96\r\na=content:slides\r\na=label:3\r\n\
            m=application 9 TCP/BFCP *\r\na=setup:passive\r\na=connection:new\r\na=floorctrl:c-only\r\na=confid:1\r\na=userid:2\r\na=floorid:1 mstrm:3\r\n\
            m=application 7000 UDP/BFCP *\r\na=floorctrl:c-s\r\n";
        let d = describe(sdp.as_bytes()).unwrap();
        assert!(d.streams.iter().all(|s| s.relayed));
        assert!(!d.streams[0].bfcp && d.streams[1].bfcp && d.streams[2].bfcp);
        assert!(d.streams[1].tcp_proto && !d.streams[2].tcp_proto);
        assert_eq!(d.streams[1].setup, Some(Setup::Passive));
        let mut tcp = p(50042);
        if let Some(t) = tcp.as_mut() {
            t.tcp = true;
            t.active = true;
        }
        let out = rw(&[p(50040), tcp, p(50044)], |r| {
            rewrite(sdp.as_bytes(), r).unwrap()
        });
        assert!(
            out.contains("m=video 50040 RTP/AVP 96\r\na=content:slides\r\na=label:3\r\n")
                && out.contains("m=application 50042 TCP/BFCP *\r\na=setup:active\r\na=connection:new\r\na=floorctrl:c-only\r\na=confid:1\r\na=userid:2\r\na=floorid:1 mstrm:3\r\n")
                && out.contains("m=application 50044 UDP/BFCP *\r\na=floorctrl:c-s\r\n")
                && !out.contains("10.0.0.7"),
            "{out}"
        );
    }

    #[test]
    fn lync_fallback_candidates_hold_rejection_and_tcp_setup() {
        // MS-ICE v6 candidates (username third) go, and no ICE is added there.
        let v6 = "v=0\r\no=- 0 0 IN IP4 10.0.0.7\r\ns=session\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\n\
            m=audio 25890 RTP/SAVP 114 0\r\na=candidate:aBcD 1 UserNameV6 UDP 0.830 10.0.0.7 25890\r\na=cryptoscale:1 client AES_CM_128_HMAC_SHA1_80 inline:x\r\n";
        let out = rw(&[p(50020)], |r| rewrite(v6.as_bytes(), r).unwrap());
        assert!(!out.contains("candidate") && !out.contains("ice-"), "{out}");
        assert!(
            out.contains("m=audio 50020 RTP/SAVP 114 0\r\na=cryptoscale:1"),
            "{out}"
        );
        // Old-style hold keeps 0.0.0.0; a rejected stream keeps port 0.
        let hold = "v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 25890 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n";
        let d = describe(hold.as_bytes()).unwrap();
        assert!(d.streams[0].silent() && d.streams[1].silent());
        let out = rw(&[p(50030), p(50032)], |r| {
            rewrite(hold.as_bytes(), r).unwrap()
        });
        assert!(
            out.contains("c=IN IP4 0.0.0.0\r\n")
                && out.contains("m=audio 50030 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n"),
            "{out}"
        );
        // RFC 4571: the relay listens.
        let tcp = "v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 9 TCP/RTP/AVP 0\r\na=setup:active\r\na=connection:new\r\n";
        let d = describe(tcp.as_bytes()).unwrap();
        assert!(d.streams[0].tcp_proto && d.streams[0].relayed);
        let out = rw(&[p(50040)], |r| rewrite(tcp.as_bytes(), r).unwrap());
        assert!(
            out.contains("m=audio 50040 TCP/RTP/AVP 0\r\na=setup:passive\r\na=connection:new\r\n"),
            "{out}"
        );
        // DTLS-SRTP a=setup is end to end.
        let dtls = "v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVP 0\r\na=setup:actpass\r\na=fingerprint:sha-256 AB:CD\r\n";
        let out = rw(&[p(50050)], |r| rewrite(dtls.as_bytes(), r).unwrap());
        assert!(
            out.contains("a=setup:actpass\r\na=fingerprint:sha-256 AB:CD\r\n"),
            "{out}"
        );
    }
}
