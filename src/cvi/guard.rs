//! The CVI gateway's guards against strangers: the conference ID guess
//! budgets (per source and for everyone, with lockouts that double on
//! each repeat), the UDP sources that proved their address, and the calls
//! each source holds.
//!
//! Owns counting and deciding "may this source go on"; it never sends,
//! never looks a meeting up and never logs a peer's text (only addresses
//! and counts). Every table is bounded: a flood of sources cannot grow it
//! past its cap.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::sip::transport::admission::SourceKey;

/// Sources (or addresses) a table remembers at most.
const MAX_ENTRIES: usize = 65_536;
/// The longest lockout.
const MAX_LOCKOUT: Duration = Duration::from_secs(3600);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The guess budgets, from `[cvi]`.
#[derive(Debug, Clone, Copy)]
pub struct GuessLimits {
    pub per_source: u32,
    pub global: u32,
    pub window: Duration,
    pub lockout: Duration,
}

#[derive(Debug)]
struct Guesser {
    window_start: Instant,
    wrong: u32,
    locked_until: Option<Instant>,
    lockouts: u32,
}

#[derive(Debug)]
struct GuessState {
    sources: HashMap<SourceKey, Guesser>,
    /// One shared budget for every source the full table cannot hold: a
    /// flood of sources that fills the table does not buy the next ones
    /// unlimited guesses.
    overflow: Guesser,
    global_start: Instant,
    global_wrong: u32,
}

/// Wrong conference IDs, per source and in all.
#[derive(Debug)]
pub struct Guesses {
    limits: GuessLimits,
    state: Mutex<GuessState>,
    /// Lockouts started (cumulative).
    pub lockouts: AtomicU64,
    /// Lookups refused because the source was locked out (cumulative).
    pub refused: AtomicU64,
}

impl Guesses {
    pub fn new(limits: GuessLimits) -> Guesses {
        Guesses {
            limits,
            state: Mutex::new(GuessState {
                sources: HashMap::new(),
                overflow: Guesser {
                    window_start: Instant::now(),
                    wrong: 0,
                    locked_until: None,
                    lockouts: 0,
                },
                global_start: Instant::now(),
                global_wrong: 0,
            }),
            lockouts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// `Err(time left)` while `ip` is locked out: it may not try an ID now
    /// (counted as refused).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let st = lock(&self.state);
        let key = SourceKey::of(ip);
        let g = match st.sources.get(&key) {
            Some(g) => Some(g),
            None if st.sources.len() >= MAX_ENTRIES => Some(&st.overflow),
            None => None,
        };
        let left = g
            .and_then(|g| g.locked_until)
            .and_then(|u| u.checked_duration_since(now))
            .filter(|d| !d.is_zero());
        drop(st);
        match left {
            Some(d) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(d)
            }
            None => Ok(()),
        }
    }

    /// Records a wrong ID from `ip`; `Some(lockout)` when this one starts
    /// a lockout (logged here, once per lockout).
    pub fn wrong(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let key = SourceKey::of(ip);
        let l = self.limits;
        let mut st = lock(&self.state);
        if now.duration_since(st.global_start) >= l.window {
            st.global_start = now;
            st.global_wrong = 0;
        }
        st.global_wrong = st.global_wrong.saturating_add(1);
        let global_spent = st.global_wrong > l.global;
        if st.sources.len() >= MAX_ENTRIES && !st.sources.contains_key(&key) {
            st.sources.retain(|_, g| {
                now.duration_since(g.window_start) < l.window
                    || g.locked_until.is_some_and(|u| u > now)
            });
        }
        let full = st.sources.len() >= MAX_ENTRIES && !st.sources.contains_key(&key);
        let mut guard = st;
        let st = &mut *guard;
        // No room for this source: it spends the shared overflow budget.
        let g = if full {
            &mut st.overflow
        } else {
            st.sources.entry(key).or_insert(Guesser {
                window_start: now,
                wrong: 0,
                locked_until: None,
                lockouts: 0,
            })
        };
        if now.duration_since(g.window_start) >= l.window {
            g.window_start = now;
            g.wrong = 0;
            if g.locked_until.is_none_or(|u| u <= now) && g.lockouts > 0 {
                // A quiet window forgets one earlier lockout.
                g.lockouts -= 1;
            }
        }
        g.wrong = g.wrong.saturating_add(1);
        if g.wrong < l.per_source && !global_spent {
            return None;
        }
        let factor = 1u32 << g.lockouts.min(16);
        let lockout = l.lockout.saturating_mul(factor).min(MAX_LOCKOUT);
        g.locked_until = Some(now + lockout);
        g.lockouts = g.lockouts.saturating_add(1);
        g.wrong = 0;
        g.window_start = now;
        let lockouts = g.lockouts;
        let wrong_all = st.global_wrong;
        drop(guard);
        self.lockouts.fetch_add(1, Ordering::Relaxed);
        warn!(
            source = %key,
            lockout_s = lockout.as_secs(),
            lockouts,
            wrong_all,
            global_spent,
            shared = full,
            "CVI conference ID guessing: source locked out"
        );
        Some(lockout)
    }
}

/// UDP source addresses (address and port) that answered the gateway's
/// probe, until when.
#[derive(Debug, Default)]
pub struct Proven {
    until: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Proven {
    pub fn is_proven(&self, a: SocketAddr) -> bool {
        lock(&self.until)
            .get(&a)
            .is_some_and(|u| *u > Instant::now())
    }

    /// `a` proved itself; it stays proven for `for_`.
    pub fn prove(&self, a: SocketAddr, for_: Duration) {
        let now = Instant::now();
        let mut t = lock(&self.until);
        if t.len() >= MAX_ENTRIES {
            t.retain(|_, u| *u > now);
        }
        if t.len() < MAX_ENTRIES || t.contains_key(&a) {
            t.insert(a, now + for_);
        }
    }
}

/// Calls (or probes) each source holds now.
#[derive(Debug, Default)]
pub struct PerSource {
    held: Mutex<HashMap<SourceKey, usize>>,
}

impl PerSource {
    /// Takes one of `max` places for `ip`; false when it has them all.
    pub fn take(&self, ip: IpAddr, max: usize) -> bool {
        let mut t = lock(&self.held);
        let n = t.entry(SourceKey::of(ip)).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    pub fn release(&self, ip: IpAddr) {
        let key = SourceKey::of(ip);
        let mut t = lock(&self.held);
        if let Some(n) = t.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&key);
            }
        }
    }

    pub fn held(&self, ip: IpAddr) -> usize {
        lock(&self.held)
            .get(&SourceKey::of(ip))
            .copied()
            .unwrap_or(0)
    }
}

/// Room systems' connections to the CVI listeners that have not sent a
/// message yet, since when: a connection that sends nothing within the
/// first-message deadline is closed (the idle timeout is for connections
/// that have spoken).
#[derive(Debug, Default)]
pub struct FirstMessage {
    /// Connection id -> (first seen, has sent a message).
    seen: Mutex<HashMap<u64, (Instant, bool)>>,
}

impl FirstMessage {
    /// A message arrived on connection `id`.
    pub fn heard(&self, id: u64) {
        let mut t = lock(&self.seen);
        if t.len() < MAX_ENTRIES || t.contains_key(&id) {
            t.insert(id, (Instant::now(), true));
        }
    }

    /// Of the connections `open` (ids) now, those silent for `timeout`
    /// since first seen; forgets the connections no longer open.
    pub fn overdue(&self, open: &[u64], timeout: Duration) -> Vec<u64> {
        let now = Instant::now();
        let mut t = lock(&self.seen);
        let open_set: std::collections::HashSet<u64> = open.iter().copied().collect();
        t.retain(|id, _| open_set.contains(id));
        let mut out = Vec::new();
        for id in open {
            if t.len() >= MAX_ENTRIES && !t.contains_key(id) {
                continue;
            }
            let (since, spoke) = *t.entry(*id).or_insert((now, false));
            if !spoke && now.duration_since(since) >= timeout {
                out.push(*id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_over_its_budget_is_locked_out_and_the_lockout_doubles() {
        let lockout = Duration::from_millis(40);
        let g = Guesses::new(GuessLimits {
            per_source: 3,
            global: 100,
            window: Duration::from_secs(600),
            lockout,
        });
        let a = ip("192.0.2.1");
        assert_eq!(g.wrong(a), None);
        assert_eq!(g.wrong(a), None);
        assert_eq!(g.wrong(a), Some(lockout));
        assert!(g.check(a).is_err());
        assert!(g.check(ip("192.0.2.2")).is_ok(), "others are not locked");
        std::thread::sleep(lockout * 2);
        assert!(g.check(a).is_ok());
        g.wrong(a);
        g.wrong(a);
        assert_eq!(g.wrong(a), Some(lockout * 2));
        assert_eq!(g.lockouts.load(Ordering::Relaxed), 2);
        assert_eq!(g.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn once_the_global_budget_is_spent_one_wrong_id_locks_out() {
        let g = Guesses::new(GuessLimits {
            per_source: 3,
            global: 4,
            window: Duration::from_secs(600),
            lockout: Duration::from_secs(60),
        });
        for i in 1..=4 {
            assert_eq!(g.wrong(ip(&format!("192.0.2.{i}"))), None);
        }
        assert!(g.wrong(ip("192.0.2.9")).is_some());
        assert!(
            g.check(ip("192.0.2.10")).is_ok(),
            "a clean source still tries"
        );
    }

    #[test]
    fn sources_the_full_table_cannot_hold_share_one_budget() {
        let g = Guesses::new(GuessLimits {
            per_source: 3,
            global: u32::MAX,
            window: Duration::from_secs(600),
            lockout: Duration::from_secs(60),
        });
        for i in 0..MAX_ENTRIES as u32 {
            assert_eq!(g.wrong(IpAddr::from((10u32 << 24 | i).to_be_bytes())), None);
        }
        // The table is full: three new sources spend one shared budget,
        // and a fourth is locked out before its first guess.
        assert_eq!(g.wrong(ip("198.51.100.1")), None);
        assert_eq!(g.wrong(ip("198.51.100.2")), None);
        assert!(g.wrong(ip("198.51.100.3")).is_some());
        assert!(g.check(ip("198.51.100.4")).is_err());
        assert!(
            g.check(ip("10.0.0.1")).is_ok(),
            "a counted source keeps its own"
        );
    }

    #[test]
    fn per_source_places() {
        let p = PerSource::default();
        let a = ip("192.0.2.1");
        assert!(p.take(a, 2) && p.take(a, 2) && !p.take(a, 2));
        assert!(p.take(ip("192.0.2.2"), 2));
        p.release(a);
        assert_eq!(p.held(a), 1);
        assert!(p.take(a, 2));
    }

    #[test]
    fn a_silent_connection_is_overdue_one_that_spoke_is_not() {
        let f = FirstMessage::default();
        assert!(f.overdue(&[1, 2], Duration::from_millis(20)).is_empty());
        f.heard(2);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(f.overdue(&[1, 2], Duration::from_millis(20)), vec![1]);
        // Closed connections are forgotten.
        assert!(f.overdue(&[], Duration::from_millis(20)).is_empty());
        assert!(lock(&f.seen).is_empty());
    }
}
