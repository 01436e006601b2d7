//! What one source on the outside side may cost the proxy before any
//! policy has admitted it: live server transactions per source address,
//! and refusals per source address and second (a token bucket). A source
//! over either budget gets nothing more: its stream connection is closed,
//! its datagram dropped, with one log line a second.
//!
//! Owns the budgets and their bounded per-source state. Never decides
//! whether a request is refused (the router does) and never counts
//! partners (a partner's own rate is the application's).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::transport::admission::SourceKey;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::txn::ServerTxn;
use super::{Proxy, Router};
use crate::message::SipMessage;
use crate::transport::{Side, Source};
use std::sync::Arc;

/// Most sources whose refusals are tracked at once; past it, sources
/// whose bucket is full again are forgotten first.
const MAX_TRACKED: usize = 65_536;

/// The outside side's per-source budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Live server transactions from one source address.
    pub max_transactions_per_source: usize,
    /// Refusals per second from one source address (sustained).
    pub refusal_rate: u32,
    /// Refusals one source address may draw at once.
    pub refusal_burst: u32,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            max_transactions_per_source: 256,
            refusal_rate: 20,
            refusal_burst: 40,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// When a cut-off of this source was last logged, and how many were not.
    logged: Option<Instant>,
    unlogged: u64,
}

/// Refusal buckets per source address.
#[derive(Debug, Default)]
pub struct Refusals {
    map: Mutex<HashMap<SourceKey, Bucket>>,
}

/// What to do with one more refusal for a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Within budget: answer (and log) it.
    Answer,
    /// Over budget: cut the source off; `Some(n)` when this cut-off is to
    /// be logged (n earlier ones were not), `None` when not.
    CutOff(Option<u64>),
}

impl Refusals {
    fn lock(&self) -> MutexGuard<'_, HashMap<SourceKey, Bucket>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one refusal from the bucket of `ip`'s source (an IPv6 /64 is
    /// one source, as for admission). When the table is full of sources
    /// still spending, a new one is cut off (fail closed): a flood of
    /// addresses cannot reset the others' buckets.
    pub fn spend(&self, ip: IpAddr, b: &Budget, now: Instant) -> Spend {
        let ip = SourceKey::of(ip);
        let rate = f64::from(b.refusal_rate.max(1));
        let burst = f64::from(b.refusal_burst.max(1));
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            // Forget the sources whose bucket has refilled.
            map.retain(|_, k| {
                k.tokens + now.saturating_duration_since(k.last).as_secs_f64() * rate < burst
            });
            if map.len() >= MAX_TRACKED {
                return Spend::CutOff(None);
            }
        }
        let k = map.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
            logged: None,
            unlogged: 0,
        });
        let dt = now.saturating_duration_since(k.last).as_secs_f64();
        k.tokens = (k.tokens + dt * rate).min(burst);
        k.last = now;
        if k.tokens >= 1.0 {
            k.tokens -= 1.0;
            return Spend::Answer;
        }
        let due = k
            .logged
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if due {
            let n = k.unlogged;
            k.logged = Some(now);
            k.unlogged = 0;
            Spend::CutOff(Some(n))
        } else {
            k.unlogged += 1;
            Spend::CutOff(None)
        }
    }
}

impl<R: Router> Proxy<R> {
    /// True when a new server transaction from `source` fits its source's
    /// budget (the inside side has none).
    pub(super) fn txn_fits(&self, source: &Source) -> bool {
        source.tag.side == Side::Inside
            || self.tables.server_count_of(source.remote.ip())
                < self.cfg.budget.max_transactions_per_source
    }

    /// Spends one refusal of `source`'s budget. False when the source is
    /// over it: its connection is closed (a datagram is just dropped), the
    /// request's server transaction goes, and nothing is answered.
    pub(super) fn refusal_fits(
        &self,
        req: &SipMessage,
        source: &Source,
        server: Option<&Arc<ServerTxn>>,
    ) -> bool {
        if source.tag.side == Side::Inside {
            return true;
        }
        let now = Instant::now();
        let spend = self
            .refusals
            .spend(source.remote.ip(), &self.cfg.budget, now);
        let Spend::CutOff(log) = spend else {
            return true;
        };
        if let Some(not_logged) = log {
            warn!(
                role = %source.tag,
                remote = %source.remote,
                not_logged,
                rate = self.cfg.budget.refusal_rate,
                request = %req.summary(),
                "source over its refusal budget: connection closed, nothing answered"
            );
        }
        if let Some(s) = server {
            self.tables.remove_server(&s.key);
        }
        if let Some(c) = &source.conn {
            c.close();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_one_log_line_a_second() {
        let b = Budget {
            max_transactions_per_source: 1,
            refusal_rate: 2,
            refusal_burst: 3,
        };
        let r = Refusals::default();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.spend(ip, &b, t), Spend::Answer);
        }
        assert_eq!(r.spend(ip, &b, t), Spend::CutOff(Some(0)));
        assert_eq!(r.spend(ip, &b, t), Spend::CutOff(None));
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        assert_eq!(r.spend(other, &b, t), Spend::Answer, "per source");
        let later = t + Duration::from_millis(1000);
        assert_eq!(
            r.spend(ip, &b, later),
            Spend::Answer,
            "refilled at the rate"
        );
        assert_eq!(r.spend(ip, &b, later), Spend::Answer);
        assert_eq!(r.spend(ip, &b, later), Spend::CutOff(Some(1)));
    }
}
