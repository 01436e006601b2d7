//! Offer/answer exchanges in flight: the caller's own name for one (for
//! SIP, a transaction) and who it came from, mapped to the relay session it
//! belongs to, so that its answer or its failure acts on that session and
//! no other.
//!
//! Owns that map and its bounds: each entry lives at most `LIFETIME`, a
//! name holds at most `PER_NAME` entries, and the map at most `MAX`
//! entries (the oldest go first). Names are kept as keyed hashes (the key
//! random per relay), so an entry costs its session's name and about 100
//! bytes, whatever the length of the caller's name. It knows no SIP and
//! never touches a session.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an exchange is remembered: past any transaction's life
/// (64 x T1 = 32 s) and the retransmissions of its final answer.
pub const LIFETIME: Duration = Duration::from_secs(64);
/// Exchanges remembered at once.
pub const MAX: usize = 16_384;
/// Exchanges of one name (from different senders) remembered at once.
pub const PER_NAME: usize = 4;

/// What is known of one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The session it belongs to.
    pub session: String,
    /// Its offer opened that session.
    pub opened: bool,
    /// Its final answer was seen (later ones are retransmissions).
    pub done: bool,
}

#[derive(Debug)]
struct Entry {
    who: String,
    exchange: Exchange,
    until: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u64, Vec<Entry>>,
    order: VecDeque<(Instant, u64)>,
    /// Entries in `map`.
    total: usize,
}

/// The exchanges in flight.
#[derive(Debug, Default)]
pub struct Exchanges {
    inner: Mutex<Inner>,
    hasher: std::collections::hash_map::RandomState,
}

impl Exchanges {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// Remembers `name`, from `who`, as an exchange of `session`.
    pub fn begin(&self, name: &str, who: &str, session: &str, opened: bool) {
        let now = Instant::now();
        let h = self.hash(name);
        let mut g = self.lock();
        // Expired entries go, and the oldest names' when the map is full.
        while let Some(&(at, _)) = g.order.front() {
            let full = g.total >= MAX;
            if at > now && !full {
                break;
            }
            if let Some((_, old)) = g.order.pop_front()
                && let Some(v) = g.map.get_mut(&old)
            {
                let before = v.len();
                v.retain(|e| e.until > now && !full);
                let (after, empty) = (v.len(), v.is_empty());
                g.total -= before - after;
                if empty {
                    g.map.remove(&old);
                }
            }
        }
        let until = now + LIFETIME;
        g.order.push_back((until, h));
        let v = g.map.entry(h).or_default();
        let before = v.len();
        v.retain(|e| e.who != who && e.until > now);
        if v.len() >= PER_NAME {
            v.remove(0);
        }
        let after = v.len() + 1;
        v.push(Entry {
            who: who.to_string(),
            exchange: Exchange {
                session: session.to_string(),
                opened,
                done: false,
            },
            until,
        });
        g.total = g.total + after - before;
    }

    /// The entry of `name` from `who`; with no `who`, the only one of that
    /// name (none when several senders used it).
    fn find<'a>(v: &'a mut [Entry], who: Option<&str>, now: Instant) -> Option<&'a mut Entry> {
        let mut live = v.iter_mut().filter(|e| e.until > now);
        match who {
            Some(w) => live.find(|e| e.who == w),
            None => {
                let first = live.next()?;
                live.next().is_none().then_some(first)
            }
        }
    }

    /// The exchange `name` from `who` (see `find`), if remembered.
    pub fn get(&self, name: &str, who: Option<&str>) -> Option<Exchange> {
        let now = Instant::now();
        let h = self.hash(name);
        let mut g = self.lock();
        let v = g.map.get_mut(&h)?;
        Exchanges::find(v, who, now).map(|e| e.exchange.clone())
    }

    /// Marks the exchange answered; returns it as it was before (so the
    /// first final answer alone acts).
    pub fn finish(&self, name: &str, who: Option<&str>) -> Option<Exchange> {
        let now = Instant::now();
        let h = self.hash(name);
        let mut g = self.lock();
        let v = g.map.get_mut(&h)?;
        let e = Exchanges::find(v, who, now)?;
        let before = e.exchange.clone();
        e.exchange.done = true;
        Some(before)
    }

    /// Exchanges remembered now.
    pub fn len(&self) -> usize {
        self.lock().total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exchange_names_its_session_finishes_once_and_a_shared_name_is_nobodys() {
        let x = Exchanges::default();
        assert!(x.get("t1", None).is_none());
        x.begin("t1", "p1", "s1", true);
        assert_eq!(
            x.get("t1", Some("p1")).map(|e| e.session),
            Some("s1".into())
        );
        assert!(x.get("t1", Some("p2")).is_none());
        assert!(!x.finish("t1", None).unwrap().done);
        assert!(
            x.finish("t1", Some("p1")).unwrap().done,
            "the second final is a retransmission"
        );
        assert!(x.finish("nope", None).is_none());
        // Another sender uses the same name: each finds its own; without a
        // sender, neither.
        x.begin("t2", "p1", "s1", false);
        x.begin("t2", "p2", "s2", false);
        assert_eq!(
            x.get("t2", Some("p2")).map(|e| e.session),
            Some("s2".into())
        );
        assert!(x.finish("t2", None).is_none());
        for i in 0..10 {
            x.begin("t3", &format!("p{i}"), "s", false);
        }
        assert!(
            x.get("t3", Some("p0")).is_none(),
            "a name holds {PER_NAME} senders"
        );
        assert_eq!(x.len(), 1 + 2 + PER_NAME);
    }

    #[tokio::test]
    async fn the_map_holds_at_most_max_entries_the_oldest_going_first() {
        let x = Exchanges::default();
        for i in 0..MAX + 100 {
            x.begin(&format!("n{i}"), "p", "s", false);
        }
        assert_eq!(x.len(), MAX);
        assert!(x.get("n0", None).is_none(), "the oldest went");
        assert!(x.get(&format!("n{}", MAX + 99), None).is_some());
    }
}
