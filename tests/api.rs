//! The /api/v1 HTTP API against a real edge: every route group's role
//! boundaries (an operator can, a viewer gets 403 on changes, a partner
//! account sees its own partner and 404 on another's, no credentials 401),
//! CSRF for session callers, a suspension through the API enforced at once
//! and in the history with the acting account, and the CLI's remote mode
//! (`--server --token`).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use fedge::model::account::Role;
use fedge::store::Store;
use fedge_testkit::*;
use serde_json::{Value, json};

/// One HTTP/1.1 exchange: status and JSON body (`Null` when empty,
/// a string when not JSON).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    match auth {
        Auth::None => {}
        Auth::Token(t) => head.push_str(&format!("Authorization: Bearer {t}\r\n")),
        Auth::Session(cookie, csrf) => {
            head.push_str(&format!("Cookie: fedge_session={cookie}\r\n"));
            if let Some(c) = csrf {
                head.push_str(&format!("X-CSRF-Token: {c}\r\n"));
            }
        }
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (h, b) = resp
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: {resp:?}"));
    let status: u16 = h.split_whitespace().nth(1).unwrap().parse().unwrap();
    let v = if b.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(b).unwrap_or_else(|_| Value::String(b.to_string()))
    };
    (status, v)
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Token(&'a str),
    /// Cookie value and the CSRF header (if sent).
    Session(&'a str, Option<&'a str>),
}

/// Asserts the status and that a refusal carries a reason; returns the body.
#[track_caller]
fn expect(got: (u16, Value), status: u16, what: &str) -> Value {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    if status >= 400 {
        assert!(
            got.1["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: refusal without a reason: {}",
            got.1
        );
    }
    got.1
}

fn db_url(pki: &Pki) -> String {
    format!("sqlite://{}/fedge.db", pki.path().display())
}

fn cvi_config(pki: &Pki) -> String {
    test_config(pki, "")
        + "\n[cvi]\nenabled = true\nlisten = \"127.0.0.2:0\"\nlisten_tls = \"127.0.0.2:0\"\n\
           connector = \"sip:{id}@connector.fedge.test;transport=tcp\"\n\
           connector_address = \"127.0.0.1:9\"\n"
}

/// Imports an enabled partner on PARTNER_FQDN and a requested one.
fn two_partners(edge: &Edge) {
    fedge_ok(
        &edge.config_path,
        &[
            "partner",
            "add",
            "--domain",
            "partner.test",
            "--org",
            "Partner Trust",
            "--edge-fqdn",
            PARTNER_FQDN,
            "--state",
            "enabled",
            "--reason",
            "test import",
        ],
    );
    fedge_ok(
        &edge.config_path,
        &[
            "partner",
            "add",
            "--domain",
            "other.test",
            "--org",
            "Other Council",
        ],
    );
}

fn id_of(list: &Value, domain: &str) -> String {
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["domains"].as_array().unwrap().iter().any(|d| d == domain))
        .unwrap_or_else(|| panic!("{domain} not in {list}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

struct Tokens {
    operator: String,
    viewer: String,
    partner: String,
}

async fn accounts(pki: &Pki, partner_id: &str) -> (Store, Tokens) {
    let store = Store::open(&db_url(pki)).await.unwrap();
    let op = store
        .add_account("olive", Role::Operator, None, "test")
        .await
        .unwrap();
    let vw = store
        .add_account("victor", Role::Viewer, None, "test")
        .await
        .unwrap();
    let pa = store
        .add_account("pat@partner.test", Role::Partner, Some(partner_id), "test")
        .await
        .unwrap();
    (
        store,
        Tokens {
            operator: op.token,
            viewer: vw.token,
            partner: pa.token,
        },
    )
}

fn fpa_example() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fpa-schemas/examples/fpa-valid.json"
        ))
        .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_csrf_and_enforcement() {
    let pki = Pki::new();
    let mut edge = Edge::start(&pki, &cvi_config(&pki));
    two_partners(&edge);
    let a = edge.admin;
    // Bootstrap: the partner ids come through an operator of the store.
    let store0 = Store::open(&db_url(&pki)).await.unwrap();
    let all: Vec<Value> = store0
        .partners()
        .await
        .unwrap()
        .iter()
        .map(|p| json!({"id": p.id, "domains": p.details.domains}))
        .collect();
    let all = Value::Array(all);
    let (pa_id, other_id) = (id_of(&all, "partner.test"), id_of(&all, "other.test"));
    let (store, t) = accounts(&pki, &pa_id).await;
    let (op, vw, pt) = (
        Auth::Token(&t.operator),
        Auth::Token(&t.viewer),
        Auth::Token(&t.partner),
    );

    // No credentials, or a wrong token: 401 on every route group.
    for (m, p) in [
        ("GET", "/api/v1/partners".to_string()),
        ("GET", format!("/api/v1/partners/{pa_id}")),
        ("POST", format!("/api/v1/partners/{pa_id}/suspend")),
        ("GET", format!("/api/v1/partners/{pa_id}/history")),
        ("GET", "/api/v1/cvi/organisers".to_string()),
        ("POST", "/api/v1/cvi/meetings".to_string()),
        ("GET", "/api/v1/media".to_string()),
        ("POST", "/api/v1/media/drain".to_string()),
        ("GET", "/api/v1/status".to_string()),
        ("GET", "/api/v1/audit".to_string()),
        ("GET", "/api/v1/openapi.json".to_string()),
    ] {
        expect(
            call(a, m, &p, Auth::None, None),
            401,
            &format!("{m} {p} without credentials"),
        );
        expect(
            call(a, m, &p, Auth::Token("t_not-a-token"), None),
            401,
            &format!("{m} {p} with an unknown token"),
        );
    }

    // Partners: operator and viewer list both; a partner account only its own.
    let list = expect(
        call(a, "GET", "/api/v1/partners", op, None),
        200,
        "operator list",
    );
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let list = expect(
        call(a, "GET", "/api/v1/partners", vw, None),
        200,
        "viewer list",
    );
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let own = expect(
        call(a, "GET", "/api/v1/partners", pt, None),
        200,
        "partner list",
    );
    assert_eq!(own.as_array().unwrap().len(), 1, "{own}");
    assert_eq!(own[0]["id"], pa_id.as_str());
    let enabled = expect(
        call(a, "GET", "/api/v1/partners?state=enabled", op, None),
        200,
        "state filter",
    );
    assert_eq!(enabled.as_array().unwrap().len(), 1, "{enabled}");
    expect(
        call(a, "GET", "/api/v1/partners?state=dormant", op, None),
        400,
        "unknown state",
    );
    let p = expect(
        call(a, "GET", &format!("/api/v1/partners/{pa_id}"), pt, None),
        200,
        "own partner",
    );
    assert_eq!(p["org_name"], "Partner Trust");
    assert_eq!(p["state"], "enabled");
    assert!(
        p["next"].as_array().unwrap().iter().any(|v| v == "suspend"),
        "{p}"
    );
    // The operators' internal fields are blank for the partner's own account.
    expect(
        call(
            a,
            "PATCH",
            &format!("/api/v1/partners/{pa_id}"),
            op,
            Some(
                &json!({"set": {"comment": "slow to answer", "product_check": "on"},
                "reason": "notes"}),
            ),
        ),
        200,
        "operator notes",
    );
    let seen = expect(
        call(a, "GET", &format!("/api/v1/partners/{pa_id}"), vw, None),
        200,
        "viewer reads the notes",
    );
    assert_eq!(seen["comment"], "slow to answer", "{seen}");
    assert_eq!(seen["product_check"], "on", "{seen}");
    let own_list = expect(
        call(a, "GET", "/api/v1/partners", pt, None),
        200,
        "partner list",
    );
    let own_history = expect(
        call(
            a,
            "GET",
            &format!("/api/v1/partners/{pa_id}/history"),
            pt,
            None,
        ),
        200,
        "own history",
    );
    let own_one = expect(
        call(a, "GET", &format!("/api/v1/partners/{pa_id}"), pt, None),
        200,
        "own partner",
    );
    let history_text = format!("{}{}", own_history["chain"], own_history["trail"]);
    assert!(
        !history_text.contains("slow to answer") && !history_text.contains("product_check"),
        "the notes' history shown to the partner: {own_history}"
    );
    let op_history = expect(
        call(
            a,
            "GET",
            &format!("/api/v1/partners/{pa_id}/history"),
            op,
            None,
        ),
        200,
        "operator history",
    );
    assert!(
        op_history.to_string().contains("slow to answer"),
        "{op_history}"
    );
    for v in [&own_one, &own_list[0], &own_history["partner"]] {
        for f in [
            "address",
            "comment",
            "ca_pin",
            "rate_limit",
            "product_check",
        ] {
            assert!(v[f].is_null(), "{f} shown to the partner: {v}");
        }
        assert_eq!(v["org_name"], "Partner Trust", "{v}");
    }
    let hidden = expect(
        call(a, "GET", &format!("/api/v1/partners/{other_id}"), pt, None),
        404,
        "another partner's",
    );
    let missing = expect(
        call(a, "GET", "/api/v1/partners/p_nonexistent", op, None),
        404,
        "no such",
    );
    assert_eq!(
        hidden["error"], missing["error"],
        "another's partner must look like a missing one"
    );
    for sub in ["history", "tests"] {
        expect(
            call(
                a,
                "GET",
                &format!("/api/v1/partners/{other_id}/{sub}"),
                pt,
                None,
            ),
            404,
            &format!("another partner's {sub}"),
        );
        expect(
            call(
                a,
                "GET",
                &format!("/api/v1/partners/{pa_id}/{sub}"),
                pt,
                None,
            ),
            200,
            &format!("own {sub}"),
        );
    }

    // Changes: viewer and partner 403 (the partner 404 on another's).
    let approve = json!({});
    let r = expect(
        call(
            a,
            "POST",
            &format!("/api/v1/partners/{other_id}/agreement-sent"),
            vw,
            Some(&approve),
        ),
        403,
        "viewer verb",
    );
    assert!(r["error"].as_str().unwrap().contains("viewer"), "{r}");
    expect(
        call(
            a,
            "POST",
            &format!("/api/v1/partners/{pa_id}/suspend"),
            pt,
            Some(&json!({"reason": "x"})),
        ),
        403,
        "partner suspends itself",
    );
    expect(
        call(
            a,
            "PATCH",
            &format!("/api/v1/partners/{pa_id}"),
            vw,
            Some(&json!({"set": {"comment": "x"}})),
        ),
        403,
        "viewer update",
    );
    expect(
        call(
            a,
            "POST",
            "/api/v1/partners",
            vw,
            Some(&json!({"fpa": fpa_example()})),
        ),
        403,
        "viewer add",
    );
    let unchanged = expect(
        call(a, "GET", &format!("/api/v1/partners/{other_id}"), op, None),
        200,
        "after refusals",
    );
    assert_eq!(
        unchanged["state"], "requested",
        "a refused verb changed the partner"
    );

    // Operator: lifecycle verb, unknown verb, a verb not allowed now, update, add from FPA.
    let v = expect(
        call(
            a,
            "POST",
            &format!("/api/v1/partners/{other_id}/agreement-sent"),
            op,
            Some(&approve),
        ),
        200,
        "operator verb",
    );
    assert_eq!(
        (v["from"].as_str(), v["partner"]["state"].as_str()),
        (Some("requested"), Some("agreement_sent"))
    );
    expect(
        call(
            a,
            "POST",
            &format!("/api/v1/partners/{other_id}/promote"),
            op,
            Some(&approve),
        ),
        404,
        "unknown verb",
    );
    expect(
        call(
            a,
            "POST",
            &format!("/api/v1/partners/{other_id}/enable"),
            op,
            Some(&approve),
        ),
        409,
        "enable too early",
    );
    expect(
        call(
            a,
            "POST",
            &format!("/api/v1/partners/{pa_id}/suspend"),
            op,
            Some(&json!({})),
        ),
        409,
        "suspend without a reason",
    );
    let u = expect(
        call(
            a,
            "PATCH",
            &format!("/api/v1/partners/{other_id}"),
            op,
            Some(&json!({"set": {"comment": "met at the NHS expo"}, "reason": "note"})),
        ),
        200,
        "operator update",
    );
    assert_eq!(u["partner"]["comment"], "met at the NHS expo");
    expect(
        call(
            a,
            "PATCH",
            &format!("/api/v1/partners/{other_id}"),
            op,
            Some(&json!({"set": {"colour": "red"}})),
        ),
        422,
        "unknown field",
    );
    let bad = expect(
        call(
            a,
            "POST",
            "/api/v1/partners",
            op,
            Some(&json!({"fpa": {"fpa_version": 1}})),
        ),
        422,
        "invalid FPA",
    );
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{bad}"
    );
    let added = expect(
        call(
            a,
            "POST",
            "/api/v1/partners",
            op,
            Some(&json!({"fpa": fpa_example()})),
        ),
        201,
        "add from FPA",
    );
    assert_eq!(added["partner"]["state"], "requested");
    assert_eq!(added["partner"]["domains"][0], "northshire.gov.test");
    expect(
        call(
            a,
            "POST",
            "/api/v1/partners",
            op,
            Some(&json!({"fpa": fpa_example()})),
        ),
        409,
        "the same domains again",
    );
    let r = call(
        a,
        "POST",
        "/api/v1/partners",
        op,
        Some(&json!({"fpa": "x".repeat(300 * 1024)})),
    );
    assert_eq!(r.0, 413, "oversized body: {}", r.1);

    // CSRF: a session needs X-CSRF-Token on changes; reads do not.
    // (After the one-time password: a session on it may not use the API.)
    let olive = store.account("olive").await.unwrap().unwrap();
    let (cookie, _) = store.open_session(&olive).await.unwrap();
    let r = expect(
        call(
            a,
            "GET",
            "/api/v1/partners",
            Auth::Session(&cookie, None),
            None,
        ),
        403,
        "session on the one-time password",
    );
    assert!(
        r["error"].as_str().unwrap().contains("one-time password"),
        "{r}"
    );
    store
        .set_password("olive", "olive's own passphrase", "olive")
        .await
        .unwrap();
    let olive = store.account("olive").await.unwrap().unwrap();
    let (cookie, session) = store.open_session(&olive).await.unwrap();
    expect(
        call(
            a,
            "GET",
            "/api/v1/partners",
            Auth::Session(&cookie, None),
            None,
        ),
        200,
        "session read",
    );
    let r = expect(
        call(
            a,
            "POST",
            "/api/v1/media/drain?on=false",
            Auth::Session(&cookie, None),
            Some(&json!({})),
        ),
        403,
        "session change without CSRF",
    );
    assert!(r["error"].as_str().unwrap().contains("CSRF"), "{r}");
    expect(
        call(
            a,
            "POST",
            "/api/v1/media/drain?on=false",
            Auth::Session(&cookie, Some("wrong")),
            Some(&json!({})),
        ),
        403,
        "session change with a wrong CSRF token",
    );
    expect(
        call(
            a,
            "POST",
            "/api/v1/media/drain?on=false",
            Auth::Session(&cookie, Some(&session.csrf)),
            Some(&json!({})),
        ),
        200,
        "session change with its CSRF token",
    );

    // Media, CVI, node status, audit.
    let m = expect(
        call(a, "GET", "/api/v1/media", vw, None),
        200,
        "viewer media",
    );
    assert_eq!(m["draining"], false);
    expect(
        call(a, "GET", "/api/v1/media", pt, None),
        403,
        "partner media",
    );
    expect(
        call(a, "POST", "/api/v1/media/drain", vw, Some(&json!({}))),
        403,
        "viewer media drain",
    );
    let d = expect(
        call(a, "POST", "/api/v1/media/drain", op, Some(&json!({}))),
        200,
        "operator media drain",
    );
    assert_eq!(d["draining"], true);
    assert_eq!(
        admin_get(a, "/media")["draining"],
        true,
        "the drain did not reach the relay"
    );
    expect(
        call(
            a,
            "POST",
            "/api/v1/media/drain?on=false",
            op,
            Some(&json!({})),
        ),
        200,
        "resume",
    );
    let c = expect(call(a, "GET", "/api/v1/cvi", vw, None), 200, "viewer cvi");
    assert_eq!(c["draining"], false);
    expect(
        call(a, "POST", "/api/v1/cvi/drain", vw, None),
        403,
        "viewer cvi drain",
    );
    expect(
        call(a, "POST", "/api/v1/cvi/drain", pt, None),
        403,
        "partner cvi drain",
    );
    let d = expect(
        call(a, "POST", "/api/v1/cvi/drain", op, None),
        200,
        "operator cvi drain",
    );
    assert_eq!(d["draining"], true);
    expect(
        call(a, "POST", "/api/v1/cvi/drain?on=false", op, None),
        200,
        "cvi resume",
    );
    let s = expect(
        call(a, "GET", "/api/v1/status", vw, None),
        200,
        "viewer status",
    );
    assert!(
        s["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["role"] == "admin" && l["addr"] == a.to_string()),
        "{s}"
    );
    assert!(
        s["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["role"] == "cvi" && l["transport"] == "tls"),
        "{s}"
    );
    assert_eq!(s["media"]["enabled"], true);
    assert_eq!(s["cvi"]["enabled"], true);
    expect(
        call(a, "GET", "/api/v1/status", pt, None),
        403,
        "partner status",
    );

    // CVI organisers and meetings.
    let enrol = json!({"org": "Leeds Teaching Hospitals", "ods": "RR8", "teams_enabled": true,
                       "emails": ["ann.organiser@nhs.net"]});
    expect(
        call(a, "POST", "/api/v1/cvi/organisers", vw, Some(&enrol)),
        403,
        "viewer enrol",
    );
    let e = expect(
        call(a, "POST", "/api/v1/cvi/organisers", op, Some(&enrol)),
        200,
        "operator enrol",
    );
    assert_eq!(e["enrolled"][0], "ann.organiser@nhs.net");
    let csv = json!({"org": "Leeds Teaching Hospitals", "ods": "RR8", "teams_enabled": true,
                     "csv": "EmailAddress\nbob@nhs.net\nnot-an-address\ncarol@example.com\n"});
    let r = expect(
        call(a, "POST", "/api/v1/cvi/organisers", op, Some(&csv)),
        422,
        "bad CSV rows",
    );
    assert_eq!(r["rows"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["rows"][0]["line"], 3, "{r}");
    let mut partial = csv.clone();
    partial["partial"] = json!(true);
    let r = expect(
        call(a, "POST", "/api/v1/cvi/organisers", op, Some(&partial)),
        200,
        "partial CSV",
    );
    assert_eq!(r["enrolled"], json!(["bob@nhs.net"]));
    let orgs = expect(
        call(a, "GET", "/api/v1/cvi/organisers", vw, None),
        200,
        "viewer organisers",
    );
    assert_eq!(orgs.as_array().unwrap().len(), 2, "{orgs}");
    assert_eq!(
        orgs[0]["enrolled_by"], "olive",
        "enrolment not by the acting account: {orgs}"
    );
    expect(
        call(a, "GET", "/api/v1/cvi/organisers", pt, None),
        403,
        "partner organisers",
    );
    let meet = json!({"organiser": "ann.organiser@nhs.net", "subject": "MDT"});
    expect(
        call(a, "POST", "/api/v1/cvi/meetings", vw, Some(&meet)),
        403,
        "viewer meeting",
    );
    let m = expect(
        call(a, "POST", "/api/v1/cvi/meetings", op, Some(&meet)),
        201,
        "operator meeting",
    );
    let cid = m["conference_id"].as_str().unwrap().to_string();
    assert!(
        m["invite"]
            .as_str()
            .unwrap()
            .contains("Video Conference ID"),
        "{m}"
    );
    let shown = expect(
        call(a, "GET", &format!("/api/v1/cvi/meetings/{cid}"), vw, None),
        200,
        "viewer meeting show",
    );
    assert_eq!(shown["state"], "can be joined");
    expect(
        call(a, "GET", "/api/v1/cvi/meetings/1234567890", op, None),
        404,
        "no such meeting",
    );
    expect(
        call(
            a,
            "POST",
            "/api/v1/cvi/meetings",
            op,
            Some(&json!({"organiser": "nobody@nhs.net"})),
        ),
        422,
        "meeting for an organiser not enrolled",
    );
    expect(
        call(a, "DELETE", "/api/v1/cvi/organisers/bob@nhs.net", vw, None),
        403,
        "viewer withdraw",
    );
    let w = expect(
        call(
            a,
            "DELETE",
            "/api/v1/cvi/organisers/ann.organiser@nhs.net",
            op,
            None,
        ),
        200,
        "withdraw",
    );
    assert!(w["withdrawn_at"].is_string(), "{w}");
    let shown = expect(
        call(a, "GET", &format!("/api/v1/cvi/meetings/{cid}"), op, None),
        200,
        "after withdrawal",
    );
    assert_eq!(shown["state"], "its organiser is no longer enrolled");

    // Test-federation: the partner's edge does not answer here; every step is reported.
    expect(
        call(
            a,
            "PATCH",
            &format!("/api/v1/partners/{pa_id}"),
            op,
            Some(&json!({"set": {"address": "127.0.0.1:9"}})),
        ),
        200,
        "point the partner at a closed port",
    );
    expect(
        call(
            a,
            "POST",
            &format!("/api/v1/partners/{pa_id}/test-federation"),
            vw,
            None,
        ),
        403,
        "viewer test",
    );
    let run = expect(
        call(
            a,
            "POST",
            &format!("/api/v1/partners/{pa_id}/test-federation"),
            op,
            None,
        ),
        200,
        "test-federation",
    );
    assert_eq!(run["passed"], false, "{run}");
    assert!(
        run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["ok"] == false),
        "{run}"
    );
    let tests = expect(
        call(
            a,
            "GET",
            &format!("/api/v1/partners/{pa_id}/tests"),
            pt,
            None,
        ),
        200,
        "own tests",
    );
    assert_eq!(
        tests["federation_tests"].as_array().unwrap().len(),
        1,
        "{tests}"
    );
    assert_eq!(tests["federation_tests"][0]["actor"], "olive");

    // A suspension through the API is enforced before the answer.
    let mut c = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    c.send(options_to_edge(1).as_bytes()).await.unwrap();
    assert!(
        matches!(c.recv(Duration::from_secs(5)).await, Reply::Message(m) if m.status() == Some(200)),
        "the enabled partner's OPTIONS was not answered"
    );
    let s = expect(
        call(a, "GET", "/api/v1/status", op, None),
        200,
        "status with a partner connected",
    );
    assert!(
        s["connections"]["partners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["partner"] == pa_id.as_str() && p["connections"] == 1),
        "connection not counted for its partner: {s}"
    );
    let v = expect(
        call(
            a,
            "POST",
            &format!("/api/v1/partners/{pa_id}/suspend"),
            op,
            Some(&json!({"reason": "IG lapsed"})),
        ),
        200,
        "operator suspends",
    );
    assert_eq!(v["partner"]["state"], "suspended");
    assert!(v["registry_version"].is_i64(), "{v}");
    match c.recv(Duration::from_secs(3)).await {
        Reply::Closed => {}
        other => panic!("the suspended partner's connection stayed open: {other:?}"),
    }
    // Its next request is refused with the reason (or its handshake is).
    if let Ok(mut c2) = tls_connect(edge.federation, &pki, &pki.partner).await {
        let msg = format!(
            "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS {PARTNER_FQDN};branch=z9hG4bK-m1\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@partner.test>;tag=a\r\nTo: <sip:bob@fedge.test>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
        let _ = c2.send(msg.as_bytes()).await;
        match c2.recv(Duration::from_secs(5)).await {
            Reply::Message(m) => {
                assert_eq!(m.status(), Some(403), "a suspended partner's MESSAGE");
                let w = m.values_named("Warning").next().unwrap_or("").to_string();
                assert!(w.contains("suspended"), "{w}");
            }
            Reply::Closed => {}
            other => panic!("a suspended partner's MESSAGE: {other:?}"),
        }
    }
    let h = expect(
        call(
            a,
            "GET",
            &format!("/api/v1/partners/{pa_id}/history"),
            pt,
            None,
        ),
        200,
        "own history",
    );
    let last = h["chain"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["action"].as_str(), last["actor"].as_str()),
        (Some("suspend"), Some("olive")),
        "{h}"
    );
    let trail_last = h["trail"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(trail_last["reason"], "IG lapsed");
    assert_eq!(trail_last["actor"], "olive");

    // The audit: everything for staff; a partner account its own entries only.
    let all = expect(
        call(a, "GET", "/api/v1/audit", vw, None),
        200,
        "viewer audit",
    );
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|e| e["subject"] == other_id.as_str()),
        "{all}"
    );
    assert!(
        all.as_array().unwrap().iter().any(|e| e["kind"] == "cvi"),
        "CVI changes not in the audit"
    );
    let mine = expect(
        call(a, "GET", "/api/v1/audit", pt, None),
        200,
        "partner audit",
    );
    assert!(!mine.as_array().unwrap().is_empty());
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|e| e["subject"] == pa_id.as_str()),
        "{mine}"
    );
    let future = expect(
        call(a, "GET", "/api/v1/audit?since=2999-01-01", op, None),
        200,
        "audit since",
    );
    assert_eq!(future, json!([]));

    // The OpenAPI document is served to any account and equals the checked-in one.
    let doc = expect(
        call(a, "GET", "/api/v1/openapi.json", pt, None),
        200,
        "openapi",
    );
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(&fedge::admin::api::openapi_json()).unwrap()
    );
    edge.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_acts_through_the_api() {
    let pki = Pki::new();
    let mut edge = Edge::start(&pki, &test_config(&pki, ""));
    two_partners(&edge);
    let store = Store::open(&db_url(&pki)).await.unwrap();
    let pa = store.partner_by_domain("partner.test").await.unwrap();
    let (_store, t) = accounts(&pki, &pa.id).await;
    let server = format!("http://{}", edge.admin);
    // A configuration with no database the CLI could use: it must go through the API.
    let nodb = pki.path().join("remote.toml");
    std::fs::write(
        &nodb,
        "[store]\nurl = \"sqlite:///nonexistent/dir/fedge.db\"\n",
    )
    .unwrap();
    let run = |token: &str, args: &[&str]| {
        let mut all = vec!["--server", server.as_str(), "--token", token];
        all.extend_from_slice(args);
        fedge_cli(&nodb, &all)
    };

    let (code, out, err) = run(&t.operator, &["partner", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("partner.test") && out.contains("other.test"),
        "{out}"
    );
    assert!(out.lines().next().unwrap().starts_with("DOMAINS"), "{out}");

    let (code, out, err) = run(
        &t.operator,
        &[
            "partner",
            "suspend",
            "partner.test",
            "--reason",
            "IG lapsed",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "partner partner.test (Partner Trust): enabled -> suspended"
    );
    assert_eq!(
        store
            .partner_by_domain("partner.test")
            .await
            .unwrap()
            .state
            .as_str(),
        "suspended"
    );
    let (code, out, _) = run(&t.viewer, &["partner", "history", "partner.test"]);
    assert_eq!(code, 0);
    assert!(out.contains("olive") && out.contains("IG lapsed"), "{out}");

    // A viewer's change: exit 2 with the API's reason in one line.
    let (code, out, err) = run(
        &t.viewer,
        &["partner", "reinstate", "partner.test", "--reason", "x"],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("viewer role may not change"), "{err}");
    assert_eq!(
        store
            .partner_by_domain("partner.test")
            .await
            .unwrap()
            .state
            .as_str(),
        "suspended"
    );
    // A partner account cannot name another's partner; a wrong token is refused.
    let (code, _, err) = run(&t.partner, &["partner", "show", "other.test"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run("t_wrong", &["partner", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown"), "{err}");
    // The environment works as the flags do.
    let out = std::process::Command::new(fedge_bin())
        .args(["--config", nodb.to_str().unwrap(), "media", "list"])
        .env("FEDGE_SERVER", &server)
        .env("FEDGE_TOKEN", &t.viewer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("session(s)"));
    // https needs a CA to trust; a server that does not speak TLS fails (exit 1).
    let (code, _, err) = fedge_cli(
        &nodb,
        &[
            "--server",
            &server.replace("http:", "https:"),
            "--token",
            "x",
            "partner",
            "list",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ca"), "{err}");
    let ca = pki.ca_file.to_str().unwrap();
    let (code, _, err) = fedge_cli(
        &nodb,
        &[
            "--server",
            &server.replace("http:", "https:"),
            "--ca",
            ca,
            "--token",
            "x",
            "partner",
            "list",
        ],
    );
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = fedge_cli(&nodb, &["--server", "ftp://example", "partner", "list"]);
    assert_eq!(code, 2, "{err}");
    // Nothing listening: exit 1.
    let (code, _, err) = fedge_cli(
        &nodb,
        &[
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "x",
            "partner",
            "list",
        ],
    );
    assert_eq!(code, 1, "{err}");
    edge.assert_healthy();
}
