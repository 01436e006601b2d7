//! Per-partner rate limits: a token bucket on requests, the
//! user-enumeration guard (a partner may reach only so many distinct home
//! addresses per window), and load shedding when the edge falls behind.
//!
//! Load shedding (in the spirit of Kamailio's pike and SfB's partner
//! limits): the proxy says with each request whether its event loop is
//! behind ([`Pressure`]). While it is, (1) a partner that went over its
//! rate within the last [`HOT_FOR`] is "hot" and every request of its is
//! refused at once (503, Retry-After, `overload_shed`), and (2) no partner
//! may draw on its burst: its bucket holds one second of its rate. A
//! partner that keeps to its rate is never shed, so the capacity the
//! flood would take stays with the partners under their limits.
//!
//! Several nodes (D126, superseding D110's even split; D111): a partner's
//! rate, burst and enumeration limit are the cluster's. Each node holds
//! the partner to its share, a weight `w` of each ([`Share`]) that follows
//! where the partner's traffic lands: every request reaching the rate
//! check is counted in `federation::cluster::ClusterView` (`offer`), the
//! heartbeat publishes each node's smoothed demand in the node table and
//! sets each node's weights from the live nodes' demands (they sum to 1
//! over the live nodes); a partner no node reports keeps `1 / live nodes`.
//! No message waits for the database: the weight is one load.
//!
//! Owns the counting state and the rule applied to what the rest of the
//! policy lets through ([`check`]). Time, pressure and the cluster view
//! are arguments, so the rules are tested without waiting; memory is
//! bounded by the number of partners and, per partner, by the enumeration
//! limit. Never counts metrics; never reads the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::federation::cluster::ClusterView;
use crate::federation::refusal::Refusal;
use crate::model::partner::Partner;
use crate::sip::message::{Method, SipMessage};
use crate::sip::proxy::RequestInfo;
use crate::sip::proxy::load::Pressure;

/// How long a partner that went over its rate is shed while the edge is
/// behind (and the Retry-After it is told).
pub const HOT_FOR: Duration = Duration::from_secs(2);

/// At most one log line per partner this often for its rate refusals.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Rates applied to partners' requests.
#[derive(Debug, Clone)]
pub struct RateConfig {
    pub rate: u32,
    pub burst: u32,
    pub enumeration_limit: u32,
    pub enumeration_window: Duration,
}

/// This node's part of a partner's cluster-wide limits: its weight (D126)
/// of each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// Requests per second this node admits.
    pub rate: f64,
    /// The most this node's bucket holds (never below one request).
    pub burst: f64,
    /// Distinct home addresses this node lets the partner reach per
    /// window (rounded up, so never 0).
    pub enumeration_limit: u32,
}

impl Share {
    /// `weight` (clamped to 0..=1) of `rate` and `burst` (at least one
    /// request), and of `enumeration_limit` rounded up (at least 1).
    pub fn of(rate: u32, burst: u32, enumeration_limit: u32, weight: f64) -> Share {
        let w = if weight.is_finite() {
            weight.clamp(0.0, 1.0)
        } else {
            1.0
        };
        // Rounding up a product that is whole but for float error (6 x
        // 0.5000000001) would give one more than the even split.
        let limit = (f64::from(enumeration_limit.max(1)) * w - 1e-9).ceil();
        Share {
            rate: f64::from(rate.max(1)) * w,
            burst: (f64::from(burst.max(1)) * w).max(1.0),
            enumeration_limit: (limit as u32).clamp(1, enumeration_limit.max(1)),
        }
    }
}

/// Holds a partner's request to this node's share ([`Share`], of its
/// weight in `cluster`) of its rate (its record's `rate_limit`, else the
/// configured one) and, out of dialog (by the edge's own knowledge of the
/// dialog, see `RequestInfo::in_dialog`), of the enumeration guard.
/// ACKs of known dialogs are not counted; every other request is counted
/// as offered (admitted or refused), the demand the heartbeat publishes.
/// Refusals name the partner's cluster-wide figures, which are what it
/// agreed to.
pub fn check(
    limits: &Limits,
    rates: &RateConfig,
    (req, partner): (&SipMessage, &Partner),
    info: &RequestInfo,
    cluster: &ClusterView,
    now: Instant,
) -> Result<(), Refusal> {
    // The ACK of a dialog the edge knows completes an admitted INVITE; any
    // other ACK is a request like the rest.
    if req.method() == Some(&Method::Ack) && info.in_dialog {
        return Ok(());
    }
    cluster.offer(&partner.id);
    let rate = partner
        .details
        .rate_limit
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(rates.rate);
    let share = Share::of(
        rate,
        rates.burst.max(rate),
        rates.enumeration_limit,
        cluster.weight(&partner.id),
    );
    let pressure: Pressure = info.pressure;
    if pressure.overloaded && limits.is_hot(&partner.id, now) {
        return Err(Refusal::Overloaded {
            org: partner.details.org_name.clone(),
            rate,
            retry_after: HOT_FOR.as_secs(),
        });
    }
    // Behind, the burst is withdrawn: one second of the rate at most.
    let burst = if pressure.overloaded {
        share.rate.max(1.0)
    } else {
        share.burst
    };
    if let Err(wait) = limits.take(&partner.id, share.rate, burst, now) {
        limits.mark_hot(&partner.id, now + HOT_FOR);
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
        let window = rates.enumeration_window;
        if !limits.reach(&partner.id, &target, share.enumeration_limit, window, now) {
            return Err(Refusal::Enumeration {
                org: partner.details.org_name.clone(),
                limit: rates.enumeration_limit,
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
    /// Partners that went over their rate -> until when they are hot.
    hot: Mutex<HashMap<String, Instant>>,
    /// Partners' rate refusals: when one was last logged, and how many
    /// were not logged since.
    logged: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Limits {
    pub fn new() -> Limits {
        Limits::default()
    }

    /// Takes one request's token for `partner`. `Err(wait)` says when the
    /// next token will be there (for Retry-After).
    /// `rate` per second refills a bucket of `burst` (at least one); a
    /// bucket over a smaller `burst` than before (a smaller weight) is cut
    /// down to it.
    pub fn take(&self, partner: &str, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let rate = if rate > 0.0 { rate } else { 1.0 };
        let burst = burst.max(1.0);
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

    /// Says whether a rate or overload refusal of `partner` at `now` is
    /// logged on its own line: the first of each [`LOG_EVERY`] is, with
    /// the count of those left out since (`Some(n)`); the rest are only
    /// counted (`None`), so a flood costs one log line a second.
    pub fn log_refusal(&self, partner: &str, now: Instant) -> Option<u64> {
        let mut map = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(partner) {
            Some((at, skipped)) if now.saturating_duration_since(*at) < LOG_EVERY => {
                *skipped += 1;
                None
            }
            Some((at, skipped)) => {
                let n = *skipped;
                *at = now;
                *skipped = 0;
                Some(n)
            }
            None => {
                map.insert(partner.to_string(), (now, 0));
                Some(0)
            }
        }
    }

    /// Marks `partner` as over its rate until `until`.
    pub fn mark_hot(&self, partner: &str, until: Instant) {
        let mut map = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(partner) {
            Some(t) => *t = (*t).max(until),
            None => {
                map.insert(partner.to_string(), until);
            }
        }
    }

    /// True while `partner` is marked as over its rate.
    pub fn is_hot(&self, partner: &str, now: Instant) -> bool {
        let map = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        map.get(partner).is_some_and(|t| now < *t)
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
    use crate::model::partner::PartnerState;
    use crate::sip::parse::{find_head_end, parse_framed};

    fn message(n: u32) -> SipMessage {
        let text = format!(
            "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS sip.a.test;branch=z9hG4bK-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:x@a.test>;tag={n}\r\nTo: <sip:bob@fedge.test>\r\n\
             Call-ID: {n}@a.test\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        );
        let data = bytes::Bytes::from(text);
        let he = find_head_end(&data, 0).expect("head");
        parse_framed(data, he, &crate::sip::parse::Limits::default()).expect("parses")
    }

    /// A cluster view of `live` nodes where no node reports demand yet:
    /// every partner's weight is `1 / live`.
    fn view(live: u32) -> ClusterView {
        let v = ClusterView::new();
        v.set_live_nodes(live);
        v
    }

    fn info(overloaded: bool) -> RequestInfo {
        RequestInfo {
            pressure: Pressure {
                overloaded,
                ..Pressure::default()
            },
            ..RequestInfo::default()
        }
    }

    #[test]
    fn behind_the_edge_sheds_partners_over_their_rate_and_keeps_the_others() {
        let rates = RateConfig {
            rate: 10,
            burst: 40,
            enumeration_limit: 1000,
            enumeration_window: Duration::from_secs(3600),
        };
        let l = Limits::new();
        let flood = crate::model::partner::sample(
            "f",
            &["a.test"],
            Some("sip.a.test"),
            PartnerState::Enabled,
        );
        let steady = crate::model::partner::sample(
            "s",
            &["b.test"],
            Some("sip.b.test"),
            PartnerState::Enabled,
        );
        let t0 = Instant::now();
        // Not behind: the flooder has its burst, then is rate limited.
        let mut passed = 0;
        for i in 0..100 {
            match check(
                &l,
                &rates,
                (&message(i), &flood),
                &info(false),
                &view(1),
                t0,
            ) {
                Ok(()) => passed += 1,
                Err(r) => assert_eq!(r.label(), "rate_limited"),
            }
        }
        assert_eq!(passed, 40);
        // A second later the edge is behind: the flooder's new tokens are
        // not given to it (it is hot), and it is told why.
        let t1 = t0 + Duration::from_secs(1);
        let r = check(
            &l,
            &rates,
            (&message(200), &flood),
            &info(true),
            &view(1),
            t1,
        )
        .unwrap_err();
        assert_eq!(r.label(), "overload_shed");
        assert_eq!(r.status(), 503);
        assert!(
            r.headers()
                .contains(&("Retry-After".to_string(), "2".to_string())),
            "{:?}",
            r.headers()
        );
        assert!(r.to_string().contains("overloaded"), "{r}");
        // The steady partner keeps its rate while the edge is behind, but
        // not its burst: one second of its rate, then refused for rate.
        let mut passed = 0;
        for i in 0..10 {
            if check(
                &l,
                &rates,
                (&message(300 + i), &steady),
                &info(true),
                &view(1),
                t1,
            )
            .is_ok()
            {
                passed += 1;
            }
        }
        assert_eq!(passed, 10, "the steady partner's rate is kept");
        // Not behind any more: the flooder gets its tokens again after it
        // cools down (the hot mark only matters while behind).
        let t2 = t1 + HOT_FOR + Duration::from_secs(1);
        assert!(
            check(
                &l,
                &rates,
                (&message(400), &flood),
                &info(false),
                &view(1),
                t2
            )
            .is_ok()
        );
        assert!(!l.is_hot("f", t2));
        assert!(!l.is_hot("s", t2));
    }

    #[test]
    fn a_flood_of_refusals_is_logged_once_a_second_with_the_count() {
        let l = Limits::new();
        let t0 = Instant::now();
        assert_eq!(l.log_refusal("p", t0), Some(0));
        for _ in 0..99 {
            assert_eq!(l.log_refusal("p", t0 + Duration::from_millis(500)), None);
        }
        assert_eq!(l.log_refusal("q", t0), Some(0), "each partner on its own");
        assert_eq!(l.log_refusal("p", t0 + LOG_EVERY), Some(99));
        assert_eq!(l.log_refusal("p", t0 + LOG_EVERY * 2), Some(0));
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let l = Limits::new();
        let t0 = Instant::now();
        for i in 0..40 {
            assert!(l.take("p", 20.0, 40.0, t0).is_ok(), "burst request {i}");
        }
        let wait = l.take("p", 20.0, 40.0, t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(50) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // A second later, 20 more.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..20 {
            assert!(l.take("p", 20.0, 40.0, t1).is_ok());
        }
        assert!(l.take("p", 20.0, 40.0, t1).is_err());
        // Another partner is untouched.
        assert!(l.take("q", 20.0, 40.0, t1).is_ok());
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

    /// A partner flooding `nodes` at `per_tick` requests every 10 ms from
    /// `from` for `ticks` ticks, each node seeing `live` live nodes;
    /// returns what each admitted.
    fn flood(
        nodes: &[&Limits],
        rates: &RateConfig,
        partner: &Partner,
        live: u32,
        (from, ticks, per_tick): (Instant, u32, u32),
    ) -> Vec<u32> {
        let mut admitted = vec![0; nodes.len()];
        let mut n = 0;
        for t in 0..ticks {
            let now = from + Duration::from_millis(10 * u64::from(t));
            for (k, node) in nodes.iter().enumerate() {
                for _ in 0..per_tick {
                    n += 1;
                    if check(
                        node,
                        rates,
                        (&message(n), partner),
                        &info(false),
                        &view(live),
                        now,
                    )
                    .is_ok()
                    {
                        admitted[k] += 1;
                    }
                }
            }
        }
        admitted
    }

    fn rates(rate: u32, burst: u32, enumeration_limit: u32) -> RateConfig {
        RateConfig {
            rate,
            burst,
            enumeration_limit,
            enumeration_window: Duration::from_secs(3600),
        }
    }

    fn partner() -> Partner {
        crate::model::partner::sample("p", &["a.test"], Some("sip.a.test"), PartnerState::Enabled)
    }

    #[test]
    fn a_share_is_the_nodes_weight_of_the_cluster_figure() {
        let s = Share::of(20, 40, 1000, 0.5);
        assert_eq!((s.rate, s.burst, s.enumeration_limit), (10.0, 20.0, 500));
        assert_eq!(Share::of(20, 40, 1000, 7.0), Share::of(20, 40, 1000, 1.0));
        assert_eq!(
            Share::of(20, 40, 1000, f64::NAN),
            Share::of(20, 40, 1000, 1.0)
        );
        // Small figures: the bucket still holds one request, and the
        // enumeration limit rounds up (never 0).
        let s = Share::of(1, 1, 5, 1.0 / 3.0);
        assert!((s.rate - 1.0 / 3.0).abs() < 1e-9, "{s:?}");
        assert_eq!((s.burst, s.enumeration_limit), (1.0, 2));
        let s = Share::of(20, 40, 6, 0.0);
        assert_eq!((s.rate, s.burst, s.enumeration_limit), (0.0, 1.0, 1));
        // A whole product is not rounded up by float error.
        assert_eq!(Share::of(20, 40, 6, 0.1 + 0.2 + 0.2).enumeration_limit, 3);
        // A node carrying all of a partner's traffic on two nodes (D126).
        let s = Share::of(20, 40, 1000, 1.05 / 1.1);
        assert!((s.rate - 19.0909).abs() < 1e-3, "{s:?}");
        assert_eq!(s.enumeration_limit, 955);
    }

    #[test]
    fn a_partner_on_one_of_two_nodes_gets_its_weight_and_the_cluster_its_rate() {
        let r = rates(20, 40, 1000);
        let (a, b) = (Limits::new(), Limits::new());
        // The weights the heartbeat sets when only node a reports demand
        // (federation::cluster::weights): 95.5% and the floor, 4.5%.
        let (va, vb) = (view(2), view(2));
        va.set_weights([("p".to_string(), 1.05 / 1.1)].into());
        vb.set_weights([("p".to_string(), 0.05 / 1.1)].into());
        let t0 = Instant::now();
        // 5 s at 100/s on a, and the same on b (the bound with both).
        let mut got = [0u32; 2];
        for t in 0..500u32 {
            let now = t0 + Duration::from_millis(10 * u64::from(t));
            for (k, (l, v)) in [(&a, &va), (&b, &vb)].into_iter().enumerate() {
                let m = message(t * 2 + k as u32);
                if check(l, &r, (&m, &partner()), &info(false), v, now).is_ok() {
                    got[k] += 1;
                }
            }
        }
        // a: 95.5% of burst 40 + 4.99 s at 20/s.
        let want_a = 1.05 / 1.1 * (40.0 + 20.0 * 4.99);
        assert!(
            (f64::from(got[0]) - want_a).abs() <= 1.0,
            "{got:?} vs {want_a}"
        );
        // b: a bucket of one request, then 0.91/s.
        assert!((5..=6).contains(&got[1]), "{got:?}");
        assert!(got[0] + got[1] <= 40 + 20 * 5 + 2, "{got:?}");
        // Every request reaching the rate check was counted as offered.
        assert_eq!(va.take_offered()["p"], 500);
        assert_eq!(vb.take_offered()["p"], 500);
    }

    #[test]
    fn two_nodes_together_admit_the_partners_rate_and_burst() {
        let r = rates(20, 40, 1000);
        let (a, b) = (Limits::new(), Limits::new());
        let t0 = Instant::now();
        // 5 s at 100/s on each node (ten times the rate over the cluster).
        let got = flood(&[&a, &b], &r, &partner(), 2, (t0, 500, 1));
        // Each node: its half of the burst, then its half of the rate.
        // (4.99 s of sending: 20 + 10 x 4.99 on each.)
        for g in &got {
            assert!((68..=70).contains(g), "{got:?}");
        }
        let total: u32 = got.iter().sum();
        assert!(total <= 40 + 20 * 5 + 1, "{total}");
        assert!(total >= 40 + 20 * 5 - 2, "{total}");
    }

    #[test]
    fn a_partner_on_one_of_two_nodes_gets_half_and_all_once_the_other_is_gone() {
        let r = rates(20, 40, 1000);
        let a = Limits::new();
        let t0 = Instant::now();
        let got = flood(&[&a], &r, &partner(), 2, (t0, 500, 1))[0];
        assert!(
            (68..=70).contains(&got),
            "no node reports demand yet: half, {got}"
        );
        // The other node's heartbeat stops: one live node, the whole rate
        // (the bucket keeps its tokens; the burst grows back at the rate).
        let t1 = t0 + Duration::from_secs(5);
        let got = flood(&[&a], &r, &partner(), 1, (t1, 500, 1))[0];
        assert!((98..=101).contains(&got), "{got}");
        let t2 = t1 + Duration::from_secs(10);
        let got = flood(&[&a], &r, &partner(), 1, (t2, 100, 1))[0];
        assert!((58..=60).contains(&got), "burst 40 + 1 s at 20/s: {got}");
        // A node joins: the share halves at once, and a full bucket is
        // cut down to the new burst share.
        let t3 = t2 + Duration::from_secs(10);
        let got = flood(&[&a], &r, &partner(), 2, (t3, 100, 1))[0];
        assert!((28..=30).contains(&got), "burst 20 + 1 s at 10/s: {got}");
    }

    #[test]
    fn a_rate_refusal_waits_for_this_nodes_share() {
        let r = rates(2, 2, 1000);
        let a = Limits::new();
        let t0 = Instant::now();
        let p = partner();
        // Share of 3 nodes: 2/3 per second, a bucket of one.
        assert!(check(&a, &r, (&message(1), &p), &info(false), &view(3), t0).is_ok());
        let e = check(&a, &r, (&message(2), &p), &info(false), &view(3), t0).unwrap_err();
        assert_eq!(e.label(), "rate_limited");
        assert!(
            e.headers()
                .contains(&("Retry-After".to_string(), "2".to_string())),
            "1.5 s rounded up: {:?}",
            e.headers()
        );
        assert!(e.to_string().contains("2 requests per second"), "{e}");
    }

    #[test]
    fn the_enumeration_limit_is_split_by_weight_over_the_nodes() {
        let r = rates(10_000, 10_000, 5);
        let (a, b) = (Limits::new(), Limits::new());
        let p = partner();
        let t0 = Instant::now();
        let to = |user: &str| {
            let text = format!(
                "MESSAGE sip:{user}@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS sip.a.test;branch=z9hG4bK-{user}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:x@a.test>;tag=1\r\nTo: <sip:{user}@fedge.test>\r\n\
                 Call-ID: {user}@a.test\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
            );
            let data = bytes::Bytes::from(text);
            let he = find_head_end(&data, 0).expect("head");
            parse_framed(data, he, &crate::sip::parse::Limits::default()).expect("parses")
        };
        let mut reached = 0;
        for i in 0..20 {
            let node = if i % 2 == 0 { &a } else { &b };
            match check(
                node,
                &r,
                (&to(&format!("u{i}")), &p),
                &info(false),
                &view(2),
                t0,
            ) {
                Ok(()) => reached += 1,
                Err(e) => {
                    assert_eq!(e.label(), "enumeration");
                    assert!(e.to_string().contains("5 distinct home addresses"), "{e}");
                }
            }
        }
        // ceil(5 / 2) = 3 on each node: 6, the limit + (nodes - 1) at most.
        assert_eq!(reached, 6);
        // One node left: it alone may reach the whole limit.
        let more = (20..40)
            .filter(|i| {
                check(
                    &a,
                    &r,
                    (&to(&format!("u{i}")), &p),
                    &info(false),
                    &view(1),
                    t0,
                )
                .is_ok()
            })
            .count();
        assert_eq!(more, 2, "3 reached on this node + 2 = 5");
    }
}
