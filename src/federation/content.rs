//! What a request carries, judged against the home service's rules: no
//! file transfer, no recording, only allowed body types, bounded size.
//!
//! Owns recognising Lync file transfer, the legacy Communicator file
//! transfer invitation, MSRP file transfer, and SIPREC. Pure: a message in,
//! an issue (or none) out. The policy decides what to answer.

use crate::sip::body::{leaves, sdp_attributes};
use crate::sip::headers::{HeaderName, NameAddr};
use crate::sip::message::SipMessage;

/// The Application-GUID of the OCS/Communicator file transfer invitation.
pub const LEGACY_FT_GUID: &str = "{5D3E02AB-6190-11d3-BBBB-00C04F795683}";

/// Something a request may not carry across the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// File transfer, with what gave it away.
    FileTransfer(&'static str),
    /// Recording (SIPREC), with what gave it away.
    Recording(&'static str),
    /// A body part of a type not on the allow-list.
    BodyType(String),
    /// A body larger than allowed (its size).
    BodyTooLarge(usize),
}

/// Body types allowed by default: IM, presence, SDP, multipart, typing
/// and delivery notifications.
pub const DEFAULT_BODY_TYPES: &[&str] = &[
    "text/plain",
    "text/html",
    "text/rtf",
    "application/sdp",
    "multipart/alternative",
    "multipart/mixed",
    "multipart/related",
    "application/im-iscomposing+xml",
    "application/ms-imdn+xml",
    "message/imdn+xml",
    "application/pidf+xml",
    "application/xpidf+xml",
    "text/xml+msrtc.pidf",
    "application/rlmi+xml",
    "application/msrtc-event-categories+xml",
    "application/msrtc-adrl-categorylist+xml",
    "application/msrtc-category-publish+xml",
    "application/xml",
];

/// The configurable part of the rules.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Allowed media types, lower-case.
    pub body_types: Vec<String>,
    pub max_body: usize,
}

/// Inspects a request's headers and body.
pub fn inspect(msg: &SipMessage, rules: &Rules) -> Option<Issue> {
    // Recording is recognisable from headers alone.
    let siprec_required = msg
        .values(HeaderName::Require)
        .any(|t| t.trim().eq_ignore_ascii_case("siprec"));
    if siprec_required {
        return Some(Issue::Recording("Require: siprec"));
    }
    let src_contact = msg
        .values(HeaderName::Contact)
        .any(|c| NameAddr::parse(c).is_ok_and(|na| na.param("+sip.src").is_some()));
    if src_contact {
        return Some(Issue::Recording("a Contact with the +sip.src feature tag"));
    }
    let body = msg.body();
    if body.is_empty() {
        return None;
    }
    if body.len() > rules.max_body {
        return Some(Issue::BodyTooLarge(body.len()));
    }
    let ct = msg.first(HeaderName::ContentType);
    let disposition = msg.first(HeaderName::ContentDisposition);
    let parts = leaves(ct, disposition, body);
    for p in &parts {
        match p.media_type.as_str() {
            "application/ms-filetransfer+xml" => {
                return Some(Issue::FileTransfer(
                    "Lync file transfer (application/ms-filetransfer+xml)",
                ));
            }
            "text/x-msmsgsinvite" => {
                let text = String::from_utf8_lossy(p.body);
                let lower = text.to_ascii_lowercase();
                if lower.contains(&LEGACY_FT_GUID.to_ascii_lowercase())
                    || lower.contains("application-name: file transfer")
                {
                    return Some(Issue::FileTransfer(
                        "a Communicator file transfer invitation (text/x-msmsgsinvite)",
                    ));
                }
            }
            "application/sdp" if sdp_attributes(p.body).any(|a| a.starts_with("file-selector")) => {
                return Some(Issue::FileTransfer(
                    "MSRP file transfer (SDP a=file-selector)",
                ));
            }
            "application/rs-metadata+xml" => {
                return Some(Issue::Recording(
                    "recording metadata (application/rs-metadata+xml)",
                ));
            }
            _ => {}
        }
        if p.disposition.is_some_and(|d| {
            d.trim()
                .to_ascii_lowercase()
                .starts_with("recording-session")
        }) {
            return Some(Issue::Recording("Content-Disposition: recording-session"));
        }
    }
    let top = crate::sip::body::media_type(ct.unwrap_or(""));
    let allowed = |t: &str| rules.body_types.iter().any(|a| a == t);
    if !top.is_empty() && !allowed(&top) {
        return Some(Issue::BodyType(top));
    }
    if let Some(p) = parts.iter().find(|p| !allowed(&p.media_type)) {
        return Some(Issue::BodyType(if p.media_type.is_empty() {
            "(none)".into()
        } else {
            p.media_type.clone()
        }));
    }
    None
}

/// What the content checks saw in a request they let through, for a
/// person (`fedge explain`): the body's size and the type of each part.
pub fn describe(msg: &SipMessage, rules: &Rules) -> String {
    let body = msg.body();
    if body.is_empty() {
        return "no recording marks, no body".into();
    }
    let ct = msg.first(HeaderName::ContentType);
    let disposition = msg.first(HeaderName::ContentDisposition);
    let types: Vec<String> = leaves(ct, disposition, body)
        .iter()
        .map(|p| p.media_type.clone())
        .collect();
    format!(
        "no recording marks, no file transfer; body of {} bytes (at most {}) of allowed type(s) {}",
        body.len(),
        rules.max_body,
        types.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse::{Limits, find_head_end, parse_framed};

    fn msg(method: &str, extra: &str, ct: &str, body: &str) -> SipMessage {
        let ct_line = if ct.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ct}\r\n")
        };
        let s = format!(
            "{method} sip:bob@home.test SIP/2.0\r\nVia: SIP/2.0/TLS p.test;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
             From: <sip:a@p.test>;tag=1\r\nTo: <sip:bob@home.test>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n{extra}{ct_line}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let raw = bytes::Bytes::from(s);
        let he = find_head_end(&raw, 0).unwrap();
        parse_framed(raw, he, &Limits::default()).unwrap()
    }

    fn rules() -> Rules {
        Rules {
            body_types: DEFAULT_BODY_TYPES.iter().map(|s| s.to_string()).collect(),
            max_body: 4096,
        }
    }

    const FT_INVITE: &str = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=data 7000 TCP/RTP/AVP 127\r\na=sendonly\r\na=mid:1\r\n\r\n--b\r\nContent-Type: application/ms-filetransfer+xml\r\nContent-Disposition: render; handling=optional\r\n\r\n<request xmlns=\"http://schemas.microsoft.com/rtc/2009/05/filetransfer\" requestId=\"1\"><publishFile><fileInfo><id>{1}</id><name>notes.docx</name><size>1234</size></fileInfo></publishFile></request>\r\n--b--\r\n";
    const LEGACY_FT: &str = "Application-Name: File Transfer\r\nApplication-GUID: {5D3E02AB-6190-11d3-BBBB-00C04F795683}\r\nInvitation-Command: INVITE\r\nInvitation-Cookie: 99\r\nApplication-File: notes.docx\r\nApplication-FileSize: 1234\r\n";
    const MSRP: &str = "v=0\r\nm=message 7394 TCP/MSRP *\r\na=accept-types:message/cpim\r\na=file-selector:name:\"notes.docx\" type:application/msword size:1234\r\n";
    const SIPREC: &str = "--r\r\nContent-Type: application/sdp\r\nContent-Disposition: session\r\n\r\nv=0\r\nm=audio 5000 RTP/AVP 0\r\na=sendonly\r\n\r\n--r\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\"/>\r\n--r--\r\n";

    /// Every content rule, one row each.
    #[test]
    fn content_table() {
        let rows: Vec<(SipMessage, Option<&str>)> = vec![
            (
                msg("MESSAGE", "", "text/plain; charset=UTF-8", "hello"),
                None,
            ),
            (
                msg(
                    "INVITE",
                    "",
                    "application/sdp",
                    "v=0\r\nm=audio 5000 RTP/AVP 0\r\n",
                ),
                None,
            ),
            (
                msg(
                    "MESSAGE",
                    "",
                    "application/im-iscomposing+xml",
                    "<isComposing/>",
                ),
                None,
            ),
            (
                msg("INVITE", "", "multipart/mixed;boundary=b", FT_INVITE),
                Some("FileTransfer"),
            ),
            (
                msg("INFO", "", "application/ms-filetransfer+xml", "<response/>"),
                Some("FileTransfer"),
            ),
            (
                msg(
                    "MESSAGE",
                    "",
                    "text/x-msmsgsinvite; charset=UTF-8",
                    LEGACY_FT,
                ),
                Some("FileTransfer"),
            ),
            (
                msg("INVITE", "", "application/sdp", MSRP),
                Some("FileTransfer"),
            ),
            (
                msg(
                    "INVITE",
                    "Require: siprec\r\n",
                    "application/sdp",
                    "v=0\r\n",
                ),
                Some("Recording"),
            ),
            (
                msg(
                    "INVITE",
                    "Contact: <sip:src@p.test>;+sip.src\r\n",
                    "application/sdp",
                    "v=0\r\n",
                ),
                Some("Recording"),
            ),
            (
                msg("INVITE", "", "multipart/mixed;boundary=r", SIPREC),
                Some("Recording"),
            ),
            (
                msg("MESSAGE", "", "application/octet-stream", "MZ"),
                Some("BodyType"),
            ),
            (
                msg(
                    "MESSAGE",
                    "",
                    "text/x-msmsgsinvite",
                    "Application-Name: Whiteboard\r\n",
                ),
                Some("BodyType"),
            ),
            (
                msg("MESSAGE", "", "text/plain", &"x".repeat(5000)),
                Some("BodyTooLarge"),
            ),
        ];
        for (i, (m, want)) in rows.iter().enumerate() {
            let got = inspect(m, &rules());
            let kind = got.as_ref().map(|g| format!("{g:?}"));
            match (want, &kind) {
                (None, None) => {}
                (Some(w), Some(k)) if k.starts_with(w) => {}
                _ => panic!("row {i}: want {want:?}, got {kind:?}"),
            }
        }
    }
}
