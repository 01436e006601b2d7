//! The command line: configuration and usage mistakes give one line on
//! stderr and exit code 2; `config example` is a complete, valid file.

use std::process::Command;

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
    let (code, out, err) = fedge(&["--config", p.to_str().unwrap(), "config", "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"));
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
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(fedge_bin())
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
    // The sample partner's certificate gets through to the edge.
    let dev = dir.path().join("certs/dev");
    let out = s_client(
        "127.0.0.1:5061".parse().unwrap(),
        &[
            "-cert",
            dev.join("partner.crt").to_str().unwrap(),
            "-key",
            dev.join("partner.key").to_str().unwrap(),
            "-CAfile",
            dev.join("ca.crt").to_str().unwrap(),
            "-verify_return_error",
        ],
        options_to_edge(1).as_bytes(),
        "SIP/2.0 200",
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.stdout.contains("SIP/2.0 200 OK"), "{}", out.all());
}
