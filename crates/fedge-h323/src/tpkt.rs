//! TPKT framing (RFC 1006) of H.225.0 call signalling and H.245 over TCP:
//! version 3, a reserved 0 byte, a 16-bit big-endian length that counts the
//! 4-byte header. Owns framing only: it never reads a socket and never
//! looks inside a payload. A bad header is an error; the caller closes
//! that connection.

use bytes::{Buf, Bytes, BytesMut};

use crate::Error;

/// The TPKT header's length.
pub const HEADER: usize = 4;

/// Wraps `payload` in a TPKT header. A payload over 65531 bytes does not
/// fit the length field and is cut to that size (H.225.0 and H.245
/// messages are far smaller).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let body = &payload[..payload.len().min(usize::from(u16::MAX) - HEADER)];
    let len = body.len() + HEADER;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[3, 0]);
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An incremental TPKT decoder over a growing read buffer.
#[derive(Debug, Clone)]
pub struct Decoder {
    max: usize,
}

impl Decoder {
    /// A decoder that refuses frames longer than `max` bytes (header included).
    pub fn new(max: usize) -> Self {
        Decoder { max }
    }

    /// Takes one whole frame's payload out of `buf`, `Ok(None)` when more
    /// bytes are needed. An error leaves `buf` as it was; the stream cannot
    /// be resynchronised, so the caller closes it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        if buf.len() < HEADER {
            return Ok(None);
        }
        if buf[0] != 3 {
            return Err(Error::TpktVersion(buf[0]));
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if len < HEADER || len > self.max {
            return Err(Error::TpktLength(len));
        }
        if buf.len() < len {
            buf.reserve(len - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(len);
        frame.advance(HEADER);
        Ok(Some(frame.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces() {
        let a = encode(b"hello");
        assert_eq!(a, [3, 0, 0, 9, b'h', b'e', b'l', b'l', b'o']);
        let b = encode(b"");
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let mut d = Decoder::new(100);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in all {
            buf.extend_from_slice(&[byte]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![Bytes::from_static(b"hello"), Bytes::new()]);
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_headers_are_errors() {
        let mut d = Decoder::new(100);
        let mut buf = BytesMut::from(&[4u8, 0, 0, 9][..]);
        assert_eq!(d.decode(&mut buf), Err(Error::TpktVersion(4)));
        let mut buf = BytesMut::from(&[3u8, 0, 0, 3][..]);
        assert_eq!(d.decode(&mut buf), Err(Error::TpktLength(3)));
        let mut buf = BytesMut::from(&[3u8, 0, 0, 101][..]);
        assert_eq!(d.decode(&mut buf), Err(Error::TpktLength(101)));
        let mut buf = BytesMut::from(&[3u8, 0, 0, 8, 1][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
    }
}
