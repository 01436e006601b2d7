//! The CLI through the admin API (`--server URL --token TOKEN [--ca
//! FILE]`, or FEDGE_SERVER / FEDGE_TOKEN): one HTTP client, the exit-code
//! rule for the API's answers, and the dispatch to each subcommand's
//! remote branch (partner, cvi, media, test-federation); `fedge api
//! openapi` prints the API's OpenAPI document.
//!
//! Owns the connection to the API (rustls with ring, the CA named by --ca
//! or the configuration's trust bundle) and turning a refusal into one
//! line: 4xx exit 2, anything else exit 1. It never opens the database and
//! never prints a token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use serde_json::Value;

use super::Command;
use super::common::load_config;
use super::failure::Failure;

#[derive(Subcommand, Debug)]
pub enum ApiCmd {
    /// Print the API's OpenAPI document (docs/openapi.json holds the same).
    Openapi,
}

/// `fedge api ...` (needs no server).
pub fn api(cmd: ApiCmd) -> Result<(), Failure> {
    match cmd {
        ApiCmd::Openapi => {
            print!("{}", fedge::admin::api::openapi_json());
            Ok(())
        }
    }
}

/// A non-empty environment variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The CA file to trust: --ca, else the configuration's `[federation]
/// trust` when that file exists (the admin listener serves the edge's
/// certificate).
pub fn trust(ca: Option<PathBuf>, config: &Option<PathBuf>) -> Option<PathBuf> {
    ca.or_else(|| {
        let cfg = load_config(config).ok()?;
        let t = cfg.federation.trust;
        t.is_file().then_some(t)
    })
}

/// The admin API of one edge.
pub struct Remote {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// Percent-encodes one path segment.
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn tls_config(ca: Option<&PathBuf>) -> Result<rustls::ClientConfig, Failure> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| Failure::usage(format!("--ca {}: {e}", path.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::usage(format!("--ca {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Failure::usage(format!(
                "--ca {}: no PEM certificate",
                path.display()
            )));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| Failure::usage(format!("--ca {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::runtime(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Remote {
    /// A client for the API at `server` (`http://` or `https://`).
    pub fn new(
        server: &str,
        token: Option<String>,
        ca: Option<PathBuf>,
    ) -> Result<Remote, Failure> {
        let base = server.trim().trim_end_matches('/').to_string();
        let https = base.starts_with("https://");
        if !https && !base.starts_with("http://") {
            return Err(Failure::usage(format!(
                "--server {server:?}: expected http://HOST:PORT or https://HOST:PORT"
            )));
        }
        if https && ca.is_none() {
            return Err(Failure::usage(
                "--server https://... needs --ca FILE (the CA of the admin listener's certificate)",
            ));
        }
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(ca.as_ref())?)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Failure::runtime(format!("cannot build the HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))?;
        Ok(Remote {
            base,
            token,
            client,
            rt,
        })
    }

    /// The API's base URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// One request; the status and the JSON body (`null` when empty).
    /// Fails only when there is no HTTP answer.
    pub fn exchange<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(u16, Value), Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| {
                Failure::runtime(format!("cannot reach the admin API at {}: {e}", self.base))
            })?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| {
                Failure::runtime(format!("{}: the answer broke off: {e}", self.base))
            })?;
            let v = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            Ok((status, v))
        })
    }

    /// One request that must succeed; a refusal becomes its reason in one
    /// line (4xx: exit 2, else 1).
    pub fn send<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Value, Failure> {
        let (status, v) = self.exchange(method, path, body)?;
        if (200..300).contains(&status) {
            return Ok(v);
        }
        Err(refusal(status, &v))
    }

    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send::<Value>(reqwest::Method::GET, path, None)
    }

    pub fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<Value, Failure> {
        self.send(reqwest::Method::POST, path, Some(body))
    }

    /// The id of the partner one of whose domains is `domain` (a live one
    /// before a revoked one that held it).
    pub fn partner_id(&self, domain: &str) -> Result<String, Failure> {
        let list = self.get("/api/v1/partners")?;
        let all = list.as_array().cloned().unwrap_or_default();
        let holds = |p: &&Value| {
            p["domains"].as_array().is_some_and(|d| {
                d.iter().any(|x| {
                    x.as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(domain.trim()))
                })
            })
        };
        all.iter()
            .filter(holds)
            .min_by_key(|p| p["state"] == "revoked")
            .and_then(|p| p["id"].as_str().map(str::to_string))
            .ok_or_else(|| Failure::usage(format!("no partner has domain {domain}")))
    }
}

/// A refusal as one line and its exit code.
pub fn refusal(status: u16, v: &Value) -> Failure {
    let reason = v["error"]
        .as_str()
        .map(str::to_string)
        .or_else(|| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("the API answered {status}"));
    let line = reason.lines().collect::<Vec<_>>().join("; ");
    if (400..500).contains(&status) {
        Failure::usage(line)
    } else {
        Failure::runtime(line)
    }
}

/// Runs `command` through the API.
pub fn run(api: &Remote, command: Command) -> Result<(), Failure> {
    match command {
        Command::Partner { cmd } => super::partner::remote(cmd, api),
        Command::Cvi { cmd } => super::cvi::remote(cmd, api),
        Command::Media { cmd } => super::media::remote(cmd, api),
        Command::Drain(args) => super::drain::remote(args, api),
        Command::Reload => super::reload::remote(api),
        Command::TestFederation { domain, .. } => super::test_federation::remote(api, &domain),
        Command::Api { cmd } => self::api(cmd),
        Command::Nodes { cmd, json } => super::nodes::remote(cmd, json, api),
        _ => Err(Failure::usage(
            "--server applies to partner, cvi, media, nodes, drain, reload and test-federation; the other commands run on this host",
        )),
    }
}
