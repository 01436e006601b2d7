//! The admin listener's handle on the edge's TLS material: the
//! certificate being served (for `/health`) and a reload of the
//! `[federation] cert/key/trust/crls` files (for `POST /api/v1/node/reload`
//! and the CLI's `fedge reload`).
//!
//! Owns the contract ([`TlsControl`]) and its answer types. The reload
//! itself (reading and checking the files, swapping the configurations)
//! is `server::reload`'s, which implements the trait; this module never
//! reads a certificate file and never imports `server`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The certificate this node serves on its federation listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServedCert {
    /// The serial number, hex with colons (as openssl prints it, upper case).
    pub serial: String,
    /// The subject distinguished name.
    pub subject: String,
    /// The end of its validity (RFC 3339, UTC).
    pub not_after: String,
    /// When these files were loaded (RFC 3339, UTC).
    pub loaded_at: String,
}

/// What `POST /api/v1/node/reload` answers after a good reload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReloadOutcome {
    /// The certificate served from now on (new handshakes).
    pub certificate: ServedCert,
    /// Good reloads since start (this one included).
    pub reloads: u64,
    /// Refused reloads since start.
    pub refused: u64,
}

/// Why a new file set was refused: one line naming the file and the
/// problem (the old configuration stays in force).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReloadRefused(pub String);

impl From<String> for ReloadRefused {
    fn from(s: String) -> Self {
        ReloadRefused(s)
    }
}

/// The edge's TLS material as the admin listener may see and reload it.
pub trait TlsControl: Send + Sync + std::fmt::Debug {
    /// The certificate served now.
    fn served(&self) -> ServedCert;
    /// Re-reads the files; `Err` is the one-line reason a bad set was
    /// refused (the old one stays). `trigger` says who asked, for the log.
    fn reload(&self, trigger: &str) -> Result<ReloadOutcome, ReloadRefused>;
    /// Good and refused reloads since start.
    fn counts(&self) -> (u64, u64);
}
