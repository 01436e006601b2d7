//! Lexical rules of RFC 3261 §25.1: character classes, linear white space,
//! tokens, quoted strings and generic parameters.
//!
//! Owns the smallest pieces every header grammar is built from. It works on
//! header values whose folding has already been removed (see
//! [`unfold`]), never allocates on the success path, and never panics on
//! any input.

use std::borrow::Cow;

/// `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// `word` characters (Call-ID): token characters plus ( ) < > : \ " / [ ] ? { }.
pub fn is_word_char(b: u8) -> bool {
    is_token_char(b)
        || matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
}

/// `unreserved` = alphanum / mark.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// True when `s` is a non-empty `token`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// White space inside an unfolded value: SP or HTAB.
pub fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Removes header folding: every CRLF inside a header value is followed by
/// white space (the head parser guarantees it), so dropping the CRLF leaves
/// the LWS that RFC 3261 says is equivalent to a single SP.
pub fn unfold(raw: &str) -> Cow<'_, str> {
    if raw.as_bytes().iter().any(|&b| b == b'\r' || b == b'\n') {
        Cow::Owned(raw.chars().filter(|&c| c != '\r' && c != '\n').collect())
    } else {
        Cow::Borrowed(raw)
    }
}

/// Checks `%HH` escapes in a URI component: every `%` must start a valid escape.
pub fn escapes_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// A lexical error: what was expected, and where in the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub expected: &'static str,
    pub at: usize,
}

impl std::fmt::Display for LexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected {} at offset {}", self.expected, self.at)
    }
}

/// A forward-only reader over an unfolded header value.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    /// Consumes and returns the next character (whole, even when not ASCII).
    pub fn next_char(&mut self) -> Option<char> {
        let ch = self.rest().chars().next()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    /// The text consumed since `start` (a position from [`Cursor::pos`]).
    pub fn since(&self, start: usize) -> &'a str {
        self.s.get(start..self.pos).unwrap_or("")
    }

    /// Skips `n` bytes; callers pass lengths of slices taken from [`Cursor::rest`].
    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.s.len());
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub fn err(&self, expected: &'static str) -> LexError {
        LexError {
            expected,
            at: self.pos,
        }
    }

    /// Skips SWS (optional white space).
    pub fn sws(&mut self) {
        while self.peek().is_some_and(is_wsp) {
            self.pos += 1;
        }
    }

    /// True (and consumed) when the next byte is `c`.
    pub fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `c` or fails.
    pub fn expect(&mut self, c: u8, what: &'static str) -> Result<(), LexError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// SWS c SWS, the shape of SEMI, EQUAL, COMMA, SLASH and COLON.
    pub fn eat_sep(&mut self, c: u8) -> bool {
        let save = self.pos;
        self.sws();
        if self.eat(c) {
            self.sws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    /// Consumes bytes while `f` holds and returns them.
    pub fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let b = self.s.as_bytes();
        while self.pos < b.len() && f(b[self.pos]) {
            self.pos += 1;
        }
        // The predicates used here only accept ASCII or stop at ASCII
        // delimiters, so the slice ends on a char boundary; fall back to an
        // empty match rather than panic if a caller passes one that does not.
        if self.s.is_char_boundary(self.pos) {
            &self.s[start..self.pos]
        } else {
            self.pos = start;
            ""
        }
    }

    /// A non-empty `token`.
    pub fn token(&mut self) -> Result<&'a str, LexError> {
        let t = self.take_while(is_token_char);
        if t.is_empty() {
            Err(self.err("token"))
        } else {
            Ok(t)
        }
    }

    /// A `quoted-string`, returned without its quotes (escapes left as they are).
    pub fn quoted_string(&mut self) -> Result<&'a str, LexError> {
        self.expect(b'"', "opening quote")?;
        let start = self.pos;
        let b = self.s.as_bytes();
        while self.pos < b.len() {
            match b[self.pos] {
                b'"' => {
                    let inner = self.s.get(start..self.pos).unwrap_or("");
                    self.pos += 1;
                    return Ok(inner);
                }
                b'\\' => {
                    // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                    match b.get(self.pos + 1) {
                        Some(&n) if n <= 0x7f && n != b'\n' && n != b'\r' => self.pos += 2,
                        _ => return Err(self.err("valid quoted-pair")),
                    }
                }
                c if c < 0x20 && c != b'\t' => {
                    return Err(self.err("printable character in quoted string"));
                }
                0x7f => return Err(self.err("printable character in quoted string")),
                _ => self.pos += 1,
            }
        }
        Err(LexError {
            expected: "closing quote",
            at: self.s.len(),
        })
    }

    /// `*(SEMI generic-param)`: parameters after a value. Returns the raw
    /// parameter text (starting at the first `;`) for later look-ups.
    pub fn params(&mut self) -> Result<&'a str, LexError> {
        let start = self.pos;
        let mut last_end = self.pos;
        loop {
            let save = self.pos;
            if !self.eat_sep(b';') {
                self.pos = save;
                break;
            }
            self.generic_param()?;
            last_end = self.pos;
        }
        self.pos = last_end;
        Ok(self.since(start).trim_start_matches(is_wsp_char))
    }

    /// `generic-param = token [ EQUAL gen-value ]`, gen-value = token / host / quoted-string.
    pub fn generic_param(&mut self) -> Result<(&'a str, Option<&'a str>), LexError> {
        let name = self.token().map_err(|_| self.err("parameter name"))?;
        let save = self.pos;
        if self.eat_sep(b'=') {
            let v = self.gen_value()?;
            Ok((name, Some(v)))
        } else {
            self.pos = save;
            Ok((name, None))
        }
    }

    /// `gen-value = token / host / quoted-string`.
    pub fn gen_value(&mut self) -> Result<&'a str, LexError> {
        match self.peek() {
            Some(b'"') => {
                let start = self.pos;
                self.quoted_string()?;
                Ok(self.since(start))
            }
            Some(b'[') => {
                let start = self.pos;
                let v = self.take_while(|b| b != b']');
                if !self.eat(b']') {
                    return Err(self.err("closing ] of IPv6 reference"));
                }
                let inner = v.get(1..).unwrap_or("");
                if inner.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(LexError {
                        expected: "IPv6 address",
                        at: start,
                    });
                }
                Ok(self.since(start))
            }
            _ => {
                // token covers hostnames and IPv4 addresses as well.
                let v = self.take_while(is_token_char);
                if v.is_empty() {
                    Err(self.err("parameter value"))
                } else {
                    Ok(v)
                }
            }
        }
    }

    /// Succeeds only at the end of the value (after optional white space).
    pub fn end(&mut self) -> Result<(), LexError> {
        self.sws();
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.err("end of value"))
        }
    }
}

fn is_wsp_char(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Iterates `;name[=value]` parameters of a raw parameter string produced by
/// [`Cursor::params`] (or a URI's parameter section). Names keep their case;
/// compare them with `eq_ignore_ascii_case`.
pub fn iter_params(raw: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    split_outside_quotes(raw, b';').filter_map(|p| {
        let p = p.trim_matches(is_wsp_char);
        if p.is_empty() {
            return None;
        }
        match p.find('=') {
            Some(i) => Some((
                p[..i].trim_matches(is_wsp_char),
                Some(p[i + 1..].trim_matches(is_wsp_char)),
            )),
            None => Some((p, None)),
        }
    })
}

/// Finds a parameter by name (case-insensitive). `Some(None)` is a flag
/// parameter without a value.
pub fn find_param<'a>(raw: &'a str, name: &str) -> Option<Option<&'a str>> {
    iter_params(raw)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Splits on `sep` outside double quotes and angle brackets.
pub fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut in_quote = false;
    let mut in_angle = false;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while i < b.len() {
            let c = b[i];
            if in_quote {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    in_quote = false;
                }
            } else if c == b'"' {
                in_quote = true;
            } else if c == b'<' {
                in_angle = true;
            } else if c == b'>' {
                in_angle = false;
            } else if c == sep && !in_angle {
                let piece = &s[start..i];
                i += 1;
                start = i;
                return Some(piece);
            }
            i += 1;
        }
        done = true;
        Some(&s[start.min(s.len())..])
    })
}

/// Parses a decimal of at most `max`; `None` for empty, non-digit or overflowing input.
pub fn parse_decimal(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_words() {
        assert!(is_token("!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(!is_token("a b"));
        assert!(!is_token(""));
        assert!(is_word_char(b'{') && !is_word_char(b' '));
    }

    #[test]
    fn quoted_strings() {
        let mut c = Cursor::new(r#""J Rosenberg \\\"" rest"#);
        assert_eq!(c.quoted_string().unwrap(), r#"J Rosenberg \\\""#);
        let mut c = Cursor::new("\"unterminated");
        assert_eq!(c.quoted_string().unwrap_err().expected, "closing quote");
        let mut c = Cursor::new("\"NUL:\\\u{0}\"");
        assert!(c.quoted_string().is_ok());
    }

    #[test]
    fn params_strict() {
        let mut c = Cursor::new(" ;  tag    = 1918181833n");
        assert_eq!(c.params().unwrap(), ";  tag    = 1918181833n");
        assert!(c.end().is_ok());
        let mut c = Cursor::new(";;,");
        assert!(c.params().is_err());
        assert_eq!(find_param("; tag = x ;lr", "TAG"), Some(Some("x")));
        assert_eq!(find_param(";tag=x;lr", "lr"), Some(None));
        assert_eq!(find_param(";a=\"x;y\";b", "b"), Some(None));
    }

    #[test]
    fn escapes() {
        assert!(escapes_valid("a%41b"));
        assert!(!escapes_valid("a%4"));
        assert!(!escapes_valid("%zz"));
        assert!(!escapes_valid("%"));
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("0068", 255), Some(68));
        assert_eq!(parse_decimal("300", 255), None);
        assert_eq!(
            parse_decimal("36893488147419103232", u64::from(u32::MAX)),
            None
        );
        assert_eq!(parse_decimal("-1", 10), None);
    }

    #[test]
    fn split_respects_quotes() {
        let v: Vec<_> = split_outside_quotes(r#""a,b" <sip:x>, <sip:y;p=1,2>, c"#, b',').collect();
        assert_eq!(v, vec![r#""a,b" <sip:x>"#, " <sip:y;p=1,2>", " c"]);
    }
}
