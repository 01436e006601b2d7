//! Header names (full and compact forms) and the typed grammars of the
//! headers the edge reads: Via, name-addr headers, CSeq, Max-Forwards,
//! Content-Length, Call-ID, Date, Expires, Retry-After, Warning,
//! Content-Type and option-tag lists.
//!
//! Owns header syntax: which headers are comma-separated lists, which may
//! appear only once, and what a well-formed value of each looks like.
//! Parsers take unfolded text and borrow from it; they never allocate on
//! the success path and never panic.

use std::fmt;

use super::grammar::{
    Cursor, LexError, find_param, is_token, is_token_char, is_word_char, parse_decimal,
};
use super::uri::{Host, Uri, UriError, parse_host};

/// Largest value of a 32-bit unsigned scalar (CSeq, Expires, delta-seconds).
pub const U32_MAX: u64 = u32::MAX as u64;

macro_rules! header_names {
    ($( $variant:ident => $canon:literal $(, $compact:literal)? ; )*) => {
        /// A header field name. Known names are matched case-insensitively,
        /// compact forms included; anything else is [`HeaderName::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $( $variant, )*
            /// A header the edge does not interpret; its raw name is kept in the message.
            Other,
        }

        impl HeaderName {
            /// The canonical spelling, used when the edge writes a header.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other => "",
                }
            }

            /// Recognises a header name, full or compact, in any case.
            pub fn from_bytes(name: &[u8]) -> HeaderName {
                if name.len() == 1 {
                    let c = name[0].to_ascii_lowercase();
                    $( $( if c == $compact { return HeaderName::$variant; } )? )*
                    return HeaderName::Other;
                }
                $( if name.eq_ignore_ascii_case($canon.as_bytes()) { return HeaderName::$variant; } )*
                HeaderName::Other
            }
        }
    };
}

header_names! {
    Via => "Via", b'v';
    From => "From", b'f';
    To => "To", b't';
    CallId => "Call-ID", b'i';
    CSeq => "CSeq";
    MaxForwards => "Max-Forwards";
    ContentLength => "Content-Length", b'l';
    ContentType => "Content-Type", b'c';
    ContentEncoding => "Content-Encoding", b'e';
    ContentDisposition => "Content-Disposition";
    Contact => "Contact", b'm';
    Route => "Route";
    RecordRoute => "Record-Route";
    Path => "Path";
    ServiceRoute => "Service-Route";
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Supported => "Supported", b'k';
    Unsupported => "Unsupported";
    Allow => "Allow";
    AllowEvents => "Allow-Events", b'u';
    Accept => "Accept";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    ContentLanguage => "Content-Language";
    Expires => "Expires";
    MinExpires => "Min-Expires";
    Date => "Date";
    RetryAfter => "Retry-After";
    Warning => "Warning";
    Subject => "Subject", b's';
    Event => "Event", b'o';
    ReferTo => "Refer-To", b'r';
    ReferredBy => "Referred-By", b'b';
    ReplyTo => "Reply-To";
    PAssertedIdentity => "P-Asserted-Identity";
    PPreferredIdentity => "P-Preferred-Identity";
    UserAgent => "User-Agent";
    Server => "Server";
    Authorization => "Authorization";
    ProxyAuthorization => "Proxy-Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    SessionExpires => "Session-Expires", b'x';
    AcceptContact => "Accept-Contact", b'a';
    RejectContact => "Reject-Contact", b'j';
    RequestDisposition => "Request-Disposition", b'd';
    Identity => "Identity", b'y';
    IdentityInfo => "Identity-Info", b'n';
    MsDiagnostics => "ms-diagnostics";
    MsDiagnosticsPublic => "ms-diagnostics-public";
    MsEdgeProxyMessageTrust => "ms-edge-proxy-message-trust";
}

impl HeaderName {
    /// Headers whose grammar is a comma-separated list (`#element`), so that
    /// one line may carry several values. Unknown headers are never split.
    pub fn is_list(&self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | Path
                | ServiceRoute
                | Require
                | ProxyRequire
                | Supported
                | Unsupported
                | Allow
                | AllowEvents
                | Accept
                | AcceptEncoding
                | AcceptLanguage
                | ContentEncoding
                | ContentLanguage
                | Warning
                | PAssertedIdentity
                | PPreferredIdentity
                | AcceptContact
                | RejectContact
        )
    }

    /// Headers that may appear at most once in a message.
    pub fn is_single(&self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            From | To | CallId | CSeq | MaxForwards | ContentLength | ContentType
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a header value is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{0}")]
    Lex(String),
    #[error("{0}")]
    Uri(#[from] UriError),
    #[error("{0}")]
    Msg(&'static str),
}

impl From<LexError> for HeaderError {
    fn from(e: LexError) -> Self {
        HeaderError::Lex(e.to_string())
    }
}

type HResult<T> = Result<T, HeaderError>;

/// One Via value: `SIP/2.0/TLS host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    pub protocol: &'a str,
    pub version: &'a str,
    pub transport: &'a str,
    pub host: Host<'a>,
    pub port: Option<u16>,
    /// Raw parameters starting at `;` (empty if none).
    pub params: &'a str,
}

impl<'a> Via<'a> {
    pub fn parse(s: &'a str) -> HResult<Via<'a>> {
        let mut c = Cursor::new(s);
        c.sws();
        let protocol = c.token()?;
        if !c.eat_sep(b'/') {
            return Err(c.err("'/' after protocol name").into());
        }
        let version = c.token()?;
        if !c.eat_sep(b'/') {
            return Err(c.err("'/' after protocol version").into());
        }
        let transport = c.token()?;
        let before = c.pos();
        c.sws();
        if c.pos() == before {
            return Err(c.err("white space before sent-by").into());
        }
        let host = host_at(&mut c)?;
        let mut port = None;
        if c.eat_sep(b':') {
            let p = c.take_while(|b| b.is_ascii_digit());
            port =
                Some(parse_decimal(p, 65535).ok_or(HeaderError::Msg("invalid Via port"))? as u16);
        }
        let params = c.params()?;
        c.end()?;
        let via = Via {
            protocol,
            version,
            transport,
            host,
            port,
            params,
        };
        via.check_params()?;
        Ok(via)
    }

    fn check_params(&self) -> HResult<()> {
        for (n, v) in super::grammar::iter_params(self.params) {
            if n.eq_ignore_ascii_case("ttl") {
                v.and_then(|v| parse_decimal(v, 255))
                    .ok_or(HeaderError::Msg("Via ttl must be 0-255"))?;
            } else if n.eq_ignore_ascii_case("received") {
                let v = v.ok_or(HeaderError::Msg("Via received needs an IP address"))?;
                let v6 = v
                    .strip_prefix('[')
                    .and_then(|x| x.strip_suffix(']'))
                    .unwrap_or(v);
                if v.parse::<std::net::Ipv4Addr>().is_err()
                    && v6.parse::<std::net::Ipv6Addr>().is_err()
                {
                    return Err(HeaderError::Msg("Via received is not an IP address"));
                }
            } else if n.eq_ignore_ascii_case("branch") {
                match v {
                    Some(b) if is_token(b) => {}
                    _ => return Err(HeaderError::Msg("Via branch must be a token")),
                }
            } else if n.eq_ignore_ascii_case("rport") {
                if let Some(p) = v {
                    parse_decimal(p, 65535)
                        .ok_or(HeaderError::Msg("Via rport must be a port number"))?;
                }
            } else if n.eq_ignore_ascii_case("maddr") {
                let v = v.ok_or(HeaderError::Msg("Via maddr needs a host"))?;
                check_host_value(v)?;
            }
        }
        Ok(())
    }

    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.param("branch").flatten()
    }

    pub fn received(&self) -> Option<&'a str> {
        self.param("received").flatten()
    }

    /// `Some(None)` for a bare `rport` (the client asks us to fill it in).
    pub fn rport(&self) -> Option<Option<&'a str>> {
        self.param("rport")
    }
}

fn check_host_value(v: &str) -> HResult<()> {
    if let Some(inner) = v.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        inner
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| HeaderError::Msg("invalid IPv6 reference"))?;
        return Ok(());
    }
    parse_host(v)?;
    Ok(())
}

/// Reads `host` (hostname, IPv4 or IPv6 reference) at the cursor.
fn host_at<'a>(c: &mut Cursor<'a>) -> HResult<Host<'a>> {
    if c.peek() == Some(b'[') {
        let start = c.pos();
        c.take_while(|b| b != b']');
        c.expect(b']', "']' closing an IPv6 reference")?;
        let full = c.since(start);
        let inner = full.get(1..full.len().saturating_sub(1)).unwrap_or("");
        let a = inner
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| HeaderError::Msg("invalid IPv6 reference"))?;
        return Ok(Host::V6(a));
    }
    let h = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    Ok(parse_host(h)?)
}

/// A name-addr or addr-spec value with its header parameters (From, To,
/// Contact, Route, Record-Route, Reply-To, P-Asserted-Identity, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quoted strings keep their quotes).
    pub display: Option<&'a str>,
    pub uri: Uri<'a>,
    /// True when the URI was enclosed in `< >`.
    pub bracketed: bool,
    /// Header parameters after the address, starting at `;`.
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Parses `name-addr / addr-spec` followed by `*(SEMI generic-param)`.
    pub fn parse(s: &'a str) -> HResult<NameAddr<'a>> {
        let mut c = Cursor::new(s);
        c.sws();
        let mut display = None;
        let bracketed;
        let uri_text;
        if c.peek() == Some(b'"') {
            let start = c.pos();
            c.quoted_string()?;
            display = Some(c.since(start));
            c.sws();
            c.expect(b'<', "'<' after the display name")?;
            uri_text = angle_uri(&mut c)?;
            bracketed = true;
        } else if has_angle(c.rest()) {
            // display-name = *(token LWS); RFC 4475 §3.1.1.6 asks us to accept
            // a token directly followed by '<' as well.
            let start = c.pos();
            while c.peek() != Some(b'<') {
                c.token().map_err(|_| c.err("display name token or '<'"))?;
                c.sws();
            }
            let d = c.since(start).trim_end();
            if !d.is_empty() {
                display = Some(d);
            }
            c.expect(b'<', "'<'")?;
            uri_text = angle_uri(&mut c)?;
            bracketed = true;
        } else {
            // addr-spec: the URI ends at the first ';' (header parameters
            // follow) and may not contain '?' or ',' (RFC 3261 §20).
            let rest = c.rest();
            let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
            uri_text = &rest[..end];
            if uri_text.contains('?') || uri_text.contains(',') {
                return Err(HeaderError::Msg(
                    "a URI with '?' or ',' must be enclosed in '<' '>'",
                ));
            }
            c.advance(end);
            bracketed = false;
        }
        let uri = Uri::parse(uri_text)?;
        let params = c.params()?;
        c.end()?;
        Ok(NameAddr {
            display,
            uri,
            bracketed,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }

    /// Checks the parameters with their own grammar (tag, expires, q).
    pub fn check_params(&self) -> HResult<()> {
        for (n, v) in super::grammar::iter_params(self.params) {
            if n.eq_ignore_ascii_case("tag") {
                match v {
                    Some(t) if is_token(t) => {}
                    _ => return Err(HeaderError::Msg("tag must be a token")),
                }
            } else if n.eq_ignore_ascii_case("expires") {
                v.and_then(|v| parse_decimal(v, U32_MAX))
                    .ok_or(HeaderError::Msg(
                        "expires parameter exceeds 2^32-1 or is not a number",
                    ))?;
            } else if n.eq_ignore_ascii_case("q") {
                let v = v.ok_or(HeaderError::Msg("q needs a value"))?;
                if !is_qvalue(v) {
                    return Err(HeaderError::Msg("q must be a qvalue between 0 and 1"));
                }
            }
        }
        Ok(())
    }
}

fn has_angle(rest: &str) -> bool {
    let mut in_q = false;
    for b in rest.bytes() {
        match b {
            b'"' => in_q = !in_q,
            b'<' if !in_q => return true,
            b';' if !in_q => return false,
            _ => {}
        }
    }
    false
}

/// Reads the URI between '<' (already consumed) and '>' with no white space
/// inside the brackets (LAQUOT / RAQUOT).
fn angle_uri<'a>(c: &mut Cursor<'a>) -> HResult<&'a str> {
    let rest = c.rest();
    let end = rest.find('>').ok_or(HeaderError::Msg("missing '>'"))?;
    let inner = &rest[..end];
    if inner.starts_with([' ', '\t']) || inner.ends_with([' ', '\t']) {
        return Err(HeaderError::Msg("white space inside '<' '>'"));
    }
    c.advance(end + 1);
    Ok(inner)
}

fn is_qvalue(v: &str) -> bool {
    match v.split_once('.') {
        None => v == "0" || v == "1",
        Some((i, f)) => {
            f.len() <= 3
                && f.bytes().all(|b| b.is_ascii_digit())
                && (i == "0" || (i == "1" && f.bytes().all(|b| b == b'0')))
        }
    }
}

/// `CSeq: 1*DIGIT LWS Method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: &'a str,
}

impl<'a> CSeq<'a> {
    pub fn parse(s: &'a str) -> HResult<CSeq<'a>> {
        let mut c = Cursor::new(s);
        c.sws();
        let n = c.take_while(|b| b.is_ascii_digit());
        let seq = parse_decimal(n, U32_MAX).ok_or(HeaderError::Msg(
            "CSeq number missing or larger than 2^32-1",
        ))? as u32;
        let before = c.pos();
        c.sws();
        if c.pos() == before {
            return Err(HeaderError::Msg("CSeq needs white space before the method"));
        }
        let method = c
            .token()
            .map_err(|_| HeaderError::Msg("CSeq method is not a token"))?;
        c.end()?;
        Ok(CSeq { seq, method })
    }
}

/// `Max-Forwards: 1*DIGIT` in 0..=255.
pub fn parse_max_forwards(s: &str) -> HResult<u8> {
    parse_decimal(s.trim(), 255)
        .map(|v| v as u8)
        .ok_or(HeaderError::Msg(
            "Max-Forwards must be a number from 0 to 255",
        ))
}

/// `Content-Length: 1*DIGIT`.
pub fn parse_content_length(s: &str) -> HResult<usize> {
    parse_decimal(s.trim(), usize::MAX as u64)
        .map(|v| v as usize)
        .ok_or(HeaderError::Msg(
            "Content-Length is not a non-negative number",
        ))
}

/// `delta-seconds` (Expires, Min-Expires).
pub fn parse_delta_seconds(s: &str) -> HResult<u32> {
    parse_decimal(s.trim(), U32_MAX)
        .map(|v| v as u32)
        .ok_or(HeaderError::Msg(
            "delta-seconds missing or larger than 2^32-1",
        ))
}

/// `Call-ID: word ["@" word]`.
pub fn check_call_id(s: &str) -> HResult<()> {
    let s = s.trim();
    let (a, b) = match s.split_once('@') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let word = |w: &str| !w.is_empty() && w.bytes().all(is_word_char);
    if word(a) && b.is_none_or(word) {
        Ok(())
    } else {
        Err(HeaderError::Msg("Call-ID is not word[@word]"))
    }
}

/// `Retry-After: delta-seconds [ comment ] *( SEMI retry-param )`.
pub fn check_retry_after(s: &str) -> HResult<()> {
    let mut c = Cursor::new(s);
    c.sws();
    let n = c.take_while(|b| b.is_ascii_digit());
    parse_decimal(n, U32_MAX).ok_or(HeaderError::Msg(
        "Retry-After exceeds 2^32-1 or is not a number",
    ))?;
    c.sws();
    if c.peek() == Some(b'(') {
        let mut depth = 0usize;
        loop {
            match c.next_char() {
                None => return Err(HeaderError::Msg("unterminated comment in Retry-After")),
                Some('(') => depth += 1,
                Some(')') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Some('\\') => {
                    c.next_char();
                }
                Some(_) => {}
            }
        }
    }
    c.params()?;
    c.end()?;
    Ok(())
}

/// One Warning value: `warn-code SP warn-agent SP warn-text`.
pub fn check_warning(s: &str) -> HResult<()> {
    let mut c = Cursor::new(s);
    c.sws();
    let code = c.take_while(|b| b.is_ascii_digit());
    if code.len() != 3 {
        return Err(HeaderError::Msg("Warning code must be three digits"));
    }
    if !c.eat(b' ') {
        return Err(HeaderError::Msg("Warning needs SP after the code"));
    }
    let agent = c.take_while(|b| b != b' ');
    if agent.is_empty() {
        return Err(HeaderError::Msg("Warning agent missing"));
    }
    if !c.eat(b' ') {
        return Err(HeaderError::Msg("Warning needs SP after the agent"));
    }
    c.quoted_string()?;
    c.end()?;
    Ok(())
}

/// `Date: rfc1123-date` = wkday "," SP date1 SP time SP "GMT".
pub fn check_date(s: &str) -> HResult<()> {
    let bad = HeaderError::Msg("Date is not an RFC 1123 date in GMT");
    let s = s.trim();
    let b = s.as_bytes();
    // "Sat, 13 Nov 2010 23:29:00 GMT" is exactly 29 octets.
    if b.len() != 29 || !s.is_ascii() {
        return Err(bad);
    }
    const WKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |r: std::ops::Range<usize>, max: u64| {
        s.get(r).and_then(|d| parse_decimal(d, max)).is_some()
    };
    let ok = WKDAYS.contains(&&s[0..3])
        && &s[3..5] == ", "
        && digits(5..7, 31)
        && b[7] == b' '
        && MONTHS.contains(&&s[8..11])
        && b[11] == b' '
        && digits(12..16, 9999)
        && b[16] == b' '
        && digits(17..19, 23)
        && b[19] == b':'
        && digits(20..22, 59)
        && b[22] == b':'
        && digits(23..25, 60)
        && &s[25..] == " GMT";
    if ok { Ok(()) } else { Err(bad) }
}

/// `media-type = m-type SLASH m-subtype *(SEMI m-parameter)`.
pub fn check_media_type(s: &str) -> HResult<()> {
    let mut c = Cursor::new(s);
    c.sws();
    c.token()
        .map_err(|_| HeaderError::Msg("media type missing"))?;
    if !c.eat_sep(b'/') {
        return Err(HeaderError::Msg("media type needs '/'"));
    }
    c.token()
        .map_err(|_| HeaderError::Msg("media subtype missing"))?;
    c.params()?;
    c.end()?;
    Ok(())
}

/// One Accept value: a media range (`*/*`, `type/*` or a media type) with parameters.
pub fn check_accept(s: &str) -> HResult<()> {
    if s.trim().is_empty() {
        return Ok(()); // Accept may be empty
    }
    check_media_type(s)
}

/// One option-tag (Require, Proxy-Require, Supported, Unsupported) or
/// method (Allow) or other token-list element.
pub fn check_token_elem(s: &str) -> HResult<()> {
    let t = s.trim();
    if is_token(t) {
        Ok(())
    } else {
        Err(HeaderError::Msg("list element is not a token"))
    }
}

/// True when `b` may appear in a header field name.
pub fn is_header_name_char(b: u8) -> bool {
    is_token_char(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_compact_forms() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(
            HeaderName::from_bytes(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"I"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"z"), HeaderName::Other);
    }

    #[test]
    fn via_with_lws_and_ipv6() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = Via::parse(
            "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK1;received=[2001:db8::2];rport",
        )
        .unwrap();
        assert_eq!(v.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport(), Some(None));
        let v = Via::parse("SIP/2.0/TLS 192.168.66.57:1590;ms-received-port=1590;ms-received-cid=C6B200;ms-internal-info=\"aaQQ\"").unwrap();
        assert_eq!(v.param("ms-internal-info"), Some(Some("\"aaQQ\"")));
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;ttl=300").is_err());
        assert!(Via::parse("SIP/2.0/UDP host;received=host.example").is_err());
        assert!(Via::parse("SIP/2.0/UDPhost").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>  ;  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(n.tag(), Some("98asjd8"));
        assert!(n.bracketed);
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display, Some("caller"));
        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert_eq!(n.uri.user, Some("+19725552222"));
        assert_eq!(n.param("unknownparam"), Some(None));
        let n = NameAddr::parse("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=x")
            .unwrap();
        assert_eq!(n.display, Some("token1~` token2'+_ token3*%!.-"));
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse("\"Joe\" <sip:joe@example.org>;;;;").is_err());
        let n = NameAddr::parse("<sip:user@host129.example.com>;expires=280297596632815").unwrap();
        assert!(n.check_params().is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(
            CSeq::parse("0009   INVITE").unwrap(),
            CSeq {
                seq: 9,
                method: "INVITE"
            }
        );
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("1INVITE").is_err());
        assert_eq!(parse_max_forwards("0068").unwrap(), 68);
        assert!(parse_max_forwards("300").is_err());
        assert!(parse_content_length("-999").is_err());
        assert!(check_retry_after("949302838503028349304023988").is_err());
        assert!(check_retry_after("120 (I'm in a meeting);duration=60").is_ok());
        assert!(check_warning("1812 overture \"In Progress\"").is_err());
        assert!(check_warning("399 edge.example.org \"refused\"").is_ok());
        assert!(check_date("Sat, 15 Oct 2005 04:44:56 GMT").is_ok());
        assert!(check_date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(check_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(check_call_id("a b").is_err());
        assert!(check_media_type("multipart/mixed;boundary=7a9cbec02ceef655").is_ok());
        assert!(check_media_type("application").is_err());
    }
}
