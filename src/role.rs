//! The edge's three kinds of SIP listener and the tags they carry.
//!
//! Owns the mapping between the application's roles (partners' edges, the
//! home pool, CVI room systems) and the opaque [`Tag`] the SIP layer puts
//! on every message and connection. Decides nothing about a message: the
//! policy and the gateway read the role and decide.

use std::fmt;

use crate::sip::transport::{Side, Tag};

/// Which listener (or outbound pool) a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Partners' edges over mutual TLS.
    Federation,
    /// The home pool (our own SfB/Lync servers).
    Internal,
    /// Video room systems and the connector, in CVI gateway mode.
    Cvi,
}

const FEDERATION: Tag = Tag::new("federation", Side::Outside);
const INTERNAL: Tag = Tag::new("internal", Side::Inside);
const CVI: Tag = Tag::new("cvi", Side::Inside);

impl Role {
    /// The tag this role's listeners and pools carry.
    pub const fn tag(self) -> Tag {
        match self {
            Role::Federation => FEDERATION,
            Role::Internal => INTERNAL,
            Role::Cvi => CVI,
        }
    }

    /// The role of a tag made by [`Role::tag`]. The application makes no
    /// other tags; an outside tag counts as federation, any other inside
    /// tag as internal.
    pub fn of(tag: Tag) -> Role {
        if tag == CVI {
            Role::Cvi
        } else if tag.side == Side::Outside {
            Role::Federation
        } else {
            Role::Internal
        }
    }

    /// The proxy leg (Via, Record-Route) of messages sent to this role.
    pub fn side(self) -> Side {
        self.tag().side
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag().name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_survives_its_tag() {
        for r in [Role::Federation, Role::Internal, Role::Cvi] {
            assert_eq!(Role::of(r.tag()), r);
        }
        assert_eq!(Role::Federation.to_string(), "federation");
        assert_eq!(Role::Cvi.side(), Side::Inside);
    }
}
