//! SIP messages out of a capture file, for `fedge explain`: pcap or pcapng
//! (`pcap-file`), Ethernet / Linux cooked / raw IP / loopback link layers
//! (`etherparse`), SIP over UDP (one message per datagram) or TCP (each
//! flow's bytes framed by the listener's own stream decoder), and HEP3
//! packets (`sip::hep::decode`, the capture issue's codec) carrying SIP
//! with their real addresses.
//!
//! Owns reading and picking (by Call-ID, then the Nth request). Never
//! judges a message: the parser's verdict on each is kept for the caller.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use tokio_util::codec::Decoder;

use super::ExplainError;
use crate::sip::framing::{DatagramItem, StreamDecoder, StreamItem, parse_datagram};
use crate::sip::hep;
use crate::sip::message::SipMessage;
use crate::sip::parse::Limits;

/// One SIP message found in a capture.
#[derive(Debug)]
pub struct Captured {
    /// The packet's number in the file (1-based, as Wireshark counts).
    pub packet: usize,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// `udp`, `tcp`, or `hep/udp`, `hep/tcp` (a HEP3 packet's inner protocol).
    pub carried: String,
    /// The message, or the parser's answer (status, reason).
    pub message: Result<SipMessage, (u16, String)>,
    /// Its Call-ID (also of an unparsable message when the header was read).
    pub call_id: Option<String>,
}

impl Captured {
    /// True for a request (or an unparsable message, which is judged as one).
    pub fn is_request(&self) -> bool {
        self.message.as_ref().map_or(true, SipMessage::is_request)
    }
}

/// True when `data` opens like a pcap or pcapng file.
pub fn is_capture(data: &[u8]) -> bool {
    matches!(
        data.get(..4),
        Some([0xd4, 0xc3, 0xb2, 0xa1])
            | Some([0xa1, 0xb2, 0xc3, 0xd4])
            | Some([0x4d, 0x3c, 0xb2, 0xa1])
            | Some([0xa1, 0xb2, 0x3c, 0x4d])
            | Some([0x0a, 0x0d, 0x0d, 0x0a])
    )
}

fn bad(e: impl std::fmt::Display) -> ExplainError {
    ExplainError::Capture(format!("the capture cannot be read: {e}"))
}

/// Every SIP message in the capture, in file order.
pub fn read(data: &[u8], limits: &Limits) -> Result<Vec<Captured>, ExplainError> {
    let mut frames: Vec<(DataLink, Vec<u8>)> = Vec::new();
    if data.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(data).map_err(bad)?;
        let mut links: Vec<DataLink> = Vec::new();
        while let Some(block) = r.next_block() {
            match block.map_err(bad)? {
                Block::InterfaceDescription(i) => links.push(i.linktype),
                Block::EnhancedPacket(p) => {
                    let link = links
                        .get(p.interface_id as usize)
                        .copied()
                        .unwrap_or(DataLink::ETHERNET);
                    frames.push((link, p.data.into_owned()));
                }
                Block::SimplePacket(p) => {
                    let link = links.first().copied().unwrap_or(DataLink::ETHERNET);
                    frames.push((link, p.data.into_owned()));
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(data).map_err(bad)?;
        let link = r.header().datalink;
        while let Some(p) = r.next_packet() {
            frames.push((link, p.map_err(bad)?.data.into_owned()));
        }
    }
    let mut out = Vec::new();
    let mut flows: HashMap<(SocketAddr, SocketAddr), (StreamDecoder, BytesMut)> = HashMap::new();
    for (i, (link, frame)) in frames.iter().enumerate() {
        let Some((src, dst, tcp, payload)) = transport_payload(*link, frame) else {
            continue;
        };
        if payload.starts_with(hep::MAGIC) {
            if let Ok(h) = hep::decode(payload) {
                let carried = if h.ip_proto == 6 {
                    "hep/tcp"
                } else {
                    "hep/udp"
                };
                push_datagram(&mut out, i + 1, h.src, h.dst, carried, h.payload, limits);
            }
            continue;
        }
        if !tcp {
            let data = Bytes::copy_from_slice(payload);
            push_datagram(&mut out, i + 1, src, dst, "udp", data, limits);
            continue;
        }
        let (dec, buf) = flows
            .entry((src, dst))
            .or_insert_with(|| (StreamDecoder::new(*limits), BytesMut::new()));
        buf.extend_from_slice(payload);
        loop {
            let item = match dec.decode(buf) {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    let m = Err((400, format!("TCP framing lost: {e}")));
                    out.push(captured(i + 1, src, dst, "tcp", m));
                    buf.clear();
                    break;
                }
            };
            let m = match item {
                StreamItem::Ping => continue,
                StreamItem::Message(m) => Ok(m),
                StreamItem::Rejected(r) => {
                    let call_id = r
                        .partial
                        .as_ref()
                        .and_then(|p| p.call_id().map(str::to_string));
                    let mut c = captured(
                        i + 1,
                        src,
                        dst,
                        "tcp",
                        Err((r.error.status, r.error.reason)),
                    );
                    c.call_id = call_id;
                    out.push(c);
                    continue;
                }
            };
            out.push(captured(i + 1, src, dst, "tcp", m));
        }
    }
    Ok(out)
}

fn captured(
    packet: usize,
    src: SocketAddr,
    dst: SocketAddr,
    carried: &str,
    message: Result<SipMessage, (u16, String)>,
) -> Captured {
    let call_id = message
        .as_ref()
        .ok()
        .and_then(|m| m.call_id().map(str::to_string));
    Captured {
        packet,
        src,
        dst,
        carried: carried.to_string(),
        message,
        call_id,
    }
}

fn push_datagram(
    out: &mut Vec<Captured>,
    packet: usize,
    src: SocketAddr,
    dst: SocketAddr,
    carried: &str,
    data: Bytes,
    limits: &Limits,
) {
    match parse_datagram(data, limits) {
        DatagramItem::KeepAlive => {}
        DatagramItem::Message(m) => out.push(captured(packet, src, dst, carried, Ok(m))),
        DatagramItem::Rejected(r) => {
            let call_id = r
                .partial
                .as_ref()
                .and_then(|p| p.call_id().map(str::to_string));
            let mut c = captured(
                packet,
                src,
                dst,
                carried,
                Err((r.error.status, r.error.reason)),
            );
            c.call_id = call_id;
            out.push(c);
        }
    }
}

/// The addresses, whether it is TCP, and the transport payload of a frame.
fn transport_payload(
    link: DataLink,
    frame: &[u8],
) -> Option<(SocketAddr, SocketAddr, bool, &[u8])> {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(frame),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(frame),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(frame),
        // BSD loopback: a 4-byte address family, then IP.
        DataLink::NULL | DataLink::LOOP => SlicedPacket::from_ip(frame.get(4..)?),
        _ => return None,
    }
    .ok()?;
    let (s, d): (IpAddr, IpAddr) = match sliced.net? {
        NetSlice::Ipv4(v4) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(v6) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        NetSlice::Arp(_) => return None,
    };
    match sliced.transport? {
        TransportSlice::Udp(u) => Some((
            SocketAddr::new(s, u.source_port()),
            SocketAddr::new(d, u.destination_port()),
            false,
            u.payload(),
        )),
        TransportSlice::Tcp(t) if !t.payload().is_empty() => Some((
            SocketAddr::new(s, t.source_port()),
            SocketAddr::new(d, t.destination_port()),
            true,
            t.payload(),
        )),
        _ => None,
    }
}

/// Picks the message to explain: of `call_id` (needed when the capture
/// holds several), the `index`th request (1-based; default the first).
pub fn pick(
    mut all: Vec<Captured>,
    call_id: Option<&str>,
    index: Option<usize>,
) -> Result<Captured, ExplainError> {
    if all.is_empty() {
        return Err(ExplainError::Capture(
            "the capture holds no SIP message".into(),
        ));
    }
    let mut ids: Vec<&str> = Vec::new();
    for c in &all {
        if let Some(id) = c.call_id.as_deref()
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    let wanted = match call_id {
        Some(id) if ids.contains(&id) => id.to_string(),
        Some(id) => {
            return Err(ExplainError::Capture(format!(
                "no message with Call-ID {id} in the capture (Call-IDs: {})",
                ids.join(", ")
            )));
        }
        None if ids.len() == 1 => ids[0].to_string(),
        None => {
            return Err(ExplainError::Capture(format!(
                "the capture holds {} Call-IDs; pick one with --call-id ({})",
                ids.len(),
                ids.join(", ")
            )));
        }
    };
    let n = index.unwrap_or(1);
    let mut requests: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, c)| c.call_id.as_deref() == Some(wanted.as_str()) && c.is_request())
        .map(|(i, _)| i)
        .collect();
    if n == 0 || n > requests.len() {
        return Err(ExplainError::Capture(format!(
            "--index {n}: Call-ID {wanted} has {} request(s) in the capture",
            requests.len()
        )));
    }
    let at = requests.swap_remove(n - 1);
    Ok(all.swap_remove(at))
}
