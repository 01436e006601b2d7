//! URIs as SIP carries them: `sip:`/`sips:` (RFC 3261 §19.1, strictly),
//! `tel:` (RFC 3966) and any other absolute URI (kept opaque).
//!
//! Owns URI syntax only. A parsed [`Uri`] borrows from the text it was read
//! from; nothing here allocates or decides what a URI is allowed to reach.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::grammar::{escapes_valid, find_param, is_unreserved, iter_params};

/// The URI scheme, with the ones SIP routes on named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other absolute URI (`http:`, `urn:`, `isbn:`, ...).
    Other,
}

/// The host part of a SIP URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name exactly as written (compare with `eq_ignore_ascii_case`).
    Name(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host<'_> {
    /// The domain name, if the host is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(n) => Some(n),
            _ => None,
        }
    }

    /// True when the host is a literal IP address.
    pub fn is_ip(&self) -> bool {
        !matches!(self, Host::Name(_))
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Why a URI failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("URI has no scheme")]
    NoScheme,
    #[error("URI scheme {0:?} is not a valid scheme")]
    BadScheme(String),
    #[error("invalid character {0:?} in URI")]
    BadChar(char),
    #[error("invalid %-escape in URI")]
    BadEscape,
    #[error("invalid user part in URI")]
    BadUser,
    #[error("invalid host {0:?} in URI")]
    BadHost(String),
    #[error("invalid port in URI")]
    BadPort,
    #[error("empty or invalid URI parameter")]
    BadParam,
    #[error("invalid header part in URI")]
    BadHeaders,
    #[error("invalid telephone number in tel: URI")]
    BadTel,
    #[error("local tel: number without phone-context")]
    TelNoContext,
    #[error("URI is empty")]
    Empty,
}

/// A parsed URI. For `tel:` the number is in `user` and `host` is `None`;
/// for other schemes only `raw` and `scheme_str` are meaningful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    pub raw: &'a str,
    pub scheme: Scheme,
    pub scheme_str: &'a str,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: Option<Host<'a>>,
    pub port: Option<u16>,
    /// Raw parameter section, starting with `;` (empty when there is none).
    pub params: &'a str,
    /// Raw header section after `?`, if any.
    pub headers: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// Parses any URI SIP may carry.
    pub fn parse(s: &'a str) -> Result<Uri<'a>, UriError> {
        if s.is_empty() {
            return Err(UriError::Empty);
        }
        let colon = s.find(':').ok_or(UriError::NoScheme)?;
        let scheme_str = &s[..colon];
        let sb = scheme_str.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(UriError::BadScheme(scheme_str.to_string()));
        }
        let rest = &s[colon + 1..];
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = Uri {
            raw: s,
            scheme,
            scheme_str,
            user: None,
            password: None,
            host: None,
            port: None,
            params: "",
            headers: None,
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => parse_sip(rest, &mut uri)?,
            Scheme::Tel => parse_tel(rest, &mut uri)?,
            Scheme::Other => parse_opaque(rest)?,
        }
        Ok(uri)
    }

    /// True for `sip:` and `sips:`.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// Looks up a URI parameter (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// Iterates the URI parameters.
    pub fn params_iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        iter_params(self.params)
    }

    /// The domain name of a SIP URI's host, if it has one.
    pub fn domain(&self) -> Option<&'a str> {
        match self.host {
            Some(Host::Name(n)) => Some(n),
            _ => None,
        }
    }

    /// The `transport` parameter, lower-cased on comparison by callers.
    pub fn transport(&self) -> Option<&'a str> {
        self.param("transport").flatten()
    }

    /// True when the URI carries the loose-routing `lr` flag.
    pub fn is_loose_route(&self) -> bool {
        self.param("lr").is_some()
    }
}

/// `param-unreserved / unreserved / escaped` (paramchar).
fn is_paramchar(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'%')
}

/// user = 1*( unreserved / escaped / user-unreserved )
fn is_userchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/' | b'%'
        )
}

/// password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
fn is_passchar(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b'%')
}

/// hname / hvalue characters: hnv-unreserved / unreserved / escaped.
fn is_hnvchar(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'%')
}

fn check(s: &str, f: fn(u8) -> bool, err: UriError) -> Result<(), UriError> {
    if let Some(c) = s.bytes().find(|&b| !f(b)) {
        return Err(if c.is_ascii() {
            UriError::BadChar(c as char)
        } else {
            err
        });
    }
    if !escapes_valid(s) {
        return Err(UriError::BadEscape);
    }
    Ok(())
}

/// Checks `;name[=value]` parameters (starting at the `;`): no empty names
/// or values, names by `name_ok`, values of paramchar.
fn check_params(params: &str, name_ok: fn(u8) -> bool) -> Result<(), UriError> {
    for p in params[1..].split(';') {
        let (name, value) = match p.find('=') {
            Some(e) => (&p[..e], Some(&p[e + 1..])),
            None => (p, None),
        };
        if name.is_empty() || value.is_some_and(str::is_empty) {
            return Err(UriError::BadParam);
        }
        check(name, name_ok, UriError::BadParam)?;
        if let Some(v) = value {
            check(v, is_paramchar, UriError::BadParam)?;
        }
    }
    Ok(())
}

fn parse_sip<'a>(rest: &'a str, uri: &mut Uri<'a>) -> Result<(), UriError> {
    let (userinfo, hostpart) = match rest.find('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if let Some(ui) = userinfo {
        let (user, pass) = match ui.find(':') {
            Some(c) => (&ui[..c], Some(&ui[c + 1..])),
            None => (ui, None),
        };
        if user.is_empty() {
            return Err(UriError::BadUser);
        }
        check(user, is_userchar, UriError::BadUser)?;
        if let Some(p) = pass {
            check(p, is_passchar, UriError::BadUser)?;
        }
        uri.user = Some(user);
        uri.password = pass;
    }
    // hostport
    let b = hostpart.as_bytes();
    let host_end;
    if b.first() == Some(&b'[') {
        let close = hostpart
            .find(']')
            .ok_or_else(|| UriError::BadHost(hostpart.to_string()))?;
        let inner = &hostpart[1..close];
        let a: Ipv6Addr = inner
            .parse()
            .map_err(|_| UriError::BadHost(inner.to_string()))?;
        uri.host = Some(Host::V6(a));
        host_end = close + 1;
    } else {
        let end = b
            .iter()
            .position(|&c| matches!(c, b':' | b';' | b'?'))
            .unwrap_or(b.len());
        let h = &hostpart[..end];
        uri.host = Some(parse_host(h)?);
        host_end = end;
    }
    let mut pos = host_end;
    if b.get(pos) == Some(&b':') {
        let start = pos + 1;
        let end = b[start..]
            .iter()
            .position(|c| !c.is_ascii_digit())
            .map_or(b.len(), |p| start + p);
        let port =
            super::grammar::parse_decimal(&hostpart[start..end], 65535).ok_or(UriError::BadPort)?;
        uri.port = Some(port as u16);
        pos = end;
    }
    let tail = &hostpart[pos..];
    let (params, headers) = match tail.find('?') {
        Some(q) => (&tail[..q], Some(&tail[q + 1..])),
        None => (tail, None),
    };
    if !params.is_empty() {
        if !params.starts_with(';') {
            return Err(match params.chars().next() {
                Some(c) => UriError::BadChar(c),
                None => UriError::BadParam,
            });
        }
        check_params(params, is_paramchar)?;
        uri.params = params;
    }
    if let Some(h) = headers {
        if h.is_empty() {
            return Err(UriError::BadHeaders);
        }
        for hv in h.split('&') {
            let (n, v) = hv.split_once('=').ok_or(UriError::BadHeaders)?;
            if n.is_empty() {
                return Err(UriError::BadHeaders);
            }
            check(n, is_hnvchar, UriError::BadHeaders)?;
            check(v, is_hnvchar, UriError::BadHeaders)?;
        }
        uri.headers = Some(h);
    }
    Ok(())
}

/// hostname / IPv4address (IPv6 references are handled by the caller).
pub fn parse_host(h: &str) -> Result<Host<'_>, UriError> {
    let bad = || UriError::BadHost(h.to_string());
    if h.is_empty() {
        return Err(bad());
    }
    if h.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return h.parse::<Ipv4Addr>().map(Host::V4).map_err(|_| bad());
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    let labels: Vec<&str> = name.split('.').collect();
    for l in &labels {
        let lb = l.as_bytes();
        // Underscores are outside RFC 3261's hostname rule but common in
        // Windows estates; accepting them costs nothing and refuses no one.
        if lb.is_empty()
            || !lb
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            || lb[0] == b'-'
            || lb[lb.len() - 1] == b'-'
        {
            return Err(bad());
        }
    }
    match labels.last().and_then(|t| t.bytes().next()) {
        Some(c) if c.is_ascii_alphabetic() => Ok(Host::Name(h)),
        _ => Err(bad()),
    }
}

fn parse_tel<'a>(rest: &'a str, uri: &mut Uri<'a>) -> Result<(), UriError> {
    let (number, params) = match rest.find(';') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let visual = |c: u8| matches!(c, b'-' | b'.' | b'(' | b')');
    let global = number.strip_prefix('+');
    let digits = global.unwrap_or(number);
    let ok = match global {
        Some(d) => {
            d.bytes().any(|c| c.is_ascii_digit())
                && d.bytes().all(|c| c.is_ascii_digit() || visual(c))
        }
        None => {
            digits
                .bytes()
                .any(|c| c.is_ascii_hexdigit() || c == b'*' || c == b'#')
                && digits
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b'*' || c == b'#' || visual(c))
        }
    };
    if !ok {
        return Err(UriError::BadTel);
    }
    if !params.is_empty() {
        check_params(params, |b| b.is_ascii_alphanumeric() || b == b'-')?;
    }
    uri.user = Some(number);
    uri.params = params;
    if global.is_none() && find_param(params, "phone-context").is_none() {
        return Err(UriError::TelNoContext);
    }
    Ok(())
}

/// absoluteURI's hier-part / opaque-part: URI characters only (RFC 2396 uric).
fn parse_opaque(rest: &str) -> Result<(), UriError> {
    if rest.is_empty() {
        return Err(UriError::Empty);
    }
    let uric = |b: u8| {
        is_unreserved(b)
            || matches!(
                b,
                b';' | b'/'
                    | b'?'
                    | b':'
                    | b'@'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b'%'
                    | b'['
                    | b']'
                    | b'#'
            )
    };
    check(rest, uric, UriError::BadChar('?'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_basic() {
        let u = Uri::parse("sip:alice@Example.COM:5061;transport=tls;lr").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.domain(), Some("Example.COM"));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tls"));
        assert!(u.is_loose_route());
    }

    #[test]
    fn ipv6_references() {
        let u = Uri::parse("sip:[2001:db8::10]:5070;maddr=[2001:db8::1]").unwrap();
        assert_eq!(u.param("maddr"), Some(Some("[2001:db8::1]")));
        let u = Uri::parse("sip:user@[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host, Some(Host::V6("2001:db8::10".parse().unwrap())));
        assert_eq!(u.port, Some(5070));
        assert!(Uri::parse("sip:[2001:db8::zz]").is_err());
        assert!(Uri::parse("sip:[::1").is_err());
    }

    #[test]
    fn lync_params_survive() {
        let u = Uri::parse("sip:user@lync.loc;opaque=user:epid:JLcBAA;gruu").unwrap();
        assert_eq!(u.param("opaque"), Some(Some("user:epid:JLcBAA")));
        assert_eq!(u.param("gruu"), Some(None));
        let u = Uri::parse(
            "sip:ITROMFE.gtk.gtech.com:5061;transport=tls;ms-fe=ITROMLYNCFE2.gtk.gtech.com;opaque=state:F;lr",
        )
        .unwrap();
        assert_eq!(u.param("ms-fe"), Some(Some("ITROMLYNCFE2.gtk.gtech.com")));
    }

    #[test]
    fn tel_uris() {
        let u = Uri::parse("tel:+1-201-555-0123").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some("+1-201-555-0123"));
        assert!(Uri::parse("tel:7042;phone-context=example.com").is_ok());
        assert_eq!(Uri::parse("tel:7042"), Err(UriError::TelNoContext));
        assert!(Uri::parse("tel:+").is_err());
    }

    #[test]
    fn unusual_but_valid() {
        let u = Uri::parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com").unwrap();
        assert_eq!(
            u.user,
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password,
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert!(Uri::parse("sip:user;par=u%40example.net@example.com").is_ok());
        assert!(Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").is_ok());
        assert!(Uri::parse("soap.beep://192.0.2.103:3002").is_ok());
        assert!(Uri::parse("sip:%00@host5.example.com").is_ok());
        let u = Uri::parse("sip:user@example.com?Route=%3Csip:example.com%3E").unwrap();
        assert_eq!(u.headers, Some("Route=%3Csip:example.com%3E"));
    }

    #[test]
    fn invalid() {
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("sip:user@exa mple.com").is_err());
        assert!(Uri::parse("sip:user@192.0.2.300").is_err());
        assert!(Uri::parse("sip:user@example.com:99999").is_err());
        assert!(Uri::parse("sip:user@example.com;;lr").is_err());
        assert!(Uri::parse("sip:us%zzer@example.com").is_err());
        assert!(Uri::parse("sip:@example.com").is_err());
        assert!(Uri::parse("sip:user@-bad.example.com").is_err());
        assert!(Uri::parse("sip:user@example.123").is_err());
        assert!(Uri::parse("").is_err());
        assert!(Uri::parse("nocolon").is_err());
    }
}
