//! Finding message boundaries: Content-Length framing on streams (TCP,
//! TLS) and one message per datagram (UDP), with size limits and RFC 5626
//! CRLF keep-alives.
//!
//! Owns the rule that decides whether a connection can go on after bad
//! input: when the end of a message is known, a malformed message is
//! answered and the stream continues; when it is not (no or conflicting
//! Content-Length, an oversized head, a negative length), the stream cannot
//! be resynchronised and the connection must close.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::message::SipMessage;
use super::parse::{self, Limits, ParseError, Rejected};

/// What a stream yields.
#[derive(Debug)]
pub enum StreamItem {
    /// A `CRLF CRLF` ping; answer with a single `CRLF` pong (RFC 5626 §4.4.1).
    Ping,
    /// A well-formed message.
    Message(SipMessage),
    /// A complete but malformed message; the stream stays usable.
    Rejected(Rejected),
}

/// Why a stream must be closed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Framing is lost. The partial index, when present, lets the caller
    /// answer the request before closing.
    #[error("{}", .0.error)]
    Fatal(Box<Rejected>),
    #[error("connection closed in the middle of a message ({0} bytes pending)")]
    Truncated(usize),
}

/// A head whose body is still arriving.
struct Pending {
    head_end: usize,
    total: usize,
    ix: parse::Indexed,
}

/// Tokio decoder for SIP over a byte stream.
pub struct StreamDecoder {
    limits: Limits,
    scanned: usize,
    pending: Option<Pending>,
}

impl StreamDecoder {
    pub fn new(limits: Limits) -> Self {
        StreamDecoder {
            limits,
            scanned: 0,
            pending: None,
        }
    }

    /// True while part of a message has been received but not all of it.
    pub fn mid_message(&self, buf: &BytesMut) -> bool {
        self.pending.is_some() || buf.iter().any(|&b| b != b'\r' && b != b'\n')
    }

    fn fatal(&self, error: ParseError, head: &[u8]) -> StreamError {
        let ix = parse::index_head(head, self.limits.max_headers);
        let partial = parse::assemble(Bytes::copy_from_slice(head), ix, head.len());
        StreamError::Fatal(Box::new(Rejected {
            error,
            partial: Some(partial),
        }))
    }
}

impl Decoder for StreamDecoder {
    type Item = StreamItem;
    type Error = StreamError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<StreamItem>, StreamError> {
        if let Some(p) = &self.pending {
            if buf.len() < p.total {
                buf.reserve(p.total - buf.len());
                return Ok(None);
            }
            let Some(p) = self.pending.take() else {
                return Ok(None);
            };
            let raw = buf.split_to(p.total).freeze();
            self.scanned = 0;
            return Ok(Some(finish(raw, p.ix, p.head_end)));
        }
        // Keep-alives and stray CRLFs before a start line (RFC 3261 §7.5).
        // Each rule looks only at bytes already seen to decide, so how the
        // peer's bytes are segmented never changes what is read.
        loop {
            if buf.starts_with(b"\r\n\r\n") {
                buf.advance(4);
                self.scanned = 0;
                return Ok(Some(StreamItem::Ping));
            }
            // A CRLF that cannot be the start of a ping.
            if buf.starts_with(b"\r\n")
                && (buf.len() >= 4 || buf.get(2).is_some_and(|&b| b != b'\r'))
            {
                buf.advance(2);
                continue;
            }
            let stray = match buf.first() {
                Some(b'\n') => true,
                Some(b'\r') => buf.get(1).is_some_and(|&b| b != b'\n'),
                _ => false,
            };
            if stray {
                return Err(self.fatal(
                    ParseError::bad("stray line break before the start line"),
                    &[],
                ));
            }
            if buf.first().is_none_or(|&b| b == b'\r') {
                // "\r", "\r\n" or "\r\n\r": maybe the start of a ping; wait.
                return Ok(None);
            }
            break;
        }
        let from = self.scanned.saturating_sub(3);
        let head_end = match parse::find_head_end(buf, from) {
            Some(e) => e,
            None => {
                self.scanned = buf.len();
                if buf.len() > self.limits.max_head {
                    let head = &buf[..self.limits.max_head];
                    let cut = head
                        .windows(2)
                        .rposition(|w| w == b"\r\n")
                        .map_or(0, |p| p + 2);
                    let mut h = head[..cut].to_vec();
                    h.extend_from_slice(b"\r\n");
                    return Err(self.fatal(
                        ParseError::with_status(
                            513,
                            format!("header section exceeds {} bytes", self.limits.max_head),
                        ),
                        &h,
                    ));
                }
                return Ok(None);
            }
        };
        if head_end > self.limits.max_head {
            return Err(self.fatal(
                ParseError::with_status(
                    513,
                    format!("header section exceeds {} bytes", self.limits.max_head),
                ),
                &buf[..head_end],
            ));
        }
        let ix = parse::index_head(&buf[..head_end], self.limits.max_headers);
        let cl = match parse::content_length(&buf[..head_end], &ix) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(self.fatal(
                    ParseError::bad(
                        "Content-Length is required on stream transports (RFC 3261 §18.3)",
                    ),
                    &buf[..head_end],
                ));
            }
            Err(e) => return Err(self.fatal(e, &buf[..head_end])),
        };
        if cl > self.limits.max_body {
            return Err(self.fatal(
                ParseError::with_status(
                    513,
                    format!(
                        "body of {cl} bytes exceeds the limit of {} bytes",
                        self.limits.max_body
                    ),
                ),
                &buf[..head_end],
            ));
        }
        let total = head_end + cl;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            self.pending = Some(Pending {
                head_end,
                total,
                ix,
            });
            return Ok(None);
        }
        let raw = buf.split_to(total).freeze();
        self.scanned = 0;
        Ok(Some(finish(raw, ix, head_end)))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<StreamItem>, StreamError> {
        match self.decode(buf)? {
            Some(item) => Ok(Some(item)),
            None => {
                if self.mid_message(buf) {
                    let n = buf.len();
                    buf.clear();
                    self.pending = None;
                    Err(StreamError::Truncated(n))
                } else {
                    buf.clear();
                    Ok(None)
                }
            }
        }
    }
}

fn finish(raw: Bytes, ix: parse::Indexed, head_end: usize) -> StreamItem {
    let problem = ix.problem.clone();
    let msg = parse::assemble(raw, ix, head_end);
    if let Some(p) = problem {
        return StreamItem::Rejected(Rejected {
            error: p,
            partial: Some(msg),
        });
    }
    match parse::validate(&msg) {
        Ok(()) => StreamItem::Message(msg),
        Err(e) => StreamItem::Rejected(Rejected {
            error: e,
            partial: Some(msg),
        }),
    }
}

/// What one datagram holds.
#[derive(Debug)]
pub enum DatagramItem {
    /// Only CRLFs or white space (a NAT keep-alive); ignored.
    KeepAlive,
    Message(SipMessage),
    Rejected(Rejected),
}

/// Parses one UDP datagram. Octets after the Content-Length are dropped
/// (RFC 3261 §18.3); without Content-Length the body is the rest of the datagram.
pub fn parse_datagram(mut data: Bytes, limits: &Limits) -> DatagramItem {
    let lead = data
        .iter()
        .take_while(|&&b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
        .count();
    if lead == data.len() {
        return DatagramItem::KeepAlive;
    }
    data.advance(lead);
    let Some(head_end) = parse::find_head_end(&data, 0) else {
        let mut head = data.to_vec();
        if !head.ends_with(b"\r\n") {
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let he = head.len();
        let ix = parse::index_head(&head, limits.max_headers);
        let problem = ix.problem.clone();
        let partial = parse::assemble(Bytes::from(head), ix, he);
        // Name the most specific fault: a broken header beats the missing line.
        let error = problem
            .or_else(|| parse::validate(&partial).err())
            .unwrap_or_else(|| ParseError::bad("no empty line after the header section"));
        return DatagramItem::Rejected(Rejected {
            error,
            partial: Some(partial),
        });
    };
    let reject = |error: ParseError, data: Bytes| {
        let ix = parse::index_head(&data[..head_end], limits.max_headers);
        let partial = parse::assemble(data.slice(..head_end), ix, head_end);
        DatagramItem::Rejected(Rejected {
            error,
            partial: Some(partial),
        })
    };
    if head_end > limits.max_head {
        return reject(
            ParseError::with_status(
                513,
                format!("header section exceeds {} bytes", limits.max_head),
            ),
            data,
        );
    }
    let ix = parse::index_head(&data[..head_end], limits.max_headers);
    let available = data.len() - head_end;
    let body_len = match parse::content_length(&data[..head_end], &ix) {
        Ok(Some(n)) if n > available => {
            return reject(
                ParseError::bad(format!(
                    "Content-Length {n} is larger than the {available} body bytes in the datagram"
                )),
                data,
            );
        }
        Ok(Some(n)) => n,
        Ok(None) => available,
        Err(e) => return reject(e, data),
    };
    if body_len > limits.max_body {
        return reject(
            ParseError::with_status(513, format!("body exceeds {} bytes", limits.max_body)),
            data,
        );
    }
    let raw = data.slice(..head_end + body_len);
    match finish(raw, ix, head_end) {
        StreamItem::Message(m) => DatagramItem::Message(m),
        StreamItem::Rejected(r) => DatagramItem::Rejected(r),
        StreamItem::Ping => DatagramItem::KeepAlive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8] = b"OPTIONS sip:a@b.test SIP/2.0\r\nVia: SIP/2.0/TCP h.test;branch=z9hG4bK1\r\nFrom: <sip:x@y.test>;tag=1\r\nTo: <sip:a@b.test>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 4\r\n\r\nbody";

    fn decode_all(input: &[u8], chunk: usize) -> Vec<Result<StreamItem, String>> {
        let mut d = StreamDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(c);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(i)) => out.push(Ok(i)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        return out;
                    }
                }
            }
        }
        match d.decode_eof(&mut buf) {
            Ok(Some(i)) => out.push(Ok(i)),
            Ok(None) => {}
            Err(e) => out.push(Err(e.to_string())),
        }
        out
    }

    #[test]
    fn frames_byte_by_byte_with_pings_between() {
        let mut input = b"\r\n\r\n".to_vec();
        input.extend_from_slice(M);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(M);
        for chunk in [1, 3, 7, 1000] {
            let items = decode_all(&input, chunk);
            assert_eq!(items.len(), 3, "chunk {chunk}");
            assert!(matches!(items[0], Ok(StreamItem::Ping)));
            for it in &items[1..] {
                match it {
                    Ok(StreamItem::Message(m)) => assert_eq!(m.body(), b"body"),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    fn seen(input: &[u8], chunk: usize) -> Vec<String> {
        decode_all(input, chunk)
            .iter()
            .map(|i| format!("{i:?}"))
            .collect()
    }

    #[test]
    fn segmentation_does_not_change_what_is_read() {
        // Found by fuzzing (fuzz/regressions/sip_stream, first byte = chunk
        // size): a stray line break arriving alone closed the connection,
        // the same bytes arriving with what follows were read as part of
        // the next message.
        let found = include_bytes!("../../../fuzz/regressions/sip_stream/segmentation-stray-lf");
        let (c, input) = found.split_first().unwrap();
        assert_eq!(
            seen(input, input.len()),
            seen(input, usize::from(c % 64) + 1)
        );
        for tail in [
            &b"\n\r@\n"[..],
            b"\n\nOPTIONS",
            b"\r\rX",
            b"\r\nOPTIONS sip:a@b.test SIP/2.0\r\n",
            b"\r\n\r\n\r\n",
            b"\r\n\r",
        ] {
            let mut input = M.to_vec();
            input.extend_from_slice(tail);
            let whole = seen(&input, input.len());
            for chunk in [1, 2, 3, 5] {
                assert_eq!(seen(&input, chunk), whole, "tail {tail:?}, chunk {chunk}");
            }
        }
        let items = decode_all(b"\n\nOPTIONS sip:a@b.test SIP/2.0\r\n\r\n", 1000);
        assert!(matches!(&items[0], Err(e) if e.contains("stray line break")));
    }

    #[test]
    fn missing_content_length_on_a_stream_is_fatal() {
        let m = String::from_utf8_lossy(M).replace("Content-Length: 4\r\n", "");
        let items = decode_all(m.as_bytes(), 1000);
        assert!(matches!(&items[0], Err(e) if e.contains("Content-Length is required")));
    }

    #[test]
    fn truncated_body_at_eof() {
        let items = decode_all(&M[..M.len() - 2], 1000);
        assert!(matches!(&items[0], Err(e) if e.contains("closed in the middle")));
    }

    #[test]
    fn oversized_head_is_fatal() {
        let mut d = StreamDecoder::new(Limits {
            max_head: 200,
            ..Limits::default()
        });
        let mut buf = BytesMut::from(&b"OPTIONS sip:a@b.test SIP/2.0\r\nX-Long: "[..]);
        buf.extend_from_slice(&[b'a'; 300]);
        match d.decode(&mut buf) {
            Err(StreamError::Fatal(r)) => assert_eq!(r.error.status, 513),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn oversized_body_is_fatal() {
        let mut d = StreamDecoder::new(Limits {
            max_body: 2,
            ..Limits::default()
        });
        let mut buf = BytesMut::from(M);
        match d.decode(&mut buf) {
            Err(StreamError::Fatal(r)) => {
                assert_eq!(r.error.status, 513);
                assert!(r.is_request());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn datagram_trailing_octets_are_dropped() {
        let mut d = M.to_vec();
        d.extend_from_slice(b"trailing junk");
        match parse_datagram(Bytes::from(d), &Limits::default()) {
            DatagramItem::Message(m) => {
                assert_eq!(m.body(), b"body");
                assert_eq!(m.raw().len(), M.len());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse_datagram(Bytes::from_static(b"\r\n\r\n"), &Limits::default()),
            DatagramItem::KeepAlive
        ));
    }
}
