//! Telling the running edge that the registry changed: `POST
//! /registry/reload` on the admin listener named in the configuration, so
//! that a change is enforced (a suspended partner refused, its connections
//! closed) before the command that made it returns.
//!
//! The admin listener wants an account: the command line, which has the
//! database (and whoever can write it can do anything already), issues
//! itself a token of the built-in node account (`fedge-node`) valid for
//! [`NODE_TOKEN_LIFETIME`], and deletes it after the request (decision
//! D81). `FEDGE_TOKEN` in the environment is sent instead when set.
//!
//! Owns that one request and the CLI's node tokens. It never fails the
//! command: the change is already committed, and an edge that is not
//! running, or not reachable, applies it at its next `[store]
//! poll_interval`. It never prints a token.

use std::net::SocketAddr;
use std::time::Duration;

use fedge::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a node token the CLI issues itself lives, at most.
pub const NODE_TOKEN_LIFETIME: time::Duration = time::Duration::seconds(60);

/// A token for the admin listener: `FEDGE_TOKEN`, or a node token (to be
/// given back to [`give_back`]).
pub(crate) enum AdminToken {
    Given(String),
    Node(String),
}

impl AdminToken {
    pub(crate) fn value(&self) -> &str {
        match self {
            AdminToken::Given(t) | AdminToken::Node(t) => t,
        }
    }
}

/// The token this command sends to the admin listener.
pub(crate) async fn admin_token(store: &Store) -> Result<AdminToken, fedge::store::StoreError> {
    if let Some(t) = std::env::var("FEDGE_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(AdminToken::Given(t.trim().to_string()));
    }
    store
        .node_token(NODE_TOKEN_LIFETIME)
        .await
        .map(AdminToken::Node)
}

/// Deletes a node token after use (it would expire on its own anyway).
pub(crate) async fn give_back(store: &Store, token: AdminToken) {
    if let AdminToken::Node(t) = token {
        let _ = store.drop_node_token(&t).await;
    }
}

/// Where the CLI reaches this node's admin listener: its address from the
/// configuration and, under `[admin] tls`, a TLS client that accepts only
/// the edge's own certificate.
#[derive(Clone)]
pub(crate) struct AdminTarget {
    pub addr: SocketAddr,
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl AdminTarget {
    pub(crate) fn of(cfg: &fedge::config::Config) -> Result<AdminTarget, super::failure::Failure> {
        let admin = cfg.admin.listen;
        let addr = if admin.ip().is_unspecified() {
            match admin {
                SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], admin.port())),
                SocketAddr::V6(_) => {
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, admin.port()))
                }
            }
        } else {
            admin
        };
        let tls = if cfg.admin.tls {
            Some(
                fedge::server::admin_client_config(cfg)
                    .map_err(|e| super::failure::Failure::usage(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(AdminTarget { addr, tls })
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Connects to the admin listener (at most 1 s), over TLS when it serves
/// TLS. `Ok(None)`: nothing listens there.
async fn connect(target: &AdminTarget) -> std::io::Result<Option<Box<dyn AdminStream>>> {
    let Ok(Ok(tcp)) =
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(target.addr)).await
    else {
        return Ok(None);
    };
    match &target.tls {
        None => Ok(Some(Box::new(tcp))),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::from(target.addr.ip());
            let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await?;
            Ok(Some(Box::new(tls)))
        }
    }
}

trait AdminStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AdminStream for T {}

/// One request to the admin listener with `token`; the whole answer.
/// `Ok(None)`: nothing listens there.
pub(crate) async fn admin_request(
    target: &AdminTarget,
    method: &str,
    path: &str,
    token: &str,
) -> std::io::Result<Option<Vec<u8>>> {
    let Some(mut s) = connect(target).await? else {
        return Ok(None);
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        target.addr
    );
    s.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    // A TLS peer that closes without close_notify still sent a whole answer
    // (Connection: close); keep what arrived.
    match s.read_to_end(&mut answer).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(Some(answer))
}

/// Asks the edge at `target` to reload its registry now; waits at most a
/// few seconds. Says on stderr when an edge answered but could not.
pub async fn registry_changed(target: &AdminTarget, store: &Store) {
    if target.addr.port() == 0 {
        return; // an ephemeral admin port cannot be found from the configuration
    }
    let addr = target.addr;
    let scheme = target.scheme();
    // No edge listening here (it loads the registry when it starts): no
    // token to issue, nothing to say.
    let listening =
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(target.addr)).await;
    if !matches!(listening, Ok(Ok(_))) {
        return;
    }
    let token = match admin_token(store).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "note: cannot authenticate to the edge at {scheme}://{addr} ({e}); it applies the change at its next poll"
            );
            return;
        }
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        admin_request(target, "POST", "/registry/reload", token.value()),
    )
    .await;
    give_back(store, token).await;
    match outcome {
        Ok(Ok(None)) => {} // no edge running here: it loads the registry when it starts
        Ok(Ok(Some(answer))) if answer.starts_with(b"HTTP/1.1 200") => {}
        Ok(Ok(Some(answer))) => {
            let line = String::from_utf8_lossy(&answer);
            let line = line.lines().next().unwrap_or("");
            eprintln!(
                "note: the edge at {scheme}://{addr} could not reload its registry ({line}); it applies the change at its next poll"
            );
        }
        Ok(Err(e)) => eprintln!(
            "note: the edge at {scheme}://{addr} did not confirm the change ({e}); it applies it at its next poll"
        ),
        Err(_) => eprintln!(
            "note: the edge at {scheme}://{addr} did not confirm the change in time; it applies it at its next poll"
        ),
    }
}
