//! `fedge partner ...`: the operator's commands for the partner registry.
//!
//! Owns the operator contract (names, flags, output and exit codes). Every
//! change is committed by the store before success is printed; mistakes
//! are one line and exit code 2.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use fedge::federation::fpa;
use fedge::model::partner::{
    AuditEntry, Partner, PartnerDetails, PartnerState, Verb, canonical_pin, hex,
};
use fedge::store::{Change, Store};

use super::failure::Failure;

mod remote;
pub use self::remote::remote;

#[derive(Subcommand, Debug)]
pub enum PartnerCmd {
    /// Add a partner: a new request, or an existing federation with --state and --reason.
    Add(Box<AddArgs>),
    /// requested -> agreement_sent: the FPA has been sent to the organisation.
    #[command(name = "agreement-sent")]
    AgreementSent(VerbArgs),
    /// agreement_sent -> agreement_signed: the signed FPA has come back.
    #[command(name = "agreement-signed")]
    AgreementSigned(VerbArgs),
    /// agreement_signed -> approved: the FPA is approved.
    Approve(VerbArgs),
    /// approved -> enabled: traffic may cross (needs a passed IM test).
    Enable(EnableArgs),
    /// enabled -> suspended: traffic stops at once (--reason required).
    Suspend(VerbArgs),
    /// suspended -> enabled (--reason required).
    Reinstate(VerbArgs),
    /// any -> revoked: de-federation, final (--reason required).
    Revoke(VerbArgs),
    /// Change a partner's details (audited).
    Update(UpdateArgs),
    /// List partners.
    List {
        /// Only partners in this state.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one partner, named by any of its domains.
    Show {
        domain: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a partner's audit trail.
    History {
        domain: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Read the partner from a Federation Partnership Agreement (JSON, see fpa-schemas/).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["domains", "org", "edge_fqdn", "reg_number", "org_address", "usage", "spoc_name", "spoc_email", "spoc_phone", "tech_name", "tech_email", "tech_phone", "tech_sip", "ig_level", "ig_expires"])]
    from_fpa: Option<PathBuf>,
    /// A SIP domain of the partner (repeat for several).
    #[arg(long = "domain", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// The partner's Access Edge FQDN ("allowed partner server").
    #[arg(long)]
    edge_fqdn: Option<String>,
    /// Organisation name.
    #[arg(long)]
    org: Option<String>,
    /// Connect to HOST:PORT instead of resolving the edge FQDN (labs).
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
    /// Import in this state instead of `requested` (needs --reason).
    #[arg(long)]
    state: Option<String>,
    #[arg(long)]
    reason: Option<String>,
    /// Who makes the change (default: $USER).
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    reg_number: Option<String>,
    #[arg(long)]
    org_address: Option<String>,
    /// The partner's statement of intended use.
    #[arg(long)]
    usage: Option<String>,
    #[arg(long)]
    spoc_name: Option<String>,
    #[arg(long)]
    spoc_email: Option<String>,
    #[arg(long)]
    spoc_phone: Option<String>,
    #[arg(long)]
    tech_name: Option<String>,
    #[arg(long)]
    tech_email: Option<String>,
    #[arg(long)]
    tech_phone: Option<String>,
    /// The technical contact's SIP address.
    #[arg(long)]
    tech_sip: Option<String>,
    /// Information governance certification level.
    #[arg(long)]
    ig_level: Option<String>,
    /// IG certification expiry, YYYY-MM-DD.
    #[arg(long)]
    ig_expires: Option<String>,
    #[arg(long)]
    comment: Option<String>,
    /// Pin the CA the partner's edge certificate must chain to: a CA
    /// certificate file (PEM or DER) or its SPKI hash (sha256:HEX);
    /// comma-separated for a rollover. Needs --edge-fqdn.
    #[arg(long, value_name = "CA-CERT|sha256:HEX")]
    ca_pin: Option<String>,
}

#[derive(Args, Debug)]
pub struct VerbArgs {
    /// Any of the partner's domains.
    domain: String,
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    actor: Option<String>,
}

#[derive(Args, Debug)]
pub struct EnableArgs {
    #[command(flatten)]
    verb: VerbArgs,
    /// Enable without a passed onboarding IM test (needs --reason).
    #[arg(long)]
    skip_im_test: bool,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    domain: String,
    /// Set a field, e.g. --set edge_fqdn=sip.partner.example (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    /// Clear a field (repeatable).
    #[arg(long = "unset", value_name = "FIELD")]
    unset: Vec<String>,
    #[arg(long = "add-domain", value_name = "DOMAIN")]
    add_domain: Vec<String>,
    #[arg(long = "remove-domain", value_name = "DOMAIN")]
    remove_domain: Vec<String>,
    /// Pin the CA the edge certificate must chain to (a CA certificate file
    /// or sha256:HEX, comma-separated); `--unset ca_pin` removes the pin.
    #[arg(long, value_name = "CA-CERT|sha256:HEX")]
    ca_pin: Option<String>,
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    actor: Option<String>,
}

/// Who is making a change: --actor, else the login name, else the uid.
pub(crate) fn actor(a: &Option<String>) -> String {
    a.clone()
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .or_else(login_from_uid)
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(unix)]
fn login_from_uid() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid.to_string()).then(|| name.to_string())
    });
    Some(name.unwrap_or_else(|| format!("uid:{uid}")))
}

#[cfg(not(unix))]
fn login_from_uid() -> Option<String> {
    None
}

pub(crate) fn store_failure(e: fedge::store::StoreError) -> Failure {
    if e.is_usage() {
        Failure::usage(e.to_string())
    } else {
        Failure::runtime(e.to_string())
    }
}

/// Runs a partner command against the store; after a change, asks the
/// running edge (its admin listener at `admin`) to enforce it at once.
pub async fn run(
    cmd: PartnerCmd,
    store: &Store,
    admin: &super::notify::AdminTarget,
) -> Result<(), Failure> {
    let changes = !matches!(
        cmd,
        PartnerCmd::List { .. } | PartnerCmd::Show { .. } | PartnerCmd::History { .. }
    );
    apply(cmd, store).await?;
    if changes {
        super::notify::registry_changed(admin, store).await;
    }
    Ok(())
}

async fn apply(cmd: PartnerCmd, store: &Store) -> Result<(), Failure> {
    match cmd {
        PartnerCmd::Add(a) => add(*a, store).await,
        PartnerCmd::AgreementSent(v) => verb(Verb::AgreementSent, v, store).await,
        PartnerCmd::AgreementSigned(v) => verb(Verb::AgreementSigned, v, store).await,
        PartnerCmd::Approve(v) => verb(Verb::Approve, v, store).await,
        PartnerCmd::Enable(e) => verb_with(Verb::Enable, e.verb, e.skip_im_test, store).await,
        PartnerCmd::Suspend(v) => verb(Verb::Suspend, v, store).await,
        PartnerCmd::Reinstate(v) => verb(Verb::Reinstate, v, store).await,
        PartnerCmd::Revoke(v) => verb(Verb::Revoke, v, store).await,
        PartnerCmd::Update(u) => update(u, store).await,
        PartnerCmd::List { state, json } => list(state, json, store).await,
        PartnerCmd::Show { domain, json } => {
            let p = store
                .partner_by_domain(&domain)
                .await
                .map_err(store_failure)?;
            if json {
                println!("{}", to_json(&p)?);
            } else {
                print_partner(&p);
            }
            Ok(())
        }
        PartnerCmd::History { domain, json } => {
            let (p, trail) = store.history(&domain).await.map_err(store_failure)?;
            if json {
                let v = serde_json::json!({ "partner": p.id, "domains": p.details.domains, "entries": trail });
                println!("{}", to_json(&v)?);
            } else {
                print_history(&p, &trail);
            }
            Ok(())
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(v)
        .map_err(|e| Failure::runtime(format!("cannot render JSON: {e}")))
}

async fn add(a: AddArgs, store: &Store) -> Result<(), Failure> {
    let state: PartnerState = match &a.state {
        Some(s) => s
            .parse::<PartnerState>()
            .map_err(|e| Failure::usage(e.to_string()))?,
        None => PartnerState::Requested,
    };
    let mut details = match &a.from_fpa {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read FPA {}: {e}", path.display())))?;
            fpa::parse(&text).map_err(|violations| {
                let n = violations.len();
                let lines: Vec<String> = violations
                    .iter()
                    .map(|v| format!("{}: {v}", path.display()))
                    .collect();
                Failure::usage(format!(
                    "{} is not a valid FPA ({n} violation{}); nothing was written\n{}",
                    path.display(),
                    if n == 1 { "" } else { "s" },
                    lines.join("\n")
                ))
            })?
        }
        None => {
            if a.domains.is_empty() {
                return Err(Failure::usage(
                    "partner add needs --domain (at least one) or --from-fpa FILE",
                ));
            }
            let org = a
                .org
                .clone()
                .ok_or_else(|| Failure::usage("partner add needs --org NAME"))?;
            let mut d = PartnerDetails {
                org_name: org,
                domains: a.domains.clone(),
                ..PartnerDetails::default()
            };
            for (field, value) in [
                ("edge_fqdn", &a.edge_fqdn),
                ("org_reg_number", &a.reg_number),
                ("org_address", &a.org_address),
                ("usage_statement", &a.usage),
                ("spoc_name", &a.spoc_name),
                ("spoc_email", &a.spoc_email),
                ("spoc_phone", &a.spoc_phone),
                ("tech_name", &a.tech_name),
                ("tech_email", &a.tech_email),
                ("tech_phone", &a.tech_phone),
                ("tech_sip", &a.tech_sip),
                ("ig_level", &a.ig_level),
                ("ig_expires", &a.ig_expires),
            ] {
                d.set(field, value.clone());
            }
            d
        }
    };
    if a.address.is_some() {
        details.address = a.address.clone();
    }
    if let Some(pin) = &a.ca_pin {
        details.ca_pin = Some(ca_pin_arg(pin)?);
    }
    if let Some(c) = &a.comment {
        details.comment = Some(match details.comment.take() {
            Some(prev) => format!("{c}\n{prev}"),
            None => c.clone(),
        });
    }
    let p = store
        .add_partner(details, state, &actor(&a.actor), a.reason.as_deref())
        .await
        .map_err(store_failure)?;
    println!(
        "partner {} ({}) added as {} [{}]",
        p.details.domains.join(", "),
        p.details.org_name,
        p.state,
        p.id
    );
    Ok(())
}

async fn verb(v: Verb, a: VerbArgs, store: &Store) -> Result<(), Failure> {
    verb_with(v, a, false, store).await
}

async fn verb_with(v: Verb, a: VerbArgs, skip_im_test: bool, store: &Store) -> Result<(), Failure> {
    let (p, from) = store
        .apply_verb(
            &a.domain,
            v,
            &actor(&a.actor),
            a.reason.as_deref(),
            skip_im_test,
        )
        .await
        .map_err(store_failure)?;
    println!(
        "partner {} ({}): {} -> {}",
        p.name(),
        p.details.org_name,
        from,
        p.state
    );
    Ok(())
}

async fn update(u: UpdateArgs, store: &Store) -> Result<(), Failure> {
    let mut changes = Vec::new();
    for s in &u.set {
        let (f, v) = s
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--set {s:?}: expected FIELD=VALUE")))?;
        changes.push(Change::Set(f.trim().to_string(), Some(v.to_string())));
    }
    changes.extend(
        u.unset
            .iter()
            .map(|f| Change::Set(f.trim().to_string(), None)),
    );
    if let Some(pin) = &u.ca_pin {
        changes.push(Change::Set("ca_pin".into(), Some(ca_pin_arg(pin)?)));
    }
    changes.extend(u.add_domain.iter().cloned().map(Change::AddDomain));
    changes.extend(u.remove_domain.iter().cloned().map(Change::RemoveDomain));
    let p = store
        .update_partner(&u.domain, &changes, &actor(&u.actor), u.reason.as_deref())
        .await
        .map_err(store_failure)?;
    println!("partner {} ({}) updated", p.name(), p.details.org_name);
    Ok(())
}

/// A `--ca-pin` value as stored: each item a CA certificate file (PEM,
/// first certificate, or DER), pinned by its SPKI SHA-256, or a hash.
fn ca_pin_arg(v: &str) -> Result<String, Failure> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut pins = Vec::new();
    for item in v.split(',').map(str::trim) {
        let path = std::path::Path::new(item);
        if !path.is_file() {
            pins.push(canonical_pin(item).ok_or_else(|| {
                Failure::usage(format!(
                    "--ca-pin {item:?} is neither a CA certificate file nor sha256:<64 hex digits>"
                ))
            })?);
            continue;
        }
        let data = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
        let cert = if data.trim_ascii_start().starts_with(b"-----BEGIN") {
            CertificateDer::pem_slice_iter(&data)
                .next()
                .and_then(Result::ok)
                .ok_or_else(|| {
                    Failure::usage(format!("{} holds no PEM certificate", path.display()))
                })?
        } else {
            CertificateDer::from(data)
        };
        let h = fedge::sip::transport::tls::spki_sha256(&cert)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        pins.push(format!("sha256:{}", hex(&h)));
    }
    Ok(pins.join(","))
}

async fn list(state: Option<String>, json: bool, store: &Store) -> Result<(), Failure> {
    let filter: Option<PartnerState> = state
        .as_deref()
        .map(str::parse::<PartnerState>)
        .transpose()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let partners: Vec<Partner> = store
        .partners()
        .await
        .map_err(store_failure)?
        .into_iter()
        .filter(|p| filter.is_none_or(|s| p.state == s))
        .collect();
    print_list(&partners, json)
}

/// The partner list as `fedge partner list` prints it.
fn print_list(partners: &[Partner], json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", to_json(&partners)?);
        return Ok(());
    }
    let rows: Vec<[String; 5]> = partners
        .iter()
        .map(|p| {
            [
                p.details.domains.join(","),
                p.state.to_string(),
                p.details
                    .edge_fqdn
                    .clone()
                    .unwrap_or_else(|| "(srv)".into()),
                p.federated_at
                    .clone()
                    .map(|t| t[..10.min(t.len())].to_string())
                    .unwrap_or_default(),
                p.details.org_name.clone(),
            ]
        })
        .collect();
    print_table(
        &["DOMAINS", "STATE", "EDGE FQDN", "FEDERATED", "ORGANISATION"],
        &rows,
    );
    Ok(())
}

fn print_table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn print_partner(p: &Partner) {
    let d = &p.details;
    let c = &d.contacts;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("id:               {}", p.id);
    println!("organisation:     {}", d.org_name);
    println!("registration no:  {}", opt(&d.org_reg_number));
    println!("address:          {}", opt(&d.org_address));
    println!("domains:          {}", d.domains.join(", "));
    println!(
        "edge fqdn:        {}",
        d.edge_fqdn
            .clone()
            .unwrap_or_else(|| "- (allowed domain, found by DNS SRV)".into())
    );
    println!("address override: {}", opt(&d.address));
    println!("state:            {}", p.state);
    println!("next:             {}", p.state.next_phrase());
    println!("usage:            {}", opt(&d.usage_statement));
    println!(
        "spoc:             {} <{}> {}",
        opt(&c.spoc_name),
        opt(&c.spoc_email),
        opt(&c.spoc_phone)
    );
    println!(
        "technical:        {} <{}> {} {}",
        opt(&c.tech_name),
        opt(&c.tech_email),
        opt(&c.tech_phone),
        opt(&c.tech_sip)
    );
    println!(
        "ig certification: {} (expires {})",
        opt(&d.ig_level),
        opt(&d.ig_expires)
    );
    println!("requested:        {}", p.requested_at);
    println!("federated:        {}", opt(&p.federated_at));
    println!("suspended:        {}", opt(&p.suspended_at));
    println!("revoked:          {}", opt(&p.revoked_at));
    println!(
        "im test:          {}",
        match (&p.im_test_at, &p.im_test_from) {
            (Some(at), Some(from)) => format!("passed {at} from {from}"),
            _ => "not yet".into(),
        }
    );
    println!(
        "rate limit:       {}",
        d.rate_limit
            .clone()
            .unwrap_or_else(|| "- (the [policy] rate)".into())
    );
    println!(
        "product check:    {}",
        d.product_check.clone().unwrap_or_else(|| "on".into())
    );
    println!(
        "ca pin:           {}",
        d.ca_pin
            .clone()
            .unwrap_or_else(|| "- (any CA in the trust bundle)".into())
    );
    println!("comment:          {}", opt(&d.comment));
}

fn print_history(p: &Partner, trail: &[AuditEntry]) {
    println!(
        "{} ({}) [{}]",
        p.details.domains.join(", "),
        p.details.org_name,
        p.id
    );
    let rows: Vec<[String; 5]> = trail
        .iter()
        .map(|e| {
            let change = match e.from_state {
                Some(f) if f != e.to_state => format!("{f} -> {}", e.to_state),
                _ => e.to_state.to_string(),
            };
            let why = [
                e.reason.clone(),
                e.detail.clone().filter(|_| e.action == "update"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            [e.at.clone(), e.actor.clone(), e.action.clone(), change, why]
        })
        .collect();
    print_table(&["TIME", "ACTOR", "ACTION", "STATE", "REASON"], &rows);
}
