//! Connection admission for one stream listener: how many connections may
//! be in their TLS handshake (in all, and from one source), how many
//! established connections the listener holds, and how many of them one
//! authenticated identity may hold.
//!
//! Owns the budgets, the choice of what to shed when the handshake budget
//! is full (the oldest pending handshake of the busiest source, never one
//! of a source with nothing pending), and the log lines that say what was
//! shed and why, at most one per source and reason per second plus a count
//! of the rest, so that a flood cannot flood the log. It never reads or
//! writes a socket (the listener closes what it is told to) and never asks
//! who a partner is: an identity is the certificate's names, nothing more.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{PeerIdentity, Tag};

/// How long one log line stands for the same source and reason.
const LOG_WINDOW: Duration = Duration::from_secs(1);

/// The budgets of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Established connections (authenticated TLS, or plain TCP) at once.
    pub max_connections: usize,
    /// Established connections one authenticated identity may hold.
    pub max_per_identity: usize,
    /// Connections still in their TLS handshake, from all sources.
    pub max_handshakes: usize,
    /// Connections still in their TLS handshake from one source.
    pub max_handshakes_per_source: usize,
    /// Established connections from one source (an IPv4 address or an
    /// IPv6 /64); `max_connections` where a source may hold them all.
    pub max_per_source: usize,
}

impl Limits {
    /// A listener capped on its established connections only (plain TCP,
    /// where there is no handshake and no identity).
    pub fn connections(max: usize) -> Limits {
        Limits {
            max_connections: max,
            max_per_identity: max,
            max_handshakes: max,
            max_handshakes_per_source: max,
            max_per_source: max,
        }
    }
}

/// A source as the budgets count it: an IPv4 address, or the /64 an IPv6
/// address is in (one host is usually given a whole /64, so counting its
/// addresses one by one would give it 2^64 budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(_) => SourceKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    SourceKey(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// Why a connection was shed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shed {
    /// The source already has its most pending handshakes: the new
    /// connection is closed at once.
    SourceCap,
    /// The handshake budget was full: the busiest source's oldest pending
    /// handshake was closed to make room for the new connection.
    HandshakeBudget,
    /// The handshake did not finish within its deadline, counted from the
    /// accept (a byte now and then does not extend it).
    HandshakeDeadline,
    /// The authenticated identity already holds its most connections.
    IdentityCap,
    /// The listener already holds its most established connections.
    ConnectionCap,
    /// The source already holds its most established connections.
    SourceConnectionCap,
}

impl Shed {
    /// The label in the log's `reason` field.
    pub fn label(self) -> &'static str {
        match self {
            Shed::SourceCap => "source_cap",
            Shed::HandshakeBudget => "handshake_budget",
            Shed::HandshakeDeadline => "handshake_deadline",
            Shed::IdentityCap => "identity_cap",
            Shed::ConnectionCap => "connection_cap",
            Shed::SourceConnectionCap => "source_connection_cap",
        }
    }

    /// The log line's message.
    fn message(self) -> &'static str {
        match self {
            Shed::SourceCap => "connection shed: the source has its most pending TLS handshakes",
            Shed::HandshakeBudget => {
                "connection shed: handshake budget full, the busiest source's oldest pending handshake closed"
            }
            Shed::HandshakeDeadline => "TLS handshake refused: timed out",
            Shed::IdentityCap => "connection refused: the identity holds its most connections",
            Shed::ConnectionCap => "connection refused: connection limit reached",
            Shed::SourceConnectionCap => {
                "connection refused: the source holds its most connections"
            }
        }
    }
}

/// One shed or refused connection, as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub reason: Shed,
    pub source: SourceKey,
    /// The connection that was closed.
    pub remote: SocketAddr,
    /// Pending handshakes of that source (before it was closed).
    pub source_pending: usize,
    /// Pending handshakes of the listener (before it was closed).
    pub pending: usize,
    /// Established connections of the identity, or of the listener.
    pub established: usize,
    /// The limit that was reached.
    pub limit: usize,
    /// The certificate identity, when the reason is about one.
    pub identity: String,
    /// The handshake deadline (handshake_deadline only).
    pub timeout_ms: u64,
    /// Further connections shed for the same source and reason since the
    /// last line (summary lines only).
    pub repeated: u64,
}

/// What is logged per source and reason within a window.
#[derive(Debug)]
struct Window {
    opened: Instant,
    more: u64,
    last: Note,
}

#[derive(Debug)]
struct Pending {
    id: u64,
    remote: SocketAddr,
    cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Pending handshakes per source, oldest first.
    pending: HashMap<SourceKey, VecDeque<Pending>>,
    /// (pending count, source) for every source with pending handshakes:
    /// the busiest is the last.
    by_count: BTreeSet<(usize, SourceKey)>,
    pending_total: usize,
    established: usize,
    per_identity: HashMap<String, usize>,
    /// Established connections per source.
    per_source: HashMap<SourceKey, usize>,
    log: HashMap<(SourceKey, Shed), Window>,
}

impl State {
    fn count(&self, source: SourceKey) -> usize {
        self.pending.get(&source).map_or(0, VecDeque::len)
    }

    fn set_count(&mut self, source: SourceKey, before: usize, after: usize) {
        if before > 0 {
            self.by_count.remove(&(before, source));
        }
        if after > 0 {
            self.by_count.insert((after, source));
        }
    }

    /// Removes pending handshake `id` of `source`; false when it is gone.
    fn remove(&mut self, source: SourceKey, id: u64) -> bool {
        let before = self.count(source);
        let Some(q) = self.pending.get_mut(&source) else {
            return false;
        };
        let Some(pos) = q.iter().position(|p| p.id == id) else {
            return false;
        };
        q.remove(pos);
        if q.is_empty() {
            self.pending.remove(&source);
        }
        self.pending_total -= 1;
        self.set_count(source, before, before - 1);
        true
    }

    /// Closes the oldest pending handshake of the busiest source; returns
    /// that source, its pending count before, and the closed connection.
    fn shed_busiest(&mut self) -> Option<(SourceKey, usize, SocketAddr)> {
        let &(count, source) = self.by_count.last()?;
        let q = self.pending.get_mut(&source)?;
        let oldest = q.pop_front()?;
        if q.is_empty() {
            self.pending.remove(&source);
        }
        oldest.cancel.cancel();
        self.pending_total -= 1;
        self.set_count(source, count, count - 1);
        Some((source, count, oldest.remote))
    }

    /// Records `note`; returns it when it is to be logged now (the first
    /// of its source and reason in a window).
    fn note(&mut self, note: Note, now: Instant) -> Option<Note> {
        let key = (note.source, note.reason);
        match self.log.get_mut(&key) {
            Some(w) if now.duration_since(w.opened) < LOG_WINDOW => {
                w.more += 1;
                w.last = note;
                None
            }
            _ => {
                self.log.insert(
                    key,
                    Window {
                        opened: now,
                        more: 0,
                        last: note.clone(),
                    },
                );
                Some(note)
            }
        }
    }

    /// Closes the windows that are over; returns summaries of those that
    /// held more than their first line.
    fn flush(&mut self, now: Instant) -> Vec<Note> {
        let mut out = Vec::new();
        self.log.retain(|_, w| {
            if now.duration_since(w.opened) < LOG_WINDOW {
                return true;
            }
            if w.more > 0 {
                let mut n = w.last.clone();
                n.repeated = w.more;
                out.push(n);
            }
            false
        });
        out
    }
}

/// The admission state of one listener.
#[derive(Debug)]
pub struct Admission {
    tag: Tag,
    limits: Limits,
    state: Mutex<State>,
}

impl Admission {
    pub fn new(tag: Tag, limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            tag,
            limits: Limits {
                max_connections: limits.max_connections.max(1),
                max_per_identity: limits.max_per_identity.max(1),
                max_handshakes: limits.max_handshakes.max(1),
                max_handshakes_per_source: limits.max_handshakes_per_source.max(1),
                max_per_source: limits.max_per_source.max(1),
            },
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation leaves the state consistent before it can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection into its TLS handshake, or refuses it
    /// (`None`: the caller closes it). When the handshake budget is full,
    /// the busiest source's oldest pending handshake is closed to make
    /// room. Both are logged here.
    pub fn handshake(self: &Arc<Self>, remote: SocketAddr) -> Option<PendingTicket> {
        let source = SourceKey::of(remote.ip());
        let now = Instant::now();
        let mut logs = Vec::new();
        let ticket = {
            let mut st = self.lock();
            let mine = st.count(source);
            if mine >= self.limits.max_handshakes_per_source {
                let n = self.note(&st, Shed::SourceCap, source, remote, mine);
                logs.extend(st.note(n, now));
                None
            } else {
                if st.pending_total >= self.limits.max_handshakes {
                    let total = st.pending_total;
                    if let Some((victim, count, closed)) = st.shed_busiest() {
                        let mut n = self.note(&st, Shed::HandshakeBudget, victim, closed, count);
                        n.pending = total;
                        logs.extend(st.note(n, now));
                    }
                }
                st.next += 1;
                let id = st.next;
                let cancel = CancellationToken::new();
                let before = st.count(source);
                st.pending.entry(source).or_default().push_back(Pending {
                    id,
                    remote,
                    cancel: cancel.clone(),
                });
                st.pending_total += 1;
                st.set_count(source, before, before + 1);
                Some(PendingTicket {
                    admission: self.clone(),
                    source,
                    remote,
                    id,
                    cancel,
                })
            }
        };
        self.emit(&logs);
        ticket
    }

    /// Admits an established connection without a handshake stage (plain
    /// TCP), or refuses it (logged).
    pub fn establish(self: &Arc<Self>, remote: SocketAddr) -> Option<Permit> {
        self.take(remote, None)
    }

    /// Takes a place among the established connections for `identity`.
    fn take(
        self: &Arc<Self>,
        remote: SocketAddr,
        identity: Option<&PeerIdentity>,
    ) -> Option<Permit> {
        let source = SourceKey::of(remote.ip());
        let key = identity.map(|i| i.to_string());
        let mut logs = Vec::new();
        let permit = {
            let mut st = self.lock();
            let held = key
                .as_ref()
                .map_or(0, |k| st.per_identity.get(k).copied().unwrap_or(0));
            let from_source = st.per_source.get(&source).copied().unwrap_or(0);
            let refusal = if st.established >= self.limits.max_connections {
                Some((
                    Shed::ConnectionCap,
                    st.established,
                    self.limits.max_connections,
                ))
            } else if from_source >= self.limits.max_per_source {
                Some((
                    Shed::SourceConnectionCap,
                    from_source,
                    self.limits.max_per_source,
                ))
            } else if key.is_some() && held >= self.limits.max_per_identity {
                Some((Shed::IdentityCap, held, self.limits.max_per_identity))
            } else {
                None
            };
            match refusal {
                Some((reason, established, limit)) => {
                    let mut n = self.note(&st, reason, source, remote, st.count(source));
                    n.established = established;
                    n.limit = limit;
                    n.identity = key.unwrap_or_default();
                    logs.extend(st.note(n, Instant::now()));
                    None
                }
                None => {
                    st.established += 1;
                    *st.per_source.entry(source).or_insert(0) += 1;
                    if let Some(k) = &key {
                        *st.per_identity.entry(k.clone()).or_insert(0) += 1;
                    }
                    Some(Permit {
                        admission: self.clone(),
                        identity: key,
                        source,
                    })
                }
            }
        };
        self.emit(&logs);
        permit
    }

    /// Logs a handshake cut at its deadline.
    pub fn deadline_passed(&self, remote: SocketAddr, timeout: Duration) {
        let source = SourceKey::of(remote.ip());
        let logs: Vec<Note> = {
            let mut st = self.lock();
            let mut n = self.note(
                &st,
                Shed::HandshakeDeadline,
                source,
                remote,
                st.count(source),
            );
            n.timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            st.note(n, Instant::now()).into_iter().collect()
        };
        self.emit(&logs);
    }

    /// Logs the summaries of windows that are over; the listener calls it
    /// about once a second.
    pub fn flush_log(&self) {
        let logs = self.lock().flush(Instant::now());
        self.emit(&logs);
    }

    /// (pending handshakes, established connections), for tests and logs.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.pending_total, st.established)
    }

    fn note(
        &self,
        st: &State,
        reason: Shed,
        source: SourceKey,
        remote: SocketAddr,
        source_pending: usize,
    ) -> Note {
        let limit = match reason {
            Shed::SourceCap => self.limits.max_handshakes_per_source,
            Shed::HandshakeBudget | Shed::HandshakeDeadline => self.limits.max_handshakes,
            Shed::IdentityCap => self.limits.max_per_identity,
            Shed::ConnectionCap => self.limits.max_connections,
            Shed::SourceConnectionCap => self.limits.max_per_source,
        };
        Note {
            reason,
            source,
            remote,
            source_pending,
            pending: st.pending_total,
            established: st.established,
            limit,
            identity: String::new(),
            timeout_ms: 0,
            repeated: 0,
        }
    }

    fn emit(&self, notes: &[Note]) {
        for n in notes {
            warn!(
                role = %self.tag,
                reason = n.reason.label(),
                source = %n.source,
                remote = %n.remote,
                source_pending = n.source_pending,
                pending = n.pending,
                established = n.established,
                limit = n.limit,
                identity = %n.identity,
                timeout_ms = n.timeout_ms,
                repeated = n.repeated,
                "{}{}",
                n.reason.message(),
                if n.repeated > 0 { " (repeated)" } else { "" }
            );
        }
    }
}

/// A connection in its TLS handshake. Dropping it frees its place.
#[derive(Debug)]
pub struct PendingTicket {
    admission: Arc<Admission>,
    source: SourceKey,
    remote: SocketAddr,
    id: u64,
    cancel: CancellationToken,
}

impl PendingTicket {
    /// Cancelled when the admission sheds this handshake.
    pub fn shed(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The handshake succeeded: the connection leaves the handshake budget
    /// and takes a place among the established ones, counted for its
    /// identity (if it has one). `None` when it was shed meanwhile or a
    /// cap is reached (logged).
    pub fn establish(self, identity: Option<&PeerIdentity>) -> Option<Permit> {
        let still = self.admission.lock().remove(self.source, self.id);
        if !still || self.cancel.is_cancelled() {
            return None;
        }
        self.admission.take(self.remote, identity)
    }
}

impl Drop for PendingTicket {
    fn drop(&mut self) {
        self.admission.lock().remove(self.source, self.id);
    }
}

/// An established connection's place. Dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    identity: Option<String>,
    source: SourceKey,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.admission.lock();
        st.established = st.established.saturating_sub(1);
        if let Some(n) = st.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                st.per_source.remove(&self.source);
            }
        }
        if let Some(k) = &self.identity
            && let Some(n) = st.per_identity.get_mut(k)
        {
            *n -= 1;
            if *n == 0 {
                st.per_identity.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Side;

    const TAG: Tag = Tag::new("test", Side::Outside);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn id(name: &str) -> PeerIdentity {
        PeerIdentity {
            names: vec![name.into()],
            from_cn: false,
            subject: format!("CN={name}"),
            serial: "01".into(),
            issuer: "CN=ca".into(),
        }
    }

    fn limits(handshakes: usize, per_source: usize) -> Limits {
        Limits {
            max_connections: 10,
            max_per_identity: 2,
            max_handshakes: handshakes,
            max_handshakes_per_source: per_source,
            max_per_source: 10,
        }
    }

    #[test]
    fn a_source_at_its_cap_is_refused_others_are_not() {
        let a = Admission::new(TAG, limits(10, 2));
        let t1 = a.handshake(addr("192.0.2.1:1000")).unwrap();
        let _t2 = a.handshake(addr("192.0.2.1:1001")).unwrap();
        assert!(a.handshake(addr("192.0.2.1:1002")).is_none());
        assert!(a.handshake(addr("192.0.2.2:1000")).is_some());
        drop(t1);
        assert!(a.handshake(addr("192.0.2.1:1003")).is_some());
        assert!(!a.lock().log.is_empty(), "the refusal is noted for the log");
    }

    #[test]
    fn a_full_budget_sheds_the_busiest_sources_oldest() {
        let a = Admission::new(TAG, limits(4, 3));
        let busy: Vec<PendingTicket> = (0..3)
            .map(|p| {
                a.handshake(addr(&format!("192.0.2.1:{}", 1000 + p)))
                    .unwrap()
            })
            .collect();
        let other = a.handshake(addr("192.0.2.2:1000")).unwrap();
        assert_eq!(a.counts(), (4, 0));
        // A source with nothing pending gets in; the busy source's oldest goes.
        let partner = a.handshake(addr("198.51.100.7:5061")).unwrap();
        assert!(busy[0].shed().is_cancelled());
        assert!(!busy[1].shed().is_cancelled() && !busy[2].shed().is_cancelled());
        assert!(!other.shed().is_cancelled());
        assert_eq!(a.counts(), (4, 0));
        // Next the busy source again (2 pending against 1 each).
        let _more = a.handshake(addr("203.0.113.9:1")).unwrap();
        assert!(busy[1].shed().is_cancelled());
        assert!(!partner.shed().is_cancelled());
        // A shed handshake cannot be established any more.
        let mut busy = busy.into_iter();
        assert!(busy.next().unwrap().establish(None).is_none());
        assert!(partner.establish(Some(&id("sip.partner.test"))).is_some());
    }

    #[test]
    fn an_identity_at_its_cap_cannot_take_anothers_room() {
        let a = Admission::new(TAG, limits(10, 10));
        let est = |port: u16, who: &str| {
            a.handshake(SocketAddr::from(([192, 0, 2, 1], port)))
                .unwrap()
                .establish(Some(&id(who)))
        };
        let p1 = est(1, "sip.a.test").unwrap();
        let _p2 = est(2, "sip.a.test").unwrap();
        assert!(est(3, "sip.a.test").is_none());
        let _b = est(4, "sip.b.test").expect("another identity has room");
        assert_eq!(a.counts(), (0, 3));
        drop(p1);
        assert!(est(5, "sip.a.test").is_some());
    }

    #[test]
    fn the_listener_cap_holds_for_plain_connections() {
        let a = Admission::new(TAG, Limits::connections(2));
        let _a1 = a.establish(addr("192.0.2.1:1")).unwrap();
        let a2 = a.establish(addr("192.0.2.1:2")).unwrap();
        assert!(a.establish(addr("192.0.2.2:1")).is_none());
        drop(a2);
        assert!(a.establish(addr("192.0.2.2:1")).is_some());
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let k = |s: &str| SourceKey::of(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.1"), k("192.0.2.1"));
        assert_eq!(k("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn one_log_line_per_source_and_reason_per_second_then_a_summary() {
        let a = Admission::new(TAG, limits(10, 1));
        let _t = a.handshake(addr("192.0.2.1:1")).unwrap();
        for p in 2..12 {
            assert!(a.handshake(addr(&format!("192.0.2.1:{p}"))).is_none());
        }
        assert!(
            a.lock().flush(Instant::now()).is_empty(),
            "window still open"
        );
        let sums = a.lock().flush(Instant::now() + LOG_WINDOW);
        assert_eq!(sums.len(), 1);
        assert_eq!(sums[0].repeated, 9);
        assert_eq!(sums[0].reason, Shed::SourceCap);
        assert!(a.lock().log.is_empty());
    }

    #[test]
    fn a_source_at_its_connection_cap_is_refused_others_are_not() {
        let mut l = limits(10, 2);
        l.max_per_source = 2;
        let a = Admission::new(TAG, l);
        let p1 = a.establish(addr("192.0.2.1:1000")).unwrap();
        let _p2 = a.establish(addr("192.0.2.1:1001")).unwrap();
        assert!(a.establish(addr("192.0.2.1:1002")).is_none());
        assert!(a.establish(addr("192.0.2.2:1000")).is_some());
        drop(p1);
        assert!(a.establish(addr("192.0.2.1:1003")).is_some());
    }
}
