//! The edge's own authoritative DNS server (hickory-server): loads the
//! zone files of `dns::zone` and answers on UDP and TCP at `[dns] listen`.
//!
//! Owns serving; never builds zone text (that is `zone`) nor resolves.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::zone::ZoneText;

/// Why the DNS server could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DnsServerError {
    #[error("zone {origin}: {detail}")]
    Zone { origin: String, detail: String },
    #[error("cannot listen on {addr} for DNS: {source}")]
    Bind {
        addr: SocketAddr,
        source: Arc<std::io::Error>,
    },
}

/// A catalog of the zones, as hickory serves them.
pub fn catalog(zones: &[ZoneText]) -> Result<Catalog, DnsServerError> {
    let mut catalog = Catalog::new();
    for z in zones {
        let err = |detail: String| DnsServerError::Zone {
            origin: z.origin.clone(),
            detail,
        };
        let origin = Name::from_str(&z.origin).map_err(|e| err(e.to_string()))?;
        let (origin, records) = Parser::new(z.text.as_str(), None, Some(origin))
            .parse()
            .map_err(|e| err(e.to_string()))?;
        let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            origin.clone(),
            records,
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .map_err(err)?;
        let handlers: Vec<Arc<dyn ZoneHandler>> = vec![Arc::new(handler)];
        catalog.upsert(LowerName::new(&origin), handlers);
    }
    Ok(catalog)
}

/// Serves `zones` on UDP and TCP at `addr` until shutdown; `ready` learns
/// whether it loaded the zones and could bind (the same error is returned).
pub async fn serve(
    addr: SocketAddr,
    zones: Vec<ZoneText>,
    shutdown: CancellationToken,
    ready: tokio::sync::oneshot::Sender<Result<(), DnsServerError>>,
) -> Result<(), DnsServerError> {
    let catalog = match catalog(&zones) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let bound = async {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        Ok::<_, std::io::Error>((udp, tcp))
    };
    let (udp, tcp) = match bound.await {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(source) => {
            let e = DnsServerError::Bind {
                addr,
                source: Arc::new(source),
            };
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 8);
    info!(%addr, zones = %zones.iter().map(|z| z.origin.as_str()).collect::<Vec<_>>().join(" "), "DNS server ready");
    shutdown.cancelled().await;
    if let Err(e) = server.shutdown_gracefully().await {
        warn!(error = %e, "DNS server stopped with an error");
    }
    Ok(())
}
