//! In-place editing of a received message for forwarding.
//!
//! Owns the one way the edge changes a message it relays: a list of
//! splices over the original bytes (insert a header line, replace or remove
//! one value, swap the Request-URI or the body). Everything not named by a
//! splice is copied byte for byte, so unknown headers, their order, case,
//! folding and the body survive untouched. A line is rebuilt only when one
//! of several comma-separated values on it is removed or replaced.

use bytes::{Bytes, BytesMut};

use super::headers::HeaderName;
use super::message::{SipMessage, Span};

#[derive(Debug)]
struct Splice {
    start: usize,
    end: usize,
    seq: u32,
    data: Vec<u8>,
}

#[derive(Debug)]
enum ValueOp {
    Remove,
    Replace(String),
}

/// Accumulates edits over one message; [`Editor::finish`] writes the result.
#[derive(Debug)]
pub struct Editor<'m> {
    msg: &'m SipMessage,
    splices: Vec<Splice>,
    value_ops: Vec<(usize, ValueOp)>,
    body: Option<Bytes>,
    seq: u32,
}

impl<'m> Editor<'m> {
    pub fn new(msg: &'m SipMessage) -> Self {
        Editor {
            msg,
            splices: Vec::new(),
            value_ops: Vec::new(),
            body: None,
            seq: 0,
        }
    }

    fn splice(&mut self, start: usize, end: usize, data: Vec<u8>) {
        self.seq += 1;
        self.splices.push(Splice {
            start,
            end,
            seq: self.seq,
            data,
        });
    }

    fn line(name: &str, value: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(name.len() + value.len() + 4);
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(b": ");
        v.extend_from_slice(value.as_bytes());
        v.extend_from_slice(b"\r\n");
        v
    }

    /// Replaces the Request-URI of a request.
    pub fn set_request_uri(&mut self, uri: &str) {
        if let Some(span) = self.msg.request_uri_span() {
            self.splice(
                span.start as usize,
                span.end as usize,
                uri.as_bytes().to_vec(),
            );
        }
    }

    /// Replaces header value number `idx` (an index into [`SipMessage::headers`]).
    pub fn replace_value(&mut self, idx: usize, value: impl Into<String>) {
        self.value_ops.push((idx, ValueOp::Replace(value.into())));
    }

    /// Removes header value number `idx`; its line goes when no value is left on it.
    pub fn remove_value(&mut self, idx: usize) {
        self.value_ops.push((idx, ValueOp::Remove));
    }

    /// Removes every value of a header.
    pub fn remove_all(&mut self, name: HeaderName) {
        let idx: Vec<usize> = self.msg.indices(name).collect();
        for i in idx {
            self.remove_value(i);
        }
    }

    /// Removes every value of an unknown header named `name` (case-insensitive).
    pub fn remove_all_named(&mut self, name: &str) {
        let idx: Vec<usize> = self
            .msg
            .headers()
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                h.name == HeaderName::Other && self.msg.name_str(h).eq_ignore_ascii_case(name)
            })
            .map(|(i, _)| i)
            .collect();
        for i in idx {
            self.remove_value(i);
        }
    }

    /// Removes every value of a header given by name (full or compact form,
    /// known or not).
    pub fn remove_header(&mut self, name: &str) {
        match HeaderName::from_bytes(name.as_bytes()) {
            HeaderName::Other => self.remove_all_named(name),
            known => self.remove_all(known),
        }
    }

    /// Inserts a header line as the first header of the message.
    pub fn insert_top(&mut self, name: &str, value: &str) {
        let pos = self.msg.start_line_span().end as usize + 2;
        self.splice(pos, pos, Self::line(name, value));
    }

    /// Inserts a header line just above the first line of header `name`,
    /// or as the first header when there is none (Via, Record-Route).
    pub fn insert_before_first(&mut self, name: HeaderName, value: &str) {
        match self.msg.headers().iter().find(|h| h.name == name) {
            Some(h) => {
                let pos = h.line.start as usize;
                self.splice(pos, pos, Self::line(name.as_str(), value));
            }
            None => self.insert_top(name.as_str(), value),
        }
    }

    /// Appends a header line after the last header.
    pub fn append(&mut self, name: &str, value: &str) {
        let pos = self.msg.head_end() - 2;
        self.splice(pos, pos, Self::line(name, value));
    }

    /// Replaces the body and sets Content-Length to match.
    pub fn set_body(&mut self, body: Bytes) {
        self.body = Some(body);
    }

    /// Writes the edited message.
    pub fn finish(mut self) -> Bytes {
        let msg = self.msg;
        if let Some(body) = self.body.take() {
            let len = body.len().to_string();
            let mut cl = msg.indices(HeaderName::ContentLength);
            match cl.next() {
                Some(i) => self.value_ops.push((i, ValueOp::Replace(len))),
                None => self.append("Content-Length", &len),
            }
            let b = msg.body_span();
            self.splice(b.start as usize, b.end as usize, body.to_vec());
        }
        self.apply_value_ops();
        let raw = msg.raw();
        let mut splices = std::mem::take(&mut self.splices);
        splices.sort_by_key(|s| (s.start, s.end != s.start, s.seq));
        let extra: usize = splices.iter().map(|s| s.data.len()).sum();
        let mut out = BytesMut::with_capacity(raw.len() + extra);
        let mut at = 0usize;
        for s in &splices {
            if s.start < at {
                // Overlapping edits cannot happen with this API; skip rather than corrupt.
                continue;
            }
            out.extend_from_slice(&raw[at..s.start]);
            out.extend_from_slice(&s.data);
            at = s.end;
        }
        out.extend_from_slice(&raw[at.min(raw.len())..]);
        out.freeze()
    }

    fn apply_value_ops(&mut self) {
        if self.value_ops.is_empty() {
            return;
        }
        let msg = self.msg;
        let headers = msg.headers();
        let mut lines: Vec<u16> = self
            .value_ops
            .iter()
            .filter_map(|(i, _)| headers.get(*i).map(|h| h.line_no))
            .collect();
        lines.sort_unstable();
        lines.dedup();
        for line_no in lines {
            let members: Vec<usize> = headers
                .iter()
                .enumerate()
                .filter(|(_, h)| h.line_no == line_no)
                .map(|(i, _)| i)
                .collect();
            let Some(&first) = members.first() else {
                continue;
            };
            let line: Span = headers[first].line;
            let op_for = |i: usize| {
                self.value_ops
                    .iter()
                    .rev()
                    .find(|(j, _)| *j == i)
                    .map(|(_, op)| op)
            };
            let kept: Vec<(usize, Option<&ValueOp>)> = members
                .iter()
                .map(|&i| (i, op_for(i)))
                .filter(|(_, op)| !matches!(op, Some(ValueOp::Remove)))
                .collect();
            let new = if kept.is_empty() {
                // Remove the whole field with its CRLF.
                Some((line.start as usize, line.end as usize + 2, Vec::new()))
            } else if members.len() == 1 {
                match kept[0].1 {
                    Some(ValueOp::Replace(v)) => {
                        let s = headers[first].value;
                        Some((s.start as usize, s.end as usize, v.as_bytes().to_vec()))
                    }
                    _ => None,
                }
            } else {
                let mut data = msg.text(headers[first].name_span).as_bytes().to_vec();
                data.extend_from_slice(b": ");
                for (n, (i, op)) in kept.iter().enumerate() {
                    if n > 0 {
                        data.extend_from_slice(b", ");
                    }
                    match op {
                        Some(ValueOp::Replace(v)) => data.extend_from_slice(v.as_bytes()),
                        _ => data.extend_from_slice(msg.value(&headers[*i]).as_bytes()),
                    }
                }
                Some((line.start as usize, line.end as usize, data))
            };
            if let Some((s, e, d)) = new {
                self.splice(s, e, d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Limits, find_head_end, parse_framed};

    fn parse(s: &str) -> SipMessage {
        let raw = Bytes::copy_from_slice(s.as_bytes());
        let he = find_head_end(&raw, 0).unwrap();
        parse_framed(raw, he, &Limits::default()).unwrap()
    }

    const MSG: &str = "MESSAGE sip:bob@home.test SIP/2.0\r\n\
        Via: SIP/2.0/TLS a.partner.test;branch=z9hG4bK1, SIP/2.0/TLS b.partner.test;branch=z9hG4bK2\r\n\
        Max-Forwards: 70\r\n\
        Route: <sip:edge.home.test;lr>\r\n\
        From: <sip:alice@partner.test>;tag=1\r\n\
        To: <sip:bob@home.test>\r\n\
        Call-ID: x1\r\n\
        CSeq: 1 MESSAGE\r\n\
        X-Odd:   keep   this  \r\n\
        Content-Type: text/plain\r\n\
        Content-Length: 5\r\n\r\nhello";

    #[test]
    fn untouched_message_is_identical() {
        let m = parse(MSG);
        assert_eq!(Editor::new(&m).finish(), m.raw());
    }

    #[test]
    fn proxy_style_edits_touch_only_their_spans() {
        let m = parse(MSG);
        let mut e = Editor::new(&m);
        e.insert_before_first(
            HeaderName::Via,
            "SIP/2.0/UDP 127.0.0.1:5065;branch=z9hG4bKedge",
        );
        let mf = m.indices(HeaderName::MaxForwards).next().unwrap();
        e.replace_value(mf, "69");
        let route = m.indices(HeaderName::Route).next().unwrap();
        e.remove_value(route);
        e.insert_before_first(HeaderName::RecordRoute, "<sip:edge.home.test;lr>");
        let out = e.finish();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with(
            "MESSAGE sip:bob@home.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5065;branch=z9hG4bKedge\r\nRecord-Route: <sip:edge.home.test;lr>\r\nVia: SIP/2.0/TLS a.partner.test"
        ));
        assert!(text.contains("Max-Forwards: 69\r\n"));
        assert!(!text.contains("Route: <sip:edge.home.test;lr>\r\nFrom"));
        assert!(text.contains("X-Odd:   keep   this  \r\n"));
        assert!(text.ends_with("Content-Length: 5\r\n\r\nhello"));
        // and the result parses again
        let again = parse(text);
        assert_eq!(again.vias().count(), 3);
    }

    #[test]
    fn removing_one_of_several_values_rebuilds_that_line_only() {
        let m = parse(MSG);
        let mut e = Editor::new(&m);
        let first_via = m.indices(HeaderName::Via).next().unwrap();
        e.remove_value(first_via);
        let out = e.finish();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.contains("\r\nVia: SIP/2.0/TLS b.partner.test;branch=z9hG4bK2\r\nMax-Forwards")
        );
    }

    #[test]
    fn body_replacement_updates_content_length() {
        let m = parse(MSG);
        let mut e = Editor::new(&m);
        e.set_body(Bytes::from_static(b"hello, world"));
        let out = e.finish();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.ends_with("Content-Length: 12\r\n\r\nhello, world"));
    }

    #[test]
    fn set_request_uri_and_append() {
        let m = parse(MSG);
        let mut e = Editor::new(&m);
        e.set_request_uri("sip:bob@10.0.0.1:5060;transport=tcp");
        e.append(
            "ms-edge-proxy-message-trust",
            "ms-source-type=DirectPartner",
        );
        let out = e.finish();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("MESSAGE sip:bob@10.0.0.1:5060;transport=tcp SIP/2.0\r\n"));
        assert!(text.contains("Content-Length: 5\r\nms-edge-proxy-message-trust: ms-source-type=DirectPartner\r\n\r\nhello"));
    }
}
