//! The web console without a browser: the `GET /` redirect for browsers,
//! login (wrong password said in words, cookie flags), the forced password
//! change, CSRF on every state-changing form (403 without the token, the
//! state unchanged), and a viewer's pages without change buttons and its
//! forged POST refused.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use fedge::model::account::Role;
use fedge::store::Store;
use fedge_testkit::*;

/// One HTTP/1.1 exchange: status, headers (lower-cased names), body.
fn req(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (top, body) = resp.split_once("\r\n\r\n").unwrap();
    let mut lines = top.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let hs = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, hs, body.to_string())
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Form-encodes `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

/// Every visible input and textarea has a label, headings start at h1 and
/// never skip a level, the page declares its language, tables have headers.
fn accessible(page: &str, html: &str) {
    assert!(html.contains("<html lang=\"en\">"), "{page}: lang");
    for tag in ["<input ", "<textarea "] {
        for piece in html.split(tag).skip(1) {
            let attrs = piece.split('>').next().unwrap();
            if attrs.contains("type=\"hidden\"") {
                continue;
            }
            let id = attrs
                .split("id=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("{page}: a control without id: {attrs}"));
            assert!(
                html.contains(&format!("<label for=\"{id}\"")),
                "{page}: control {id} has no label"
            );
        }
    }
    let mut last = 0;
    for piece in html.split("<h").skip(1) {
        let Some(level) = piece.chars().next().and_then(|c| c.to_digit(10)) else {
            continue;
        };
        assert!(level <= last + 1, "{page}: h{level} after h{last}");
        last = level;
    }
    assert!(last >= 1, "{page}: no heading");
    let tables = html.matches("<table").count();
    assert_eq!(
        tables,
        html.matches("<thead>").count(),
        "{page}: a table without headers"
    );
}

struct Console {
    addr: SocketAddr,
    cookie: String,
}

impl Console {
    fn login(addr: SocketAddr, name: &str, password: &str) -> (Console, String) {
        let (st, hs, body) = req(
            addr,
            "POST",
            "/console/login",
            &[],
            &form(&[("name", name), ("password", password)]),
        );
        assert_eq!(st, 303, "{body}");
        let set = header(&hs, "set-cookie").expect("a session cookie");
        assert!(set.starts_with("fedge_session="), "{set}");
        assert!(set.contains("HttpOnly"), "{set}");
        assert!(set.contains("SameSite=Strict"), "{set}");
        assert!(!set.contains("Secure"), "plain HTTP admin listener: {set}");
        let cookie = set.split(';').next().unwrap().to_string();
        let to = header(&hs, "location").unwrap().to_string();
        (Console { addr, cookie }, to)
    }
    fn get(&self, path: &str) -> (u16, Vec<(String, String)>, String) {
        req(self.addr, "GET", path, &[("Cookie", &self.cookie)], "")
    }
    fn post(&self, path: &str, pairs: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
        req(
            self.addr,
            "POST",
            path,
            &[("Cookie", &self.cookie)],
            &form(pairs),
        )
    }
}

#[test]
fn console_login_csrf_and_roles() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite://{}/fedge.db", pki.path().display());
    let store = rt.block_on(Store::open(&url)).unwrap();
    let ops = rt
        .block_on(store.add_account("ops", Role::Operator, None, "test"))
        .unwrap();
    let ops_pw = ops.password.unwrap();
    fedge_ok(
        &edge.config_path,
        &[
            "partner",
            "add",
            "--domain",
            "acme.test",
            "--org",
            "Acme Care",
            "--state",
            "requested",
            "--reason",
            "test",
        ],
    );
    let addr = edge.admin;

    // A browser opening the admin address lands on the console.
    let (st, hs, _) = req(addr, "GET", "/", &[("Accept", "text/html,*/*")], "");
    assert!(st == 303 || st == 307, "{st}");
    assert_eq!(header(&hs, "location"), Some("/console/"));
    // Without a session, a console page sends the browser to the login.
    let (st, hs, _) = req(addr, "GET", "/console/partners", &[], "");
    assert_eq!(st, 303);
    assert_eq!(header(&hs, "location"), Some("/console/login"));
    // A wrong password is said in words.
    let (st, _, body) = req(
        addr,
        "POST",
        "/console/login",
        &[],
        &form(&[("name", "ops"), ("password", "not the password")]),
    );
    assert_eq!(st, 401);
    assert!(body.contains("wrong account name or password"), "{body}");
    assert!(body.contains("<label for=\"password\">"), "{body}");
    accessible("/console/login", &body);

    // First login: the one-time password must be changed before anything.
    let (c, to) = Console::login(addr, "ops", &ops_pw);
    assert_eq!(to, "/console/password");
    let (st, hs, _) = c.get("/console/partners");
    assert_eq!(st, 303);
    assert_eq!(header(&hs, "location"), Some("/console/password"));
    let (_, _, page) = c.get("/console/password");
    let csrf = csrf_of(&page);
    let new_pw = "a long operator passphrase";
    let change = [
        ("current", ops_pw.as_str()),
        ("new", new_pw),
        ("again", new_pw),
    ];
    // Without the CSRF field: 403, and the password is unchanged.
    let (st, _, body) = c.post("/console/password", &change);
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let mut with = change.to_vec();
    with.push(("csrf", &csrf));
    let (st, hs, body) = c.post("/console/password", &with);
    assert_eq!(st, 303, "{body}");
    assert_eq!(header(&hs, "location"), Some("/console/"));

    // The partners list shows who is logged in, the role and the partner.
    // Logged in, the login page sends the browser on to the console.
    let (st, hs, _) = c.get("/console/login");
    assert_eq!((st, header(&hs, "location")), (303, Some("/console/")));
    let (st, hs, list) = c.get("/console/partners");
    assert_eq!(st, 200, "{list}");
    let csp = header(&hs, "content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(header(&hs, "cache-control"), Some("no-store"));
    assert!(
        list.contains("Logged in as <strong>ops</strong> (role: <strong>operator</strong>)"),
        "{list}"
    );
    assert!(list.contains("Acme Care"), "{list}");
    assert!(list.contains("lang=\"en\""));
    let id = list
        .split("/console/partners/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (_, _, p) = c.get(&format!("/console/partners/{id}"));
    assert!(p.contains("id=\"verb-agreement-sent\""), "{p}");
    assert!(
        !p.contains("id=\"verb-enable\""),
        "enable is not allowed from requested: {p}"
    );
    // A lifecycle POST without the CSRF token: 403, state unchanged.
    let verb = format!("/console/partners/{id}/verb");
    let (st, _, _) = c.post(&verb, &[("verb", "agreement-sent"), ("reason", "sent")]);
    assert_eq!(st, 403);
    let (_, _, p) = c.get(&format!("/console/partners/{id}"));
    assert!(p.contains("id=\"state\">requested<"), "{p}");
    // With it: POST-redirect-GET, the change noted once and on the history.
    let csrf = csrf_of(&p);
    let (st, hs, _) = c.post(
        &verb,
        &[
            ("verb", "agreement-sent"),
            ("reason", "sent by e-mail"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(st, 303);
    let flash = header(&hs, "set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (_, _, p) = req(
        addr,
        "GET",
        &format!("/console/partners/{id}"),
        &[("Cookie", &format!("{}; {flash}", c.cookie))],
        "",
    );
    assert!(p.contains("id=\"state\">agreement_sent<"), "{p}");
    assert!(
        p.contains("id=\"flash\">acme.test: requested -&#62; agreement_sent (agreement-sent)"),
        "{p}"
    );
    assert!(p.contains("<td>ops</td><td>agreement-sent</td>"), "{p}");
    assert!(p.contains("sent by e-mail"), "{p}");

    // CVI: a CSV with a bad row enrols nothing and names the row's line.
    let (_, _, cvi) = c.get("/console/cvi");
    assert!(cvi.contains("id=\"no-organisers\""), "{cvi}");
    let csv = "EmailAddress\nann.organiser@nhs.net\nnot-an-address\n";
    let enrol = [
        ("org", "Leeds Teaching Hospitals"),
        ("ods", "RR8"),
        ("teams_enabled", "yes"),
        ("csv", csv),
        ("csrf", csrf.as_str()),
    ];
    let (st, _, body) = c.post("/console/cvi/enrol", &enrol);
    assert_eq!(st, 422, "{body}");
    assert!(
        body.contains("<th scope=\"row\">3</th>"),
        "line 3 named: {body}"
    );
    assert!(body.contains("not-an-address"), "{body}");
    assert!(
        body.contains("id=\"no-organisers\""),
        "nothing enrolled: {body}"
    );
    // Ticking "enrol the good rows" enrols the good one.
    let mut partial = enrol.to_vec();
    partial.push(("partial", "yes"));
    let (st, _, body) = c.post("/console/cvi/enrol", &partial);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("ann.organiser@nhs.net</th>"), "{body}");
    // A meeting: its page shows the invite text read-only, with a copy button.
    let (st, hs, _) = c.post(
        "/console/cvi/meetings",
        &[
            ("organiser", "ann.organiser@nhs.net"),
            ("subject", "MDT"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(st, 303);
    let meeting_page = header(&hs, "location").unwrap().to_string();
    assert!(
        meeting_page.starts_with("/console/cvi/meetings/"),
        "{meeting_page}"
    );
    let (st, _, m) = c.get(&meeting_page);
    assert_eq!(st, 200, "{m}");
    assert!(m.contains("<textarea id=\"invite\" readonly"), "{m}");
    assert!(m.contains("id=\"copy\""), "{m}");
    assert!(!m.contains("onclick"), "no inline script: {m}");
    assert!(m.contains("can be joined"), "{m}");

    // A viewer sees no change buttons, and its forged POST is refused.
    rt.block_on(store.add_account("watcher", Role::Viewer, None, "test"))
        .unwrap();
    rt.block_on(store.set_password("watcher", "a viewer's passphrase", "test"))
        .unwrap();
    let (v, to) = Console::login(addr, "watcher", "a viewer's passphrase");
    assert_eq!(to, "/console/");
    let (st, _, p) = v.get(&format!("/console/partners/{id}"));
    assert_eq!(st, 200);
    assert!(p.contains("(role: <strong>viewer</strong>)"), "{p}");
    assert!(
        !p.contains("/verb\""),
        "a viewer sees no lifecycle form: {p}"
    );
    let vcsrf = csrf_of(&p);
    let (st, _, body) = v.post(
        &verb,
        &[
            ("verb", "agreement-signed"),
            ("reason", "forged"),
            ("csrf", &vcsrf),
        ],
    );
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("may not change anything"), "{body}");
    let (_, _, cv) = v.get("/console/cvi");
    assert!(cv.contains("ann.organiser@nhs.net"), "{cv}");
    assert!(
        !cv.contains("id=\"enrol\""),
        "a viewer gets no enrol form: {cv}"
    );
    let (_, _, n) = v.get("/console/node");
    assert!(!n.contains("/console/node/drain"), "{n}");
    let (st, _, _) = v.post(
        "/console/node/drain",
        &[
            ("what", "media"),
            ("on", "true"),
            ("confirm", "yes"),
            ("csrf", &vcsrf),
        ],
    );
    assert_eq!(st, 403);
    let (_, _, p) = c.get(&format!("/console/partners/{id}"));
    assert!(p.contains("id=\"state\">agreement_sent<"), "{p}");

    // Every page the operator and the viewer saw is accessible.
    for path in [
        "/console/password".to_string(),
        "/console/partners".to_string(),
        format!("/console/partners/{id}"),
        "/console/cvi".to_string(),
        meeting_page.clone(),
        "/console/node".to_string(),
    ] {
        let (st, _, html) = c.get(&path);
        assert_eq!(st, 200, "{path}: {html}");
        accessible(&path, &html);
    }

    // Logging out ends the session.
    let (st, _, _) = c.post("/console/logout", &[("csrf", &csrf)]);
    assert_eq!(st, 303);
    let (st, hs, _) = c.get("/console/partners");
    assert_eq!(st, 303);
    assert_eq!(header(&hs, "location"), Some("/console/login"));
}

/// The date and RFC 3339 time `days` from now (UTC).
fn in_days(days: i64) -> (String, String) {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let rfc = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    (rfc[..10].to_string(), rfc)
}

/// The row of the partners table naming `org`.
fn row_of<'a>(list: &'a str, org: &str) -> &'a str {
    list.split("<tr>")
        .find(|r| r.contains(&format!(">{org}</a>")))
        .unwrap_or_else(|| panic!("no row for {org}: {list}"))
}

/// Edge certificates stored with the FPA: the partners list and the
/// partner page warn, in words, of one expiring within 30 days or expired,
/// and show its subject, names and not-after; the partner's own account
/// sees the same on its page; one far from expiry is shown without a
/// warning, and a partner without one says so.
#[test]
fn console_warns_of_edge_certificate_expiry() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite://{}/fedge.db", pki.path().display());
    let store = rt.block_on(Store::open(&url)).unwrap();
    let mut ids = Vec::new();
    for (domain, org) in [
        ("soon.test", "Soon Org"),
        ("later.test", "Later Org"),
        ("old.test", "Old Org"),
        ("none.test", "Nocert Org"),
    ] {
        fedge_ok(
            &edge.config_path,
            &[
                "partner",
                "add",
                "--domain",
                domain,
                "--org",
                org,
                "--ig-expires",
                "2099-01-31",
                "--state",
                "requested",
                "--reason",
                "test",
            ],
        );
        ids.push(rt.block_on(store.partner_by_domain(domain)).unwrap().id);
    }
    let (soon_date, soon) = in_days(10);
    let (later_date, later) = in_days(200);
    let (old_date, old) = in_days(-3);
    for (id, name, not_after) in [
        (&ids[0], "sip.soon.test", &soon),
        (&ids[1], "sip.later.test", &later),
        (&ids[2], "sip.old.test", &old),
    ] {
        let c = fedge::store::PartnerCert {
            partner_id: id.clone(),
            pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            not_after: not_after.clone(),
            subject: format!("CN={name}"),
            names: format!("{name},alt.{name}"),
        };
        rt.block_on(store.set_partner_cert(&c, "fpa-intake:test"))
            .unwrap();
    }
    rt.block_on(store.add_account("ops", Role::Operator, None, "test"))
        .unwrap();
    rt.block_on(store.set_password("ops", "an operator's passphrase", "test"))
        .unwrap();
    rt.block_on(store.add_account(
        "spoc@soon.test",
        Role::Partner,
        Some(ids[0].as_str()),
        "test",
    ))
    .unwrap();
    rt.block_on(store.set_password("spoc@soon.test", "the contact's passphrase", "test"))
        .unwrap();
    let soon_warning = format!("Warning: Edge certificate expires in 10 days ({soon_date})");

    // The list: a column with the expiry, and the warnings in words.
    let (c, _) = Console::login(edge.admin, "ops", "an operator's passphrase");
    let (st, _, list) = c.get("/console/partners");
    assert_eq!(st, 200, "{list}");
    assert!(
        list.contains("<th scope=\"col\">Certificate expires</th>"),
        "{list}"
    );
    let row = row_of(&list, "Soon Org");
    assert!(row.contains(&format!("<td>{soon_date}</td>")), "{row}");
    assert!(row.contains(&soon_warning), "{row}");
    let row = row_of(&list, "Later Org");
    assert!(row.contains(&format!("<td>{later_date}</td>")), "{row}");
    assert!(!row.contains("Warning"), "{row}");
    let row = row_of(&list, "Old Org");
    assert!(
        row.contains(&format!("Warning: Edge certificate expired on {old_date}")),
        "{row}"
    );
    let row = row_of(&list, "Nocert Org");
    assert!(row.contains("<td>none on record</td>"), "{row}");
    assert!(!row.contains("Warning"), "{row}");

    // The partner page: the warning at the top and in the certificate's
    // section, with its subject, names and not-after.
    let soon_page = format!("/console/partners/{}", ids[0]);
    let (st, _, p) = c.get(&soon_page);
    assert_eq!(st, 200, "{p}");
    assert!(
        p.contains(&format!(
            "<p class=\"warn\" role=\"note\">{soon_warning}</p>"
        )),
        "{p}"
    );
    assert!(
        p.contains(&format!(
            "<p class=\"warn\" id=\"cert-warning\">{soon_warning}</p>"
        )),
        "{p}"
    );
    assert!(p.contains("<dd>CN=sip.soon.test</dd>"), "{p}");
    assert!(
        p.contains("<dd>sip.soon.test, alt.sip.soon.test</dd>"),
        "{p}"
    );
    assert!(
        p.contains(&format!("<dd id=\"cert-not-after\">{soon_date} ")),
        "{p}"
    );
    accessible(&soon_page, &p);
    let (_, _, p) = c.get(&format!("/console/partners/{}", ids[1]));
    assert!(p.contains("<dd>CN=sip.later.test</dd>"), "{p}");
    assert!(!p.contains("id=\"cert-warning\""), "{p}");
    let (_, _, p) = c.get(&format!("/console/partners/{}", ids[3]));
    assert!(p.contains("id=\"no-cert\""), "{p}");
    assert!(!p.contains("Edge certificate expire"), "{p}");

    // The partner's own account sees its certificate and the warning, and
    // no other partner's certificate.
    let (s, to) = Console::login(edge.admin, "spoc@soon.test", "the contact's passphrase");
    assert_eq!(to, "/console/");
    let (st, _, p) = s.get(&soon_page);
    assert_eq!(st, 200, "{p}");
    assert!(p.contains("(role: <strong>partner</strong>)"), "{p}");
    assert!(p.contains(&soon_warning), "{p}");
    assert!(p.contains("<dd>CN=sip.soon.test</dd>"), "{p}");
    let (st, _, p) = s.get(&format!("/console/partners/{}", ids[1]));
    assert_eq!(st, 404, "{p}");
    assert!(!p.contains("sip.later.test"), "{p}");
}

/// A partner's verdicts over time: the hourly totals the nodes add to the
/// store (summed: two nodes' counts for one hour show as one row), the
/// last 24 hours only, on its own page and not on another partner's.
#[test]
fn a_partner_sees_its_verdicts_per_hour_summed_over_nodes() {
    use fedge::federation::verdicts::hour_of;
    use fedge::store::VerdictCount;
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite://{}/fedge.db", pki.path().display());
    let store = rt.block_on(Store::open(&url)).unwrap();
    let mut ids = Vec::new();
    for (domain, org) in [("mine.test", "Mine Org"), ("theirs.test", "Theirs Org")] {
        fedge_ok(
            &edge.config_path,
            &["partner", "add", "--domain", domain, "--org", org],
        );
        ids.push(rt.block_on(store.partner_by_domain(domain)).unwrap().id);
    }
    let now = time::OffsetDateTime::now_utc();
    let row = |hour: String, partner: &str, rule: &str, count: i64| VerdictCount {
        hour,
        partner: partner.into(),
        kind: "refused".into(),
        rule: rule.into(),
        direction: "inbound".into(),
        count,
    };
    // Node A and node B each add their counts for this hour.
    for n in [3, 4] {
        rt.block_on(store.add_verdict_counts(&[row(
            hour_of(now),
            "mine.test",
            "file_transfer",
            n,
        )]))
        .unwrap();
    }
    rt.block_on(store.add_verdict_counts(&[
        row(
            hour_of(now - time::Duration::hours(30)),
            "mine.test",
            "too_old",
            9,
        ),
        row(hour_of(now), "theirs.test", "not_mine", 5),
    ]))
    .unwrap();
    rt.block_on(store.add_account(
        "spoc@mine.test",
        Role::Partner,
        Some(ids[0].as_str()),
        "test",
    ))
    .unwrap();
    rt.block_on(store.set_password("spoc@mine.test", "the contact's passphrase", "test"))
        .unwrap();

    let (c, _) = Console::login(edge.admin, "spoc@mine.test", "the contact's passphrase");
    let (st, _, page) = c.get(&format!("/console/partners/{}", ids[0]));
    assert_eq!(st, 200, "{page}");
    let table = &page[page
        .find("<table id=\"per-hour\">")
        .expect("the per-hour table")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(
        table.contains(&format!(
            "<th scope=\"row\">{}:00</th><td>refused</td><td>file_transfer</td><td>inbound</td><td>7</td>",
            hour_of(now)
        )),
        "{table}"
    );
    assert!(!table.contains("too_old"), "older than 24 hours: {table}");
    assert!(!table.contains("not_mine"), "another partner's: {table}");
    accessible("partner page with verdicts per hour", &page);
    let (st, _, _) = c.get(&format!("/console/partners/{}", ids[1]));
    assert_eq!(st, 404);
}
