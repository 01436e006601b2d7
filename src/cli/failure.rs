//! The CLI's one error type: a message and the exit code it deserves.
//!
//! Owns the exit-code rule: 2 for usage and configuration mistakes (one
//! line), 1 for everything else. It never prints anything itself.

/// A failure with the exit code it deserves: 2 for usage and configuration
/// mistakes (one line), 1 for everything else.
pub struct Failure {
    pub code: u8,
    pub msg: String,
}

impl Failure {
    pub fn usage(msg: impl Into<String>) -> Self {
        Failure {
            code: 2,
            msg: msg.into(),
        }
    }

    pub fn runtime(msg: impl Into<String>) -> Self {
        Failure {
            code: 1,
            msg: msg.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::runtime(format!("{e:#}"))
    }
}
