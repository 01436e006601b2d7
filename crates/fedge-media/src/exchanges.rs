//! Offer/answer exchanges in flight: the caller's own name for one (for
//! SIP, a transaction) mapped to the relay session it belongs to, so that
//! its answer or its failure acts on that session and no other.
//!
//! Owns that map and its bounds: each entry lives at most `LIFETIME`, and
//! the map holds at most `MAX` entries (the oldest go first). It knows no
//! SIP and never touches a session itself.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an exchange is remembered: past any transaction's life
/// (64 x T1 = 32 s) and the retransmissions of its final answer.
pub const LIFETIME: Duration = Duration::from_secs(64);
/// Exchanges remembered at once.
pub const MAX: usize = 65_536;

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

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, (Exchange, Instant)>,
    order: VecDeque<(Instant, String)>,
}

/// The exchanges in flight.
#[derive(Debug, Default)]
pub struct Exchanges {
    inner: Mutex<Inner>,
}

impl Exchanges {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers `name` as an exchange of `session`.
    pub fn begin(&self, name: String, session: &str, opened: bool) {
        let now = Instant::now();
        let mut g = self.lock();
        // Expired entries go, and the oldest when the map is full.
        while let Some(&(at, _)) = g.order.front() {
            if at > now && g.order.len() < MAX {
                break;
            }
            if let Some((_, old)) = g.order.pop_front()
                && g.map.get(&old).is_some_and(|(_, until)| *until == at)
            {
                g.map.remove(&old);
            }
        }
        let until = now + LIFETIME;
        g.order.push_back((until, name.clone()));
        g.map.insert(
            name,
            (
                Exchange {
                    session: session.to_string(),
                    opened,
                    done: false,
                },
                until,
            ),
        );
    }

    /// The exchange `name`, if it is remembered and not expired.
    pub fn get(&self, name: &str) -> Option<Exchange> {
        let now = Instant::now();
        self.lock()
            .map
            .get(name)
            .filter(|(_, until)| *until > now)
            .map(|(e, _)| e.clone())
    }

    /// Marks `name` answered; returns it as it was before (so the first
    /// final answer alone acts).
    pub fn finish(&self, name: &str) -> Option<Exchange> {
        let now = Instant::now();
        let mut g = self.lock();
        let (e, until) = g.map.get_mut(name)?;
        if *until <= now {
            return None;
        }
        let before = e.clone();
        e.done = true;
        Some(before)
    }

    /// Exchanges remembered now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exchange_names_its_session_and_finishes_once() {
        let x = Exchanges::default();
        assert!(x.get("t1").is_none());
        x.begin("t1".into(), "s1", true);
        assert_eq!(x.get("t1").map(|e| e.session), Some("s1".into()));
        assert!(!x.finish("t1").unwrap().done);
        assert!(
            x.finish("t1").unwrap().done,
            "the second final is a retransmission"
        );
        assert!(x.finish("nope").is_none());
        assert_eq!(x.len(), 1);
    }
}
