//! The dialogs this proxy knows: those whose dialog-creating request it
//! record-routed, by Call-ID and the initiator's tag, so that "in dialog"
//! is the edge's own knowledge and never the sender's say-so (a To tag
//! anyone can write).
//!
//! Owns a bounded table: at most `cap` entries, each forgotten after
//! `idle` without an in-dialog request. When full, expired entries go
//! first, then the least recently used one. Never decides what an
//! in-dialog request may do; the router does, with [`super::RequestInfo`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Default upper bound on the dialogs remembered.
pub const DEFAULT_CAP: usize = 100_000;

/// Default time a dialog is remembered after its last request.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(12 * 3600);

/// Dialogs by (Call-ID, initiator's tag), with when each was last used.
#[derive(Debug)]
pub struct Dialogs {
    map: Mutex<HashMap<(String, String), Instant>>,
    cap: usize,
    idle: Duration,
}

impl Default for Dialogs {
    fn default() -> Dialogs {
        Dialogs::new(DEFAULT_CAP, DEFAULT_IDLE)
    }
}

impl Dialogs {
    pub fn new(cap: usize, idle: Duration) -> Dialogs {
        Dialogs {
            map: Mutex::new(HashMap::new()),
            cap: cap.max(1),
            idle,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Instant>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a dialog this proxy record-routed: its Call-ID and the
    /// From tag of the request that created it.
    pub fn record(&self, call_id: &str, from_tag: &str, now: Instant) {
        let mut map = self.lock();
        if map.len() >= self.cap {
            let idle = self.idle;
            map.retain(|_, t| now.saturating_duration_since(*t) < idle);
            if map.len() >= self.cap
                && let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert((call_id.to_string(), from_tag.to_string()), now);
    }

    /// True when a request with this Call-ID and tags belongs to a dialog
    /// this proxy record-routed (either side may send it: the initiator's
    /// tag is its From tag or its To tag). Refreshes the dialog.
    pub fn known(&self, call_id: &str, from_tag: &str, to_tag: &str, now: Instant) -> bool {
        let mut map = self.lock();
        for tag in [from_tag, to_tag] {
            if let Some(t) = map.get_mut(&(call_id.to_string(), tag.to_string())) {
                if now.saturating_duration_since(*t) >= self.idle {
                    return false;
                }
                *t = now;
                return true;
            }
        }
        false
    }

    /// How many dialogs are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_by_either_tag_bounded_and_forgotten_when_idle() {
        let now = Instant::now();
        let d = Dialogs::new(2, Duration::from_secs(10));
        d.record("c1", "a", now);
        assert!(d.known("c1", "a", "b", now));
        assert!(d.known("c1", "b", "a", now), "the other side's request");
        assert!(!d.known("c1", "x", "y", now), "tags the edge never saw");
        assert!(!d.known("c2", "a", "b", now), "another Call-ID");
        d.record("c2", "a", now + Duration::from_secs(1));
        d.record("c3", "a", now + Duration::from_secs(2));
        assert_eq!(d.len(), 2, "the cap holds");
        assert!(!d.known("c1", "a", "b", now + Duration::from_secs(2)));
        assert!(!d.known("c3", "a", "b", now + Duration::from_secs(20)));
    }
}
