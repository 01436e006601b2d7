//! Starting the CVI gateway inside `fedge serve`: its relay, its SIP
//! listeners (UDP and TCP on `listen`, TLS on `listen_tls`), and its watch
//! over calls.
//!
//! Owns turning `[cvi]` into a running gateway. It never handles a call
//! itself (`cvi::gateway` does).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::config::Config;
use crate::cvi::Trust;
use crate::cvi::gateway::{Gateway, GatewayConfig};
use crate::media::{MediaConfig, Relay, SideAddress};
use crate::role::Role;
use crate::sip::transport::admission::Limits;
use crate::sip::transport::outbound::Pool;
use crate::sip::transport::stream::{StreamListener, TlsAccept};
use crate::sip::transport::tls::{ClientAuth, TlsFiles, server_config};
use crate::sip::transport::udp;

use super::build::Shared;
use super::error::ServeError;
use super::listen::bind_tcp;

/// Starts the gateway and returns it (for the admin listener).
pub(super) async fn start(
    cfg: &Config,
    files: &TlsFiles,
    shared: &Shared,
    pool: Arc<Pool>,
    tasks: &mut JoinSet<()>,
) -> Result<Arc<Gateway>, ServeError> {
    let c = &cfg.cvi;
    let tcp = bind_tcp(c.listen, "CVI TCP").await?;
    let local = tcp
        .local_addr()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let udp =
        Arc::new(UdpSocket::bind(local).await.map_err(|e| {
            ServeError::Runtime(format!("cannot listen on {local} (CVI UDP): {e}"))
        })?);
    let tls = match c.listen_tls {
        Some(a) => {
            let conf = server_config(files, ClientAuth::Optional)
                .map_err(|e| ServeError::Config(format!("[federation] {e}")))?;
            Some((bind_tcp(a, "CVI TLS").await?, conf))
        }
        None => None,
    };
    let relay = relay(cfg);
    let local_tls = tls.as_ref().and_then(|(l, _)| l.local_addr().ok());
    let gateway = Gateway::new(
        gateway_config(cfg, local, local_tls)?,
        shared.store.clone(),
        relay.clone(),
        udp.clone(),
        pool,
    );
    let sweeper = relay.spawn_sweeper(shared.shutdown.clone());
    tasks.spawn(async move {
        let _ = sweeper.await;
    });
    tasks.spawn(gateway.clone().watch(shared.shutdown.clone()));
    tasks.spawn(udp::run(
        Role::Cvi.tag(),
        udp,
        shared.settings.clone(),
        gateway.clone(),
        shared.shutdown.clone(),
    ));
    tasks.spawn(stream_listener(cfg, shared, &gateway, tcp, None).run());
    info!(role = "cvi", transport = "udp+tcp", addr = %local, domain = %c.domain, "listening");
    if let Some((l, conf)) = tls {
        let addr = l
            .local_addr()
            .map_err(|e| ServeError::Runtime(e.to_string()))?;
        let acceptor = TlsAccept {
            acceptor: TlsAcceptor::from(conf),
            handshake_timeout: cfg.federation.handshake_timeout,
            client_auth: ClientAuth::Optional,
        };
        tasks.spawn(stream_listener(cfg, shared, &gateway, l, Some(acceptor)).run());
        info!(role = "cvi", transport = "tls", %addr, "listening");
    }
    info!(
        media = %c.media_address,
        connector_media = %c.connector_media_address,
        ports = %format!("{}-{}", c.media_port_min, c.media_port_max),
        max_calls = c.max_calls,
        connector = %c.connector,
        "CVI gateway ready"
    );
    Ok(gateway)
}

/// A TCP or TLS listener for room systems.
fn stream_listener(
    cfg: &Config,
    shared: &Shared,
    gateway: &Arc<Gateway>,
    listener: TcpListener,
    tls: Option<TlsAccept>,
) -> StreamListener<Gateway> {
    StreamListener {
        tag: Role::Cvi.tag(),
        listener,
        tls,
        settings: shared.settings.clone(),
        table: shared.table.clone(),
        handler: gateway.clone(),
        limits: cvi_admission(cfg),
        shutdown: shared.shutdown.clone(),
    }
}

/// Room systems' connections: a few per call; handshakes as many again,
/// at most the federation's per-source number from one address. Room
/// systems' certificates are optional, so the identity cap is the
/// listener's.
fn cvi_admission(cfg: &Config) -> Limits {
    let max = cfg.cvi.max_calls * 4 + 16;
    Limits {
        max_connections: max,
        max_per_identity: max,
        max_handshakes: max,
        max_handshakes_per_source: cfg.federation.max_handshakes_per_source.min(max),
    }
}

/// The gateway's own relay: room systems on one side, the connector on
/// the other.
fn relay(cfg: &Config) -> Arc<Relay> {
    let c = &cfg.cvi;
    Relay::new(MediaConfig {
        addresses: [
            SideAddress {
                bind: c.media_address,
                advertise: c.media_advertise.unwrap_or(c.media_address),
            },
            SideAddress {
                bind: c.connector_media_address,
                advertise: c.connector_media_address,
            },
        ],
        port_min: c.media_port_min,
        port_max: c.media_port_max,
        max_sessions: c.max_calls,
        timeout: cfg.media.timeout,
        ring_timeout: cfg.sip.timer_c + std::time::Duration::from_secs(30),
        // Room systems are held to the partner side's networks; the
        // connector side is the edge's own.
        networks: [
            super::build::media_networks(cfg)[0].clone(),
            Arc::new(crate::media::networks::Networks::any()),
        ],
        max_sessions_per_owner: usize::MAX,
        max_pairs_per_owner: usize::MAX,
        latch_any_host: cfg.media.latch_any_host,
    })
}

/// The gateway's settings from `[cvi]` and `[sip]`.
fn gateway_config(
    cfg: &Config,
    local: SocketAddr,
    local_tls: Option<SocketAddr>,
) -> Result<GatewayConfig, ServeError> {
    let c = &cfg.cvi;
    Ok(GatewayConfig {
        domain: c.domain.to_ascii_lowercase(),
        reception: c.reception.clone(),
        test_call: c.test_call.clone(),
        test_call_time: c.test_call_time,
        tenant_key: c.tenant_key.clone(),
        connector: c.connector.clone(),
        connector_address: cfg
            .cvi_connector_address()
            .map_err(|e| ServeError::Config(e.0))?,
        max_calls: c.max_calls,
        trusted: c.trusted.iter().filter_map(|t| Trust::parse(t)).collect(),
        digit_pause: c.digit_pause,
        tries: c.tries,
        local,
        local_tls,
        player_address: c.connector_media_address,
        t1: cfg.sip.t1,
        t2: cfg.sip.t2,
        ring_timeout: cfg.sip.timer_c,
        agent: format!("fedge/{}", env!("CARGO_PKG_VERSION")),
    })
}
