//! A per-source, per-kind rate limit for the warnings that an
//! unauthenticated peer can cause once per message (a malformed message, a
//! refused CVI call), so that a flood from one source writes a bounded
//! number of lines plus one "suppressed N" summary per window instead of
//! one line per packet.
//!
//! Owns the counters and the summaries. It never decides whether a message
//! is accepted, and never holds more than [`MAX_SOURCES`] sources: past that
//! the rest share one "other sources" counter, so memory stays bounded
//! whatever the number of (spoofed) sources.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

/// Sources tracked one by one in a window; the rest share one counter.
pub const MAX_SOURCES: usize = 4096;

/// Warnings of one kind from one source logged per window, by default.
pub const DEFAULT_BURST: u32 = 5;
/// The window, by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Where repeated warnings come from: an address (IPv6 by its /64, so one
/// host cannot pass as many), or every source past [`MAX_SOURCES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    Others,
}

impl Key {
    fn of(ip: IpAddr) -> Key {
        Key::Source(match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
        })
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Source(IpAddr::V6(a)) => write!(f, "{a}/64"),
            Key::Source(a) => write!(f, "{a}"),
            Key::Others => f.write_str("other sources"),
        }
    }
}

#[derive(Debug, Default)]
struct Count {
    logged: u32,
    suppressed: u64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    counts: HashMap<(Key, &'static str), Count>,
}

/// One run of suppressed warnings, reported when its window closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub source: String,
    pub kind: &'static str,
    pub count: u64,
}

/// The limiter. The process has one ([`global`]); tests make their own.
#[derive(Debug)]
pub struct LogLimit {
    burst: AtomicU32,
    window_ms: AtomicU64,
    state: Mutex<Window>,
}

impl LogLimit {
    pub fn new(burst: u32, window: Duration) -> LogLimit {
        LogLimit {
            burst: AtomicU32::new(burst),
            window_ms: AtomicU64::new(window.as_millis().clamp(1, u64::MAX as u128) as u64),
            state: Mutex::new(Window {
                started: Instant::now(),
                counts: HashMap::new(),
            }),
        }
    }

    /// Changes the budget (at start, from the configuration).
    pub fn configure(&self, burst: u32, window: Duration) {
        self.burst.store(burst, Ordering::Relaxed);
        self.window_ms.store(
            window.as_millis().clamp(1, u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.load(Ordering::Relaxed))
    }

    /// True when a warning of `kind` caused by `source` may be logged now;
    /// false when it is counted for the summary instead. Also returns the
    /// summaries of a window that has just closed (to be logged).
    pub fn check(
        &self,
        source: IpAddr,
        kind: &'static str,
        now: Instant,
    ) -> (bool, Vec<Suppressed>) {
        let burst = self.burst.load(Ordering::Relaxed);
        let window = self.window();
        let Ok(mut w) = self.state.lock() else {
            // A panic elsewhere poisoned the lock: log rather than lose.
            return (true, Vec::new());
        };
        let closed = if now.saturating_duration_since(w.started) >= window {
            take(&mut w, now)
        } else {
            Vec::new()
        };
        let mut key = (Key::of(source), kind);
        if !w.counts.contains_key(&key) && w.counts.len() >= MAX_SOURCES {
            key.0 = Key::Others;
        }
        let c = w.counts.entry(key).or_default();
        let allow = c.logged < burst;
        if allow {
            c.logged += 1;
        } else {
            c.suppressed += 1;
        }
        (allow, closed)
    }

    /// The summaries of the current window when it is over (called by a
    /// timer, so a flood that stops is still summarised).
    pub fn flush_due(&self, now: Instant) -> Vec<Suppressed> {
        let window = self.window();
        match self.state.lock() {
            Ok(mut w) if now.saturating_duration_since(w.started) >= window => take(&mut w, now),
            _ => Vec::new(),
        }
    }

    /// Sources tracked in the current window (for tests and figures).
    pub fn tracked(&self) -> usize {
        self.state.lock().map(|w| w.counts.len()).unwrap_or(0)
    }
}

fn take(w: &mut Window, now: Instant) -> Vec<Suppressed> {
    let out = w
        .counts
        .drain()
        .filter(|(_, c)| c.suppressed > 0)
        .map(|((k, kind), c)| Suppressed {
            source: k.to_string(),
            kind,
            count: c.suppressed,
        })
        .collect();
    w.started = now;
    out
}

/// Logs the summaries of a closed window, one line per source and kind.
pub fn report(summaries: &[Suppressed], window: Duration) {
    for s in summaries {
        warn!(
            source = %s.source,
            kind = s.kind,
            suppressed = s.count,
            "suppressed {} similar warnings ({}) from {} in the last {:?}",
            s.count,
            s.kind,
            s.source,
            window
        );
    }
}

static GLOBAL: LazyLock<LogLimit> = LazyLock::new(|| LogLimit::new(DEFAULT_BURST, DEFAULT_WINDOW));

/// The process's limiter.
pub fn global() -> &'static LogLimit {
    &GLOBAL
}

/// True when a warning of `kind` caused by `source` may be logged now
/// (logging the summaries of a window that has just closed first).
pub fn allow(source: IpAddr, kind: &'static str) -> bool {
    let g = global();
    let (allow, closed) = g.check(source, kind, Instant::now());
    if !closed.is_empty() {
        report(&closed, g.window());
    }
    allow
}

/// Logs the summaries of a window that is over; a timer calls it.
pub fn flush() {
    let g = global();
    let closed = g.flush_due(Instant::now());
    if !closed.is_empty() {
        report(&closed, g.window());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_and_summarised_per_source_and_kind() {
        let l = LogLimit::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let allowed = (0..100)
            .filter(|_| l.check(ip("127.0.0.2"), "malformed", t0).0)
            .count();
        assert_eq!(allowed, 3);
        // Another source and another kind have their own budgets.
        assert!(l.check(ip("127.0.0.3"), "malformed", t0).0);
        assert!(l.check(ip("127.0.0.2"), "cvi", t0).0);
        assert!(l.flush_due(t0 + Duration::from_secs(1)).is_empty());
        let s = l.flush_due(t0 + Duration::from_secs(10));
        assert_eq!(
            s,
            vec![Suppressed {
                source: "127.0.0.2".into(),
                kind: "malformed",
                count: 97
            }]
        );
        // A new window starts afresh.
        assert!(
            l.check(ip("127.0.0.2"), "malformed", t0 + Duration::from_secs(11))
                .0
        );
    }

    #[test]
    fn many_sources_share_one_counter_past_the_cap_and_v6_counts_by_64() {
        let l = LogLimit::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 500) {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 + i));
            l.check(a, "k", t0);
        }
        assert_eq!(l.tracked(), MAX_SOURCES + 1);
        let s = l.flush_due(t0 + Duration::from_secs(10));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].source, "other sources");
        assert_eq!(s[0].count, 499);
        assert!(
            l.check(ip("2001:db8::1"), "k", t0 + Duration::from_secs(10))
                .0
        );
        assert!(
            !l.check(ip("2001:db8::2"), "k", t0 + Duration::from_secs(10))
                .0
        );
    }
}
