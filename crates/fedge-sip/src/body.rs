//! Reading message bodies: media types, MIME multipart parts (nested),
//! and SDP attribute lines.
//!
//! Owns body syntax only, so that rules above can ask "which media types
//! does this message carry, and with which dispositions?" without parsing
//! MIME themselves. It never changes a body.

use super::grammar::{Cursor, find_param};

/// One body part (or the whole body when it is not multipart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// Lower-cased `type/subtype` (empty when absent).
    pub media_type: String,
    /// The Content-Disposition value as written, if any.
    pub disposition: Option<&'a str>,
    pub body: &'a [u8],
}

/// Most nesting levels of multipart read.
const MAX_DEPTH: usize = 4;
/// Most parts read from one body.
const MAX_PARTS: usize = 64;

/// The `type/subtype` of a Content-Type value, lower-cased.
pub fn media_type(content_type: &str) -> String {
    let mut c = Cursor::new(content_type);
    c.sws();
    let t = c.token().unwrap_or("");
    c.eat_sep(b'/');
    let s = c.token().unwrap_or("");
    if t.is_empty() {
        String::new()
    } else {
        format!("{}/{}", t.to_ascii_lowercase(), s.to_ascii_lowercase())
    }
}

/// The boundary parameter of a multipart Content-Type.
fn boundary(content_type: &str) -> Option<String> {
    let params = content_type
        .find(';')
        .map(|i| &content_type[i..])
        .unwrap_or("");
    let b = find_param(params, "boundary")??;
    let b = b.trim();
    let b = b
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(b);
    (!b.is_empty()).then(|| b.to_string())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|p| from + p)
}

/// The next boundary delimiter at or after `from`: only at the start of a
/// line counts (RFC 2046 §5.1.1), so content that happens to contain
/// `--boundary` mid-line is not split.
fn find_delimiter(body: &[u8], delim: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let p = find(body, delim, from)?;
        if p == 0 || body[p - 1] == b'\n' {
            return Some(p);
        }
        from = p + 1;
    }
}

/// Splits a part into its header lines and body (blank line between).
fn split_part(p: &[u8]) -> (&[u8], &[u8]) {
    if let Some(i) = find(p, b"\r\n\r\n", 0) {
        return (&p[..i], &p[i + 4..]);
    }
    if let Some(i) = find(p, b"\n\n", 0) {
        return (&p[..i], &p[i + 2..]);
    }
    if p.starts_with(b"\r\n") {
        return (&[], &p[2..]);
    }
    (&[], p)
}

fn part_header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(head).ok()?;
    text.split('\n').find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Every leaf part of a body with the given Content-Type (multipart is
/// opened, nested ones too); a non-multipart body is one part.
pub fn leaves<'a>(
    content_type: Option<&str>,
    disposition: Option<&'a str>,
    body: &'a [u8],
) -> Vec<Part<'a>> {
    let mut out = Vec::new();
    collect(content_type.unwrap_or(""), disposition, body, 0, &mut out);
    out
}

fn collect<'a>(
    ct: &str,
    disp: Option<&'a str>,
    body: &'a [u8],
    depth: usize,
    out: &mut Vec<Part<'a>>,
) {
    let mt = media_type(ct);
    if out.len() >= MAX_PARTS {
        return;
    }
    if !mt.starts_with("multipart/") || depth >= MAX_DEPTH {
        out.push(Part {
            media_type: mt,
            disposition: disp,
            body,
        });
        return;
    }
    let Some(b) = boundary(ct) else {
        out.push(Part {
            media_type: mt,
            disposition: disp,
            body,
        });
        return;
    };
    let delim = format!("--{b}");
    let d = delim.as_bytes();
    let mut pos = match find_delimiter(body, d, 0) {
        Some(p) => p,
        None => return,
    };
    loop {
        let after = pos + d.len();
        if body.get(after..after + 2) == Some(b"--") {
            return; // closing delimiter
        }
        let start = match find(body, b"\n", after) {
            Some(nl) => nl + 1,
            None => return,
        };
        let next = find_delimiter(body, d, start);
        let end = next.unwrap_or(body.len());
        // The CRLF before a delimiter belongs to the delimiter.
        let mut content_end = end;
        if content_end >= start + 2 && &body[content_end - 2..content_end] == b"\r\n" {
            content_end -= 2;
        } else if content_end > start && body[content_end - 1] == b'\n' {
            content_end -= 1;
        }
        let (head, part_body) = split_part(&body[start..content_end.max(start)]);
        let pct = part_header(head, "content-type").unwrap_or("text/plain");
        let pdisp = part_header(head, "content-disposition");
        collect(pct, pdisp, part_body, depth + 1, out);
        match next {
            Some(n) if out.len() < MAX_PARTS => pos = n,
            _ => return,
        }
    }
}

/// Where `part` (a slice of `body`, as [`leaves`] returns them) lies in it.
pub fn range_in(body: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= body.len()).then_some(start..end)
}

/// `body` with the given ranges (in order, not overlapping) replaced.
pub fn replace_ranges(body: &[u8], edits: &[(std::ops::Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let extra: usize = edits.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for (r, b) in edits {
        if r.start < at || r.end > body.len() {
            continue;
        }
        out.extend_from_slice(&body[at..r.start]);
        out.extend_from_slice(b);
        at = r.end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// The `a=` attribute lines of an SDP body (without `a=`).
pub fn sdp_attributes(sdp: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(sdp)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("a="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(media_type("Application/SDP"), "application/sdp");
        assert_eq!(
            media_type("text/plain; charset=UTF-8;msgr=WAA"),
            "text/plain"
        );
        assert_eq!(
            media_type("multipart/mixed ;boundary=\"x y\""),
            "multipart/mixed"
        );
        assert_eq!(media_type(""), "");
    }

    #[test]
    fn lync_file_transfer_invite_body() {
        let body = b"--frontier\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=data 4567 TCP/RTP/AVP 127\r\na=sendonly\r\n\r\n--frontier\r\nContent-Type: application/ms-filetransfer+xml\r\nContent-Disposition: render; handling=optional\r\n\r\n<request xmlns=\"http://schemas.microsoft.com/rtc/2009/05/filetransfer\" requestId=\"1\"><publishFile/></request>\r\n--frontier--\r\n";
        let parts = leaves(Some("multipart/mixed;boundary=frontier"), None, body);
        let types: Vec<&str> = parts.iter().map(|p| p.media_type.as_str()).collect();
        assert_eq!(
            types,
            ["application/sdp", "application/ms-filetransfer+xml"]
        );
        assert_eq!(parts[1].disposition, Some("render; handling=optional"));
        assert!(parts[1].body.starts_with(b"<request"));
        assert!(parts[0].body.ends_with(b"a=sendonly\r\n"));
    }

    #[test]
    fn nested_and_quoted_boundaries() {
        let inner = "--in\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--in\r\nContent-Type: application/sdp\r\n\r\nv=1\r\n--in--";
        let outer = format!(
            "--out\r\nContent-Type: multipart/alternative; boundary=\"in\"\r\n\r\n{inner}\r\n--out\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n<recording/>\r\n--out--\r\n"
        );
        let parts = leaves(
            Some("multipart/mixed; boundary=\"out\""),
            None,
            outer.as_bytes(),
        );
        let types: Vec<&str> = parts.iter().map(|p| p.media_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "application/sdp",
                "application/sdp",
                "application/rs-metadata+xml"
            ]
        );
        assert_eq!(parts[2].disposition, Some("recording-session"));
        // A delimiter counts only at the start of a line.
        let body = "--b\r\nContent-Type: text/plain\r\n\r\nsee x--b here\r\n--b\r\nContent-Type: text/html\r\n\r\n<p/>\r\n--b--\r\n";
        let parts = leaves(
            Some("multipart/alternative; boundary=b"),
            None,
            body.as_bytes(),
        );
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[0].body, b"see x--b here");
        assert_eq!(parts[1].media_type, "text/html");
    }

    #[test]
    fn broken_multipart_never_panics() {
        for body in [
            &b""[..],
            b"--b",
            b"--b\r\n",
            b"junk --b\r\nContent-Type: x/y\r\n\r\nz",
            b"--b\r\n\r\n--b--",
        ] {
            let _ = leaves(Some("multipart/mixed;boundary=b"), None, body);
        }
        // No boundary: the body is one opaque part.
        assert_eq!(leaves(Some("multipart/mixed"), None, b"x").len(), 1);
    }

    #[test]
    fn sdp_attribute_lines() {
        let sdp = b"v=0\r\nm=message 7394 TCP/MSRP *\r\na=accept-types:message/cpim\r\na=file-selector:name:\"a.pdf\" type:application/pdf size:1\r\n";
        let a: Vec<&str> = sdp_attributes(sdp).collect();
        assert!(a.iter().any(|l| l.starts_with("file-selector:")));
    }
}
