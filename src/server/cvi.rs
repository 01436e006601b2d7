//! Starting the CVI gateway inside `fedge serve`: its relay, its SIP
//! listeners (UDP and TCP on `listen`, TLS on `listen_tls`), and its watch
//! over calls.
//!
//! Owns turning `[cvi]` into a running gateway. It never handles a call
//! itself (`cvi::gateway` does).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tracing::info;

use crate::config::Config;
use crate::cvi::Trust;
use crate::cvi::gateway::{Gateway, GatewayConfig};
use crate::cvi::guard::GuessLimits;
use crate::cvi::h323::{H323, H323Config};
use crate::media::{MediaConfig, Relay, SideAddress};
use crate::role::Role;
use crate::sip::transport::ConnectionTable;
use crate::sip::transport::admission::Limits;
use crate::sip::transport::outbound::Pool;
use crate::sip::transport::stream::{StreamListener, TlsAccept};
use crate::sip::transport::tls::ClientAuth;
use crate::sip::transport::udp;

use super::build::Shared;
use super::error::ServeError;
use super::listen::bind_tcp;

/// Starts the gateway and returns it (for the admin listener).
pub(super) async fn start(
    cfg: &Config,
    tls: Option<Arc<ArcSwap<crate::sip::transport::tls::ServerTls>>>,
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
    // The TLS configuration (certificate optional) comes from
    // `server::reload`, which swaps it when the files change.
    let tls = match (c.listen_tls, tls) {
        (Some(a), Some(conf)) => Some((bind_tcp(a, "CVI TLS").await?, conf)),
        _ => None,
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
    tasks.spawn(close_silent(
        gateway.clone(),
        shared.table.clone(),
        [Some(local), local_tls],
        c.first_message_timeout,
        shared.shutdown.clone(),
    ));
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
            config: conf,
            handshake_timeout: c.handshake_timeout,
            client_auth: ClientAuth::Optional,
        };
        tasks.spawn(stream_listener(cfg, shared, &gateway, l, Some(acceptor)).run());
        info!(role = "cvi", transport = "tls", %addr, "listening");
    }
    if c.h323 {
        start_h323(cfg, shared, &gateway, tasks).await?;
    }
    if c.webrtc {
        let tcp = match c.webrtc_tcp {
            Some(p) => Some(
                crate::cvi::webrtc::tcp::IceTcp::start(
                    std::net::SocketAddr::new(c.media_address, p),
                    c.media_advertise.unwrap_or(c.media_address),
                )
                .await
                .map_err(|e| {
                    ServeError::Runtime(format!("[cvi] webrtc_tcp {p}: cannot listen: {e}"))
                })?,
            ),
            None => None,
        };
        crate::cvi::webrtc::WebRtc::new(
            crate::cvi::webrtc::WebRtcConfig {
                domain: c.domain.to_ascii_lowercase(),
                bind: c.media_address,
                advertise: c.media_advertise.unwrap_or(c.media_address),
                port_min: c.media_port_min,
                port_max: c.media_port_max,
                token_ttl: std::time::Duration::from_secs(15 * 60),
                answer_timeout: cfg.sip.timer_c + std::time::Duration::from_secs(5),
                tcp,
            },
            &gateway,
            shared.table.clone(),
        );
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

/// Starts the H.323 listeners (call signalling on TCP, RAS on UDP) in
/// front of `gateway`.
async fn start_h323(
    cfg: &Config,
    shared: &Shared,
    gateway: &Arc<Gateway>,
    tasks: &mut JoinSet<()>,
) -> Result<(), ServeError> {
    let c = &cfg.cvi;
    let tcp = bind_tcp(c.h323_listen, "CVI H.323").await?;
    let listen = tcp
        .local_addr()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let ras = UdpSocket::bind(c.h323_ras).await.map_err(|e| {
        ServeError::Runtime(format!("cannot listen on {} (CVI RAS): {e}", c.h323_ras))
    })?;
    let ras_addr = ras
        .local_addr()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let h = H323::new(
        H323Config {
            domain: c.domain.to_ascii_lowercase(),
            reception: c.reception.clone(),
            test_call: c.test_call.clone(),
            tenant_key: c.tenant_key.clone(),
            listen,
            ras: ras_addr,
            h245_port_min: c.h245_port_min,
            h245_port_max: c.h245_port_max,
            setup_timeout: std::time::Duration::from_secs(10),
            max_frame: 64 * 1024,
            max_connections: c.max_connections,
            max_connections_per_source: c.max_connections_per_source,
            vendor: format!("fedge/{}", env!("CARGO_PKG_VERSION")),
        },
        gateway.clone(),
        shared.table.clone(),
    );
    tasks.spawn(h.clone().run_tcp(tcp, shared.shutdown.clone()));
    tasks.spawn(h.run_ras(ras, shared.shutdown.clone()));
    Ok(())
}

/// Closes room connections (accepted by the CVI listeners at `ours`) that
/// have sent no message within `timeout` of being first seen (checked
/// every second): an idle timeout is for connections that have spoken.
async fn close_silent(
    gateway: Arc<Gateway>,
    table: Arc<ConnectionTable>,
    ours: [Option<SocketAddr>; 2],
    timeout: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let tag = Role::Cvi.tag();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let rooms: Vec<_> = table
            .list()
            .into_iter()
            .filter(|c| c.tag == tag && ours.contains(&Some(c.local)))
            .collect();
        let ids: Vec<u64> = rooms.iter().map(|c| c.id).collect();
        let overdue = gateway.first_message.overdue(&ids, timeout);
        for c in rooms.iter().filter(|c| overdue.contains(&c.id)) {
            info!(remote = %c.remote, timeout_ms = timeout.as_millis() as u64, "CVI connection closed: no message after its first-message deadline");
            c.close();
        }
    }
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

/// Room systems' connections, from `[cvi]`: the same admission rules as
/// the federation listener's (handshake budget and per-source share,
/// total cap), plus a cap per source address on established connections.
/// Room systems' certificates are optional, so the identity cap is the
/// listener's.
fn cvi_admission(cfg: &Config) -> Limits {
    let c = &cfg.cvi;
    let mut l = Limits::connections(c.max_connections);
    l.max_handshakes = c.max_handshakes;
    l.max_handshakes_per_source = c.max_handshakes_per_source;
    l.max_per_source = c.max_connections_per_source;
    l
}

/// The gateway's own relay: room systems on one side, the connector on
/// the other.
fn relay(cfg: &Config) -> Arc<Relay> {
    crate::media::engine::set_threads(cfg.media.threads);
    crate::media::engine::set_io(cfg.media.engine_io());
    crate::media::engine::set_connect_peers(cfg.media.connect_peers);
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
        max_calls_per_source: c.max_calls_per_source,
        ack_timeout: c.ack_timeout,
        udp_probe: c.udp_probe,
        udp_probe_timeout: c.udp_probe_timeout,
        udp_proven_for: c.udp_proven_for,
        trust_udp: c.trust_udp,
        meeting_lifetime: c.meeting_lifetime,
        guesses: GuessLimits {
            per_source: c.guess_budget,
            global: c.guess_budget_global,
            window: c.guess_window,
            lockout: c.guess_lockout,
        },
    })
}
