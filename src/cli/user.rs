//! `fedge user ...`: accounts of the API and console, from the node (the
//! bootstrap of a fresh install: `fedge user add --role operator NAME`).
//!
//! Owns the commands' names, flags and output. Every change goes through
//! the store, which audits it with the acting login name. Secrets are
//! printed once, to stdout, by the command that created them, and never
//! logged. Mistakes are one line and exit code 2.

use clap::Subcommand;
use fedge::model::account::{Account, AccountState, Role};
use fedge::store::{Credentials, Store};

use super::failure::Failure;
use super::partner::actor;

/// A store error as a failure: a taken name is a usage mistake too.
fn store_failure(e: fedge::store::StoreError) -> Failure {
    if e.is_usage() || matches!(e, fedge::store::StoreError::Conflict(_)) {
        Failure::usage(e.to_string())
    } else {
        Failure::runtime(e.to_string())
    }
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add an account: prints its API token and a one-time console password.
    Add {
        /// operator (everything), viewer (read-only) or partner (one partner's contact).
        #[arg(long)]
        role: String,
        /// For --role partner: one of the partner's SIP domains.
        #[arg(long, value_name = "DOMAIN")]
        partner: Option<String>,
        name: String,
    },
    /// List accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: its tokens and console sessions stop working at once.
    Disable {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Enable a disabled account again.
    Enable { name: String },
    /// New one-time console password and API token (earlier ones stop working).
    Reset { name: String },
    /// Activate an account requested by an FPA submission.
    Activate { name: String },
    /// Issue an extra API token.
    Token {
        name: String,
        #[arg(long, default_value = "cli")]
        label: String,
        /// Lifetime (e.g. 90d, 12h); without it the token lives until the
        /// account is reset or disabled.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
    },
}

fn print_credentials(c: &Credentials, what: &str) {
    println!("{what} {} ({})", c.account.name, c.account.role);
    println!("API token: {}", c.token);
    println!("  use it as: Authorization: Bearer <token> (shown once; keep it secret)");
    if let Some(p) = &c.password {
        println!("one-time console password: {p}");
        println!("  log in to the console with it; it must be changed at first login");
    }
}

fn line(a: &Account) -> String {
    format!(
        "{:<32} {:<8} {:<10} {:<20} created {} by {}{}",
        a.name,
        a.role.as_str(),
        a.state.as_str(),
        a.partner_id.as_deref().unwrap_or("-"),
        a.created_at,
        a.created_by,
        if a.must_change_password && a.state == AccountState::Active {
            "  (password to change)"
        } else {
            ""
        }
    )
}

pub async fn run(cmd: UserCmd, store: &Store) -> Result<(), Failure> {
    let by = actor(&None);
    match cmd {
        UserCmd::Add {
            role,
            partner,
            name,
        } => {
            let role: Role = role.parse().map_err(|e| Failure::usage(format!("{e}")))?;
            let partner_id = match (&role, partner) {
                (Role::Partner, None) => {
                    return Err(Failure::usage(
                        "--role partner needs --partner DOMAIN (one of the partner's domains)",
                    ));
                }
                (Role::Partner, Some(d)) => {
                    Some(store.partner_by_domain(&d).await.map_err(store_failure)?.id)
                }
                (_, Some(_)) => {
                    return Err(Failure::usage(format!(
                        "--partner is for --role partner only, not {role}"
                    )));
                }
                (_, None) => None,
            };
            let c = store
                .add_account(&name, role, partner_id.as_deref(), &by)
                .await
                .map_err(store_failure)?;
            print_credentials(&c, "added");
            Ok(())
        }
        UserCmd::List { json } => {
            let all = store.accounts().await.map_err(store_failure)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else if all.is_empty() {
                println!(
                    "no accounts yet; create the first operator: fedge user add --role operator NAME"
                );
            } else {
                for a in &all {
                    println!("{}", line(a));
                }
            }
            Ok(())
        }
        UserCmd::Disable { name, reason } => {
            if reason.trim().is_empty() {
                return Err(Failure::usage("--reason must say why"));
            }
            exists(store, &name).await?;
            let a = store
                .set_account_state(&name, AccountState::Disabled, &by, Some(&reason))
                .await
                .map_err(store_failure)?;
            println!(
                "disabled {}: its tokens and sessions stop working now",
                a.name
            );
            Ok(())
        }
        UserCmd::Enable { name } => {
            let a = exists(store, &name).await?;
            if a.state == AccountState::Requested {
                return Err(Failure::usage(format!(
                    "{name} is a requested account: use fedge user activate {name}"
                )));
            }
            store
                .set_account_state(&name, AccountState::Active, &by, None)
                .await
                .map_err(store_failure)?;
            println!("enabled {name}");
            Ok(())
        }
        UserCmd::Reset { name } => {
            exists(store, &name).await?;
            let c = store
                .issue_credentials(&name, &by, "reset")
                .await
                .map_err(store_failure)?;
            print_credentials(&c, "reset");
            Ok(())
        }
        UserCmd::Activate { name } => {
            let a = exists(store, &name).await?;
            if a.state != AccountState::Requested {
                return Err(Failure::usage(format!(
                    "{name} is {}, not requested: use fedge user reset or enable",
                    a.state
                )));
            }
            let c = store
                .issue_credentials(&name, &by, "activate")
                .await
                .map_err(store_failure)?;
            print_credentials(&c, "activated");
            Ok(())
        }
        UserCmd::Token {
            name,
            label,
            expires,
        } => {
            exists(store, &name).await?;
            let lifetime = expires
                .map(time::Duration::try_from)
                .transpose()
                .map_err(|_| Failure::usage("--expires is too far ahead"))?;
            let token = store
                .issue_token(&name, &label, lifetime, &by)
                .await
                .map_err(store_failure)?;
            println!("API token for {name} ({label}): {token}");
            println!("  use it as: Authorization: Bearer <token> (shown once; keep it secret)");
            Ok(())
        }
    }
}

/// The account `name`, or a one-line usage failure.
async fn exists(store: &Store, name: &str) -> Result<Account, Failure> {
    store
        .account(name)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| Failure::usage(format!("no account named {name} (see fedge user list)")))
}
