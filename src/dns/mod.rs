//! DNS for federation: the zone the edge publishes for its domains
//! (`zone`, served by `server` with hickory-server or printed for
//! operators' own DNS) and the look-ups it routes and checks partners by
//! (`resolve`, hickory-resolver). SfB federation rests on
//! `_sipfederationtls._tcp.<domain>` SRV records and the same-domain rule.

pub mod resolve;
pub mod server;
pub mod zone;

pub use resolve::{Dns, LookupError, NoEdge, SrvAnswer, SrvTarget};
