//! The public listener (`[public] listen`) of a real `fedge serve`: the
//! published list of federated organisations, the CVI dialling pages moved
//! there from the admin listener, no admin route on it, FPA intake (JSON
//! and the form, with its schema, certificate, CSRF and budget checks),
//! and `[admin] tls`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use fedge::model::account::AccountState;
use fedge::model::partner::{PartnerDetails, PartnerState, Verb};
use fedge::pki::{Authority, LeafSpec};
use fedge::store::Store;
use fedge_testkit::admin::http;
use fedge_testkit::edge::{Edge, test_config};
use fedge_testkit::pki::Pki;
use serde_json::{Value, json};

const FPA: &str = include_str!("../fpa-schemas/examples/fpa-valid.json");
const PARTNER_EDGE: &str = "sip.northshire.gov.test";

/// A response: status, headers (lower-cased names) and body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request with a body and extra headers.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: edge\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

fn post_json(addr: SocketAddr, doc: &Value) -> Resp {
    request(
        addr,
        "POST",
        "/fpa",
        &[("Content-Type", "application/json")],
        &doc.to_string(),
    )
}

fn store_url(pki: &Pki) -> String {
    format!("sqlite://{}/fedge.db", pki.path().display())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A certificate PEM for `name` from `ca`, valid `days` from now (negative: expired).
fn cert_pem(ca: &Authority, name: &str, days: i64) -> String {
    let mut spec = LeafSpec::new(name, 30);
    if days < 0 {
        spec.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
    }
    spec.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    ca.issue(&spec).unwrap().cert_pem
}

/// The example FPA with the edge's valid certificate for its FQDN.
fn submission(pki: &Pki) -> Value {
    let mut doc: Value = serde_json::from_str(FPA).unwrap();
    doc["certificate_pem"] = Value::from(cert_pem(&pki.ca, PARTNER_EDGE, 90));
    doc
}

fn details(org: &str, domain: &str, usage: &str) -> PartnerDetails {
    PartnerDetails {
        org_name: org.into(),
        domains: vec![domain.into()],
        usage_statement: Some(usage.into()),
        ..PartnerDetails::default()
    }
}

#[test]
fn the_published_list_shows_enabled_partners_only() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    rt().block_on(async {
        let store = Store::open(&store_url(&pki)).await.unwrap();
        let why = Some("imported");
        store
            .add_partner(
                details(
                    "Zeta Health <NHS> Trust",
                    "zeta.test",
                    "Clinicians message & call GPs",
                ),
                PartnerState::Enabled,
                "test",
                why,
            )
            .await
            .unwrap();
        store
            .add_partner(
                details(
                    "alpha care",
                    "alpha.test",
                    "Care homes message district nurses",
                ),
                PartnerState::Enabled,
                "test",
                why,
            )
            .await
            .unwrap();
        store
            .add_partner(
                details("Requested Org", "req.test", "waiting"),
                PartnerState::Requested,
                "test",
                None,
            )
            .await
            .unwrap();
        store
            .add_partner(
                details("Suspended Org", "susp.test", "paused"),
                PartnerState::Suspended,
                "test",
                why,
            )
            .await
            .unwrap();
        store
            .add_partner(
                details("Revoked Org", "rev.test", "gone"),
                PartnerState::Enabled,
                "test",
                why,
            )
            .await
            .unwrap();
        store
            .apply_verb("rev.test", Verb::Revoke, "test", Some("left"), false)
            .await
            .unwrap();
        store.close().await;
    });
    let today = fedge::store::today();

    let r = request(edge.public, "GET", "/federated.json", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["count"], 2, "{v}");
    let orgs = v["organisations"].as_array().unwrap();
    assert_eq!(orgs[0]["organisation"], "alpha care", "sorted by name: {v}");
    assert_eq!(orgs[1]["organisation"], "Zeta Health <NHS> Trust");
    assert_eq!(orgs[1]["date_federated"], today.as_str());
    assert_eq!(orgs[1]["intended_use"], "Clinicians message & call GPs");
    for hidden in ["Requested Org", "Suspended Org", "Revoked Org", "zeta.test"] {
        assert!(!r.body.contains(hidden), "{hidden} published: {}", r.body);
    }

    let r = request(edge.public, "GET", "/federated", &[], "");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let page = &r.body;
    assert!(page.contains("<html lang=\"en\">"), "{page}");
    assert!(page.contains("<h1>Federated organisations</h1>"), "{page}");
    assert!(
        page.contains("Zeta Health &#60;NHS&#62; Trust")
            || page.contains("Zeta Health &lt;NHS&gt; Trust"),
        "escaped: {page}"
    );
    assert!(!page.contains("<NHS>"), "{page}");
    assert!(page.contains(&format!("<td>{today}</td>")), "{page}");
    assert!(page.find("alpha care").unwrap() < page.find("Zeta Health").unwrap());
    for hidden in ["Requested Org", "Suspended Org", "Revoked Org"] {
        assert!(!page.contains(hidden), "{hidden} published: {page}");
    }
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));

    // `fedge firewall` opens the public listener (as configured: port 0
    // here), apart from the admin one.
    let rules = fedge_testkit::edge::fedge_ok(&edge.config_path, &["firewall"]);
    assert!(
        rules.contains("ip daddr 127.0.0.1 tcp dport 0 accept comment \"public: published list"),
        "{rules}"
    );

    // The landing page links the rest.
    let r = request(edge.public, "GET", "/", &[], "");
    assert_eq!(r.status, 200);
    for link in [
        "href=\"/federated\"",
        "href=\"/federated.json\"",
        "href=\"/fpa\"",
    ] {
        assert!(r.body.contains(link), "{link} not in {}", r.body);
    }
}

#[test]
fn admin_routes_are_not_on_the_public_listener_and_cvi_pages_are() {
    let pki = Pki::new();
    let cvi = "\n[cvi]\nenabled = true\nlisten = \"127.0.0.2:0\"\nconnector = \"sip:{id}@connector.fedge.test;transport=tcp\"\nconnector_address = \"127.0.0.1:9\"\nudp_probe = false\n";
    let edge = Edge::start(&pki, &format!("{}{cvi}", test_config(&pki, "")));
    for path in [
        "/api/v1/partners",
        "/health",
        "/registry",
        "/metrics",
        "/media",
        "/cvi",
        "/console",
        "/console/login",
    ] {
        let (status, body) = http(edge.public, "GET", path);
        assert_eq!(status, 404, "{path} on the public listener: {body}");
    }
    // POST /cvi/drain meets only the GET-only dialling page route there.
    let (status, body) = http(edge.public, "POST", "/cvi/drain");
    assert!(matches!(status, 404 | 405), "{status} {body}");
    assert!(
        !body.contains("draining"),
        "no drain switch on the public listener: {body}"
    );
    // The dialling pages answer on the public listener (a wrong ID: the
    // not-found page), not on the admin one.
    let (status, page) = http(edge.public, "GET", "/cvi/1234567890");
    assert_eq!(status, 404, "{page}");
    assert!(
        page.contains("no meeting can be joined with this Video Conference ID"),
        "{page}"
    );
    let (status, page) = http(edge.admin, "GET", "/cvi/1234567890");
    assert_eq!(status, 404, "{page}");
    assert!(
        !page.contains("Video Conference ID"),
        "the admin listener serves no dialling page: {page}"
    );
}

#[test]
fn fpa_intake_by_json_and_by_form() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));

    // JSON: a valid submission.
    let r = post_json(edge.public, &submission(&pki));
    assert_eq!(r.status, 201, "{}", r.body);
    let receipt = &r.json()["receipt"];
    let reference = receipt["reference"].as_str().unwrap().to_string();
    assert_eq!(receipt["partner_state"], "requested");
    assert_eq!(receipt["account"], "sam.patel@northshire.gov.test");
    assert!(
        receipt["next"].as_str().unwrap().contains("home team"),
        "{receipt}"
    );
    assert!(receipt["certificate_not_after"].as_str().unwrap().len() >= 20);

    // The same domains again: refused, naming the field.
    let mut again = submission(&pki);
    again["contacts"]["technical"]["email"] = Value::from("other@northshire.gov.test");
    let r = post_json(edge.public, &again);
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.json()["errors"][0]["field"],
        "/technical/sip_domains",
        "{}",
        r.body
    );

    // The form: the CSRF cookie and token from GET /fpa.
    let form = request(edge.public, "GET", "/fpa", &[], "");
    assert_eq!(form.status, 200);
    let cookie = form
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("fedge_fpa="), "{cookie}");
    let token = cookie.trim_start_matches("fedge_fpa=").to_string();
    assert!(
        form.body
            .contains(&format!("name=\"csrf\" value=\"{token}\""))
    );
    // Every field with its label and required marker.
    for want in [
        "<label for=\"f-organisation-name\">Organisation name <span class=\"required\">(required)</span></label>",
        "<label for=\"f-technical-version\">Product version <span class=\"required\">(optional)</span></label>",
        "name=\"/usage/data/clinical\"",
        "<label for=\"fcertificate_pem\">",
    ] {
        assert!(form.body.contains(want), "{want} not in the form");
    }
    let cert = cert_pem(&pki.ca, "sip.southshire.nhs.test", 90);
    let owned = shire_form("southshire", &token, &cert);
    let fields: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let encode = |fields: &[(&str, &str)]| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter())
            .finish()
    };
    let urlenc = [("Content-Type", "application/x-www-form-urlencoded")];
    // Without the cookie: refused, nothing stored.
    let r = request(edge.public, "POST", "/fpa", &urlenc, &encode(&fields));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("security token"), "{}", r.body);
    // A schema error: shown next to its field, values kept and escaped.
    let mut bad = fields.clone();
    bad.retain(|(k, _)| *k != "/usage/statement");
    let with_cookie = [urlenc[0], ("Cookie", cookie.as_str())];
    let r = request(edge.public, "POST", "/fpa", &with_cookie, &encode(&bad));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains(
            "<p class=\"error\" id=\"f-usage-statement-error\">Problem: this field is required</p>"
        ),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("Southshire &#60;b&#62;Community")
            || r.body.contains("Southshire &lt;b&gt;Community")
    );
    assert!(!r.body.contains("<b>Community"), "no echo of HTML");
    // The whole form: 201 and the receipt page.
    let r = request(edge.public, "POST", "/fpa", &with_cookie, &encode(&fields));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.body.contains("Agreement received") && r.body.contains("What happens next"),
        "{}",
        r.body
    );

    rt().block_on(async {
        let store = Store::open(&store_url(&pki)).await.unwrap();
        let north = store
            .partner_by_domain("northshire.gov.test")
            .await
            .unwrap();
        assert_eq!(north.id, reference);
        assert_eq!(north.state, PartnerState::Requested);
        assert_eq!(
            north.details.usage_statement.as_deref(),
            Some("Care managers message and call NHS discharge teams about shared clients.")
        );
        let south = store
            .partner_by_domain("staff.southshire.nhs.test")
            .await
            .unwrap();
        assert_eq!(south.state, PartnerState::Requested);
        assert_eq!(
            south.details.org_name,
            "Southshire <b>Community</b> NHS Trust"
        );
        for (p, email) in [
            (&north, "sam.patel@northshire.gov.test"),
            (&south, "ali.khan@southshire.nhs.test"),
        ] {
            let accounts = store.accounts_of_partner(&p.id).await.unwrap();
            assert_eq!(accounts.len(), 1, "{accounts:?}");
            assert_eq!(accounts[0].name, email);
            assert_eq!(accounts[0].state, AccountState::Requested);
            assert_eq!(accounts[0].role, fedge::model::account::Role::Partner);
            let c = store
                .partner_cert(&p.id)
                .await
                .unwrap()
                .expect("certificate stored");
            assert!(c.cert.pem.contains("BEGIN CERTIFICATE"));
            assert!(c.cert.not_after.as_str() > fedge::store::now_rfc3339().as_str());
            assert_eq!(c.submitted_by, format!("fpa-intake:{email}"));
        }
        let audit = store
            .audit_of(fedge::store::audit::Kind::Partner, &north.id)
            .await
            .unwrap();
        let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
        assert!(actions.contains(&"certificate"), "{actions:?}");
        assert!(
            audit
                .iter()
                .all(|e| e.actor == "fpa-intake:sam.patel@northshire.gov.test")
        );
        assert!(store.audit_verify().await.unwrap().is_ok());
        store.close().await;
    });
    // Requested partners are not published.
    let v = request(edge.public, "GET", "/federated.json", &[], "").json();
    assert_eq!(v["count"], 0, "{v}");
}

#[test]
fn fpa_intake_refuses_bad_fpas_and_certificates_with_reasons() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    let refused = |doc: &Value| {
        let r = post_json(edge.public, doc);
        assert_eq!(r.status, 422, "{}", r.body);
        r.json()["errors"].as_array().unwrap().clone()
    };
    let messages = |errs: &[Value], field: &str| -> String {
        errs.iter()
            .filter(|e| e["field"] == field)
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    };

    // A schema error names the field.
    let mut doc = submission(&pki);
    doc["usage"].as_object_mut().unwrap().remove("statement");
    doc["contacts"]["spoc"]["email"] = Value::from("helpdesk");
    let errs = refused(&doc);
    assert!(!messages(&errs, "/usage/statement").is_empty(), "{errs:?}");
    assert!(
        !messages(&errs, "/contacts/spoc/email").is_empty(),
        "{errs:?}"
    );

    // A certificate from another CA.
    let other = Authority::new("another CA").unwrap();
    let mut doc = submission(&pki);
    doc["certificate_pem"] = Value::from(cert_pem(&other, PARTNER_EDGE, 90));
    let m = messages(&refused(&doc), "certificate_pem");
    assert!(
        m.contains("does not chain to this edge's trust bundle"),
        "{m}"
    );
    assert!(
        !m.contains("expired") && !m.contains("does not name"),
        "{m}"
    );

    // One that does not name the FPA's edge FQDN.
    let mut doc = submission(&pki);
    doc["certificate_pem"] = Value::from(cert_pem(&pki.ca, "sip.elsewhere.test", 90));
    let m = messages(&refused(&doc), "certificate_pem");
    assert!(
        m.contains(&format!("does not name the edge FQDN {PARTNER_EDGE}")),
        "{m}"
    );
    assert!(
        m.contains("sip.elsewhere.test") && !m.contains("chain"),
        "{m}"
    );

    // An expired one: refused, with its not-after date.
    let mut doc = submission(&pki);
    doc["certificate_pem"] = Value::from(cert_pem(&pki.ca, PARTNER_EDGE, -2));
    let m = messages(&refused(&doc), "certificate_pem");
    let expired_on = (time::OffsetDateTime::now_utc() - time::Duration::days(2))
        .date()
        .to_string();
    assert!(m.contains(&format!("expired on {expired_on}")), "{m}");
    assert!(!m.contains("chain"), "{m}");

    // Not a certificate at all; none at all.
    let mut doc = submission(&pki);
    doc["certificate_pem"] = Value::from("hello");
    assert!(messages(&refused(&doc), "certificate_pem").contains("no certificate found"));
    let mut doc = submission(&pki);
    doc.as_object_mut().unwrap().remove("certificate_pem");
    assert!(messages(&refused(&doc), "certificate_pem").contains("required"));

    // Not JSON; not a form.
    let r = request(
        edge.public,
        "POST",
        "/fpa",
        &[("Content-Type", "application/json")],
        "{oops",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = request(
        edge.public,
        "POST",
        "/fpa",
        &[("Content-Type", "text/plain")],
        "x",
    );
    assert_eq!(r.status, 415, "{}", r.body);
    // Too large a body.
    let big = json!({"pad": "x".repeat(100_000)}).to_string();
    let r = request(
        edge.public,
        "POST",
        "/fpa",
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(r.status, 413, "{}", r.body);

    rt().block_on(async {
        let store = Store::open(&store_url(&pki)).await.unwrap();
        assert!(store.partners().await.unwrap().is_empty(), "nothing stored");
        // No account requested: only the testkit's own operator exists.
        let names: Vec<String> = store
            .accounts()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(
            names,
            vec![fedge_testkit::edge::TESTKIT_OPERATOR.to_string()]
        );
        store.close().await;
    });
}

#[test]
fn fpa_submissions_have_a_per_source_budget() {
    let pki = Pki::new();
    let cfg = test_config(&pki, "").replace(
        "[public]\nlisten = \"127.0.0.1:0\"\n",
        "[public]\nlisten = \"127.0.0.1:0\"\nfpa_per_hour = 2\n",
    );
    assert!(cfg.contains("fpa_per_hour = 2"));
    let edge = Edge::start(&pki, &cfg);
    let mut doc = submission(&pki);
    doc["usage"]["statement"] = Value::from("short");
    for _ in 0..2 {
        assert_eq!(post_json(edge.public, &doc).status, 422);
    }
    let r = post_json(edge.public, &submission(&pki));
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many FPA submissions from this address")
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 3000 && retry <= 3600, "{retry}");
    // Reading is not limited.
    assert_eq!(http(edge.public, "GET", "/fpa").0, 200);
}

#[test]
fn the_admin_listener_serves_tls_with_the_edge_certificate() {
    let pki = Pki::new();
    let cfg = test_config(&pki, "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls = true\n",
    );
    assert!(cfg.contains("tls = true"));
    let edge = Edge::start(&pki, &cfg);
    let line = edge
        .wait_log(&["listening", "\"role\":\"admin\""], Duration::from_secs(1))
        .unwrap();
    assert!(line.contains("\"transport\":\"https\""), "{line}");

    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &edge.admin.to_string(),
            "-servername",
            "sip.fedge.test",
            "-CAfile",
        ])
        .arg(&pki.ca_file)
        .args(["-verify_return_error", "-ign_eof"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"GET / HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CN=sip.fedge.test") || text.contains("CN = sip.fedge.test"),
        "{text}"
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("HTTP/1.1 "), "HTTP answered over TLS: {text}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut s = std::net::TcpStream::connect(edge.admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP answered: {:?}",
        String::from_utf8_lossy(&got)
    );

    // The CLI's client configuration accepts the edge's own certificate
    // (pinned) or one for its FQDN from its trust bundle (tests/reload.rs),
    // and nothing else.
    let cfg = fedge::config::Config::load(&edge.config_path).unwrap();
    let own = fedge::server::admin_client_config(&cfg).unwrap();
    let mut other_cfg = cfg.clone();
    other_cfg.federation.cert = pki.partner.cert.clone();
    // A trust bundle that did not issue the edge's certificate.
    other_cfg.federation.trust = pki.partner.cert.clone();
    let other = fedge::server::admin_client_config(&other_cfg).unwrap();
    rt().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tcp = tokio::net::TcpStream::connect(edge.admin).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(own)
            .connect(name.clone(), tcp)
            .await
            .unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        tls.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 "), "{got}");
        let tcp = tokio::net::TcpStream::connect(edge.admin).await.unwrap();
        let e = tokio_rustls::TlsConnector::from(other)
            .connect(name, tcp)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("did not present this edge's"), "{e}");
    });

    // The CLI on the node reaches its admin listener over TLS: media list,
    // and a partner change whose reload the edge confirms (no note).
    let text = std::fs::read_to_string(&edge.config_path).unwrap().replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[admin]\nlisten = \"{}\"\n", edge.admin),
    );
    assert!(text.contains(&edge.admin.to_string()));
    let cli = edge.config_path.with_file_name("cli-tls.toml");
    std::fs::write(&cli, text).unwrap();
    let (code, out, err) = fedge_testkit::edge::fedge_cli(&cli, &["media", "list"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("session(s)"), "{out}");
    let (code, out, err) = fedge_testkit::edge::fedge_cli(
        &cli,
        &[
            "partner",
            "add",
            "--domain",
            "tls-cli.test",
            "--org",
            "TLS CLI Trust",
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        !err.contains("note:"),
        "the reload was not confirmed: {err}"
    );

    // The public listener stays plain HTTP.
    assert_eq!(http(edge.public, "GET", "/federated.json").0, 200);
}

/// The certificate store (migration 0009): insert, replace, read back and
/// audit, on both backends.
async fn partner_certs_scenario(url: &str) {
    let store = Store::open(url).await.unwrap();
    let p = store
        .add_partner(
            details("Cert Org", "cert.test", "testing"),
            PartnerState::Requested,
            "test",
            None,
        )
        .await
        .unwrap();
    assert!(store.partner_cert(&p.id).await.unwrap().is_none());
    let mut c = fedge::store::PartnerCert {
        partner_id: p.id.clone(),
        pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        not_after: "2027-01-01T00:00:00Z".into(),
        subject: "CN=sip.cert.test".into(),
        names: "sip.cert.test".into(),
    };
    store.set_partner_cert(&c, "first").await.unwrap();
    c.not_after = "2028-01-01T00:00:00Z".into();
    store.set_partner_cert(&c, "second").await.unwrap();
    let got = store.partner_cert(&p.id).await.unwrap().unwrap();
    assert_eq!(got.cert, c);
    assert_eq!(got.submitted_by, "second");
    assert_eq!(store.partner_certs().await.unwrap().len(), 1);
    let audit = store
        .audit_of(fedge::store::audit::Kind::Partner, &p.id)
        .await
        .unwrap();
    let certs: Vec<&str> = audit
        .iter()
        .filter(|e| e.action == "certificate")
        .map(|e| e.actor.as_str())
        .collect();
    assert_eq!(certs, ["first", "second"]);
    assert!(store.audit_verify().await.unwrap().is_ok());
    store.close().await;
}

#[test]
fn partner_certificates_are_stored_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(partner_certs_scenario(&format!(
        "sqlite://{}/certs.db",
        dir.path().display()
    )));
}

#[test]
fn partner_certificates_are_stored_on_postgresql() {
    let pg = fedge_testkit::pg::Postgres::start();
    rt().block_on(partner_certs_scenario(&pg.url));
}

#[test]
fn a_public_address_in_use_or_shared_is_one_line_and_exit_2() {
    let pki = Pki::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = test_config(&pki, "").replace(
        "[public]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[public]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    assert!(cfg.contains(&format!("127.0.0.1:{port}")));
    let path = pki.path().join("taken.toml");
    std::fs::write(&path, fedge_testkit::edge::with_test_media(&cfg)).unwrap();
    let mut child = std::process::Command::new(fedge_testkit::edge::fedge_bin())
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("fedge serve did not exit with the public address taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("fedge: cannot listen on 127.0.0.1:")
            && last.contains(&format!(":{port} (public)")),
        "{err}"
    );
    drop(taken);

    // `fedge config check`: the public listener on the admin port.
    let shared = pki.path().join("shared.toml");
    std::fs::write(
        &shared,
        "[admin]\nlisten = \"127.0.0.1:18061\"\n[public]\nlisten = \"127.0.0.1:18061\"\n",
    )
    .unwrap();
    let (code, _, err) = fedge_testkit::edge::fedge_cli(&shared, &["config", "check"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("[public] listen 127.0.0.1:18061 is the address of [admin] listen"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn the_public_listener_caps_connections_per_source() {
    let pki = Pki::new();
    let cfg = test_config(&pki, "").replace(
        "[public]\nlisten = \"127.0.0.1:0\"\n",
        "[public]\nlisten = \"127.0.0.1:0\"\nmax_connections_per_source = 2\n",
    );
    assert!(cfg.contains("max_connections_per_source = 2"));
    let edge = Edge::start(&pki, &cfg);
    let held: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(edge.public).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // A third from the same address is closed without an answer.
    let mut s = std::net::TcpStream::connect(edge.public).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /federated.json HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    // Once one closes, the address is served again.
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(http(edge.public, "GET", "/federated.json").0, 200);
}

#[test]
fn an_operator_enters_an_fpa_through_the_api_and_a_viewer_cannot() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    let mut doc: Value = serde_json::from_str(FPA).unwrap();
    let body = json!({
        "fpa": doc.clone(),
        "certificate_pem": cert_pem(&pki.ca, PARTNER_EDGE, 90),
    })
    .to_string();

    // No account: 401. A viewer: 403, and nothing is made.
    let r = request(
        edge.admin,
        "POST",
        "/api/v1/fpa",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(r.status, 401, "{}", r.body);
    let viewer = rt().block_on(async {
        let s = Store::open(&store_url(&pki)).await.unwrap();
        s.add_account(
            "ig.viewer",
            fedge::model::account::Role::Viewer,
            None,
            "test",
        )
        .await
        .unwrap()
        .token
    });
    let bearer = |t: &str| format!("Bearer {t}");
    let r = request(
        edge.admin,
        "POST",
        "/api/v1/fpa",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer(&viewer)),
        ],
        &body,
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // The operator: the partner is requested, the contact's account too,
    // and the audit names the operator.
    let r = request(
        edge.admin,
        "POST",
        "/api/v1/fpa",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer(&edge.token)),
        ],
        &body,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let receipt = r.json();
    assert_eq!(receipt["partner_state"], "requested", "{receipt}");
    assert_eq!(receipt["account_state"], "requested", "{receipt}");
    let reference = receipt["reference"].as_str().unwrap().to_string();
    let (entries, account) = rt().block_on(async {
        let s = Store::open(&store_url(&pki)).await.unwrap();
        (
            s.audit_of(fedge::store::audit::Kind::Partner, &reference)
                .await
                .unwrap(),
            s.account("sam.patel@northshire.gov.test").await.unwrap(),
        )
    });
    assert_eq!(entries[0].action, "add");
    assert!(entries[0].actor.contains("testkit"), "{:?}", entries[0]);
    assert_eq!(account.unwrap().state, AccountState::Requested);

    // A schema error names the field in the API's answer too.
    doc["organisation"] = Value::Null;
    let bad = json!({"fpa": doc, "certificate_pem": cert_pem(&pki.ca, PARTNER_EDGE, 90)});
    let r = request(
        edge.admin,
        "POST",
        "/api/v1/fpa",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer(&edge.token)),
        ],
        &bad.to_string(),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("organisation"), "{}", r.body);
}

/// `test_config` with extra `[public]` keys.
fn public_config(pki: &Pki, keys: &str) -> String {
    let cfg = test_config(pki, "").replace(
        "[public]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[public]\nlisten = \"127.0.0.1:0\"\n{keys}"),
    );
    assert!(cfg.contains(keys), "{cfg}");
    cfg
}

/// The example FPA for another organisation (its own domain and contact,
/// the same edge FQDN and certificate).
fn other_submission(pki: &Pki, domain: &str) -> Value {
    let mut doc = submission(pki);
    doc["technical"]["sip_domains"] = json!([domain]);
    doc["technical"]["sip_address"] = Value::from(format!("sip:uc.team@{domain}"));
    doc["contacts"]["technical"]["email"] = Value::from(format!("tech@{domain}"));
    doc
}

#[test]
fn a_trickling_connection_is_closed_at_its_lifetime() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &public_config(&pki, "connection_lifetime = \"2s\"\n"));
    // A byte every 200 ms restarts the 20 s idle timer: only the lifetime
    // can close this connection.
    let mut s = std::net::TcpStream::connect(edge.public).unwrap();
    let start = std::time::Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"GET /federated HTTP/1.1\r\nHost: edge\r\nX-Slow: ")
        .unwrap();
    let closed_after = loop {
        let t = start.elapsed();
        assert!(t < Duration::from_secs(12), "still open after {t:?}");
        if s.write_all(b"a").is_err() {
            break t;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => break start.elapsed(),
            Ok(n) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break start.elapsed(),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(1500) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
    // The listener still serves a prompt client.
    assert_eq!(http(edge.public, "GET", "/federated.json").0, 200);
}

#[test]
fn anonymous_fpa_intake_stops_while_too_many_await_review() {
    let pki = Pki::new();
    let edge = Edge::start(
        &pki,
        &public_config(&pki, "fpa_pending_max = 2\nfpa_per_hour = 50\n"),
    );
    rt().block_on(async {
        let store = Store::open(&store_url(&pki)).await.unwrap();
        store
            .add_partner(
                details("Waiting Org", "waiting.test", "waiting for review"),
                PartnerState::Requested,
                "test",
                None,
            )
            .await
            .unwrap();
        store.close().await;
    });
    // One more awaits review: the anonymous submission makes two.
    let r = post_json(edge.public, &submission(&pki));
    assert_eq!(r.status, 201, "{}", r.body);
    let reference = r.json()["receipt"]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    // Once this node's registry has seen it (it polls the store), the form
    // is closed. Probed with an invalid submission, which records nothing
    // if it is admitted.
    let mut probe = other_submission(&pki, "late.test");
    probe["usage"]["statement"] = Value::from("short");
    let mut refused = None;
    for _ in 0..20 {
        let r = post_json(edge.public, &probe);
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 422, "{}", r.body);
        std::thread::sleep(Duration::from_millis(250));
    }
    let r = refused.expect("refused once two await review");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("the home team has 2 agreements to review: try again later or contact them"),
        "{}",
        r.body
    );
    assert_eq!(r.header("retry-after"), Some("3600"));
    assert!(
        edge.wait_log(
            &["FPA intake closed for anonymous submissions"],
            Duration::from_secs(5)
        )
        .is_some()
    );
    // An operator revokes the squatter: its domains are free again and
    // the form takes a submission claiming them.
    rt().block_on(async {
        let store = Store::open(&store_url(&pki)).await.unwrap();
        let p = store
            .apply_verb(
                "northshire.gov.test",
                Verb::Revoke,
                "test",
                Some("not the organisation it claims"),
                false,
            )
            .await
            .unwrap();
        assert_eq!(p.0.id, reference);
        store.close().await;
    });
    let mut again = submission(&pki);
    again["contacts"]["technical"]["email"] = Value::from("real.contact@northshire.gov.test");
    let mut taken = None;
    for _ in 0..20 {
        let r = post_json(edge.public, &again);
        if r.status != 503 {
            taken = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let r = taken.expect("the form opens again after the revoke");
    assert_eq!(r.status, 201, "{}", r.body);
}

#[test]
fn anonymous_fpa_intake_has_an_hourly_total() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &public_config(&pki, "fpa_per_hour_total = 1\n"));
    // An invalid submission does not count against the total.
    let mut bad = submission(&pki);
    bad["usage"]["statement"] = Value::from("short");
    assert_eq!(post_json(edge.public, &bad).status, 422);
    let r = post_json(edge.public, &submission(&pki));
    assert_eq!(r.status, 201, "{}", r.body);
    // The next one, from anywhere, waits for the hour to end.
    let r = post_json(edge.public, &other_submission(&pki, "second.test"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("as many FPA submissions as it takes in an hour"),
        "{}",
        r.body
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 3000 && retry <= 3600, "{retry}");
    // Nothing was recorded for it.
    rt().block_on(async {
        let store = Store::open(&store_url(&pki)).await.unwrap();
        assert!(store.partner_by_domain("second.test").await.is_err());
        store.close().await;
    });
}

#[test]
fn the_published_list_follows_registry_changes_through_its_cache() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    let count = || {
        let r = request(edge.public, "GET", "/federated.json", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["count"].as_u64().unwrap()
    };
    assert_eq!(count(), 0);
    assert_eq!(count(), 0, "from the cache");
    let changed = std::time::Instant::now();
    rt().block_on(async {
        let store = Store::open(&store_url(&pki)).await.unwrap();
        store
            .add_partner(
                details("Fresh Org", "fresh.test", "Nurses call GPs"),
                PartnerState::Enabled,
                "test",
                Some("imported"),
            )
            .await
            .unwrap();
        store.close().await;
    });
    // The registry's version moved: the list shows it well before the
    // cache would have expired on its own (5 s).
    let wait = |want: u64, changed: std::time::Instant| {
        while count() != want {
            assert!(
                changed.elapsed() < Duration::from_secs(4),
                "the list still lacks the change"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(1, changed);
    let r = request(edge.public, "GET", "/federated", &[], "");
    assert!(r.body.contains("Fresh Org"), "{}", r.body);
    let changed = std::time::Instant::now();
    rt().block_on(async {
        let store = Store::open(&store_url(&pki)).await.unwrap();
        store
            .apply_verb("fresh.test", Verb::Suspend, "test", Some("paused"), false)
            .await
            .unwrap();
        store.close().await;
    });
    wait(0, changed);
}

/// The FPA form filled in for "<shire>.nhs.test" (two SIP domains, its edge
/// `sip.<shire>.nhs.test`), with the CSRF token and the certificate pasted.
fn shire_form(shire: &str, token: &str, cert: &str) -> Vec<(String, String)> {
    let cap = format!("{}{}", shire[..1].to_uppercase(), &shire[1..]);
    [
        ("csrf", token.to_string()),
        (
            "/organisation/name",
            format!("{cap} <b>Community</b> NHS Trust"),
        ),
        ("/organisation/registration_number", "RXX".into()),
        (
            "/organisation/address",
            format!("1 High Street, {cap} SS1 1AA"),
        ),
        ("/organisation/sector", "nhs".into()),
        (
            "/organisation/information_governance/level",
            "DSPT Standards Met".into(),
        ),
        (
            "/organisation/information_governance/expires",
            "2030-01-31".into(),
        ),
        (
            "/usage/statement",
            "Community nurses message hospital discharge teams.".into(),
        ),
        ("/usage/data/clinical", "on".into()),
        ("/usage/data/general", "on".into()),
        (
            "/technical/sip_domains",
            format!("{shire}.nhs.test\r\nstaff.{shire}.nhs.test"),
        ),
        ("/technical/sip_address", format!("sip:uc@{shire}.nhs.test")),
        ("/technical/edge_fqdn", format!("sip.{shire}.nhs.test")),
        ("/technical/product", "sfb_2019".into()),
        ("/contacts/spoc/name", "Service Desk".into()),
        ("/contacts/spoc/email", format!("desk@{shire}.nhs.test")),
        ("/contacts/spoc/phone", "+44 1000 000000".into()),
        ("/contacts/technical/name", "Ali Khan".into()),
        (
            "/contacts/technical/email",
            format!("ali.khan@{shire}.nhs.test"),
        ),
        ("/contacts/technical/phone", "+44 1000 000001".into()),
        (
            "/contacts/technical/sip_address",
            format!("sip:ali.khan@{shire}.nhs.test"),
        ),
        ("/contacts/signatory/name", "Pat Lee".into()),
        ("/contacts/signatory/role", "Chief Executive".into()),
        ("/contacts/signatory/signed_on", "2026-11-01".into()),
        ("certificate_pem", cert.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A browser's multipart/form-data submission: the certificate comes as a
/// chosen file (the pasted field left empty), and is checked as if pasted.
#[test]
fn the_form_takes_the_certificate_as_a_file() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    let form = request(edge.public, "GET", "/fpa", &[], "");
    assert!(
        form.body.contains("enctype=\"multipart/form-data\"")
            && form.body.contains("<label for=\"certificate_file\">")
            && form.body.contains("type=\"file\" id=\"certificate_file\""),
        "the form offers a file input"
    );
    let cookie = form
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = cookie.trim_start_matches("fedge_fpa=").to_string();
    let cert = cert_pem(&pki.ca, "sip.westshire.nhs.test", 90);
    let boundary = "----fedgetestboundary7d1";
    let multipart = |fields: &[(String, String)], file: &str| {
        let mut body = String::new();
        for (k, v) in fields {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
            ));
        }
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"certificate_file\"; filename=\"edge.pem\"\r\n\
             Content-Type: application/x-pem-file\r\n\r\n{file}\r\n--{boundary}--\r\n"
        ));
        body
    };
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let headers = [
        ("Content-Type", ctype.as_str()),
        ("Cookie", cookie.as_str()),
    ];
    let fields = shire_form("westshire", &token, "");
    // A file from another CA: refused next to the certificate field.
    let other = Authority::new("Other CA").unwrap();
    let r = request(
        edge.public,
        "POST",
        "/fpa",
        &headers,
        &multipart(&fields, &cert_pem(&other, "sip.westshire.nhs.test", 90)),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("trust"), "{}", r.body);
    // The right file: recorded, with the certificate's expiry.
    let r = request(
        edge.public,
        "POST",
        "/fpa",
        &headers,
        &multipart(&fields, &cert),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.contains("Agreement received"), "{}", r.body);
    let stored = rt().block_on(async {
        let store = Store::open(&store_url(&pki)).await.unwrap();
        let p = store.partner_by_domain("westshire.nhs.test").await.unwrap();
        store.partner_cert(&p.id).await.unwrap()
    });
    assert!(stored.is_some(), "the certificate from the file is stored");
}
