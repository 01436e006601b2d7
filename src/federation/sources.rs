//! Who may send on the internal listener: the home pool's addresses
//! (`[internal] allowed_sources`, or the next hop's address when that is
//! unset). Anyone else who reaches the internal port could message
//! partners as any home user, since the outbound policy can check only the
//! From domain.
//!
//! Owns the address list and the refusal log (one line per source and
//! second at most, with the count of what was not logged). Never looks at
//! a message: a stranger's connection is closed at accept and its
//! datagrams are dropped unanswered (an answer to a spoofable UDP source
//! would make the edge a reflector).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use ipnet::IpNet;
use tokio::time::Instant;
use tracing::warn;

/// At most one refusal line per source this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Most sources whose refusals are being summarised (beyond that, lines
/// are dropped until the table empties).
const MAX_LOGGED: usize = 4096;

/// The home pool's addresses.
#[derive(Debug, Default)]
pub struct InternalSources {
    allowed: Vec<IpNet>,
    logged: Mutex<HashMap<IpAddr, (Instant, u64)>>,
}

impl InternalSources {
    pub fn new(allowed: Vec<IpNet>) -> InternalSources {
        InternalSources {
            allowed,
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// The configured networks.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// True when `remote` is a home-pool address; otherwise the refusal
    /// is logged (rate-limited per source) and false returned.
    pub fn admits(&self, remote: SocketAddr, transport: &str) -> bool {
        let ip = match remote.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        logged.retain(|_, (t, _)| now.saturating_duration_since(*t) < LOG_EVERY * 60);
        let room = logged.len() < MAX_LOGGED;
        let line = match logged.get_mut(&ip) {
            Some((t, n)) if now.saturating_duration_since(*t) < LOG_EVERY => {
                *n += 1;
                None
            }
            Some((t, n)) => {
                let missed = *n;
                *t = now;
                *n = 0;
                Some(missed)
            }
            None if room => {
                logged.insert(ip, (now, 0));
                Some(0)
            }
            None => None,
        };
        drop(logged);
        if let Some(missed) = line {
            warn!(
                role = "internal",
                %remote,
                transport,
                not_logged = missed,
                "internal listener refused a source that is not a home-pool address ([internal] allowed_sources)"
            );
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_networks_are_admitted() {
        let s = InternalSources::new(vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ]);
        assert!(s.admits("127.0.0.1:5060".parse().unwrap(), "udp"));
        assert!(s.admits("10.1.200.3:1".parse().unwrap(), "tcp"));
        assert!(s.admits("[::ffff:127.0.0.1]:1".parse().unwrap(), "tcp"));
        assert!(!s.admits("127.0.0.2:5060".parse().unwrap(), "udp"));
        assert!(!s.admits("10.2.0.1:1".parse().unwrap(), "tcp"));
    }
}
