//! The sections about running the edge as one of several nodes and
//! changing it without downtime: `[cluster]` (this node's name and its
//! heartbeat in the shared database), `[drain]` (how a node stops taking
//! new dialogs and leaves), `[capture]` (HEP3 copies of every SIP message
//! for Homer or sngrep).
//!
//! Owns the shape, the defaults and the checks of these settings. It never
//! starts anything and never reads files.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};

/// This node among the nodes sharing one database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's name in the node table (`fedge nodes`): unique among the
    /// nodes sharing the database. Empty: the host name, then
    /// `:PORT` of the federation listener.
    pub node: String,
    /// How often the node writes its heartbeat (and reads the others').
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A node whose heartbeat is older than this is shown as gone, and the
    /// others take over its share of the partners' rates.
    #[serde(with = "humantime_serde")]
    pub gone_after: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node: String::new(),
            heartbeat: Duration::from_secs(1),
            gone_after: Duration::from_secs(5),
        }
    }
}

/// Leaving without dropping a call: `fedge drain`, and SIGTERM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    /// How long a draining node lets dialogs and transactions in progress
    /// finish before it exits anyway.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// The Retry-After (seconds) of the 503 a draining node answers new
    /// INVITEs and SUBSCRIBEs with.
    pub retry_after: u32,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            deadline: Duration::from_secs(60),
            retry_after: 30,
        }
    }
}

/// HEP3 copies of the SIP messages the edge receives and sends. Its
/// `Debug` masks the password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// `udp:HOST:PORT` of a HEP collector (Homer, sngrep -L, ...); absent:
    /// no capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hep: Option<String>,
    /// The HEP capture agent ID.
    pub capture_id: u32,
    /// The HEP authentication key (chunk 0x000e), when the collector wants one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Messages waiting to be sent at most; more are dropped and counted
    /// (capture never slows the proxy).
    pub queue: usize,
}

impl std::fmt::Debug for CaptureConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureConfig")
            .field("hep", &self.hep)
            .field("capture_id", &self.capture_id)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("queue", &self.queue)
            .finish()
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            hep: None,
            capture_id: 2001,
            password: None,
            queue: 10_000,
        }
    }
}

impl Config {
    /// `[cluster]`, `[drain]` and `[capture]`.
    pub(super) fn check_operations(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.node.len() > 128 || c.node.chars().any(|ch| ch.is_control()) {
            return Err(ConfigError(
                "[cluster] node: at most 128 characters, no control characters".into(),
            ));
        }
        if c.heartbeat.is_zero() || c.heartbeat > Duration::from_secs(60) {
            return Err(ConfigError(
                "[cluster] heartbeat: between 1ms and 60s".into(),
            ));
        }
        if c.gone_after < c.heartbeat * 2 {
            return Err(ConfigError(
                "[cluster] gone_after: at least twice the heartbeat".into(),
            ));
        }
        if self.drain.deadline.is_zero() {
            return Err(ConfigError("[drain] deadline: must be more than 0s".into()));
        }
        if let Some(h) = &self.capture.hep {
            hep_target(h).map_err(|e| ConfigError(format!("[capture] hep: {e}")))?;
        }
        if self.capture.queue == 0 {
            return Err(ConfigError("[capture] queue: at least 1".into()));
        }
        Ok(())
    }
}

/// Why a `[capture] hep` value is not `udp:HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HepTargetError(String);

/// `udp:HOST:PORT` -> (host, port).
pub fn hep_target(s: &str) -> Result<(String, u16), HepTargetError> {
    let rest = s
        .strip_prefix("udp:")
        .ok_or_else(|| HepTargetError(format!("{s:?}: expected udp:HOST:PORT")))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| HepTargetError(format!("{s:?}: expected udp:HOST:PORT")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| HepTargetError(format!("{s:?}: the port must be 1-65535")))?;
    if host.is_empty() {
        return Err(HepTargetError(format!("{s:?}: no host")));
    }
    Ok((host.to_string(), port))
}
