//! The web console in a real browser: headless Chromium driven through
//! Debian's chromedriver with fantoccini, against the real binary with
//! Kamailio and SIPp as the partner (as tests/policy_peers.rs does).
//!
//! The partner's technical contact submits the FPA on the public
//! listener's form (`/fpa`) with its edge's certificate (the one the lab's
//! Kamailio presents) and reads its reference; an operator logs in and
//! changes the one-time password, sees the certificate's expiry warning,
//! takes the submission (partner.test in `requested` with a requested
//! contact account) through agreement-sent, agreement-signed and approve;
//! the partner's tester passes the IM test; the operator enables it (the
//! public `/federated` page then lists it with its date and intended use),
//! suspends it with a reason (no longer listed) and reads both reasons and
//! the acting account in the history; the contact account, activated from
//! the console, logs in and sees its partner only (another's page is 404);
//! a viewer sees no change button and a forged POST from its browser is
//! refused. Every page is saved as a screenshot under
//! target/console-screenshots/.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use fedge::model::account::Role;
use fedge::store::Store;
use fedge_testkit::browser::Driver;
use fedge_testkit::lab::*;
use fedge_testkit::peers::{Sipp, scenario};
use fedge_testkit::*;

fn shots_dir() -> PathBuf {
    let d = workspace_root().join("target/console-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A browser on the console at `base`.
struct Tab {
    c: Client,
    base: String,
}

impl Tab {
    async fn go(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }
    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
    }
    /// The text of `css` (whitespace collapsed), retried while the page
    /// is still being replaced after a navigation.
    async fn text(&self, css: &str) -> String {
        let t0 = Instant::now();
        loop {
            let got = match self.c.find(Locator::Css(css)).await {
                Ok(e) => e.text().await,
                Err(e) => Err(e),
            };
            match got {
                Ok(s) => return s.split_whitespace().collect::<Vec<_>>().join(" "),
                Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("{css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    async fn body(&self) -> String {
        self.text("body").await
    }
    async fn has(&self, css: &str) -> bool {
        !self.c.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }
    async fn fill(&self, css: &str, value: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }
    async fn click(&self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }
    /// Clicks a control that submits a form or follows a link, and waits
    /// until the next page has replaced this one.
    async fn submit(&self, css: &str) {
        self.c
            .execute("document.documentElement.dataset.old = '1'", vec![])
            .await
            .unwrap();
        self.click(css).await;
        let t0 = Instant::now();
        loop {
            let fresh = self
                .c
                .execute(
                    "return document.readyState === 'complete' && !document.documentElement.dataset.old",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if fresh {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "{css} led nowhere");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_string()
    }
    /// Logs in with the keyboard only: typing, Tab, and Enter to submit.
    async fn login(&self, name: &str, password: &str) {
        self.go("/console/login").await;
        let n = self.c.find(Locator::Id("name")).await.unwrap();
        n.send_keys(&format!("{name}\u{E004}{password}\u{E007}"))
            .await
            .unwrap();
        self.wait_path_not("/console/login").await;
    }
    async fn wait_path_not(&self, p: &str) {
        let t0 = Instant::now();
        while self.path().await == p {
            assert!(t0.elapsed() < Duration::from_secs(10), "still on {p}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    async fn change_password(&self, old: &str, new: &str) {
        assert_eq!(self.path().await, "/console/password");
        self.fill("#current", old).await;
        self.fill("#new", new).await;
        self.fill("#again", new).await;
        self.submit("#change").await;
        self.wait_path_not("/console/password").await;
    }
    async fn logout(&self) {
        self.submit(".who button").await;
        assert_eq!(self.path().await, "/console/login");
    }
    /// Applies a lifecycle verb from the partner page, with a reason.
    async fn verb(&self, verb: &str, reason: &str) -> String {
        self.fill(&format!("#reason-{verb}"), reason).await;
        self.submit(&format!("#verb-{verb} button")).await;
        self.text("#flash").await
    }
}

/// The partner's tester sends an IM to the federation test address and
/// accepts the edge's reply (tests/policy_peers.rs does the same).
fn im_test(lab: &Lab) {
    let reply_checks = ereg("sip:federation-test@fedge\\.test", "From:", "f", false)
        + &ereg("this reply proves the way back", "body", "b", false);
    let tester = Sipp::spawn(
        lab.dir(),
        &scenario(
            lab.dir(),
            "message_uas.xml",
            &[
                ("CHECKS", &reply_checks),
                ("REFERENCES", &refs(&["f", "b"])),
            ],
        ),
        lab.users,
        None,
        &[],
    );
    let r = lab.partner_uac(
        &scenario(lab.dir(), "message_uac.xml", &[]),
        "federation-test",
        "fedge.test",
        "partner.test",
    );
    lab.assert_ok("IM to the test address", &r);
    lab.assert_ok(
        "the reply reaches the partner's tester",
        &tester.wait(LIMIT),
    );
}

/// The usage statement the FPA states and the published list shows.
const USAGE: &str = "Ward clerks message the home team's discharge coordinators.";

/// The partner's technical contact fills in the public FPA form with the
/// keyboard (dates and the PEM set as a paste would), submits it and
/// returns the reference on the answer page.
async fn submit_fpa(p: &Tab, pem: &str) -> String {
    p.go("/fpa").await;
    assert!(
        p.text("h1")
            .await
            .contains("Federation Partnership Agreement")
    );
    for (path, value) in [
        ("/organisation/name", "Partner Trust"),
        ("/organisation/registration_number", "RPT"),
        (
            "/organisation/address",
            "1 Partner Street, Partnerton PT1 1AA",
        ),
        (
            "/organisation/information_governance/level",
            "DSPT Standards Met",
        ),
        ("/usage/statement", USAGE),
        ("/technical/sip_domains", "partner.test"),
        ("/technical/sip_address", "sip:alice@partner.test"),
        ("/technical/edge_fqdn", "sip.partner.test"),
        ("/contacts/spoc/name", "Partner Service Desk"),
        ("/contacts/spoc/email", "desk@partner.test"),
        ("/contacts/spoc/phone", "+44 1000 000000"),
        ("/contacts/technical/name", "Alice Tester"),
        ("/contacts/technical/email", "alice@partner.test"),
        ("/contacts/technical/phone", "+44 1000 000001"),
        ("/contacts/technical/sip_address", "sip:alice@partner.test"),
        ("/contacts/signatory/name", "Pat Lee"),
        ("/contacts/signatory/role", "Chief Executive"),
    ] {
        p.fill(&format!("#f{}", path.replace('/', "-")), value)
            .await;
    }
    for (id, value) in [
        (
            "f-organisation-information_governance-expires",
            "2030-01-31",
        ),
        ("f-contacts-signatory-signed_on", "2026-11-01"),
        ("fcertificate_pem", pem),
    ] {
        p.c.execute(
            "document.getElementById(arguments[0]).value = arguments[1]",
            vec![serde_json::json!(id), serde_json::json!(value)],
        )
        .await
        .unwrap();
    }
    for (id, value) in [
        ("f-organisation-sector", "nhs"),
        ("f-technical-product", "sfb_2019"),
    ] {
        p.c.find(Locator::Id(id))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }
    p.click("input[name='/usage/data/clinical']").await;
    p.click("input[name='/usage/data/general']").await;
    p.c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
    p.shot("fpa-form").await;
    p.submit("form[action='/fpa'] button[type=submit]").await;
    assert_eq!(
        p.text("h1").await,
        "Agreement received",
        "{}",
        p.body().await
    );
    let body = p.body().await;
    assert!(body.contains("alice@partner.test"), "{body}");
    p.shot("fpa-submitted").await;
    p.text("dd strong").await
}

/// The public list of federated organisations, as the browser shows it.
async fn published(p: &Tab) -> String {
    p.go("/federated").await;
    assert!(p.text("h1").await.contains("Federated organisations"));
    p.body().await
}

#[test]
fn console_in_chromium_from_fpa_to_suspension() {
    // partner.test is not imported: its contact submits the FPA.
    let lab = Lab::with("", None);
    lab.cli(&[
        "partner",
        "add",
        "--domain",
        "other.test",
        "--org",
        "Other Org",
        "--state",
        "requested",
        "--reason",
        "another FPA",
    ]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite://{}/fedge.db", lab.dir().display());
    let store = rt.block_on(Store::open(&url)).unwrap();
    let other = rt
        .block_on(store.partner_by_domain("other.test"))
        .unwrap()
        .id;
    let ops = rt
        .block_on(store.add_account("ops", Role::Operator, None, "bootstrap"))
        .unwrap();
    rt.block_on(store.add_account("watcher", Role::Viewer, None, "bootstrap"))
        .unwrap();
    rt.block_on(store.set_password("watcher", "a viewer's passphrase", "bootstrap"))
        .unwrap();
    // The certificate the lab's Kamailio presents as sip.partner.test.
    let pem = std::fs::read_to_string(&lab.pki.partner.cert).unwrap();
    let driver = Driver::start();
    rt.block_on(flow(&lab, &driver, ops.password.unwrap(), &other, &pem));
    // The submission's contact is the account that logged in above.
    let alice = rt
        .block_on(store.account("alice@partner.test"))
        .unwrap()
        .unwrap();
    assert_eq!(alice.role, Role::Partner);
}

async fn flow(lab: &Lab, driver: &Driver, ops_pw: String, other: &str, pem: &str) {
    let base = format!("http://{}", lab.edge.admin);
    let t = Tab {
        c: driver.browser((1280, 800), &[]).await,
        base: base.clone(),
    };
    let public = Tab {
        c: t.c.clone(),
        base: format!("http://{}", lab.edge.public),
    };

    // The partner's technical contact submits the FPA on the public listener.
    let pid = submit_fpa(&public, pem).await;
    assert!(pid.starts_with("p_"), "reference {pid}");
    // Lab only: the partner's edge is Kamailio on loopback, which DNS for
    // sip.partner.test would not find; the CLI asks the edge to reload.
    lab.cli(&[
        "partner",
        "update",
        "partner.test",
        "--set",
        &format!("address={}", lab.kam.tls),
        "--reason",
        "lab: the partner's edge listens on loopback",
    ]);
    lab.wait_state("partner.test", Some("requested"));
    let pid = pid.as_str();
    let page = format!("/console/partners/{pid}");
    // Not published while requested.
    assert!(!published(&public).await.contains("Partner Trust"));

    // The admin address in a browser: the console's login page.
    t.go("/").await;
    assert_eq!(t.path().await, "/console/login");
    t.shot("login").await;
    // First login: the one-time password is changed before anything else.
    t.login("ops", &ops_pw).await;
    assert_eq!(t.path().await, "/console/password");
    assert!(t.body().await.contains("one-time password"));
    t.shot("password-change").await;
    t.change_password(&ops_pw, "an operator's long passphrase")
        .await;
    assert_eq!(t.path().await, "/console/partners");
    assert!(t.text("#who").await.contains("ops (role: operator)"));
    assert!(t.text("#partners").await.contains("Partner Trust"));
    t.shot("partners").await;
    // The certificate from the FPA (the lab's, valid 30 days): warned of.
    assert!(
        t.text("#partners")
            .await
            .contains("Warning: Edge certificate expires in")
    );
    t.go("/console/partners?state=requested").await;
    assert!(t.text("#partners").await.contains("Other Org"));

    // The submitted FPA through the lifecycle.
    t.go(&page).await;
    assert!(
        t.text("#cert-warning")
            .await
            .contains("Edge certificate expires in")
    );
    assert!(t.text("#cert").await.contains("sip.partner.test"));
    assert!(
        t.text("#history")
            .await
            .contains("fpa-intake:alice@partner.test")
    );
    t.shot("partner-requested").await;
    assert!(!t.has("#verb-enable").await, "no enable from requested");
    let f = t
        .verb("agreement-sent", "FPA sent to the technical contact")
        .await;
    assert!(f.contains("requested -> agreement_sent"), "{f}");
    t.verb("agreement-signed", "signed FPA received").await;
    let f = t.verb("approve", "IG checked").await;
    assert!(f.contains("-> approved"), "{f}");
    lab.wait_state("partner.test", Some("approved"));
    // Enabling before the IM test is refused, in words.
    let f = t.verb("enable", "too early").await;
    assert!(f.contains("no IM test has passed"), "{f}");
    t.shot("partner-enable-refused").await;

    // The partner's tester passes the IM test; the page shows it.
    im_test(lab);
    let t0 = Instant::now();
    loop {
        t.go(&page).await;
        if t.text("#im-test").await.contains("passed at") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "IM test never shown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t.text("#im-test").await.contains("sip:alice@partner.test"));
    let f = t
        .verb("enable", "IM test passed with the partner's tester")
        .await;
    assert!(f.contains("approved -> enabled"), "{f}");
    lab.wait_state("partner.test", Some("enabled"));
    lab.message_delivered("bob", "enabled from the console");
    t.go(&page).await;
    assert!(t.text("#counts").await.contains("passed"));
    t.shot("partner-enabled").await;
    // The published list: the organisation, the date it was federated
    // (today, UTC) and its intended use.
    let list = published(&public).await;
    let today = fedge::store::today();
    assert!(
        list.contains(&format!("Partner Trust {today} {USAGE}")),
        "{list}"
    );
    public.shot("federated-enabled").await;
    t.go(&page).await;
    let f = t.verb("suspend", "IG certification under review").await;
    assert!(f.contains("enabled -> suspended"), "{f}");
    lab.wait_state("partner.test", Some("suspended"));
    let list = published(&public).await;
    assert!(!list.contains("Partner Trust"), "{list}");
    assert!(list.contains("No organisation is federated yet."), "{list}");
    public.shot("federated-suspended").await;
    t.go(&page).await;
    let h = t.text("#history").await;
    assert!(
        h.contains("ops suspend enabled -> suspended IG certification under review"),
        "{h}"
    );
    assert!(
        h.contains("ops enable approved -> enabled IM test passed with the partner's tester"),
        "{h}"
    );
    assert!(h.contains("fedge im-test"), "{h}");
    t.shot("partner-history").await;
    t.go("/console/node").await;
    assert!(
        t.text("#switches")
            .await
            .contains("Media relay taking new sessions")
    );
    assert!(t.text("#listeners").await.contains("federation"));
    // A drain switch asks for confirmation (a checkbox, keyboard-reachable).
    t.click("#confirm-media").await;
    t.submit("#drain-media button").await;
    assert!(t.text("#flash").await.contains("media: draining"));
    assert!(
        t.text("#switches")
            .await
            .contains("Media relay draining: no new sessions")
    );
    t.shot("node").await;
    t.click("#confirm-media").await;
    t.submit("#drain-media button").await;
    assert!(
        t.text("#switches")
            .await
            .contains("Media relay taking new sessions")
    );

    // CVI: enrol an organiser from the form, then create a meeting.
    t.go("/console/cvi").await;
    t.fill("#org", "Leeds Teaching Hospitals").await;
    t.fill("#ods", "RR8").await;
    t.click("#teams_enabled").await;
    t.fill(
        "#csv",
        "EmailAddress\nann.organiser@nhs.net\nnot-an-address",
    )
    .await;
    t.submit("#enrol button").await;
    assert!(t.text("#row-errors").await.contains("3"));
    t.shot("cvi-row-errors").await;
    t.click("#partial").await;
    t.submit("#enrol button").await;
    assert!(
        t.text("#organisers")
            .await
            .contains("ann.organiser@nhs.net")
    );
    t.fill("#organiser", "ann.organiser@nhs.net").await;
    t.fill("#subject", "Cardiology MDT").await;
    t.submit("#meeting button").await;
    assert!(t.path().await.starts_with("/console/cvi/meetings/"));
    let invite = t.c.find(Locator::Id("invite")).await.unwrap();
    assert_eq!(
        invite.attr("readonly").await.unwrap().as_deref(),
        Some("true")
    );
    assert!(
        invite
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
            .contains(&t.text("#conference-id").await)
    );
    // The copy button (the console's one script, allowed by its CSP).
    t.click("#copy").await;
    let t0 = Instant::now();
    while t.text("#copy").await != "Copied" {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the copy button did nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.shot("cvi-meeting").await;

    // The contact's requested account, activated: credentials shown once.
    t.go(&page).await;
    t.submit("#activate-1").await;
    assert_eq!(t.text("#cred-account").await, "alice@partner.test");
    let spoc_pw = t.text("#cred-password").await;
    assert!(t.text("#cred-token").await.starts_with("fdg_"));
    t.shot("account-activated").await;
    t.logout().await;

    // The partner account sees its partner only.
    t.login("alice@partner.test", &spoc_pw).await;
    t.change_password(&spoc_pw, "the contact's own passphrase")
        .await;
    assert_eq!(t.path().await, page);
    assert!(t.text("#who").await.contains("(role: partner)"));
    assert!(t.text("#state").await.contains("suspended"));
    assert!(
        t.text("#history")
            .await
            .contains("IG certification under review")
    );
    assert!(
        !t.has("form.verb").await,
        "a partner account changes nothing"
    );
    assert!(!t.has("a[href='/console/partners']").await);
    t.shot("partner-scoped").await;
    t.go(&format!("/console/partners/{other}")).await;
    assert!(t.text("#error").await.contains("no such partner"));
    assert!(!t.body().await.contains("Other Org"));
    t.shot("partner-other-404").await;
    t.go("/console/partners").await;
    assert!(t.text("h1").await.contains("403"));
    t.logout().await;

    // A viewer: no change buttons; a POST forged in its browser is refused.
    t.login("watcher", "a viewer's passphrase").await;
    t.go(&page).await;
    assert!(t.text("#who").await.contains("(role: viewer)"));
    assert!(!t.has("form.verb").await);
    t.shot("viewer-partner").await;
    t.c.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];\
         for (const [k, v] of [['verb', 'revoke'], ['reason', 'forged'], ['csrf', document.querySelector('input[name=csrf]').value]]) {\
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }\
         document.body.appendChild(f); f.submit();",
        vec![serde_json::json!(format!("{page}/verb"))],
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    while !t.has("#error").await {
        assert!(t0.elapsed() < Duration::from_secs(10), "no refusal page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(t.text("#error").await.contains("may not change anything"));
    t.shot("viewer-forged-post").await;
    lab.wait_state("partner.test", Some("suspended"));
    t.c.clone().close().await.unwrap();
}
