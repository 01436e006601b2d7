//! Binding the edge's own sockets: the federation listener, the internal
//! listener (TCP and UDP on one address), the admin listener and the
//! public listener.
//!
//! Owns the bind order and the "cannot listen on" messages. It never
//! accepts connections or reads from a socket.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};

use super::error::ServeError;
use crate::config::Config;

/// Binds a TCP listener, naming it in the error.
pub(super) async fn bind_tcp(addr: SocketAddr, what: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Runtime(format!("cannot listen on {addr} ({what}): {e}")))
}

/// The bound sockets of the federation, internal, admin and public listeners.
pub(super) struct Sockets {
    pub fed: TcpListener,
    pub fed_addr: SocketAddr,
    pub int_tcp: TcpListener,
    /// The internal listener's address (TCP and UDP).
    pub int_addr: SocketAddr,
    pub int_udp: Arc<UdpSocket>,
    pub admin: TcpListener,
    pub admin_addr: SocketAddr,
    pub public: TcpListener,
    pub public_addr: SocketAddr,
}

/// How many ports the kernel may pick for the internal listener (port 0)
/// before one is free for both TCP and UDP.
const INTERNAL_PICKS: usize = 16;

/// Binds the internal listener's TCP and UDP sockets on one address. With
/// port 0 the kernel picks the TCP port, and its UDP twin may be taken by
/// someone else: another port is picked then (a configured port is tried
/// once: its owner is told which half is taken).
async fn bind_internal(
    want: SocketAddr,
) -> Result<(TcpListener, SocketAddr, UdpSocket), ServeError> {
    let picks = if want.port() == 0 { INTERNAL_PICKS } else { 1 };
    let mut last = None;
    for _ in 0..picks {
        let tcp = bind_tcp(want, "internal TCP").await?;
        let addr = tcp
            .local_addr()
            .map_err(|e| ServeError::Runtime(e.to_string()))?;
        match UdpSocket::bind(addr).await {
            Ok(udp) => return Ok((tcp, addr, udp)),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, e)) => {
            ServeError::Runtime(format!("cannot listen on {addr} (internal UDP): {e}"))
        }
        None => ServeError::Runtime(format!("cannot listen on {want} (internal UDP)")),
    })
}

impl Sockets {
    /// Binds the listeners in start-up order: federation, internal TCP,
    /// internal UDP (on the TCP listener's address), admin, public.
    pub async fn bind(cfg: &Config) -> Result<Sockets, ServeError> {
        let fed = bind_tcp(cfg.federation.listen, "federation").await?;
        let (int_tcp, int_addr, int_udp) = bind_internal(cfg.internal.listen).await?;
        let int_udp = Arc::new(int_udp);
        let admin = bind_tcp(cfg.admin.listen, "admin").await?;
        let public = bind_tcp(cfg.public.listen, "public").await?;
        let fed_addr = fed
            .local_addr()
            .map_err(|e| ServeError::Runtime(e.to_string()))?;
        let admin_addr = admin
            .local_addr()
            .map_err(|e| ServeError::Runtime(e.to_string()))?;
        let public_addr = public
            .local_addr()
            .map_err(|e| ServeError::Runtime(e.to_string()))?;
        Ok(Sockets {
            fed,
            fed_addr,
            int_tcp,
            int_addr,
            int_udp,
            admin,
            admin_addr,
            public,
            public_addr,
        })
    }
}
