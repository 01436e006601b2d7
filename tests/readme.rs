//! README.md's commands, run exactly as printed and in order, on a fresh
//! copy of what they need: the home edge (`cargo run -- serve`, run as the
//! `target/debug/fedge` it builds), partner.test's edge from
//! examples/partner-edge.toml, the partner walk-through (add, approve,
//! test-federation both ways, enable, an IM from a partner user to a home
//! user through both edges, suspend), the CVI and configuration commands.
//! Every command must succeed; a README that disagrees with the code fails
//! here. It runs in a private network namespace, since the README uses the
//! default ports, so an edge running beside the tests does not matter.

#[path = "support/netns.rs"]
mod netns;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fedge_testkit::fedge_bin;

/// The commands of README.md's `sh` blocks, in order, continuation lines
/// (a trailing `\` or `|`) joined.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if !in_sh {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if line.trim() == "```" {
            in_sh = false;
            continue;
        }
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        pending.push_str(line);
        pending.push('\n');
        if !(t.ends_with('\\') || t.ends_with('|')) {
            out.push(pending.trim().to_string());
            pending.clear();
        }
    }
    out
}

/// The command without its trailing comment (commands with `#` in quotes
/// are not long-running, so this is only used to spot `serve`).
fn without_comment(cmd: &str) -> &str {
    cmd.split(" #").next().unwrap_or(cmd).trim()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A `serve` from the README, started in the background; ready when it
/// logs so.
fn start_server(ns: &netns::NetNs, dir: &Path, prelude: &str, cmd: &str) -> Child {
    let mut child = ns
        .command("bash")
        .arg("-c")
        .arg(format!("{prelude}exec {cmd}"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("fedge ready")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => log.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("`{cmd}` did not become ready:\n{}", log.join("\n"));
            }
        }
    }
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    child
}

/// Runs one command with bash (at most two minutes); exit code and output.
fn run(ns: &netns::NetNs, dir: &Path, prelude: &str, cmd: &str) -> (i32, String) {
    let out = ns
        .command("timeout")
        .args(["120", "bash", "-c", &format!("{prelude}{cmd}")])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn readme_commands_run_as_printed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let cmds = readme_commands(&readme);
    let all = cmds.join("\n");
    // The walk-through the issue promises is there (and so is run below).
    for step in [
        "cargo run -- serve",
        "export PATH=",
        "openssl s_client",
        "fedge --config examples/partner-edge.toml serve",
        "fedge --config examples/partner-edge.toml partner add",
        "fedge partner add --domain partner.test",
        "fedge partner approve partner.test",
        "fedge test-federation partner.test",
        "fedge --config examples/partner-edge.toml test-federation fedge.test",
        "fedge partner enable partner.test",
        "examples/home-user.xml",
        "examples/partner-user.xml",
        "fedge partner suspend partner.test",
        "--csv examples/organisers.csv",
        "--expires 2h",
        "config check",
    ] {
        assert!(all.contains(step), "README.md lacks `{step}`");
    }

    // A fresh clone: what the commands read, and the binary where
    // `cargo run` puts it.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root.join("examples"), &dir.path().join("examples"));
    copy_dir(&root.join("fpa-schemas"), &dir.path().join("fpa-schemas"));
    std::fs::create_dir_all(dir.path().join("target/debug")).unwrap();
    std::os::unix::fs::symlink(fedge_bin(), dir.path().join("target/debug/fedge")).unwrap();

    let ns = netns::NetNs::new();
    let mut prelude = String::new();
    let mut servers: Vec<Child> = Vec::new();
    let mut background: Vec<String> = Vec::new();
    let mut ran = Vec::new();
    for cmd in &cmds {
        // This test is part of `.ci/test`.
        if cmd == ".ci/test" || cmd.starts_with(".ci/test ") {
            continue;
        }
        // `cargo run -- ARGS` builds and runs target/debug/fedge ARGS.
        let cmd = cmd.replace("cargo run -- ", "target/debug/fedge ");
        if cmd.starts_with("export ") {
            prelude.push_str(&cmd);
            prelude.push('\n');
            continue;
        }
        if without_comment(&cmd).ends_with(" serve") {
            servers.push(start_server(&ns, dir.path(), &prelude, &cmd));
            continue;
        }
        let (mut code, mut out) = run(&ns, dir.path(), &prelude, &cmd);
        // The partner's IM test passes when the home edge's reply has been
        // accepted, a moment after the partner's command ended: a person
        // looks again, and so does this test (bounded).
        if cmd.starts_with("fedge partner show partner.test") {
            let deadline = Instant::now() + Duration::from_secs(15);
            while !out.contains("im test:          passed") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                (code, out) = run(&ns, dir.path(), &prelude, &cmd);
            }
            assert!(out.contains("im test:          passed"), "{cmd}\n{out}");
        }
        assert_eq!(code, 0, "README command failed:\n{cmd}\n{out}");
        if cmd.contains("openssl s_client") {
            assert!(out.contains("SIP/2.0 200 OK"), "{cmd}\n{out}");
        }
        if cmd.contains("test-federation") {
            assert!(out.contains("all steps passed"), "{cmd}\n{out}");
        }
        if cmd.contains("partner enable") {
            assert!(out.contains("-> enabled"), "{cmd}\n{out}");
        }
        if cmd.contains("partner suspend") {
            assert!(out.contains("-> suspended"), "{cmd}\n{out}");
        }
        if let Some(pid) = out.split("PID=[").nth(1).and_then(|r| r.split(']').next()) {
            background.push(pid.to_string());
        }
        ran.push(cmd);
    }
    // The admin listener wants an account: a token of the README's operator.
    let (code, out) = run(
        &ns,
        dir.path(),
        &prelude,
        "fedge user token admin --label readme-test",
    );
    assert_eq!(code, 0, "{out}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("API token for admin (readme-test): "))
        .unwrap_or_else(|| panic!("no token in {out}"))
        .trim()
        .to_string();
    // Two fedges answered each other's IM tests once: the home edge
    // recorded one pass, and a second later still one (the replies are
    // marked, so neither edge replies to a reply).
    let passes = || {
        let (_, metrics) = run(
            &ns,
            dir.path(),
            "",
            &format!(
                "exec 3<>/dev/tcp/127.0.0.1/8061 && printf 'GET /metrics HTTP/1.0\\r\\nAuthorization: Bearer {token}\\r\\n\\r\\n' >&3 && cat <&3"
            ),
        );
        metrics
            .lines()
            .filter(|l| l.starts_with("fedge_im_tests_total{") && l.contains("result=\"passed\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let first = passes();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(first, passes(), "IM tests still going on");
    assert!(
        first.contains("partner=\"partner.test\"") && first.ends_with(" 1"),
        "{first}"
    );
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    // A SIPp started with -bg (by its PID) if it is still there.
    for pid in background {
        let _ = std::process::Command::new("kill").arg(&pid).status();
    }
    assert!(ran.len() >= 15, "only {} commands ran: {ran:#?}", ran.len());
}
