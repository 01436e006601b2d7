//! `fedge serve`: binds the listeners, opens the store, and runs until
//! SIGINT or SIGTERM.
//!
//! Owns start-up order and shutdown. Problems with the configuration's
//! content (unreadable or mismatched certificates, say) are reported as
//! [`ServeError::Config`] so the CLI can exit with 2; everything else that
//! stops the edge from starting is [`ServeError::Runtime`]. It never
//! handles a SIP message or an HTTP request itself.
//!
//! The pieces: `listen.rs` binds the edge's sockets, `build.rs` builds the
//! proxy with its policy and relay, `cvi.rs` starts the CVI gateway,
//! `registry_events.rs` closes connections of partners leaving `enabled`,
//! `capture.rs` sends HEP3 copies of every SIP message (`[capture] hep`),
//! `admin_tls.rs` serves the admin listener over TLS (`[admin] tls`),
//! `cluster.rs` writes this node's heartbeat in the node table,
//! `drain.rs` drains the node (`fedge drain`, SIGTERM), `systemd.rs` talks
//! to systemd (`Type=notify`), `reload.rs` builds every TLS configuration
//! from the certificate files and reloads them (SIGHUP, the API, a change
//! on disk);
//! this file spawns the tasks and hands the admin and public listeners
//! their [`admin::EdgeState`].

mod admin_tls;
mod build;
mod capture;
mod cluster;
mod cvi;
mod drain;
mod error;
mod fds;
mod listen;
mod registry_events;
mod reload;
mod systemd;
mod tls_policy;
mod topology_keys;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::{self, EdgeState};
use crate::config::Config;
use crate::cvi::meetings::Dialling;
use crate::federation::Edge;
use crate::federation::ig;
use crate::federation::metrics::Metrics;
use crate::federation::registry::Registry;
use crate::media::Relay;
use crate::role::Role;
use crate::sip::parse::Limits;
use crate::sip::proxy::Proxy;
use crate::sip::transport::admission::Limits as Admission;
use crate::sip::transport::stream::{StreamListener, TlsAccept};
use crate::sip::transport::tls::{ClientAuth, ServerTls, TlsFiles, server_config_with};
use crate::sip::transport::{ConnectionTable, TransportSettings, udp};
use crate::store::Store;

use self::build::{Core, Shared};
use self::listen::Sockets;

pub use self::admin_tls::admin_client_config;
pub use self::build::policy_config;
pub use self::error::ServeError;
pub use self::reload::name_matches as cert_name_matches;

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
    let policy = tls_policy::chain_policy(cfg, None)?;
    server_config_with(&tls_files(cfg), ClientAuth::Required, &policy)
        .map_err(|e| ServeError::Config(format!("[federation] {e}")))?;
    if cfg.admin.tls {
        admin_tls::server_config(cfg)?;
    }
    Ok(())
}

/// Checks the TLS files as a reload would (readable, key fits, names
/// `[federation] fqdn`, within validity, usable trust bundle and CRLs),
/// without a running edge: the certificate they would serve, or why not.
pub fn check_tls_files(
    cfg: &Config,
) -> Result<crate::admin::tls::ServedCert, crate::admin::tls::ReloadRefused> {
    reload::load(cfg, None, true).map(|m| m.cert)
}

/// Runs the edge until `shutdown` is cancelled.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    run_with_drain(cfg, shutdown, CancellationToken::new()).await
}

/// Runs the edge until `shutdown` is cancelled, or until a drain (started
/// by cancelling `drain`, or through the admin API) has finished.
pub async fn run_with_drain(
    cfg: Config,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> Result<(), ServeError> {
    fds::raise_open_files_limit(&cfg);
    preflight(&cfg)?;
    let shared = open(&cfg, shutdown).await?;
    let pins: Arc<dyn crate::sip::transport::tls::ChainCheck> =
        Arc::new(crate::federation::identity::PinCheck {
            registry: shared.registry.clone(),
        });
    let material =
        reload::load(&cfg, Some(pins.clone()), false).map_err(|e| ServeError::Config(e.0))?;
    let tls = Arc::new(ArcSwap::new(material.fed));
    let cvi_tls = material.cvi.map(|c| Arc::new(ArcSwap::new(c)));
    let admin_tls = material.admin.map(|c| Arc::new(ArcSwap::new(c)));
    let sockets = Sockets::bind(&cfg).await?;
    let core = build::sip_core(&cfg, &sockets, &shared, material.client).await?;
    let reloader = reload::Reloader::new(
        &cfg,
        Some(pins),
        reload::Swaps {
            fed: tls.clone(),
            cvi: cvi_tls.clone(),
            admin: admin_tls.clone(),
            pool: core.pool.clone(),
            table: shared.table.clone(),
        },
        material.cert,
        core.metrics.clone(),
    );
    let Sockets {
        fed,
        fed_addr,
        int_tcp,
        int_addr,
        int_udp,
        admin: admin_listener,
        admin_addr,
        public: public_listener,
        public_addr,
    } = sockets;

    let mut tasks = JoinSet::new();
    let watchers = spawn_watchers(&cfg, &shared, &core.metrics);
    let _key_watch = topology_keys::spawn(
        shared.store.clone(),
        core.topology.clone(),
        core.topology_keys.clone(),
        shared.shutdown.clone(),
    );
    spawn_sip(
        &cfg,
        &shared,
        &core.proxy,
        (fed, tls),
        int_tcp,
        int_udp,
        &mut tasks,
    );
    if let Some(addr) = cfg.dns.listen {
        start_dns(&cfg, addr, &shared.shutdown, &mut tasks).await?;
    }
    if let Some(relay) = &core.media {
        start_media(&cfg, relay, &shared.shutdown, &mut tasks);
    }
    let cvi = if cfg.cvi.enabled {
        Some(cvi::start(&cfg, cvi_tls, &shared, core.pool.clone(), &mut tasks).await?)
    } else {
        None
    };
    let node = cluster::node_name(&cfg.cluster.node, fed_addr.port());
    let drainer = drain::Drain::new(
        &cfg,
        node.clone(),
        core.proxy.clone(),
        shared.cluster.clone(),
        core.media.clone(),
        cvi.clone(),
    );
    let mut state = edge_state(&cfg, &shared, &core, cvi);
    state.drain = Some(drainer.clone());
    state.tls = Some(reloader.clone());
    state.ops.listeners = listeners(&[
        ("federation", "tls", fed_addr),
        ("internal", "udp+tcp", int_addr),
        (
            "admin",
            if cfg.admin.tls { "https" } else { "http" },
            admin_addr,
        ),
        ("public", "http", public_addr),
    ]);
    let heartbeat = cluster::Heartbeat {
        store: shared.store.clone(),
        registry: shared.registry.clone(),
        view: core.proxy.router.cluster.clone(),
        name: node,
        listeners: serde_json::to_string(&state.ops.listeners).unwrap_or_else(|_| "[]".into()),
        every: cfg.cluster.heartbeat,
        gone_after: cfg.cluster.gone_after,
        shutdown: shared.shutdown.clone(),
    }
    .spawn();
    let state = Arc::new(state);
    let admin_scheme = spawn_admin(&cfg, admin_listener, admin_tls, &state, &shared, &mut tasks)?;
    let _reloads = reloader.spawn(shared.shutdown.clone());
    tasks.spawn(admin::public::serve(
        admin::public::guard::Guarded::new(
            public_listener,
            cfg.public.max_connections,
            cfg.public.max_connections_per_source,
            cfg.public.connection_lifetime,
        ),
        state,
        shared.shutdown.clone(),
    ));

    announce(
        &cfg,
        &shared,
        &core,
        [fed_addr, int_addr, admin_addr, public_addr],
        admin_scheme,
        &mut tasks,
    )
    .await;
    info!(version = env!("CARGO_PKG_VERSION"), "fedge ready");
    systemd::ready();
    systemd::spawn_watchdog();
    // A drain cancels the shutdown itself once nothing is left.
    tokio::spawn(drainer.watch(drain, shared.shutdown.clone()));

    shared.shutdown.cancelled().await;
    systemd::stopping();
    info!("shutting down");
    let _ = heartbeat.await;
    stop(tasks, watchers, &shared.store).await;
    Ok(())
}

/// Logs the listeners (the tests and operators read these lines), starts
/// the verdict sampler, and logs the audit chain's head.
async fn announce(
    cfg: &Config,
    shared: &Shared,
    core: &Core,
    [fed_addr, int_addr, admin_addr, public_addr]: [SocketAddr; 4],
    admin_scheme: &str,
    tasks: &mut JoinSet<()>,
) {
    info!(role = "federation", transport = "tls", addr = %fed_addr, fqdn = %cfg.federation.fqdn, "listening");
    let home_pool = core
        .proxy
        .router
        .internal_sources
        .allowed()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    info!(role = "internal", transport = "udp+tcp", addr = %int_addr, allowed_sources = %home_pool, "listening");
    info!(role = "admin", transport = admin_scheme, addr = %admin_addr, "listening");
    info!(role = "public", transport = "http", addr = %public_addr, "listening");
    // Partners' verdict counts over time, summed over the nodes.
    tasks.spawn(crate::federation::verdicts::run(
        core.metrics.clone(),
        shared.store.clone(),
        crate::federation::verdicts::SAMPLE_INTERVAL,
        shared.shutdown.clone(),
    ));
    // An outside anchor for the audit chain at every start (see store/audit.rs).
    match shared.store.audit_head().await {
        Ok(Some((seq, hash))) => info!(seq, hash = %hash, "audit chain head"),
        Ok(None) => info!(seq = 0, "audit chain head: empty"),
        Err(e) => warn!(error = %e, "cannot read the audit chain's head"),
    }
}

/// Opens the store, loads the registry, and makes the transport pieces
/// every listener shares.
async fn open(cfg: &Config, shutdown: CancellationToken) -> Result<Shared, ServeError> {
    let store = Store::open(&cfg.store.url)
        .await
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let registry = Registry::load(&store)
        .await
        .map_err(|e| ServeError::Runtime(format!("cannot load the partner registry: {e}")))?;
    {
        let snap = registry.snapshot();
        info!(url = %crate::store::redact_url(&cfg.store.url), backend = ?store.backend(), version = snap.version, enabled = snap.enabled_count(), "store open");
    }
    let capture = capture::start(&cfg.capture, shutdown.clone()).await?;
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
        capture: capture.as_ref().map(|(c, _)| c.clone()),
    });
    Ok(Shared {
        store,
        registry,
        settings,
        table: ConnectionTable::new(),
        shutdown,
        capture: capture.map(|(_, counters)| counters),
        cluster: {
            let view = crate::federation::cluster::ClusterView::new();
            view.set_gone_after(cfg.cluster.gone_after);
            Arc::new(view)
        },
    })
}

/// The background watchers: registry changes from the store, IG
/// certification expiry, and closing connections of partners that leave
/// `enabled`.
fn spawn_watchers(cfg: &Config, shared: &Shared, metrics: &Arc<Metrics>) -> [JoinHandle<()>; 3] {
    let shutdown = &shared.shutdown;
    let watcher = shared.registry.watch(
        shared.store.clone(),
        cfg.store.poll_interval,
        cfg.store.notify,
        shutdown.clone(),
    );
    let ig_watch = ig::spawn(
        shared.store.clone(),
        shared.registry.clone(),
        metrics.clone(),
        cfg.policy.ig_check_interval,
        cfg.policy.ig_warning_days,
        shutdown.clone(),
    );
    let closer = registry_events::close_on_registry_events(
        shared.registry.clone(),
        shared.table.clone(),
        shutdown.clone(),
    );
    [watcher, ig_watch, closer]
}

/// The proxy's listeners: federation (TLS), internal (TCP and UDP), and
/// its transaction timers.
fn spawn_sip(
    cfg: &Config,
    shared: &Shared,
    proxy: &Arc<Proxy<Edge>>,
    (fed, tls): (TcpListener, Arc<ArcSwap<ServerTls>>),
    int_tcp: TcpListener,
    int_udp: Arc<UdpSocket>,
    tasks: &mut JoinSet<()>,
) {
    let shutdown = &shared.shutdown;
    tasks.spawn(
        StreamListener {
            tag: Role::Federation.tag(),
            listener: fed,
            tls: Some(TlsAccept {
                config: tls,
                handshake_timeout: cfg.federation.handshake_timeout,
                client_auth: ClientAuth::Required,
            }),
            settings: shared.settings.clone(),
            table: shared.table.clone(),
            handler: proxy.clone(),
            limits: federation_admission(cfg),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    tasks.spawn(
        StreamListener {
            tag: Role::Internal.tag(),
            listener: int_tcp,
            tls: None,
            settings: shared.settings.clone(),
            table: shared.table.clone(),
            handler: proxy.clone(),
            limits: Admission::connections(cfg.internal.max_connections),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    tasks.spawn(udp::run(
        Role::Internal.tag(),
        int_udp,
        shared.settings.clone(),
        proxy.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(proxy.clone().run_timers(shutdown.clone()));
}

/// The federation listener's budgets: partners' authenticated connections
/// (in all and per certificate identity) apart from handshakes in
/// progress (in all and per source).
fn federation_admission(cfg: &Config) -> Admission {
    let f = &cfg.federation;
    Admission {
        max_connections: f.max_connections,
        max_per_identity: f.max_connections_per_identity,
        max_handshakes: f.max_handshakes,
        max_handshakes_per_source: f.max_handshakes_per_source,
        max_per_source: f.max_connections_per_source,
    }
}

/// The DNS server for the published zone (`[dns] listen`): the zones are
/// loaded and the sockets bound before the edge says ready.
async fn start_dns(
    cfg: &Config,
    addr: SocketAddr,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<(), ServeError> {
    let publish = cfg
        .publish()
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let zones = crate::dns::zone::zones(&publish);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sd = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = crate::dns::server::serve(addr, zones, sd, ready_tx).await {
            error!(error = %e, "DNS server stopped");
        }
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Runtime(e.to_string())),
        Err(_) => Err(ServeError::Runtime("the DNS server did not start".into())),
    }
}

/// The federation relay's sweeper of idle sessions.
fn start_media(
    cfg: &Config,
    relay: &Arc<Relay>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
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

/// What the admin listener reads.
fn edge_state(
    cfg: &Config,
    shared: &Shared,
    core: &Core,
    cvi: Option<Arc<crate::cvi::gateway::Gateway>>,
) -> EdgeState {
    EdgeState {
        connections: shared.table.clone(),
        registry: shared.registry.clone(),
        proxy: core.proxy.clone(),
        metrics: core.metrics.clone(),
        fqdn: cfg.federation.fqdn.clone(),
        media: core.media.clone(),
        cvi,
        store: shared.store.clone(),
        dialling: dialling(cfg),
        admin_tls: cfg.admin.tls,
        intake: admin::intake::Intake::new(
            crate::sip::transport::tls::load_roots(&cfg.federation.trust),
            admin::intake::Limits {
                per_source_hour: cfg.public.fpa_per_hour,
                total_hour: cfg.public.fpa_per_hour_total,
                pending_max: cfg.public.fpa_pending_max,
            },
        ),
        ops: ops(cfg),
        capture: shared.capture.clone(),
        drain: None,
        tls: None,
    }
}

fn listeners(
    bound: &[(&str, &str, std::net::SocketAddr)],
) -> Vec<crate::admin::service::ListenerView> {
    bound
        .iter()
        .map(
            |(role, transport, addr)| crate::admin::service::ListenerView {
                role: role.to_string(),
                transport: transport.to_string(),
                addr: addr.to_string(),
            },
        )
        .collect()
}

/// What the API's shared operations need from the configuration (the
/// listeners are added once bound).
/// Who this edge is to a partner's edge in a test-federation probe (the
/// CLI's and the API's): its FQDN, federation port and test user.
pub fn probe_me(cfg: &Config) -> crate::federation::probe::Me {
    crate::federation::probe::Me {
        fqdn: cfg.federation.fqdn.clone(),
        port: cfg.federation.listen.port(),
        address: format!(
            "sip:{}@{}",
            cfg.policy.test_user,
            cfg.federation
                .home_domains
                .first()
                .map(String::as_str)
                .unwrap_or(&cfg.federation.fqdn)
        ),
    }
}

fn ops(cfg: &Config) -> crate::admin::service::Ops {
    let probe_tls = crate::sip::transport::tls::client_config(&tls_files(cfg))
        .map_err(|e| warn!(error = %e, "test-federation through the API is unavailable"))
        .ok();
    crate::admin::service::Ops {
        probe_tls,
        me: Some(probe_me(cfg)),
        probe_timeout: std::time::Duration::from_secs(10),
        organiser_domains: cfg.cvi.organiser_domains.clone(),
        meeting_lifetime: cfg.cvi.meeting_lifetime,
        ..Default::default()
    }
}

/// Starts the admin listener, over TLS when `[admin] tls`; returns its
/// scheme for the "listening" line.
fn spawn_admin(
    cfg: &Config,
    listener: TcpListener,
    tls: Option<Arc<ArcSwap<ServerConfig>>>,
    state: &Arc<EdgeState>,
    shared: &Shared,
    tasks: &mut JoinSet<()>,
) -> Result<&'static str, ServeError> {
    let Some(tls) = tls.filter(|_| cfg.admin.tls) else {
        tasks.spawn(admin::serve(
            listener,
            state.clone(),
            shared.shutdown.clone(),
        ));
        return Ok("http");
    };
    let listener = admin_tls::TlsListener::start(
        listener,
        tls,
        cfg.federation.handshake_timeout,
        shared.shutdown.clone(),
    )
    .map_err(|e| ServeError::Runtime(format!("admin listener: {e}")))?;
    tasks.spawn(admin::serve(
        listener,
        state.clone(),
        shared.shutdown.clone(),
    ));
    Ok("https")
}

/// Waits up to 5 s for the listeners, then for the watchers, and closes
/// the store.
async fn stop(mut tasks: JoinSet<()>, watchers: [JoinHandle<()>; 3], store: &Store) {
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        warn!("listeners did not stop within 5 s");
    }
    for w in watchers {
        let _ = w.await;
    }
    store.close().await;
}
