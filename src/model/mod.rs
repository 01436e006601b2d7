//! The domain's records and their pure rules, below everything that
//! stores or acts on them: partners and their lifecycle (`partner`), CVI
//! organisers, enrolments and meetings (`cvi`).
//!
//! Owns types and rules that are true whatever holds them. Never does I/O
//! and never imports another module of the application (only `sip` for
//! its grammar): `store` persists these records, `federation` and `cvi`
//! act on them, and all of them import this module, never the reverse.

pub mod account;
pub mod ca_pin;
pub mod cvi;
pub mod partner;
