//! RTP test material: pcap files of G.711 streams for SIPp to play, and how
//! much a UDP socket has waiting to be read (what reached an endpoint that
//! does not read its media). It never sends media itself.

use std::path::Path;

/// Writes a pcap (Ethernet/IPv4/UDP) of `count` PCMA RTP packets, 20 ms
/// apart, with SSRC `ssrc` and every payload byte `fill`.
pub fn write_pcap(path: &Path, ssrc: u32, fill: u8, count: u16) {
    let mut out = Vec::new();
    // Global header: magic, v2.4, GMT offset, accuracy, snaplen, Ethernet.
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..count {
        let mut rtp = vec![0x80, 8];
        rtp.extend_from_slice(&(i + 1).to_be_bytes());
        rtp.extend_from_slice(&(u32::from(i) * 160).to_be_bytes());
        rtp.extend_from_slice(&ssrc.to_be_bytes());
        rtp.extend(std::iter::repeat_n(fill, 160));
        let udp_len = 8 + rtp.len() as u16;
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        let sum = !ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .fold(0u32, |a, b| {
                let s = a + b;
                (s & 0xffff) + (s >> 16)
            }) as u16;
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&udp_len.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&rtp);
        let usec = u32::from(i) * 20_000;
        out.extend_from_slice(&(usec / 1_000_000).to_le_bytes());
        out.extend_from_slice(&(usec % 1_000_000).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

/// Bytes queued for reading on the IPv4 UDP socket bound to `port`
/// (`/proc/net/udp`'s rx_queue), if there is one.
/// How many UDP sockets of this network namespace are connected to port
/// `remote` (state 01 in `/proc/net/udp` and `/proc/net/udp6`): the media
/// relay's connected siblings for a peer on that port (D258).
pub fn udp_connected_to(remote: u16) -> usize {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let port = f
                        .get(2)
                        .and_then(|a| a.rsplit(':').next())
                        .and_then(|p| u16::from_str_radix(p, 16).ok());
                    port == Some(remote) && f.get(3) == Some(&"01")
                })
                .count()
        })
        .sum()
}

pub fn udp_rx_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local_port = f.get(1)?.rsplit(':').next()?;
        if u16::from_str_radix(local_port, 16).ok()? != port {
            return None;
        }
        let rx = f.get(4)?.split(':').nth(1)?;
        u64::from_str_radix(rx, 16).ok()
    })
}
