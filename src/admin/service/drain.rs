//! The node's drain as the API and the console see it: start it, read its
//! progress (calls and transactions left, time left to the deadline).
//!
//! Owns the role checks and the answer's shape. The drain itself (what it
//! stops, when the node exits) is `server::drain`'s, reached through the
//! [`NodeDrain`] the server puts in [`EdgeState`]; this never stops
//! anything itself.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::super::EdgeState;
use super::super::auth::{Actor, ApiError};

/// What a node drain is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DrainProgress {
    /// The node's name in the node table.
    pub node: String,
    pub draining: bool,
    /// When the drain began (RFC 3339).
    pub since: Option<String>,
    /// Seconds left before the node exits anyway (`[drain] deadline`).
    pub deadline_secs: Option<u64>,
    /// Calls (INVITE dialogs) the proxy carries, up or ringing.
    pub calls: usize,
    /// Requests received and not yet answered; while draining, only
    /// those received before the drain began (what it waits for).
    pub transactions: usize,
    /// CVI gateway calls up (0 without the gateway).
    pub cvi_calls: usize,
    /// Media relay sessions still open (closed as their calls end).
    pub media_sessions: usize,
}

/// The running node's drain, as the server implements it.
pub trait NodeDrain: Send + Sync + std::fmt::Debug {
    /// Starts the drain (again: nothing more); `by` is who asked, for the log.
    fn start(&self, by: &str) -> DrainProgress;
    /// Where the drain is (or that there is none).
    fn progress(&self) -> DrainProgress;
}

fn no_drain() -> ApiError {
    ApiError::not_found("this node has no drain (it is not a running `fedge serve`)")
}

/// Starts draining this node (operators): new dialogs are refused with
/// 503, calls in progress finish, and the node exits when none is left or
/// at the deadline.
pub fn start_node_drain(state: &EdgeState, actor: &Actor) -> Result<DrainProgress, ApiError> {
    actor.require_change()?;
    let d = state.drain.as_ref().ok_or_else(no_drain)?;
    Ok(d.start(actor.name()))
}

/// The drain's progress (operators and viewers).
pub fn node_drain(state: &EdgeState, actor: &Actor) -> Result<DrainProgress, ApiError> {
    actor.require_node_view()?;
    let d = state.drain.as_ref().ok_or_else(no_drain)?;
    Ok(d.progress())
}
