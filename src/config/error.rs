//! The configuration's one error type.
//!
//! Owns the one-line message format; it never carries more than one line
//! (the CLI prints it as is and exits with 2).

/// A configuration problem, printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);
