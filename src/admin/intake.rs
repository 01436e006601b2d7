//! FPA intake: a partner's technical contact submits the Federation
//! Partnership Agreement and the partner's edge certificate; a valid
//! submission creates the partner in `requested` state, stores the
//! certificate with its expiry, and requests an account for the contact.
//!
//! Owns the checks of a submission (the FPA schema through
//! `federation::fpa`, the certificate against the edge's trust bundle),
//! the public form's admission (a per-source budget, an hourly total over
//! all sources, a cap on partners awaiting review) and its CSRF tokens.
//! Shared by the public form (`admin::public`) and the API's
//! `POST /api/v1/fpa` ([`submit`]). It never enables, approves or activates
//! anything: operators take the partner and the account on from
//! `requested`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use ring::hmac;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, UnixTime, pem::PemObject as _};
use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use super::auth::ApiError;
use super::state::EdgeState;
use super::throttle::source_key;
use crate::federation::fpa;
use crate::model::partner::PartnerState;
use crate::sip::transport::tls::TlsError;
use crate::store::{PartnerCert, StoreError};

/// The largest certificate PEM accepted (a chain of a few certificates).
pub const MAX_PEM_BYTES: usize = 32 * 1024;
/// Most certificates in the PEM (the edge's own and its intermediates).
const MAX_PEM_CERTS: usize = 5;
/// How long a submission budget lasts.
const BUDGET_WINDOW: Duration = Duration::from_secs(3600);
/// Sources remembered before expired ones are swept.
const BUDGET_SOURCES: usize = 10_000;

/// The field name of the certificate in a submission.
pub const CERT_FIELD: &str = "certificate_pem";

/// One problem with a submission: the field (a JSON pointer into the FPA,
/// or `certificate_pem`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Why a submission was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// The FPA or the certificate has problems, each naming its field.
    Invalid(Vec<FieldError>),
    /// Something else (the database, the intake's own setup).
    Failed(ApiError),
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Failed(e) => e,
            Refusal::Invalid(errs) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                errs.iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

/// What a submitter is told after a valid submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    /// The reference to quote to the home team (the partner's id).
    pub reference: String,
    pub organisation: String,
    pub partner_state: String,
    /// The account requested for the technical contact.
    pub account: String,
    pub account_state: String,
    /// The certificate's expiry (RFC 3339).
    pub certificate_not_after: String,
    pub next: String,
}

/// What the certificate check found in an acceptable certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub not_after: String,
    pub subject: String,
    pub names: Vec<String>,
}

/// The public form's limits (`[public]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Submissions one source (an IPv4 address, an IPv6 /64) may make per
    /// hour, whatever becomes of them.
    pub per_source_hour: u32,
    /// Submissions that record a partner, per hour, from all sources.
    pub total_hour: u32,
    /// Partners in `requested` state above which the form takes nothing.
    pub pending_max: usize,
}

/// Why the public form takes no submission just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// This source has spent its budget; it has one again after this.
    Source(Duration),
    /// All sources together have; the hour ends after this.
    Total(Duration),
    /// This many partners await the home team's review.
    Pending(usize),
}

/// The intake's running state: the trust bundle, the budgets and the key
/// that signs the form's CSRF tokens.
pub struct Intake {
    roots: Result<Arc<RootCertStore>, TlsError>,
    budget: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// The hourly total: when its window started, submissions counted.
    total: Mutex<(Instant, u32)>,
    limits: Limits,
    key: hmac::Key,
}

/// One admitted submission's place in the hourly total: given back when
/// dropped unless [`Admission::recorded`] says the submission recorded a
/// partner.
#[derive(Debug)]
pub struct Admission<'a> {
    intake: &'a Intake,
    keep: bool,
}

impl Admission<'_> {
    /// The submission recorded a partner: it stays counted.
    pub fn recorded(mut self) {
        self.keep = true;
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.keep
            && let Ok(mut t) = self.intake.total.lock()
        {
            t.1 = t.1.saturating_sub(1);
        }
    }
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("trust", &self.roots.as_ref().map(|r| r.len()))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// `roots` is the edge's trust bundle (or why it cannot be read);
    /// `limits` the public form's.
    pub fn new(roots: Result<Arc<RootCertStore>, TlsError>, limits: Limits) -> Intake {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            // No system randomness: a key from the clock and address space
            // still differs per process; tokens then only resist guessing less.
            let seed = format!("{:?}{:p}", Instant::now(), &rng);
            hmac::Key::new(hmac::HMAC_SHA256, seed.as_bytes())
        });
        Intake {
            roots,
            budget: Mutex::new(HashMap::new()),
            total: Mutex::new((Instant::now(), 0)),
            limits,
            key,
        }
    }

    /// Admits one anonymous submission from `source` while `pending`
    /// partners await review: the cap on pending partners first (nothing
    /// spent), then the hourly total (a place reserved, given back unless
    /// the submission records a partner), then the source's budget (spent
    /// whatever becomes of the submission).
    pub fn admit(&self, source: IpAddr, pending: usize) -> Result<Admission<'_>, Busy> {
        if pending >= self.limits.pending_max {
            return Err(Busy::Pending(pending));
        }
        let now = Instant::now();
        let Ok(mut total) = self.total.lock() else {
            return Err(Busy::Total(BUDGET_WINDOW));
        };
        if now.duration_since(total.0) >= BUDGET_WINDOW {
            *total = (now, 0);
        }
        if total.1 >= self.limits.total_hour {
            return Err(Busy::Total(
                BUDGET_WINDOW.saturating_sub(now.duration_since(total.0)),
            ));
        }
        self.spend(source).map_err(Busy::Source)?;
        total.1 += 1;
        Ok(Admission {
            intake: self,
            keep: false,
        })
    }

    /// Takes one submission from `source`'s budget, or says how long
    /// until it has one again.
    fn spend(&self, source: IpAddr) -> Result<(), Duration> {
        let key = source_key(source);
        let now = Instant::now();
        let Ok(mut b) = self.budget.lock() else {
            return Err(BUDGET_WINDOW);
        };
        if b.len() >= BUDGET_SOURCES {
            b.retain(|_, (start, _)| now.duration_since(*start) < BUDGET_WINDOW);
        }
        if b.len() >= BUDGET_SOURCES && !b.contains_key(&key) {
            // Every slot is a live source: fail closed.
            return Err(Duration::from_secs(60));
        }
        let e = b.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) >= BUDGET_WINDOW {
            *e = (now, 0);
        }
        if e.1 >= self.limits.per_source_hour {
            return Err(BUDGET_WINDOW.saturating_sub(now.duration_since(e.0)));
        }
        e.1 += 1;
        Ok(())
    }

    /// A new CSRF token for the form: a random nonce and its signature.
    pub fn csrf_token(&self) -> String {
        let nonce: u128 = rand::random();
        let nonce = format!("{nonce:032x}");
        let tag = hmac::sign(&self.key, nonce.as_bytes());
        format!("{nonce}.{}", hex(tag.as_ref()))
    }

    /// True when `form` equals `cookie` and is a token this process signed.
    pub fn csrf_ok(&self, cookie: Option<&str>, form: Option<&str>) -> bool {
        let (Some(c), Some(f)) = (cookie, form) else {
            return false;
        };
        if c.len() != f.len() || !ring_eq(c.as_bytes(), f.as_bytes()) {
            return false;
        }
        let Some((nonce, tag)) = f.split_once('.') else {
            return false;
        };
        let Some(tag) = unhex(tag) else {
            return false;
        };
        hmac::verify(&self.key, nonce.as_bytes(), &tag).is_ok()
    }
}

fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Partners in `requested` state (awaiting the home team's review), as
/// this node's registry snapshot has them: no database read.
pub fn pending(state: &EdgeState) -> usize {
    state
        .registry
        .snapshot()
        .partners()
        .filter(|p| p.state == PartnerState::Requested)
        .count()
}

/// An RFC 3339 UTC time of a Unix timestamp.
fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}

/// Checks a partner's edge certificate (PEM, the edge's certificate first,
/// then any intermediates): it parses, chains to `roots` as a TLS client
/// certificate (as the federation listener checks it), names `fqdn` in its
/// SAN, and has not expired at `now` (Unix seconds). Every problem found
/// is returned.
pub fn check_certificate(
    pem: &str,
    fqdn: Option<&str>,
    roots: &Arc<RootCertStore>,
    now: i64,
) -> Result<CertFacts, Vec<String>> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(vec![format!(
            "the PEM text is larger than {MAX_PEM_BYTES} bytes"
        )]);
    }
    let certs: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>() {
            Ok(c) => c,
            Err(e) => return Err(vec![format!("not a PEM certificate: {e}")]),
        };
    let Some((ee, intermediates)) = certs.split_first() else {
        return Err(vec![
            "no certificate found: paste the PEM text, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----".into(),
        ]);
    };
    if certs.len() > MAX_PEM_CERTS {
        return Err(vec![format!(
            "{} certificates: give the edge's certificate and at most {} intermediates",
            certs.len(),
            MAX_PEM_CERTS - 1
        )]);
    }
    let (_, x) = x509_parser::parse_x509_certificate(ee.as_ref())
        .map_err(|e| vec![format!("the certificate cannot be parsed: {e}")])?;
    let not_before = x.validity().not_before.timestamp();
    let not_after = x.validity().not_after.timestamp();
    let mut problems = Vec::new();
    if not_after < now {
        problems.push(format!(
            "the certificate expired on {} (not after {})",
            rfc3339(not_after).get(..10).unwrap_or_default(),
            rfc3339(not_after)
        ));
    } else if not_before > now {
        problems.push(format!(
            "the certificate is not valid before {}",
            rfc3339(not_before)
        ));
    }
    // The chain is checked at a time inside the certificate's validity, so
    // that an expired certificate is refused for that reason alone.
    let at = now.clamp(not_before, not_after.max(not_before));
    if let Some(e) = chain_problem(ee, intermediates, roots, at) {
        problems.push(format!(
            "the certificate does not chain to this edge's trust bundle: {e}"
        ));
    }
    let names = match crate::sip::transport::tls::identity_of(ee, true) {
        Ok(id) => {
            if let Some(f) = fqdn
                && !id.matches(f)
            {
                problems.push(format!(
                    "the certificate does not name the edge FQDN {f} in its subjectAltName (it names {})",
                    id.names.join(", ")
                ));
            }
            id.names
        }
        Err(e) => {
            problems.push(format!("the certificate's names are not usable: {e}"));
            Vec::new()
        }
    };
    if problems.is_empty() {
        Ok(CertFacts {
            not_after: rfc3339(not_after),
            subject: x.subject().to_string(),
            names,
        })
    } else {
        Err(problems)
    }
}

/// Why the certificate does not chain to `roots` at `at`, if it does not.
fn chain_problem(
    ee: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &Arc<RootCertStore>,
    at: i64,
) -> Option<String> {
    let verifier = match rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        crate::sip::transport::tls::provider(),
    )
    .build()
    {
        Ok(v) => v,
        Err(e) => return Some(e.to_string()),
    };
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(at).unwrap_or(0)));
    verifier
        .verify_client_cert(ee, intermediates, at)
        .err()
        .map(|e| crate::sip::transport::tls::describe_tls_error(&e))
}

/// A schema violation as a field error: "x is a required property" at an
/// object is moved to the missing field itself, so that a form can show
/// it next to that field.
fn field_of(v: &fpa::Violation) -> FieldError {
    let m = &v.message;
    if let Some(rest) = m.strip_prefix('"')
        && let Some((name, tail)) = rest.split_once('"')
        && tail == " is a required property"
    {
        let parent = v.path.trim_end_matches('/');
        return FieldError::new(&format!("{parent}/{name}"), "this field is required");
    }
    FieldError::new(&v.path, m.clone())
}

fn pointer_str(doc: &Value, ptr: &str) -> Option<String> {
    doc.pointer(ptr).and_then(Value::as_str).map(str::to_string)
}

/// Checks a submission without writing anything: the FPA's details and
/// the certificate's facts, or every problem found.
pub fn check(
    intake: &Intake,
    fpa_json: &str,
    certificate_pem: &str,
    now: i64,
) -> Result<(crate::model::partner::PartnerDetails, CertFacts), Vec<FieldError>> {
    let mut errors = Vec::new();
    let details = match fpa::parse(fpa_json) {
        Ok(d) => Some(d),
        Err(vs) => {
            errors.extend(vs.iter().map(field_of));
            None
        }
    };
    let fqdn = serde_json::from_str::<Value>(fpa_json)
        .ok()
        .and_then(|d| pointer_str(&d, "/technical/edge_fqdn"));
    let facts = if certificate_pem.trim().is_empty() {
        errors.push(FieldError::new(
            CERT_FIELD,
            "the partner's edge certificate (PEM) is required",
        ));
        None
    } else {
        match &intake.roots {
            Err(e) => {
                errors.push(FieldError::new(
                    CERT_FIELD,
                    format!("this edge cannot check certificates just now: {e}"),
                ));
                None
            }
            Ok(roots) => match check_certificate(certificate_pem, fqdn.as_deref(), roots, now) {
                Ok(f) => Some(f),
                Err(ps) => {
                    errors.extend(ps.into_iter().map(|p| FieldError::new(CERT_FIELD, p)));
                    None
                }
            },
        }
    };
    match (details, facts) {
        (Some(d), Some(f)) if errors.is_empty() => Ok((d, f)),
        _ => Err(errors),
    }
}

/// Takes a submission: checks it, creates the partner in `requested`
/// state with its certificate, and requests an account for the technical
/// contact. `actor` is who the audit names; `None` for an anonymous
/// submission, audited as `fpa-intake:<technical contact's email>`.
pub async fn submit_checked(
    state: &EdgeState,
    fpa_json: &str,
    certificate_pem: &str,
    actor: Option<&str>,
) -> Result<Receipt, Refusal> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (details, facts) =
        check(&state.intake, fpa_json, certificate_pem, now).map_err(Refusal::Invalid)?;
    let email = details.contacts.tech_email.clone().unwrap_or_default();
    let email_field = "/contacts/technical/email";
    if let Some(p) = crate::model::account::name_problem(&email) {
        return Err(Refusal::Invalid(vec![FieldError::new(email_field, p)]));
    }
    let store = &state.store;
    match store.account(&email).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(Refusal::Invalid(vec![FieldError::new(
                email_field,
                format!(
                    "an account {email} already exists: ask the home team to add this partner to it"
                ),
            )]));
        }
        Err(e) => return Err(Refusal::Failed(e.into())),
    }
    let actor = actor.map_or_else(|| format!("fpa-intake:{email}"), str::to_string);
    let partner = match store
        .add_partner(details, PartnerState::Requested, &actor, None)
        .await
    {
        Ok(p) => p,
        Err(StoreError::DomainTaken { domain, .. }) => {
            return Err(Refusal::Invalid(vec![FieldError::new(
                "/technical/sip_domains",
                format!("the domain {domain} already belongs to a partner of this edge"),
            )]));
        }
        Err(e @ StoreError::Invalid(_)) => {
            return Err(Refusal::Invalid(vec![FieldError::new("/", e.to_string())]));
        }
        Err(e) => return Err(Refusal::Failed(e.into())),
    };
    let cert = PartnerCert {
        partner_id: partner.id.clone(),
        pem: certificate_pem.trim().to_string() + "\n",
        not_after: facts.not_after.clone(),
        subject: facts.subject.clone(),
        names: facts.names.join(","),
    };
    let rest = async {
        store.set_partner_cert(&cert, &actor).await?;
        store.request_account(&email, &partner.id, &actor).await
    };
    if let Err(e) = rest.await {
        warn!(partner = %partner.id, error = %e, "FPA intake: the partner was created but its certificate or account request was not stored");
        return Err(Refusal::Failed(ApiError::internal(format!(
            "the partner was recorded as {} but the submission could not be completed; quote this reference to the home team",
            partner.id
        ))));
    }
    info!(partner = %partner.id, org = %partner.details.org_name, account = %email, actor = %actor, "FPA submitted");
    Ok(Receipt {
        reference: partner.id.clone(),
        organisation: partner.details.org_name.clone(),
        partner_state: PartnerState::Requested.as_str().to_string(),
        account: email,
        account_state: "requested".into(),
        certificate_not_after: facts.not_after,
        next:
            "The home team reviews the agreement and arranges a test with your technical contact. \
               When they approve it, the technical contact is sent credentials for the console, \
               where the partnership's progress can be followed."
                .into(),
    })
}

/// [`submit_checked`] with its refusals as one [`ApiError`] (422 naming
/// every field), for the API's `POST /api/v1/fpa`.
pub async fn submit(
    state: &EdgeState,
    fpa_json: &str,
    certificate_pem: &str,
    actor: Option<&str>,
) -> Result<Receipt, ApiError> {
    submit_checked(state, fpa_json, certificate_pem, actor)
        .await
        .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_violations_name_the_missing_field() {
        let v = fpa::Violation {
            path: "/usage".into(),
            message: "\"statement\" is a required property".into(),
        };
        assert_eq!(field_of(&v).field, "/usage/statement");
        let v = fpa::Violation {
            path: "/".into(),
            message: "\"usage\" is a required property".into(),
        };
        assert_eq!(field_of(&v).field, "/usage");
    }

    fn intake(per_source_hour: u32, total_hour: u32, pending_max: usize) -> Intake {
        Intake::new(
            Err(TlsError::Rustls("none".into())),
            Limits {
                per_source_hour,
                total_hour,
                pending_max,
            },
        )
    }

    #[test]
    fn csrf_tokens_are_signed_and_doubled() {
        let i = intake(2, 60, 50);
        let t = i.csrf_token();
        assert!(i.csrf_ok(Some(&t), Some(&t)));
        assert!(!i.csrf_ok(None, Some(&t)));
        assert!(!i.csrf_ok(Some(&t), None));
        let forged = format!("{}.{}", "0".repeat(32), "00".repeat(32));
        assert!(!i.csrf_ok(Some(&forged), Some(&forged)));
        let other = intake(2, 60, 50);
        assert!(!other.csrf_ok(Some(&t), Some(&t)));
    }

    #[test]
    fn the_budget_is_per_source_and_per_64() {
        let i = intake(2, 60, 50);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let c: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(i.spend(a).is_ok());
        assert!(i.spend(b).is_ok());
        let left = i.spend(a).unwrap_err();
        assert!(left > Duration::from_secs(3500));
        assert!(i.spend(c).is_ok());
    }

    #[test]
    fn ipv4_mapped_sources_are_counted_as_their_ipv4_address() {
        // On a dual-stack [::] listener every IPv4 client arrives as
        // ::ffff:a.b.c.d: each keeps its own budget, shared with its
        // plain IPv4 form.
        let i = intake(1, 60, 50);
        let m1: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let m2: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        let v1: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(i.spend(m1).is_ok());
        assert!(
            i.spend(m2).is_ok(),
            "another IPv4 client has its own budget"
        );
        assert!(i.spend(v1).is_err(), "the same client as plain IPv4");
        assert!(i.spend(m1).is_err());
    }

    #[test]
    fn admission_caps_pending_partners_and_the_hourly_total() {
        let i = intake(10, 2, 3);
        let src = |n: u8| IpAddr::from([198, 51, 100, n]);
        assert_eq!(i.admit(src(1), 3).unwrap_err(), Busy::Pending(3));
        // A refused or invalid submission gives its place back.
        drop(i.admit(src(1), 2).unwrap());
        i.admit(src(2), 0).unwrap().recorded();
        i.admit(src(3), 0).unwrap().recorded();
        let Err(Busy::Total(left)) = i.admit(src(4), 0) else {
            panic!("the hourly total is spent");
        };
        assert!(left > Duration::from_secs(3500) && left <= BUDGET_WINDOW);
        // The total refuses before the source's budget is spent: src(4)
        // still has all of its.
        for _ in 0..10 {
            assert!(i.spend(src(4)).is_ok());
        }
        assert!(i.spend(src(4)).is_err());
    }

    #[test]
    fn admission_spends_the_source_budget_even_for_invalid_submissions() {
        let i = intake(2, 60, 50);
        let a: IpAddr = "2001:db8:7::1".parse().unwrap();
        drop(i.admit(a, 0).unwrap());
        drop(i.admit(a, 0).unwrap());
        assert!(matches!(i.admit(a, 0), Err(Busy::Source(_))));
        // The total got its places back.
        assert_eq!(i.total.lock().unwrap().1, 0);
    }
}
