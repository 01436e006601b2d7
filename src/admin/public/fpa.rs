//! The FPA intake form on the public listener: `GET /fpa` shows a form
//! mirroring `fpa-schemas/fpa.schema.json` (every field, its label and
//! whether it is required) with a field for the edge certificate's PEM;
//! `POST /fpa` takes the form (urlencoded, with a signed double-submit
//! CSRF token) or the FPA as JSON (`application/json`, plus
//! `certificate_pem`).
//!
//! Owns turning the form into an FPA document and showing problems next
//! to their fields. The checks and the writes are `admin::intake`'s. It
//! never echoes submitted text unescaped and never takes a submission
//! the intake does not admit (the source's budget, the hourly total, the
//! partners awaiting review).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::intake::{self, Busy, CERT_FIELD, FieldError, Receipt, Refusal};
use super::super::state::EdgeState;
use super::page;

/// The cookie holding the form's CSRF token.
const CSRF_COOKIE: &str = "fedge_fpa";

/// How a field is entered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Email,
    Tel,
    Date,
    Textarea,
    /// One line per item, becoming a JSON array.
    Lines,
    Select(&'static [(&'static str, &'static str)]),
    Checkboxes(&'static [(&'static str, &'static str)]),
}

/// A form field: its JSON pointer in the FPA, label, kind, whether the
/// schema requires it, and a hint.
struct Spec {
    path: &'static str,
    label: &'static str,
    kind: Kind,
    required: bool,
    hint: &'static str,
}

const SECTORS: &[(&str, &str)] = &[
    ("nhs", "NHS"),
    ("social_care", "Social care"),
    ("local_authority", "Local authority"),
    ("independent_health", "Independent health"),
    ("independent_care", "Independent care"),
    ("voluntary_health_care", "Voluntary health and care"),
    ("other_health_care", "Other health and care"),
];
const DATA: &[(&str, &str)] = &[
    ("clinical", "Clinical"),
    ("sensitive", "Sensitive"),
    ("commercial", "Commercial"),
    ("general", "General"),
];
const PRODUCTS: &[(&str, &str)] = &[
    ("lync_2010", "Lync Server 2010"),
    ("lync_2013", "Lync Server 2013"),
    ("sfb_2015", "Skype for Business Server 2015"),
    ("sfb_2019", "Skype for Business Server 2019"),
    ("sfb_se", "Skype for Business Server Subscription Edition"),
];

const fn f(
    path: &'static str,
    label: &'static str,
    kind: Kind,
    required: bool,
    hint: &'static str,
) -> Spec {
    Spec {
        path,
        label,
        kind,
        required,
        hint,
    }
}

/// The form's groups and fields, in the schema's order.
const GROUPS: &[(&str, &[Spec])] = &[
    (
        "Organisation",
        &[
            f(
                "/organisation/name",
                "Organisation name",
                Kind::Text,
                true,
                "",
            ),
            f(
                "/organisation/registration_number",
                "Registration number",
                Kind::Text,
                true,
                "Companies House, charity or NHS organisation (ODS) code.",
            ),
            f("/organisation/address", "Address", Kind::Textarea, true, ""),
            f(
                "/organisation/sector",
                "Sector",
                Kind::Select(SECTORS),
                true,
                "Federation is offered to organisations working in health and care only.",
            ),
            f(
                "/organisation/information_governance/level",
                "Information governance certification",
                Kind::Text,
                true,
                "For example \"DSPT Standards Met\".",
            ),
            f(
                "/organisation/information_governance/expires",
                "Certification expires on",
                Kind::Date,
                true,
                "YYYY-MM-DD",
            ),
        ],
    ),
    (
        "Intended use",
        &[
            f(
                "/usage/statement",
                "Statement of intended use",
                Kind::Textarea,
                true,
                "Published with your organisation's name once federated (20 to 2000 characters).",
            ),
            f(
                "/usage/data",
                "Kinds of information users will exchange",
                Kind::Checkboxes(DATA),
                true,
                "Choose at least one.",
            ),
        ],
    ),
    (
        "Technical details",
        &[
            f(
                "/technical/sip_domains",
                "SIP domains",
                Kind::Lines,
                true,
                "Your users' SIP domains, one per line.",
            ),
            f(
                "/technical/sip_address",
                "SIP address for testing",
                Kind::Text,
                true,
                "For example sip:uc.team@example.org (normally the technical contact's).",
            ),
            f(
                "/technical/edge_fqdn",
                "Access Edge FQDN",
                Kind::Text,
                true,
                "The public name of your Access Edge; its certificate must name it.",
            ),
            f(
                "/technical/product",
                "Product",
                Kind::Select(PRODUCTS),
                true,
                "",
            ),
            f(
                "/technical/version",
                "Product version",
                Kind::Text,
                false,
                "For example 6.0.9319.",
            ),
        ],
    ),
    (
        "Single point of contact (your IT service desk)",
        &[
            f("/contacts/spoc/name", "Name", Kind::Text, true, ""),
            f("/contacts/spoc/email", "Email", Kind::Email, true, ""),
            f("/contacts/spoc/phone", "Phone", Kind::Tel, true, ""),
            f(
                "/contacts/spoc/sip_address",
                "SIP address",
                Kind::Text,
                false,
                "",
            ),
        ],
    ),
    (
        "Technical contact (exchanges test IM with the home team; gets the console account)",
        &[
            f("/contacts/technical/name", "Name", Kind::Text, true, ""),
            f("/contacts/technical/email", "Email", Kind::Email, true, ""),
            f("/contacts/technical/phone", "Phone", Kind::Tel, true, ""),
            f(
                "/contacts/technical/sip_address",
                "SIP address",
                Kind::Text,
                true,
                "",
            ),
        ],
    ),
    (
        "Signatory",
        &[
            f("/contacts/signatory/name", "Name", Kind::Text, true, ""),
            f("/contacts/signatory/role", "Role", Kind::Text, true, ""),
            f(
                "/contacts/signatory/signed_on",
                "Signed on",
                Kind::Date,
                true,
                "YYYY-MM-DD",
            ),
        ],
    ),
    (
        "Edge certificate",
        &[f(
            CERT_FIELD,
            "Your Access Edge's certificate (PEM)",
            Kind::Textarea,
            true,
            "Paste the certificate, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----, then any intermediate certificates, or choose its file below. It must chain to our trust bundle, name your Access Edge FQDN and not have expired.",
        )],
    ),
];

struct Opt {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

struct FieldView {
    name: &'static str,
    id: String,
    label: &'static str,
    kind: &'static str,
    required: bool,
    hint: &'static str,
    value: String,
    options: Vec<Opt>,
    error: String,
    /// The ids of the hint and the error, for aria-describedby.
    describedby: String,
}

struct GroupView {
    legend: &'static str,
    fields: Vec<FieldView>,
}

#[derive(Template)]
#[template(path = "public/fpa.html")]
struct FormPage {
    fqdn: String,
    csrf: String,
    groups: Vec<GroupView>,
    /// Every problem: its text, and the id of its field (empty for none).
    errors: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "public/submitted.html")]
struct DonePage<'a> {
    fqdn: &'a str,
    r: &'a Receipt,
}

fn field_id(path: &str) -> String {
    format!("f{}", path.replace('/', "-"))
}

/// The field a problem belongs to: the one whose path is the problem's
/// path or a prefix of it (`/technical/sip_domains/1`).
fn owner(field: &str) -> Option<&'static Spec> {
    GROUPS.iter().flat_map(|(_, fs)| fs.iter()).find(|s| {
        field == s.path
            || field
                .strip_prefix(s.path)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn form_page(
    state: &EdgeState,
    csrf: &str,
    values: &HashMap<String, String>,
    errors: &[FieldError],
) -> FormPage {
    let mut by_field: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut list = Vec::new();
    for e in errors {
        let o = owner(&e.field);
        if let Some(s) = o {
            by_field.entry(s.path).or_default().push(&e.message);
        }
        let label = o.map_or(e.field.as_str(), |s| s.label);
        list.push((
            format!("{label}: {}", e.message),
            o.map(|s| field_id(s.path)).unwrap_or_default(),
        ));
    }
    let groups = GROUPS
        .iter()
        .map(|(legend, specs)| GroupView {
            legend,
            fields: specs
                .iter()
                .map(|s| {
                    let value = values.get(s.path).cloned().unwrap_or_default();
                    let (kind, options): (&str, &[(&str, &str)]) = match s.kind {
                        Kind::Text => ("text", &[]),
                        Kind::Email => ("email", &[]),
                        Kind::Tel => ("tel", &[]),
                        Kind::Date => ("date", &[]),
                        Kind::Textarea | Kind::Lines => ("textarea", &[]),
                        Kind::Select(o) => ("select", o),
                        Kind::Checkboxes(o) => ("checkboxes", o),
                    };
                    let options = options
                        .iter()
                        .map(|(v, l)| Opt {
                            value: v,
                            label: l,
                            selected: match s.kind {
                                Kind::Checkboxes(_) => {
                                    values.contains_key(&format!("{}/{v}", s.path))
                                }
                                _ => value == *v,
                            },
                        })
                        .collect();
                    let id = field_id(s.path);
                    let error = by_field
                        .get(s.path)
                        .map(|m| m.join("; "))
                        .unwrap_or_default();
                    let describedby = [
                        (!s.hint.is_empty()).then(|| format!("{id}-hint")),
                        (!error.is_empty()).then(|| format!("{id}-error")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                    FieldView {
                        name: s.path,
                        id,
                        label: s.label,
                        kind,
                        required: s.required,
                        hint: s.hint,
                        value,
                        options,
                        error,
                        describedby,
                    }
                })
                .collect(),
        })
        .collect();
    FormPage {
        fqdn: state.fqdn.clone(),
        csrf: csrf.to_string(),
        groups,
        errors: list,
    }
}

/// Sets `value` at a JSON pointer in `doc`, creating objects on the way.
fn set(doc: &mut Value, path: &str, value: Value) {
    let mut cur = doc;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let Some((last, dirs)) = parts.split_last() else {
        return;
    };
    for p in dirs {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        cur = obj.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.insert(last.to_string(), value);
    }
}

/// Creates the objects on the way to a JSON pointer.
fn ensure_parents(doc: &mut Value, path: &str) {
    let mut cur = doc;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for p in parts.iter().take(parts.len().saturating_sub(1)) {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        cur = obj.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

/// The FPA document a filled-in form describes: empty fields left out
/// (their objects kept), so that the schema names each missing field.
fn document(values: &HashMap<String, String>) -> Value {
    let mut doc = json!({"fpa_version": 1});
    for s in GROUPS.iter().flat_map(|(_, fs)| fs.iter()) {
        if s.path == CERT_FIELD {
            continue;
        }
        ensure_parents(&mut doc, s.path);
        let v = values.get(s.path).map(|v| v.trim()).unwrap_or_default();
        match s.kind {
            Kind::Lines => {
                let items: Vec<Value> = v
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|x| !x.is_empty())
                    .map(Value::from)
                    .collect();
                if !items.is_empty() {
                    set(&mut doc, s.path, Value::Array(items));
                }
            }
            Kind::Checkboxes(opts) => {
                let items: Vec<Value> = opts
                    .iter()
                    .filter(|(o, _)| values.contains_key(&format!("{}/{o}", s.path)))
                    .map(|(o, _)| Value::from(*o))
                    .collect();
                if !items.is_empty() {
                    set(&mut doc, s.path, Value::Array(items));
                }
            }
            _ if v.is_empty() => {}
            _ => set(&mut doc, s.path, Value::from(v)),
        }
    }
    doc
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn with_csrf_cookie(mut r: Response, token: &str) -> Response {
    let c = format!("{CSRF_COOKIE}={token}; Path=/fpa; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `GET /fpa`: the empty form, with a fresh CSRF token.
pub(super) async fn form(State(state): State<Arc<EdgeState>>) -> Response {
    let token = state.intake.csrf_token();
    let p = form_page(&state, &token, &HashMap::new(), &[]);
    with_csrf_cookie(page(StatusCode::OK, &p), &token)
}

fn json_error(status: StatusCode, reason: &str, errors: &[FieldError]) -> Response {
    (status, Json(json!({"error": reason, "errors": errors}))).into_response()
}

/// Why the form takes nothing just now: 429 for this source's budget,
/// 503 for the edge's (the hourly total, the partners awaiting review),
/// each with Retry-After.
fn busy(b: Busy, as_json: bool) -> Response {
    let (status, secs, reason) = match b {
        Busy::Source(left) => {
            let s = left.as_secs().max(1);
            (
                StatusCode::TOO_MANY_REQUESTS,
                s,
                format!(
                    "too many FPA submissions from this address: try again in {} minutes",
                    s.div_ceil(60)
                ),
            )
        }
        Busy::Total(left) => {
            let s = left.as_secs().max(1);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                s,
                format!(
                    "this edge has taken as many FPA submissions as it takes in an hour: try again in {} minutes or contact the home team",
                    s.div_ceil(60)
                ),
            )
        }
        Busy::Pending(n) => (
            StatusCode::SERVICE_UNAVAILABLE,
            3600,
            format!("the home team has {n} agreements to review: try again later or contact them"),
        ),
    };
    if let Busy::Total(_) | Busy::Pending(_) = b {
        tracing::warn!(reason = %reason, "FPA intake closed for anonymous submissions");
    }
    let mut r = if as_json {
        json_error(status, &reason, &[])
    } else {
        (status, reason).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// `POST /fpa`: a submission, as the form or as JSON.
pub(super) async fn post(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match ctype.as_str() {
        "application/json" => post_json(&state, peer, &body).await,
        "application/x-www-form-urlencoded" => {
            let values: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            post_form(&state, peer, &headers, values).await
        }
        "multipart/form-data" => match multipart_values(&headers, body).await {
            Ok(values) => post_form(&state, peer, &headers, values).await,
            Err(e) => json_error(
                StatusCode::BAD_REQUEST,
                &format!("the form could not be read: {e}"),
                &[],
            ),
        },
        _ => json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the form (application/x-www-form-urlencoded or multipart/form-data) or the FPA as application/json",
            &[],
        ),
    }
}

/// The file input a browser sends the certificate in (the form's
/// multipart encoding); the pasted text, when given, wins.
const CERT_FILE_FIELD: &str = "certificate_file";

/// The fields of a multipart form (the whole body is already within the
/// listener's body limit): text fields by name, and the certificate file's
/// content as the certificate when nothing was pasted.
async fn multipart_values(
    headers: &HeaderMap,
    body: Bytes,
) -> Result<HashMap<String, String>, multer::Error> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ctype)?;
    let mut form = multer::Multipart::with_reader(std::io::Cursor::new(body), boundary);
    let mut values = HashMap::new();
    let mut file = None;
    while let Some(field) = form.next_field().await? {
        let Some(name) = field.name().map(str::to_string) else {
            continue;
        };
        let bytes = field.bytes().await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if name == CERT_FILE_FIELD {
            file = Some(text);
        } else {
            values.insert(name, text);
        }
    }
    let pasted = values.get(CERT_FIELD).is_some_and(|v| !v.trim().is_empty());
    if let Some(text) = file.filter(|t| !t.trim().is_empty() && !pasted) {
        values.insert(CERT_FIELD.to_string(), text);
    }
    Ok(values)
}

async fn post_json(state: &EdgeState, peer: SocketAddr, body: &[u8]) -> Response {
    let mut doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let errs = [FieldError {
                field: "/".into(),
                message: format!("not valid JSON (line {}, column {})", e.line(), e.column()),
            }];
            return json_error(StatusCode::BAD_REQUEST, "the body is not JSON", &errs);
        }
    };
    let admission = match state.intake.admit(peer.ip(), intake::pending(state)) {
        Ok(a) => a,
        Err(b) => return busy(b, true),
    };
    let pem = doc
        .as_object_mut()
        .and_then(|o| o.remove(CERT_FIELD))
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match intake::submit_checked(state, &doc.to_string(), &pem, None).await {
        Ok(r) => {
            admission.recorded();
            (StatusCode::CREATED, Json(json!({"receipt": r}))).into_response()
        }
        Err(Refusal::Invalid(errs)) => json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "the submission has {} problems; nothing was stored",
                errs.len()
            ),
            &errs,
        ),
        Err(Refusal::Failed(e)) => e.into_response(),
    }
}

async fn post_form(
    state: &EdgeState,
    peer: SocketAddr,
    headers: &HeaderMap,
    values: HashMap<String, String>,
) -> Response {
    let jar = cookie(headers, CSRF_COOKIE);
    if !state
        .intake
        .csrf_ok(jar.as_deref(), values.get("csrf").map(String::as_str))
    {
        let token = state.intake.csrf_token();
        let errs = [FieldError {
            field: "/".into(),
            message: "the form's security token is missing or stale (cookies must be allowed): check your answers and submit again".into(),
        }];
        let p = form_page(state, &token, &values, &errs);
        return with_csrf_cookie(page(StatusCode::FORBIDDEN, &p), &token);
    }
    let admission = match state.intake.admit(peer.ip(), intake::pending(state)) {
        Ok(a) => a,
        Err(b) => return busy(b, false),
    };
    let doc = document(&values);
    let pem = values.get(CERT_FIELD).cloned().unwrap_or_default();
    match intake::submit_checked(state, &doc.to_string(), &pem, None).await {
        Ok(r) => {
            admission.recorded();
            page(
                StatusCode::CREATED,
                &DonePage {
                    fqdn: &state.fqdn,
                    r: &r,
                },
            )
        }
        Err(Refusal::Invalid(errs)) => {
            let token = state.intake.csrf_token();
            let p = form_page(state, &token, &values, &errs);
            with_csrf_cookie(page(StatusCode::UNPROCESSABLE_ENTITY, &p), &token)
        }
        Err(Refusal::Failed(e)) => (e.status, e.reason).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf of the schema (following `$ref` and `allOf`), as JSON pointers.
    fn leaves(schema: &Value, node: &Value, at: &str, out: &mut Vec<String>) {
        let node = match node.get("$ref").and_then(Value::as_str) {
            Some(r) => schema
                .pointer(r.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            None => node,
        };
        if let Some(all) = node.get("allOf").and_then(Value::as_array) {
            for n in all {
                leaves(schema, n, at, out);
            }
        }
        match node.get("properties").and_then(Value::as_object) {
            Some(props) => {
                for (k, v) in props {
                    leaves(schema, v, &format!("{at}/{k}"), out);
                }
            }
            None if node.get("allOf").is_none() => out.push(at.to_string()),
            None => {}
        }
    }

    #[test]
    fn the_form_has_every_field_of_the_schema() {
        let schema: Value = serde_json::from_str(crate::federation::fpa::SCHEMA).unwrap();
        let mut want = Vec::new();
        leaves(&schema, &schema, "", &mut want);
        want.retain(|p| p != "/fpa_version");
        want.sort();
        want.dedup();
        let mut have: Vec<String> = GROUPS
            .iter()
            .flat_map(|(_, fs)| fs.iter())
            .map(|s| s.path.to_string())
            .filter(|p| p != CERT_FIELD)
            .collect();
        have.sort();
        assert_eq!(have, want);
    }

    #[test]
    fn a_filled_in_form_is_the_example_fpa() {
        let example: Value =
            serde_json::from_str(include_str!("../../../fpa-schemas/examples/fpa-valid.json"))
                .unwrap();
        let mut values = HashMap::new();
        for s in GROUPS.iter().flat_map(|(_, fs)| fs.iter()) {
            match example.pointer(s.path) {
                Some(Value::String(v)) => {
                    values.insert(s.path.to_string(), v.clone());
                }
                Some(Value::Array(a)) => {
                    let items: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                    if matches!(s.kind, Kind::Checkboxes(_)) {
                        for i in items {
                            values.insert(format!("{}/{i}", s.path), "on".into());
                        }
                    } else {
                        values.insert(s.path.to_string(), items.join("\n"));
                    }
                }
                _ => {}
            }
        }
        assert_eq!(document(&values), example);
        assert!(crate::federation::fpa::parse(&document(&values).to_string()).is_ok());
    }
}
