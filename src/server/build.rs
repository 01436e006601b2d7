//! Building the SIP core of `fedge serve`: the proxy's legs and topology
//! hiding, the federation policy ([`Edge`]), the federation media relay,
//! and the outbound connection pool.
//!
//! Owns turning configuration into these values, in start-up order. It
//! never binds a socket (listen.rs does) and never spawns a task (mod.rs
//! does).

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dns::Dns;
use crate::federation::content;
use crate::federation::metrics::Metrics;
use crate::federation::policy::limits::Limits as RateLimits;
use crate::federation::policy::{PROXY_EXTENSIONS, PolicyConfig};
use crate::federation::product::{Minimums, Version};
use crate::federation::registry::Registry;
use crate::federation::{Edge, RateConfig};
use crate::media::{MediaConfig, Relay, SideAddress};
use crate::role::Role;
use crate::sip::proxy::budget::Budget;
use crate::sip::proxy::txn::Timers;
use crate::sip::proxy::{Hop, Leg, Proxy, ProxyConfig, Topology, TopologyKey};
use crate::sip::transport::outbound::{Pool, StreamTarget};
use crate::sip::transport::{ConnectionTable, Transport, TransportSettings};
use crate::store::Store;

use super::error::ServeError;
use super::listen::Sockets;

/// What the SIP core is built from: the store, the registry and the
/// transport pieces every listener shares.
pub(super) struct Shared {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub settings: Arc<TransportSettings>,
    pub table: Arc<ConnectionTable>,
    pub shutdown: CancellationToken,
    /// HEP capture's counters (`[capture] hep`), for /metrics.
    pub capture: Option<Arc<crate::admin::CaptureCounters>>,
    /// The other nodes, and this node's drain mark.
    pub cluster: Arc<crate::federation::cluster::ClusterView>,
}

/// The SIP core: the proxy with the federation policy, and what it shares
/// with the admin listener and the CVI gateway.
pub(super) struct Core {
    pub proxy: Arc<Proxy<Edge>>,
    /// The outbound pool (the CVI gateway uses it too).
    pub pool: Arc<Pool>,
    pub media: Option<Arc<Relay>>,
    pub metrics: Arc<Metrics>,
    /// Topology hiding, and the keys it started with (for the key watch).
    pub topology: Arc<Topology>,
    pub topology_keys: Vec<crate::store::StoredKey>,
}

/// Builds the proxy, its policy and its relay.
pub(super) async fn sip_core(
    cfg: &Config,
    sockets: &Sockets,
    shared: &Shared,
    client_tls: Arc<ClientConfig>,
) -> Result<Core, ServeError> {
    let (next_hop, next_transport) = resolve_next_hop(cfg).await?;
    let metrics = Arc::new(Metrics::new());
    let topology_keys = super::topology_keys::load(&shared.store)
        .await
        .map_err(|e| ServeError::Runtime(format!("cannot read the topology-hiding keys: {e}")))?;
    let proxy_cfg = proxy_config(
        cfg,
        sockets,
        next_transport,
        &super::topology_keys::ring(&topology_keys),
    )?;
    let topology = proxy_cfg.topology.clone();
    let media = cfg.media.enabled.then(|| federation_relay(cfg));
    let dns = Dns::new(cfg.dns.resolver).map_err(|e| ServeError::Runtime(e.to_string()))?;
    let edge = Edge {
        dns: dns.clone(),
        registry: shared.registry.clone(),
        policy: policy_config(
            cfg,
            vec![sockets.fed_addr.ip(), sockets.int_addr.ip()],
            next_hop,
        )?,
        rates: RateConfig {
            rate: cfg.policy.rate,
            burst: cfg.policy.burst,
            enumeration_limit: cfg.policy.enumeration_limit,
            enumeration_window: cfg.policy.enumeration_window,
        },
        limits: RateLimits::new(),
        metrics: metrics.clone(),
        store: Some(shared.store.clone()),
        proxy: OnceLock::new(),
        media: media.clone(),
        internal_sources: crate::federation::sources::InternalSources::new(
            cfg.internal_sources()
                .map_err(|e| ServeError::Config(e.to_string()))?,
        ),
        cluster: shared.cluster.clone(),
        drain: crate::federation::DrainAnswer {
            node: super::cluster::node_name(&cfg.cluster.node, sockets.fed_addr.port()),
            fqdn: cfg.federation.fqdn.clone(),
            retry_after: cfg.drain.retry_after,
        },
    };
    let pool = Arc::new(
        Pool::new(
            client_tls,
            shared.settings.clone(),
            shared.table.clone(),
            shared.shutdown.clone(),
            cfg.federation.handshake_timeout,
        )
        .with_resolver(Arc::new(dns.clone())),
    );
    let proxy = Proxy::new(edge, proxy_cfg, pool.clone(), sockets.int_udp.clone());
    let _ = proxy.router.proxy.set(Arc::downgrade(&proxy));
    Ok(Core {
        proxy,
        pool,
        media,
        metrics,
        topology,
        topology_keys,
    })
}

/// The home domains, lower-cased.
fn home_domains(cfg: &Config) -> Vec<String> {
    cfg.federation
        .home_domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect()
}

/// The proxy's two legs (Via and Record-Route on each side), the names
/// and ports that are the edge itself, its timers and its topology hiding.
fn proxy_config(
    cfg: &Config,
    sockets: &Sockets,
    next_transport: Transport,
    topology_keys: &[TopologyKey],
) -> Result<ProxyConfig, ServeError> {
    let (fed_addr, int_addr) = (sockets.fed_addr, sockets.int_addr);
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
    Ok(ProxyConfig {
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
                topology_keys,
                cfg.topology.token_lifetime,
                home_domains(cfg),
                format!("{fqdn}:{};transport=tls", fed_addr.port()),
            )
            .map_err(|e| ServeError::Runtime(e.to_string()))?,
        ),
        budget: Budget {
            max_transactions_per_source: cfg.federation.max_transactions_per_source,
            refusal_rate: cfg.federation.refusals_per_second,
            refusal_burst: cfg.federation.refusal_burst,
        },
    })
}

/// The federation policy's settings (`local_addrs`: the listeners'
/// addresses; `fedge explain` builds the same from the configuration).
pub fn policy_config(
    cfg: &Config,
    local_addrs: Vec<IpAddr>,
    next_hop: Hop,
) -> Result<PolicyConfig, ServeError> {
    Ok(PolicyConfig {
        fqdn: cfg.federation.fqdn.to_ascii_lowercase(),
        home_domains: home_domains(cfg),
        next_hop,
        local_addrs,
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
    })
}

/// The relay for federated calls' media (`[media] enabled`).
fn federation_relay(cfg: &Config) -> Arc<Relay> {
    crate::media::engine::set_threads(cfg.media.threads);
    crate::media::engine::set_io(cfg.media.engine_io());
    crate::media::engine::set_connect_peers(cfg.media.connect_peers);
    let side = |bind: IpAddr, adv: Option<IpAddr>| SideAddress {
        bind,
        advertise: adv.unwrap_or(bind),
    };
    Relay::new(MediaConfig {
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
        networks: media_networks(cfg),
        max_sessions_per_owner: cfg.media.max_sessions_per_partner,
        max_pairs_per_owner: cfg.media.max_pairs_per_partner,
        latch_any_host: cfg.media.latch_any_host,
    })
}

/// `[media]`'s networks, partner side first (validated at load; should a
/// list not read here, nothing is allowed rather than everything).
pub(super) fn media_networks(cfg: &Config) -> [Arc<crate::media::networks::Networks>; 2] {
    match cfg.media.networks() {
        Ok([p, h]) => [Arc::new(p), Arc::new(h)],
        Err(e) => {
            tracing::error!(error = %e, "[media] networks unreadable: media goes nowhere");
            let n = Arc::new(crate::media::networks::Networks::none());
            [n.clone(), n]
        }
    }
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

/// An IP address as it appears in a URI host (IPv6 without brackets here;
/// callers compare it with parsed hosts).
fn fmt_ip(ip: std::net::IpAddr) -> String {
    ip.to_string()
}
