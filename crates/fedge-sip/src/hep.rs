//! HEP3 (the Homer Encapsulation Protocol, version 3): the capture format
//! Kamailio's siptrace, sngrep and Homer speak. One [`HepPacket`] is one SIP
//! message as seen on the wire (its real source and destination address and
//! port, IP protocol, time of capture) wrapped in chunks.
//!
//! Owns the pure codec: [`HepPacket::encode`] and [`decode`], bytes in and
//! bytes out. Never does I/O, never decides what is captured or where it is
//! sent (the application's capture sender does that), never logs the auth
//! key.
//!
//! Wire format: the ASCII id `HEP3`, a big-endian u16 total length (header
//! included), then chunks; each chunk is a u16 vendor id (0 = generic), a
//! u16 type id, a u16 length (its 6-byte header included) and a value.
//! Generic chunks used here: 0x0001 IP family (2 = IPv4, 10 = IPv6),
//! 0x0002 IP protocol (6 TCP, 17 UDP), 0x0003/0x0004 IPv4 source and
//! destination, 0x0005/0x0006 IPv6 source and destination, 0x0007/0x0008
//! ports, 0x0009/0x000a timestamp seconds and microseconds, 0x000b protocol
//! type (1 = SIP), 0x000c capture agent id, 0x000e auth key, 0x000f payload,
//! 0x0011 correlation id. TLS travels as IP protocol TCP (what Kamailio
//! sends and what sngrep and Homer read); the SIP inside tells TLS apart by
//! its top Via ([`HepPacket::transport`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use crate::transport::Transport;

/// The 4-byte id that opens every HEP3 packet.
pub const MAGIC: &[u8; 4] = b"HEP3";
/// HEP3 protocol type of a SIP payload (chunk 0x000b).
pub const PROTO_SIP: u8 = 1;
/// IP protocol numbers carried in chunk 0x0002.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// Address families carried in chunk 0x0001 (Linux values, as Kamailio).
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
/// The largest packet HEP3 can describe (its length field is a u16).
pub const MAX_PACKET: usize = u16::MAX as usize;

const HEADER: usize = 6;
const CHUNK_HEADER: usize = 6;

mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTO: u16 = 0x0002;
    pub const SRC_IP4: u16 = 0x0003;
    pub const DST_IP4: u16 = 0x0004;
    pub const SRC_IP6: u16 = 0x0005;
    pub const DST_IP6: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TIME_SEC: u16 = 0x0009;
    pub const TIME_USEC: u16 = 0x000a;
    pub const PROTO_TYPE: u16 = 0x000b;
    pub const CAPTURE_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// Why bytes are not a HEP3 packet we can read, or a packet cannot be
/// written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HepError {
    #[error("not a HEP3 packet (no HEP3 id)")]
    NotHep3,
    #[error("HEP3 packet truncated: it says {said} bytes, {have} present")]
    Truncated { said: usize, have: usize },
    #[error("HEP3 chunk 0x{type_id:04x} at offset {offset} has a bad length {len}")]
    BadChunk {
        type_id: u16,
        offset: usize,
        len: usize,
    },
    #[error("HEP3 chunk 0x{0:04x} is missing")]
    Missing(u16),
    #[error("HEP3 packet has an unknown IP family {0}")]
    Family(u8),
    #[error("HEP3 source and destination addresses are of different families")]
    MixedFamilies,
    #[error("HEP3 packet would be {0} bytes, over the 65535 its length field holds")]
    TooLarge(usize),
}

/// One captured message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepPacket {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IP protocol: [`IPPROTO_UDP`] or [`IPPROTO_TCP`] (TLS included).
    pub ip_proto: u8,
    /// Capture time, seconds since the Unix epoch.
    pub time_sec: u32,
    /// Capture time, the microseconds within `time_sec`.
    pub time_usec: u32,
    /// Payload protocol ([`PROTO_SIP`]).
    pub proto_type: u8,
    /// The capture agent id (chunk 0x000c).
    pub capture_id: u32,
    /// The collector's password (chunk 0x000e), when set.
    pub auth_key: Option<String>,
    /// Correlation id (chunk 0x0011): the Call-ID for SIP.
    pub correlation_id: Option<String>,
    /// The SIP message, as on the wire after decryption.
    pub payload: Bytes,
}

/// The IP protocol number a SIP transport travels on.
pub fn ip_proto(t: Transport) -> u8 {
    match t {
        Transport::Udp => IPPROTO_UDP,
        Transport::Tcp | Transport::Tls => IPPROTO_TCP,
    }
}

fn put_chunk(out: &mut Vec<u8>, type_id: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&type_id.to_be_bytes());
    // Callers keep every value below 65529 bytes (checked in encode).
    out.extend_from_slice(&((value.len() + CHUNK_HEADER) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

impl HepPacket {
    /// The encoded size of this packet.
    pub fn encoded_len(&self) -> usize {
        let ips = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 2 * (CHUNK_HEADER + 4),
            _ => 2 * (CHUNK_HEADER + 16),
        };
        HEADER
            + 2 * (CHUNK_HEADER + 1) // family, ip proto
            + ips
            + 2 * (CHUNK_HEADER + 2) // ports
            + 2 * (CHUNK_HEADER + 4) // time
            + (CHUNK_HEADER + 1) // proto type
            + (CHUNK_HEADER + 4) // capture id
            + self.auth_key.as_ref().map_or(0, |k| CHUNK_HEADER + k.len())
            + self.correlation_id.as_ref().map_or(0, |c| CHUNK_HEADER + c.len())
            + CHUNK_HEADER
            + self.payload.len()
    }

    /// Appends the packet's bytes to `out`. An IPv4 and an IPv6 address
    /// together are written as IPv6 (the IPv4 one mapped).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), HepError> {
        let total = self.encoded_len();
        if total > MAX_PACKET {
            return Err(HepError::TooLarge(total));
        }
        out.reserve(total);
        let start = out.len();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(total as u16).to_be_bytes());
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                put_chunk(out, chunk::IP_FAMILY, &[AF_INET]);
                put_chunk(out, chunk::IP_PROTO, &[self.ip_proto]);
                put_chunk(out, chunk::SRC_IP4, &s.octets());
                put_chunk(out, chunk::DST_IP4, &d.octets());
            }
            (s, d) => {
                put_chunk(out, chunk::IP_FAMILY, &[AF_INET6]);
                put_chunk(out, chunk::IP_PROTO, &[self.ip_proto]);
                put_chunk(out, chunk::SRC_IP6, &v6(s).octets());
                put_chunk(out, chunk::DST_IP6, &v6(d).octets());
            }
        }
        put_chunk(out, chunk::SRC_PORT, &self.src.port().to_be_bytes());
        put_chunk(out, chunk::DST_PORT, &self.dst.port().to_be_bytes());
        put_chunk(out, chunk::TIME_SEC, &self.time_sec.to_be_bytes());
        put_chunk(out, chunk::TIME_USEC, &self.time_usec.to_be_bytes());
        put_chunk(out, chunk::PROTO_TYPE, &[self.proto_type]);
        put_chunk(out, chunk::CAPTURE_ID, &self.capture_id.to_be_bytes());
        if let Some(k) = &self.auth_key {
            put_chunk(out, chunk::AUTH_KEY, k.as_bytes());
        }
        if let Some(c) = &self.correlation_id {
            put_chunk(out, chunk::CORRELATION_ID, c.as_bytes());
        }
        put_chunk(out, chunk::PAYLOAD, &self.payload);
        debug_assert_eq!(out.len() - start, total);
        Ok(())
    }

    /// The packet's bytes in a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HepError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }

    /// The SIP transport: UDP for IP protocol 17; for TCP, TLS when the
    /// payload's top Via says so (a hop's top Via names its transport for
    /// requests and responses alike), else TCP. None for other protocols.
    pub fn transport(&self) -> Option<Transport> {
        match self.ip_proto {
            IPPROTO_UDP => Some(Transport::Udp),
            IPPROTO_TCP if top_via_is_tls(&self.payload) => Some(Transport::Tls),
            IPPROTO_TCP => Some(Transport::Tcp),
            _ => None,
        }
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// Whether the first Via header of a SIP message names TLS.
fn top_via_is_tls(sip: &[u8]) -> bool {
    let head_end = memchr::memmem::find(sip, b"\r\n\r\n").unwrap_or(sip.len());
    for line in sip[..head_end].split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"via") || name.eq_ignore_ascii_case(b"v") {
            let value = line[colon + 1..].trim_ascii_start();
            return value.len() >= 11 && value[..11].eq_ignore_ascii_case(b"SIP/2.0/TLS");
        }
    }
    false
}

fn be_u16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.try_into().ok()?))
}

fn be_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

/// The chunks' values as read, before they are checked for completeness.
#[derive(Default)]
struct Fields {
    family: Option<u8>,
    ip_proto: Option<u8>,
    src_ip: Option<IpAddr>,
    dst_ip: Option<IpAddr>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    time_sec: Option<u32>,
    time_usec: Option<u32>,
    proto_type: Option<u8>,
    capture_id: Option<u32>,
    auth_key: Option<String>,
    correlation_id: Option<String>,
    payload: Option<Bytes>,
}

impl Fields {
    /// Stores one generic chunk's value; false when its size is wrong.
    fn take(&mut self, type_id: u16, v: &[u8]) -> bool {
        let one = || (v.len() == 1).then(|| v[0]);
        match type_id {
            chunk::IP_FAMILY => self.family = one(),
            chunk::IP_PROTO => self.ip_proto = one(),
            chunk::PROTO_TYPE => self.proto_type = one(),
            chunk::SRC_IP4 | chunk::DST_IP4 => {
                let Ok(o) = <[u8; 4]>::try_from(v) else {
                    return false;
                };
                let ip = Some(IpAddr::V4(Ipv4Addr::from(o)));
                if type_id == chunk::SRC_IP4 {
                    self.src_ip = ip;
                } else {
                    self.dst_ip = ip;
                }
                return true;
            }
            chunk::SRC_IP6 | chunk::DST_IP6 => {
                let Ok(o) = <[u8; 16]>::try_from(v) else {
                    return false;
                };
                let ip = Some(IpAddr::V6(Ipv6Addr::from(o)));
                if type_id == chunk::SRC_IP6 {
                    self.src_ip = ip;
                } else {
                    self.dst_ip = ip;
                }
                return true;
            }
            chunk::SRC_PORT => self.src_port = be_u16(v),
            chunk::DST_PORT => self.dst_port = be_u16(v),
            chunk::TIME_SEC => self.time_sec = be_u32(v),
            chunk::TIME_USEC => self.time_usec = be_u32(v),
            chunk::CAPTURE_ID => self.capture_id = be_u32(v),
            chunk::AUTH_KEY => {
                self.auth_key = Some(String::from_utf8_lossy(trim_nul(v)).into_owned());
                return true;
            }
            chunk::CORRELATION_ID => {
                self.correlation_id = Some(String::from_utf8_lossy(trim_nul(v)).into_owned());
                return true;
            }
            chunk::PAYLOAD => {
                self.payload = Some(Bytes::copy_from_slice(v));
                return true;
            }
            _ => return true, // a chunk this codec does not use: skipped
        }
        // The fixed-size chunks: stored only when the size was right.
        match type_id {
            chunk::IP_FAMILY => self.family.is_some(),
            chunk::IP_PROTO => self.ip_proto.is_some(),
            chunk::PROTO_TYPE => self.proto_type.is_some(),
            chunk::SRC_PORT => self.src_port.is_some(),
            chunk::DST_PORT => self.dst_port.is_some(),
            chunk::TIME_SEC => self.time_sec.is_some(),
            chunk::TIME_USEC => self.time_usec.is_some(),
            _ => self.capture_id.is_some(),
        }
    }
}

/// C senders sometimes count a string's terminating NUL.
fn trim_nul(v: &[u8]) -> &[u8] {
    v.strip_suffix(&[0]).unwrap_or(v)
}

/// Reads one HEP3 packet from the start of `buf` (bytes after its stated
/// length are ignored). Vendor chunks and generic chunks this codec does not
/// use are skipped. Required: family, IP protocol, both addresses and
/// ports, and the payload; a missing timestamp, capture id or protocol type
/// reads as 0 (protocol type: SIP).
pub fn decode(buf: &[u8]) -> Result<HepPacket, HepError> {
    if buf.len() < HEADER || &buf[..4] != MAGIC {
        return Err(HepError::NotHep3);
    }
    let total = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if total < HEADER || total > buf.len() {
        return Err(HepError::Truncated {
            said: total,
            have: buf.len(),
        });
    }
    let mut f = Fields::default();
    let mut at = HEADER;
    while at < total {
        if total - at < CHUNK_HEADER {
            return Err(HepError::BadChunk {
                type_id: 0,
                offset: at,
                len: total - at,
            });
        }
        let vendor = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let type_id = u16::from_be_bytes([buf[at + 2], buf[at + 3]]);
        let len = usize::from(u16::from_be_bytes([buf[at + 4], buf[at + 5]]));
        let bad = HepError::BadChunk {
            type_id,
            offset: at,
            len,
        };
        if len < CHUNK_HEADER || at + len > total {
            return Err(bad);
        }
        let value = &buf[at + CHUNK_HEADER..at + len];
        if vendor == 0 && !f.take(type_id, value) {
            return Err(bad);
        }
        at += len;
    }
    finish(f)
}

fn finish(f: Fields) -> Result<HepPacket, HepError> {
    let family = f.family.ok_or(HepError::Missing(chunk::IP_FAMILY))?;
    let (src_id, dst_id) = match family {
        AF_INET => (chunk::SRC_IP4, chunk::DST_IP4),
        AF_INET6 => (chunk::SRC_IP6, chunk::DST_IP6),
        other => return Err(HepError::Family(other)),
    };
    let src_ip = f.src_ip.ok_or(HepError::Missing(src_id))?;
    let dst_ip = f.dst_ip.ok_or(HepError::Missing(dst_id))?;
    if src_ip.is_ipv4() != dst_ip.is_ipv4() || src_ip.is_ipv4() != (family == AF_INET) {
        return Err(HepError::MixedFamilies);
    }
    Ok(HepPacket {
        src: SocketAddr::new(
            src_ip,
            f.src_port.ok_or(HepError::Missing(chunk::SRC_PORT))?,
        ),
        dst: SocketAddr::new(
            dst_ip,
            f.dst_port.ok_or(HepError::Missing(chunk::DST_PORT))?,
        ),
        ip_proto: f.ip_proto.ok_or(HepError::Missing(chunk::IP_PROTO))?,
        time_sec: f.time_sec.unwrap_or(0),
        time_usec: f.time_usec.unwrap_or(0),
        proto_type: f.proto_type.unwrap_or(PROTO_SIP),
        capture_id: f.capture_id.unwrap_or(0),
        auth_key: f.auth_key,
        correlation_id: f.correlation_id,
        payload: f.payload.ok_or(HepError::Missing(chunk::PAYLOAD))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIP: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK1\r\nCall-ID: c1\r\nContent-Length: 0\r\n\r\n";

    fn sample() -> HepPacket {
        HepPacket {
            src: "10.0.0.1:5061".parse().unwrap(),
            dst: "192.168.1.2:40000".parse().unwrap(),
            ip_proto: IPPROTO_TCP,
            time_sec: 0x6500_0000,
            time_usec: 123_456,
            proto_type: PROTO_SIP,
            capture_id: 2001,
            auth_key: Some("s3cret".into()),
            correlation_id: Some("c1".into()),
            payload: Bytes::from_static(SIP),
        }
    }

    /// The bytes of a packet written out chunk by chunk from the spec.
    fn by_hand() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"HEP3");
        v.extend_from_slice(&[0, 0]); // total, filled below
        v.extend_from_slice(&[0, 0, 0, 1, 0, 7, 2]); // family AF_INET
        v.extend_from_slice(&[0, 0, 0, 2, 0, 7, 17]); // UDP
        v.extend_from_slice(&[0, 0, 0, 3, 0, 10, 127, 0, 0, 1]); // src ip
        v.extend_from_slice(&[0, 0, 0, 4, 0, 10, 127, 0, 0, 2]); // dst ip
        v.extend_from_slice(&[0, 0, 0, 7, 0, 8, 0x13, 0xc4]); // src port 5060
        v.extend_from_slice(&[0, 0, 0, 8, 0, 8, 0x13, 0xc5]); // dst port 5061
        v.extend_from_slice(&[0, 0, 0, 9, 0, 10, 0, 0, 1, 0]); // sec 256
        v.extend_from_slice(&[0, 0, 0, 10, 0, 10, 0, 0, 0, 7]); // usec 7
        v.extend_from_slice(&[0, 0, 0, 11, 0, 7, 1]); // SIP
        v.extend_from_slice(&[0, 0, 0, 12, 0, 10, 0, 0, 0x07, 0xd1]); // id 2001
        v.extend_from_slice(&[0x00, 0x02, 0, 0x20, 0, 8, 0xaa, 0xbb]); // vendor chunk: skipped
        v.extend_from_slice(&[0, 0, 0, 0x0e, 0, 9, b'p', b'w', 0]); // auth key, NUL counted
        v.extend_from_slice(&[0, 0, 0, 0x0f, 0, 10, b'A', b'B', b'\r', b'\n']);
        let n = v.len() as u16;
        v[4..6].copy_from_slice(&n.to_be_bytes());
        v
    }

    #[test]
    fn decodes_bytes_written_by_hand() {
        let p = decode(&by_hand()).unwrap();
        assert_eq!(p.src, "127.0.0.1:5060".parse::<SocketAddr>().unwrap());
        assert_eq!(p.dst, "127.0.0.2:5061".parse::<SocketAddr>().unwrap());
        assert_eq!(p.ip_proto, IPPROTO_UDP);
        assert_eq!((p.time_sec, p.time_usec), (256, 7));
        assert_eq!(p.proto_type, PROTO_SIP);
        assert_eq!(p.capture_id, 2001);
        assert_eq!(p.auth_key.as_deref(), Some("pw"));
        assert_eq!(p.correlation_id, None);
        assert_eq!(&p.payload[..], b"AB\r\n");
        assert_eq!(p.transport(), Some(Transport::Udp));
    }

    #[test]
    fn encodes_the_chunks_the_spec_lays_out() {
        let b = sample().to_bytes().unwrap();
        assert_eq!(&b[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([b[4], b[5]])), b.len());
        assert_eq!(b.len(), sample().encoded_len());
        // First chunks: family 2, protocol 6, source 10.0.0.1.
        assert_eq!(&b[6..13], &[0, 0, 0, 1, 0, 7, 2]);
        assert_eq!(&b[13..20], &[0, 0, 0, 2, 0, 7, 6]);
        assert_eq!(&b[20..30], &[0, 0, 0, 3, 0, 10, 10, 0, 0, 1]);
        assert_eq!(&b[30..40], &[0, 0, 0, 4, 0, 10, 192, 168, 1, 2]);
        assert_eq!(&b[40..48], &[0, 0, 0, 7, 0, 8, 0x13, 0xc5]);
        assert_eq!(&b[48..56], &[0, 0, 0, 8, 0, 8, 0x9c, 0x40]);
        // The payload chunk closes the packet.
        let tail = b.len() - SIP.len();
        assert_eq!(&b[tail..], SIP);
        let plen = (SIP.len() + 6) as u16;
        assert_eq!(&b[tail - 6..tail - 2], &[0, 0, 0, 0x0f]);
        assert_eq!(&b[tail - 2..tail], &plen.to_be_bytes());
    }

    #[test]
    fn round_trips_v4_and_v6() {
        let p = sample();
        assert_eq!(decode(&p.to_bytes().unwrap()).unwrap(), p);
        let mut q = sample();
        q.src = "[2001:db8::1]:5061".parse().unwrap();
        q.dst = "[2001:db8::2]:5065".parse().unwrap();
        q.auth_key = None;
        q.ip_proto = IPPROTO_UDP;
        let b = q.to_bytes().unwrap();
        assert_eq!(&b[6..13], &[0, 0, 0, 1, 0, 7, 10]);
        assert_eq!(decode(&b).unwrap(), q);
    }

    #[test]
    fn mixed_families_are_written_as_v6() {
        let mut p = sample();
        p.dst = "[2001:db8::2]:5065".parse().unwrap();
        let d = decode(&p.to_bytes().unwrap()).unwrap();
        assert_eq!(d.src.ip(), "::ffff:10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(d.dst, p.dst);
    }

    #[test]
    fn tells_tls_from_tcp_by_the_top_via() {
        let mut p = sample();
        assert_eq!(p.transport(), Some(Transport::Tls));
        p.payload = Bytes::from_static(
            b"SIP/2.0 200 OK\r\nv: SIP/2.0/TCP h;branch=z9hG4bK2\r\nVia: SIP/2.0/TLS x\r\n\r\n",
        );
        assert_eq!(p.transport(), Some(Transport::Tcp));
        p.ip_proto = 132;
        assert_eq!(p.transport(), None);
        assert_eq!(ip_proto(Transport::Tls), IPPROTO_TCP);
        assert_eq!(ip_proto(Transport::Udp), IPPROTO_UDP);
    }

    #[test]
    fn refuses_what_is_not_a_whole_packet() {
        let good = by_hand();
        assert_eq!(decode(b"HEP2\0\x06"), Err(HepError::NotHep3));
        assert_eq!(decode(b"HEP"), Err(HepError::NotHep3));
        assert!(matches!(
            decode(&good[..good.len() - 1]),
            Err(HepError::Truncated { .. })
        ));
        // A chunk that claims to run past the end.
        let mut bad = good.clone();
        bad[6 + 4..6 + 6].copy_from_slice(&[0xff, 0xff]);
        assert!(matches!(
            decode(&bad),
            Err(HepError::BadChunk { type_id: 1, .. })
        ));
        // A chunk shorter than its own header.
        let mut bad = good.clone();
        bad[6 + 5] = 3;
        assert!(matches!(decode(&bad), Err(HepError::BadChunk { .. })));
        // A port chunk of the wrong size.
        let mut v = good[..40].to_vec(); // header + family, proto, ips
        v.extend_from_slice(&[0, 0, 0, 7, 0, 7, 1]);
        let n = v.len() as u16;
        v[4..6].copy_from_slice(&n.to_be_bytes());
        assert!(matches!(
            decode(&v),
            Err(HepError::BadChunk { type_id: 7, .. })
        ));
        // No payload.
        let mut v = good[..40].to_vec();
        v.extend_from_slice(&[0, 0, 0, 7, 0, 8, 0, 1, 0, 0, 0, 8, 0, 8, 0, 2]);
        let n = v.len() as u16;
        v[4..6].copy_from_slice(&n.to_be_bytes());
        assert_eq!(decode(&v), Err(HepError::Missing(0x000f)));
        // Every truncation of a good packet is an error, never a panic.
        for cut in 0..good.len() {
            let mut t = good[..cut].to_vec();
            if t.len() >= 6 {
                let n = t.len() as u16;
                t[4..6].copy_from_slice(&n.to_be_bytes());
            }
            assert!(decode(&t).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_to_encode_past_the_length_field() {
        let mut p = sample();
        p.payload = Bytes::from(vec![b'x'; MAX_PACKET]);
        assert!(matches!(p.to_bytes(), Err(HepError::TooLarge(n)) if n > MAX_PACKET));
        p.payload = Bytes::from(vec![
            b'x';
            MAX_PACKET - (sample().encoded_len() - SIP.len())
        ]);
        assert_eq!(p.to_bytes().unwrap().len(), MAX_PACKET);
    }
}
