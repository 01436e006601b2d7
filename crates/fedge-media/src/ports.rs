//! The relay's ports: even/odd pairs (RTP, RTCP) from a configured range,
//! bound before they are handed out and never handed out twice while a
//! lease holds them.
//!
//! Owns the range and the set in use. Allocation walks the range round
//! robin from where it last stopped, so a port just released is the last to
//! be reused (late packets of an old call do not reach a new one); ports
//! that another process holds are skipped.

use std::collections::BTreeSet;
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
    next: u16,
}

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
                next: lo,
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

    /// Binds the next free pair on `ip` (and a TCP listener on the RTP
    /// port when `tcp`).
    pub fn allocate(self: &Arc<Self>, ip: IpAddr, tcp: bool) -> Result<PortPair, PortError> {
        let pairs = self.pairs();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..pairs {
            let base = st.next;
            st.next = if base.saturating_add(2) > self.hi {
                self.lo
            } else {
                base + 2
            };
            if st.used.contains(&base) {
                continue;
            }
            let (Ok(rtp), Ok(rtcp)) = (nonblocking_udp(ip, base), nonblocking_udp(ip, base + 1))
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
        Err(PortError::Exhausted {
            pairs,
            lo: self.lo,
            hi: self.hi,
        })
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
    fn a_port_someone_else_holds_is_skipped_and_release_is_round_robin() {
        let lo = free_base();
        let r = PortRange::new(lo + 1, lo + 9); // rounds to lo+2 ..= lo+9
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let _squatter = UdpSocket::bind(("127.0.0.1", lo + 2)).unwrap();
        let a = r.allocate(ip, false).unwrap();
        assert_eq!(a.rtp_port(), lo + 4, "the held pair is skipped");
        let first = a.rtp_port();
        drop(a);
        let b = r.allocate(ip, false).unwrap();
        assert_ne!(b.rtp_port(), first, "a released pair is not reused at once");
    }
}
