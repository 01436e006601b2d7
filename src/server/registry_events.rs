//! Acting on registry changes in the running edge: a partner that leaves
//! `enabled` loses its federation connections.
//!
//! Owns closing connections on registry events. It never changes the
//! registry and never refuses requests itself (the policy does).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::federation::partner::PartnerState;
use crate::federation::registry::{Registry, RegistryEvent};
use crate::role::Role;
use crate::sip::transport::ConnectionTable;

/// Closes the federation connections of partners that leave `enabled`,
/// unless another enabled partner shares the same edge (hosted services).
pub(super) fn close_on_registry_events(
    registry: Arc<Registry>,
    table: Arc<ConnectionTable>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut rx = registry.subscribe();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(RegistryEvent::LeftEnabled {
                    partner,
                    edge_fqdn: Some(fqdn),
                    now,
                }) => {
                    let snap = registry.snapshot();
                    let shared = snap
                        .by_edge(&fqdn)
                        .iter()
                        .any(|p| p.state == PartnerState::Enabled);
                    if shared {
                        info!(partner = partner.name(), edge = %fqdn, "edge still serves another enabled partner; connections kept");
                        continue;
                    }
                    let n = table.close_where(|c| {
                        Role::of(c.tag) == Role::Federation
                            && c.identity.as_ref().is_some_and(|id| id.matches(&fqdn))
                    });
                    info!(partner = partner.name(), edge = %fqdn, %now, closed = n, "partner connections closed");
                }
                Ok(RegistryEvent::LeftEnabled { .. }) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(
                        missed = n,
                        "registry events missed; closing connections of every partner not enabled"
                    );
                    let snap = registry.snapshot();
                    table.close_where(|c| {
                        Role::of(c.tag) == Role::Federation
                            && c.identity.as_ref().is_some_and(|id| {
                                !snap
                                    .by_identity(id)
                                    .iter()
                                    .any(|p| p.state == PartnerState::Enabled)
                            })
                    });
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}
