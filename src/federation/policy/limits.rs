//! Per-partner rate limits: a token bucket on requests, and the
//! user-enumeration guard (a partner may reach only so many distinct home
//! addresses per window).
//!
//! Owns the counting state and the rule applied to what the rest of the
//! policy lets through ([`check`]). Time is an argument, so the rules are
//! tested without waiting; memory is bounded by the number of partners
//! and, per partner, by the enumeration limit. Never counts metrics.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::federation::refusal::Refusal;
use crate::model::partner::Partner;
use crate::sip::message::{Method, SipMessage};
use crate::sip::proxy::RequestInfo;

/// Rates applied to partners' requests.
#[derive(Debug, Clone)]
pub struct RateConfig {
    pub rate: u32,
    pub burst: u32,
    pub enumeration_limit: u32,
    pub enumeration_window: Duration,
}

/// Holds a partner's request to its rate (its record's `rate_limit`, else
/// the configured one) and, out of dialog, to the enumeration guard.
/// ACKs are not counted.
pub fn check(
    limits: &Limits,
    rates: &RateConfig,
    req: &SipMessage,
    partner: &Partner,
    info: &RequestInfo,
    now: Instant,
) -> Result<(), Refusal> {
    if req.method() == Some(&Method::Ack) {
        return Ok(());
    }
    let rate = partner
        .details
        .rate_limit
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(rates.rate);
    let burst = rates.burst.max(rate);
    if let Err(wait) = limits.take(&partner.id, rate, burst, now) {
        return Err(Refusal::RateLimited {
            org: partner.details.org_name.clone(),
            rate,
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }
    if !info.in_dialog {
        let target = req
            .request_uri()
            .map(|u| {
                format!("{}@{}", u.user.unwrap_or(""), u.domain().unwrap_or(""))
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let (limit, window) = (rates.enumeration_limit, rates.enumeration_window);
        if !limits.reach(&partner.id, &target, limit, window, now) {
            return Err(Refusal::Enumeration {
                org: partner.details.org_name.clone(),
                limit,
                window,
            });
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
struct Reached {
    /// Home address -> when it was last reached.
    seen: HashMap<String, Instant>,
}

/// Rate and enumeration state for every partner.
#[derive(Debug, Default)]
pub struct Limits {
    buckets: Mutex<HashMap<String, Bucket>>,
    reached: Mutex<HashMap<String, Reached>>,
}

impl Limits {
    pub fn new() -> Limits {
        Limits::default()
    }

    /// Takes one request's token for `partner`. `Err(wait)` says when the
    /// next token will be there (for Retry-After).
    pub fn take(&self, partner: &str, rate: u32, burst: u32, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(rate.max(1));
        let burst = f64::from(burst.max(1));
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(partner) {
            map.insert(
                partner.to_string(),
                Bucket {
                    tokens: burst,
                    last: now,
                },
            );
        }
        let Some(b) = map.get_mut(partner) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }

    /// Records that `partner` reaches `target`; false when that would make
    /// more than `limit` distinct targets within `window`.
    pub fn reach(
        &self,
        partner: &str,
        target: &str,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> bool {
        let mut map = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(partner) {
            map.insert(partner.to_string(), Default::default());
        }
        let Some(r) = map.get_mut(partner) else {
            return true;
        };
        if let Some(t) = r.seen.get_mut(target) {
            *t = now;
            return true;
        }
        if r.seen.len() >= limit as usize {
            // Forget what fell out of the window before judging.
            r.seen
                .retain(|_, t| now.saturating_duration_since(*t) < window);
            if r.seen.len() >= limit as usize {
                return false;
            }
        }
        r.seen.insert(target.to_string(), now);
        true
    }

    /// Distinct targets `partner` reached within the window (for metrics).
    pub fn reached_count(&self, partner: &str) -> usize {
        let map = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        map.get(partner).map_or(0, |r| r.seen.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let l = Limits::new();
        let t0 = Instant::now();
        for i in 0..40 {
            assert!(l.take("p", 20, 40, t0).is_ok(), "burst request {i}");
        }
        let wait = l.take("p", 20, 40, t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(50) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // A second later, 20 more.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..20 {
            assert!(l.take("p", 20, 40, t1).is_ok());
        }
        assert!(l.take("p", 20, 40, t1).is_err());
        // Another partner is untouched.
        assert!(l.take("q", 20, 40, t1).is_ok());
    }

    #[test]
    fn enumeration_guard_refuses_new_targets_only() {
        let l = Limits::new();
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        for i in 0..3 {
            assert!(l.reach("p", &format!("u{i}@home.test"), 3, hour, t0));
        }
        assert!(
            !l.reach("p", "u3@home.test", 3, hour, t0),
            "a fourth new target within the hour"
        );
        assert!(
            l.reach("p", "u1@home.test", 3, hour, t0),
            "known targets stay reachable"
        );
        assert!(
            l.reach("q", "u3@home.test", 3, hour, t0),
            "other partners have their own count"
        );
        // After the window the old ones no longer count.
        assert!(l.reach(
            "p",
            "u3@home.test",
            3,
            hour,
            t0 + hour + Duration::from_secs(1)
        ));
        assert_eq!(l.reached_count("p"), 1);
    }
}
