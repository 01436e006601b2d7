//! [`SipMessage`]: a SIP message kept as its original bytes plus an index of
//! its start line and header values.
//!
//! Owns read access to a message. Forwarding never rebuilds a message from
//! this index: it edits the few spans it must touch (see [`super::edit`])
//! and copies every other byte as received.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

use super::headers::{CSeq, HeaderName, NameAddr, Via};
use super::uri::Uri;

/// A byte range inside a message's raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A request method. Methods are case-sensitive (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Message,
    Info,
    Subscribe,
    Notify,
    /// Microsoft's NOTIFY that is never answered ([MS-SIP] §3.5).
    Benotify,
    Service,
    Update,
    Prack,
    Refer,
    Publish,
    /// Any other method token.
    Other(Box<str>),
}

impl Method {
    pub fn from_token(t: &str) -> Method {
        match t {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "BENOTIFY" => Method::Benotify,
            "SERVICE" => Method::Service,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "REFER" => Method::Refer,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Benotify => "BENOTIFY",
            Method::Service => "SERVICE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// True for methods this code base knows by name.
    pub fn is_known(&self) -> bool {
        !matches!(self, Method::Other(_))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        uri: Span,
    },
    /// `status` is 0 when the code could not be read at all.
    Response {
        status: u16,
        reason: Span,
    },
}

/// One header value. A comma-separated line yields one entry per value;
/// the entries of one line share `line` and `line_no`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEntry {
    pub name: HeaderName,
    pub name_span: Span,
    /// The whole field, name to last continuation line, without the final CRLF.
    pub line: Span,
    /// This value, trimmed of surrounding white space.
    pub value: Span,
    /// Index of the physical header field this value came from.
    pub line_no: u16,
    /// The value with folding removed, kept only when the raw value was folded.
    pub unfolded: Option<Box<str>>,
}

/// A SIP message: raw bytes and the index over them.
#[derive(Clone, PartialEq, Eq)]
pub struct SipMessage {
    pub(crate) raw: Bytes,
    pub(crate) start_line: Span,
    pub(crate) kind: StartLine,
    pub(crate) headers: Vec<HeaderEntry>,
    /// Offset of the body (just after the empty line).
    pub(crate) head_end: usize,
    pub(crate) body: Span,
}

impl fmt::Debug for SipMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipMessage")
            .field("start_line", &self.start_line_str())
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl SipMessage {
    /// The bytes of the message as received (trailing datagram octets excluded).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Text of a span; spans always fall on character boundaries of the
    /// UTF-8 checked header section, so this never loses text in practice.
    pub fn text(&self, span: Span) -> &str {
        self.raw
            .get(span.range())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    pub fn start_line_str(&self) -> &str {
        self.text(self.start_line)
    }

    pub fn start_line_span(&self) -> Span {
        self.start_line
    }

    pub fn kind(&self) -> &StartLine {
        &self.kind
    }

    pub fn is_request(&self) -> bool {
        matches!(self.kind, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.kind {
            StartLine::Request { method, .. } => Some(method),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.kind {
            StartLine::Response { status, .. } => Some(status),
            _ => None,
        }
    }

    pub fn reason_phrase(&self) -> Option<&str> {
        match self.kind {
            StartLine::Response { reason, .. } => Some(self.text(reason)),
            _ => None,
        }
    }

    pub fn request_uri_str(&self) -> Option<&str> {
        match self.kind {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            _ => None,
        }
    }

    pub fn request_uri_span(&self) -> Option<Span> {
        match self.kind {
            StartLine::Request { uri, .. } => Some(uri),
            _ => None,
        }
    }

    /// The parsed Request-URI (already validated when the message parsed).
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        self.request_uri_str().and_then(|s| Uri::parse(s).ok())
    }

    pub fn headers(&self) -> &[HeaderEntry] {
        &self.headers
    }

    /// A header value with folding removed.
    pub fn value<'s>(&'s self, h: &'s HeaderEntry) -> &'s str {
        match &h.unfolded {
            Some(u) => u,
            None => self.text(h.value),
        }
    }

    /// A header's raw name as written (for headers the edge does not know).
    pub fn name_str(&self, h: &HeaderEntry) -> &str {
        self.text(h.name_span)
    }

    /// All values of a known header, in order.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| self.value(h))
    }

    /// The first value of a known header.
    pub fn first(&self, name: HeaderName) -> Option<&str> {
        self.values(name).next()
    }

    /// Entry indices of a known header, in order.
    pub fn indices(&self, name: HeaderName) -> impl Iterator<Item = usize> + '_ {
        self.headers
            .iter()
            .enumerate()
            .filter(move |(_, h)| h.name == name)
            .map(|(i, _)| i)
    }

    /// Values of any header by name, compact forms and unknown names included.
    pub fn values_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> {
        let known = HeaderName::from_bytes(name.as_bytes());
        self.headers
            .iter()
            .filter(move |h| {
                if known == HeaderName::Other {
                    h.name == HeaderName::Other && self.name_str(h).eq_ignore_ascii_case(name)
                } else {
                    h.name == known
                }
            })
            .map(|h| self.value(h))
    }

    pub fn top_via(&self) -> Option<Via<'_>> {
        self.first(HeaderName::Via).and_then(|v| Via::parse(v).ok())
    }

    pub fn vias(&self) -> impl Iterator<Item = Via<'_>> {
        self.values(HeaderName::Via)
            .filter_map(|v| Via::parse(v).ok())
    }

    pub fn from(&self) -> Option<NameAddr<'_>> {
        self.first(HeaderName::From)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    pub fn to(&self) -> Option<NameAddr<'_>> {
        self.first(HeaderName::To)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    pub fn call_id(&self) -> Option<&str> {
        self.first(HeaderName::CallId)
    }

    pub fn cseq(&self) -> Option<CSeq<'_>> {
        self.first(HeaderName::CSeq)
            .and_then(|v| CSeq::parse(v).ok())
    }

    pub fn max_forwards(&self) -> Option<u8> {
        self.first(HeaderName::MaxForwards)
            .and_then(|v| super::headers::parse_max_forwards(v).ok())
    }

    pub fn body(&self) -> &[u8] {
        self.raw.get(self.body.range()).unwrap_or(&[])
    }

    /// The body as shared bytes (no copy).
    pub fn body_bytes(&self) -> Bytes {
        self.raw.slice(self.body.range())
    }

    pub fn body_span(&self) -> Span {
        self.body
    }

    /// Offset where the body starts (just after the empty line).
    pub fn head_end(&self) -> usize {
        self.head_end
    }

    /// A short description for logs: `INVITE sip:x@y` or `200 OK (INVITE)`.
    pub fn summary(&self) -> Cow<'_, str> {
        match &self.kind {
            StartLine::Request { method, uri } => {
                Cow::Owned(format!("{method} {}", self.text(*uri)))
            }
            StartLine::Response { status, .. } => {
                let m = self.cseq().map(|c| c.method).unwrap_or("?");
                Cow::Owned(format!("{status} ({m})"))
            }
        }
    }
}
