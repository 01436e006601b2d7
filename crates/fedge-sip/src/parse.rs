//! Parsing a framed SIP message in two phases.
//!
//! Phase one ([`index_head`]) splits the start line and the header fields
//! (folding, compact names, comma-separated values) without judging their
//! content, so that even a malformed request can be answered with a 400 that
//! echoes its Via, From, To, Call-ID and CSeq. Phase two ([`validate`])
//! checks every start-line element and every header the edge understands
//! against its RFC 3261 grammar. Owns syntax only: whether a well-formed
//! message is acceptable is decided above this layer.

use bytes::Bytes;

use super::grammar::{is_token, is_wsp};
use super::headers::{self, CSeq, HeaderError, HeaderName, NameAddr, Via};
use super::message::{HeaderEntry, Method, SipMessage, Span, StartLine};
use super::uri::{Scheme, Uri};

/// A syntax error with the status a request carrying it is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// 400, 505 (version), 501 (unknown method mismatch) or 513 (too large).
    pub status: u16,
    /// A readable reason, used in the Warning header and the log line.
    pub reason: String,
}

impl ParseError {
    pub fn bad(reason: impl Into<String>) -> ParseError {
        ParseError {
            status: 400,
            reason: reason.into(),
        }
    }

    pub fn with_status(status: u16, reason: impl Into<String>) -> ParseError {
        ParseError {
            status,
            reason: reason.into(),
        }
    }
}

/// A message that failed to parse. `partial` holds what phase one could
/// index, enough to answer a request; it is `None` when nothing usable was found.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub error: ParseError,
    pub partial: Option<SipMessage>,
}

impl Rejected {
    /// True when the rejected bytes were (as far as can be told) a request,
    /// so a stateless error response may be sent back.
    pub fn is_request(&self) -> bool {
        self.partial.as_ref().is_some_and(|m| {
            // Noise is not answered: only something with a method token and
            // a Via to answer along looks enough like a request.
            m.method().is_some_and(|me| is_token(me.as_str())) && m.first(HeaderName::Via).is_some()
        })
    }
}

/// Size limits applied while framing and parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest start line plus header section, in bytes.
    pub max_head: usize,
    /// Largest body, in bytes.
    pub max_body: usize,
    /// Most header fields in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 32 * 1024,
            max_body: 1024 * 1024,
            max_headers: 256,
        }
    }
}

/// Result of phase one: the index plus the first structural problem found,
/// if any (the index is still usable to answer the request).
pub(crate) struct Indexed {
    pub start_line: Span,
    pub kind: StartLine,
    pub headers: Vec<HeaderEntry>,
    pub problem: Option<ParseError>,
}

fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < b.len() {
        if b[i] == b'\r' && b[i + 1] == b'\n' {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Finds the end of the header section (`CRLF CRLF`) at or after `from`;
/// returns the offset just past it.
pub fn find_head_end(b: &[u8], from: usize) -> Option<usize> {
    let from = from.min(b.len());
    memchr::memmem::find(&b[from..], b"\r\n\r\n").map(|p| from + p + 4)
}

/// Phase one: indexes the start line and header fields of `head`, which
/// must end with the empty line (`CRLF CRLF`).
pub(crate) fn index_head(head: &[u8], max_headers: usize) -> Indexed {
    let mut problem: Option<ParseError> = None;
    let mut note = |p: ParseError| {
        if problem.is_none() {
            problem = Some(p);
        }
    };
    let sl_end = find_crlf(head, 0).unwrap_or(head.len());
    let start_line = Span::new(0, sl_end);
    let kind = loose_start_line(&head[..sl_end]);
    let mut headers = Vec::new();
    let mut field: Option<(usize, usize, usize)> = None; // name_start, colon, field_end
    let mut fields = 0usize;
    let mut pos = sl_end + 2;
    while pos < head.len() {
        let eol = match find_crlf(head, pos) {
            Some(e) => e,
            None => break,
        };
        if eol == pos {
            break; // the empty line
        }
        let line = &head[pos..eol];
        if line.iter().any(|&b| b == b'\r' || b == b'\n') {
            note(ParseError::bad("bare CR or LF in the header section"));
        }
        if is_wsp(line[0]) {
            match field.as_mut() {
                Some(f) => f.2 = eol,
                None => note(ParseError::bad("continuation line before the first header")),
            }
        } else {
            if let Some((ns, colon, fe)) = field.take() {
                emit_field(head, ns, colon, fe, fields, &mut headers);
            }
            fields += 1;
            if fields > max_headers {
                note(ParseError::bad(format!(
                    "more than {max_headers} header fields"
                )));
                pos = eol + 2;
                continue;
            }
            match line.iter().position(|&b| b == b':') {
                Some(c) => {
                    let name = trim_wsp_end(&line[..c]);
                    if name.is_empty() || !name.iter().all(|&b| headers::is_header_name_char(b)) {
                        note(ParseError::bad(format!(
                            "invalid header name {:?}",
                            String::from_utf8_lossy(name)
                        )));
                    } else {
                        field = Some((pos, pos + c, eol));
                    }
                }
                None => note(ParseError::bad(format!(
                    "header line without a colon: {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(40)])
                ))),
            }
        }
        pos = eol + 2;
    }
    if let Some((ns, colon, fe)) = field.take() {
        emit_field(head, ns, colon, fe, fields, &mut headers);
    }
    Indexed {
        start_line,
        kind,
        headers,
        problem,
    }
}

fn trim_wsp_end(b: &[u8]) -> &[u8] {
    let mut e = b.len();
    while e > 0 && is_wsp(b[e - 1]) {
        e -= 1;
    }
    &b[..e]
}

fn is_lws_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Adds the entries of one header field (one per value for list headers).
fn emit_field(
    head: &[u8],
    name_start: usize,
    colon: usize,
    field_end: usize,
    field_no: usize,
    out: &mut Vec<HeaderEntry>,
) {
    let name_bytes = trim_wsp_end(&head[name_start..colon]);
    let name_span = Span::new(name_start, name_start + name_bytes.len());
    let name = HeaderName::from_bytes(name_bytes);
    let line = Span::new(name_start, field_end);
    let line_no = field_no.min(u16::MAX as usize) as u16;
    let mut push = |s: usize, e: usize| {
        let (s, e) = trim_lws(head, s, e);
        let raw = &head[s..e];
        let unfolded = if raw.iter().any(|&b| b == b'\r' || b == b'\n') {
            std::str::from_utf8(raw)
                .ok()
                .map(|t| super::grammar::unfold(t).into_owned().into_boxed_str())
        } else {
            None
        };
        out.push(HeaderEntry {
            name,
            name_span,
            line,
            value: Span::new(s, e),
            line_no,
            unfolded,
        });
    };
    let vstart = colon + 1;
    if name.is_list() {
        for (s, e) in split_list(head, vstart, field_end) {
            push(s, e);
        }
    } else {
        push(vstart, field_end);
    }
}

fn trim_lws(b: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && is_lws_byte(b[s]) {
        s += 1;
    }
    while e > s && is_lws_byte(b[e - 1]) {
        e -= 1;
    }
    (s, e)
}

/// Splits `b[start..end]` at commas outside quoted strings and `< >`.
fn split_list(b: &[u8], start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(1);
    let mut seg = start;
    let mut i = start;
    let mut in_q = false;
    let mut in_a = false;
    while i < end {
        let c = b[i];
        if in_q {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_q = false;
            }
        } else {
            match c {
                b'"' => in_q = true,
                b'<' => in_a = true,
                b'>' => in_a = false,
                b',' if !in_a => {
                    out.push((seg, i));
                    seg = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push((seg, end));
    out
}

/// Reads the start line just far enough to tell requests from responses.
fn loose_start_line(line: &[u8]) -> StartLine {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let mut parts = line.splitn(3, |&b| b == b' ');
        parts.next();
        let code = parts.next().unwrap_or(&[]);
        let status = if code.len() == 3 && code.iter().all(u8::is_ascii_digit) {
            code.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'))
        } else {
            0
        };
        let reason_start = line
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b' ')
            .nth(1)
            .map_or(line.len(), |(i, _)| i + 1);
        StartLine::Response {
            status,
            reason: Span::new(reason_start, line.len()),
        }
    } else {
        let m_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let method = std::str::from_utf8(&line[..m_end]).unwrap_or("");
        let u_start = (m_end + 1).min(line.len());
        let u_end = line[u_start..]
            .iter()
            .position(|&b| b == b' ')
            .map_or(line.len(), |p| u_start + p);
        StartLine::Request {
            method: Method::from_token(method),
            uri: Span::new(u_start, u_end),
        }
    }
}

/// Builds a message from framed bytes: `raw` holds the head (ending with
/// the empty line at `head_end`) and exactly the body.
pub(crate) fn assemble(raw: Bytes, ix: Indexed, head_end: usize) -> SipMessage {
    let body = Span::new(head_end.min(raw.len()), raw.len());
    SipMessage {
        raw,
        start_line: ix.start_line,
        kind: ix.kind,
        headers: ix.headers,
        head_end,
        body,
    }
}

/// The Content-Length of an indexed head: `Ok(None)` when absent,
/// an error when invalid or given twice with different values.
pub(crate) fn content_length(head: &[u8], ix: &Indexed) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for h in ix
        .headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentLength)
    {
        let text = head
            .get(h.value.range())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("");
        let text = h.unfolded.as_deref().unwrap_or(text);
        let n = headers::parse_content_length(text)
            .map_err(|_| ParseError::bad(format!("invalid Content-Length {:?}", text.trim())))?;
        if found.is_some() {
            return Err(ParseError::bad(
                "more than one Content-Length: the body size is ambiguous",
            ));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Parses a message whose framing is already known; runs both phases.
pub fn parse_framed(
    raw: Bytes,
    head_end: usize,
    limits: &Limits,
) -> Result<SipMessage, Box<Rejected>> {
    let ix = index_head(&raw[..head_end.min(raw.len())], limits.max_headers);
    let problem = ix.problem.clone();
    let msg = assemble(raw, ix, head_end);
    if let Some(p) = problem {
        return Err(Box::new(Rejected {
            error: p,
            partial: Some(msg),
        }));
    }
    match validate(&msg) {
        Ok(()) => Ok(msg),
        Err(e) => Err(Box::new(Rejected {
            error: e,
            partial: Some(msg),
        })),
    }
}

/// Phase two: strict grammar checks of the start line and known headers.
pub fn validate(msg: &SipMessage) -> Result<(), ParseError> {
    let head = msg.raw.get(..msg.head_end).unwrap_or(&[]);
    if std::str::from_utf8(head).is_err() {
        return Err(ParseError::bad("header section is not valid UTF-8"));
    }
    let request_method = validate_start_line(msg)?;
    let mut single_seen: Vec<(HeaderName, u16)> = Vec::new();
    for h in &msg.headers {
        if h.name.is_single() {
            if let Some((_, line)) = single_seen.iter().find(|(n, _)| *n == h.name) {
                if *line != h.line_no {
                    return Err(ParseError::bad(format!(
                        "{} appears more than once",
                        h.name
                    )));
                }
            } else {
                single_seen.push((h.name, h.line_no));
            }
        }
        let v = msg.value(h);
        check_header(h.name, v, request_method.as_ref()).map_err(|e| {
            let shown = if h.name == HeaderName::Other {
                msg.name_str(h).to_string()
            } else {
                h.name.to_string()
            };
            match e {
                CheckError::Header(e) => ParseError::bad(format!("malformed {shown} header: {e}")),
                CheckError::Status(p) => p,
            }
        })?;
    }
    Ok(())
}

enum CheckError {
    Header(HeaderError),
    Status(ParseError),
}

impl From<HeaderError> for CheckError {
    fn from(e: HeaderError) -> Self {
        CheckError::Header(e)
    }
}

impl From<super::uri::UriError> for CheckError {
    fn from(e: super::uri::UriError) -> Self {
        CheckError::Header(HeaderError::Uri(e))
    }
}

fn list_elem_empty(name: HeaderName, v: &str) -> Result<bool, CheckError> {
    if !v.trim().is_empty() {
        return Ok(false);
    }
    use HeaderName::*;
    // These lists may be empty ([ element *(COMMA element) ]).
    if matches!(
        name,
        Supported | Allow | Accept | AcceptEncoding | AcceptLanguage | AllowEvents | Unsupported
    ) {
        Ok(true)
    } else {
        Err(HeaderError::Msg("empty element in a comma-separated list").into())
    }
}

fn check_header(name: HeaderName, v: &str, method: Option<&Method>) -> Result<(), CheckError> {
    use HeaderName::*;
    if name.is_list() && list_elem_empty(name, v)? {
        return Ok(());
    }
    match name {
        Via => {
            let via = self::Via::parse(v)?;
            if !via.protocol.eq_ignore_ascii_case("SIP") || via.version != "2.0" {
                return Err(CheckError::Status(ParseError::with_status(
                    505,
                    format!(
                        "Via names {}/{}, only SIP/2.0 is supported",
                        via.protocol, via.version
                    ),
                )));
            }
        }
        From | To | ReplyTo | PAssertedIdentity | PPreferredIdentity | ReferTo | ReferredBy => {
            let na = NameAddr::parse(v)?;
            na.check_params()?;
        }
        Contact if v.trim() != "*" => {
            let na = NameAddr::parse(v)?;
            na.check_params()?;
        }
        Route | RecordRoute | Path | ServiceRoute => {
            let na = NameAddr::parse(v)?;
            if !na.bracketed {
                return Err(HeaderError::Msg("route entries must be enclosed in '<' '>'").into());
            }
        }
        CallId => headers::check_call_id(v)?,
        CSeq => {
            let cs = self::CSeq::parse(v)?;
            if let Some(m) = method
                && cs.method != m.as_str()
            {
                let status = if m.is_known() { 400 } else { 501 };
                return Err(CheckError::Status(ParseError::with_status(
                    status,
                    format!(
                        "CSeq method {} does not match the request method {}",
                        cs.method, m
                    ),
                )));
            }
        }
        MaxForwards => {
            headers::parse_max_forwards(v)?;
        }
        ContentLength => {
            headers::parse_content_length(v)?;
        }
        ContentType => headers::check_media_type(v)?,
        Expires | MinExpires => {
            headers::parse_delta_seconds(v)?;
        }
        Date => headers::check_date(v)?,
        RetryAfter => headers::check_retry_after(v)?,
        Warning => headers::check_warning(v)?,
        Accept => headers::check_accept(v)?,
        Require | ProxyRequire | Supported | Unsupported | Allow | ContentEncoding
        | AllowEvents => headers::check_token_elem(v)?,
        _ => {}
    }
    Ok(())
}

/// Strictly re-reads the start line: `Method SP Request-URI SP SIP-Version`
/// or `SIP-Version SP Status-Code SP Reason-Phrase`, single spaces only.
/// Returns the request method for the CSeq check.
fn validate_start_line(msg: &SipMessage) -> Result<Option<Method>, ParseError> {
    let line = msg.start_line_str();
    match &msg.kind {
        StartLine::Response { .. } => {
            let mut parts = line.splitn(3, ' ');
            let version = parts.next().unwrap_or("");
            check_version(version)?;
            let code = parts.next().unwrap_or("");
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::bad(format!(
                    "status code {:?} is not three digits",
                    truncate(code, 20)
                )));
            }
            let n: u16 = code.parse().unwrap_or(0);
            if !(100..=699).contains(&n) {
                return Err(ParseError::bad(format!(
                    "status code {n} is outside 100-699"
                )));
            }
            if let Some(reason) = parts.next()
                && reason.bytes().any(|b| b < 0x20 && b != b'\t')
            {
                return Err(ParseError::bad("control character in the reason phrase"));
            }
            Ok(None)
        }
        StartLine::Request { .. } => {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                return Err(ParseError::bad(
                    "request line must be Method SP Request-URI SP SIP-Version, separated by single spaces",
                ));
            }
            let (method, uri, version) = (parts[0], parts[1], parts[2]);
            if !is_token(method) {
                return Err(ParseError::bad(format!(
                    "method {:?} is not a token",
                    truncate(method, 40)
                )));
            }
            check_version(version)?;
            let u = Uri::parse(uri)
                .map_err(|e| ParseError::bad(format!("malformed Request-URI: {e}")))?;
            if matches!(u.scheme, Scheme::Sip | Scheme::Sips) && u.headers.is_some() {
                return Err(ParseError::bad(
                    "Request-URI must not carry headers ('?...')",
                ));
            }
            Ok(Some(Method::from_token(method)))
        }
    }
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let looks_like = v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        && v.get(4..)
            .unwrap_or("")
            .split_once('.')
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            });
    if looks_like {
        Err(ParseError::with_status(
            505,
            format!(
                "SIP version {} is not supported, only SIP/2.0",
                truncate(v, 20)
            ),
        ))
    } else {
        Err(ParseError::bad(format!(
            "invalid SIP version {:?}",
            truncate(v, 20)
        )))
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SipMessage, Box<Rejected>> {
        let raw = Bytes::copy_from_slice(s.as_bytes());
        let he = find_head_end(&raw, 0).expect("test message has an empty line");
        parse_framed(raw, he, &Limits::default())
    }

    const OPTIONS: &str = "OPTIONS sip:user@example.com SIP/2.0\r\n\
        Via: SIP/2.0/TLS a.example.com;branch=z9hG4bK1, SIP/2.0/TLS b.example.com;branch=z9hG4bK2\r\n\
        v: SIP/2.0/TLS c.example.com;branch=z9hG4bK3\r\n\
        To: <sip:user@example.com>\r\n\
        f: \"Alice, A.\" <sip:alice@example.org>;tag=1\r\n\
        i: abc@host\r\n\
        CSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\n\
        X-Custom: a, b\r\n\
        l: 0\r\n\r\n";

    #[test]
    fn index_splits_lists_and_expands_compact_names() {
        let m = parse(OPTIONS).unwrap();
        let vias: Vec<_> = m.vias().map(|v| v.host.to_string()).collect();
        assert_eq!(vias, ["a.example.com", "b.example.com", "c.example.com"]);
        assert_eq!(m.from().unwrap().tag(), Some("1"));
        assert_eq!(m.call_id(), Some("abc@host"));
        assert_eq!(m.values_named("x-custom").collect::<Vec<_>>(), ["a, b"]);
        assert_eq!(m.method(), Some(&Method::Options));
        assert_eq!(m.max_forwards(), Some(70));
    }

    #[test]
    fn folded_values_are_unfolded() {
        let s = OPTIONS.replace("CSeq: 1 OPTIONS", "CSeq: 1\r\n  OPTIONS");
        let m = parse(&s).unwrap();
        assert_eq!(m.cseq().unwrap().method, "OPTIONS");
    }

    #[test]
    fn errors_keep_the_partial_index() {
        let s = OPTIONS.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
        let r = parse(&s).unwrap_err();
        assert_eq!(r.error.status, 400);
        assert!(r.is_request());
        assert!(r.error.reason.contains("CSeq method"));
    }

    #[test]
    fn duplicate_single_headers_are_rejected() {
        let s = OPTIONS.replace("i: abc@host\r\n", "i: abc@host\r\nCall-ID: other@host\r\n");
        assert!(
            parse(&s)
                .unwrap_err()
                .error
                .reason
                .contains("more than once")
        );
    }

    #[test]
    fn header_without_colon() {
        let s = OPTIONS.replace("Max-Forwards: 70", "Max-Forwards 70");
        assert!(
            parse(&s)
                .unwrap_err()
                .error
                .reason
                .contains("without a colon")
        );
    }
}
