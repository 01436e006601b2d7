//! `fedge --server URL cvi ...`: the CVI commands through the admin API
//! (enrol, withdraw, show, meeting create/show, status, drain), printing
//! what they print on the database.
//!
//! Owns the mapping of each command to its API request. It never opens
//! the database; the acting account is the token's, so `--actor` is refused.

use serde_json::{Value, json};

use super::super::failure::Failure;
use super::super::remote::{Remote, refusal, seg};
use super::{CviCmd, EnrolArgs, MeetingCmd, print_drain, print_status};

fn no_actor(a: &Option<String>) -> Result<(), Failure> {
    match a {
        Some(_) => Err(Failure::usage(
            "--actor does not apply with --server: the token's account is the actor",
        )),
        None => Ok(()),
    }
}

fn pretty(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs a CVI command through the API.
pub fn remote(cmd: CviCmd, api: &Remote) -> Result<(), Failure> {
    match cmd {
        CviCmd::Enrol(a) => enrol(api, &a),
        CviCmd::Withdraw { email, actor } => {
            no_actor(&actor)?;
            let o = api.send::<Value>(
                reqwest::Method::DELETE,
                &format!("/api/v1/cvi/organisers/{}", seg(email.trim())),
                None,
            )?;
            println!(
                "{} withdrawn from CVI at {}; their meetings can no longer be joined",
                o["email"].as_str().unwrap_or(&email),
                o["withdrawn_at"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        CviCmd::Show { email, json } => {
            let all = api.get("/api/v1/cvi/organisers")?;
            let want = email.trim().to_ascii_lowercase();
            let o = all
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["email"] == want.as_str())
                .ok_or_else(|| Failure::usage(format!("{email} is not enrolled for CVI")))?;
            if json {
                pretty(o);
            } else {
                let state = match o["withdrawn_at"].as_str() {
                    Some(w) => format!("withdrawn {w}"),
                    None => "enrolled".into(),
                };
                let s = |k: &str| o[k].as_str().unwrap_or_default().to_string();
                println!(
                    "{}: {state} ({}, {}; enrolled {} by {})",
                    s("email"),
                    s("org_name"),
                    s("ods_code"),
                    s("enrolled_at"),
                    s("enrolled_by")
                );
            }
            Ok(())
        }
        CviCmd::Meeting { cmd } => meeting(api, cmd),
        CviCmd::Status { json } => print_status(&api.get("/api/v1/cvi")?, json),
        CviCmd::Drain { off } => {
            let v = api.post(&format!("/api/v1/cvi/drain?on={}", !off), &json!({}))?;
            print_drain(v["draining"] == true, &v["live"]);
            Ok(())
        }
    }
}

fn enrol(api: &Remote, a: &EnrolArgs) -> Result<(), Failure> {
    no_actor(&a.actor)?;
    let (source, csv) = match &a.csv {
        Some(path) => (
            path.display().to_string(),
            Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?,
            ),
        ),
        None => ("--email".to_string(), None),
    };
    let body = json!({
        "org": a.org, "ods": a.ods, "teams_enabled": a.teams_enabled,
        "emails": a.emails, "csv": csv, "partial": a.partial,
    });
    let (status, v) = api.exchange(reqwest::Method::POST, "/api/v1/cvi/organisers", Some(&body))?;
    let rows = if (200..300).contains(&status) {
        &v["errors"]
    } else {
        &v["rows"]
    };
    for r in rows.as_array().into_iter().flatten() {
        let (line, what) = (&r["line"], r["error"].as_str().unwrap_or_default());
        if a.csv.is_some() {
            eprintln!("{source}: line {line}: {what}");
        } else {
            eprintln!("--email #{line}: {what}");
        }
    }
    if !(200..300).contains(&status) {
        return Err(refusal(status, &v));
    }
    let enrolled = v["enrolled"].as_array().cloned().unwrap_or_default();
    if rows.as_array().is_some_and(|r| !r.is_empty()) {
        eprintln!(
            "{source}: {} bad row(s) skipped (--partial)",
            rows.as_array().map_or(0, Vec::len)
        );
    }
    for e in &enrolled {
        println!(
            "enrolled {} ({}, {})",
            e.as_str().unwrap_or_default(),
            a.org.trim(),
            a.ods.trim().to_ascii_uppercase()
        );
    }
    println!("{} organiser(s) enrolled for CVI", enrolled.len());
    Ok(())
}

fn meeting(api: &Remote, cmd: MeetingCmd) -> Result<(), Failure> {
    match cmd {
        MeetingCmd::Create {
            organiser,
            subject,
            public_subject,
            expires,
            json,
        } => {
            let body = json!({
                "organiser": organiser, "subject": subject,
                "public_subject": public_subject, "expires": expires,
            });
            let m = api.post("/api/v1/cvi/meetings", &body)?;
            if json {
                let v = json!({
                    "meeting": {
                        "conference_id": m["conference_id"], "organiser": m["organiser"],
                        "subject": m["subject"], "subject_public": m["subject_public"],
                        "created_at": m["created_at"], "expires_at": m["expires_at"],
                    },
                    "dial": m["dial"], "direct": m["direct"], "instructions": m["instructions"],
                });
                pretty(&v);
            } else {
                print!("{}", m["invite"].as_str().unwrap_or_default());
            }
            Ok(())
        }
        MeetingCmd::Show { id, json } => {
            let id: String = id.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let m = api.get(&format!("/api/v1/cvi/meetings/{}", seg(&id)))?;
            let s = |k: &str| m[k].as_str().map(str::to_string);
            let state = s("state").unwrap_or_default();
            if json {
                let v = json!({
                    "meeting": {
                        "conference_id": m["conference_id"], "organiser": m["organiser"],
                        "subject": m["subject"], "subject_public": m["subject_public"],
                        "created_at": m["created_at"], "expires_at": m["expires_at"],
                    },
                    "state": state,
                });
                pretty(&v);
            } else {
                println!(
                    "{} ({}): {state}; organiser {}, created {}, expires {}",
                    s("conference_id").unwrap_or_default(),
                    s("subject").unwrap_or_else(|| "no subject".into()),
                    s("organiser").unwrap_or_default(),
                    s("created_at").unwrap_or_default(),
                    s("expires_at").unwrap_or_else(|| "never".into())
                );
            }
            Ok(())
        }
    }
}
