//! Samples each partner's verdict counters (refusals by rule and
//! direction, IM tests by result) into the store's hourly totals, so that a
//! partner's view shows them over time and summed over the nodes.
//!
//! Owns the sampling: what changed in this node's counters since the last
//! sample, added to the current hour. It never decides a verdict and never
//! reads requests; a node that stops loses at most one interval's counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::metrics::Metrics;
use crate::store::{Store, VerdictCount};

/// How often a node adds its counts to the store.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(60);

/// The series this sampler reads: (metric, kind, label holding the reason).
const SERIES: [(&str, &str, &str); 2] = [
    ("fedge_rejections_total", "refused", "rule"),
    ("fedge_im_tests_total", "im_test", "result"),
];

type Key = (String, String, String, String);

/// What this node has already added to the store, per series.
#[derive(Debug, Default)]
pub struct Sampler {
    seen: HashMap<Key, u64>,
}

/// The current hour as the store keys it (`YYYY-MM-DDTHH`, UTC).
pub fn hour_of(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}

impl Sampler {
    /// The counts added since the last call, for `hour`. Series without a
    /// partner (`-`) are left out: they belong to no partner's view.
    pub fn deltas(&mut self, metrics: &Metrics, hour: &str) -> Vec<VerdictCount> {
        let mut out = Vec::new();
        for (metric, kind, reason) in SERIES {
            for (labels, value) in metrics.counter_series(metric) {
                let get = |k: &str| {
                    labels
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| "-".into())
                };
                let partner = get("partner");
                if partner == "-" {
                    continue;
                }
                let key = (partner, kind.to_string(), get(reason), get("direction"));
                let before = self.seen.insert(key.clone(), value).unwrap_or(0);
                let delta = value.saturating_sub(before);
                if delta > 0 {
                    out.push(VerdictCount {
                        hour: hour.to_string(),
                        partner: key.0,
                        kind: key.1,
                        rule: key.2,
                        direction: key.3,
                        count: i64::try_from(delta).unwrap_or(i64::MAX),
                    });
                }
            }
        }
        out
    }

    /// Adds what changed since the last sample to the store. On a store
    /// failure the counts are kept for the next sample.
    pub async fn sample(&mut self, metrics: &Metrics, store: &Store) {
        let hour = hour_of(time::OffsetDateTime::now_utc());
        let before = self.seen.clone();
        let rows = self.deltas(metrics, &hour);
        if let Err(e) = store.add_verdict_counts(&rows).await {
            warn!(error = %e, "cannot add the partners' verdict counts to the store; retrying at the next sample");
            self.seen = before;
        }
    }
}

/// Samples every `interval` until shutdown, and once more then.
pub async fn run(
    metrics: Arc<Metrics>,
    store: Store,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut sampler = Sampler::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => sampler.sample(&metrics, &store).await,
            _ = shutdown.cancelled() => {
                sampler.sample(&metrics, &store).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_changed_is_added_and_partnerless_series_are_left_out() {
        let m = Metrics::new();
        let refuse = |rule: &str, partner: &str| {
            m.inc(
                "fedge_rejections_total",
                "h",
                &[
                    ("rule", rule),
                    ("partner", partner),
                    ("direction", "inbound"),
                ],
            )
        };
        refuse("file_transfer", "partner.test");
        refuse("file_transfer", "partner.test");
        refuse("rate_limited", "-");
        m.inc(
            "fedge_im_tests_total",
            "h",
            &[("partner", "partner.test"), ("result", "passed")],
        );
        let mut s = Sampler::default();
        let mut first = s.deltas(&m, "2026-12-03T16");
        first.sort_by(|a, b| a.kind.cmp(&b.kind));
        assert_eq!(first.len(), 2, "{first:?}");
        assert_eq!(
            (
                first[0].kind.as_str(),
                first[0].rule.as_str(),
                first[0].direction.as_str(),
                first[0].count
            ),
            ("im_test", "passed", "-", 1)
        );
        assert_eq!(
            (
                first[1].kind.as_str(),
                first[1].rule.as_str(),
                first[1].direction.as_str(),
                first[1].count
            ),
            ("refused", "file_transfer", "inbound", 2)
        );
        assert!(s.deltas(&m, "2026-12-03T16").is_empty(), "nothing new");
        refuse("file_transfer", "partner.test");
        let next = s.deltas(&m, "2026-12-03T17");
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].hour.as_str(), next[0].count), ("2026-12-03T17", 1));
    }

    #[test]
    fn hours_are_utc_and_sort_as_text() {
        let t = time::macros::datetime!(2026-12-03 09:59:59 +01:00);
        assert_eq!(hour_of(t), "2026-12-03T08");
    }
}
