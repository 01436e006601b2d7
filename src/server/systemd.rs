//! systemd's service notifications (`Type=notify`): READY=1 once the
//! node serves, STOPPING=1 when it starts to drain or stop, WATCHDOG=1 at
//! half of `WATCHDOG_USEC` while it runs.
//!
//! Owns these datagrams (the `sd-notify` crate writes them to
//! `NOTIFY_SOCKET`). Without `NOTIFY_SOCKET` (not under systemd) each is a
//! no-op; a failure to send is logged once at debug and never stops the
//! edge.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, info};

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        debug!(error = %e, "systemd notification not sent");
    }
}

/// READY=1: the listeners are bound and the node serves.
pub(super) fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// STOPPING=1: the node drains or stops.
pub(super) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// `WATCHDOG_USEC`, unless `WATCHDOG_PID` names another process: what
/// sd_watchdog_enabled(3) reads (the crate's own check also wants
/// WATCHDOG_PID, which libsystemd does not).
fn watchdog_usec() -> Option<u64> {
    let usec = std::env::var("WATCHDOG_USEC")
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then_some(usec)
}

/// Sends WATCHDOG=1 at half of `WATCHDOG_USEC` for as long as the
/// runtime runs (through the drain and the stop), when systemd asks for
/// it (`WatchdogSec=`); else does nothing.
pub(super) fn spawn_watchdog() {
    let Some(usec) = watchdog_usec() else {
        return;
    };
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(10));
    info!(
        every_ms = every.as_millis() as u64,
        "systemd watchdog: pinging"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}
