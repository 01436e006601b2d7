//! Why `fedge serve` could not start.
//!
//! Owns the split between configuration problems (exit code 2) and the
//! rest (exit code 1). It never decides what to print; the CLI does.

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration names something unusable (exit code 2).
    #[error("{0}")]
    Config(String),
    /// Anything else (exit code 1).
    #[error("{0}")]
    Runtime(String),
}
