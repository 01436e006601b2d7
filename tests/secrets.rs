//! Secrets and log hygiene against the real binary (issue 14, points 13
//! and 14): hidden-topology Route tokens bound to their partner and to a
//! lifetime, key rotation with a grace period, the database file readable
//! by its owner only, no database password in any log line, control
//! characters escaped in text logs, and a bounded number of warnings from
//! a flood of malformed messages.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedge::pki::LeafSpec;
use fedge::sip::SipMessage;
use fedge::sip::framing::{DatagramItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge_testkit::*;

const POOL_RR: &str = "<sip:pool1.corp.local;lr>";
const POOL_CONTACT: &str = "sip:bob@10.0.0.9:5060;transport=udp";

/// fedge with its next hop on `home`, `[topology]` (or any) extra
/// sections, and partner.test (sip.partner.test) enabled.
fn edge_with_home(pki: &Pki, home: &UdpSocket, extra: &str) -> Edge {
    let port = home.local_addr().unwrap().port();
    let cfg = test_config(pki, extra).replace(
        "next_hop = \"sip:127.0.0.1:5080;transport=udp\"",
        &format!("next_hop = \"sip:127.0.0.1:{port};transport=udp\""),
    );
    let edge = Edge::start(pki, &cfg);
    enable_partner(&edge, "partner.test", PARTNER_FQDN);
    edge
}

fn enable_partner(edge: &Edge, domain: &str, edge_fqdn: &str) {
    fedge_ok(
        &edge.config_path,
        &[
            "partner",
            "add",
            "--domain",
            domain,
            "--org",
            &format!("Org of {domain}"),
            "--edge-fqdn",
            edge_fqdn,
            "--state",
            "enabled",
            "--reason",
            "test",
        ],
    );
    let t0 = Instant::now();
    while !admin_get(edge.admin, "/registry")
        .to_string()
        .contains(domain)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "registry never loaded {domain}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn recv_datagram(sock: &UdpSocket, within: Duration) -> Option<(SipMessage, SocketAddr)> {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut b = vec![0u8; 65535];
    let (n, from) = sock.recv_from(&mut b).ok()?;
    match parse_datagram(Bytes::copy_from_slice(&b[..n]), &Limits::default()) {
        DatagramItem::Message(m) => Some((m, from)),
        other => panic!("edge sent something unparsable: {other:?}"),
    }
}

async fn final_reply(c: &mut SipTlsClient) -> SipMessage {
    loop {
        match c.recv(Duration::from_secs(10)).await {
            Reply::Message(m) if m.status().is_some_and(|s| s < 200) => continue,
            Reply::Message(m) => return m,
            other => panic!("no final response: {other:?}"),
        }
    }
}

/// The home pool's 200 to an INVITE: its own Record-Route on top of the
/// request's, and a Contact with an internal address.
fn home_200(home: &UdpSocket, req: &SipMessage, to: SocketAddr) {
    let mut r = String::from("SIP/2.0 200 OK\r\n");
    for v in req.values(HeaderName::Via) {
        r += &format!("Via: {v}\r\n");
    }
    r += &format!("Record-Route: {POOL_RR}\r\n");
    for v in req.values(HeaderName::RecordRoute) {
        r += &format!("Record-Route: {v}\r\n");
    }
    r += &format!("From: {}\r\n", req.first(HeaderName::From).unwrap());
    r += &format!("To: {};tag=home\r\n", req.first(HeaderName::To).unwrap());
    r += &format!("Call-ID: {}\r\n", req.call_id().unwrap());
    r += &format!("CSeq: {}\r\n", req.first(HeaderName::CSeq).unwrap());
    r += &format!("Contact: <{POOL_CONTACT}>\r\nContent-Length: 0\r\n\r\n");
    home.send_to(r.as_bytes(), to).unwrap();
}

/// What partner.test keeps of a dialog it started through the edge.
struct Dialog {
    call_id: String,
    /// Our Record-Route entry, holding the sealed home route.
    route: String,
    /// Our stand-in Contact URI.
    target: String,
}

impl Dialog {
    /// The token in our Record-Route entry.
    fn token(&self) -> &str {
        let i = self.route.find("fe-h=").unwrap() + 5;
        let rest = &self.route[i..];
        &rest[..rest.find(['>', ';']).unwrap_or(rest.len())]
    }
}

/// partner.test calls bob@fedge.test; the home pool answers 200.
async fn call(c: &mut SipTlsClient, home: &UdpSocket, call_id: &str) -> Dialog {
    let invite = format!(
        "INVITE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS {PARTNER_FQDN}:5061;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@partner.test>;tag=p1\r\nTo: <sip:bob@fedge.test>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{PARTNER_FQDN};transport=tls>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    c.send(invite.as_bytes()).await.unwrap();
    let (req, from) = recv_datagram(home, Duration::from_secs(10)).expect("INVITE at home");
    home_200(home, &req, from);
    let ok = final_reply(c).await;
    assert_eq!(ok.status(), Some(200));
    let text = String::from_utf8_lossy(ok.raw()).to_string();
    assert!(
        !text.contains("corp.local") && !text.contains("10.0.0.9"),
        "the home side leaks:\n{text}"
    );
    let rr: Vec<&str> = ok.values(HeaderName::RecordRoute).collect();
    let route = rr
        .iter()
        .find(|v| v.contains("fe-h="))
        .unwrap_or_else(|| panic!("no sealed Record-Route:\n{text}"))
        .to_string();
    let contact = ok.first(HeaderName::Contact).unwrap();
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    assert!(target.contains("fe1-"), "{contact}");
    Dialog {
        call_id: call_id.to_string(),
        route,
        target,
    }
}

/// A BYE in `d` as sent by `from` (a partner user), with the dialog's
/// Route and target.
fn bye(d: &Dialog, from: &str, cseq: u32) -> Vec<u8> {
    format!(
        "BYE {} SIP/2.0\r\nVia: SIP/2.0/TLS {PARTNER_FQDN}:5061;branch=z9hG4bK-bye{cseq}-{}\r\n\
         Max-Forwards: 70\r\nRoute: {}\r\nFrom: <{from}>;tag=p1\r\nTo: <sip:bob@fedge.test>;tag=home\r\n\
         Call-ID: {}\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n",
        d.target, d.call_id, d.route, d.call_id
    )
    .into_bytes()
}

/// The BYE reaches the home pool with the hidden route and target restored.
async fn bye_delivered(c: &mut SipTlsClient, home: &UdpSocket, d: &Dialog, cseq: u32) {
    c.send(&bye(d, "sip:alice@partner.test", cseq))
        .await
        .unwrap();
    let (req, from) = recv_datagram(home, Duration::from_secs(10)).expect("BYE at home");
    assert_eq!(req.method().map(|m| m.to_string()).as_deref(), Some("BYE"));
    assert_eq!(req.request_uri().unwrap().raw, POOL_CONTACT);
    assert_eq!(
        req.values(HeaderName::Route).collect::<Vec<_>>(),
        vec![POOL_RR]
    );
    home.send_to(&ResponseBuilder::new(&req, 200).build(), from)
        .unwrap();
    assert_eq!(final_reply(c).await.status(), Some(200));
}

/// The BYE is refused with `why` in its Warning, and nothing reaches home.
async fn bye_refused(
    c: &mut SipTlsClient,
    home: &UdpSocket,
    d: &Dialog,
    from: &str,
    cseq: u32,
    why: &str,
) {
    c.send(&bye(d, from, cseq)).await.unwrap();
    let r = final_reply(c).await;
    let status = r.status().unwrap();
    assert!(status >= 400, "refused, not {status}");
    let warning = r.values_named("Warning").collect::<Vec<_>>().join(" ");
    assert!(warning.contains(why), "{status} {warning}");
    assert!(
        recv_datagram(home, Duration::from_millis(300)).is_none(),
        "the refused BYE reached the home pool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_tokens_open_only_for_their_partner_and_within_their_lifetime() {
    let pki = Pki::new();
    let home = UdpSocket::bind("127.0.0.1:0").unwrap();
    let edge = edge_with_home(&pki, &home, "[topology]\ntoken_lifetime = \"5s\"\n");
    enable_partner(&edge, "other.test", "sip.other.test");
    let other = pki.leaf("sip.other.test", &LeafSpec::new("sip.other.test", 30));
    let mut a = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    let mut b = tls_connect(edge.federation, &pki, &other).await.unwrap();

    let d = call(&mut a, &home, "bound-1").await;
    let issued = Instant::now();
    // Partner B replays partner A's Route and Contact tokens as itself...
    bye_refused(
        &mut b,
        &home,
        &d,
        "sip:mallory@other.test",
        2,
        "not made by this edge for this dialog and this partner",
    )
    .await;
    // ...or claiming to be partner A, which its certificate does not show.
    c_refused_as_a(&mut b, &home, &d).await;
    // Partner A itself is served.
    bye_delivered(&mut a, &home, &d, 4).await;
    // Past the token lifetime, the same tokens open nothing.
    let wait = Duration::from_secs(7).saturating_sub(issued.elapsed());
    tokio::time::sleep(wait).await;
    bye_refused(
        &mut a,
        &home,
        &d,
        "sip:alice@partner.test",
        5,
        "has expired",
    )
    .await;
    // A fresh dialog works: the expiry is per token, not per partner.
    let d2 = call(&mut a, &home, "bound-2").await;
    bye_delivered(&mut a, &home, &d2, 2).await;
}

/// Partner B sends partner A's BYE under A's From domain: refused by the
/// certificate check, nothing forwarded.
async fn c_refused_as_a(b: &mut SipTlsClient, home: &UdpSocket, d: &Dialog) {
    b.send(&bye(d, "sip:alice@partner.test", 3)).await.unwrap();
    let r = final_reply(b).await;
    assert!(r.status().unwrap() >= 400, "{:?}", r.status());
    assert!(recv_datagram(home, Duration::from_millis(300)).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_earlier_tokens_for_the_grace_period_only() {
    let pki = Pki::new();
    let home = UdpSocket::bind("127.0.0.1:0").unwrap();
    let grace = Duration::from_secs(8);
    let edge = edge_with_home(&pki, &home, "[topology]\nkey_grace = \"8s\"\n");
    let mut a = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    let before = call(&mut a, &home, "rotate-1").await;

    let out = fedge_ok(
        &edge.config_path,
        &[
            "keys",
            "rotate-topology",
            "--reason",
            "test rotation",
            "--actor",
            "tester",
        ],
    );
    let rotated = Instant::now();
    assert!(
        out.contains("topology key 2 is current") && out.contains("key 1 opens"),
        "{out}"
    );
    // Durable before acknowledged: another process reads it at once.
    let list = fedge_ok(&edge.config_path, &["keys", "list"]);
    assert!(list.lines().next().unwrap().starts_with("2\t"), "{list}");
    assert!(
        list.contains("current") && list.contains("retires"),
        "{list}"
    );
    let history = fedge_ok(&edge.config_path, &["keys", "history"]);
    assert!(
        history.contains("tester\tkey 2\trotated\trotated in: test rotation")
            && history.contains("tester\tkey 1\tretiring"),
        "{history}"
    );
    // No secret is printed: no 64-hex-digit run anywhere.
    for text in [&out, &list, &history] {
        assert!(
            !text
                .split(|c: char| !c.is_ascii_hexdigit())
                .any(|w| w.len() >= 64),
            "{text}"
        );
    }
    edge.wait_log(&["topology-hiding keys changed"], Duration::from_secs(10))
        .expect("the edge picks up the new key");

    let after = call(&mut a, &home, "rotate-2").await;
    assert_ne!(
        &before.token()[..7],
        &after.token()[..7],
        "new tokens name the new key"
    );
    // Within the grace period both work.
    bye_delivered(&mut a, &home, &before, 2).await;
    bye_delivered(&mut a, &home, &after, 2).await;
    // After it, tokens of the old key are refused; the new key's still work.
    tokio::time::sleep((grace + Duration::from_secs(2)).saturating_sub(rotated.elapsed())).await;
    c_old_token_refused(&mut a, &home, &before).await;
    bye_delivered(&mut a, &home, &after, 4).await;
}

async fn c_old_token_refused(a: &mut SipTlsClient, home: &UdpSocket, d: &Dialog) {
    a.send(&bye(d, "sip:alice@partner.test", 3)).await.unwrap();
    let r = final_reply(a).await;
    assert_eq!(r.status(), Some(404));
    let warning = r.values_named("Warning").collect::<Vec<_>>().join(" ");
    assert!(
        warning.contains("retired key")
            || warning.contains("not made by this edge for this dialog"),
        "{warning}"
    );
    assert!(recv_datagram(home, Duration::from_millis(300)).is_none());
}

#[test]
fn the_sqlite_database_is_owner_only_even_when_it_existed_before() {
    let pki = Pki::new();
    let db = pki.path().join("fedge.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    for suffix in ["", "-wal", "-shm"] {
        let p = pki.path().join(format!("fedge.db{suffix}"));
        if suffix.is_empty() || p.exists() {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
        }
    }
    // A database the CLI creates is owner-only too.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nurl = \"sqlite://{}/new/cli.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    fedge_ok(&cfg, &["keys", "rotate-topology"]);
    let mode = std::fs::metadata(dir.path().join("new/cli.db"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    drop(edge);
}

#[test]
fn the_postgresql_password_never_appears_in_a_log_or_output() {
    const SECRET: &str = "Sup3r-Secret-pw";
    let pg = fedge_testkit::pg::Postgres::start();
    let url = pg
        .url
        .replacen("postgres@", &format!("postgres:{SECRET}@"), 1);
    let pki = Pki::new();
    let cfg = test_config(&pki, "").replace(
        &format!("url = \"sqlite://{}/fedge.db\"", pki.path().display()),
        &format!("url = \"{url}\""),
    );
    assert!(cfg.contains(SECRET));
    let edge = Edge::start(&pki, &cfg);
    let open = edge
        .wait_log(&["store open"], Duration::from_secs(5))
        .expect("store open logged");
    assert!(open.contains("postgres:***@"), "{open}");
    let (code, out, err) = fedge_cli(&edge.config_path, &["keys", "rotate-topology"]);
    assert_eq!(code, 0, "{err}");
    let (code, check, err2) = fedge_cli(&edge.config_path, &["store", "check"]);
    assert_eq!(code, 0, "{err2}");
    assert!(check.contains("postgres:***@"), "{check}");
    let (code, shown, err3) = fedge_cli(&edge.config_path, &["config", "show"]);
    assert_eq!(code, 0, "{err3}");
    assert!(shown.contains("postgres:***@"), "{shown}");
    edge.wait_log(&["topology-hiding keys changed"], Duration::from_secs(10))
        .expect("the edge picks up the rotation on PostgreSQL");
    let logs = edge.logs().join("\n");
    for text in [&logs, &out, &err, &check, &err2, &shown, &err3] {
        assert!(!text.contains(SECRET), "the password leaks:\n{text}");
    }
}

/// `fedge serve` with text logs, its stderr collected; killed on drop.
struct TextEdge {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    internal: SocketAddr,
    _pki: Pki,
}

impl Drop for TextEdge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TextEdge {
    fn start() -> TextEdge {
        let pki = Pki::new();
        let cfg = test_config(&pki, "")
            .replace("format = \"json\"", "format = \"text\"")
            .replace(
                "repeat_limit = 10000",
                "repeat_limit = 3\nrepeat_window = \"2s\"",
            )
            // The second "source" of the flood test is part of the home
            // pool: the internal listener takes no one else (issue 14, 11).
            .replace(
                "allowed_sources = [\"127.0.0.1\"]",
                "allowed_sources = [\"127.0.0.1\", \"127.0.0.2\"]",
            );
        assert!(cfg.contains("repeat_limit = 3"), "{cfg}");
        assert!(cfg.contains("\"127.0.0.2\"]"), "{cfg}");
        let path = pki.path().join("text.toml");
        std::fs::write(&path, cfg).unwrap();
        let mut child = Command::new(fedge_bin())
            .arg("--config")
            .arg(&path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let mut edge = TextEdge {
            child,
            lines,
            internal: SocketAddr::from(([127, 0, 0, 1], 0)),
            _pki: pki,
        };
        let ready = edge.wait(|l| l.contains("fedge ready"), Duration::from_secs(30));
        assert!(ready.is_some(), "not ready:\n{}", edge.all().join("\n"));
        let listening = edge
            .all()
            .into_iter()
            .find(|l| l.contains("listening") && l.contains("internal"))
            .expect("internal listener logged");
        let addr = listening
            .split("addr=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .trim_matches('"');
        edge.internal = addr.parse().unwrap();
        edge
    }

    fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait(&self, f: impl Fn(&str) -> bool, within: Duration) -> Option<String> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Some(l) = self.all().into_iter().find(|l| f(l)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn malformed(marker: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@fedge.test\n{marker} 2026-12-03T00:00:00Z  INFO fedge: forged\x1b[2J\r SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{marker}\r\nMax-Forwards: 70\r\n\
         From: <sip:a@fedge.test>;tag=1\r\nTo: <sip:bob@fedge.test>\r\nCall-ID: {marker}\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn control_characters_are_escaped_and_a_flood_of_malformed_messages_is_summarised() {
    let edge = TextEdge::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&malformed("FORGED-LINE"), edge.internal)
        .unwrap();
    let line = edge
        .wait(
            |l| l.contains("malformed") && l.contains("FORGED-LINE"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no warning:\n{}", edge.all().join("\n")));
    assert!(
        line.contains("\\nFORGED-LINE")
            && (line.contains("\\e[2J") || line.contains("\\x1b[2J"))
            && line.contains("\\r SIP/2.0"),
        "{line}"
    );
    let all = edge.all();
    assert_eq!(
        all.iter().filter(|l| l.contains("FORGED-LINE")).count(),
        1,
        "one message, one line:\n{}",
        all.join("\n")
    );
    for l in all {
        assert!(!l.starts_with("FORGED-LINE"), "a forged line: {l}");
        assert!(
            !l.contains('\x1b') && !l.contains('\r'),
            "raw control: {l:?}"
        );
    }

    // A flood from one source: a bounded number of warnings, the rest
    // counted in "suppressed N" summaries.
    const FLOOD: usize = 40;
    for i in 0..FLOOD {
        sock.send_to(&malformed(&format!("flood{i}")), edge.internal)
            .unwrap();
    }
    // Another source keeps its own budget.
    let other = UdpSocket::bind("127.0.0.2:0").unwrap();
    other
        .send_to(&malformed("OTHER-SOURCE"), edge.internal)
        .unwrap();
    assert!(
        edge.wait(|l| l.contains("OTHER-SOURCE"), Duration::from_secs(10))
            .is_some(),
        "the other source's warning is logged"
    );
    let summary = |l: &str| l.contains("suppressed") && l.contains("source=127.0.0.1 ");
    assert!(
        edge.wait(summary, Duration::from_secs(10)).is_some(),
        "no summary:\n{}",
        edge.all().join("\n")
    );
    let lines = edge.all();
    let logged = lines
        .iter()
        .filter(|l| l.contains("malformed datagram rejected") && l.contains("flood"))
        .count();
    let suppressed: usize = lines
        .iter()
        .filter(|l| summary(l))
        .filter_map(|l| {
            l.split("suppressed=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    // The budget is 3 per 2 s window: the flood spans one window, or two
    // when it straddles a boundary (and the first message used one slot).
    assert!((1..=6).contains(&logged), "{logged} warnings logged");
    assert_eq!(logged + suppressed, FLOOD, "{lines:#?}");
    assert!(
        lines.iter().filter(|l| l.contains("malformed")).count() <= 8,
        "{lines:#?}"
    );
}

#[test]
fn a_flood_of_cvi_invites_from_one_source_writes_a_bounded_number_of_lines() {
    use std::io::{Read, Write};
    const FLOOD: usize = 20;
    const LIMIT: usize = 3;
    let pki = Pki::new();
    let connector = fedge_testkit::peers::free_port(true);
    let cfg = test_config(&pki, "").replace(
        "repeat_limit = 10000",
        "repeat_limit = 3\nrepeat_window = \"3s\"",
    ) + &format!(
        "\n[cvi]\nenabled = true\nlisten = \"127.0.0.2:0\"\nlisten_tls = \"127.0.0.2:0\"\n\
         connector = \"sip:{{id}}@connector.fedge.test;transport=tcp\"\n\
         connector_address = \"127.0.0.1:{connector}\"\ntenant_key = \"87654321\"\n\
         instructions_base = \"https://cvi.fedge.test\"\n"
    );
    assert!(cfg.contains("repeat_limit = 3"), "{cfg}");
    let edge = Edge::start(&pki, &cfg);
    let cvi = edge.cvi.expect("CVI listener");
    let mut tcp = std::net::TcpStream::connect(cvi).unwrap();
    let local = tcp.local_addr().unwrap();
    for i in 0..FLOOD {
        let invite = format!(
            "INVITE sip:nobody@cvi.fedge.test SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-cf{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:room@rooms.test>;tag=r{i}\r\nTo: <sip:nobody@cvi.fedge.test>\r\n\
             Call-ID: cviflood-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:room@{local};transport=tcp>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        tcp.write_all(invite.as_bytes()).unwrap();
    }
    // Read the answers for a while (bounded), so the calls are handled.
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while t0.elapsed() < Duration::from_secs(5) {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        let text = String::from_utf8_lossy(&got);
        if text.matches("CSeq: 1 INVITE").count() >= 2 * FLOOD {
            break;
        }
    }
    let summary = |l: &str| {
        l.contains("suppressed") && l.contains("CVI call") && l.contains("\"source\":\"127.0.0.1\"")
    };
    let line = edge
        .wait_log(
            &["suppressed", "CVI call", "\"source\":\"127.0.0.1\""],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no summary:\n{}", edge.logs().join("\n")));
    assert!(summary(&line));
    let logs = edge.logs();
    let logged = logs
        .iter()
        .filter(|l| l.contains("\"message\":\"CVI call") && l.contains("cviflood-"))
        .count();
    // One window, or two when the flood straddles a boundary.
    assert!(
        (1..=2 * LIMIT).contains(&logged),
        "{logged} lines for {FLOOD} INVITEs:\n{}",
        logs.join("\n")
    );
    let suppressed: u64 = logs
        .iter()
        .filter(|l| summary(l))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["fields"]["suppressed"].as_u64()
        })
        .sum();
    assert!(
        suppressed as usize >= FLOOD - logged,
        "{suppressed} suppressed, {logged} logged"
    );
}
