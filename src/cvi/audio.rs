//! The gateway's own audio: G.711 (mu-law and A-law) conversion, the voice
//! prompts shipped in `prompts/` (mu-law; A-law is derived), and sending a
//! prompt as RTP in 20 ms packets.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// A prompt the reception plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    Welcome,
    Invalid,
    Ended,
    Goodbye,
    Connecting,
    TestCall,
}

fn ulaw(p: Prompt) -> &'static [u8] {
    match p {
        Prompt::Welcome => include_bytes!("prompts/welcome.ulaw"),
        Prompt::Invalid => include_bytes!("prompts/invalid.ulaw"),
        Prompt::Ended => include_bytes!("prompts/ended.ulaw"),
        Prompt::Goodbye => include_bytes!("prompts/goodbye.ulaw"),
        Prompt::Connecting => include_bytes!("prompts/connecting.ulaw"),
        Prompt::TestCall => include_bytes!("prompts/test_call.ulaw"),
    }
}

/// The G.711 codec a call uses (RTP payload type 0 or 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// A prompt's samples in `codec`.
pub fn prompt(p: Prompt, codec: Codec) -> Vec<u8> {
    match codec {
        Codec::Pcmu => ulaw(p).to_vec(),
        Codec::Pcma => ulaw(p)
            .iter()
            .map(|&u| linear_to_alaw(ulaw_to_linear(u)))
            .collect(),
    }
}

/// G.711 mu-law to 16-bit linear.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let exponent = (u >> 4) & 0x07;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// 16-bit linear to G.711 A-law.
pub fn linear_to_alaw(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let mut v = (pcm as i32) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = SEG_END.iter().position(|&e| v <= e).unwrap_or(8);
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let mut a = (seg as u8) << 4;
    a |= if seg < 2 {
        ((v >> 1) & 0x0f) as u8
    } else {
        ((v >> seg) & 0x0f) as u8
    };
    a ^ mask
}

/// G.711 A-law to 16-bit linear.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Sends `samples` as RTP (20 ms, 160 samples a packet) from `sock` to `to`,
/// paced in real time, continuing `seq`/`timestamp`. Stops early when
/// `stop` says so; returns the next (seq, timestamp).
pub async fn play(
    sock: &UdpSocket,
    to: SocketAddr,
    codec: Codec,
    ssrc: u32,
    (mut seq, mut ts): (u16, u32),
    samples: &[u8],
    stop: &tokio_util::sync::CancellationToken,
) -> (u16, u32) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut first = true;
    for chunk in samples.chunks(160) {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let mut p = Vec::with_capacity(12 + 160);
        p.push(0x80);
        p.push(codec.payload_type() | if first { 0x80 } else { 0 });
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(chunk);
        let _ = sock.send_to(&p, to).await;
        first = false;
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
    }
    (seq, ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_known_values_and_round_trips() {
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-8), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
        // Every A-law code decodes and encodes back to itself.
        for a in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(a)), a, "{a:#x}");
        }
        // mu-law to A-law keeps the signal within A-law's step size.
        for u in 0..=255u8 {
            let x = ulaw_to_linear(u) as i32;
            let y = alaw_to_linear(linear_to_alaw(x as i16)) as i32;
            assert!(
                (x - y).abs() <= 1024.max(x.abs() / 16),
                "{u:#x}: {x} -> {y}"
            );
        }
    }

    #[test]
    fn prompts_are_shipped_in_both_codecs() {
        for p in [
            Prompt::Welcome,
            Prompt::Invalid,
            Prompt::Ended,
            Prompt::Goodbye,
            Prompt::Connecting,
            Prompt::TestCall,
        ] {
            let u = prompt(p, Codec::Pcmu);
            assert!(u.len() > 8000, "{p:?} is at least a second long");
            assert_eq!(prompt(p, Codec::Pcma).len(), u.len());
            // Not silence.
            assert!(
                u.iter().filter(|&&b| b != 0xff && b != 0x7f).count() > u.len() / 4,
                "{p:?}"
            );
        }
    }
}
