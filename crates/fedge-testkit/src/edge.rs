//! The real `fedge` binary as the tests run it: `fedge serve` on loopback
//! with ephemeral ports (ready when its JSON log says so), killed on drop,
//! and the operator CLI. It never builds the binary: it runs the one cargo
//! built for the test or benchmark being run.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::pki::{EDGE_FQDN, Pki};

/// A running `fedge serve`, killed on drop.
pub struct Edge {
    child: Child,
    pub federation: SocketAddr,
    pub internal: SocketAddr,
    pub admin: SocketAddr,
    /// The public listener (published list, /cvi/<id>, FPA intake).
    pub public: SocketAddr,
    /// The CVI gateway's UDP+TCP and TLS listeners, when enabled.
    pub cvi: Option<SocketAddr>,
    pub cvi_tls: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    pub config_path: PathBuf,
    /// The edge's database (`[store] url`).
    pub store_url: String,
    /// An operator's API token (account [`TESTKIT_OPERATOR`]), which the
    /// admin helpers send to this edge's admin listener.
    pub token: String,
}

/// The operator account [`Edge::start`] creates in every edge's database.
pub const TESTKIT_OPERATOR: &str = "testkit-operator";

/// The `fedge` binary cargo built beside the running test or benchmark:
/// `CARGO_BIN_EXE_fedge` when cargo sets it at run time, else `fedge` in
/// the profile directory above the test executable's `deps/`.
pub fn fedge_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_fedge") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe
        .parent()
        .expect("the test executable's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("fedge{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run the tests and benches through cargo, which builds it",
        bin.display()
    );
    bin
}

/// What the tests' `[media]` section always says: every test runs its
/// media on loopback, which the relay refuses by default outside tests.
pub const TEST_MEDIA_NETWORKS: &str = "refused_networks = []\npartner_refused_networks = []\n";

/// Puts [`TEST_MEDIA_NETWORKS`] into `[media]` (opening it when the
/// configuration has none), unless the configuration names them itself.
pub fn with_test_media(cfg: &str) -> String {
    if cfg.contains("refused_networks") {
        return cfg.to_string();
    }
    match cfg.find("\n[media]\n") {
        Some(i) => {
            let at = i + "\n[media]\n".len();
            format!("{}{TEST_MEDIA_NETWORKS}{}", &cfg[..at], &cfg[at..])
        }
        None => format!("{cfg}\n[media]\n{TEST_MEDIA_NETWORKS}"),
    }
}

/// The config the tests run with: ephemeral loopback ports, short timeouts,
/// JSON logs. `extra` is appended (later keys of a table may not repeat).
/// [`Edge::start`] adds [`TEST_MEDIA_NETWORKS`].
pub fn test_config(pki: &Pki, extra_sip: &str) -> String {
    format!(
        r#"[federation]
listen = "127.0.0.1:0"
fqdn = "{EDGE_FQDN}"
home_domains = ["fedge.test"]
cert = "{}"
key = "{}"
trust = "{}"
handshake_timeout = "2s"

[internal]
listen = "127.0.0.1:0"
next_hop = "sip:127.0.0.1:5080;transport=udp"
allowed_sources = ["127.0.0.1"]

[store]
url = "sqlite://{}/fedge.db"

[admin]
listen = "127.0.0.1:0"

[public]
listen = "127.0.0.1:0"

[sip]
message_timeout = "1s"
{extra_sip}

[log]
format = "json"
level = "info"
# The per-source warning budget is tested on its own (tests/secrets.rs);
# other tests look for particular lines from one source, 127.0.0.1.
repeat_limit = 10000
"#,
        pki.edge.cert.display(),
        pki.edge.key.display(),
        pki.ca_file.display(),
        pki.path().display(),
    )
}

impl Edge {
    /// Starts the binary with `config` and waits until it is ready.
    pub fn start(pki: &Pki, config: &str) -> Edge {
        let config_path = pki.path().join(format!("fedge-{}.toml", rand_suffix()));
        std::fs::write(&config_path, with_test_media(config)).unwrap();
        let mut child = Command::new(fedge_bin())
            .arg("--config")
            .arg(&config_path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .spawn()
            .expect("spawn fedge");
        let stderr = child.stderr.take().expect("stderr");
        // Killed if anything below panics before the Edge owns it.
        let mut child = Spawned(Some(child));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let l2 = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut fed = None;
        let mut int = None;
        let mut admin = None;
        let mut public = None;
        let (mut cvi, mut cvi_tls) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "fedge did not become ready; log:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let f = &v["fields"];
            if f["message"] == "listening" {
                let addr: SocketAddr = f["addr"].as_str().unwrap().parse().unwrap();
                match f["role"].as_str().unwrap() {
                    "federation" => fed = Some(addr),
                    "internal" => int = Some(addr),
                    "admin" => admin = Some(addr),
                    "public" => public = Some(addr),
                    "cvi" if f["transport"] == "tls" => cvi_tls = Some(addr),
                    "cvi" => cvi = Some(addr),
                    _ => {}
                }
            }
            if f["message"] == "fedge ready" {
                break;
            }
        }
        let admin = admin.expect("admin address");
        let store_url = fedge::config::Config::load(&config_path)
            .unwrap_or_else(|e| panic!("the edge's configuration: {}", e.0))
            .store
            .url;
        let token = crate::admin::operator_token(&store_url, TESTKIT_OPERATOR);
        crate::admin::register_token(admin, &token);
        Edge {
            child: child.0.take().expect("the spawned edge"),
            federation: fed.expect("federation address"),
            internal: int.expect("internal address"),
            admin,
            public: public.expect("public address"),
            cvi,
            cvi_tls,
            logs,
            config_path,
            store_url,
            token,
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits up to `within` for a log line containing every needle.
    pub fn wait_log(&self, needles: &[&str], within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self
                .logs()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asserts the edge is running and logged no panic.
    pub fn assert_healthy(&mut self) {
        assert!(
            self.alive(),
            "fedge exited; log:\n{}",
            self.logs().join("\n")
        );
        let panics: Vec<String> = self
            .logs()
            .into_iter()
            .filter(|l| l.contains("panicked"))
            .collect();
        assert!(panics.is_empty(), "fedge panicked: {panics:?}");
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        crate::admin::forget_token(self.admin);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A spawned `fedge serve` not yet owned by an [`Edge`]: killed on drop,
/// so that a panic while it starts leaves no process behind.
struct Spawned(Option<Child>);

impl Spawned {
    fn kill(&mut self) -> std::io::Result<()> {
        match self.0.as_mut() {
            Some(c) => c.kill(),
            None => Ok(()),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A configuration for the CLI that names this edge's admin listener and
/// its database (the CLI authenticates through the database), written as
/// `name` beside the edge's configuration.
impl Edge {
    pub fn cli_config(&self, name: &str) -> PathBuf {
        let p = self
            .config_path
            .parent()
            .expect("the configuration's directory")
            .join(name);
        std::fs::write(
            &p,
            format!(
                "[admin]\nlisten = \"{}\"\n\n[store]\nurl = \"{}\"\n",
                self.admin, self.store_url
            ),
        )
        .unwrap();
        p
    }
}

/// Runs the fedge CLI with a config file; returns (exit code, stdout, stderr).
pub fn fedge_cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(fedge_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env("USER", "tester")
        .output()
        .expect("run fedge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`fedge_cli`] but asserts success and returns stdout.
pub fn fedge_ok(config: &Path, args: &[&str]) -> String {
    let (code, out, err) = fedge_cli(config, args);
    assert_eq!(code, 0, "fedge {args:?} failed: {err}");
    out
}

/// The conference ID in `fedge cvi meeting create`'s invite block.
pub fn conference_id(invite: &str) -> String {
    invite
        .lines()
        .find_map(|l| l.strip_prefix("Video Conference ID: "))
        .unwrap_or_else(|| panic!("no ID in {invite}"))
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}
