//! Authentication on the admin listener, against the real `fedge` binary:
//! every route needs an account (401 without one, or with an unknown or
//! revoked token), the roles' boundaries (viewer reads, partner sees no
//! node route), console sessions (cookie flags, CSRF), login throttling,
//! disabling, secrets never stored in clear, `fedge user`, the CLI's own
//! node tokens, the first-run notice, and the account store on PostgreSQL.

use std::net::SocketAddr;
use std::time::Duration;

use fedge::model::account::Role;
use fedge::store::Store;
use fedge_testkit::admin::request;
use fedge_testkit::edge::TESTKIT_OPERATOR;
use fedge_testkit::*;

/// Runs a future on a small runtime of its own.
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A token-only account of `role` (no password: no argon2 in the test).
fn token_account(edge: &Edge, name: &str, role: Role, partner: Option<&str>) -> String {
    block(async {
        let s = Store::open(&edge.store_url).await.unwrap();
        let c = s
            .add_token_account(name, role, partner, "test", "test")
            .await
            .unwrap();
        s.close().await;
        c.token
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Status of `method path` with `token` (or none).
fn status(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> u16 {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    request(addr, method, path, &headers, "").0
}

const READS: [&str; 8] = [
    "/",
    "/health",
    "/registry",
    "/metrics",
    "/media",
    "/cvi",
    "/api/v1/me",
    "/api/v1/accounts",
];
const CHANGES: [&str; 3] = [
    "/registry/reload",
    "/media/drain?on=false",
    "/cvi/drain?on=false",
];

fn start() -> (Pki, Edge) {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    (pki, edge)
}

#[test]
fn every_route_needs_an_account() {
    let (_pki, edge) = start();
    let a = edge.admin;
    // A token that was good, then revoked by a reset.
    let old = token_account(&edge, "reader", Role::Viewer, None);
    assert_eq!(status(a, "GET", "/health", Some(&old)), 200);
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts/reader/reset",
        &[("Authorization", &bearer(&edge.token))],
        "",
    );
    assert_eq!(code, 200, "{body}");
    for path in READS {
        let (code, head, body) = request(a, "GET", path, &[], "");
        assert_eq!(code, 401, "GET {path}: {body}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
        assert!(body.contains("needs an account"), "{body}");
        for t in ["fdg_not_a_token", old.as_str()] {
            let (code, _, body) = request(a, "GET", path, &[("Authorization", &bearer(t))], "");
            assert_eq!(code, 401, "GET {path}: {body}");
            assert!(body.contains("unknown, revoked or expired"), "{body}");
        }
        // The operator gets through (the CVI gateway is off: 404 says so).
        let want = if path == "/cvi" { 404 } else { 200 };
        assert_eq!(status(a, "GET", path, Some(&edge.token)), want, "{path}");
    }
    for path in CHANGES {
        assert_eq!(status(a, "POST", path, None), 401, "{path}");
        assert_eq!(status(a, "POST", path, Some("fdg_x")), 401, "{path}");
        assert_eq!(status(a, "POST", path, Some(&old)), 401, "{path}");
    }
    assert_eq!(
        status(a, "POST", "/registry/reload", Some(&edge.token)),
        200
    );
    assert_eq!(
        status(a, "POST", "/media/drain?on=false", Some(&edge.token)),
        200
    );
    // The dialling pages are on the public listener, without an account
    // (the gateway is off here: 503), and no longer on the admin one.
    assert_eq!(status(a, "GET", "/cvi/123456789", None), 404);
    assert_eq!(status(a, "GET", "/cvi/123456789", Some(&edge.token)), 404);
    assert_eq!(status(edge.public, "GET", "/cvi/123456789", None), 503);
    // A path the admin listener does not serve says so.
    let (code, _, body) = request(
        a,
        "GET",
        "/api/v1/no-such-thing",
        &[("Authorization", &bearer(&edge.token))],
        "",
    );
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("no such route on the admin listener: /api/v1/no-such-thing"),
        "{body}"
    );
}

#[test]
fn viewer_reads_partner_sees_no_node_route() {
    let (_pki, edge) = start();
    let a = edge.admin;
    fedge_ok(
        &edge.config_path,
        &[
            "partner",
            "add",
            "--domain",
            "partner.test",
            "--org",
            "Partner Org",
            "--edge-fqdn",
            "sip.partner.test",
        ],
    );
    let pid = block(async {
        let s = Store::open(&edge.store_url).await.unwrap();
        let p = s.partner_by_domain("partner.test").await.unwrap();
        s.close().await;
        p.id
    });
    let viewer = token_account(&edge, "watcher", Role::Viewer, None);
    let spoc = token_account(&edge, "spoc@partner.test", Role::Partner, Some(&pid));
    for path in ["/", "/health", "/registry", "/metrics", "/media"] {
        assert_eq!(status(a, "GET", path, Some(&viewer)), 200, "viewer {path}");
        let (code, _, body) = request(a, "GET", path, &[("Authorization", &bearer(&spoc))], "");
        assert_eq!(code, 403, "partner {path}: {body}");
        assert!(body.contains("its own partner only"), "{body}");
    }
    for path in CHANGES {
        let (code, _, body) = request(a, "POST", path, &[("Authorization", &bearer(&viewer))], "");
        assert_eq!(code, 403, "viewer POST {path}: {body}");
        assert!(body.contains("may not change"), "{body}");
        assert_eq!(status(a, "POST", path, Some(&spoc)), 403, "partner {path}");
    }
    // Accounts are the operators' business.
    assert_eq!(status(a, "GET", "/api/v1/accounts", Some(&viewer)), 403);
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts",
        &[("Authorization", &bearer(&viewer))],
        r#"{"name":"x","role":"operator"}"#,
    );
    assert_eq!(code, 403, "{body}");
    // Everyone may ask who they are.
    let (code, _, body) = request(
        a,
        "GET",
        "/api/v1/me",
        &[("Authorization", &bearer(&spoc))],
        "",
    );
    assert_eq!(code, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["account"]["role"], "partner");
    assert_eq!(me["account"]["partner_id"], pid.as_str());
    assert_eq!(me["via"], "token");
}

/// The value of `name` in a response head's Set-Cookie (lower-cased head).
fn set_cookie(head: &str) -> String {
    head.lines()
        .find(|l| l.starts_with("set-cookie: fedge_session="))
        .unwrap_or_else(|| panic!("no session cookie in {head}"))
        .to_string()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn sessions_set_a_strict_cookie_and_need_csrf() {
    let (_pki, edge) = start();
    let a = edge.admin;
    let op = bearer(&edge.token);
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts",
        &[("Authorization", &op), ("Content-Type", "application/json")],
        r#"{"name":"alice","role":"operator"}"#,
    );
    assert_eq!(code, 201, "{body}");
    let creds = json(&body);
    let password = creds["password"].as_str().unwrap().to_string();
    assert!(creds["token"].as_str().unwrap().starts_with("fdg_"));

    // The cookie's flags (the head comes back lower-cased).
    let (code, head, body) = request(
        a,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "application/json")],
        &serde_json::json!({"name": "alice", "password": password}).to_string(),
    );
    assert_eq!(code, 200, "{body}");
    let line = set_cookie(&head);
    assert!(line.contains("httponly"), "{line}");
    assert!(line.contains("samesite=strict"), "{line}");
    assert!(line.contains("path=/"), "{line}");
    assert!(!line.contains("secure"), "plain HTTP: not Secure: {line}");
    let first = json(&body);
    assert_eq!(first["must_change_password"], true);
    let other_csrf = first["csrf"].as_str().unwrap().to_string();

    // Two more sessions on the one-time password: `elsewhere` (another
    // browser) and `cookie` (this one).
    let (code, elsewhere, body) = raw_login(a, "alice", &password);
    assert_eq!(code, 200, "{body}");
    let elsewhere = [("Cookie", elsewhere.as_str())];
    let (code, cookie, body) = raw_login(a, "alice", &password);
    assert_eq!(code, 200, "{body}");
    let csrf = json(&body)["csrf"].as_str().unwrap().to_string();
    let with_cookie = [("Cookie", cookie.as_str())];
    let right = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    // Before the one-time password is changed: who am I, and nothing else.
    let (code, _, body) = request(a, "GET", "/api/v1/me", &with_cookie, "");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["via"], "session");
    assert_eq!(json(&body)["account"]["must_change_password"], true);
    for (m, path, h) in [
        ("GET", "/health", &with_cookie[..]),
        ("GET", "/api/v1/accounts", &with_cookie[..]),
        ("GET", "/api/v1/partners", &with_cookie[..]),
        ("POST", "/registry/reload", &right[..]),
    ] {
        let (code, _, body) = request(a, m, path, h, "");
        assert_eq!(code, 403, "{m} {path}: {body}");
        assert!(
            body.contains("change the one-time password first: POST /api/v1/session/password"),
            "{body}"
        );
    }
    // A token of the same account is not held back.
    let token = creds["token"].as_str().unwrap();
    assert_eq!(status(a, "GET", "/health", Some(token)), 200);

    // Own password change (CSRF too), then the one-time password is gone.
    let change =
        serde_json::json!({"old": password, "new": "a much longer passphrase"}).to_string();
    let mut h = with_cookie.to_vec();
    h.push(("Content-Type", "application/json"));
    assert_eq!(
        request(a, "POST", "/api/v1/session/password", &h, &change).0,
        403
    );
    h.push(("X-CSRF-Token", csrf.as_str()));
    let (code, _, body) = request(a, "POST", "/api/v1/session/password", &h, &change);
    assert_eq!(code, 204, "{body}");
    assert_eq!(raw_login(a, "alice", &password).0, 401);
    let (code, _, body) = raw_login(a, "alice", "a much longer passphrase");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["must_change_password"], false);
    // The change ended the account's other sessions, not this one.
    assert_eq!(request(a, "GET", "/api/v1/me", &elsewhere, "").0, 401);
    assert_eq!(request(a, "GET", "/health", &with_cookie, "").0, 200);

    // A state change without the CSRF header, or with another session's: 403.
    let (code, _, body) = request(a, "POST", "/registry/reload", &with_cookie, "");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let wrong = [
        ("Cookie", cookie.as_str()),
        ("X-CSRF-Token", other_csrf.as_str()),
    ];
    assert_eq!(request(a, "POST", "/registry/reload", &wrong, "").0, 403);
    assert_eq!(
        request(a, "POST", "/media/drain?on=false", &with_cookie, "").0,
        403
    );
    // With it: done.
    let (code, _, body) = request(a, "POST", "/registry/reload", &right, "");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        request(a, "POST", "/media/drain?on=false", &right, "").0,
        200
    );

    // Logout: the cookie is cleared and stops working.
    let (code, head, _) = request(a, "DELETE", "/api/v1/session", &with_cookie, "");
    assert_eq!(code, 204);
    assert!(head.contains("set-cookie: fedge_session="), "{head}");
    assert_eq!(request(a, "GET", "/health", &with_cookie, "").0, 401);
}

/// Logs in and returns (status, `fedge_session=<value>` as sent back in a
/// Cookie header, body).
fn raw_login(addr: SocketAddr, name: &str, password: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let body = serde_json::json!({"name": name, "password": password}).to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/v1/session HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let cookie = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            (k.eq_ignore_ascii_case("set-cookie") && v.starts_with("fedge_session="))
                .then(|| v.split(';').next().unwrap_or("").to_string())
        })
        .unwrap_or_default();
    (status, cookie, body.to_string())
}

#[test]
fn failed_logins_are_throttled_and_logged_once() {
    let (_pki, edge) = start();
    let a = edge.admin;
    for i in 0..5 {
        let (code, _, body) = raw_login(a, "victim", &format!("guess number {i}"));
        assert_eq!(code, 401, "attempt {i}: {body}");
        assert!(body.contains("wrong account name or password"), "{body}");
    }
    for _ in 0..3 {
        let (code, head, body) = request(
            a,
            "POST",
            "/api/v1/session",
            &[("Content-Type", "application/json")],
            r#"{"name":"victim","password":"yet another guess"}"#,
        );
        assert_eq!(code, 429, "{body}");
        assert!(body.contains("too many failed logins"), "{body}");
        let retry: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .unwrap_or_else(|| panic!("no Retry-After: {head}"))
            .trim()
            .parse()
            .unwrap();
        assert!((800..=900).contains(&retry), "{retry}");
    }
    let line = edge
        .wait_log(&["login throttled", "victim"], Duration::from_secs(5))
        .expect("a throttling warning");
    assert!(line.contains("WARN"), "{line}");
    let per_account = edge
        .logs()
        .iter()
        .filter(|l| l.contains("login throttled") && l.contains("for this account"))
        .count();
    assert_eq!(per_account, 1, "one warning per window, not per attempt");
    // Tokens are not throttled: the API keeps working for token holders.
    assert_eq!(status(a, "GET", "/health", Some(&edge.token)), 200);
}

#[test]
fn parallel_wrong_logins_get_five_guesses_not_more() {
    let (_pki, edge) = start();
    let a = edge.admin;
    // All at once, for one name: each attempt is counted before its
    // password check, so at most 5 are checked; the rest get 429 (or
    // 503 while 4 checks run), never a password check.
    let answers: Vec<(u16, String, String)> = std::thread::scope(|s| {
        let all: Vec<_> = (0..60)
            .map(|i| {
                s.spawn(move || {
                    let body =
                        serde_json::json!({"name": "target", "password": format!("guess {i}")});
                    request(
                        a,
                        "POST",
                        "/api/v1/session",
                        &[("Content-Type", "application/json")],
                        &body.to_string(),
                    )
                })
            })
            .collect();
        all.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = answers.iter().filter(|(c, _, _)| *c == 401).count();
    assert!(checked >= 1, "some were checked: {answers:?}");
    let not_throttled = answers.iter().filter(|(c, _, _)| *c != 429).count();
    assert!(
        not_throttled <= 5,
        "{not_throttled} not throttled: {answers:?}"
    );
    for (code, head, body) in &answers {
        assert!([401, 429, 503].contains(code), "{code}: {body}");
        if *code == 503 {
            // Too many checks at once: refused without hashing, counted.
            assert!(body.contains("try again in 1 s"), "{body}");
            assert!(head.contains("retry-after: 1"), "{head}");
        }
    }
    // And afterwards the account stays throttled.
    let (code, _, body) = raw_login(a, "target", "one more");
    assert_eq!(code, 429, "{body}");
}

#[test]
fn login_needs_a_json_content_type() {
    let (_pki, edge) = start();
    let a = edge.admin;
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts",
        &[
            ("Authorization", &bearer(&edge.token)),
            ("Content-Type", "application/json"),
        ],
        r#"{"name":"mallory","role":"viewer"}"#,
    );
    assert_eq!(code, 201, "{body}");
    let password = json(&body)["password"].as_str().unwrap().to_string();
    let login = serde_json::json!({"name": "mallory", "password": password}).to_string();
    // A cross-site form can post text/plain (or nothing) without a
    // preflight: refused before any password check.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let h: Vec<(&str, &str)> = ct.map(|c| vec![("Content-Type", c)]).unwrap_or_default();
        let (code, head, body) = request(a, "POST", "/api/v1/session", &h, &login);
        assert_eq!(code, 415, "{ct:?}: {body}");
        assert!(body.contains("application/json"), "{body}");
        assert!(!head.contains("set-cookie: fedge_session="), "{head}");
    }
    let (code, head, body) = request(
        a,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "application/json; charset=utf-8")],
        &login,
    );
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("set-cookie: fedge_session="), "{head}");
}

/// Every byte of the SQLite database and its WAL.
fn sqlite_bytes(edge: &Edge) -> Vec<u8> {
    let path = edge
        .store_url
        .strip_prefix("sqlite://")
        .unwrap()
        .to_string();
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
            all.extend(b);
        }
    }
    assert!(!all.is_empty(), "no database at {path}");
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Adds a viewer through the API, uses its token, disables it (it stops
/// at once), enables it (it works again); returns its token and password.
fn disable_scenario(edge: &Edge) -> (String, String) {
    let a = edge.admin;
    let op = bearer(&edge.token);
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts",
        &[("Authorization", &op)],
        r#"{"name":"bob","role":"viewer"}"#,
    );
    assert_eq!(code, 201, "{body}");
    let v = json(&body);
    let token = v["token"].as_str().unwrap().to_string();
    let password = v["password"].as_str().unwrap().to_string();
    assert_eq!(status(a, "GET", "/health", Some(&token)), 200);
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts/bob/disable",
        &[("Authorization", &op)],
        "",
    );
    assert_eq!(code, 400, "a reason is required: {body}");
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts/bob/disable",
        &[("Authorization", &op)],
        r#"{"reason":"left the team"}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["state"], "disabled");
    assert_eq!(status(a, "GET", "/health", Some(&token)), 401);
    assert_eq!(raw_login(a, "bob", &password).0, 401);
    // A reset does not enable a disabled account behind the operator's back.
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts/bob/reset",
        &[("Authorization", &op)],
        "",
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("enable it first"), "{body}");
    let (code, _, body) = request(a, "GET", "/api/v1/accounts", &[("Authorization", &op)], "");
    assert_eq!(code, 200, "{body}");
    let bob = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "bob")
        .cloned()
        .unwrap();
    assert_eq!(bob["state"], "disabled", "{bob}");
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts/bob/enable",
        &[("Authorization", &op)],
        "",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(a, "GET", "/health", Some(&token)), 200);
    // Extra tokens, and the audit names the acting account.
    let (code, _, body) = request(
        a,
        "POST",
        "/api/v1/accounts/bob/tokens",
        &[("Authorization", &op)],
        r#"{"label":"grafana","expires_in_days":90}"#,
    );
    assert_eq!(code, 201, "{body}");
    let extra = json(&body)["token"].as_str().unwrap().to_string();
    assert_eq!(status(a, "GET", "/metrics", Some(&extra)), 200);
    let trail = block(async {
        let s = Store::open(&edge.store_url).await.unwrap();
        let t = s.audit_entries(None).await.unwrap();
        s.close().await;
        t
    });
    let of_bob: Vec<(String, String)> = trail
        .iter()
        .filter(|e| e.subject == "bob")
        .map(|e| (e.actor.clone(), e.action.clone()))
        .collect();
    for action in ["add", "disabled", "active", "token"] {
        assert!(
            of_bob
                .iter()
                .any(|(who, what)| who == TESTKIT_OPERATOR && what == action),
            "no {action} by {TESTKIT_OPERATOR}: {of_bob:?}"
        );
    }
    (token, password)
}

#[test]
fn disabled_tokens_stop_at_once_and_no_secret_is_stored_in_clear() {
    let (_pki, edge) = start();
    let (token, password) = disable_scenario(&edge);
    let db = sqlite_bytes(&edge);
    assert!(!contains(&db, &token), "the token is in the database");
    assert!(!contains(&db, &password), "the password is in the database");
    assert!(
        !contains(&db, &edge.token),
        "the testkit token is in the database"
    );
    // What is stored is the token's hash.
    assert!(contains(&db, &fedge::store::secret_hash(&token)));
}

#[test]
fn accounts_on_postgresql() {
    let pg = fedge_testkit::pg::Postgres::start();
    let pki = Pki::new();
    let cfg = test_config(&pki, "").replace(
        &format!("url = \"sqlite://{}/fedge.db\"", pki.path().display()),
        &format!("url = \"{}\"", pg.url),
    );
    assert!(cfg.contains(&pg.url));
    let edge = Edge::start(&pki, &cfg);
    assert_eq!(edge.store_url, pg.url);
    assert_eq!(status(edge.admin, "GET", "/health", None), 401);
    disable_scenario(&edge);
    // A session on PostgreSQL too.
    let (code, _, body) = request(
        edge.admin,
        "POST",
        "/api/v1/accounts/bob/reset",
        &[("Authorization", &bearer(&edge.token))],
        "",
    );
    assert_eq!(code, 200, "{body}");
    let pw = json(&body)["password"].as_str().unwrap().to_string();
    let (code, other, body) = raw_login(edge.admin, "bob", &pw);
    assert_eq!(code, 200, "{body}");
    let (code, cookie, body) = raw_login(edge.admin, "bob", &pw);
    assert_eq!(code, 200, "{body}");
    let csrf = json(&body)["csrf"].as_str().unwrap().to_string();
    // On the one-time password: 403 until it is changed.
    assert_eq!(
        request(edge.admin, "GET", "/registry", &[("Cookie", &cookie)], "").0,
        403
    );
    let change = serde_json::json!({"old": pw, "new": "bob's own passphrase"}).to_string();
    let (code, _, body) = request(
        edge.admin,
        "POST",
        "/api/v1/session/password",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Content-Type", "application/json"),
        ],
        &change,
    );
    assert_eq!(code, 204, "{body}");
    assert_eq!(
        request(edge.admin, "GET", "/registry", &[("Cookie", &cookie)], "").0,
        200
    );
    // The other session ended with the change.
    assert_eq!(
        request(edge.admin, "GET", "/api/v1/me", &[("Cookie", &other)], "").0,
        401
    );
}

#[test]
fn fedge_user_add_prints_a_token_that_works() {
    let (_pki, edge) = start();
    let cfg = &edge.config_path;
    let out = fedge_ok(cfg, &["user", "add", "--role", "viewer", "carol"]);
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("API token: "))
        .unwrap_or_else(|| panic!("no token in {out}"))
        .trim()
        .to_string();
    assert!(out.contains("Authorization: Bearer"), "{out}");
    let pw = out
        .lines()
        .find_map(|l| l.strip_prefix("one-time console password: "))
        .unwrap_or_else(|| panic!("no password in {out}"));
    assert!(out.contains("changed at first login"), "{out}");
    assert_eq!(status(edge.admin, "GET", "/health", Some(&token)), 200);
    assert_eq!(
        status(edge.admin, "POST", "/registry/reload", Some(&token)),
        403
    );
    let (code, _, body) = raw_login(edge.admin, "carol", pw.trim());
    assert_eq!(code, 200, "{body}");

    let list = fedge_ok(cfg, &["user", "list", "--json"]);
    let v = json(&list);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "carol" && a["role"] == "viewer"),
        "{list}"
    );
    let extra = fedge_ok(
        cfg,
        &[
            "user",
            "token",
            "carol",
            "--label",
            "ci",
            "--expires",
            "90d",
        ],
    );
    let t2 = extra
        .split(": ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim();
    assert_eq!(status(edge.admin, "GET", "/metrics", Some(t2)), 200);
    fedge_ok(cfg, &["user", "disable", "carol", "--reason", "test over"]);
    assert_eq!(status(edge.admin, "GET", "/health", Some(&token)), 401);
    assert_eq!(status(edge.admin, "GET", "/health", Some(t2)), 401);

    // Usage mistakes: one line, exit code 2.
    for args in [
        &["user", "add", "--role", "root", "dave"][..],
        &["user", "add", "--role", "partner", "dave"][..],
        &[
            "user",
            "add",
            "--role",
            "viewer",
            "--partner",
            "x.test",
            "dave",
        ][..],
        &["user", "add", "--role", "viewer", "fedge-node"][..],
        &["user", "add", "--role", "viewer", "carol"][..],
        &["user", "token", "fedge-node"][..],
        &["user", "enable", "nobody"][..],
        &["user", "disable", "carol"][..],
    ] {
        let (code, _, err) = fedge_cli(cfg, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn the_cli_authenticates_through_the_database_without_audit_noise() {
    let (_pki, edge) = start();
    let cli = edge.cli_config("cli.toml");
    for _ in 0..3 {
        let out = fedge_ok(&cli, &["media", "list", "--json"]);
        assert!(json(&out)["sessions"].is_array(), "{out}");
    }
    let out = fedge_ok(&cli, &["media", "drain"]);
    assert!(out.contains("draining"), "{out}");
    fedge_ok(&cli, &["media", "drain", "--off"]);
    let (code, _, err) = fedge_cli(
        &cli,
        &[
            "partner",
            "add",
            "--domain",
            "partner.test",
            "--org",
            "Partner Org",
            "--edge-fqdn",
            "sip.partner.test",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("note:"),
        "the edge did not confirm the reload: {err}"
    );
    let trail = block(async {
        let s = Store::open(&edge.store_url).await.unwrap();
        let t = s.audit_entries(None).await.unwrap();
        s.close().await;
        t
    });
    let node: Vec<&str> = trail
        .iter()
        .filter(|e| e.subject == fedge::model::account::NODE_ACCOUNT)
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(node, ["add"], "only the node account's creation is audited");
    // Without the database, the CLI cannot authenticate: it says how.
    let bare = edge.config_path.parent().unwrap().join("bare.toml");
    std::fs::write(
        &bare,
        format!(
            "[admin]\nlisten = \"{}\"\n[store]\nurl = \"sqlite://{}/other.db\"\n",
            edge.admin,
            edge.config_path.parent().unwrap().display()
        ),
    )
    .unwrap();
    let (code, _, err) = fedge_cli(&bare, &["media", "list"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown, revoked or expired"), "{err}");
    // FEDGE_TOKEN is used instead when set.
    let out = std::process::Command::new(fedge_bin())
        .arg("--config")
        .arg(&bare)
        .args(["media", "list", "--json"])
        .env("FEDGE_TOKEN", &edge.token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn first_run_says_how_to_create_the_first_operator() {
    let pki = Pki::new();
    let cfg = test_config(&pki, "");
    let first = Edge::start(&pki, &cfg);
    let line = first
        .wait_log(&["no operator account exists yet"], Duration::from_secs(5))
        .expect("a first-run notice");
    assert!(line.contains("user add --role operator NAME"), "{line}");
    assert!(line.contains("--config"), "{line}");
    drop(first);
    // The testkit created an operator: the next start says nothing.
    let second = Edge::start(&pki, &cfg);
    assert!(
        second
            .wait_log(
                &["no operator account exists yet"],
                Duration::from_millis(300)
            )
            .is_none()
    );
}
