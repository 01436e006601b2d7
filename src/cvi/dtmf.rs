//! Digits from a room system: RFC 4733 telephone-events in RTP, and SIP
//! INFO bodies (`application/dtmf-relay`: `Signal=5`, and
//! `application/dtmf`: `5`), collected into a conference ID that ends with
//! `#` or a pause. Pure: packets and bodies in, digits and outcomes out.

use std::time::Duration;

/// A telephone-event (RFC 4733 §2.3) as read from one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The RTP timestamp: the same for every packet of one key press.
    pub timestamp: u32,
    pub digit: char,
    /// The end bit: the key was released.
    pub end: bool,
}

fn event_char(code: u8) -> Option<char> {
    match code {
        0..=9 => Some((b'0' + code) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + code - 12) as char),
        _ => None,
    }
}

/// Reads a telephone-event from an RTP packet whose payload type is `pt`.
pub fn rtp_event(packet: &[u8], pt: u8) -> Option<Event> {
    if packet.len() < 12 + 4 || packet[0] >> 6 != 2 || packet[1] & 0x7f != pt {
        return None;
    }
    let cc = (packet[0] & 0x0f) as usize;
    let mut at = 12 + 4 * cc;
    if packet[0] & 0x10 != 0 {
        // Header extension: 4 bytes, then its length in 32-bit words.
        let len = u16::from_be_bytes([*packet.get(at + 2)?, *packet.get(at + 3)?]) as usize;
        at += 4 + 4 * len;
    }
    let p = packet.get(at..at + 4)?;
    Some(Event {
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        digit: event_char(p[0])?,
        end: p[1] & 0x80 != 0,
    })
}

/// The digit an INFO body carries, by its Content-Type.
pub fn info_digit(content_type: &str, body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let ct = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let value = match ct.as_str() {
        "application/dtmf-relay" => text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?,
        "application/dtmf" => text.trim(),
        _ => return None,
    };
    match value {
        "10" => Some('*'),
        "11" => Some('#'),
        v if v.len() == 1 => {
            let c = v.chars().next()?.to_ascii_uppercase();
            (c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')).then_some(c)
        }
        _ => None,
    }
}

/// What the collector has when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collected {
    /// Still listening.
    More,
    /// An entry ended (by `#`, a pause, or reaching the ID's length).
    Entry(String),
}

/// Collects key presses into entries.
#[derive(Debug)]
pub struct Collector {
    digits: String,

    pub pause: Duration,
    pub max_len: usize,
}

impl Collector {
    pub fn new(pause: Duration, max_len: usize) -> Collector {
        Collector {
            digits: String::new(),

            pause,
            max_len,
        }
    }

    /// True when something has been typed in the current entry.
    pub fn started(&self) -> bool {
        !self.digits.is_empty()
    }

    /// A key press (from RTP or SIP INFO). A `#` with nothing typed is
    /// ignored: it ends no entry, so it costs no try.
    pub fn key(&mut self, c: char) -> Collected {
        match c {
            '#' if self.digits.is_empty() => Collected::More,
            '#' => Collected::Entry(std::mem::take(&mut self.digits)),
            '*' => {
                // Star starts the entry again.
                self.digits.clear();
                Collected::More
            }
            c if c.is_ascii_digit() => {
                self.digits.push(c);
                if self.digits.len() >= self.max_len + 8 {
                    // Far too long: end it, the ID check will say no.
                    return Collected::Entry(std::mem::take(&mut self.digits));
                }
                Collected::More
            }
            _ => Collected::More,
        }
    }

    /// The pause after the last key has passed.
    pub fn timeout(&mut self) -> Collected {
        if self.digits.is_empty() {
            Collected::More
        } else {
            Collected::Entry(std::mem::take(&mut self.digits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pt: u8, ts: u32, event: u8, end: bool) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 1];
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 7]);
        p.extend_from_slice(&[event, if end { 0x80 | 10 } else { 10 }, 0x01, 0x40]);
        p
    }

    #[test]
    fn rfc4733_events() {
        assert_eq!(
            rtp_event(&packet(101, 160, 5, false), 101),
            Some(Event {
                timestamp: 160,
                digit: '5',
                end: false
            })
        );
        assert_eq!(
            rtp_event(&packet(101, 160, 11, true), 101).map(|e| (e.digit, e.end)),
            Some(('#', true))
        );
        assert_eq!(
            rtp_event(&packet(101, 160, 10, false), 101).map(|e| e.digit),
            Some('*')
        );
        assert_eq!(
            rtp_event(&packet(0, 160, 5, false), 101),
            None,
            "another payload type"
        );
        assert_eq!(
            rtp_event(&packet(101, 160, 99, false), 101),
            None,
            "not a DTMF event"
        );
        assert_eq!(rtp_event(&[0x80, 101, 0, 1], 101), None, "truncated");
        let mut with_csrc = packet(101, 320, 7, false);
        with_csrc[0] = 0x81;
        with_csrc.splice(12..12, [0, 0, 0, 9]);
        assert_eq!(rtp_event(&with_csrc, 101).map(|e| e.digit), Some('7'));
    }

    #[test]
    fn info_bodies() {
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal=5\r\nDuration=250\r\n"),
            Some('5')
        );
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal= #\r\nDuration=250"),
            Some('#')
        );
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal=11\r\n"),
            Some('#')
        );
        assert_eq!(info_digit("Application/DTMF; x=1", b"9"), Some('9'));
        assert_eq!(info_digit("application/dtmf", b"99"), None);
        assert_eq!(info_digit("text/plain", b"5"), None);
        assert_eq!(info_digit("application/dtmf-relay", b"Duration=250"), None);
    }

    #[test]
    fn entries_end_with_hash_a_pause_or_star_restarts() {
        let mut c = Collector::new(Duration::from_secs(3), 10);
        for d in "12345".chars() {
            assert_eq!(c.key(d), Collected::More);
        }
        assert_eq!(c.key('#'), Collected::Entry("12345".into()));
        assert!(!c.started());
        c.key('9');
        c.key('*');
        c.key('4');
        assert_eq!(c.timeout(), Collected::Entry("4".into()));
        assert_eq!(c.timeout(), Collected::More);
        // A # with nothing typed ends nothing.
        assert_eq!(c.key('#'), Collected::More);
        c.key('3');
        assert_eq!(c.key('#'), Collected::Entry("3".into()));
    }
}
