//! The process's open-files limit: raised from its soft value to the hard
//! one at start, and what that lets the edge hold, said in the log.
//!
//! Owns the count of file descriptors the configuration may need (stream
//! connections, handshakes, media sockets) against the limit. It never
//! refuses to start on it: a limit below the configured budgets is a
//! warning, and the listeners' own caps keep the edge inside it.

use tracing::{info, warn};

use crate::config::Config;

/// Descriptors kept aside for the edge's own files and sockets: listeners,
/// the store, DNS, the admin listener, logs, the runtime.
const RESERVED: u64 = 64;

/// Raises the open-files soft limit to the hard limit and logs how many
/// connections the edge can hold.
pub(super) fn raise_open_files_limit(cfg: &Config) {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot raise the open-files limit");
            before.map_or(1024, |(soft, _)| soft)
        }
    };
    let hard = before.map_or(limit, |(_, hard)| hard);
    let media = media_sockets(cfg);
    let can_hold = limit.saturating_sub(RESERVED + media);
    let wanted = stream_budget(cfg);
    info!(
        open_files = limit,
        was = before.map_or(0, |(soft, _)| soft),
        hard,
        media_sockets = media,
        connections = can_hold,
        configured = wanted,
        "open-files limit {limit}: the edge can hold {can_hold} connections"
    );
    if can_hold < wanted {
        warn!(
            open_files = limit,
            connections = can_hold,
            configured = wanted,
            "the open-files limit is below the configured connection budgets: raise LimitNOFILE (systemd) or the hard limit, or lower [federation] max_connections and max_handshakes"
        );
    }
}

/// UDP sockets the media relays may hold at once: an RTP and an RTCP
/// socket on each side of an audio call. (The io_uring loop's connected
/// siblings, D258, come on top, but only while the process holds fewer
/// descriptors than three quarters of its limit: they never take what new
/// calls need.)
fn media_sockets(cfg: &Config) -> u64 {
    let mut n = 0u64;
    if cfg.media.enabled {
        n += cfg.media.max_sessions as u64 * 4;
    }
    if cfg.cvi.enabled {
        n += cfg.cvi.max_calls as u64 * 4;
    }
    n
}

/// Stream connections the configuration allows on the listeners.
fn stream_budget(cfg: &Config) -> u64 {
    let f = &cfg.federation;
    let mut n = f.max_connections + f.max_handshakes + cfg.internal.max_connections;
    if cfg.cvi.enabled {
        // The room systems' TCP listener, TLS listener and its handshakes.
        n += (cfg.cvi.max_calls * 4 + 16) * 3;
    }
    n as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_need_the_listeners_and_the_relay() {
        let c = Config::default();
        assert_eq!(stream_budget(&c), 1024 + 256 + 256);
        assert_eq!(media_sockets(&c), 2500 * 4);
        let mut c = Config::default();
        c.media.enabled = false;
        assert_eq!(media_sockets(&c), 0);
    }
}
