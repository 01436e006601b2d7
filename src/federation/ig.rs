//! Information governance certification lapses: a partner whose IG
//! certification expiry date has passed is suspended, with the reason in
//! its audit trail; a warning is logged (and a gauge set) beforehand.
//!
//! Owns the periodic check. The suspension goes through the store like an
//! operator's, so every edge node may run the check: the first one to
//! suspend wins and the others find the partner already suspended.

use std::sync::Arc;
use std::time::Duration;

use time::Date;
use time::macros::format_description;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::metrics::Metrics;
use super::registry::Registry;
use crate::model::partner::{PartnerState, Verb};
use crate::store::{Store, StoreError, today};

const DAYS_LEFT: &str = "fedge_partner_ig_days_left";
const DAYS_LEFT_HELP: &str =
    "Days until a live partner's IG certification expires (negative: expired)";

fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s, format_description!("[year]-[month]-[day]")).ok()
}

/// One pass: suspends lapsed partners and warns about those close to it.
pub async fn check(store: &Store, registry: &Registry, metrics: &Metrics, warn_days: u32) {
    let Some(today_d) = parse_date(&today()) else {
        return;
    };
    metrics.clear_gauge(DAYS_LEFT);
    for p in registry.snapshot().partners() {
        let Some(exp) = p.details.ig_expires.as_deref() else {
            continue;
        };
        let Some(exp_d) = parse_date(exp) else {
            continue;
        };
        let left = (exp_d - today_d).whole_days();
        metrics.set(
            DAYS_LEFT,
            DAYS_LEFT_HELP,
            &[("partner", p.name())],
            left as f64,
        );
        if p.state != PartnerState::Enabled {
            continue;
        }
        if left < 0 {
            let reason = format!("IG certification expired on {exp} (automatic suspension)");
            match store
                .apply_verb(p.name(), Verb::Suspend, "fedge", Some(&reason), false)
                .await
            {
                Ok(_) => {
                    metrics.inc(
                        "fedge_ig_suspensions_total",
                        "Partners suspended because their IG certification lapsed",
                        &[("partner", p.name())],
                    );
                    warn!(partner = p.name(), org = %p.details.org_name, expired = exp, "partner suspended: IG certification expired");
                }
                // Another node got there first.
                Err(StoreError::Transition(_)) | Err(StoreError::Conflict(_)) => {}
                Err(e) => {
                    warn!(partner = p.name(), error = %e, "could not suspend a partner whose IG certification expired")
                }
            }
        } else if left <= i64::from(warn_days) {
            warn!(partner = p.name(), org = %p.details.org_name, expires = exp, days_left = left, "IG certification expires soon");
        }
    }
}

/// Runs [`check`] now and every `every` until shutdown.
pub fn spawn(
    store: Store,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    every: Duration,
    warn_days: u32,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        info!(every = %humantime::format_duration(every), warn_days, "IG certification checks scheduled");
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => check(&store, &registry, &metrics, warn_days).await,
            }
        }
    })
}
