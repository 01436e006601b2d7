//! The relay's ports: even/odd pairs (RTP, RTCP) from a configured range,
//! bound before they are handed out and never handed out twice while a
//! lease holds them.
//!
//! Owns the range and the set in use. Allocation starts at a random pair
//! of the range each time, so nobody can tell which ports the next call
//! gets (and aim packets at them before its parties do); pairs released
//! recently are taken only when nothing else is free (late packets of an
//! old call do not reach a new one); ports that another process holds are
//! skipped.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};

/// Why no pair could be had.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("all {pairs} media port pairs of {lo}-{hi} are in use")]
    Exhausted { pairs: usize, lo: u16, hi: u16 },
}

#[derive(Debug)]
struct State {
    used: BTreeSet<u16>,
    /// Pairs released lately, oldest first (and the same as a set).
    recent: VecDeque<u16>,
    recent_set: HashSet<u16>,
}

/// Released pairs kept out of use while others are free.
const RECENT: usize = 256;

/// A range of ports, `lo` to `hi` inclusive, handed out as even/odd pairs.
#[derive(Debug)]
pub struct PortRange {
    lo: u16,
    hi: u16,
    state: Mutex<State>,
}

/// A bound pair. Its sockets may be moved out; the ports return to the
/// range when the lease is dropped.
#[derive(Debug)]
pub struct PortPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    /// Bound when asked for: RFC 4571 media on the RTP port number.
    pub tcp: Option<TcpListener>,
    pub lease: PortLease,
}

/// Holds a pair's ports out of the range until dropped.
#[derive(Debug)]
pub struct PortLease {
    range: Arc<PortRange>,
    base: u16,
}

impl PortLease {
    pub fn rtp_port(&self) -> u16 {
        self.base
    }

    pub fn rtcp_port(&self) -> u16 {
        self.base + 1
    }
}

impl PortPair {
    pub fn rtp_port(&self) -> u16 {
        self.lease.base
    }

    pub fn rtcp_port(&self) -> u16 {
        self.lease.base + 1
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut st = self.range.state.lock().unwrap_or_else(|p| p.into_inner());
        st.used.remove(&self.base);
        let keep = RECENT.min(self.range.pairs() / 4);
        if keep > 0 && st.recent_set.insert(self.base) {
            st.recent.push_back(self.base);
        }
        while st.recent.len() > keep {
            if let Some(old) = st.recent.pop_front() {
                st.recent_set.remove(&old);
            }
        }
    }
}

fn nonblocking_udp(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddr::new(ip, port))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl PortRange {
    /// `lo` is rounded up to even and `hi` down to odd.
    pub fn new(lo: u16, hi: u16) -> Arc<PortRange> {
        let lo = lo + lo % 2;
        let hi = if hi.is_multiple_of(2) {
            hi.saturating_sub(1)
        } else {
            hi
        };
        Arc::new(PortRange {
            lo,
            hi,
            state: Mutex::new(State {
                used: BTreeSet::new(),
                recent: VecDeque::new(),
                recent_set: HashSet::new(),
            }),
        })
    }

    /// How many pairs the range holds.
    pub fn pairs(&self) -> usize {
        if self.hi < self.lo {
            0
        } else {
            (self.hi - self.lo) as usize / 2 + 1
        }
    }

    /// Pairs in use now.
    pub fn in_use(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .used
            .len()
    }

    /// Binds a free pair chosen at random on `ip` (and a TCP listener on
    /// the RTP port when `tcp`).
    pub fn allocate(self: &Arc<Self>, ip: IpAddr, tcp: bool) -> Result<PortPair, PortError> {
        let pairs = self.pairs();
        let exhausted = PortError::Exhausted {
            pairs,
            lo: self.lo,
            hi: self.hi,
        };
        if pairs == 0 {
            return Err(exhausted);
        }
        let start = rand::random_range(0..pairs);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // The first pass leaves recently released pairs alone.
        for pass in 0..2 {
            for k in 0..pairs {
                let base = self.lo + (((start + k) % pairs) * 2) as u16;
                if st.used.contains(&base) || (pass == 0 && st.recent_set.contains(&base)) {
                    continue;
                }
                let (Ok(rtp), Ok(rtcp)) =
                    (nonblocking_udp(ip, base), nonblocking_udp(ip, base + 1))
                else {
                    continue;
                };
                let listener = if tcp {
                    match TcpListener::bind(SocketAddr::new(ip, base))
                        .and_then(|l| l.set_nonblocking(true).map(|_| l))
                    {
                        Ok(l) => Some(l),
                        Err(_) => continue,
                    }
                } else {
                    None
                };
                st.used.insert(base);
                return Ok(PortPair {
                    rtp,
                    rtcp,
                    tcp: listener,
                    lease: PortLease {
                        range: self.clone(),
                        base,
                    },
                });
            }
        }
        Err(exhausted)
    }
}

/// Port ranges for unit tests, one per call and never overlapping within a
/// test run. They lie below Linux's default ephemeral range (32768-60999),
/// so a socket another test binds to port 0 never lands in them: a test
/// that counts on exactly `n` free pairs gets them. The process id spreads
/// two concurrent test runs apart; a port someone else holds is skipped by
/// `allocate` anyway.
#[cfg(test)]
pub(crate) fn test_range(pairs: u16) -> (u16, u16) {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LO: u16 = 20_000;
    const SPAN: u16 = 12_000; // 20000-31999
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 64) as u16 * 128;
    let offset = NEXT.fetch_add(2 * pairs, Ordering::Relaxed);
    let lo = LO + (start + offset) % (SPAN - 2 * pairs);
    let lo = lo & !1;
    (lo, lo + 2 * pairs - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_base() -> u16 {
        test_range(8).0
    }

    #[test]
    fn pairs_are_even_odd_unique_and_come_back() {
        let lo = free_base();
        let r = PortRange::new(lo, lo + 7);
        assert_eq!(r.pairs(), 4);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut held = Vec::new();
        while let Ok(p) = r.allocate(ip, false) {
            assert_eq!(p.rtp_port() % 2, 0);
            assert_eq!(p.rtcp_port(), p.rtp_port() + 1);
            assert_eq!(p.rtp.local_addr().unwrap().port(), p.rtp_port());
            assert!(!held.iter().any(|h: &PortPair| h.rtp_port() == p.rtp_port()));
            held.push(p);
        }
        assert_eq!(held.len(), 4, "every pair of a range nobody else uses");
        assert_eq!(r.in_use(), held.len());
        let err = r.allocate(ip, false).unwrap_err();
        assert!(err.to_string().contains("media port pairs"), "{err}");
        let freed = held.remove(0).rtp_port();
        assert_eq!(r.in_use(), held.len());
        let again = r.allocate(ip, true).unwrap();
        assert_eq!(again.rtp_port(), freed);
        assert!(again.tcp.is_some());
    }

    #[test]
    fn a_port_someone_else_holds_is_skipped_and_a_released_pair_waits() {
        let lo = test_range(9).0; // lo ..= lo+17 are this test's
        let r = PortRange::new(lo + 1, lo + 17); // rounds to lo+2 ..= lo+17: 8 pairs
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let _squatter = UdpSocket::bind(("127.0.0.1", lo + 2)).unwrap();
        for _ in 0..20 {
            let a = r.allocate(ip, false).unwrap();
            assert_ne!(a.rtp_port(), lo + 2, "the held pair is skipped");
        }
        let a = r.allocate(ip, false).unwrap();
        let first = a.rtp_port();
        drop(a);
        // The pairs released last (2 of 8 kept apart: this one and the one
        // before) are handed out again only once no other is free: 7
        // usable pairs, 5 others first.
        let mut held = Vec::new();
        for _ in 0..5 {
            let b = r.allocate(ip, false).unwrap();
            assert_ne!(b.rtp_port(), first, "a released pair is not reused at once");
            held.push(b);
        }
        let last: Vec<u16> = (0..2)
            .map(|_| r.allocate(ip, false).unwrap())
            .map(|p| {
                let port = p.rtp_port();
                held.push(p);
                port
            })
            .collect();
        assert!(last.contains(&first), "{last:?} {first}");
    }

    #[test]
    fn allocation_is_not_predictable_from_the_previous_pair() {
        let (lo, hi) = test_range(64);
        let r = PortRange::new(lo, hi);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Round robin would give prev + 2 every time; random starts do not.
        let mut prev = r.allocate(ip, false).unwrap();
        let mut next_of_prev = 0;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..30 {
            let p = r.allocate(ip, false).unwrap();
            if p.rtp_port() == prev.rtp_port() + 2 {
                next_of_prev += 1;
            }
            seen.insert(p.rtp_port());
            prev = p;
        }
        assert!(next_of_prev < 10, "{next_of_prev} of 30 were the next pair");
        assert!(seen.len() > 20, "{seen:?}");
    }
}
