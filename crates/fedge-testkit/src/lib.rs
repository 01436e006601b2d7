//! The lab the integration tests and the benchmarks share: a throw-away
//! PKI, the real `fedge` binary started with a configuration, its CLI and
//! admin HTTP, TLS clients, third-party peers (Kamailio, SIPp, openssl,
//! PostgreSQL), RTP material and the benchmarks' load generator.
//!
//! It is a dev-dependency of the application crate only: it never ships,
//! and nothing in the application or the workspace crates may use it.
//! `use fedge_testkit::*;` brings the everyday helpers (PKI, edge, CLI,
//! TLS client, admin HTTP, tools); the lab, the peers, the CVI gateway
//! tests' harness, PostgreSQL, RTP, the browser (chromedriver) and the
//! benchmark pieces are in their modules.

use std::path::PathBuf;

pub mod admin;
pub mod baresip;
pub mod bench;
pub mod browser;
pub mod capture;
pub mod client;
pub mod cluster;
pub mod cvi;
pub mod edge;
pub mod h323;
pub mod lab;
pub mod peers;
pub mod pg;
pub mod pki;
pub mod rtp;
pub mod rtpgen;
pub mod tools;
pub mod videogen;

pub use admin::{admin_get, admin_text, http, metric};
pub use client::{Reply, SipTlsClient, options_to_edge, tls_connect, tls_connect_from};
pub use edge::{Edge, conference_id, fedge_bin, fedge_cli, fedge_ok, test_config};
pub use pki::{CertFiles, EDGE_FQDN, PARTNER_FQDN, Pki, write_pair};
pub use tools::{ToolOutput, s_client};

/// The repository's root (where tests/peers and tests/sipp live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
