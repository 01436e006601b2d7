//! `fedge --server URL partner ...`: the partner commands through the
//! admin API, printing what they print on the database. Partners are named
//! by a domain, as on the database; the API's id is looked up first.
//!
//! Owns the mapping of each command to its API request. It never opens
//! the database; the acting account is the token's, so `--actor` is refused.

use std::collections::BTreeMap;

use fedge::model::partner::{AuditEntry, Partner};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::failure::Failure;
use super::super::remote::{Remote, seg};
use super::{AddArgs, PartnerCmd, UpdateArgs, VerbArgs, ca_pin_arg, print_history, print_list};
use super::{print_partner, to_json};

fn parse<T: for<'de> Deserialize<'de>>(v: Value, what: &str) -> Result<T, Failure> {
    serde_json::from_value(v)
        .map_err(|e| Failure::runtime(format!("the API's {what} is not what this CLI reads: {e}")))
}

fn no_actor(a: &Option<String>) -> Result<(), Failure> {
    match a {
        Some(_) => Err(Failure::usage(
            "--actor does not apply with --server: the token's account is the actor",
        )),
        None => Ok(()),
    }
}

/// Runs a partner command through the API.
pub fn remote(cmd: PartnerCmd, api: &Remote) -> Result<(), Failure> {
    match cmd {
        PartnerCmd::List { state, json } => {
            let path = match &state {
                Some(s) => format!("/api/v1/partners?state={}", seg(s)),
                None => "/api/v1/partners".to_string(),
            };
            let partners: Vec<Partner> = parse(api.get(&path)?, "partner list")?;
            print_list(&partners, json)
        }
        PartnerCmd::Show { domain, json } => {
            let id = api.partner_id(&domain)?;
            let p: Partner = parse(
                api.get(&format!("/api/v1/partners/{}", seg(&id)))?,
                "partner",
            )?;
            if json {
                println!("{}", to_json(&p)?);
            } else {
                print_partner(&p);
            }
            Ok(())
        }
        PartnerCmd::History { domain, json } => {
            let id = api.partner_id(&domain)?;
            let v = api.get(&format!("/api/v1/partners/{}/history", seg(&id)))?;
            let p: Partner = parse(v["partner"].clone(), "partner")?;
            let trail: Vec<AuditEntry> = parse(v["trail"].clone(), "history")?;
            if json {
                let v = json!({ "partner": p.id, "domains": p.details.domains, "entries": trail });
                println!("{}", to_json(&v)?);
            } else {
                print_history(&p, &trail);
            }
            Ok(())
        }
        PartnerCmd::AgreementSent(v) => verb(api, "agreement-sent", v, false),
        PartnerCmd::AgreementSigned(v) => verb(api, "agreement-signed", v, false),
        PartnerCmd::Approve(v) => verb(api, "approve", v, false),
        PartnerCmd::Enable(e) => verb(api, "enable", e.verb, e.skip_im_test),
        PartnerCmd::Suspend(v) => verb(api, "suspend", v, false),
        PartnerCmd::Reinstate(v) => verb(api, "reinstate", v, false),
        PartnerCmd::Revoke(v) => verb(api, "revoke", v, false),
        PartnerCmd::Update(u) => update(api, u),
        PartnerCmd::Add(a) => add(api, *a),
    }
}

fn verb(api: &Remote, name: &str, a: VerbArgs, skip_im_test: bool) -> Result<(), Failure> {
    no_actor(&a.actor)?;
    let id = api.partner_id(&a.domain)?;
    let body = json!({ "reason": a.reason, "skip_im_test": skip_im_test });
    let v = api.post(&format!("/api/v1/partners/{}/{name}", seg(&id)), &body)?;
    let p: Partner = parse(v["partner"].clone(), "partner")?;
    println!(
        "partner {} ({}): {} -> {}",
        p.name(),
        p.details.org_name,
        v["from"].as_str().unwrap_or("?"),
        p.state
    );
    Ok(())
}

fn update(api: &Remote, u: UpdateArgs) -> Result<(), Failure> {
    no_actor(&u.actor)?;
    let mut set: BTreeMap<String, Option<String>> = BTreeMap::new();
    for s in &u.set {
        let (f, v) = s
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--set {s:?}: expected FIELD=VALUE")))?;
        set.insert(f.trim().to_string(), Some(v.to_string()));
    }
    for f in &u.unset {
        set.insert(f.trim().to_string(), None);
    }
    if let Some(pin) = &u.ca_pin {
        set.insert("ca_pin".into(), Some(ca_pin_arg(pin)?));
    }
    let id = api.partner_id(&u.domain)?;
    let body = json!({
        "set": set,
        "add_domains": u.add_domain,
        "remove_domains": u.remove_domain,
        "reason": u.reason,
    });
    let v = api.send(
        reqwest::Method::PATCH,
        &format!("/api/v1/partners/{}", seg(&id)),
        Some(&body),
    )?;
    let p: Partner = parse(v["partner"].clone(), "partner")?;
    println!("partner {} ({}) updated", p.name(), p.details.org_name);
    Ok(())
}

fn add(api: &Remote, a: AddArgs) -> Result<(), Failure> {
    no_actor(&a.actor)?;
    let Some(path) = &a.from_fpa else {
        return Err(Failure::usage(
            "with --server, partner add takes the partner from --from-fpa FILE",
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read FPA {}: {e}", path.display())))?;
    let fpa: Value = serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "{} is not a valid FPA (not JSON: {e}); nothing was written",
            path.display()
        ))
    })?;
    let ca_pin = a.ca_pin.as_deref().map(ca_pin_arg).transpose()?;
    let body = json!({
        "fpa": fpa,
        "state": a.state,
        "reason": a.reason,
        "address": a.address,
        "ca_pin": ca_pin,
        "comment": a.comment,
    });
    let v = api.post("/api/v1/partners", &body)?;
    let p: Partner = parse(v["partner"].clone(), "partner")?;
    println!(
        "partner {} ({}) added as {} [{}]",
        p.details.domains.join(", "),
        p.details.org_name,
        p.state,
        p.id
    );
    Ok(())
}
