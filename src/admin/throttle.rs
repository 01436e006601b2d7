//! Login throttling: failed logins counted per source address (an IPv6
//! source by its /64) and per account name over a window; past the limit,
//! further attempts are refused (429 with Retry-After) without checking
//! the password, until the window that counted them ends.
//!
//! Owns the counters, in memory in this process (decision D82: per node;
//! a restart forgets them). It logs one warning per key and window when
//! the limit is reached, never one per attempt, and never logs a password.
//! It never decides whether a password is right (the store does).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::warn;

/// Failed logins allowed per key and window.
pub const LIMIT: u32 = 5;
/// The window the failures are counted over.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
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
    failures: u32,
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

    /// `Err(wait)` while `source` or `name` is over the limit: how long
    /// until its window ends.
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

    /// Counts a failed login; logs one warning when a key reaches the limit.
    pub fn failed(&self, source: IpAddr, name: &str) {
        let now = Instant::now();
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            let window = self.window;
            map.retain(|_, w| now.duration_since(w.started) < window);
            if map.len() >= MAX_KEYS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        for key in Self::keys(source, name) {
            let w = map.entry(key.clone()).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(w.started) >= self.window {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
            if w.failures == self.limit {
                let mins = self.window.as_secs() / 60;
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
    }

    /// A successful login forgets the account's failures (not the
    /// source's: one right password does not clear a guessing source).
    pub fn succeeded(&self, name: &str) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Key::Account(name.to_ascii_lowercase()));
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
            assert!(t.check(a, "alice").is_ok());
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
        t.failed(a, "alice");
        t.failed(a, "alice");
        t.succeeded("alice");
        assert!(t.check("192.0.2.9".parse().unwrap(), "alice").is_ok());
        assert!(t.check(a, "carol").is_err());
    }
}
