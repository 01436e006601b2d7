//! Outbound stream connections (TLS to partner edges, TCP or TLS to the
//! home pool): connect, verify, reuse, and cap per destination.
//!
//! Owns connection reuse. A destination is a host, port, transport and,
//! for TLS, the name its certificate must carry. Up to `max_conns`
//! connections per destination are kept; a new one is opened only when the
//! live ones are busy. Every outbound connection is served by the same read
//! loop as inbound ones, so responses and requests that come back on it
//! reach the handler with the peer's certificate identity.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::stream::{ConnCtx, spawn_connection};
use super::tls::identity_of;
use super::{Capture, Connection, ConnectionTable, Handler, Tag, Transport, TransportSettings};

/// Where an outbound stream goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamTarget {
    pub transport: Transport,
    /// Host name or IP literal to resolve and connect to.
    pub host: String,
    pub port: u16,
    /// For TLS: the name the server certificate must carry.
    pub server_name: Option<String>,
    /// Which side the connection serves (for the messages coming back).
    pub tag: Tag,
    pub max_conns: usize,
}

impl std::fmt::Display for StreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.transport, self.host, self.port)?;
        if let Some(n) = &self.server_name {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// Why no connection could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("cannot connect to {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("TLS with {target} failed: {detail}")]
    Tls {
        target: String,
        detail: String,
        /// The server's certificate does not name the expected FQDN.
        name_mismatch: bool,
    },
    #[error("connecting to {target} timed out")]
    Timeout { target: String },
}

/// Why a resolver found no address: whatever error the resolver has.
pub type ResolveFailure = Box<dyn std::error::Error + Send + Sync>;

/// Looks up the addresses of a host for outbound connections: the system
/// resolver by default, the edge's configured name server when set.
pub trait HostResolver: Send + Sync {
    fn addresses<'a>(
        &'a self,
        host: &'a str,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<Vec<std::net::IpAddr>, ResolveFailure>> + Send + 'a>,
    >;
}

/// The system's resolver (getaddrinfo through tokio).
#[derive(Debug, Default)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn addresses<'a>(
        &'a self,
        host: &'a str,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<Vec<std::net::IpAddr>, ResolveFailure>> + Send + 'a>,
    > {
        Box::pin(async move {
            tokio::net::lookup_host((host, 0))
                .await
                .map(|a| a.map(|s| s.ip()).collect())
                .map_err(ResolveFailure::from)
        })
    }
}

/// Reusable outbound connections.
pub struct Pool {
    conns: Mutex<HashMap<StreamTarget, Vec<Connection>>>,
    /// Serialises connection set-up per destination (no thundering herd).
    opening: tokio::sync::Mutex<HashMap<StreamTarget, Arc<tokio::sync::Mutex<()>>>>,
    /// Read at each new connection; [`Pool::set_client_config`] swaps it.
    tls: arc_swap::ArcSwap<rustls::ClientConfig>,
    settings: Arc<TransportSettings>,
    table: Arc<ConnectionTable>,
    shutdown: CancellationToken,
    connect_timeout: Duration,
    next: AtomicUsize,
    resolver: Arc<dyn HostResolver>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        settings: Arc<TransportSettings>,
        table: Arc<ConnectionTable>,
        shutdown: CancellationToken,
        connect_timeout: Duration,
    ) -> Pool {
        Pool {
            conns: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(HashMap::new()),
            tls: arc_swap::ArcSwap::new(tls),
            settings,
            table,
            shutdown,
            connect_timeout,
            next: AtomicUsize::new(0),
            resolver: Arc::new(SystemResolver),
        }
    }

    /// Replaces the TLS client configuration (a certificate reload): new
    /// connections present the new certificate and check partners against
    /// the new trust anchors; connections already open keep going.
    pub fn set_client_config(&self, tls: Arc<rustls::ClientConfig>) {
        self.tls.store(tls);
    }

    /// Looks hosts up with `r` instead of the system resolver.
    pub fn with_resolver(mut self, r: Arc<dyn HostResolver>) -> Pool {
        self.resolver = r;
        self
    }

    /// The capture tap of the settings this pool's connections use (for
    /// the proxy's UDP sends, which share them).
    pub fn capture(&self) -> Option<&Capture> {
        self.settings.capture.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamTarget, Vec<Connection>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live connection to `t`, or `None` when all are busy or there are none.
    fn pick(&self, t: &StreamTarget) -> (Option<Connection>, usize) {
        let mut map = self.lock();
        let list = map.entry(t.clone()).or_default();
        list.retain(|c| !c.is_closed());
        let n = list.len();
        if n == 0 {
            return (None, 0);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let pick = (0..n)
            .map(|i| &list[(start + i) % n])
            .find(|c| !c.is_busy());
        match pick {
            Some(c) => (Some(c.clone()), n),
            None if n >= t.max_conns => (Some(list[start % n].clone()), n),
            None => (None, n),
        }
    }

    /// A live, not busy connection to `t`, without waiting.
    pub fn try_get(&self, t: &StreamTarget) -> Option<Connection> {
        self.pick(t).0
    }

    /// Returns a connection to `t`, opening one if needed.
    pub async fn get<H: Handler>(
        &self,
        t: &StreamTarget,
        handler: Arc<H>,
    ) -> Result<Connection, ConnectError> {
        if let (Some(c), _) = self.pick(t) {
            return Ok(c);
        }
        let gate = {
            let mut opening = self.opening.lock().await;
            opening.entry(t.clone()).or_default().clone()
        };
        let _g = gate.lock().await;
        // Someone else may have opened one while we waited.
        if let (Some(c), _) = self.pick(t) {
            return Ok(c);
        }
        let c = self.open(t, handler).await?;
        self.lock().entry(t.clone()).or_default().push(c.clone());
        Ok(c)
    }

    async fn open<H: Handler>(
        &self,
        t: &StreamTarget,
        handler: Arc<H>,
    ) -> Result<Connection, ConnectError> {
        let target = t.to_string();
        let addrs: Vec<SocketAddr> = match t.host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, t.port)],
            Err(_) => self
                .resolver
                .addresses(&t.host)
                .await
                .map_err(|e| ConnectError::Resolve {
                    host: t.host.clone(),
                    detail: e.to_string(),
                })?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, t.port))
                .collect(),
        };
        if addrs.is_empty() {
            return Err(ConnectError::Resolve {
                host: t.host.clone(),
                detail: "no A or AAAA record".into(),
            });
        }
        let mut last = ConnectError::Timeout {
            target: target.clone(),
        };
        for addr in addrs {
            let tcp =
                match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                    Err(_) => {
                        last = ConnectError::Timeout {
                            target: format!("{target} at {addr}"),
                        };
                        continue;
                    }
                    Ok(Err(e)) => {
                        last = ConnectError::Connect {
                            target: format!("{target} at {addr}"),
                            detail: e.to_string(),
                        };
                        continue;
                    }
                    Ok(Ok(s)) => s,
                };
            let _ = tcp.set_nodelay(true);
            let local = tcp
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let ctx = ConnCtx {
                tag: t.tag,
                settings: self.settings.clone(),
                table: self.table.clone(),
                shutdown: self.shutdown.clone(),
                remote: addr,
                local,
            };
            match t.transport {
                Transport::Tcp => {
                    info!(role = %t.tag, %target, %addr, "outbound TCP connection open");
                    return Ok(spawn_connection(
                        tcp,
                        Transport::Tcp,
                        None,
                        ctx,
                        handler,
                        None,
                    ));
                }
                Transport::Tls => {
                    let name = t.server_name.clone().unwrap_or_else(|| t.host.clone());
                    let sni =
                        ServerName::try_from(name.clone()).map_err(|e| ConnectError::Tls {
                            target: target.clone(),
                            detail: format!("{name:?} is not a valid server name: {e}"),
                            name_mismatch: false,
                        })?;
                    let connector = TlsConnector::from(self.tls.load_full());
                    let tls = match tokio::time::timeout(
                        self.settings.handshake_timeout,
                        connector.connect(sni, tcp),
                    )
                    .await
                    {
                        Err(_) => {
                            last = ConnectError::Timeout {
                                target: format!("{target} at {addr} (TLS handshake)"),
                            };
                            continue;
                        }
                        Ok(Err(e)) => {
                            let mismatch = is_name_mismatch(&e);
                            let err = ConnectError::Tls {
                                target: format!("{target} at {addr}"),
                                detail: super::tls::describe_handshake_error(&e),
                                name_mismatch: mismatch,
                            };
                            warn!(role = %t.tag, error = %err, "outbound TLS refused");
                            // A certificate problem will not go away at another address.
                            return Err(err);
                        }
                        Ok(Ok(s)) => s,
                    };
                    let identity = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| identity_of(c, false).ok())
                        .map(Arc::new);
                    info!(role = %t.tag, %target, %addr, identity = %identity.as_ref().map(|i| i.to_string()).unwrap_or_default(), "outbound TLS connection open");
                    return Ok(spawn_connection(
                        tls,
                        Transport::Tls,
                        identity,
                        ctx,
                        handler,
                        None,
                    ));
                }
                Transport::Udp => {
                    return Err(ConnectError::Connect {
                        target,
                        detail: "UDP has no connections".into(),
                    });
                }
            }
        }
        Err(last)
    }
}

fn is_name_mismatch(e: &std::io::Error) -> bool {
    use rustls::CertificateError as C;
    matches!(
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. }
        ))
    )
}
