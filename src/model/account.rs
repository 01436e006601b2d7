//! The people who act on the edge through its API and console: accounts,
//! their roles and what each role may see and change.
//!
//! Owns the role rules as pure functions (who may change what, whose
//! partner objects an account may read). Never does I/O and never holds a
//! secret: password hashes and token hashes live in `store`, which checks
//! them; this module only says what an authenticated account may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an account may do.
///
/// - `Operator`: everything (the home technical team).
/// - `Viewer`: read everything, change nothing.
/// - `Partner`: one partner's technical contact (the federation guide's
///   SPOC): its FPA, state, history, IM tests, certificate expiry and its
///   own verdict counts; nothing of any other partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Viewer,
    Partner,
}

pub const ALL_ROLES: [Role; 3] = [Role::Operator, Role::Viewer, Role::Partner];

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Partner => "partner",
        }
    }

    /// True when this role may change state (partners, organisers,
    /// meetings, drains, accounts).
    pub fn may_change(&self) -> bool {
        matches!(self, Role::Operator)
    }

    /// True when this role may read objects of every partner and of the
    /// node (listeners, media, CVI).
    pub fn sees_everything(&self) -> bool {
        matches!(self, Role::Operator | Role::Viewer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`ALL_ROLES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {given:?}; roles are operator, viewer, partner")]
pub struct UnknownRole {
    pub given: String,
}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        ALL_ROLES
            .iter()
            .find(|r| r.as_str() == s)
            .copied()
            .ok_or_else(|| UnknownRole {
                given: s.to_string(),
            })
    }
}

/// Where an account stands.
///
/// `Requested` is an account asked for by an FPA submission (the partner's
/// technical contact): it cannot log in until an operator activates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    Requested,
    Active,
    Disabled,
}

impl AccountState {
    pub fn as_str(&self) -> &'static str {
        match self {
            AccountState::Requested => "requested",
            AccountState::Active => "active",
            AccountState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for AccountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account state name that is not one of requested, active, disabled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown account state {given:?}")]
pub struct UnknownAccountState {
    pub given: String,
}

impl FromStr for AccountState {
    type Err = UnknownAccountState;
    fn from_str(s: &str) -> Result<Self, UnknownAccountState> {
        match s {
            "requested" => Ok(AccountState::Requested),
            "active" => Ok(AccountState::Active),
            "disabled" => Ok(AccountState::Disabled),
            other => Err(UnknownAccountState {
                given: other.to_string(),
            }),
        }
    }
}

/// An account as the rest of the application sees it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The login name (unique; for partner accounts usually the contact's e-mail).
    pub name: String,
    pub role: Role,
    /// The partner a `Partner` account is scoped to (its id); `None` otherwise.
    pub partner_id: Option<String>,
    pub state: AccountState,
    /// The console asks for a new password before anything else.
    pub must_change_password: bool,
    pub created_at: String,
    pub created_by: String,
}

impl Account {
    /// True when this account may read objects of partner `partner_id`.
    pub fn may_see_partner(&self, partner_id: &str) -> bool {
        self.role.sees_everything() || self.partner_id.as_deref() == Some(partner_id)
    }
}

/// The built-in operator account the node's own CLI acts as on the admin
/// listener (short-lived tokens only, never a password); no person may
/// take its name.
pub const NODE_ACCOUNT: &str = "fedge-node";

/// Why an account name is refused.
pub fn name_problem(name: &str) -> Option<String> {
    if name == NODE_ACCOUNT {
        return Some(format!(
            "the account name {NODE_ACCOUNT} is reserved for the node's own command line"
        ));
    }
    if name.is_empty() || name.len() > 254 {
        return Some("an account name has 1 to 254 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-@+".contains(c))
    {
        return Some(format!(
            "account name {name:?}: use letters, digits and . _ - @ + only"
        ));
    }
    None
}

/// Why a new password is refused (length only, as NIST SP 800-63B advises).
pub fn password_problem(password: &str) -> Option<String> {
    let n = password.chars().count();
    if n < 12 {
        return Some("a password has at least 12 characters".into());
    }
    if n > 512 {
        return Some("a password has at most 512 characters".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_scope() {
        for r in ALL_ROLES {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
        let a = Account {
            name: "spoc@partner.example".into(),
            role: Role::Partner,
            partner_id: Some("p_1".into()),
            state: AccountState::Active,
            must_change_password: false,
            created_at: String::new(),
            created_by: String::new(),
        };
        assert!(a.may_see_partner("p_1"));
        assert!(!a.may_see_partner("p_2"));
        assert!(!a.role.may_change());
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(name_problem("ops.alice").is_none());
        assert!(name_problem("a b").is_some());
        assert!(name_problem(NODE_ACCOUNT).is_some());
        assert!(password_problem("short").is_some());
        assert!(password_problem("correct horse battery").is_none());
    }
}
