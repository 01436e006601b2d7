//! STUN (RFC 8489, RFC 5389) as an ICE-lite agent needs it: recognise a
//! STUN packet among media, check a Binding request's short-term
//! credentials (MESSAGE-INTEGRITY, FINGERPRINT), and answer it with the
//! address it came from.
//!
//! Owns the wire format of those few messages; it keeps no state and never
//! sends anything itself.

use std::net::{IpAddr, SocketAddr};

use ring::hmac;

pub const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const HEADER: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_USE_CANDIDATE: u16 = 0x0025;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// True when a packet on a media port is STUN rather than RTP, RTCP or
/// DTLS (RFC 7983: the first byte is 0 to 3).
pub fn is_stun(p: &[u8]) -> bool {
    p.len() >= HEADER && p[0] < 4
}

/// A Binding request, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest<'a> {
    pub transaction: [u8; 12],
    pub username: Option<&'a [u8]>,
    pub use_candidate: bool,
    /// Offset of the MESSAGE-INTEGRITY attribute, if any.
    integrity_at: Option<usize>,
    fingerprint_at: Option<usize>,
}

fn u16_at(p: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]))
}

/// Reads an RFC 5389 Binding request (with the magic cookie); anything else
/// (responses, indications, RFC 3489 or MS-ICE v6 STUN) is `None`.
pub fn parse_binding_request(p: &[u8]) -> Option<BindingRequest<'_>> {
    if !is_stun(p) || u16_at(p, 0)? != BINDING_REQUEST || p[4..8] != MAGIC_COOKIE {
        return None;
    }
    let len = u16_at(p, 2)? as usize;
    if !len.is_multiple_of(4) || HEADER + len != p.len() {
        return None;
    }
    let mut transaction = [0u8; 12];
    transaction.copy_from_slice(&p[8..20]);
    let mut req = BindingRequest {
        transaction,
        username: None,
        use_candidate: false,
        integrity_at: None,
        fingerprint_at: None,
    };
    let mut i = HEADER;
    while i + 4 <= p.len() {
        let t = u16_at(p, i)?;
        let l = u16_at(p, i + 2)? as usize;
        let value = p.get(i + 4..i + 4 + l)?;
        // Only FINGERPRINT may follow MESSAGE-INTEGRITY.
        if req.integrity_at.is_some() && t != ATTR_FINGERPRINT {
            return None;
        }
        match t {
            ATTR_USERNAME => req.username = Some(value),
            ATTR_USE_CANDIDATE => req.use_candidate = true,
            ATTR_MESSAGE_INTEGRITY if l == 20 => req.integrity_at = Some(i),
            ATTR_FINGERPRINT if l == 4 => {
                req.fingerprint_at = Some(i);
                if i + 8 != p.len() {
                    return None;
                }
            }
            _ => {}
        }
        i += 4 + l.div_ceil(4) * 4;
    }
    (i == p.len()).then_some(req)
}

fn crc32(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.finalize()
}

/// The HMAC-SHA1 of a message up to `at` (the MESSAGE-INTEGRITY attribute),
/// with the header's length covering that attribute (RFC 5389 §15.4).
fn integrity(p: &[u8], at: usize, key: &[u8]) -> hmac::Tag {
    let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut ctx = hmac::Context::with_key(&k);
    let len = (at + 24 - HEADER) as u16;
    ctx.update(&p[..2]);
    ctx.update(&len.to_be_bytes());
    ctx.update(&p[4..at]);
    ctx.sign()
}

impl BindingRequest<'_> {
    /// True when the request carries MESSAGE-INTEGRITY made with `key` (the
    /// short-term password) and, if present, a correct FINGERPRINT.
    pub fn verify(&self, p: &[u8], key: &[u8]) -> bool {
        let Some(at) = self.integrity_at else {
            return false;
        };
        if let Some(f) = self.fingerprint_at {
            let Some(want) = p.get(f + 4..f + 8) else {
                return false;
            };
            let mut head = p[..f].to_vec();
            let len = (f + 8 - HEADER) as u16;
            head[2..4].copy_from_slice(&len.to_be_bytes());
            if (crc32(&head) ^ FINGERPRINT_XOR).to_be_bytes() != want {
                return false;
            }
        }
        let Some(got) = p.get(at + 4..at + 24) else {
            return false;
        };
        // The signed part with the length the signer saw (RFC 5389 §15.4);
        // hmac::verify compares in constant time.
        let mut signed = p[..at].to_vec();
        signed[2..4].copy_from_slice(&((at + 24 - HEADER) as u16).to_be_bytes());
        let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        hmac::verify(&k, &signed, got).is_ok()
    }

    /// USERNAME split at the colon: (our ufrag, the peer's ufrag).
    pub fn ufrags(&self) -> Option<(&[u8], &[u8])> {
        let u = self.username?;
        let i = u.iter().position(|&b| b == b':')?;
        Some((&u[..i], &u[i + 1..]))
    }
}

fn put_attr(out: &mut Vec<u8>, t: u16, value: &[u8]) {
    out.extend_from_slice(&t.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - value.len() % 4) % 4, 0);
}

fn set_len(out: &mut [u8], len: usize) {
    out[2..4].copy_from_slice(&((len - HEADER) as u16).to_be_bytes());
}

fn finish(mut out: Vec<u8>, key: Option<&[u8]>) -> Vec<u8> {
    if let Some(key) = key {
        let at = out.len();
        set_len(&mut out, at + 24);
        let tag = integrity(&out, at, key);
        put_attr(&mut out, ATTR_MESSAGE_INTEGRITY, tag.as_ref());
    }
    let at = out.len();
    set_len(&mut out, at + 8);
    let fp = crc32(&out) ^ FINGERPRINT_XOR;
    put_attr(&mut out, ATTR_FINGERPRINT, &fp.to_be_bytes());
    out
}

fn header(kind: u16, transaction: &[u8; 12]) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&MAGIC_COOKIE);
    out.extend_from_slice(transaction);
    out
}

/// A Binding success response telling the requester where it came from,
/// signed with `key` (RFC 8445 §7.3: our password for that peer).
pub fn binding_success(transaction: &[u8; 12], from: SocketAddr, key: &[u8]) -> Vec<u8> {
    let mut out = header(BINDING_SUCCESS, transaction);
    let port = from.port() ^ 0x2112;
    let mut v = vec![0u8];
    match from.ip() {
        IpAddr::V4(a) => {
            v.push(1);
            v.extend_from_slice(&port.to_be_bytes());
            for (i, b) in a.octets().iter().enumerate() {
                v.push(b ^ MAGIC_COOKIE[i]);
            }
        }
        IpAddr::V6(a) => {
            v.push(2);
            v.extend_from_slice(&port.to_be_bytes());
            let mut mask = MAGIC_COOKIE.to_vec();
            mask.extend_from_slice(transaction);
            for (i, b) in a.octets().iter().enumerate() {
                v.push(b ^ mask[i]);
            }
        }
    }
    put_attr(&mut out, ATTR_XOR_MAPPED_ADDRESS, &v);
    finish(out, Some(key))
}

/// A Binding error response (400 for a malformed request, 401 for bad
/// credentials), unsigned as RFC 8489 §9.1.3 allows for 401.
pub fn binding_error(transaction: &[u8; 12], code: u16, reason: &str) -> Vec<u8> {
    let mut out = header(BINDING_ERROR, transaction);
    let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
    v.extend_from_slice(reason.as_bytes());
    put_attr(&mut out, ATTR_ERROR_CODE, &v);
    finish(out, None)
}

/// The XOR-MAPPED-ADDRESS of a response (for tests and diagnostics).
pub fn mapped_address(p: &[u8]) -> Option<SocketAddr> {
    let mut i = HEADER;
    while i + 4 <= p.len() {
        let t = u16_at(p, i)?;
        let l = u16_at(p, i + 2)? as usize;
        let v = p.get(i + 4..i + 4 + l)?;
        if t == ATTR_XOR_MAPPED_ADDRESS && l >= 8 {
            let port = u16_at(v, 2)? ^ 0x2112;
            return match v[1] {
                1 => {
                    let o: Vec<u8> = v[4..8]
                        .iter()
                        .zip(MAGIC_COOKIE)
                        .map(|(b, m)| b ^ m)
                        .collect();
                    Some(SocketAddr::new(
                        IpAddr::from([o[0], o[1], o[2], o[3]]),
                        port,
                    ))
                }
                2 if l >= 20 => {
                    let mut mask = MAGIC_COOKIE.to_vec();
                    mask.extend_from_slice(p.get(8..20)?);
                    let mut o = [0u8; 16];
                    for (k, b) in v[4..20].iter().enumerate() {
                        o[k] = b ^ mask[k];
                    }
                    Some(SocketAddr::new(IpAddr::from(o), port))
                }
                _ => None,
            };
        }
        i += 4 + l.div_ceil(4) * 4;
    }
    None
}

/// True when a response carries MESSAGE-INTEGRITY made with `key` (for tests).
pub fn response_verifies(p: &[u8], key: &[u8]) -> bool {
    let mut i = HEADER;
    while i + 4 <= p.len() {
        let (Some(t), Some(l)) = (u16_at(p, i), u16_at(p, i + 2)) else {
            return false;
        };
        if t == ATTR_MESSAGE_INTEGRITY && l == 20 {
            let tag = integrity(p, i, key);
            return p.get(i + 4..i + 24) == Some(tag.as_ref());
        }
        i += 4 + (l as usize).div_ceil(4) * 4;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// RFC 5769 §2.1 sample request (password "VOkJxbRl1RmTxUk/WvJxBt").
    fn sample_request() -> Vec<u8> {
        hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
             00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
             00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
             00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
             80 28 00 04 e5 7a 3b cf")
    }

    /// RFC 5769 §2.2 sample IPv4 response (192.0.2.1:32853).
    fn sample_response() -> Vec<u8> {
        hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
             00 20 00 08 00 01 a1 47 e1 12 a6 43
             00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
             80 28 00 04 c0 7d 4c 96")
    }

    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

    #[test]
    fn rfc5769_request_verifies_and_tampering_does_not() {
        let p = sample_request();
        assert!(is_stun(&p));
        let r = parse_binding_request(&p).unwrap();
        assert_eq!(r.username, Some(&b"evtj:h6vY"[..]));
        assert_eq!(r.ufrags(), Some((&b"evtj"[..], &b"h6vY"[..])));
        assert!(!r.use_candidate);
        assert!(r.verify(&p, PASSWORD));
        assert!(!r.verify(&p, b"wrong password"));
        let mut bad = p.clone();
        bad[30] ^= 1;
        let r2 = parse_binding_request(&bad).unwrap();
        assert!(!r2.verify(&bad, PASSWORD));
        // Truncated, wrong cookie, a response: not Binding requests.
        assert!(parse_binding_request(&p[..p.len() - 4]).is_none());
        let mut cookie = p.clone();
        cookie[4] = 0;
        assert!(parse_binding_request(&cookie).is_none());
        assert!(parse_binding_request(&sample_response()).is_none());
    }

    #[test]
    fn rfc5769_response_decodes_and_our_responses_verify() {
        let resp = sample_response();
        assert_eq!(
            mapped_address(&resp),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert!(response_verifies(&resp, PASSWORD));
        let tid = [7u8; 12];
        for from in [
            "192.0.2.1:32853",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ] {
            let from: SocketAddr = from.parse().unwrap();
            let ours = binding_success(&tid, from, b"relaypassword");
            assert_eq!(mapped_address(&ours), Some(from));
            assert!(response_verifies(&ours, b"relaypassword"));
            assert!(!response_verifies(&ours, b"other"));
            // FINGERPRINT is the last 4 bytes: CRC32 of the rest (length
            // covering it) xor "STUN".
            let n = ours.len();
            let fp = u32::from_be_bytes([ours[n - 4], ours[n - 3], ours[n - 2], ours[n - 1]]);
            assert_eq!(fp, crc32(&ours[..n - 8]) ^ FINGERPRINT_XOR);
            assert_eq!(u16_at(&ours, 2).unwrap() as usize, n - HEADER);
        }
        let e = binding_error(&tid, 401, "Unauthorized");
        assert_eq!(u16_at(&e, 0), Some(BINDING_ERROR));
        assert_eq!(u16_at(&e, 2).unwrap() as usize, e.len() - HEADER);
    }

    #[test]
    fn packets_are_told_apart() {
        assert!(!is_stun(&[
            0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ])); // RTP
        assert!(!is_stun(&[22, 0xfe, 0xfd])); // DTLS
        assert!(!is_stun(&[0, 1, 0])); // too short
        // Fuzz the parser: no panic on any truncation or flip.
        let p = sample_request();
        for n in 0..p.len() {
            let _ = parse_binding_request(&p[..n]);
            let mut q = p.clone();
            q[n] ^= 0xff;
            if let Some(r) = parse_binding_request(&q) {
                let _ = r.verify(&q, PASSWORD);
            }
        }
    }
}
