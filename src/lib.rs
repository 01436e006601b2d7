//! fedge: a federation edge for health and care unified communications.
//!
//! The crate is layered so that data flows one way (bytes -> frame ->
//! message -> identity -> policy -> forward): [`sip`] knows SIP only,
//! [`federation`] decides who may talk to whom, [`media`] relays A/V media
//! (it knows SDP, not SIP), [`store`] is the only place
//! with SQL, [`config`] reads the one TOML file, [`pki`] makes development
//! certificates, [`admin`] serves HTTP, and [`server`] wires the pieces
//! together for `fedge serve`. See docs/ARCHITECTURE.md.

pub mod admin;
pub mod config;
pub mod cvi;
pub mod dns;
pub mod federation;
pub mod firewall;
pub mod pki;
pub mod role;
pub mod server;
pub mod store;

/// The media relay (crate `fedge-media`).
pub use fedge_media as media;
/// The SIP layer (crate `fedge-sip`), under the name the application has always used.
pub use fedge_sip as sip;
