//! Plain RTP and RTCP on the bridge's connector side: reading a packet's
//! header, writing one, spotting a picture loss indication, writing one.
//!
//! Pure: bytes in and out. It never touches a socket, never panics on a
//! short or malformed packet (it answers `None`).

/// The parts of an RTP packet the bridge forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Reads an RTP packet (version 2; CSRCs, extension and padding skipped).
pub fn parse(b: &[u8]) -> Option<Packet<'_>> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(b[0] & 0x0f);
    let mut off = 12 + 4 * cc;
    if b[0] & 0x10 != 0 {
        let ext = b.get(off + 2..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        let pad = usize::from(*b.last()?);
        end = end.checked_sub(pad)?;
    }
    let payload = b.get(off..end)?;
    Some(Packet {
        pt: b[1] & 0x7f,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload,
    })
}

/// Writes an RTP packet (no CSRCs, no extension).
pub fn build(p: &Packet<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + p.payload.len());
    v.push(0x80);
    v.push((p.pt & 0x7f) | if p.marker { 0x80 } else { 0 });
    v.extend_from_slice(&p.seq.to_be_bytes());
    v.extend_from_slice(&p.ts.to_be_bytes());
    v.extend_from_slice(&p.ssrc.to_be_bytes());
    v.extend_from_slice(p.payload);
    v
}

/// Whether an RTCP compound packet holds a PLI (PT 206 FMT 1) or a FIR
/// (PT 206 FMT 4): the connector asks for a key frame.
pub fn asks_keyframe(b: &[u8]) -> bool {
    let mut off = 0;
    while let Some(h) = b.get(off..off + 4) {
        if h[0] >> 6 != 2 {
            return false;
        }
        let fmt = h[0] & 0x1f;
        if h[1] == 206 && (fmt == 1 || fmt == 4) {
            return true;
        }
        off += 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
    }
    false
}

/// A PLI from `sender` about `media` (RFC 4585 §6.3.1).
pub fn pli(sender: u32, media: u32) -> Vec<u8> {
    let mut v = vec![0x81, 206, 0, 2];
    v.extend_from_slice(&sender.to_be_bytes());
    v.extend_from_slice(&media.to_be_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_survives_build_and_parse() {
        let p = Packet {
            pt: 96,
            marker: true,
            seq: 65535,
            ts: 12345,
            ssrc: 0xdead_beef,
            payload: b"hello",
        };
        let b = build(&p);
        assert_eq!(parse(&b), Some(p));
    }

    #[test]
    fn short_and_lying_packets_are_not_read() {
        assert_eq!(parse(&[0x80; 11]), None);
        assert_eq!(parse(&[0x00; 20]), None, "version 0");
        // Extension bit with no room for the extension header.
        let mut b = build(&Packet {
            pt: 0,
            marker: false,
            seq: 1,
            ts: 1,
            ssrc: 1,
            payload: b"",
        });
        b[0] |= 0x10;
        assert_eq!(parse(&b), None);
        // Padding longer than the packet.
        b[0] = 0xa0;
        b.push(200);
        assert_eq!(parse(&b), None);
    }

    #[test]
    fn a_pli_is_spotted_in_a_compound_packet() {
        let mut rr = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(!asks_keyframe(&rr));
        rr.extend(pli(1, 2));
        assert!(asks_keyframe(&rr));
        assert!(
            !asks_keyframe(&[0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]),
            "a NACK is not a PLI"
        );
    }
}
