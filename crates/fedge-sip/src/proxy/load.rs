//! How far behind the proxy's event loop is: a generic load signal the
//! [`Router`](super::Router) reads with every request ([`Pressure`]).
//!
//! Owns the measurement only. A sampler task asks to be woken every
//! [`TICK`] and records how late it was woken (the time every other task
//! on the same runtime held the thread); a moving average of that lag,
//! with hysteresis, says whether the loop has fallen behind. The queue of
//! requests waiting for the next hop (live client transactions) is read
//! beside it. Never decides what to refuse: shedding is the application's
//! policy (in fedge, `federation::policy::limits`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the sampler asks to be woken.
pub const TICK: Duration = Duration::from_millis(10);

/// Thresholds of the load signal.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// The loop is behind once the average lag exceeds this.
    pub lag_high: Duration,
    /// ... and catches up again once it falls below this.
    pub lag_low: Duration,
    /// The loop is behind while more client transactions than this wait
    /// for the next hop (a queue of relayed requests).
    pub max_pending: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            lag_high: Duration::from_millis(40),
            lag_low: Duration::from_millis(10),
            max_pending: 100_000,
        }
    }
}

/// The load signal as a request sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// Average lag of the event loop.
    pub lag: Duration,
    /// Client transactions waiting for the next hop.
    pub pending: usize,
    /// The loop has fallen behind (lag or queue over its threshold):
    /// the application should shed what it can.
    pub overloaded: bool,
}

/// The measured lag of one runtime, shared by the sampler and the proxy.
#[derive(Debug)]
pub struct Load {
    cfg: LoadConfig,
    /// Average lag in microseconds (exponential, weight 1/8 per tick).
    avg_us: AtomicU64,
    /// Worst single lag since start, in microseconds (for the metrics).
    max_us: AtomicU64,
    behind: AtomicBool,
    /// Times the loop was found behind (transitions into overload).
    episodes: AtomicU64,
}

impl Default for Load {
    fn default() -> Self {
        Load::new(LoadConfig::default())
    }
}

impl Load {
    pub fn new(cfg: LoadConfig) -> Load {
        Load {
            cfg,
            avg_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
            behind: AtomicBool::new(false),
            episodes: AtomicU64::new(0),
        }
    }

    /// Records one lag sample; returns true when this sample put the loop
    /// behind (so the caller can log the transition once).
    pub fn record(&self, lag: Duration) -> bool {
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        let prev = self.avg_us.load(Ordering::Relaxed);
        // avg += (sample - avg) / 8, in integers.
        let next = if us >= prev {
            prev + (us - prev) / 8
        } else {
            prev - (prev - us) / 8
        };
        self.avg_us.store(next, Ordering::Relaxed);
        let avg = Duration::from_micros(next);
        let was = self.behind.load(Ordering::Relaxed);
        let now = if was {
            avg > self.cfg.lag_low
        } else {
            avg > self.cfg.lag_high
        };
        self.behind.store(now, Ordering::Relaxed);
        if now && !was {
            self.episodes.fetch_add(1, Ordering::Relaxed);
        }
        now && !was
    }

    /// The signal for a request, given the client transactions pending.
    pub fn pressure(&self, pending: usize) -> Pressure {
        Pressure {
            lag: Duration::from_micros(self.avg_us.load(Ordering::Relaxed)),
            pending,
            overloaded: self.behind.load(Ordering::Relaxed) || pending > self.cfg.max_pending,
        }
    }

    /// Worst single lag seen since start.
    pub fn max_lag(&self) -> Duration {
        Duration::from_micros(self.max_us.load(Ordering::Relaxed))
    }

    /// How many times the loop fell behind since start.
    pub fn episodes(&self) -> u64 {
        self.episodes.load(Ordering::Relaxed)
    }

    /// Samples the lag of the runtime it runs on until shutdown.
    pub async fn sample(&self, shutdown: CancellationToken) {
        let mut due = Instant::now() + TICK;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
            let now = Instant::now();
            // The timer wheel rounds to a millisecond: lag below that is noise.
            let lag = now
                .saturating_duration_since(due)
                .saturating_sub(Duration::from_millis(1));
            if self.record(lag) {
                tracing::warn!(
                    lag_ms = self.pressure(0).lag.as_millis() as u64,
                    "event loop falling behind: shedding load from partners over their limits"
                );
            }
            due = now + TICK;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_enters_high_and_leaves_low() {
        let l = Load::new(LoadConfig {
            lag_high: Duration::from_millis(40),
            lag_low: Duration::from_millis(10),
            max_pending: 100,
        });
        assert!(!l.pressure(0).overloaded);
        // One long stall is not yet an average over the threshold...
        l.record(Duration::from_millis(100));
        assert!(!l.pressure(0).overloaded, "{:?}", l.pressure(0));
        // ...a run of them is.
        let mut entered = 0;
        for _ in 0..20 {
            if l.record(Duration::from_millis(100)) {
                entered += 1;
            }
        }
        assert_eq!(entered, 1, "the transition is reported once");
        assert!(l.pressure(0).overloaded);
        // Between the thresholds: still behind.
        for _ in 0..40 {
            l.record(Duration::from_millis(20));
        }
        assert!(l.pressure(0).overloaded, "{:?}", l.pressure(0));
        // Caught up.
        for _ in 0..60 {
            l.record(Duration::ZERO);
        }
        assert!(!l.pressure(0).overloaded, "{:?}", l.pressure(0));
        assert_eq!(l.episodes(), 1);
        assert_eq!(l.max_lag(), Duration::from_millis(100));
        // A queue over its bound is overload whatever the lag.
        assert!(l.pressure(101).overloaded);
        assert!(!l.pressure(100).overloaded);
    }

    #[test]
    fn a_blocked_loop_is_seen_behind_and_a_free_one_is_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let load = std::sync::Arc::new(Load::default());
        let stop = CancellationToken::new();
        rt.block_on(async {
            let sampler = tokio::spawn({
                let (load, stop) = (load.clone(), stop.clone());
                async move { load.sample(stop).await }
            });
            // Idle: the sampler is woken on time.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!load.pressure(0).overloaded, "{:?}", load.pressure(0));
            // A task that holds the thread in 60 ms slices, as a flood
            // handled without yielding would.
            for _ in 0..40 {
                std::thread::sleep(Duration::from_millis(60));
                tokio::task::yield_now().await;
            }
            assert!(load.pressure(0).overloaded, "{:?}", load.pressure(0));
            assert!(load.max_lag() >= Duration::from_millis(40));
            stop.cancel();
            let _ = sampler.await;
        });
    }
}
