//! `fedge explain` through the real binary: a table of messages covering
//! every rule of docs/policy.md that can be judged offline and every
//! `Refusal` variant (an exhaustive match names each variant's row or why
//! it has none), forwarded cases both ways with their next hop, pcap and
//! HEP3 captures, `--json`, and bad input. Partners in several states are
//! set up through the CLI on SQLite. Also: the policy's trace allocates
//! nothing when off (a counting allocator in this test binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedge::federation::refusal::Refusal;
use fedge_testkit::*;
use serde_json::Value;

// ---------------------------------------------------------------- allocator

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// ---------------------------------------------------------------- the lab

struct Lab {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    cfg: PathBuf,
    pki: Pki,
    /// Certificates naming these edges.
    evil: CertFiles,
    stranger: CertFiles,
}

fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let cfg = path.join("fedge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[federation]\nlisten = \"127.0.0.1:25061\"\nfqdn = \"sip.fedge.test\"\nhome_domains = [\"fedge.test\"]\n\
             [internal]\nlisten = \"127.0.0.1:25065\"\nnext_hop = \"sip:127.0.0.1:5080;transport=udp\"\n\
             [policy]\nmax_body_bytes = 2000\n\
             [store]\nurl = \"sqlite://{}/fedge.db\"\n",
            path.display()
        ),
    )
    .unwrap();
    let partner = |domain: &str, edge: Option<&str>, last: &[&[&str]]| {
        fedge_ok(
            &cfg,
            &[
                "partner",
                "add",
                "--domain",
                domain,
                "--org",
                &format!("Org {domain}"),
                "--tech-sip",
                &format!("sip:it@{domain}"),
            ],
        );
        for verb in ["agreement-sent", "agreement-signed", "approve"] {
            fedge_ok(&cfg, &["partner", verb, domain]);
        }
        if let Some(edge) = edge {
            let set = format!("edge_fqdn={edge}");
            fedge_ok(
                &cfg,
                &[
                    "partner", "update", domain, "--set", &set, "--reason", "FPA",
                ],
            );
        }
        for args in last {
            let mut a = vec!["partner"];
            a.extend_from_slice(args);
            a.insert(2, domain);
            fedge_ok(&cfg, &a);
        }
    };
    let enable: &[&str] = &["enable", "--skip-im-test", "--reason", "tested by phone"];
    let suspend: &[&str] = &["suspend", "--reason", "incident"];
    partner("partner.test", Some(PARTNER_FQDN), &[enable]);
    partner("approved.test", Some("sip.approved.test"), &[]);
    partner(
        "suspended.test",
        Some("sip.suspended.test"),
        &[enable, suspend],
    );
    partner("dnsonly.test", None, &[enable]);
    let pki = Pki::new();
    let evil = pki.leaf("evil", &fedge::pki::LeafSpec::new("sip.evil.test", 30));
    let stranger = pki.leaf(
        "stranger",
        &fedge::pki::LeafSpec::new("sip.stranger.test", 30),
    );
    Lab {
        _dir: dir,
        dir: path,
        cfg,
        pki,
        evil,
        stranger,
    }
}

/// A request as text (CRLF), with `extra` header lines and a body of type `ct`.
fn sip(
    method: &str,
    ruri: &str,
    from: &str,
    to: &str,
    extra: &str,
    ct: &str,
    body: &str,
) -> String {
    let ct = if ct.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {ct}\r\n")
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.1;branch=z9hG4bK-x1\r\nMax-Forwards: 70\r\n\
         From: <{from}>;tag=f1\r\nTo: <{to}>\r\nCall-ID: call-{method}\r\nCSeq: 1 {method}\r\n{extra}{ct}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn write(lab: &Lab, name: &str, data: &[u8]) -> PathBuf {
    let p = lab.dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Runs `fedge explain FILE ARGS --json`: exit code and parsed JSON.
fn explain_json(lab: &Lab, file: &Path, args: &[&str]) -> Value {
    let mut a = vec!["explain", file.to_str().unwrap(), "--json"];
    a.extend_from_slice(args);
    let (code, out, err) = fedge_cli(&lab.cfg, &a);
    assert_eq!(code, 0, "{a:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{a:?}: not JSON ({e}): {out}"))
}

/// One row: a message, the peer, and what the edge must answer.
struct Row {
    name: &'static str,
    text: String,
    peer: Vec<String>,
    verdict: &'static str,
    status: Option<u16>,
    diag: Option<u16>,
    rule: &'static str,
    /// (kind, transport, host, port) of a forward.
    hop: Option<(&'static str, &'static str, &'static str, u16)>,
}

fn from_partner(d: &str) -> Vec<String> {
    vec!["--from-partner".into(), d.into()]
}

fn from_cert(c: &CertFiles) -> Vec<String> {
    vec!["--from-cert".into(), c.cert.display().to_string()]
}

fn home() -> Vec<String> {
    vec!["--from-home".into()]
}

const UA_SFB: &str = "User-Agent: UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)\r\n";
const FT: &str = "--b\r\nContent-Type: application/ms-filetransfer+xml\r\n\r\n<request requestId=\"1\"/>\r\n--b--\r\n";

#[allow(clippy::too_many_arguments)]
fn row(
    name: &'static str,
    text: String,
    peer: Vec<String>,
    verdict: &'static str,
    status: Option<u16>,
    diag: Option<u16>,
    rule: &'static str,
    hop: Option<(&'static str, &'static str, &'static str, u16)>,
) -> Row {
    Row {
        name,
        text,
        peer,
        verdict,
        status,
        diag,
        rule,
        hop,
    }
}

fn table(lab: &Lab) -> Vec<Row> {
    let p = from_partner("partner.test");
    let bob = "sip:bob@fedge.test";
    let alice = "sip:alice@partner.test";
    let msg = |extra: &str, ct: &str, body: &str| sip("MESSAGE", bob, alice, bob, extra, ct, body);
    vec![
        row("forward_inbound", msg(UA_SFB, "text/plain", "hi"), p.clone(), "forward", None, None, "forward",
            Some(("home_pool", "udp", "127.0.0.1", 5080))),
        row("forward_inbound_cert", msg("", "text/plain", "hi"), from_cert(&lab.pki.partner), "forward", None, None, "forward",
            Some(("home_pool", "udp", "127.0.0.1", 5080))),
        row("forward_outbound", sip("INVITE", "sip:carol@partner.test", "sip:dave@fedge.test", "sip:carol@partner.test", "", "application/sdp", "v=0\r\n"),
            home(), "forward", None, None, "forward", Some(("partner_edge", "tls", "sip.partner.test", 5061))),
        row("options_to_edge", sip("OPTIONS", "sip:sip.fedge.test", alice, "sip:sip.fedge.test", "", "", ""), p.clone(),
            "answer", Some(200), None, "options", None),
        row("im_test", sip("MESSAGE", "sip:federation-test@fedge.test", "sip:it@approved.test", "sip:federation-test@fedge.test", "", "text/plain", "hello"),
            from_partner("approved.test"), "answer", Some(200), None, "im_test", None),
        row("im_test_method", sip("INVITE", "sip:federation-test@fedge.test", "sip:it@approved.test", "sip:federation-test@fedge.test", "", "", ""),
            from_partner("approved.test"), "refuse", Some(405), None, "im_test", None),
        row("not_yet_enabled", sip("MESSAGE", bob, "sip:it@approved.test", bob, "", "text/plain", "x"),
            from_partner("approved.test"), "refuse", Some(403), Some(1002), "not_enabled", None),
        row("not_enabled_in", sip("MESSAGE", bob, "sip:a@suspended.test", bob, "", "text/plain", "x"),
            from_partner("suspended.test"), "refuse", Some(403), Some(1002), "not_enabled", None),
        row("not_enabled_out", sip("MESSAGE", "sip:a@suspended.test", "sip:dave@fedge.test", "sip:a@suspended.test", "", "text/plain", "x"),
            home(), "refuse", Some(403), Some(1005), "not_enabled", None),
        row("no_from_domain", sip("MESSAGE", bob, "sip:alice@192.0.2.7", bob, "", "text/plain", "x"), p.clone(),
            "refuse", Some(403), Some(1002), "no_from_domain", None),
        row("not_partner_domain", sip("MESSAGE", bob, "sip:eve@stranger.test", bob, "", "text/plain", "x"),
            from_cert(&lab.stranger), "refuse", Some(403), Some(1002), "unknown_domain", None),
        row("not_this_partners_domain", sip("MESSAGE", bob, "sip:eve@stranger.test", bob, "", "text/plain", "x"),
            from_cert(&lab.pki.partner), "refuse", Some(403), Some(1002), "unknown_domain", None),
        row("spoofed_edge", msg("", "text/plain", "x"), from_cert(&lab.evil), "refuse", Some(403), Some(1010), "spoofed_domain", None),
        row("transit", sip("MESSAGE", "sip:zoe@other.test", alice, "sip:zoe@other.test", "", "text/plain", "x"), p.clone(),
            "refuse", Some(403), Some(1017), "transit", None),
        row("no_destination", sip("MESSAGE", "sip:192.0.2.9", alice, "sip:192.0.2.9", "", "text/plain", "x"), p.clone(),
            "refuse", Some(403), Some(1005), "no_destination", None),
        row("product", msg("User-Agent: UCCAPI/4.0.7577.314 OC/4.0.7577.314\r\n", "text/plain", "x"), p.clone(),
            "refuse", Some(403), None, "product", None),
        row("product_other", msg("User-Agent: Jabber/12.9\r\n", "text/plain", "x"), p.clone(),
            "refuse", Some(403), None, "product", None),
        row("file_transfer", sip("INVITE", bob, alice, bob, "", "multipart/mixed; boundary=b", FT), p.clone(),
            "refuse", Some(606), None, "file_transfer", None),
        row("file_transfer_out", sip("INVITE", "sip:carol@partner.test", "sip:dave@fedge.test", "sip:carol@partner.test", "", "multipart/mixed; boundary=b", FT),
            home(), "refuse", Some(606), None, "file_transfer", None),
        row("recording", msg("Require: siprec\r\n", "text/plain", "x"), p.clone(), "refuse", Some(403), Some(1027), "recording", None),
        row("body_type", msg("", "application/octet-stream", "x"), p.clone(), "refuse", Some(415), None, "body_type", None),
        row("body_size", msg("", "text/plain", &"x".repeat(2500)), p.clone(), "refuse", Some(413), None, "body_size", None),
        row("foreign_from", sip("MESSAGE", "sip:carol@partner.test", "sip:eve@stranger.test", "sip:carol@partner.test", "", "text/plain", "x"),
            home(), "refuse", Some(403), Some(1017), "foreign_from", None),
        row("no_destination_out", sip("MESSAGE", "sip:192.0.2.9", "sip:dave@fedge.test", "sip:192.0.2.9", "", "text/plain", "x"),
            home(), "refuse", Some(404), Some(1005), "no_destination", None),
        row("unknown_destination", sip("MESSAGE", "sip:x@nowhere.test", "sip:dave@fedge.test", "sip:x@nowhere.test", "", "text/plain", "x"),
            home(), "refuse", Some(404), Some(1005), "unknown_domain", None),
        row("needs_dns_in", sip("MESSAGE", bob, "sip:a@dnsonly.test", bob, "", "text/plain", "x"),
            from_partner("dnsonly.test"), "needs_dns", None, None, "dns", None),
        row("needs_dns_out", sip("MESSAGE", "sip:a@dnsonly.test", "sip:dave@fedge.test", "sip:a@dnsonly.test", "", "text/plain", "x"),
            home(), "needs_dns", None, None, "dns", None),
        row("malformed", "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: nonsense\r\nFrom: <sip:a@partner.test>;tag=1\r\nTo: <sip:bob@fedge.test>\r\nCall-ID: m\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n\r\n".into(),
            p.clone(), "malformed", Some(400), None, "parse", None),
    ]
}

/// The row that shows each refusal, or why none can offline. A new
/// variant without an arm does not compile; a named row must exist.
fn row_of(r: &Refusal) -> Result<&'static str, &'static str> {
    use Refusal as R;
    match r {
        R::WrongListener => {
            Err("CVI listeners never reach the policy; explain judges federation and internal only")
        }
        R::NoCertificate => {
            Err("the federation listener requires a client certificate; explain always has one")
        }
        R::NoFromDomain => Ok("no_from_domain"),
        R::NotPartnerDomain { .. } => Ok("not_partner_domain"),
        R::NotThisPartnersDomain { .. } => Ok("not_this_partners_domain"),
        R::SpoofedEdge { .. } => Ok("spoofed_edge"),
        R::SpoofedSrv { .. }
        | R::SrvOutsideDomain { .. }
        | R::NoSrv { .. }
        | R::DnsFailed { .. } => {
            Err("needs DNS answers (--resolve against a test zone): shown as needs_dns offline")
        }
        R::DnsNotLookedUp { .. } => Ok("needs_dns_in"),
        R::ImTestMethod => Ok("im_test_method"),
        R::NotYetEnabled { .. } => Ok("not_yet_enabled"),
        R::NotEnabled { .. } => Ok("not_enabled_in"),
        R::Transit { .. } => Ok("transit"),
        R::NoDestination { .. } => Ok("no_destination"),
        R::Product(_) => Ok("product"),
        R::FileTransfer { .. } => Ok("file_transfer"),
        R::Recording { .. } => Ok("recording"),
        R::BodyType { .. } => Ok("body_type"),
        R::BodyTooLarge { .. } => Ok("body_size"),
        R::ForeignFrom { .. } => Ok("foreign_from"),
        R::UnknownDestination { .. } => Ok("unknown_destination"),
        R::RateLimited { .. } | R::Overloaded { .. } | R::Enumeration { .. } => {
            Err("per-node counters: not evaluated offline (said in the notes)")
        }
        R::MediaSdp { .. } | R::MediaUnavailable { .. } => {
            Err("the media relay runs in the node only")
        }
        R::NextHop { .. } => Err("a connection failure: explain connects to nothing"),
        R::Draining { .. } => {
            Err("the node's drain state: not evaluated offline (said in the notes)")
        }
    }
}

fn every_refusal() -> Vec<Refusal> {
    use fedge::federation::refusal::{Direction, Unreachable};
    let s = String::new;
    vec![
        Refusal::WrongListener,
        Refusal::NoCertificate,
        Refusal::NoFromDomain,
        Refusal::NotPartnerDomain { domain: s() },
        Refusal::NotThisPartnersDomain {
            domain: s(),
            org: s(),
            certificate: s(),
        },
        Refusal::SpoofedEdge {
            certificate: s(),
            domain: s(),
            org: s(),
            edge: s(),
        },
        Refusal::SpoofedSrv {
            certificate: s(),
            domain: s(),
            targets: vec![],
        },
        Refusal::SrvOutsideDomain {
            domain: s(),
            targets: vec![],
            org: s(),
        },
        Refusal::NoSrv {
            domain: s(),
            org: s(),
            direction: Direction::Inbound,
        },
        Refusal::DnsFailed {
            domain: s(),
            error: s(),
        },
        Refusal::DnsNotLookedUp { domain: s() },
        Refusal::ImTestMethod,
        Refusal::NotYetEnabled {
            org: s(),
            domain: s(),
            test_address: s(),
        },
        Refusal::NotEnabled {
            org: s(),
            domain: s(),
            state: fedge::model::partner::PartnerState::Suspended,
            direction: Direction::Inbound,
        },
        Refusal::Transit {
            domain: s(),
            home: s(),
        },
        Refusal::NoDestination {
            direction: Direction::Inbound,
        },
        Refusal::FileTransfer { what: "" },
        Refusal::Recording { what: "" },
        Refusal::BodyType {
            media_type: s(),
            accepted: s(),
        },
        Refusal::BodyTooLarge { size: 0, max: 0 },
        Refusal::ForeignFrom { domain: None },
        Refusal::UnknownDestination {
            domain: s(),
            home: false,
        },
        Refusal::RateLimited {
            org: s(),
            rate: 1,
            retry_after: 1,
        },
        Refusal::Overloaded {
            org: s(),
            rate: 1,
            retry_after: 1,
        },
        Refusal::Enumeration {
            org: s(),
            limit: 1,
            window: Duration::from_secs(1),
        },
        Refusal::MediaSdp { detail: s() },
        Refusal::MediaUnavailable { detail: s() },
        Refusal::NextHop {
            kind: Unreachable::Tls,
            detail: s(),
        },
        Refusal::Draining {
            node: s(),
            fqdn: s(),
            retry_after: 1,
        },
    ]
}

/// Every row through the binary: verdict, status, diagnostic, rule and
/// next hop; every refusal variant has its row (or a stated reason).
#[test]
fn table_covers_every_rule_and_refusal() {
    let lab = lab();
    let rows = table(&lab);
    let mut labels_seen = Vec::new();
    for r in &rows {
        let file = write(&lab, &format!("{}.sip", r.name), r.text.as_bytes());
        let args: Vec<&str> = r.peer.iter().map(String::as_str).collect();
        let j = explain_json(&lab, &file, &args);
        let ctx = format!("row {}: {j}", r.name);
        assert_eq!(j["version"], 1, "{ctx}");
        assert_eq!(j["verdict"], r.verdict, "{ctx}");
        assert_eq!(j["status"].as_u64().map(|s| s as u16), r.status, "{ctx}");
        assert_eq!(j["rule"], r.rule, "{ctx}");
        assert_eq!(
            j["refusal"]["diagnostic"].as_u64().map(|s| s as u16),
            r.diag,
            "{ctx}"
        );
        match r.hop {
            Some((kind, transport, host, port)) => {
                let h = &j["next_hop"];
                assert_eq!(
                    (
                        h["kind"].as_str(),
                        h["transport"].as_str(),
                        h["host"].as_str(),
                        h["port"].as_u64()
                    ),
                    (Some(kind), Some(transport), Some(host), Some(port as u64)),
                    "{ctx}"
                );
            }
            None => assert!(j["next_hop"].is_null(), "{ctx}"),
        }
        if r.verdict == "refuse" {
            assert!(
                !j["refusal"]["reason"].as_str().unwrap_or("").is_empty(),
                "{ctx}"
            );
        }
        labels_seen.push(r.rule);
    }
    // Every refusal has a row, or says why it cannot be shown offline.
    let names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    for r in every_refusal() {
        match row_of(&r) {
            Ok(name) => assert!(names.contains(&name), "{r:?}: no row {name}"),
            Err(why) => assert!(!why.is_empty()),
        }
    }
    // docs/policy.md's table rules judged offline, each in a row.
    for rule in [
        "unknown_domain",
        "spoofed_domain",
        "not_enabled",
        "transit",
        "foreign_from",
        "product",
        "file_transfer",
        "recording",
        "body_type",
        "body_size",
        "no_destination",
    ] {
        assert!(labels_seen.contains(&rule), "no row for rule {rule}");
    }
}

/// The text form: passed checks in order, the Warning and the diagnostic,
/// the next hop and the notes on what is not evaluated offline.
#[test]
fn text_shows_checks_warning_and_next_hop() {
    let lab = lab();
    let bob = "sip:bob@fedge.test";
    let f = write(
        &lab,
        "in.sip",
        sip(
            "MESSAGE",
            bob,
            "sip:alice@partner.test",
            bob,
            UA_SFB,
            "text/plain",
            "hi",
        )
        .as_bytes(),
    );
    let out = fedge_ok(
        &lab.cfg,
        &[
            "explain",
            f.to_str().unwrap(),
            "--from-partner",
            "partner.test",
        ],
    );
    assert!(out.starts_with("verdict: forwarded (forward) to the home pool ([internal] next_hop): udp 127.0.0.1:5080"), "{out}");
    let order = [
        "certificate",
        "partner",
        "identity",
        "state",
        "destination",
        "product",
        "content",
    ];
    let mut at = 0;
    for c in order {
        let pos = out[at..]
            .find(&format!("  {c} "))
            .unwrap_or_else(|| panic!("{c} missing or out of order: {out}"));
        at += pos + 1;
    }
    assert!(
        out.contains("not evaluated offline: the partner's token bucket"),
        "{out}"
    );
    let f = write(
        &lab,
        "ft.sip",
        sip(
            "INVITE",
            bob,
            "sip:alice@partner.test",
            bob,
            "",
            "multipart/mixed; boundary=b",
            FT,
        )
        .as_bytes(),
    );
    let out = fedge_ok(
        &lab.cfg,
        &[
            "explain",
            f.to_str().unwrap(),
            "--from-partner",
            "partner.test",
        ],
    );
    assert!(
        out.contains("verdict: refused (file_transfer) with 606"),
        "{out}"
    );
    assert!(
        out.contains("Warning: 309 sip.fedge.test \"File transfer is switched off"),
        "{out}"
    );
    // LF line ends are accepted; an in-dialog request carries a note.
    let lf = sip("BYE", bob, "sip:alice@partner.test", bob, "", "", "")
        .replace("\r\n", "\n")
        .replace(
            "To: <sip:bob@fedge.test>",
            "To: <sip:bob@fedge.test>;tag=t9",
        );
    let f = write(&lab, "lf.sip", lf.as_bytes());
    let j = explain_json(&lab, &f, &["--from-partner", "partner.test"]);
    assert_eq!(j["verdict"], "forward", "{j}");
    assert!(
        j["notes"]
            .to_string()
            .contains("judged as if this edge knew the dialog"),
        "{j}"
    );
    // Outbound without --resolve names the look-up.
    let f = write(
        &lab,
        "out.sip",
        sip(
            "MESSAGE",
            "sip:c@partner.test",
            "sip:d@fedge.test",
            "sip:c@partner.test",
            "",
            "text/plain",
            "x",
        )
        .as_bytes(),
    );
    let out = fedge_ok(&lab.cfg, &["explain", f.to_str().unwrap(), "--from-home"]);
    assert!(
        out.contains("its certificate must name sip.partner.test"),
        "{out}"
    );
    assert!(
        out.contains("would look up A/AAAA sip.partner.test"),
        "{out}"
    );
}

/// Bad input: one line, exit 2; a message the parser refuses is explained.
#[test]
fn bad_input() {
    let lab = lab();
    let one_line = |args: &[&str], needle: &str| {
        let (code, out, err) = fedge_cli(&lab.cfg, args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    let empty = write(&lab, "empty.sip", b"");
    one_line(
        &["explain", empty.to_str().unwrap(), "--from-home"],
        "the file is empty",
    );
    let blank = write(&lab, "blank.sip", b"\r\n\r\n  \n");
    one_line(
        &["explain", blank.to_str().unwrap(), "--from-home"],
        "the file is empty",
    );
    let ok = write(
        &lab,
        "m.sip",
        sip(
            "MESSAGE",
            "sip:b@fedge.test",
            "sip:a@partner.test",
            "sip:b@fedge.test",
            "",
            "",
            "",
        )
        .as_bytes(),
    );
    one_line(
        &[
            "explain",
            ok.to_str().unwrap(),
            "--from-partner",
            "nowhere.test",
        ],
        "no partner holds domain nowhere.test",
    );
    one_line(&["explain", ok.to_str().unwrap()], "name the sender");
    one_line(
        &[
            "explain",
            lab.dir.join("missing.sip").to_str().unwrap(),
            "--from-home",
        ],
        "cannot read",
    );
    one_line(
        &[
            "explain",
            ok.to_str().unwrap(),
            "--from-home",
            "--call-id",
            "x",
        ],
        "pick a message from a capture",
    );
    let resp = write(&lab, "r.sip", b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b.test>;tag=1\r\nTo: <sip:c@d.test>;tag=2\r\nCall-ID: r\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n");
    one_line(
        &["explain", resp.to_str().unwrap(), "--from-home"],
        "is a response",
    );
    let garbage = write(
        &lab,
        "garbage.bin",
        b"\x00\x01\x02 hello there \xff\xfe\r\n\r\n",
    );
    let j = explain_json(&lab, &garbage, &["--from-home"]);
    assert_eq!(
        (j["verdict"].as_str(), j["status"].as_u64()),
        (Some("malformed"), Some(400)),
        "{j}"
    );
    assert!(
        !j["refusal"]["reason"].as_str().unwrap_or("").is_empty(),
        "{j}"
    );
}

// ---------------------------------------------------------------- captures

fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("v4 only")
    };
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(s.ip().octets(), d.ip().octets(), 64)
        .udp(s.port(), d.port());
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = pcap_file::pcap::PcapWriter::new(f).unwrap();
    for (i, fr) in frames.iter().enumerate() {
        let p = pcap_file::pcap::PcapPacket::new(
            Duration::from_secs(1_700_000_000 + i as u64),
            fr.len() as u32,
            fr,
        );
        w.write_packet(&p).unwrap();
    }
}

/// A pcap with two messages of different Call-IDs: --call-id picks one;
/// without it the Call-IDs are listed; the direction comes from the
/// packet's destination (the internal listener: from the home pool).
#[test]
fn pcap_input_picks_by_call_id() {
    let lab = lab();
    let home: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let internal: SocketAddr = "127.0.0.1:25065".parse().unwrap();
    let m1 = sip(
        "MESSAGE",
        "sip:c@partner.test",
        "sip:d@fedge.test",
        "sip:c@partner.test",
        "",
        "text/plain",
        "x",
    )
    .replace("call-MESSAGE", "first-call");
    let m2 = sip(
        "MESSAGE",
        "sip:c@suspended.test",
        "sip:d@fedge.test",
        "sip:c@suspended.test",
        "",
        "text/plain",
        "x",
    )
    .replace("call-MESSAGE", "second-call");
    let pcap = lab.dir.join("two.pcap");
    write_pcap(
        &pcap,
        &[
            udp_frame(home, internal, m1.as_bytes()),
            udp_frame(home, internal, m2.as_bytes()),
        ],
    );
    let j = explain_json(&lab, &pcap, &["--call-id", "second-call"]);
    assert_eq!(
        (
            j["verdict"].as_str(),
            j["rule"].as_str(),
            j["status"].as_u64()
        ),
        (Some("refuse"), Some("not_enabled"), Some(403)),
        "{j}"
    );
    assert_eq!(j["message"]["call_id"], "second-call", "{j}");
    assert_eq!(j["direction"], "outbound", "{j}");
    assert!(
        j["notes"].to_string().contains("is the internal listener"),
        "{j}"
    );
    let j = explain_json(&lab, &pcap, &["--call-id", "first-call"]);
    assert_eq!(j["verdict"], "forward", "{j}");
    let (code, _, err) = fedge_cli(&lab.cfg, &["explain", pcap.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("2 Call-IDs") && err.contains("first-call") && err.contains("second-call"),
        "{err}"
    );
    let (code, _, err) = fedge_cli(
        &lab.cfg,
        &[
            "explain",
            pcap.to_str().unwrap(),
            "--call-id",
            "first-call",
            "--index",
            "2",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has 1 request(s)"), "{err}");
}

/// HEP3 packets (as fedge's capture or Kamailio's siptrace sends them to
/// a collector) in a pcap: the inner addresses and message are used.
#[test]
fn hep_pcap_input() {
    let lab = lab();
    let partner: SocketAddr = "192.0.2.10:5061".parse().unwrap();
    let fed: SocketAddr = "127.0.0.1:25061".parse().unwrap();
    let bob = "sip:bob@fedge.test";
    let text = sip(
        "MESSAGE",
        bob,
        "sip:alice@partner.test",
        bob,
        "Require: siprec\r\n",
        "text/plain",
        "x",
    );
    let hep = fedge::sip::hep::HepPacket {
        src: partner,
        dst: fed,
        ip_proto: 6,
        time_sec: 1_700_000_000,
        time_usec: 0,
        proto_type: 1,
        capture_id: 7,
        auth_key: None,
        correlation_id: None,
        payload: bytes::Bytes::from(text),
    }
    .to_bytes()
    .unwrap();
    let pcap = lab.dir.join("hep.pcap");
    let edge: SocketAddr = "127.0.0.1:41000".parse().unwrap();
    let collector: SocketAddr = "127.0.0.1:9060".parse().unwrap();
    write_pcap(&pcap, &[udp_frame(edge, collector, &hep)]);
    // Arriving on the federation listener: the sender must be named.
    let (code, _, err) = fedge_cli(&lab.cfg, &["explain", pcap.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("arrives on the federation listener"), "{err}");
    let j = explain_json(&lab, &pcap, &["--from-partner", "partner.test"]);
    assert_eq!(
        (
            j["verdict"].as_str(),
            j["rule"].as_str(),
            j["refusal"]["diagnostic"].as_u64()
        ),
        (Some("refuse"), Some("recording"), Some(1027)),
        "{j}"
    );
    assert!(
        j["notes"]
            .to_string()
            .contains("hep/tcp 192.0.2.10:5061 -> 127.0.0.1:25061"),
        "{j}"
    );
}

// ---------------------------------------------------------------- the trace's cost

/// The proxy's path (`decide`, trace off) allocates nothing for the
/// trace: tracing on costs at least one allocation per check recorded,
/// and those are all absent when off.
#[test]
fn trace_off_allocates_nothing() {
    use fedge::federation::policy::{self, PolicyConfig, Trace};
    use fedge::federation::registry::Registry;
    use fedge::sip::proxy::{Hop, RequestInfo};
    let lab = lab();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let snap = rt.block_on(async {
        let store = fedge::store::Store::open(&format!("sqlite://{}/fedge.db", lab.dir.display()))
            .await
            .unwrap();
        let r = Registry::load(&store).await.unwrap();
        store.close().await;
        r.snapshot()
    });
    let cfg = fedge::config::Config::load(&lab.cfg).unwrap();
    let pc: PolicyConfig =
        fedge::server::policy_config(&cfg, vec![], Hop::Udp("127.0.0.1:5080".parse().unwrap()))
            .unwrap();
    let bob = "sip:bob@fedge.test";
    let text = sip(
        "MESSAGE",
        bob,
        "sip:alice@partner.test",
        bob,
        UA_SFB,
        "text/plain",
        "hi",
    );
    let msg = fedge::federation::explain::parse_text(
        text.as_bytes(),
        &fedge::sip::parse::Limits::default(),
    )
    .unwrap()
    .unwrap();
    let peer = fedge::sip::transport::PeerIdentity {
        names: vec![PARTNER_FQDN.into()],
        from_cn: false,
        subject: String::new(),
        serial: String::new(),
        issuer: String::new(),
    };
    let info = RequestInfo {
        in_dialog: false,
        own_routes: 0,
        next_route: None,
        pressure: Default::default(),
    };
    let role = fedge::role::Role::Federation;
    let run = |trace: &mut Trace| {
        let before = allocs();
        let v = policy::decide_traced(&msg, role, Some(&peer), &info, &snap, &pc, None, trace);
        let n = allocs() - before;
        assert!(v.admitted(), "{:?}", v.outcome);
        drop(v);
        n
    };
    let mut off = Trace::off();
    let off_allocs = run(&mut off);
    assert_eq!((off.checks().len(), off.capacity()), (0, 0));
    let plain = {
        let before = allocs();
        let v = policy::decide(&msg, role, Some(&peer), &info, &snap, &pc, None);
        let n = allocs() - before;
        drop(v);
        n
    };
    let mut on = Trace::on();
    let on_allocs = run(&mut on);
    let checks = on.checks().len() as u64;
    println!(
        "allocations per decision: decide {plain}, trace off {off_allocs}, trace on {on_allocs} ({checks} checks)"
    );
    assert_eq!(
        off_allocs, plain,
        "decide is decide_traced with the trace off"
    );
    assert!(checks >= 6, "{:?}", on.checks());
    assert!(
        on_allocs >= off_allocs + checks,
        "on {on_allocs}, off {off_allocs}, checks {checks}"
    );
}
