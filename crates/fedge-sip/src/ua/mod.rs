//! A small user-agent layer, for an application that originates and
//! answers calls itself (a back-to-back user agent): client transactions
//! driven by the proxy's own `ClientTxn` state machine (one client
//! transaction implementation in the crate), and dialog state.
//!
//! Owns the requests a UA sends and their answers (Timers A/B/E/F/C/D/K/M,
//! CANCEL, the ACK of error answers, the ACK of a 2xx repeated for its
//! retransmissions) and the dialog's Call-ID, tags, CSeq, route set and
//! remote target. Never decides what a call does, and knows nothing of the
//! application that uses it.

pub mod client;
pub mod dialog;

pub use client::{Agent, Answered, Carrier, TxnError};
pub use dialog::Dialog;
