//! The running edge's state as the admin listener sees it. The admin
//! module owns this type; `server` builds it at start-up.
//!
//! Owns what the HTTP handlers may read. It never starts or stops anything.

use std::sync::Arc;

use crate::cvi::gateway::Gateway;
use crate::cvi::meetings::Dialling;
use crate::federation::Edge;
use crate::federation::metrics::Metrics;
use crate::federation::registry::Registry;
use crate::media::Relay;
use crate::sip::proxy::Proxy;
use crate::sip::transport::ConnectionTable;
use crate::store::Store;

/// The running edge's shared state, for the admin listener.
#[derive(Debug)]
pub struct EdgeState {
    pub connections: Arc<ConnectionTable>,
    pub registry: Arc<Registry>,
    pub proxy: Arc<Proxy<Edge>>,
    pub metrics: Arc<Metrics>,
    pub fqdn: String,
    pub media: Option<Arc<Relay>>,
    /// The CVI gateway, when `[cvi] enabled`.
    pub cvi: Option<Arc<Gateway>>,
    pub store: Store,
    /// What the CVI dialling instructions say.
    pub dialling: Dialling,
    /// The admin listener serves TLS: console cookies are marked Secure.
    pub admin_tls: bool,
    /// FPA intake: the trust bundle partner certificates must chain to,
    /// the per-source submission budget, the form's CSRF key.
    pub intake: super::intake::Intake,
    /// What the shared operations (`admin::service`) need from the
    /// configuration: test-federation's TLS and identity, CVI enrolment
    /// domains, the listeners.
    pub ops: super::service::Ops,
    /// HEP capture's counters, when `[capture] hep` is set.
    pub capture: Option<Arc<super::CaptureCounters>>,
    /// The node's drain (`server::drain`), once the server has built it.
    pub drain: Option<Arc<dyn super::service::NodeDrain>>,
    /// The federation certificate served and its reload (`server::reload`);
    /// `None` where no edge TLS runs (unit tests).
    pub tls: Option<Arc<dyn super::tls::TlsControl>>,
}

/// The query of the drain switches: `?on=false` resumes.
#[derive(serde::Deserialize)]
pub(super) struct DrainQuery {
    pub(super) on: Option<bool>,
}
