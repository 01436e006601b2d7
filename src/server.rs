//! `fedge serve`: binds the listeners, opens the store, and runs until
//! SIGINT or SIGTERM.
//!
//! Owns start-up order and shutdown. Problems with the configuration's
//! content (unreadable or mismatched certificates, say) are reported as
//! [`ServeError::Config`] so the CLI can exit with 2; everything else that
//! stops the edge from starting is [`ServeError::Runtime`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin;
use crate::config::Config;
use std::sync::OnceLock;

use crate::cvi::Trust;
use crate::cvi::gateway::{Gateway, GatewayConfig};
use crate::cvi::meetings::Dialling;
use crate::federation::content;
use crate::federation::ig;
use crate::federation::limits::Limits as RateLimits;
use crate::federation::metrics::Metrics;
use crate::federation::partner::PartnerState;
use crate::federation::policy::{PROXY_EXTENSIONS, PolicyConfig};
use crate::federation::product::{Minimums, Version};
use crate::federation::registry::{Registry, RegistryEvent};
use crate::federation::{Edge, RateConfig};
use crate::role::Role;
use crate::sip::parse::Limits;
use crate::sip::proxy::txn::Timers;
use crate::sip::proxy::{Hop, Leg, Proxy, ProxyConfig, Topology};
use crate::sip::transport::Transport;
use crate::sip::transport::outbound::{Pool, StreamTarget};
use crate::sip::transport::stream::{StreamListener, TlsAccept};
use crate::sip::transport::tls::{ClientAuth, TlsFiles, client_config, server_config};
use crate::sip::transport::{ConnectionTable, TransportSettings, udp};
use crate::store::Store;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration names something unusable (exit code 2).
    #[error("{0}")]
    Config(String),
    /// Anything else (exit code 1).
    #[error("{0}")]
    Runtime(String),
}

/// The running edge's shared state, for the admin listener.
#[derive(Debug)]
pub struct EdgeState {
    pub connections: Arc<ConnectionTable>,
    pub registry: Arc<Registry>,
    pub proxy: Arc<Proxy<Edge>>,
    pub metrics: Arc<Metrics>,
    pub fqdn: String,
    pub media: Option<Arc<crate::media::Relay>>,
    /// The CVI gateway, when `[cvi] enabled`.
    pub cvi: Option<Arc<Gateway>>,
    pub store: Store,
    /// What the CVI dialling instructions say.
    pub dialling: Dialling,
}

/// The CVI dialling facts the configuration gives.
pub fn dialling(cfg: &Config) -> Dialling {
    Dialling {
        domain: cfg.cvi.domain.clone(),
        reception: cfg.cvi.reception.clone(),
        test_call: cfg.cvi.test_call.clone(),
        tenant_key: cfg.cvi.tenant_key.clone(),
        instructions_base: cfg.cvi.instructions_base.clone(),
    }
}

/// Starts the CVI gateway: its relay, its SIP listeners (UDP and TCP on
/// `listen`, TLS on `listen_tls`), and its watch over calls.
#[allow(clippy::too_many_arguments)]
async fn start_cvi(
    cfg: &Config,
    files: &TlsFiles,
    store: Store,
    pool: Arc<Pool>,
    settings: Arc<TransportSettings>,
    table: Arc<ConnectionTable>,
    shutdown: CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
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
    let relay = crate::media::Relay::new(crate::media::MediaConfig {
        addresses: [
            crate::media::SideAddress {
                bind: c.media_address,
                advertise: c.media_advertise.unwrap_or(c.media_address),
            },
            crate::media::SideAddress {
                bind: c.connector_media_address,
                advertise: c.connector_media_address,
            },
        ],
        port_min: c.media_port_min,
        port_max: c.media_port_max,
        max_sessions: c.max_calls,
        timeout: cfg.media.timeout,
        ring_timeout: cfg.sip.timer_c + std::time::Duration::from_secs(30),
    });
    let gateway = Gateway::new(
        GatewayConfig {
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
            local_tls: tls.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            player_address: c.connector_media_address,
            t1: cfg.sip.t1,
            t2: cfg.sip.t2,
            ring_timeout: cfg.sip.timer_c,
            agent: format!("fedge/{}", env!("CARGO_PKG_VERSION")),
        },
        store,
        relay.clone(),
        udp.clone(),
        pool,
    );
    let sweeper = relay.spawn_sweeper(shutdown.clone());
    tasks.spawn(async move {
        let _ = sweeper.await;
    });
    tasks.spawn(gateway.clone().watch(shutdown.clone()));
    tasks.spawn(udp::run(
        Role::Cvi.tag(),
        udp,
        settings.clone(),
        gateway.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(
        StreamListener {
            tag: Role::Cvi.tag(),
            listener: tcp,
            tls: None,
            settings: settings.clone(),
            table: table.clone(),
            handler: gateway.clone(),
            max_connections: c.max_calls * 4 + 16,
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    info!(role = "cvi", transport = "udp+tcp", addr = %local, domain = %c.domain, "listening");
    if let Some((l, conf)) = tls {
        let addr = l
            .local_addr()
            .map_err(|e| ServeError::Runtime(e.to_string()))?;
        tasks.spawn(
            StreamListener {
                tag: Role::Cvi.tag(),
                listener: l,
                tls: Some(TlsAccept {
                    acceptor: TlsAcceptor::from(conf),
                    handshake_timeout: cfg.federation.handshake_timeout,
                    client_auth: ClientAuth::Optional,
                }),
                settings,
                table,
                handler: gateway.clone(),
                max_connections: c.max_calls * 4 + 16,
                shutdown,
            }
            .run(),
        );
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

/// An IP address as it appears in a URI host (IPv6 without brackets here;
/// callers compare it with parsed hosts).
fn fmt_ip(ip: std::net::IpAddr) -> String {
    ip.to_string()
}

/// Closes the federation connections of partners that leave `enabled`,
/// unless another enabled partner shares the same edge (hosted services).
fn close_on_registry_events(
    registry: Arc<Registry>,
    table: Arc<ConnectionTable>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut rx = registry.subscribe();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(RegistryEvent::LeftEnabled {
                    partner,
                    edge_fqdn: Some(fqdn),
                    now,
                }) => {
                    let snap = registry.snapshot();
                    let shared = snap
                        .by_edge(&fqdn)
                        .iter()
                        .any(|p| p.state == PartnerState::Enabled);
                    if shared {
                        info!(partner = partner.name(), edge = %fqdn, "edge still serves another enabled partner; connections kept");
                        continue;
                    }
                    let n = table.close_where(|c| {
                        Role::of(c.tag) == Role::Federation
                            && c.identity.as_ref().is_some_and(|id| id.matches(&fqdn))
                    });
                    info!(partner = partner.name(), edge = %fqdn, %now, closed = n, "partner connections closed");
                }
                Ok(RegistryEvent::LeftEnabled { .. }) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(
                        missed = n,
                        "registry events missed; closing connections of every partner not enabled"
                    );
                    let snap = registry.snapshot();
                    table.close_where(|c| {
                        Role::of(c.tag) == Role::Federation
                            && c.identity.as_ref().is_some_and(|id| {
                                !snap
                                    .by_identity(id)
                                    .iter()
                                    .any(|p| p.state == PartnerState::Enabled)
                            })
                    });
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

async fn bind_tcp(addr: SocketAddr, what: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Runtime(format!("cannot listen on {addr} ({what}): {e}")))
}

/// The federation TLS files the configuration names.
pub fn tls_files(cfg: &Config) -> TlsFiles {
    TlsFiles {
        cert: cfg.federation.cert.clone(),
        key: cfg.federation.key.clone(),
        trust: cfg.federation.trust.clone(),
    }
}

/// Checks what the configuration names but cannot check itself (the TLS
/// material), without binding anything.
pub fn preflight(cfg: &Config) -> Result<(), ServeError> {
    server_config(&tls_files(cfg), ClientAuth::Required)
        .map_err(|e| ServeError::Config(format!("[federation] {e}")))?;
    Ok(())
}

/// Resolves `[internal] next_hop` into a hop.
async fn resolve_next_hop(cfg: &Config) -> Result<(Hop, Transport), ServeError> {
    let nh = cfg.next_hop().map_err(|e| ServeError::Config(e.0))?;
    match nh.transport.as_str() {
        "udp" => {
            let addr = tokio::net::lookup_host((nh.host.as_str(), nh.port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    ServeError::Runtime(format!("[internal] next_hop: cannot resolve {}", nh.host))
                })?;
            Ok((Hop::Udp(addr), Transport::Udp))
        }
        t => {
            let transport = if t == "tls" {
                Transport::Tls
            } else {
                Transport::Tcp
            };
            Ok((
                Hop::Stream(StreamTarget {
                    transport,
                    server_name: (transport == Transport::Tls).then(|| nh.host.clone()),
                    host: nh.host,
                    port: nh.port,
                    tag: Role::Internal.tag(),
                    max_conns: 4,
                }),
                transport,
            ))
        }
    }
}

/// Runs the edge until `shutdown` is cancelled.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    let files = tls_files(&cfg);
    let tls = server_config(&files, ClientAuth::Required)
        .map_err(|e| ServeError::Config(format!("[federation] {e}")))?;
    let client_tls =
        client_config(&files).map_err(|e| ServeError::Config(format!("[federation] {e}")))?;
    let store = Store::open(&cfg.store.url)
        .await
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let registry = Registry::load(&store)
        .await
        .map_err(|e| ServeError::Runtime(format!("cannot load the partner registry: {e}")))?;
    {
        let snap = registry.snapshot();
        info!(url = %cfg.store.url, backend = ?store.backend(), version = snap.version, enabled = snap.enabled_count(), "store open");
    }

    let settings = Arc::new(TransportSettings {
        limits: Limits {
            max_head: cfg.sip.max_head_bytes,
            max_body: cfg.sip.max_body_bytes,
            max_headers: cfg.sip.max_headers,
        },
        idle_timeout: cfg.sip.idle_timeout,
        message_timeout: cfg.sip.message_timeout,
        agent: cfg.federation.fqdn.clone(),
        handshake_timeout: cfg.federation.handshake_timeout,
    });
    let table = ConnectionTable::new();

    let fed = bind_tcp(cfg.federation.listen, "federation").await?;
    let int_tcp = bind_tcp(cfg.internal.listen, "internal TCP").await?;
    let int_addr = int_tcp
        .local_addr()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let int_udp = UdpSocket::bind(int_addr).await.map_err(|e| {
        ServeError::Runtime(format!("cannot listen on {int_addr} (internal UDP): {e}"))
    })?;
    let int_udp = Arc::new(int_udp);
    let admin_listener = bind_tcp(cfg.admin.listen, "admin").await?;
    let fed_addr = fed
        .local_addr()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;

    let (next_hop, next_transport) = resolve_next_hop(&cfg).await?;
    let metrics = Arc::new(Metrics::new());
    let fqdn = cfg.federation.fqdn.to_ascii_lowercase();
    let internal_fqdn = cfg
        .internal
        .fqdn
        .clone()
        .unwrap_or_else(|| fqdn.clone())
        .to_ascii_lowercase();
    let internal_via_host = if int_addr.ip().is_unspecified() {
        internal_fqdn.clone()
    } else {
        fmt_ip(int_addr.ip())
    };
    // The internal listener speaks UDP and TCP: a TLS next hop is reached
    // over TLS, but the pool comes back to us over TCP.
    let (via_t, rr_t) = match next_transport {
        Transport::Udp => ("UDP", "udp"),
        Transport::Tcp => ("TCP", "tcp"),
        Transport::Tls => ("TLS", "tcp"),
    };
    let mut self_hosts = vec![
        fqdn.clone(),
        internal_fqdn.clone(),
        fmt_ip(fed_addr.ip()),
        fmt_ip(int_addr.ip()),
    ];
    self_hosts.dedup();
    let mut fresh = [0u8; 32];
    rand::fill(&mut fresh);
    let topology_key = store
        .secret("topology", fresh)
        .await
        .map_err(|e| ServeError::Runtime(format!("cannot read the topology-hiding key: {e}")))?;
    let home_domains: Vec<String> = cfg
        .federation
        .home_domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    let proxy_cfg = ProxyConfig {
        outside: Leg {
            via: format!("SIP/2.0/TLS {fqdn}:{}", fed_addr.port()),
            record_route: format!("<sip:{fqdn}:{};transport=tls;lr>", fed_addr.port()),
        },
        inside: Leg {
            via: format!("SIP/2.0/{via_t} {internal_via_host}:{}", int_addr.port()),
            record_route: format!(
                "<sip:{internal_fqdn}:{};transport={rr_t};lr>",
                int_addr.port()
            ),
        },
        self_hosts,
        self_ports: vec![fed_addr.port(), int_addr.port()],
        proxy_extensions: PROXY_EXTENSIONS,
        agent: fqdn.clone(),
        server: format!("fedge/{}", env!("CARGO_PKG_VERSION")),
        timers: Timers {
            t1: cfg.sip.t1,
            t2: cfg.sip.t2,
            t4: cfg.sip.t4,
            timer_c: cfg.sip.timer_c,
        },
        topology: Arc::new(
            Topology::new(
                &topology_key,
                home_domains.clone(),
                format!("{fqdn}:{};transport=tls", fed_addr.port()),
            )
            .map_err(|e| ServeError::Runtime(e.to_string()))?,
        ),
    };
    let media = cfg.media.enabled.then(|| {
        let side =
            |bind: std::net::IpAddr, adv: Option<std::net::IpAddr>| crate::media::SideAddress {
                bind,
                advertise: adv.unwrap_or(bind),
            };
        crate::media::Relay::new(crate::media::MediaConfig {
            addresses: [
                side(cfg.media.federation_address, cfg.media.federation_advertise),
                side(cfg.media.internal_address, cfg.media.internal_advertise),
            ],
            port_min: cfg.media.port_min,
            port_max: cfg.media.port_max,
            max_sessions: cfg.media.max_sessions,
            timeout: cfg.media.timeout,
            // A call may ring until Timer C gives up on it.
            ring_timeout: cfg.sip.timer_c + std::time::Duration::from_secs(30),
        })
    });
    let dns =
        crate::dns::Dns::new(cfg.dns.resolver).map_err(|e| ServeError::Runtime(e.to_string()))?;
    let edge = Edge {
        dns: dns.clone(),
        registry: registry.clone(),
        policy: PolicyConfig {
            fqdn: fqdn.clone(),
            home_domains,
            next_hop,
            local_addrs: vec![fed_addr.ip(), int_addr.ip()],
            partner_connections: cfg.federation.partner_connections,
            content: content::Rules {
                body_types: cfg
                    .policy
                    .body_types
                    .iter()
                    .map(|t| t.to_ascii_lowercase())
                    .collect(),
                max_body: cfg.policy.max_body_bytes,
            },
            products: Minimums {
                client: Version::parse(&cfg.policy.min_client_version).ok_or_else(|| {
                    ServeError::Config("[policy] min_client_version is not a version".into())
                })?,
                server: Version::parse(&cfg.policy.min_server_version).ok_or_else(|| {
                    ServeError::Config("[policy] min_server_version is not a version".into())
                })?,
                allow_other: cfg.policy.allow_other_products,
            },
            test_user: cfg.policy.test_user.clone(),
        },
        rates: RateConfig {
            rate: cfg.policy.rate,
            burst: cfg.policy.burst,
            enumeration_limit: cfg.policy.enumeration_limit,
            enumeration_window: cfg.policy.enumeration_window,
        },
        limits: RateLimits::new(),
        metrics: metrics.clone(),
        store: Some(store.clone()),
        proxy: OnceLock::new(),
        media: media.clone(),
    };
    let pool = Arc::new(
        Pool::new(
            client_tls,
            settings.clone(),
            table.clone(),
            shutdown.clone(),
            cfg.federation.handshake_timeout,
        )
        .with_resolver(Arc::new(dns.clone())),
    );
    let cvi_pool = pool.clone();
    let proxy = Proxy::new(edge, proxy_cfg, pool, int_udp.clone());
    let _ = proxy.router.proxy.set(Arc::downgrade(&proxy));

    let mut tasks = tokio::task::JoinSet::new();
    let watcher = registry.watch(store.clone(), cfg.store.poll_interval, shutdown.clone());
    let ig_watch = ig::spawn(
        store.clone(),
        registry.clone(),
        metrics.clone(),
        cfg.policy.ig_check_interval,
        cfg.policy.ig_warning_days,
        shutdown.clone(),
    );
    let closer = close_on_registry_events(registry.clone(), table.clone(), shutdown.clone());
    tasks.spawn(
        StreamListener {
            tag: Role::Federation.tag(),
            listener: fed,
            tls: Some(TlsAccept {
                acceptor: TlsAcceptor::from(tls),
                handshake_timeout: cfg.federation.handshake_timeout,
                client_auth: ClientAuth::Required,
            }),
            settings: settings.clone(),
            table: table.clone(),
            handler: proxy.clone(),
            max_connections: cfg.federation.max_connections,
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    tasks.spawn(
        StreamListener {
            tag: Role::Internal.tag(),
            listener: int_tcp,
            tls: None,
            settings: settings.clone(),
            table: table.clone(),
            handler: proxy.clone(),
            max_connections: cfg.internal.max_connections,
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    tasks.spawn(udp::run(
        Role::Internal.tag(),
        int_udp,
        settings.clone(),
        proxy.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(proxy.clone().run_timers(shutdown.clone()));
    if let Some(addr) = cfg.dns.listen {
        let publish = cfg
            .publish()
            .map_err(|e| ServeError::Config(e.to_string()))?;
        let zones = crate::dns::zone::zones(&publish);
        // Load the zones and bind before saying ready.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let sd = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::dns::server::serve(addr, zones, sd, ready_tx).await {
                error!(error = %e, "DNS server stopped");
            }
        });
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServeError::Runtime(e)),
            Err(_) => return Err(ServeError::Runtime("the DNS server did not start".into())),
        }
    }
    if let Some(relay) = &media {
        let sweeper = relay.spawn_sweeper(shutdown.clone());
        tasks.spawn(async move {
            let _ = sweeper.await;
        });
        let m = &cfg.media;
        info!(
            federation = %m.federation_address,
            internal = %m.internal_address,
            ports = %format!("{}-{}", m.port_min, m.port_max),
            max_sessions = m.max_sessions,
            "media relay ready"
        );
    }
    let cvi = if cfg.cvi.enabled {
        Some(
            start_cvi(
                &cfg,
                &files,
                store.clone(),
                cvi_pool,
                settings.clone(),
                table.clone(),
                shutdown.clone(),
                &mut tasks,
            )
            .await?,
        )
    } else {
        None
    };
    let state = Arc::new(EdgeState {
        connections: table.clone(),
        registry: registry.clone(),
        proxy: proxy.clone(),
        metrics: metrics.clone(),
        fqdn: cfg.federation.fqdn.clone(),
        media: media.clone(),
        cvi,
        store: store.clone(),
        dialling: dialling(&cfg),
    });
    tasks.spawn(admin::serve(admin_listener, state, shutdown.clone()));
    let int_udp_addr = int_addr;

    info!(role = "federation", transport = "tls", addr = %fed_addr, fqdn = %cfg.federation.fqdn, "listening");
    info!(role = "internal", transport = "udp+tcp", addr = %int_udp_addr, "listening");
    info!(role = "admin", transport = "http", addr = %admin_addr, "listening");
    info!(version = env!("CARGO_PKG_VERSION"), "fedge ready");

    shutdown.cancelled().await;
    info!("shutting down");
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        warn!("listeners did not stop within 5 s");
    }
    let _ = watcher.await;
    let _ = ig_watch.await;
    let _ = closer.await;
    store.close().await;
    Ok(())
}
