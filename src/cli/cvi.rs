//! `fedge cvi ...`: the local administrator's commands for CVI gateway
//! mode. Enrolment and meetings are changes to the store (committed before
//! success is printed); `status` and `drain` talk to the running edge
//! through its admin listener.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use fedge::config::Config;
use fedge::cvi::enrol::{Enrolment, RowError, check_emails, check_org, check_rows, parse_csv};
use fedge::cvi::meetings::{instructions_url, invite_block, new_conference_id};
use fedge::store::Store;
use serde_json::json;

use super::common::with_store;
use super::failure::Failure;
use super::partner::{actor, store_failure};

mod remote;
pub use self::remote::remote;

#[derive(Subcommand, Debug)]
pub enum CviCmd {
    /// Enrol meeting organisers (by --email, or a CSV file with one column
    /// headed EmailAddress). Any bad row changes nothing unless --partial.
    Enrol(EnrolArgs),
    /// End an organiser's enrolment: their meetings can no longer be joined.
    Withdraw {
        #[arg(long)]
        email: String,
        #[arg(long)]
        actor: Option<String>,
    },
    /// Show an organiser's enrolment.
    Show {
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Meetings and their VTC conference IDs.
    Meeting {
        #[command(subcommand)]
        cmd: MeetingCmd,
    },
    /// The running gateway's calls, capacity and counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stop taking new gateway calls (calls up finish); --off resumes.
    Drain {
        #[arg(long)]
        off: bool,
    },
}

#[derive(Args, Debug)]
pub struct EnrolArgs {
    /// The organisation's name.
    #[arg(long)]
    org: String,
    /// The organisation's ODS code.
    #[arg(long)]
    ods: String,
    /// Confirms that Microsoft Teams is in these users' policy.
    #[arg(long)]
    teams_enabled: bool,
    /// An organiser's address (repeat for several).
    #[arg(
        long = "email",
        value_name = "ADDRESS",
        required_unless_present = "csv"
    )]
    emails: Vec<String>,
    /// A CSV file with exactly one column, headed EmailAddress.
    #[arg(long, value_name = "FILE", conflicts_with = "emails")]
    csv: Option<PathBuf>,
    /// Enrol the good rows even when some are bad (the bad ones are listed).
    #[arg(long)]
    partial: bool,
    #[arg(long)]
    actor: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum MeetingCmd {
    /// Give an enrolled organiser's meeting a unique conference ID and print
    /// the block for its invitation.
    Create {
        /// The organiser's address (enrolled).
        #[arg(long)]
        organiser: String,
        #[arg(long)]
        subject: Option<String>,
        /// Show the subject on the public dialling instructions page
        /// (anyone with the ID can read that page; hidden by default).
        #[arg(long, requires = "subject")]
        public_subject: bool,
        /// When the ID stops working: a duration from now (2h, 1d) or an
        /// RFC 3339 time; default: [cvi] meeting_lifetime after now.
        #[arg(long, value_name = "DURATION|RFC3339-TIME")]
        expires: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a meeting by its conference ID.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// The end of a meeting created without `--expires`: `lifetime` from now.
fn default_expiry(lifetime: std::time::Duration) -> Result<String, Failure> {
    let end = time::OffsetDateTime::now_utc()
        + time::Duration::try_from(lifetime)
            .map_err(|e| Failure::usage(format!("[cvi] meeting_lifetime: {e}")))?;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    end.format(&fmt)
        .map_err(|e| Failure::usage(format!("[cvi] meeting_lifetime: {e}")))
}

/// The rows to enrol, or every reason why not.
fn enrolments(a: &EnrolArgs, domains: &[String]) -> Result<Vec<Enrolment>, Failure> {
    check_org(&a.org, &a.ods, a.teams_enabled).map_err(|e| Failure::usage(e.to_string()))?;
    let (source, good, bad): (String, Vec<(usize, String)>, Vec<RowError>) = match &a.csv {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            let rows =
                parse_csv(&text).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            if rows.is_empty() {
                return Err(Failure::usage(format!(
                    "{}: no addresses under the EmailAddress header",
                    path.display()
                )));
            }
            let (good, bad) = check_rows(&rows, domains);
            (path.display().to_string(), good, bad)
        }
        None => {
            let (good, bad) = check_emails(&a.emails, domains);
            ("--email".to_string(), good, bad)
        }
    };
    if !bad.is_empty() {
        for b in &bad {
            if a.csv.is_some() {
                eprintln!("{source}: {b}");
            } else {
                eprintln!("--email #{}: {}", b.line, b.what);
            }
        }
        if !a.partial || good.is_empty() {
            return Err(Failure::usage(format!(
                "{source}: {} bad row(s); nothing enrolled{}",
                bad.len(),
                if good.is_empty() {
                    ""
                } else {
                    " (--partial enrols the good rows)"
                }
            )));
        }
        eprintln!("{source}: {} bad row(s) skipped (--partial)", bad.len());
    }
    Ok(good
        .into_iter()
        .map(|(_, email)| Enrolment {
            email,
            org_name: a.org.trim().to_string(),
            ods_code: a.ods.trim().to_ascii_uppercase(),
        })
        .collect())
}

pub async fn run(cmd: CviCmd, cfg: &Config, store: &Store) -> Result<(), Failure> {
    let dialling = fedge::server::dialling(cfg);
    match cmd {
        CviCmd::Enrol(a) => {
            let rows = enrolments(&a, &cfg.cvi.organiser_domains)?;
            let n = store
                .cvi_enrol(&rows, &actor(&a.actor))
                .await
                .map_err(store_failure)?;
            for r in &rows {
                println!("enrolled {} ({}, {})", r.email, r.org_name, r.ods_code);
            }
            println!("{n} organiser(s) enrolled for CVI");
            Ok(())
        }
        CviCmd::Withdraw { email, actor: who } => {
            let o = store
                .cvi_withdraw(&email, &actor(&who))
                .await
                .map_err(store_failure)?;
            println!(
                "{} withdrawn from CVI at {}; their meetings can no longer be joined",
                o.email,
                o.withdrawn_at.unwrap_or_default()
            );
            Ok(())
        }
        CviCmd::Show { email, json } => {
            let o = store
                .cvi_organiser(&email)
                .await
                .map_err(store_failure)?
                .ok_or_else(|| Failure::usage(format!("{email} is not enrolled for CVI")))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
            } else {
                let state = match &o.withdrawn_at {
                    Some(w) => format!("withdrawn {w}"),
                    None => "enrolled".into(),
                };
                println!(
                    "{}: {state} ({}, {}; enrolled {} by {})",
                    o.email, o.org_name, o.ods_code, o.enrolled_at, o.enrolled_by
                );
            }
            Ok(())
        }
        CviCmd::Meeting {
            cmd:
                MeetingCmd::Create {
                    organiser,
                    subject,
                    public_subject,
                    expires,
                    json,
                },
        } => {
            let expires = match expires {
                Some(raw) => super::common::parse_expiry(&raw, time::OffsetDateTime::now_utc())?,
                None => default_expiry(cfg.cvi.meeting_lifetime)?,
            };
            let subject = subject
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            let mut rng = rand::rng();
            let m = store
                .cvi_create_meeting(
                    &actor(&None),
                    &organiser,
                    subject.as_deref(),
                    public_subject,
                    Some(&expires),
                    || new_conference_id(&mut rng),
                )
                .await
                .map_err(store_failure)?;
            if json {
                let v = json!({
                    "meeting": m,
                    "dial": format!("{}@{}", dialling.reception, dialling.domain),
                    "direct": format!("{}@{}", m.conference_id, dialling.domain),
                    "instructions": instructions_url(&dialling, &m.conference_id),
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", invite_block(&dialling, &m.conference_id));
            }
            Ok(())
        }
        CviCmd::Meeting {
            cmd: MeetingCmd::Show { id, json },
        } => {
            let id: String = id.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let (m, enrolled) = store
                .cvi_meeting(&id)
                .await
                .map_err(store_failure)?
                .ok_or_else(|| Failure::usage(format!("no meeting has conference ID {id}")))?;
            let state = match m.joinable(
                enrolled,
                &fedge::store::now_rfc3339(),
                cfg.cvi.meeting_lifetime,
            ) {
                Ok(()) => "can be joined",
                Err(why) => why.as_str(),
            };
            if json {
                let v = json!({"meeting": m, "state": state});
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!(
                    "{} ({}): {state}; organiser {}, created {}, expires {}",
                    m.conference_id,
                    m.subject.as_deref().unwrap_or("no subject"),
                    m.organiser,
                    m.created_at,
                    m.ends_at(cfg.cvi.meeting_lifetime)
                        .unwrap_or_else(|| "never".into())
                );
            }
            Ok(())
        }
        CviCmd::Status { .. } | CviCmd::Drain { .. } => {
            Err(Failure::runtime("status and drain ask the running edge"))
        }
    }
}

/// Runs `cmd`: with the store, or through the admin listener for the
/// commands that ask the running edge.
pub fn command(cmd: CviCmd, cfg: &Config) -> Result<(), Failure> {
    if needs_store(&cmd) {
        let c = cfg.clone();
        with_store(cfg, |store| async move { run(cmd, &c, &store).await })
    } else {
        // The running edge's gateway is off: its configuration's matter,
        // exit code 2 (1 is for failures).
        admin(cmd, cfg).map_err(|f| {
            if f.msg.contains("CVI gateway is not enabled") {
                Failure::usage(f.msg)
            } else {
                f
            }
        })
    }
}

/// The commands that need no store: they ask the running edge.
fn needs_store(cmd: &CviCmd) -> bool {
    !matches!(cmd, CviCmd::Status { .. } | CviCmd::Drain { .. })
}

/// `status` and `drain`, through the admin listener (authenticated as
/// `fedge media` is).
pub fn admin(cmd: CviCmd, cfg: &Config) -> Result<(), Failure> {
    use super::media::call;
    match cmd {
        CviCmd::Status { json } => print_status(&call(cfg, "GET", "/cvi")?, json),
        CviCmd::Drain { off } => {
            let path = if off {
                "/cvi/drain?on=false"
            } else {
                "/cvi/drain"
            };
            let v = call(cfg, "POST", path)?;
            print_drain(v["draining"] == true, &v["calls"]);
            Ok(())
        }
        _ => Err(Failure::runtime("not an admin command")),
    }
}

/// The gateway's status as `fedge cvi status` prints it.
fn print_status(v: &serde_json::Value, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let t = &v["totals"];
    println!(
        "{} of {} call(s), {} media port pair(s) in use{}",
        v["calls"],
        v["max_calls"],
        v["ports_in_use"],
        if v["draining"] == true {
            "; draining"
        } else {
            ""
        }
    );
    println!(
        "since start: {} call(s), {} connected, {} test call(s), {} refused full, {} refused draining, {} ID(s) not found, {} meeting service failure(s)",
        t["calls"],
        t["connected"],
        t["test_calls"],
        t["refused_full"],
        t["refused_draining"],
        t["not_found"],
        t["connector_failed"]
    );
    Ok(())
}

/// What `fedge cvi drain` prints.
fn print_drain(draining: bool, calls: &serde_json::Value) {
    if draining {
        println!("CVI gateway draining: no new calls; {calls} call(s) still up");
    } else {
        println!("CVI gateway taking calls again");
    }
}
