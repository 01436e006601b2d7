//! Shared helpers for the end-to-end tests: a throw-away PKI, the real
//! `fedge` binary started on loopback with ephemeral ports, TLS clients,
//! and third-party tools (openssl s_client).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fedge::pki::{Authority, Issued, LeafSpec, write_pem};
use fedge::sip::SipMessage;
use fedge::sip::framing::{StreamDecoder, StreamItem};
use fedge::sip::parse::Limits;
use fedge::sip::transport::tls::{TlsFiles, client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Decoder;

pub const EDGE_FQDN: &str = "sip.fedge.test";
pub const PARTNER_FQDN: &str = "sip.partner.test";

/// A certificate and key written to disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test PKI: our CA, the edge's certificate, a good partner certificate,
/// and helpers for bad ones.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Authority,
    pub ca_file: PathBuf,
    pub edge: CertFiles,
    pub partner: CertFiles,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::new("fedge test CA").expect("CA");
        let ca_file = dir.path().join("ca.crt");
        write_pem(&ca_file, &ca.pem.cert_pem, false).unwrap();
        let mut edge_spec = LeafSpec::new(EDGE_FQDN, 30);
        edge_spec.dns_names.push("localhost".into());
        let edge = write_pair(dir.path(), "edge", &ca.issue(&edge_spec).unwrap());
        let partner = write_pair(
            dir.path(),
            "partner",
            &ca.issue(&LeafSpec::new(PARTNER_FQDN, 30)).unwrap(),
        );
        Pki {
            dir,
            ca,
            ca_file,
            edge,
            partner,
        }
    }

    /// Issues and writes a leaf from this CA.
    pub fn leaf(&self, name: &str, spec: &LeafSpec) -> CertFiles {
        write_pair(self.dir.path(), name, &self.ca.issue(spec).unwrap())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn write_pair(dir: &Path, name: &str, issued: &Issued) -> CertFiles {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    write_pem(&cert, &issued.cert_pem, false).unwrap();
    write_pem(&key, &issued.key_pem, true).unwrap();
    CertFiles { cert, key }
}

/// A running `fedge serve`, killed on drop.
pub struct Edge {
    child: Child,
    pub federation: SocketAddr,
    pub internal: SocketAddr,
    pub admin: SocketAddr,
    /// The CVI gateway's UDP+TCP and TLS listeners, when enabled.
    pub cvi: Option<SocketAddr>,
    pub cvi_tls: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    pub config_path: PathBuf,
}

pub fn fedge_bin() -> &'static str {
    env!("CARGO_BIN_EXE_fedge")
}

/// The config the tests run with: ephemeral loopback ports, short timeouts,
/// JSON logs. `extra` is appended (later keys of a table may not repeat).
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

[store]
url = "sqlite://{}/fedge.db"

[admin]
listen = "127.0.0.1:0"

[sip]
message_timeout = "1s"
{extra_sip}

[log]
format = "json"
level = "info"
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
        std::fs::write(&config_path, config).unwrap();
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
                    "cvi" if f["transport"] == "tls" => cvi_tls = Some(addr),
                    "cvi" => cvi = Some(addr),
                    _ => {}
                }
            }
            if f["message"] == "fedge ready" {
                break;
            }
        }
        Edge {
            child,
            federation: fed.expect("federation address"),
            internal: int.expect("internal address"),
            admin: admin.expect("admin address"),
            cvi,
            cvi_tls,
            logs,
            config_path,
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A TLS client connection to the edge, reading SIP with a real framer.
pub struct SipTlsClient {
    pub stream: TlsStream<TcpStream>,
    buf: BytesMut,
    decoder: StreamDecoder,
}

/// What came back from the edge.
#[derive(Debug)]
pub enum Reply {
    Message(SipMessage),
    Pong,
    Closed,
    Timeout,
}

pub async fn tls_connect(
    addr: SocketAddr,
    pki: &Pki,
    client: &CertFiles,
) -> std::io::Result<SipTlsClient> {
    let cfg = client_config(&TlsFiles {
        cert: client.cert.clone(),
        key: client.key.clone(),
        trust: pki.ca_file.clone(),
    })
    .expect("client TLS config");
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(EDGE_FQDN).unwrap();
    let stream = connector.connect(name, tcp).await?;
    Ok(SipTlsClient {
        stream,
        buf: BytesMut::new(),
        decoder: StreamDecoder::new(Limits::default()),
    })
}

impl SipTlsClient {
    pub async fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(data).await?;
        self.stream.flush().await
    }

    /// Reads the next reply, waiting at most `within`.
    pub async fn recv(&mut self, within: Duration) -> Reply {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(StreamItem::Message(m))) => return Reply::Message(m),
                Ok(Some(StreamItem::Ping)) => return Reply::Pong,
                // An error response to a malformed request echoes the
                // request's own (malformed) Via/From/To as RFC 3261 §8.2.6.2
                // asks; its index still tells the status.
                Ok(Some(StreamItem::Rejected(r))) => match r.partial {
                    Some(m) if m.status().is_some() => return Reply::Message(m),
                    _ => panic!("edge sent a malformed message: {}", r.error),
                },
                Ok(None) => {}
                Err(e) => panic!("edge broke framing: {e}"),
            }
            // A lone CRLF is the pong to our CRLF CRLF ping.
            if self.buf.as_ref() == b"\r\n" {
                self.buf.clear();
                return Reply::Pong;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return Reply::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return Reply::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// An OPTIONS request addressed to the edge itself.
pub fn options_to_edge(n: u32) -> String {
    format!(
        "OPTIONS sip:{EDGE_FQDN} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {PARTNER_FQDN};branch=z9hG4bK-witness-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:ping@partner.test>;tag=w{n}\r\n\
         To: <sip:{EDGE_FQDN}>\r\n\
         Call-ID: witness-{n}@{PARTNER_FQDN}\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Output of a third-party command run with a time limit.
#[derive(Debug)]
pub struct ToolOutput {
    pub stdout: String,
    pub stderr: String,
    pub exited: bool,
}

impl ToolOutput {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `openssl s_client` against `addr`, writes `input`, keeps stdin open
/// until the server answers or closes, and returns what it printed.
pub fn s_client(addr: SocketAddr, extra: &[&str], input: &[u8], wait_for: &str) -> ToolOutput {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-servername")
        .arg(EDGE_FQDN)
        .arg("-quiet")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (the test command installs it)");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    let _ = stdin.flush();
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let o2 = out.clone();
    let e2 = err.clone();
    let t1 = std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = so.read(&mut b) {
            if n == 0 {
                break;
            }
            o2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&b[..n]));
        }
    });
    let t2 = std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = se.read(&mut b) {
            if n == 0 {
                break;
            }
            e2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&b[..n]));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exited = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            exited = true;
            break;
        }
        if !wait_for.is_empty() && out.lock().unwrap().contains(wait_for) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let _ = t1.join();
    let _ = t2.join();
    let stdout = out.lock().unwrap().clone();
    let stderr = err.lock().unwrap().clone();
    ToolOutput {
        stdout,
        stderr,
        exited,
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

/// One HTTP/1.1 request (empty body) to the admin listener: status and
/// body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_else(|| panic!("{method} {path}: no body in {resp:?}"));
    (status, body)
}

/// GET a path from the admin listener; returns the body as text.
pub fn admin_text(addr: SocketAddr, path: &str) -> String {
    http(addr, "GET", path).1
}

/// GET a path from the admin listener; returns the JSON body.
pub fn admin_get(addr: SocketAddr, path: &str) -> serde_json::Value {
    let body = admin_text(addr, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("admin {path}: {e}: {body}"))
}

/// The value of the Prometheus sample `name{labels}` on the edge's
/// /metrics (labels as rendered, e.g. `rule="file_transfer"`, all of which
/// must appear), summed over the samples that match; 0 when none does.
pub fn metric(addr: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    admin_text(addr, "/metrics")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            (series == &name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|lab| series.contains(lab))
        })
        .map(|(_, v)| {
            v.parse::<f64>()
                .unwrap_or_else(|e| panic!("metric {name}: {v:?}: {e}"))
        })
        .sum()
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
