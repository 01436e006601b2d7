//! Login throttling: password attempts counted per source address (an
//! IPv6 source by its /64) and per account name over a window, counted
//! *before* the password is checked (a right one is refunded), so that
//! parallel attempts cannot all pass the check; past the limit, further
//! attempts are refused (429 with Retry-After) without checking the
//! password, until the window that counted them ends. Also the bound on
//! password checks running at once ([`password_checks`]): each argon2
//! check takes ~19 MiB.
//!
//! Owns the counters, in memory in this process (decision D82: per node;
//! a restart forgets them), and the check semaphore (D103). It logs one
//! warning per key and window when the limit is reached, never one per
//! attempt, and never logs a password. It never decides whether a
//! password is right (the store does).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tracing::warn;

/// Failed logins allowed per key and window.
pub const LIMIT: u32 = 5;
/// The window the failures are counted over.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Password checks (argon2, ~19 MiB each) running at once, per process;
/// an attempt past it is refused (503) without hashing.
pub const CONCURRENT_CHECKS: usize = 4;
/// Keys kept at most; past it, ended windows are dropped first, then the
/// oldest (an attacker with many addresses cannot grow memory for ever).
const MAX_KEYS: usize = 50_000;

/// What a failure is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    Account(String),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    /// Attempts counted (failed, or still being checked).
    failures: u32,
    /// The limit's warning was logged for this window.
    warned: bool,
}

/// The counters of one node.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    window: Duration,
    keys: Mutex<HashMap<Key, Window>>,
}

/// The source a failure counts against: an IPv4 address (IPv4-mapped
/// IPv6 included) as is, an IPv6 address by its /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                for s in &mut seg[4..] {
                    *s = 0;
                }
                IpAddr::V6(seg.into())
            }
        },
    }
}

/// The process's login throttle (the admin API's and the console's).
pub fn logins() -> &'static Throttle {
    static T: OnceLock<Throttle> = OnceLock::new();
    T.get_or_init(|| Throttle::new(LIMIT, WINDOW))
}

/// The process's bound on password checks running at once: take a permit
/// with `try_acquire` before hashing; none left means answer 503.
pub fn password_checks() -> &'static Semaphore {
    static S: OnceLock<Semaphore> = OnceLock::new();
    S.get_or_init(|| Semaphore::new(CONCURRENT_CHECKS))
}

impl Throttle {
    pub fn new(limit: u32, window: Duration) -> Self {
        Throttle {
            limit,
            window,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn keys(source: IpAddr, name: &str) -> [Key; 2] {
        [
            Key::Source(source_key(source)),
            Key::Account(name.to_ascii_lowercase()),
        ]
    }

    /// Counts an attempt of `name` from `source` before its password is
    /// checked, atomically with the check of the limit: `Err(wait)` (and
    /// nothing counted) while `source` or `name` is over the limit, with
    /// how long until its window ends. After `Ok`, call exactly one of
    /// [`Self::failed`], [`Self::succeeded`] or [`Self::refund`].
    pub fn begin(&self, source: IpAddr, name: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let keys = Self::keys(source, name);
        let wait = keys
            .iter()
            .filter_map(|k| map.get(k))
            .filter(|w| w.failures >= self.limit)
            .filter_map(|w| (w.started + self.window).checked_duration_since(now))
            .filter(|w| !w.is_zero())
            .max();
        if let Some(w) = wait {
            return Err(w);
        }
        if map.len() >= MAX_KEYS {
            let window = self.window;
            map.retain(|_, w| now.duration_since(w.started) < window);
            while map.len() + keys.len() > MAX_KEYS {
                let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        for key in keys {
            let w = map.entry(key).or_insert(Window {
                started: now,
                failures: 0,
                warned: false,
            });
            if now.duration_since(w.started) >= self.window {
                *w = Window {
                    started: now,
                    failures: 0,
                    warned: false,
                };
            }
            w.failures = w.failures.saturating_add(1);
        }
        Ok(())
    }

    /// `Err(wait)` while `source` or `name` is over the limit (counts
    /// nothing; [`Self::begin`] is the check a login uses).
    #[cfg(test)]
    pub fn check(&self, source: IpAddr, name: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let wait = Self::keys(source, name)
            .iter()
            .filter_map(|k| map.get(k))
            .filter(|w| w.failures >= self.limit)
            .filter_map(|w| (w.started + self.window).checked_duration_since(now))
            .max();
        match wait {
            Some(w) if !w.is_zero() => Err(w),
            _ => Ok(()),
        }
    }

    /// The attempt [`Self::begin`] counted failed (or was refused as too
    /// many at once): it stays counted; logs
    /// one warning per key and window once a key is at the limit.
    pub fn failed(&self, source: IpAddr, name: &str) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let mins = self.window.as_secs() / 60;
        for key in Self::keys(source, name) {
            let Some(w) = map.get_mut(&key) else {
                continue;
            };
            if w.failures < self.limit || w.warned {
                continue;
            }
            w.warned = true;
            match &key {
                Key::Source(ip) => warn!(
                    source = %ip,
                    failures = self.limit,
                    window_minutes = mins,
                    "login throttled: too many failed logins from this source; further attempts refused (429) until the window ends"
                ),
                Key::Account(a) => warn!(
                    account = %a,
                    %source,
                    failures = self.limit,
                    window_minutes = mins,
                    "login throttled: too many failed logins for this account; further attempts refused (429) until the window ends"
                ),
            }
        }
    }

    /// The attempt [`Self::begin`] counted succeeded: the source gets it
    /// back, and the account's failures are forgotten (not the source's:
    /// one right password does not clear a guessing source).
    pub fn succeeded(&self, source: IpAddr, name: &str) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = map.get_mut(&Key::Source(source_key(source))) {
            w.failures = w.failures.saturating_sub(1);
        }
        map.remove(&Key::Account(name.to_ascii_lowercase()));
    }

    /// The attempt [`Self::begin`] counted was not checked because the
    /// store failed: both keys get it back.
    pub fn refund(&self, source: IpAddr, name: &str) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        for key in Self::keys(source, name) {
            if let Some(w) = map.get_mut(&key) {
                w.failures = w.failures.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_per_source_and_per_account() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.begin(a, "alice").is_ok());
            t.failed(a, "alice");
        }
        assert!(t.check(a, "bob").is_err(), "the source is over");
        assert!(t.check(b, "alice").is_err(), "the account is over");
        assert!(t.check(b, "bob").is_ok());
        let wait = t.check(a, "alice").unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_v4_as_v4() {
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let z: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(x), source_key(y));
        assert_ne!(source_key(x), source_key(z));
        let m: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_key(m), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn success_clears_the_account_not_the_source() {
        let t = Throttle::new(2, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..2 {
            t.begin(a, "alice").unwrap();
            t.failed(a, "alice");
        }
        // An attempt from elsewhere that succeeds clears the account.
        let b: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(t.begin(b, "alice").is_err(), "the account is over");
        t.succeeded(b, "alice");
        assert!(t.check(b, "alice").is_ok());
        assert!(t.check(a, "carol").is_err());
    }

    #[test]
    fn attempts_count_before_the_check_ends() {
        // Parallel attempts: each is counted as it starts, so no more than
        // the limit can be in flight or failed at once.
        let t = Throttle::new(5, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let passed = (0..50).filter(|_| t.begin(a, "alice").is_ok()).count();
        assert_eq!(passed, 5);
        // Refunded (not checked): one more may try.
        t.refund(a, "alice");
        assert!(t.begin(a, "alice").is_ok());
        assert!(t.begin(a, "alice").is_err());
        // A success gives the source its attempt back.
        let u = Throttle::new(2, Duration::from_secs(60));
        u.begin(a, "bob").unwrap();
        u.succeeded(a, "bob");
        u.begin(a, "carol").unwrap();
        u.failed(a, "carol");
        assert!(u.begin(a, "dave").is_ok(), "one failure only");
        u.failed(a, "dave");
        assert!(u.begin(a, "erin").is_err());
    }

    #[test]
    fn password_checks_are_bounded() {
        let s = password_checks();
        let held: Vec<_> = (0..CONCURRENT_CHECKS)
            .map(|_| s.try_acquire().unwrap())
            .collect();
        assert!(s.try_acquire().is_err(), "full: refused without waiting");
        drop(held);
        assert!(s.try_acquire().is_ok());
    }
}
