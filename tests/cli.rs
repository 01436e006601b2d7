//! The command line: configuration and usage mistakes give one line on
//! stderr and exit code 2; `config example` is a complete, valid file;
//! `config check` inspects the certificate; the embedded defaults run (in
//! a private network namespace, so that an edge on the default ports
//! beside the tests does not matter); the admin listener's index.

#[path = "support/netns.rs"]
mod netns;

use std::process::Command;

use fedge::pki::LeafSpec;
use fedge_testkit::*;

fn fedge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(fedge_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run fedge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts exit code 2 and exactly one non-empty stderr line containing `needle`.
fn assert_one_line_2(args: &[&str], needle: &str) {
    let (code, _, err) = fedge(args);
    assert_eq!(code, 2, "{args:?}: exit code {code}, stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: want one line, got: {err}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: {:?} lacks {needle:?}",
        lines[0]
    );
}

#[test]
fn usage_errors_are_one_line_with_exit_2() {
    assert_one_line_2(&["frobnicate"], "unrecognized subcommand 'frobnicate'");
    assert_one_line_2(&["serve", "--bogus"], "unexpected argument '--bogus'");
    assert_one_line_2(&["config"], "");
    let (code, out, _) = fedge(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("serve") && out.contains("--config"));
}

#[test]
fn config_errors_are_one_line_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let missing = dir.path().join("nope.toml").display().to_string();
    assert_one_line_2(&["--config", &missing, "serve"], "cannot read config file");

    let typo = write("typo.toml", "[federation]\nlisen = \"127.0.0.1:5061\"\n");
    assert_one_line_2(
        &["--config", &typo, "serve"],
        "line 2, column 1: unknown field `lisen`",
    );

    let bad_addr = write("addr.toml", "[internal]\nlisten = \"localhost:five\"\n");
    assert_one_line_2(&["--config", &bad_addr, "config", "check"], "line 2");

    let ip_fqdn = write("fqdn.toml", "[federation]\nfqdn = \"192.0.2.7\"\n");
    assert_one_line_2(
        &["--config", &ip_fqdn, "serve"],
        "must be a name, not an IP address",
    );

    let hop = write("hop.toml", "[internal]\nnext_hop = \"http://pool\"\n");
    assert_one_line_2(&["--config", &hop, "serve"], "next_hop");

    let syntax = write("syntax.toml", "[federation\nfqdn = 1\n");
    assert_one_line_2(&["--config", &syntax, "serve"], "line 1");

    let level = write("level.toml", "[log]\nlevel = \"fedge=shouty\"\n");
    assert_one_line_2(&["--config", &level, "serve"], "[log] level");

    // Certificate paths that do not exist are a configuration error too.
    let certs = write(
        "certs.toml",
        "[federation]\nlisten = \"127.0.0.1:0\"\ncert = \"no/such.crt\"\n[internal]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://db/fedge.db\"\n",
    );
    assert_one_line_2(&["--config", &certs, "serve"], "cannot read certificate");
}

#[test]
fn mismatched_key_is_a_config_error() {
    let pki = Pki::new();
    let cfg = test_config(&pki, "").replace(
        &format!("key = \"{}\"", pki.edge.key.display()),
        &format!("key = \"{}\"", pki.partner.key.display()),
    );
    let p = pki.path().join("mismatch.toml");
    std::fs::write(&p, cfg).unwrap();
    let (code, _, err) = fedge(&["--config", p.to_str().unwrap(), "serve"]);
    assert_eq!(code, 2, "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("fedge: ") && last.contains("do not fit together"),
        "{err}"
    );
}

#[test]
fn config_example_is_complete_and_valid() {
    let (code, example, _) = fedge(&["config", "example"]);
    assert_eq!(code, 0);
    assert!(
        example.lines().filter(|l| l.starts_with('#')).count() > 10,
        "example is not commented"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("example.toml");
    std::fs::write(&p, &example).unwrap();
    // `config check` reads the certificates the file names (certs/dev
    // beside it): without them it is a configuration error.
    let (code, _, err) = fedge(&["--config", p.to_str().unwrap(), "config", "check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read certificate"), "{err}");
    let dev = dir.path().join("certs/dev");
    let (code, _, err) = fedge(&["certs", "dev", "--dir", dev.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = fedge(&["--config", p.to_str().unwrap(), "config", "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ok") && out.contains("chains to [federation] trust"),
        "{out}"
    );
    // The example shows the defaults: `config show` on it equals `config show` without it.
    let (_, shown_default, _) = fedge(&["config", "show"]);
    let (_, shown_example, _) = fedge(&["--config", p.to_str().unwrap(), "config", "show"]);
    let strip_paths = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("certs/dev") && !l.contains("sqlite://"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_paths(&shown_default), strip_paths(&shown_example));
}

#[test]
fn certs_dev_creates_a_usable_pki() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("dev");
    let (code, out, err) = fedge(&["certs", "dev", "--dir", d.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("for development only"));
    for f in [
        "ca.crt",
        "ca.key",
        "edge.crt",
        "edge.key",
        "partner.crt",
        "partner.key",
    ] {
        assert!(d.join(f).exists(), "{f} missing");
    }
    let (code, out, _) = fedge(&["certs", "dev", "--dir", d.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("already present"));
}

#[test]
fn serve_runs_on_embedded_defaults_with_a_dev_pki() {
    use std::io::{BufRead, BufReader};
    // The defaults are fixed ports (5061, 5065, 8061): a private network
    // namespace keeps them free whatever runs beside the tests.
    let ns = netns::NetNs::new();
    let dir = tempfile::tempdir().unwrap();
    let mut child = ns
        .command(fedge_bin())
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !log.iter().any(|l: &String| l.contains("fedge ready")) {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(l) => log.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("not ready: {log:#?}");
            }
        }
    }
    let text = log.join("\n");
    assert!(text.contains("DEVELOPMENT CERTIFICATES CREATED"), "{text}");
    assert!(
        text.contains("127.0.0.1:5061") && text.contains("127.0.0.1:5065"),
        "{text}"
    );
    assert!(
        !text.contains("\u{1b}["),
        "ANSI colours in a non-terminal log"
    );
    for f in [
        "ca.crt",
        "ca.key",
        "edge.crt",
        "edge.key",
        "partner.crt",
        "partner.key",
    ] {
        assert!(
            dir.path().join("certs/dev").join(f).exists(),
            "certs/dev/{f} missing"
        );
    }
    assert!(dir.path().join("var/fedge.db").exists());
    // The sample partner's certificate gets through to the edge; openssl
    // prints the answer and ends once its input has ended.
    std::fs::write(dir.path().join("options.txt"), options_to_edge(1)).unwrap();
    let out = ns
        .command("timeout")
        .args([
            "20",
            "sh",
            "-c",
            "{ cat options.txt; sleep 1; } | openssl s_client -connect 127.0.0.1:5061 -quiet -no_ign_eof \
             -cert certs/dev/partner.crt -key certs/dev/partner.key -CAfile certs/dev/ca.crt -verify_return_error",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    // A second edge on the same ports: one line, exit code 2.
    let second = ns
        .command(fedge_bin())
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    // The CVI commands with the gateway off: one line, exit code 2.
    let cvi: Vec<_> = [&["cvi", "status"][..], &["cvi", "drain"][..]]
        .iter()
        .map(|args| {
            ns.command(fedge_bin())
                .args(*args)
                .current_dir(dir.path())
                .output()
                .unwrap()
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SIP/2.0 200 OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "openssl did not end by itself");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    let refusals: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("cannot listen on"))
        .collect();
    assert_eq!(refusals.len(), 1, "{err}");
    assert!(
        refusals[0].starts_with("fedge: cannot listen on 127.0.0.1:5061"),
        "{err}"
    );
    for out in cvi {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("[cvi] enabled = false"), "{err}");
    }
}

/// A configuration naming `cert` and `key` (and the PKI's CA as trust).
fn config_with(pki: &Pki, cert: &CertFiles) -> std::path::PathBuf {
    let cfg = test_config(pki, "")
        .replace(
            &format!("cert = \"{}\"", pki.edge.cert.display()),
            &format!("cert = \"{}\"", cert.cert.display()),
        )
        .replace(
            &format!("key = \"{}\"", pki.edge.key.display()),
            &format!("key = \"{}\"", cert.key.display()),
        );
    let p = pki.path().join(format!(
        "{}.toml",
        cert.cert.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(&p, cfg).unwrap();
    p
}

#[test]
fn config_check_inspects_the_certificate() {
    let pki = Pki::new();
    let check = |p: &std::path::Path| fedge(&["--config", p.to_str().unwrap(), "config", "check"]);

    // A good certificate for a year: ok, names the FQDN, chains, no warning.
    let good = pki.leaf("good", &LeafSpec::new(EDGE_FQDN, 365));
    let (code, out, err) = check(&config_with(&pki, &good));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("certificate names sip.fedge.test, chains to [federation] trust"),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");

    // Expiring within 30 days: ok with a warning that says when.
    let soon = pki.leaf("soon", &LeafSpec::new(EDGE_FQDN, 10));
    let (code, _, err) = check(&config_with(&pki, &soon));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("expires in"),
        "{err}"
    );

    // A certificate for another name: partners would refuse it.
    let other = pki.leaf("other", &LeafSpec::new("sip.other.test", 365));
    let (code, _, err) = check(&config_with(&pki, &other));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("names sip.other.test but not [federation] fqdn sip.fedge.test"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // Expired.
    let mut spec = LeafSpec::new(EDGE_FQDN, 1);
    spec.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    spec.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    let old = pki.leaf("old", &spec);
    let (code, _, err) = check(&config_with(&pki, &old));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expired on"), "{err}");

    // A certificate path that does not exist, and a key that does not fit.
    let missing = CertFiles {
        cert: pki.path().join("missing.crt"),
        key: pki.edge.key.clone(),
    };
    let (code, _, err) = check(&config_with(&pki, &missing));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read certificate"), "{err}");
    let mismatch = CertFiles {
        cert: good.cert.clone(),
        key: pki.partner.key.clone(),
    };
    let p = config_with(&pki, &mismatch);
    let p2 = pki.path().join("mismatch.toml");
    std::fs::rename(&p, &p2).unwrap();
    let (code, _, err) = check(&p2);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("do not fit together"), "{err}");

    // Issued by a CA outside the trust bundle: ok with a warning.
    let stranger = Pki::new();
    let foreign = stranger.leaf("foreign", &LeafSpec::new(EDGE_FQDN, 365));
    let (code, out, err) = check(&config_with(&pki, &foreign));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("does not chain to [federation] trust"),
        "{out}"
    );
    assert!(
        err.contains("warning") && err.contains("does not chain"),
        "{err}"
    );
}

#[test]
fn admin_index_fedge_up_and_cvi_page_with_the_gateway_off() {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    let (status, body) = http(edge.admin, "GET", "/");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let paths: Vec<&str> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    for p in ["/health", "/registry", "/metrics", "/media"] {
        assert!(paths.contains(&p), "{p} missing from {body}");
    }
    assert!(
        !paths.contains(&"/cvi"),
        "gateway off, yet /cvi listed: {body}"
    );
    assert_eq!(metric(edge.admin, "fedge_up", &[]), 1.0);
    let (status, page) = http(edge.public, "GET", "/cvi/1234567890");
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("not available"), "{page}");
}
