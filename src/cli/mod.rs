//! Pieces of the `fedge` command line that are not the entry point:
//! exit-code carrying failures and the partner commands. Part of the
//! binary, not the library.

pub mod cvi;
pub mod media;
pub mod partner;

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
