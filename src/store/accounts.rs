//! Accounts of the API and console, their API tokens and console sessions.
//!
//! Owns the secrets' storage: passwords as argon2id PHC strings, API
//! tokens and session ids as SHA-256 of the random value only its holder
//! keeps (a stolen database yields no usable token). Every account change
//! is appended to the audit chain in its own transaction. It never
//! decides what a role may do (`model::account` says that) and never
//! returns a secret except once, to the caller that created it.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use rand::Rng as _;
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::audit::{self, Kind, NewEntry};
use super::{Store, StoreError, now_rfc3339};
use crate::model::account::{
    Account, AccountState, NODE_ACCOUNT, Role, name_problem, password_problem,
};

/// How long a console session lasts without a new login.
pub const SESSION_LIFETIME: time::Duration = time::Duration::hours(8);

/// A secret handed out once: a one-time console password and an API token.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub account: Account,
    /// The console password to change at first login (`None` for none).
    pub password: Option<String>,
    /// The API token (`Authorization: Bearer ...`).
    pub token: String,
}

/// A console session found by its cookie value.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: Account,
    /// The CSRF token every state-changing form of this session carries.
    pub csrf: String,
    pub expires_at: String,
}

/// SHA-256 hex of a secret, as stored.
pub fn secret_hash(secret: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random secret: `prefix` then 32 random bytes in base64url.
pub fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A one-time password a person can type: 4 groups of 5 letters and digits.
fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let groups: Vec<String> = (0..4)
        .map(|_| {
            (0..5)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        })
        .collect();
    groups.join("-")
}

async fn hash_password(password: String) -> Result<String, StoreError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| StoreError::Invalid(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| StoreError::Invalid(format!("password hashing task failed: {e}")))?
}

static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn verify_password(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        // An account without a password still costs one hash, so that
        // timing does not tell which names exist.
        let phc = phc.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    Argon2::default()
                        .hash_password(new_secret("").as_bytes())
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                })
                .clone()
        });
        match PasswordHash::new(&phc) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}

fn account_from_row(r: &AnyRow) -> Result<Account, StoreError> {
    let role: String = r.try_get("role")?;
    let state: String = r.try_get("state")?;
    let must: i64 = r.try_get("must_change_password")?;
    Ok(Account {
        name: r.try_get("name")?,
        role: role
            .parse::<Role>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        partner_id: r.try_get("partner_id")?,
        state: state
            .parse::<AccountState>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        must_change_password: must != 0,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

/// The account columns, as a literal so queries stay static strings.
macro_rules! account_cols {
    () => {
        "SELECT name, role, partner_id, state, must_change_password, created_at, created_by FROM accounts"
    };
}

fn expiry(from_now: time::Duration) -> String {
    (OffsetDateTime::now_utc() + from_now)
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl Store {
    /// Appends an entry about account `name` to the audit chain, inside
    /// the change's transaction.
    async fn audit_account(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        at: &str,
        actor: &str,
        name: &str,
        action: &str,
        detail: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        audit::append(
            tx,
            self.backend,
            NewEntry {
                at,
                actor,
                kind: Kind::Account,
                subject: name,
                action,
                detail,
            },
        )
        .await
        .map(|_| ())
    }

    /// One account by name.
    pub async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(concat!(account_cols!(), " WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(concat!(account_cols!(), " ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// The accounts scoped to one partner (its contacts).
    pub async fn accounts_of_partner(&self, partner_id: &str) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(concat!(
            account_cols!(),
            " WHERE partner_id = $1 ORDER BY name"
        ))
        .bind(partner_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// Creates an active account with a one-time console password (to be
    /// changed at first login) and an API token. `partner_id` is required
    /// for, and only allowed with, the `partner` role.
    pub async fn add_account(
        &self,
        name: &str,
        role: Role,
        partner_id: Option<&str>,
        actor: &str,
    ) -> Result<Credentials, StoreError> {
        self.insert_account(name, role, partner_id, AccountState::Active, actor)
            .await?;
        self.issue_credentials(name, actor, "add").await
    }

    /// Records an account asked for by an FPA submission: role `partner`,
    /// state `requested`, no password or token until an operator activates it.
    pub async fn request_account(
        &self,
        name: &str,
        partner_id: &str,
        actor: &str,
    ) -> Result<Account, StoreError> {
        self.insert_account(
            name,
            Role::Partner,
            Some(partner_id),
            AccountState::Requested,
            actor,
        )
        .await
    }

    async fn insert_account(
        &self,
        name: &str,
        role: Role,
        partner_id: Option<&str>,
        state: AccountState,
        actor: &str,
    ) -> Result<Account, StoreError> {
        if let Some(p) = name_problem(name) {
            return Err(StoreError::Invalid(p));
        }
        self.insert_account_row(name, role, partner_id, state, actor)
            .await
    }

    /// [`Self::insert_account`] without the name check (the node account).
    async fn insert_account_row(
        &self,
        name: &str,
        role: Role,
        partner_id: Option<&str>,
        state: AccountState,
        actor: &str,
    ) -> Result<Account, StoreError> {
        match (role, partner_id) {
            (Role::Partner, None) => {
                return Err(StoreError::Invalid(
                    "a partner account needs the partner it belongs to".into(),
                ));
            }
            (Role::Operator | Role::Viewer, Some(_)) => {
                return Err(StoreError::Invalid(format!(
                    "a {role} account is not scoped to a partner"
                )));
            }
            _ => {}
        }
        if let Some(pid) = partner_id {
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM partners WHERE id = $1")
                .bind(pid)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            if n == 0 {
                return Err(StoreError::NotFound(pid.to_string()));
            }
        }
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (name, role, partner_id, state, password_hash, must_change_password, \
             created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, NULL, 1, $5, $6, $5)",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(partner_id.map(str::to_string))
        .bind(state.as_str())
        .bind(&now)
        .bind(actor)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            if matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()) {
                return Err(StoreError::Conflict(format!(
                    "an account named {name} already exists"
                )));
            }
            return Err(e.into());
        }
        self.audit_account(
            &mut tx,
            &now,
            actor,
            name,
            if state == AccountState::Requested {
                "request"
            } else {
                "add"
            },
            Some(serde_json::json!({
                "role": role.as_str(),
                "partner_id": partner_id,
                "state": state.as_str(),
            })),
        )
        .await?;
        tx.commit().await?;
        self.account(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))
    }

    /// Sets a new one-time password and a new API token on `name` and
    /// makes it active (activation of a requested account, or a reset).
    /// Earlier tokens and sessions of the account stop working. A disabled
    /// account is refused (conflict): enabling it is a decision of its own.
    pub async fn issue_credentials(
        &self,
        name: &str,
        actor: &str,
        action: &str,
    ) -> Result<Credentials, StoreError> {
        if name == NODE_ACCOUNT {
            return Err(StoreError::Invalid(format!(
                "{NODE_ACCOUNT} has no password: the node's command line issues its own tokens"
            )));
        }
        match self.account(name).await? {
            None => return Err(StoreError::NotFound(name.to_string())),
            Some(a) if a.state == AccountState::Disabled => {
                return Err(StoreError::Conflict(format!(
                    "account {name} is disabled: enable it first, then {action} it"
                )));
            }
            Some(_) => {}
        }
        let password = new_password();
        let phc = hash_password(password.clone()).await?;
        let token = new_secret("fdg_");
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE accounts SET password_hash = $1, must_change_password = 1, state = 'active', \
             updated_at = $2 WHERE name = $3 AND state <> 'disabled'",
        )
        .bind(&phc)
        .bind(&now)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            // Disabled between the read above and this write.
            return Err(StoreError::Conflict(format!(
                "account {name} is disabled: enable it first, then {action} it"
            )));
        }
        sqlx::query(
            "UPDATE account_tokens SET revoked_at = $1 WHERE account = $2 AND revoked_at IS NULL",
        )
        .bind(&now)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM console_sessions WHERE account = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO account_tokens (token_hash, account, label, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, NULL, NULL)",
        )
        .bind(secret_hash(&token))
        .bind(name)
        .bind(action)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        self.audit_account(
            &mut tx,
            &now,
            actor,
            name,
            if action == "add" {
                "credentials"
            } else {
                action
            },
            Some(serde_json::json!({"password": "one-time", "token": "new"})),
        )
        .await?;
        tx.commit().await?;
        self.forget_remembered_tokens();
        let account = self
            .account(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        Ok(Credentials {
            account,
            password: Some(password),
            token,
        })
    }

    /// Issues an extra API token for `name`, valid for `lifetime` (`None`:
    /// until revoked). Returns the token (shown once).
    pub async fn issue_token(
        &self,
        name: &str,
        label: &str,
        lifetime: Option<time::Duration>,
        actor: &str,
    ) -> Result<String, StoreError> {
        if name == NODE_ACCOUNT {
            return Err(StoreError::Invalid(format!(
                "{NODE_ACCOUNT} is the node's own command line: its tokens live 60 s and are issued by the CLI only"
            )));
        }
        let token = new_secret("fdg_");
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let n: i64 =
            sqlx::query("SELECT COUNT(*) FROM accounts WHERE name = $1 AND state = 'active'")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        if n == 0 {
            return Err(StoreError::Invalid(format!(
                "no active account named {name}"
            )));
        }
        sqlx::query(
            "INSERT INTO account_tokens (token_hash, account, label, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(secret_hash(&token))
        .bind(name)
        .bind(label)
        .bind(&now)
        .bind(lifetime.map(expiry))
        .execute(&mut *tx)
        .await?;
        self.audit_account(
            &mut tx,
            &now,
            actor,
            name,
            "token",
            Some(serde_json::json!({"label": label, "expires": lifetime.map(expiry)})),
        )
        .await?;
        tx.commit().await?;
        self.forget_remembered_tokens();
        Ok(token)
    }

    /// The active account an API token belongs to, if the token is live.
    pub async fn account_by_token(&self, token: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.token_lookup(token).await?.map(|(a, _)| a))
    }

    /// [`Self::account_by_token`] with the token's expiry (RFC 3339;
    /// `None`: until revoked), which bounds the outage memory.
    pub(super) async fn token_lookup(
        &self,
        token: &str,
    ) -> Result<Option<(Account, Option<String>)>, StoreError> {
        let now = now_rfc3339();
        let row = sqlx::query(
            "SELECT a.name, a.role, a.partner_id, a.state, a.must_change_password, a.created_at, a.created_by, \
             t.expires_at FROM account_tokens t JOIN accounts a ON a.name = t.account \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) \
             AND a.state = 'active'",
        )
        .bind(secret_hash(token))
        .bind(&now)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some((account_from_row(&r)?, r.try_get("expires_at")?))),
            None => Ok(None),
        }
    }

    /// Checks a console login. `Ok(None)` for a wrong name or password or
    /// an account that is not active (the caller says only "wrong name or
    /// password" and counts the failure).
    pub async fn check_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(
            "SELECT name, role, partner_id, state, must_change_password, created_at, created_by, password_hash \
             FROM accounts WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let phc: Option<String> = match &row {
            Some(r) => r.try_get("password_hash")?,
            None => None,
        };
        let ok = verify_password(password.to_string(), phc).await;
        match row {
            Some(r) if ok => {
                let a = account_from_row(&r)?;
                Ok((a.state == AccountState::Active).then_some(a))
            }
            _ => Ok(None),
        }
    }

    /// Sets `name`'s password (its own change, or after the one-time one)
    /// and ends every console session of the account.
    pub async fn set_password(
        &self,
        name: &str,
        password: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.set_password_keeping(name, password, actor, None).await
    }

    /// [`Self::set_password`], ending every console session of the account
    /// but `keep` (the cookie value of the session that made the change).
    pub async fn set_password_keeping(
        &self,
        name: &str,
        password: &str,
        actor: &str,
        keep: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(p) = password_problem(password) {
            return Err(StoreError::Invalid(p));
        }
        let phc = hash_password(password.to_string()).await?;
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE accounts SET password_hash = $1, must_change_password = 0, updated_at = $2 WHERE name = $3",
        )
        .bind(&phc)
        .bind(&now)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(name.to_string()));
        }
        // An empty hash matches no session: with no `keep`, all end.
        let kept = keep.map(secret_hash).unwrap_or_default();
        let ended =
            sqlx::query("DELETE FROM console_sessions WHERE account = $1 AND session_hash <> $2")
                .bind(name)
                .bind(&kept)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        self.audit_account(
            &mut tx,
            &now,
            actor,
            name,
            "password",
            Some(serde_json::json!({"sessions_ended": ended})),
        )
        .await?;
        tx.commit().await?;
        self.forget_remembered_tokens();
        Ok(())
    }

    /// Disables (or enables again) an account: a disabled account's tokens
    /// and sessions stop working at once.
    pub async fn set_account_state(
        &self,
        name: &str,
        state: AccountState,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Account, StoreError> {
        if name == NODE_ACCOUNT {
            return Err(StoreError::Invalid(format!(
                "{NODE_ACCOUNT} is the node's own command line: whoever can write the database acts as it"
            )));
        }
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE accounts SET state = $1, updated_at = $2 WHERE name = $3")
            .bind(state.as_str())
            .bind(&now)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(name.to_string()));
        }
        if state != AccountState::Active {
            sqlx::query("DELETE FROM console_sessions WHERE account = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        self.audit_account(
            &mut tx,
            &now,
            actor,
            name,
            state.as_str(),
            Some(serde_json::json!({"reason": reason})),
        )
        .await?;
        tx.commit().await?;
        self.forget_remembered_tokens();
        self.account(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))
    }

    /// Opens a console session for `name`. Returns the cookie value and
    /// the session (with its CSRF token); only the cookie value's hash is
    /// stored.
    pub async fn open_session(&self, account: &Account) -> Result<(String, Session), StoreError> {
        let id = new_secret("s_");
        let csrf = new_secret("");
        let now = now_rfc3339();
        let expires_at = expiry(SESSION_LIFETIME);
        sqlx::query(
            "INSERT INTO console_sessions (session_hash, account, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(secret_hash(&id))
        .bind(&account.name)
        .bind(&csrf)
        .bind(&now)
        .bind(&expires_at)
        .execute(&self.pool)
        .await?;
        Ok((
            id,
            Session {
                account: account.clone(),
                csrf,
                expires_at,
            },
        ))
    }

    /// The live session a cookie value names, with its active account.
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>, StoreError> {
        let now = now_rfc3339();
        let row = sqlx::query(
            "SELECT a.name, a.role, a.partner_id, a.state, a.must_change_password, a.created_at, a.created_by, \
             s.csrf, s.expires_at FROM console_sessions s JOIN accounts a ON a.name = s.account \
             WHERE s.session_hash = $1 AND s.expires_at > $2 AND a.state = 'active'",
        )
        .bind(secret_hash(cookie))
        .bind(&now)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some(Session {
                account: account_from_row(&r)?,
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
            })),
            None => Ok(None),
        }
    }

    /// Ends a session (logout); expired sessions are removed on the way.
    pub async fn close_session(&self, cookie: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE session_hash = $1 OR expires_at <= $2")
            .bind(secret_hash(cookie))
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Creates an active account with an API token and no console
    /// password (a service account: a Prometheus scraper, a script, the
    /// test lab). Returns the token once.
    pub async fn add_token_account(
        &self,
        name: &str,
        role: Role,
        partner_id: Option<&str>,
        label: &str,
        actor: &str,
    ) -> Result<Credentials, StoreError> {
        let account = self
            .insert_account(name, role, partner_id, AccountState::Active, actor)
            .await?;
        let token = self.issue_token(name, label, None, actor).await?;
        Ok(Credentials {
            account,
            password: None,
            token,
        })
    }

    /// A token for the node's own command line (account
    /// [`NODE_ACCOUNT`], created, and audited, the first time), valid for
    /// `lifetime`; drop it with [`Self::drop_node_token`] after use.
    /// Issuing it is not audited: it changes no account, and what the
    /// command does is audited where it changes something. Expired node
    /// tokens are removed on the way.
    pub async fn node_token(&self, lifetime: time::Duration) -> Result<String, StoreError> {
        match self.account(NODE_ACCOUNT).await? {
            None => {
                let made = self
                    .insert_account_row(
                        NODE_ACCOUNT,
                        Role::Operator,
                        None,
                        AccountState::Active,
                        "fedge",
                    )
                    .await;
                match made {
                    // Another command created it at the same moment.
                    Ok(_) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(a) if a.state != AccountState::Active => {
                return Err(StoreError::Invalid(format!(
                    "the node account {NODE_ACCOUNT} is {}",
                    a.state
                )));
            }
            Some(_) => {}
        }
        let now = now_rfc3339();
        sqlx::query(
            "DELETE FROM account_tokens WHERE account = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
        )
        .bind(NODE_ACCOUNT)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        let token = new_secret("fdg_");
        sqlx::query(
            "INSERT INTO account_tokens (token_hash, account, label, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, 'cli', $3, $4, NULL)",
        )
        .bind(secret_hash(&token))
        .bind(NODE_ACCOUNT)
        .bind(&now)
        .bind(expiry(lifetime))
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// Removes a token [`Self::node_token`] issued.
    pub async fn drop_node_token(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM account_tokens WHERE token_hash = $1 AND account = $2")
            .bind(secret_hash(token))
            .bind(NODE_ACCOUNT)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many active operator accounts a person holds (the node's own
    /// account does not count): `fedge serve` says how to create the first.
    pub async fn active_operators(&self) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM accounts WHERE role = 'operator' AND state = 'active' AND name <> $1",
        )
        .bind(NODE_ACCOUNT)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(n)
    }
}
