//! The stateful proxy core (RFC 3261 §16): request validation, transaction
//! matching, loop detection, loose and strict routing over our own Route
//! entries, Max-Forwards, Via and Record-Route on both legs, forwarding with
//! in-place edits, response routing back upstream, and CANCEL.
//!
//! Mechanism only. Where a request may go, and why it may not, is asked of
//! a [`Router`] (the federation policy); this module carries out the answer.
//! A forwarded message is the received bytes with a few spans spliced
//! (`sip::edit`), never a re-serialisation.

pub mod budget;
pub mod dialogs;
pub mod load;
mod membership;
mod router;
pub mod topology;
pub mod txn;

pub use self::router::{
    Decision, Forward, Hop, Leg, ProxyConfig, Reject, RequestInfo, Router, Stats,
};

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use self::load::Load;
use self::topology::{BadToken, ResponseEdit};
pub use self::topology::{Hide, Topology, TopologyKey};
use self::txn::{
    Action, ClientSpec, ClientTxn, SendPath, ServerTxn, Step, Tables, TimerKey, Upstream,
};
use super::edit::Editor;
use super::headers::{HeaderName, NameAddr};
use super::message::{Method, SipMessage};
use super::parse::{Limits, find_head_end, parse_framed};
use super::response::{ResponseBuilder, random_token};
use super::transport::outbound::{ConnectError, Pool};
use super::transport::{Handler, Inbound, SendError, Side, Source, Tag, Transport};
use super::uri::{Host, Uri};
use super::validate::check_request;

/// Marks branches this proxy made; the loop hash follows it.
pub const BRANCH_PREFIX: &str = "z9hG4bK-fe";

/// Why a request of the edge's own got no final answer.
#[derive(Debug, thiserror::Error)]
pub enum OriginateError {
    #[error("the edge built an unparsable request")]
    Unparsable,
    #[error("not a request")]
    NotARequest,
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("no final answer before the transaction timed out")]
    TimedOut,
}

/// The stateful proxy.
pub struct Proxy<R: Router> {
    me: Weak<Proxy<R>>,
    pub router: R,
    pub cfg: ProxyConfig,
    tables: Arc<Tables>,
    pool: Arc<Pool>,
    udp: Arc<UdpSocket>,
    pub stats: Stats,
    /// How far behind the event loop is (sampled while the timers run).
    pub load: Arc<Load>,
    /// The dialogs this proxy record-routed.
    pub dialogs: dialogs::Dialogs,
    /// Refusals per outside source (`cfg.budget`).
    refusals: budget::Refusals,
}

impl<R: Router> std::fmt::Debug for Proxy<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

/// Our own Route entries at the top, and a strict-routing fix if needed.
struct Prep {
    own: Vec<usize>,
    strict: Option<(String, usize)>,
    loop_hash: u32,
    /// Route entries and target that our topology tokens hid from the sender.
    restored_routes: Vec<String>,
    restored_target: Option<String>,
    bad_token: Option<BadToken>,
}

impl<R: Router> Proxy<R> {
    pub fn new(router: R, cfg: ProxyConfig, pool: Arc<Pool>, udp: Arc<UdpSocket>) -> Arc<Self> {
        Arc::new_cyclic(|me| Proxy {
            me: me.clone(),
            router,
            cfg,
            tables: Tables::new(),
            pool,
            udp,
            stats: Stats::default(),
            load: Arc::new(Load::default()),
            dialogs: dialogs::Dialogs::default(),
            refusals: budget::Refusals::default(),
        })
    }

    /// Live (server, client) transactions.
    pub fn transactions(&self) -> (usize, usize) {
        self.tables.counts()
    }

    fn is_self_uri(&self, u: &Uri<'_>) -> bool {
        let Some(h) = u.host else { return false };
        let known = match h {
            Host::Name(n) => {
                let n = n.trim_end_matches('.');
                self.cfg
                    .self_hosts
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(n))
            }
            Host::V4(a) => self.cfg.self_hosts.contains(&a.to_string()),
            Host::V6(a) => self.cfg.self_hosts.contains(&a.to_string()),
        };
        known && u.port.is_none_or(|p| self.cfg.self_ports.contains(&p))
    }

    /// A Route entry of ours: our host and port, and no user part (our
    /// stand-in Contacts have one).
    fn is_own_route(&self, u: &Uri<'_>) -> bool {
        u.user.is_none() && self.is_self_uri(u)
    }

    fn prepare(&self, msg: &SipMessage, source: &Source) -> Prep {
        let routes: Vec<usize> = msg.indices(HeaderName::Route).collect();
        let mut own = Vec::new();
        for &i in &routes {
            let v = msg.value(&msg.headers()[i]);
            match NameAddr::parse(v) {
                Ok(na) if self.is_own_route(&na.uri) => own.push(i),
                _ => break,
            }
        }
        // Strict routing (§16.4): the Request-URI is a Record-Route value of ours.
        let mut strict = None;
        if let Some(u) = msg.request_uri()
            && u.user.is_none()
            && self.is_self_uri(&u)
            // Our Record-Route URIs always carry `lr`: a strict router copies one here.
            && u.param("lr").is_some()
            && let Some(&last) = routes.iter().rev().find(|i| !own.contains(i))
            && let Ok(na) = NameAddr::parse(msg.value(&msg.headers()[last]))
        {
            strict = Some((na.uri.raw.to_string(), last));
        }
        // What our topology tokens hid: route entries sealed in the Route
        // entries of ours (and, for a strict router, in the Request-URI),
        // and the target behind a stand-in Contact.
        let request_uri = msg.request_uri();
        let mut route_uris: Vec<Uri<'_>> = own
            .iter()
            .filter_map(|&i| NameAddr::parse(msg.value(&msg.headers()[i])).ok())
            .map(|na| na.uri)
            .collect();
        let strict_target = strict.as_ref().and_then(|(u, _)| Uri::parse(u).ok());
        let target = match &strict {
            Some(_) => {
                route_uris.extend(request_uri.clone());
                strict_target.as_ref()
            }
            None => request_uri.as_ref(),
        };
        let call_id = msg.call_id().unwrap_or("");
        // Whose tokens these may be: asked only when there are any to open.
        let stand_in = target.is_some_and(|u| {
            u.user
                .is_some_and(|x| x.starts_with(topology::CONTACT_PREFIX))
        });
        let peer = if route_uris.is_empty() && !stand_in {
            String::new()
        } else {
            self.router.token_peer(msg, source)
        };
        let (restored_routes, restored_target, bad_token) =
            match self
                .cfg
                .topology
                .restore_request(call_id, &peer, &route_uris, target, |u| self.is_self_uri(u))
            {
                Ok((r, t)) => (r, t, None),
                Err(e) => (Vec::new(), None, Some(e)),
            };
        Prep {
            own,
            strict,
            loop_hash: loop_hash(msg),
            restored_routes,
            restored_target,
            bad_token,
        }
    }

    /// True when a Via of ours carries this request's loop hash (§16.3 step 4).
    fn looped(&self, msg: &SipMessage, hash: u32) -> bool {
        let want = hex8(hash);
        msg.vias().any(|v| {
            v.branch()
                .and_then(|b| b.strip_prefix(BRANCH_PREFIX))
                .is_some_and(|rest| rest.as_bytes().starts_with(&want))
                && self.cfg.self_hosts.contains(
                    &v.host
                        .to_string()
                        .trim_matches(['[', ']'])
                        .to_ascii_lowercase(),
                )
        })
    }

    fn reject_bytes(&self, req: &SipMessage, r: &Reject) -> Bytes {
        let mut b =
            ResponseBuilder::new(req, r.status).warning(r.warn_code, &self.cfg.agent, &r.reason);
        for (n, v) in &r.headers {
            b = b.header(n.clone(), v.clone());
        }
        b.header("Server", self.cfg.server.clone()).build()
    }

    fn log_reject(&self, req: &SipMessage, source: &Source, r: &Reject) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        if !r.log {
            return;
        }
        warn!(
            role = %source.tag,
            remote = %source.remote,
            identity = %source.identity.as_ref().map(|i| i.to_string()).unwrap_or_default(),
            status = r.status,
            diagnostic = r.code.unwrap_or(0),
            reason = %r.detail.as_deref().unwrap_or(&r.reason),
            request = %req.summary(),
            from = req.from().map(|f| f.uri.raw.to_string()).unwrap_or_default(),
            call_id = req.call_id().unwrap_or(""),
            "request refused"
        );
    }

    async fn answer(
        &self,
        req: &SipMessage,
        source: &Source,
        server: Option<&Arc<ServerTxn>>,
        data: Bytes,
        status: u16,
    ) {
        match server {
            Some(s) => s.respond(data, status).await,
            None => {
                if let Err(e) = source
                    .send_back(data, Some(source.response_target(req)))
                    .await
                {
                    warn!(role = %source.tag, remote = %source.remote, error = %e, "response not sent");
                }
            }
        }
    }

    async fn refuse(
        &self,
        req: &SipMessage,
        source: &Source,
        server: Option<&Arc<ServerTxn>>,
        r: Reject,
    ) {
        if r.charge && !self.router.identified(source) && !self.refusal_fits(req, source, server) {
            self.router.refused(req, source, r.status);
            return;
        }
        self.log_reject(req, source, &r);
        self.note_refusal(req, server, r.status);
        self.router.refused(req, source, r.status);
        // ACK and BENOTIFY are never answered: they are only logged.
        if matches!(req.method(), Some(Method::Ack | Method::Benotify)) {
            return;
        }
        let data = self.reject_bytes(req, &r);
        self.answer(req, source, server, data, r.status).await;
    }

    async fn on_request(&self, msg: SipMessage, source: Source) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let Some(me) = self.me.upgrade() else { return };
        let key = txn::server_key(&msg);
        match method {
            Method::Ack => {
                if let Some(s) = key.as_deref().and_then(|k| self.tables.server(k))
                    && s.ack()
                {
                    return; // hop-by-hop ACK for our non-2xx answer
                }
            }
            Method::Cancel => {
                self.on_cancel(&msg, &source, key.as_deref()).await;
                return;
            }
            _ => {}
        }
        let stateless = matches!(method, Method::Ack | Method::Benotify);
        let server = if stateless {
            None
        } else {
            let Some(k) = key else { return };
            if !self.txn_fits(&source) && self.tables.server(&k).is_none() {
                let mut r = Reject::new(503, "too many requests of this source in progress");
                r.headers.push(("Retry-After".into(), "5".into()));
                // A partner with many calls ringing is not a stranger.
                r.charge = false;
                self.refuse(&msg, &source, None, r).await;
                return;
            }
            let target = source.response_target(&msg);
            let (s, created) = self.tables.server_or_insert(
                k,
                method == Method::Invite,
                &source,
                target,
                self.cfg.timers,
            );
            if !created {
                self.stats.retransmissions.fetch_add(1, Ordering::Relaxed);
                s.retransmission().await;
                return;
            }
            Some(s)
        };
        if let Err(r) = check_request(&msg, self.cfg.proxy_extensions) {
            let mut rej = Reject::new(r.status, r.reason);
            rej.headers = r
                .headers
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect();
            self.refuse(&msg, &source, server.as_ref(), rej).await;
            return;
        }
        if method == Method::Invite
            && let Some(s) = &server
        {
            let trying = ResponseBuilder::new(&msg, 100).build();
            s.respond(trying, 100).await;
        }
        let prep = self.prepare(&msg, &source);
        if self.looped(&msg, prep.loop_hash) {
            self.stats.loops.fetch_add(1, Ordering::Relaxed);
            let r = Reject::new(
                482,
                "the request has already passed through this edge (loop)",
            );
            self.refuse(&msg, &source, server.as_ref(), r).await;
            return;
        }
        // A Route token that does not verify names no hop: refused before
        // the router spends anything (DNS, limits, media) on the request.
        if let Some(bad) = &prep.bad_token {
            let r = Reject::new(404, bad.to_string());
            self.refuse(&msg, &source, server.as_ref(), r).await;
            return;
        }
        let to_tag = msg.to().and_then(|t| t.tag().map(str::to_string));
        let now = tokio::time::Instant::now();
        // In dialog by the edge's own knowledge (membership.rs).
        let in_dialog = match self.dialog_state(&msg, &source, &prep, now) {
            Ok(d) => d,
            Err(r) => return self.refuse(&msg, &source, server.as_ref(), r).await,
        };
        if let (true, Some(s)) = (in_dialog, &server) {
            s.set_in_dialog(); // a BYE's answer then ends its call
        }
        let info = RequestInfo {
            in_dialog,
            own_routes: prep.own.len(),
            next_route: prep.restored_routes.first().cloned().or_else(|| {
                msg.indices(HeaderName::Route)
                    .find(|i| !prep.own.contains(i))
                    .map(|i| msg.value(&msg.headers()[i]).to_string())
            }),
            pressure: self.load.pressure(self.tables.client_count()),
        };
        match self.router.route(&msg, &source, &info).await {
            Decision::Reject(r) => {
                self.refuse(&msg, &source, server.as_ref(), r).await;
            }
            Decision::Drop(why) => {
                info!(role = %source.tag, remote = %source.remote, request = %msg.summary(), reason = %why, "request dropped");
            }
            Decision::Answer { status, headers } => {
                let mut b = ResponseBuilder::new(&msg, status);
                for (n, v) in headers {
                    b = b.header(n, v);
                }
                let data = b.header("Server", self.cfg.server.clone()).build();
                self.answer(&msg, &source, server.as_ref(), data, status)
                    .await;
            }
            Decision::Forward(fwd) => {
                let record_route = to_tag.is_none()
                    && matches!(
                        method,
                        Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
                    );
                if record_route
                    && let Err(r) =
                        self.claim_dialog((&msg, &source), server.as_deref(), &fwd.peer, now)
                {
                    return self.refuse(&msg, &source, server.as_ref(), r).await;
                }
                me.forward(msg, source, server, fwd, &prep, record_route)
                    .await;
            }
        }
    }

    /// A CANCEL (RFC 3261 §16.10): answered here at once (200, or 481 when
    /// no INVITE of the same sender matches), then passed on to the INVITE's
    /// client transaction once it may be.
    async fn on_cancel(&self, msg: &SipMessage, source: &Source, key: Option<&str>) {
        let invite_key = key.map(|k| k.replace("|CANCEL", "|INVITE"));
        // Only whoever sent the INVITE may cancel it.
        let found = invite_key
            .as_deref()
            .and_then(|k| self.tables.server(k))
            .filter(|s| s.source.remote == source.remote && s.source.transport == source.transport);
        let (status, note) = match &found {
            Some(_) => (200, None),
            None => (481, Some("no transaction matches this CANCEL")),
        };
        let mut b = ResponseBuilder::new(msg, status);
        if let Some(n) = note {
            b = b.warning(399, &self.cfg.agent, n);
        }
        let data = b.header("Server", self.cfg.server.clone()).build();
        self.answer(msg, source, None, data, status).await;
        if let Some(client) = found
            .and_then(|s| s.cancel())
            .and_then(|k| self.tables.client(&k))
        {
            debug!(call_id = msg.call_id().unwrap_or(""), "CANCEL passed on");
            let step = client.on_cancel(tokio::time::Instant::now());
            self.apply(&client, step).await;
        }
    }

    /// Sends a request the router let through: builds the forwarded bytes
    /// and sends them on a pooled connection, or opens one in the
    /// background so this listener is not held up.
    async fn forward(
        self: Arc<Self>,
        msg: SipMessage,
        source: Source,
        server: Option<Arc<ServerTxn>>,
        fwd: Forward,
        prep: &Prep,
        record_route: bool,
    ) {
        let me = self;
        let (data, branch, edit) =
            me.build_forward(&msg, &source, &fwd, prep, (record_route, server.is_some()));
        let path = match &fwd.hop {
            Hop::Udp(to) => Some(SendPath::Udp {
                sock: me.udp.clone(),
                to: *to,
                capture: me.pool.capture().cloned(),
            }),
            Hop::Stream(t) => me.pool.try_get(t).map(SendPath::Stream),
        };
        match path {
            Some(p) => {
                me.send_forward(msg, source, server, (data, branch, edit), p)
                    .await
            }
            None => {
                // A new connection is needed: do not hold up this listener for it.
                let Hop::Stream(target) = fwd.hop.clone() else {
                    return;
                };
                tokio::spawn(async move {
                    match me.pool.get(&target, me.clone()).await {
                        Ok(c) => {
                            me.send_forward(
                                msg,
                                source,
                                server,
                                (data, branch, edit),
                                SendPath::Stream(c),
                            )
                            .await
                        }
                        Err(e) => {
                            let r = me.router.forward_failed(&msg, &source, &e);
                            me.refuse(&msg, &source, server.as_ref(), r).await;
                        }
                    }
                });
            }
        }
    }

    /// The forwarded bytes: our Via on top, Max-Forwards down by one, our
    /// Route entries removed (and what our tokens hid put back),
    /// Record-Route on both legs when asked, topology hidden when asked,
    /// and the router's header edits. Everything else is copied as
    /// received. Also returns the branch and what the responses need.
    fn build_forward(
        &self,
        msg: &SipMessage,
        source: &Source,
        fwd: &Forward,
        prep: &Prep,
        (record_route, stateful): (bool, bool),
    ) -> (Bytes, String, ResponseEdit) {
        let out = self.cfg.leg(fwd.leg);
        let branch = format!("{BRANCH_PREFIX}{:08x}-{}", prep.loop_hash, random_token());
        let mut ed = Editor::new(msg);
        let restored = prep.restored_target.as_deref();
        if let Some((uri, idx)) = &prep.strict {
            ed.set_request_uri(restored.unwrap_or(uri));
            ed.remove_value(*idx);
        } else if let Some(uri) = restored {
            ed.set_request_uri(uri);
        }
        if fwd.hide == Hide::Destination {
            // The sender may not route into the side hidden from it: only
            // the entries our tokens restore are followed.
            ed.remove_all(HeaderName::Route);
        } else {
            for &i in &prep.own {
                ed.remove_value(i);
            }
        }
        for r in &prep.restored_routes {
            ed.insert_before_first(HeaderName::Route, r);
        }
        match msg.indices(HeaderName::MaxForwards).next() {
            Some(i) => ed.replace_value(
                i,
                msg.max_forwards()
                    .unwrap_or(70)
                    .saturating_sub(1)
                    .to_string(),
            ),
            None => ed.append("Max-Forwards", "70"),
        }
        let inner = &self.cfg.leg(source.tag.side).record_route;
        let two_legs = source.tag.side != fwd.leg;
        let mut response_edit = match fwd.hide {
            Hide::Destination if stateful => ResponseEdit::Hide {
                peer: fwd.peer.clone(),
                below: msg.values(HeaderName::RecordRoute).count(),
                ours: if !record_route {
                    0
                } else if two_legs {
                    2
                } else {
                    1
                },
            },
            _ => ResponseEdit::Nothing,
        };
        if fwd.hide == Hide::Source {
            let rr = record_route.then_some((out.record_route.as_str(), inner.as_str()));
            response_edit = self
                .cfg
                .topology
                .hide_request(msg, &mut ed, rr, stateful, &fwd.peer);
        } else if record_route {
            // The topmost entry faces the next hop; the second, where the request came from.
            ed.insert_before_first(HeaderName::RecordRoute, &out.record_route);
            if two_legs {
                ed.insert_before_first(HeaderName::RecordRoute, inner);
            }
        }
        for name in &fwd.strip {
            ed.remove_header(name);
        }
        for (n, v) in &fwd.add {
            ed.append(n, v);
        }
        if let Some(b) = &fwd.body {
            ed.set_body(b.clone());
        }
        ed.insert_before_first(HeaderName::Via, &format!("{};branch={branch}", out.via));
        (ed.finish(), branch, response_edit)
    }

    async fn send_forward(
        self: Arc<Self>,
        msg: SipMessage,
        source: Source,
        server: Option<Arc<ServerTxn>>,
        (data, branch, response_edit): (Bytes, String, ResponseEdit),
        path: SendPath,
    ) {
        let method = msg.method().cloned().unwrap_or(Method::Other("?".into()));
        let mut cancelled = false;
        let mut client = None;
        if let Some(server) = server {
            let (cancel, ack_for): (Option<Bytes>, Option<txn::AckBuilder>) =
                if method == Method::Invite {
                    match find_head_end(&data, 0)
                        .and_then(|he| parse_framed(data.clone(), he, &Limits::default()).ok())
                    {
                        Some(fwd) => {
                            let cancel = txn::build_cancel(&fwd);
                            let ack = Box::new(move |resp: &SipMessage| {
                                txn::build_ack(&fwd, resp).unwrap_or_default()
                            }) as txn::AckBuilder;
                            (cancel, Some(ack))
                        }
                        None => (None, None),
                    }
                } else {
                    (None, None)
                };
            let c = ClientTxn::new(ClientSpec {
                key: txn::client_key(&branch, method.as_str()),
                method: method.clone(),
                request: data.clone(),
                cancel,
                ack_for,
                path: path.clone(),
                timers: self.cfg.timers,
                upstream: Upstream::Server(server.clone()),
                received: msg.clone(),
                response_edit,
            });
            self.tables.insert_client(c.clone());
            match server.attach(&c.key) {
                None => {
                    self.tables.remove_client(&c.key);
                    return;
                }
                Some(was_cancelled) => cancelled = was_cancelled,
            }
            client = Some(c);
        }
        if let Err(e) = path.send(data).await {
            // Answer through the transaction, which then ignores the timer
            // of a client transaction that never got its request out.
            let server = client.as_ref().and_then(|c| match &c.upstream {
                Upstream::Server(s) => Some(s.clone()),
                Upstream::Local(_) => None,
            });
            if let Some(c) = &client {
                self.tables.remove_client(&c.key);
            }
            let mut r = Reject::new(503, format!("the next hop could not be sent to: {e}"));
            r.charge = false; // the edge's failure, not the sender's
            self.refuse(&msg, &source, server.as_ref(), r).await;
            return;
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        debug!(role = %source.tag, request = %msg.summary(), "forwarded");
        if let Some(c) = client {
            let now = tokio::time::Instant::now();
            let step = if cancelled {
                c.on_cancel(now)
            } else {
                c.on_timer(now)
            };
            self.apply(&c, step).await;
        }
    }

    /// Sends a request of the edge's own (it is the UAC) on `leg` to `hop`
    /// and waits for its final answer. `build` gets our Via value and
    /// returns the whole request.
    pub async fn originate(
        self: &Arc<Self>,
        leg: Side,
        hop: &Hop,
        build: impl FnOnce(&str) -> Bytes,
    ) -> Result<SipMessage, OriginateError> {
        let branch = format!("{BRANCH_PREFIX}00000000-{}", random_token());
        let data = build(&format!("{};branch={branch}", self.cfg.leg(leg).via));
        let msg = find_head_end(&data, 0)
            .and_then(|he| parse_framed(data.clone(), he, &Limits::default()).ok())
            .ok_or(OriginateError::Unparsable)?;
        let method = msg.method().cloned().ok_or(OriginateError::NotARequest)?;
        let path = match hop {
            Hop::Udp(to) => SendPath::Udp {
                sock: self.udp.clone(),
                to: *to,
                capture: self.pool.capture().cloned(),
            },
            Hop::Stream(t) => SendPath::Stream(self.pool.get(t, self.clone()).await?),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let c = ClientTxn::new(ClientSpec {
            key: txn::client_key(&branch, method.as_str()),
            method,
            request: data.clone(),
            cancel: None,
            ack_for: None,
            path: path.clone(),
            timers: self.cfg.timers,
            upstream: Upstream::Local(std::sync::Mutex::new(Some(tx))),
            received: msg,
            response_edit: ResponseEdit::Nothing,
        });
        self.tables.insert_client(c.clone());
        if let Err(e) = path.send(data).await {
            self.tables.remove_client(&c.key);
            return Err(e.into());
        }
        let step = c.on_timer(tokio::time::Instant::now());
        self.apply(&c, step).await;
        rx.await.map_err(|_| OriginateError::TimedOut)
    }

    /// Carries out what a client transaction asked for, and schedules or
    /// ends it.
    async fn apply(&self, c: &Arc<ClientTxn>, step: Step) {
        for a in step.actions {
            match a {
                Action::Downstream(d) => {
                    let _ = c.path.send(d).await;
                }
                Action::Upstream(resp) => match &c.upstream {
                    Upstream::Server(server) => {
                        let status = resp.status().unwrap_or(500);
                        self.note_answer(&resp, server, status);
                        let data = self.upstream_bytes(&resp, &server.source, &c.response_edit);
                        server.respond(data, status).await;
                    }
                    Upstream::Local(waiter) => {
                        if resp.status().is_some_and(|s| s >= 200) {
                            let tx = waiter.lock().unwrap_or_else(|p| p.into_inner()).take();
                            if let Some(tx) = tx {
                                let _ = tx.send(resp);
                            }
                        }
                    }
                },
                Action::Timeout(received, status, reason) => match &c.upstream {
                    Upstream::Server(server) => {
                        if !server.final_sent() {
                            self.note_answer(&received, server, status);
                            let mut r = Reject::new(status, reason);
                            r.charge = false; // the next hop's silence, not the sender's
                            self.refuse(&received, &server.source, Some(server), r)
                                .await;
                        }
                    }
                    // Dropping the waiter tells the originator nothing came.
                    Upstream::Local(waiter) => {
                        drop(waiter.lock().unwrap_or_else(|p| p.into_inner()).take())
                    }
                },
            }
        }
        match step.next {
            None => self.tables.remove_client(&c.key),
            Some(at) => {
                if let Some(at) = c.wake_to_schedule(at) {
                    self.tables
                        .wheel
                        .schedule(at, TimerKey::Client(c.key.clone()));
                }
            }
        }
    }

    /// Fires transaction timers until shutdown, and samples the event
    /// loop's lag beside them (the [`load::Pressure`] routers read).
    pub async fn run_timers(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let load = self.load.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { load.sample(stop).await });
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.tables.wheel.wait() => {}
            }
            let now = tokio::time::Instant::now();
            for key in self.tables.wheel.take_due(now) {
                match key {
                    TimerKey::Client(k) => {
                        if let Some(c) = self.tables.client(&k) {
                            let step = c.on_timer(now);
                            self.apply(&c, step).await;
                        }
                    }
                    TimerKey::ServerEnd(k) => self.tables.remove_server(&k),
                }
            }
        }
    }

    async fn on_response(&self, msg: SipMessage, source: Source) {
        self.stats.responses.fetch_add(1, Ordering::Relaxed);
        let via = msg.top_via();
        let key = via
            .as_ref()
            .and_then(|v| v.branch().filter(|b| b.starts_with(BRANCH_PREFIX)))
            .zip(msg.cseq())
            .map(|(b, c)| txn::client_key(b, c.method));
        match key.as_deref().and_then(|k| self.tables.client(k)) {
            Some(c) => {
                let step = c.on_response(msg, tokio::time::Instant::now());
                self.apply(&c, step).await;
            }
            None => {
                self.stats.stray_responses.fetch_add(1, Ordering::Relaxed);
                debug!(role = %source.tag, remote = %source.remote, response = %msg.summary(), "response matching no transaction dropped");
            }
        }
    }

    /// Strips our Via, restores or hides topology, and applies the
    /// router's edits.
    fn upstream_bytes(&self, resp: &SipMessage, to: &Source, edit: &ResponseEdit) -> Bytes {
        let mut ed = Editor::new(resp);
        if let Some(i) = resp.indices(HeaderName::Via).next() {
            ed.remove_value(i);
        }
        let is_self = |u: &Uri<'_>| self.is_self_uri(u);
        match edit {
            ResponseEdit::Nothing => {}
            ResponseEdit::Restore { vias, record_route } => {
                self.cfg
                    .topology
                    .restore_response(resp, &mut ed, vias, record_route, is_self)
            }
            ResponseEdit::Hide { below, ours, peer } => {
                let outer = &self.cfg.leg(to.tag.side).record_route;
                self.cfg
                    .topology
                    .hide_response(resp, &mut ed, outer, (*below, *ours), peer)
            }
        }
        self.router.edit_response(resp, to, &mut ed);
        ed.finish()
    }
}

impl<R: Router> Handler for Proxy<R> {
    async fn on_message(&self, inbound: Inbound) {
        let Inbound { msg, source } = inbound;
        if msg.is_request() {
            self.on_request(msg, source).await;
        } else {
            self.on_response(msg, source).await;
        }
    }

    fn admits(&self, tag: Tag, remote: std::net::SocketAddr, transport: Transport) -> bool {
        self.router.admits(tag, remote, transport)
    }
}

/// `hash` as the 8 hex digits our branches carry (`{hash:08x}`), no String.
fn hex8(hash: u32) -> [u8; 8] {
    std::array::from_fn(|i| b"0123456789abcdef"[((hash >> (28 - 4 * i)) & 0xf) as usize])
}

/// The loop-detection hash of RFC 3261 §16.6 step 8: the request's
/// identifying fields as received.
pub fn loop_hash(msg: &SipMessage) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    // `Option<&str>` hashes as `Option<String>` did: the same value, with no
    // copy of the tags.
    msg.to().as_ref().and_then(|t| t.tag()).hash(&mut h);
    msg.from().as_ref().and_then(|f| f.tag()).hash(&mut h);
    msg.call_id().hash(&mut h);
    msg.cseq().map(|c| c.seq).hash(&mut h);
    msg.request_uri_str().hash(&mut h);
    msg.first(HeaderName::Route).hash(&mut h);
    for v in msg.values(HeaderName::ProxyRequire) {
        v.hash(&mut h);
    }
    for v in msg.values(HeaderName::ProxyAuthorization) {
        v.hash(&mut h);
    }
    h.finish() as u32
}

#[cfg(test)]
mod hex_tests {
    #[test]
    fn hex8_writes_what_format_writes() {
        for h in [0u32, 1, 0xdead_beef, 0x0102_0a0b, u32::MAX] {
            assert_eq!(&super::hex8(h)[..], format!("{h:08x}").as_bytes());
        }
    }
}
