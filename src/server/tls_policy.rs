//! What the federation TLS configs check besides the trust bundle: the
//! `[federation] crls`, the chain caps and, in the running edge, the
//! partners' CA pins (`federation::identity::PinCheck`).
//!
//! Owns reading those keys into a `ChainPolicy` and the start-up log lines
//! about the CRLs. Never decides whether a certificate is acceptable: the
//! verifiers in `sip::transport::tls` and the pin rule in `federation` do.

use std::sync::Arc;

use tracing::{info, warn};

use crate::config::Config;
use crate::sip::transport::tls::{ChainCheck, ChainPolicy, load_crls};

use super::ServeError;

/// The chain policy the configuration asks for; `check` is the pin check
/// of the running edge (none for the preflight). With a check, the CRLs
/// are also described in the log.
pub(super) fn chain_policy(
    cfg: &Config,
    check: Option<Arc<dyn ChainCheck>>,
) -> Result<ChainPolicy, ServeError> {
    let f = &cfg.federation;
    let crls = load_crls(&f.crls).map_err(|e| ServeError::Config(format!("[federation] {e}")))?;
    if check.is_some() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for c in &crls {
            let next = c.next_update.map(|t| t.to_string()).unwrap_or_default();
            info!(path = %c.path.display(), issuer = %c.issuer, revoked = c.revoked, next_update = %next, "CRL loaded");
            if c.next_update.is_some_and(|t| t < now) {
                warn!(path = %c.path.display(), issuer = %c.issuer, "CRL is past its nextUpdate: certificates revoked since are not known; fetch a current CRL and restart");
            }
        }
    }
    Ok(ChainPolicy {
        crls: crls.into_iter().map(|c| c.der).collect(),
        max_certs: f.max_chain_certs,
        max_bytes: f.max_chain_bytes,
        check,
    })
}
