//! Single-use join tokens: the instructions page is handed one per
//! visit, and a WebRTC offer is taken only with one for its meeting, so
//! the join endpoint is no open relay.
//!
//! Owns the token table (bounded; expired tokens dropped). It never looks
//! a meeting up and never accepts a token twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

/// Tokens held at once at most; past that the oldest is dropped for a new
/// one (a flood of page views can age tokens out, not stop new pages).
pub const MAX_TOKENS: usize = 20_000;

/// The token table.
pub struct Tokens {
    ttl: Duration,
    map: Mutex<HashMap<String, (String, Instant)>>,
}

impl Tokens {
    pub fn new(ttl: Duration) -> Tokens {
        Tokens {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// A new token for `meeting`.
    pub fn issue(&self, meeting: &str) -> Option<String> {
        let mut m = lock(&self.map);
        if m.len() >= MAX_TOKENS {
            let ttl = self.ttl;
            m.retain(|_, (_, t)| t.elapsed() < ttl);
            if m.len() >= MAX_TOKENS
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        let t = format!("{:032x}", rand::random::<u128>());
        m.insert(t.clone(), (meeting.to_string(), Instant::now()));
        Some(t)
    }

    /// Takes `token` for `meeting`: true once, while it is valid.
    pub fn take(&self, meeting: &str, token: &str) -> bool {
        let mut m = lock(&self.map);
        match m.get(token) {
            Some((id, at)) if id == meeting && at.elapsed() < self.ttl => {
                m.remove(token);
                true
            }
            Some((_, at)) if at.elapsed() >= self.ttl => {
                m.remove(token);
                false
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_taken_once_and_only_for_its_meeting() {
        let t = Tokens::new(Duration::from_secs(60));
        let a = t.issue("1234567890").unwrap();
        assert!(!t.take("1111111111", &a), "another meeting's token");
        assert!(!t.take("1234567890", "nope"));
        assert!(t.take("1234567890", &a));
        assert!(!t.take("1234567890", &a), "reused");
    }

    #[test]
    fn a_full_table_drops_its_oldest_token() {
        let t = Tokens::new(Duration::from_secs(60));
        let first = t.issue("1234567890").unwrap();
        std::thread::sleep(Duration::from_millis(2));
        for _ in 1..MAX_TOKENS {
            t.issue("1234567890").unwrap();
        }
        let last = t.issue("1234567890").unwrap();
        assert!(!t.take("1234567890", &first), "the oldest made room");
        assert!(t.take("1234567890", &last));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let t = Tokens::new(Duration::ZERO);
        let a = t.issue("1234567890").unwrap();
        assert!(!t.take("1234567890", &a));
    }
}
