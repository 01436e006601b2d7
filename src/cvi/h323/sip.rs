//! The SIP half of H.323 interworking: the requests an H.323 call is
//! presented to the gateway as (INVITE with an SDP offer made from the
//! room's fast-start proposals, ACK, BYE, INFO with a key press), reading
//! the gateway's answers back (status, SDP answer), and the table from
//! SIP status codes to Q.931 causes and H.225 release reasons.
//!
//! Pure: strings and bytes in and out. It never touches a socket and never
//! decodes H.323 (the call task does both).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// A codec the gateway and an H.323 room both know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    G722,
    /// H.264 with its profile (profile_idc) and level (level_idc).
    H264 {
        profile: u8,
        level: u8,
    },
}

impl Codec {
    /// The RTP payload type and the rtpmap/fmtp lines it is offered with;
    /// `dynamic` is the next free dynamic payload type.
    fn sdp(&self, dynamic: u8) -> (u8, String) {
        match self {
            Codec::Pcmu => (0, "a=rtpmap:0 PCMU/8000\r\n".into()),
            Codec::Pcma => (8, "a=rtpmap:8 PCMA/8000\r\n".into()),
            Codec::G722 => (9, "a=rtpmap:9 G722/8000\r\n".into()),
            Codec::H264 { profile, level } => (
                dynamic,
                format!(
                    "a=rtpmap:{dynamic} H264/90000\r\na=fmtp:{dynamic} profile-level-id={profile:02x}00{level:02x};packetization-mode=1\r\n"
                ),
            ),
        }
    }

    fn is_video(&self) -> bool {
        matches!(self, Codec::H264 { .. })
    }

    /// The codec of an rtpmap encoding name (`PCMU`, `H264`, ...).
    fn of_name(name: &str, fmtp: Option<&str>) -> Option<Codec> {
        let enc = name.split('/').next()?.to_ascii_uppercase();
        match enc.as_str() {
            "PCMU" => Some(Codec::Pcmu),
            "PCMA" => Some(Codec::Pcma),
            "G722" => Some(Codec::G722),
            "H264" => {
                let pli = fmtp
                    .and_then(|f| {
                        f.split(';').find_map(|p| {
                            let (k, v) = p.split_once('=')?;
                            k.trim()
                                .eq_ignore_ascii_case("profile-level-id")
                                .then(|| v.trim().to_string())
                        })
                    })
                    .unwrap_or_else(|| "42e01f".into());
                let n = u32::from_str_radix(&pli, 16).unwrap_or(0x42e01f);
                Some(Codec::H264 {
                    profile: (n >> 16) as u8,
                    level: n as u8,
                })
            }
            _ => None,
        }
    }
}

/// One media stream of a room: where it receives RTP, and the codecs it
/// proposed, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub rtp: SocketAddr,
    pub codecs: Vec<Codec>,
}

/// What a room proposed in its fast start (or nothing: an offer with no
/// media is not made).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    pub audio: Option<Stream>,
    pub video: Option<Stream>,
}

/// The gateway's answer for one stream: where the room must send (the
/// relay), and the codec chosen (the first one the answer lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub rtp: SocketAddr,
    pub rtcp: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub audio: Option<Answered>,
    pub video: Option<Answered>,
}

/// The SDP offer for a room's proposals, `o=` from `session`.
pub fn offer_sdp(offer: &Offer, session: u64) -> String {
    let origin = offer
        .audio
        .as_ref()
        .or(offer.video.as_ref())
        .map(|s| s.rtp.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let fam = |ip: IpAddr| if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!(
        "v=0\r\no=h323 {session} {session} IN {} {origin}\r\ns=-\r\nt=0 0\r\n",
        fam(origin)
    );
    let mut dynamic = 96;
    for (kind, stream) in [("audio", &offer.audio), ("video", &offer.video)] {
        let Some(st) = stream else { continue };
        let mut pts = Vec::new();
        let mut attrs = String::new();
        for c in &st.codecs {
            let (pt, lines) = c.sdp(dynamic);
            if pt == dynamic {
                dynamic += 1;
            }
            if !pts.contains(&pt) {
                pts.push(pt);
                attrs.push_str(&lines);
            }
        }
        if kind == "audio" {
            pts.push(101);
            attrs.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n");
        }
        let list: Vec<String> = pts.iter().map(|p| p.to_string()).collect();
        let _ = write!(
            s,
            "m={kind} {} RTP/AVP {}\r\nc=IN {} {}\r\n{attrs}a=sendrecv\r\n",
            st.rtp.port(),
            list.join(" "),
            fam(st.rtp.ip()),
            st.rtp.ip()
        );
    }
    s
}

/// One m= section of an SDP, as far as interworking reads it.
#[derive(Debug, Clone)]
struct Section {
    kind: String,
    port: u16,
    formats: Vec<u8>,
    c: Option<IpAddr>,
    /// rtpmap and fmtp values of the first format.
    rtpmap: Option<String>,
    fmtp: Option<String>,
    rtcp: Option<u16>,
}

/// The m= sections of `sdp`, each with its (or the session's) c= address.
fn sections(sdp: &[u8]) -> Vec<Section> {
    let text = String::from_utf8_lossy(sdp);
    let mut session_c: Option<IpAddr> = None;
    let mut media: Vec<Section> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let kind = f.next().unwrap_or("").to_string();
            let port = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let formats = f.skip(1).filter_map(|p| p.parse().ok()).take(32).collect();
            media.push(Section {
                kind,
                port,
                formats,
                c: None,
                rtpmap: None,
                fmtp: None,
                rtcp: None,
            });
        } else if let Some(c) = line.strip_prefix("c=") {
            let ip = c.split_whitespace().nth(2).and_then(|a| a.parse().ok());
            match media.last_mut() {
                Some(m) => m.c = ip,
                None => session_c = ip,
            }
        } else if let (Some(a), Some(m)) = (line.strip_prefix("a="), media.last_mut()) {
            let Some(pt) = m.formats.first().copied() else {
                continue;
            };
            let (name, value) = a.split_once(':').unwrap_or((a, ""));
            let (fmt, rest) = value.split_once(' ').unwrap_or((value, ""));
            match name {
                "rtpmap" if fmt.parse() == Ok(pt) => m.rtpmap = Some(rest.to_string()),
                "fmtp" if fmt.parse() == Ok(pt) => m.fmtp = Some(rest.to_string()),
                "rtcp" => m.rtcp = fmt.parse().ok(),
                _ => {}
            }
        }
    }
    for m in &mut media {
        m.c = m.c.or(session_c);
    }
    media
}

impl Section {
    /// The codec of the section's first format.
    fn codec(&self) -> Option<(u8, Codec)> {
        let pt = *self.formats.first()?;
        let c = match (pt, &self.rtpmap) {
            (_, Some(map)) => Codec::of_name(map, self.fmtp.as_deref()),
            (0, None) => Some(Codec::Pcmu),
            (8, None) => Some(Codec::Pcma),
            (9, None) => Some(Codec::G722),
            _ => None,
        }?;
        Some((pt, c))
    }
}

/// Reads the gateway's SDP answer: per stream, the relay's address and
/// the first codec listed. Streams refused (port 0) or unknown are left out.
pub fn read_answer(sdp: &[u8]) -> Answer {
    let mut out = Answer::default();
    for m in sections(sdp) {
        let (Some((pt, codec)), Some(ip)) = (m.codec(), m.c) else {
            continue;
        };
        if m.port == 0 {
            continue;
        }
        let a = Answered {
            rtp: SocketAddr::new(ip, m.port),
            rtcp: SocketAddr::new(ip, m.rtcp.unwrap_or(m.port.saturating_add(1))),
            codec,
            payload_type: pt,
        };
        match m.kind.as_str() {
            "audio" if !codec.is_video() && out.audio.is_none() => out.audio = Some(a),
            "video" if codec.is_video() && out.video.is_none() => out.video = Some(a),
            _ => {}
        }
    }
    out
}

/// The relay's RTP and RTCP addresses for the `index`th m= section of an
/// answer; `None` when it has no such section, refused it (port 0) or
/// gave no address.
pub fn stream_at(sdp: &[u8], index: usize) -> Option<(SocketAddr, SocketAddr)> {
    let m = sections(sdp).into_iter().nth(index)?;
    let ip = m.c.filter(|_| m.port != 0)?;
    let rtcp = m.rtcp.unwrap_or(m.port.saturating_add(1));
    Some((SocketAddr::new(ip, m.port), SocketAddr::new(ip, rtcp)))
}

/// How many m= sections `sdp` has.
pub fn stream_count(sdp: &[u8]) -> usize {
    sections(sdp).len()
}

/// `sdp` with its o= line's session version set to `version` (RFC 3264
/// §8: each new offer in a session increments it).
pub fn with_version(sdp: &str, version: u64) -> String {
    let mut out = String::with_capacity(sdp.len() + 8);
    for line in sdp.split_inclusive("\r\n") {
        match line.strip_prefix("o=") {
            Some(o) => {
                let mut f: Vec<&str> = o.trim_end().split(' ').collect();
                let v = version.to_string();
                if f.len() > 2 {
                    f[2] = &v;
                }
                let _ = write!(out, "o={}\r\n", f.join(" "));
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The content stream (RFC 4796 `a=content:slides`) of an H.239
/// presentation channel: H.264 with the channel's payload type, send only
/// (the room presents), at `rtp` (port 0: the stream is off).
pub fn content_section(rtp: SocketAddr, pt: u8, codec: Codec, label: u16) -> String {
    let fam = if rtp.is_ipv4() { "IP4" } else { "IP6" };
    let (_, lines) = codec.sdp(pt);
    if rtp.port() == 0 {
        return format!("m=video 0 RTP/AVP {pt}\r\n{lines}a=content:slides\r\na=label:{label}\r\n");
    }
    format!(
        "m=video {} RTP/AVP {pt}\r\nc=IN {fam} {}\r\n{lines}a=content:slides\r\na=label:{label}\r\na=sendonly\r\n",
        rtp.port(),
        rtp.ip()
    )
}

/// The connector's content stream in an offer from the gateway: the
/// second video m= line (the first is the room's own video).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentOffer {
    /// Its m= index.
    pub index: usize,
    /// The relay's RTP and RTCP addresses; `None`: the stream is off.
    pub relay: Option<(SocketAddr, SocketAddr)>,
    pub pt: u8,
    /// `None`: not H.264 (no H.239 channel can carry it).
    pub codec: Option<Codec>,
    /// The m= index of a `BFCP` stream that is on.
    pub bfcp: Option<usize>,
}

/// The content stream an offer carries, if any (on or off).
pub fn content_offer(sdp: &[u8]) -> Option<ContentOffer> {
    let all = sections(sdp);
    let (index, m) = all
        .iter()
        .enumerate()
        .filter(|(_, m)| m.kind == "video")
        .nth(1)?;
    let relay = m.c.filter(|_| m.port != 0).map(|ip| {
        let rtcp = m.rtcp.unwrap_or(m.port.saturating_add(1));
        (SocketAddr::new(ip, m.port), SocketAddr::new(ip, rtcp))
    });
    let (pt, codec) = match m.codec() {
        Some((pt, c)) => (pt, Some(c).filter(Codec::is_video)),
        None => (m.formats.first().copied().unwrap_or(0), None),
    };
    let bfcp = all
        .iter()
        .position(|m| m.kind == "application" && m.port != 0);
    Some(ContentOffer {
        index,
        relay,
        pt,
        codec,
        bfcp,
    })
}

/// Our answer's content section: the room receives the meeting's
/// presentation at `rtp` (its H.239 channel's address).
pub fn content_answer(rtp: SocketAddr, pt: u8, codec: Codec) -> String {
    let fam = if rtp.is_ipv4() { "IP4" } else { "IP6" };
    let (_, lines) = codec.sdp(pt);
    format!(
        "m=video {} RTP/AVP {pt}\r\nc=IN {fam} {}\r\n{lines}a=content:slides\r\na=recvonly\r\n",
        rtp.port(),
        rtp.ip()
    )
}

/// `sdp` with its `index`th m= section (to the next m= line) replaced by
/// `section`; unchanged when it has no such section.
pub fn replace_section(sdp: &str, index: usize, section: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + section.len());
    let mut at: Option<usize> = None;
    for line in sdp.split_inclusive("\r\n") {
        if line.starts_with("m=") {
            at = Some(at.map_or(0, |i| i + 1));
            if at == Some(index) {
                out.push_str(section);
            }
        }
        if at != Some(index) {
            out.push_str(line);
        }
    }
    out
}

/// Our answer to an offer from the gateway (its re-INVITE after the
/// reception): the room's own addresses (its channels do not change), the
/// offer's first format per stream, streams the room has none for refused.
pub fn answer_sdp(offer: &[u8], room: &Offer, session: u64, version: u64) -> String {
    let origin = room
        .audio
        .as_ref()
        .or(room.video.as_ref())
        .map(|s| s.rtp.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let fam = |ip: IpAddr| if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!(
        "v=0\r\no=h323 {session} {version} IN {} {origin}\r\ns=-\r\nt=0 0\r\n",
        fam(origin)
    );
    let (mut audio, mut video) = (false, false);
    for m in sections(offer) {
        // The first stream of each kind is the room's; another (the
        // connector's content stream) has no channel towards the room.
        let mine = match m.kind.as_str() {
            "audio" if !std::mem::replace(&mut audio, true) => room.audio.as_ref(),
            "video" if !std::mem::replace(&mut video, true) => room.video.as_ref(),
            _ => None,
        };
        let pt = m.formats.first().copied().unwrap_or(0);
        let Some(st) = mine.filter(|_| m.port != 0) else {
            let _ = write!(s, "m={} 0 RTP/AVP {pt}\r\n", m.kind);
            continue;
        };
        let _ = write!(
            s,
            "m={} {} RTP/AVP {pt}\r\nc=IN {} {}\r\n",
            m.kind,
            st.rtp.port(),
            fam(st.rtp.ip()),
            st.rtp.ip()
        );
        if let Some(map) = &m.rtpmap {
            let _ = write!(s, "a=rtpmap:{pt} {map}\r\n");
        }
        if let Some(f) = &m.fmtp {
            let _ = write!(s, "a=fmtp:{pt} {f}\r\n");
        }
        s.push_str("a=sendrecv\r\n");
    }
    s
}

/// The SIP URI an H.323 alias dials: an E.164 number or an h323-ID is the
/// user part at the CVI domain; an H.323 URL (`h323:teams@x`) or an email
/// ID keeps its user part and takes the CVI domain. `None`: nothing that
/// can name a meeting or the reception.
pub fn request_uri(alias: &str, domain: &str) -> Option<String> {
    let a = alias.trim();
    let a = a
        .strip_prefix("h323:")
        .or_else(|| a.strip_prefix("H323:"))
        .unwrap_or(a);
    let user = a.split('@').next().unwrap_or("");
    // Parameters of a URL (`;user=phone`) are not part of the user.
    // A trailing `#` (the room's "dial" key) is not part of the alias.
    let user = user
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches('#');
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'));
    ok.then(|| format!("sip:{user}@{domain}"))
}

/// How a SIP refusal is told to an H.323 room: the Q.931 cause value and
/// the H.225 ReleaseCompleteReason (by name; the call task maps it to the
/// codec's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    UnreachableDestination,
    DestinationRejection,
    GatewayResources,
    InConf,
    Undefined,
    BadFormatAddress,
}

/// The table in docs/cvi.md ("H.323 room systems").
pub fn cause_of(status: u16) -> (u8, Release) {
    match status {
        404 | 604 => (1, Release::UnreachableDestination),
        480 => (18, Release::UnreachableDestination),
        410 => (22, Release::UnreachableDestination),
        486 | 600 => (17, Release::InConf),
        503 => (34, Release::GatewayResources),
        403 | 603 => (21, Release::DestinationRejection),
        488 | 606 => (88, Release::Undefined),
        415 | 501 => (65, Release::Undefined),
        408 | 504 => (102, Release::UnreachableDestination),
        484 | 485 | 416 => (28, Release::BadFormatAddress),
        487 => (16, Release::Undefined),
        _ => (31, Release::Undefined),
    }
}

/// The fixed parts of one call's SIP dialog as the room's side.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub uri: String,
    pub call_id: String,
    pub from_tag: String,
    /// The gateway's To tag, once it answered with one.
    pub to_tag: Option<String>,
    /// Our side of the in-process connection (Via sent-by, Contact).
    pub local: SocketAddr,
    /// The room's name for From (its alias or address).
    pub from_user: String,
    pub domain: String,
    pub cseq: u32,
}

impl Dialog {
    fn head(&self, method: &str, cseq: u32, branch: &str) -> String {
        let to = match &self.to_tag {
            Some(t) => format!("<{}>;tag={t}", self.uri),
            None => format!("<{}>", self.uri),
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{ip}>;tag={ft}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <sip:{user}@{local};transport=tcp>\r\nUser-Agent: fedge-h323\r\n",
            uri = self.uri,
            local = self.local,
            user = self.from_user,
            ip = self.local.ip(),
            ft = self.from_tag,
            cid = self.call_id,
        )
    }

    fn finish(mut head: String, body: Option<(&str, &str)>) -> Vec<u8> {
        match body {
            Some((ct, b)) => {
                let _ = write!(
                    head,
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            None => head.push_str("Content-Length: 0\r\n\r\n"),
        }
        head.into_bytes()
    }

    /// The INVITE (CSeq 1) with `sdp`.
    pub fn invite(&self, sdp: &str, branch: &str) -> Vec<u8> {
        let mut h = self.head("INVITE", 1, branch);
        h.push_str("Allow: INVITE, ACK, BYE, CANCEL, INFO\r\n");
        Self::finish(h, Some(("application/sdp", sdp)))
    }

    /// The ACK of a 2xx (a new branch; CSeq of the INVITE).
    pub fn ack(&self, branch: &str) -> Vec<u8> {
        Self::finish(self.head("ACK", 1, branch), None)
    }

    /// The ACK of a failure answer (the INVITE's branch, no To change).
    pub fn ack_failure(&self, invite_branch: &str) -> Vec<u8> {
        Self::finish(self.head("ACK", 1, invite_branch), None)
    }

    /// CANCEL of the INVITE (its branch).
    pub fn cancel(&self, invite_branch: &str) -> Vec<u8> {
        let mut d = self.clone();
        d.to_tag = None;
        let h = d.head("CANCEL", 1, invite_branch);
        Self::finish(h, None)
    }

    /// The ACK of a re-INVITE's answer: CSeq `cseq`; `branch` new for a
    /// 2xx, the re-INVITE's own for a failure.
    pub fn ack_at(&self, cseq: u32, branch: &str) -> Vec<u8> {
        Self::finish(self.head("ACK", cseq, branch), None)
    }

    /// A request in the dialog (BYE, INFO), with the next CSeq.
    pub fn request(&mut self, method: &str, branch: &str, body: Option<(&str, &str)>) -> Vec<u8> {
        self.cseq += 1;
        Self::finish(self.head(method, self.cseq, branch), body)
    }
}

/// The INFO body for one key press (`application/dtmf-relay`).
pub fn dtmf_body(digit: char) -> String {
    format!("Signal={digit}\r\nDuration=160\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_become_uris_at_the_cvi_domain() {
        let d = "cvi.example";
        assert_eq!(
            request_uri("1234567890", d).unwrap(),
            "sip:1234567890@cvi.example"
        );
        assert_eq!(
            request_uri("h323:teams@x.example", d).unwrap(),
            "sip:teams@cvi.example"
        );
        assert_eq!(request_uri("teams", d).unwrap(), "sip:teams@cvi.example");
        assert!(request_uri("", d).is_none());
        assert!(request_uri("a b", d).is_none());
        assert!(request_uri("x\r\nVia: evil", d).is_none());
        // Characters a SIP user part would need escaped are refused.
        assert!(request_uri("1#2", d).is_none());
        assert_eq!(
            request_uri("1234567890#", d).unwrap(),
            "sip:1234567890@cvi.example"
        );
    }

    #[test]
    fn the_cause_table() {
        assert_eq!(cause_of(404), (1, Release::UnreachableDestination));
        assert_eq!(cause_of(486).0, 17);
        assert_eq!(cause_of(503), (34, Release::GatewayResources));
        assert_eq!(cause_of(403).0, 21);
        assert_eq!(cause_of(488).0, 88);
        assert_eq!(cause_of(500).0, 31);
    }

    #[test]
    fn an_offer_and_its_answer() {
        let offer = Offer {
            audio: Some(Stream {
                rtp: "192.0.2.5:5000".parse().unwrap(),
                codecs: vec![Codec::Pcmu, Codec::Pcma],
            }),
            video: Some(Stream {
                rtp: "192.0.2.5:5002".parse().unwrap(),
                codecs: vec![Codec::H264 {
                    profile: 0x42,
                    level: 0x1f,
                }],
            }),
        };
        let sdp = offer_sdp(&offer, 7);
        assert!(sdp.contains("m=audio 5000 RTP/AVP 0 8 101\r\nc=IN IP4 192.0.2.5"));
        assert!(sdp.contains("m=video 5002 RTP/AVP 96\r\n"));
        assert!(sdp.contains("a=fmtp:96 profile-level-id=42001f"));
        let answer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
            m=video 40002 RTP/AVP 97\r\nc=IN IP4 10.0.0.2\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f\r\n";
        let a = read_answer(answer.as_bytes());
        let au = a.audio.unwrap();
        assert_eq!(au.rtp, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(au.rtcp.port(), 40001);
        assert_eq!(au.codec, Codec::Pcma);
        let v = a.video.unwrap();
        assert_eq!(v.rtp, "10.0.0.2:40002".parse().unwrap());
        assert_eq!(v.payload_type, 97);
        assert_eq!(
            v.codec,
            Codec::H264 {
                profile: 0x42,
                level: 0x1f
            }
        );
        let refused = read_answer(b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n");
        assert!(refused.audio.is_none());
        // The gateway's re-INVITE after the reception: answered with the
        // room's own addresses and the offer's first format.
        let again = answer_sdp(answer.as_bytes(), &offer, 7, 2);
        assert!(again.contains("o=h323 7 2 IN IP4 192.0.2.5"), "{again}");
        assert!(
            again.contains("m=audio 5000 RTP/AVP 8\r\nc=IN IP4 192.0.2.5\r\na=rtpmap:8 PCMA/8000"),
            "{again}"
        );
        assert!(again.contains("m=video 5002 RTP/AVP 97\r\n"), "{again}");
        // The connector's content stream (a second video): refused.
        let content = format!("{answer}m=video 6000 RTP/AVP 97\r\na=content:slides\r\n");
        let with = answer_sdp(content.as_bytes(), &offer, 7, 3);
        assert!(with.contains("m=video 5002 RTP/AVP 97\r\n"), "{with}");
        assert!(with.ends_with("m=video 0 RTP/AVP 97\r\n"), "{with}");
    }

    #[test]
    fn requests_parse_with_the_sip_parser() {
        let mut d = Dialog {
            uri: "sip:1234567890@cvi.example".into(),
            call_id: "abc@h323".into(),
            from_tag: "ft".into(),
            to_tag: None,
            local: "127.0.0.2:1720".parse().unwrap(),
            from_user: "room".into(),
            domain: "cvi.example".into(),
            cseq: 1,
        };
        let parse = |b: Vec<u8>| match crate::sip::framing::parse_datagram(
            bytes::Bytes::from(b),
            &crate::sip::parse::Limits::default(),
        ) {
            crate::sip::framing::DatagramItem::Message(m) => m,
            _ => panic!("not parsed"),
        };
        let inv = parse(d.invite("v=0\r\n", "1"));
        assert_eq!(inv.call_id(), Some("abc@h323"));
        assert_eq!(inv.body(), b"v=0\r\n");
        d.to_tag = Some("gw".into());
        let info = parse(d.request(
            "INFO",
            "2",
            Some(("application/dtmf-relay", &dtmf_body('5'))),
        ));
        assert_eq!(info.cseq().map(|c| c.seq), Some(2));
        assert_eq!(
            crate::cvi::dtmf::info_digit("application/dtmf-relay", info.body()),
            Some('5')
        );
        parse(d.ack("3"));
        parse(d.cancel("1"));
    }

    #[test]
    fn a_content_stream_is_added_and_read_back() {
        let base = "v=0\r\no=h323 7 7 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\n";
        let codec = Codec::H264 {
            profile: 0x42,
            level: 0x1f,
        };
        let mut sdp = with_version(base, 8);
        assert!(sdp.contains("o=h323 7 8 IN IP4 127.0.0.1\r\n"), "{sdp}");
        sdp.push_str(&content_section(
            "127.0.0.1:5000".parse().unwrap(),
            97,
            codec,
            3,
        ));
        assert!(sdp.contains("m=video 5000 RTP/AVP 97\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:97 H264/90000\r\n"), "{sdp}");
        assert!(sdp.contains("a=content:slides\r\na=label:3\r\na=sendonly\r\n"));
        assert_eq!(stream_count(sdp.as_bytes()), 2);
        assert_eq!(
            stream_at(sdp.as_bytes(), 1),
            Some((
                "127.0.0.1:5000".parse().unwrap(),
                "127.0.0.1:5001".parse().unwrap()
            ))
        );
        let off = content_section("127.0.0.1:0".parse().unwrap(), 97, codec, 3);
        assert!(off.starts_with("m=video 0 RTP/AVP 97\r\n"), "{off}");
        assert_eq!(stream_at(off.as_bytes(), 0), None);
        assert_eq!(stream_at(base.as_bytes(), 1), None);
    }

    #[test]
    fn the_meetings_content_is_found_and_answered_at_the_rooms_address() {
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
            m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n\
            m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
            m=video 40004 RTP/AVP 98\r\na=rtpmap:98 H264/90000\r\na=fmtp:98 profile-level-id=42e01f\r\na=content:slides\r\na=sendonly\r\n\
            m=application 40006 TCP/BFCP *\r\na=setup:passive\r\na=floorctrl:s-only\r\n";
        let c = content_offer(offer.as_bytes()).unwrap();
        assert_eq!(c.index, 2);
        assert_eq!(c.pt, 98);
        assert_eq!(
            c.relay,
            Some((
                "127.0.0.2:40004".parse().unwrap(),
                "127.0.0.2:40005".parse().unwrap()
            ))
        );
        assert_eq!(
            c.codec,
            Some(Codec::H264 {
                profile: 0x42,
                level: 0x1f
            })
        );
        assert_eq!(c.bfcp, Some(3));
        let off = offer.replace("40004", "0").replace("40006", "0");
        let c2 = content_offer(off.as_bytes()).unwrap();
        assert_eq!((c2.relay, c2.bfcp), (None, None));
        let two = offer.split("m=video 40004").next().unwrap();
        assert_eq!(content_offer(two.as_bytes()), None);
        let room = Offer {
            audio: Some(Stream {
                rtp: "127.0.0.1:5000".parse().unwrap(),
                codecs: vec![Codec::Pcma],
            }),
            video: None,
        };
        let base = answer_sdp(offer.as_bytes(), &room, 1, 2);
        let codec = c.codec.unwrap();
        let ans = replace_section(
            &base,
            2,
            &content_answer("127.0.0.1:6000".parse().unwrap(), 98, codec),
        );
        assert_eq!(stream_count(ans.as_bytes()), 4);
        assert_eq!(
            stream_at(ans.as_bytes(), 2),
            Some((
                "127.0.0.1:6000".parse().unwrap(),
                "127.0.0.1:6001".parse().unwrap()
            ))
        );
        assert!(
            ans.contains("a=content:slides\r\na=recvonly\r\nm=application 0"),
            "{ans}"
        );
        assert_eq!(replace_section(&base, 9, "m=x\r\n"), base);
    }
}
