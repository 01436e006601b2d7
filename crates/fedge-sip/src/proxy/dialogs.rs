//! The dialogs this proxy knows: those whose dialog-creating request it
//! record-routed, by Call-ID and the initiator's tag, so that "in dialog"
//! is the edge's own knowledge and never the sender's say-so (a To tag
//! anyone can write).
//!
//! Each dialog also remembers the outside peer it was set up with (the
//! router's opaque partner name, [`super::Forward::peer`]): an in-dialog
//! request from another outside peer is foreign (a partner who learnt the
//! Call-ID and tags cannot hang up or re-point another partner's call).
//!
//! Owns a bounded table: at most `cap` entries, each forgotten after
//! `idle` without an in-dialog request. When full, expired entries go
//! first, then the least recently used one. Never decides what an
//! in-dialog request may do; the router does, with [`super::RequestInfo`].
//!
//! Beside it, the calls ([`Calls`]): the INVITE dialogs among them, from
//! the INVITE forwarded to the far side's final answer to a BYE forwarded
//! in the dialog (or a failure answer on the INVITE's own transaction), so
//! that a draining node knows when its last call has ended. Subscriptions
//! are not counted (a drain does not wait for them).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Default upper bound on the dialogs remembered.
pub const DEFAULT_CAP: usize = 100_000;

/// Default time a dialog is remembered after its last request.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(12 * 3600);

/// What the table says of an in-dialog request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// No dialog this proxy record-routed has this Call-ID and tags.
    Unknown,
    /// A known dialog, and the sender may speak in it.
    Member,
    /// A known dialog set up by another outside peer.
    Foreign,
}

/// One remembered dialog: when it was last used, and the outside peer it
/// was set up with (none when the router named none).
#[derive(Debug)]
struct Entry {
    used: Instant,
    owner: Option<String>,
}

/// Dialogs by (Call-ID, initiator's tag), with when each was last used.
#[derive(Debug)]
pub struct Dialogs {
    map: Mutex<HashMap<(String, String), Entry>>,
    cap: usize,
    idle: Duration,
    /// The calls among them.
    pub calls: Calls,
}

impl Default for Dialogs {
    fn default() -> Dialogs {
        Dialogs::new(DEFAULT_CAP, DEFAULT_IDLE)
    }
}

impl Dialogs {
    pub fn new(cap: usize, idle: Duration) -> Dialogs {
        Dialogs {
            map: Mutex::new(HashMap::new()),
            cap: cap.max(1),
            idle,
            calls: Calls::new(cap, idle),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a dialog this proxy record-routed: its Call-ID, the From
    /// tag of the request that created it, and the outside peer it was set
    /// up with (the sender or the receiver; `None` for none).
    pub fn record(&self, call_id: &str, from_tag: &str, owner: Option<&str>, now: Instant) {
        let mut map = self.lock();
        if map.len() >= self.cap {
            let idle = self.idle;
            map.retain(|_, e| now.saturating_duration_since(e.used) < idle);
            if map.len() >= self.cap
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let entry = Entry {
            used: now,
            owner: owner.map(str::to_string),
        };
        map.insert((call_id.to_string(), from_tag.to_string()), entry);
    }

    /// Whether a request with this Call-ID and tags belongs to a dialog
    /// this proxy record-routed (either side may send it: the initiator's
    /// tag is its From tag or its To tag), and whether `sender` (the peer
    /// an outside request comes from; `None` from inside) may speak in it.
    /// A member refreshes the dialog.
    pub fn membership(
        &self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sender: Option<&str>,
        now: Instant,
    ) -> Membership {
        let mut map = self.lock();
        for tag in [from_tag, to_tag] {
            if let Some(e) = map.get_mut(&(call_id.to_string(), tag.to_string())) {
                if now.saturating_duration_since(e.used) >= self.idle {
                    return Membership::Unknown;
                }
                if let (Some(owner), Some(sender)) = (&e.owner, sender)
                    && owner != sender
                {
                    return Membership::Foreign;
                }
                e.used = now;
                self.calls.touch(call_id, tag, now);
                return Membership::Member;
            }
        }
        Membership::Unknown
    }

    /// True when a live dialog with this Call-ID and initiator's tag was
    /// set up with an outside peer other than `peer`.
    pub fn held_by_other(
        &self,
        call_id: &str,
        tag: &str,
        peer: Option<&str>,
        now: Instant,
    ) -> bool {
        let map = self.lock();
        map.get(&(call_id.to_string(), tag.to_string()))
            .is_some_and(|e| {
                now.saturating_duration_since(e.used) < self.idle
                    && e.owner.is_some()
                    && e.owner.as_deref() != peer
            })
    }

    /// How many dialogs are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a call not yet answered is counted at most: longer than any
/// INVITE transaction (Timer C, 181 s by default, then Timer B).
pub const EARLY_LIMIT: Duration = Duration::from_secs(300);

/// One call: when it was offered (or last refreshed, once answered),
/// whether a 2xx answered it, and the server transaction of the INVITE
/// that offered it (only that transaction's failure ends it).
#[derive(Debug, Clone)]
struct Call {
    since: Instant,
    confirmed: bool,
    txn: String,
}

/// The INVITE dialogs this proxy record-routed, by (Call-ID, the
/// initiator's tag), until they end: the final answer from the far side
/// (or the timeout) of a BYE forwarded in the dialog, whatever its status
/// (RFC 5057 §5.1), or a failure answer on the transaction of the INVITE
/// that offered it, before any 2xx. Never from a refusal of another
/// request with the same identifiers (a rate-limited BYE, a foreign
/// peer's BYE, a new INVITE reusing the Call-ID and From tag): the proxy
/// only reports the answers above. A call nobody hangs up is forgotten
/// after the table's `idle` without an in-dialog request (as the dialog
/// is), one never answered after [`EARLY_LIMIT`]. Bounded like
/// [`Dialogs`].
#[derive(Debug)]
pub struct Calls {
    map: Mutex<HashMap<(String, String), Call>>,
    cap: usize,
    idle: Duration,
}

impl Calls {
    pub fn new(cap: usize, idle: Duration) -> Calls {
        Calls {
            map: Mutex::new(HashMap::new()),
            cap: cap.max(1),
            idle,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Call>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn prune(&self, map: &mut HashMap<(String, String), Call>, now: Instant) {
        let idle = self.idle;
        map.retain(|_, c| {
            let age = now.saturating_duration_since(c.since);
            age < if c.confirmed { idle } else { EARLY_LIMIT }
        });
    }

    /// An initial INVITE with this Call-ID and From tag was forwarded, on
    /// the server transaction `txn`. A call already counted under these
    /// identifiers keeps its own transaction.
    pub fn offered(&self, call_id: &str, from_tag: &str, txn: &str, now: Instant) {
        let mut map = self.lock();
        if map.len() >= self.cap {
            self.prune(&mut map, now);
            if map.len() >= self.cap
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, c)| c.since)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.entry((call_id.to_string(), from_tag.to_string()))
            .or_insert(Call {
                since: now,
                confirmed: false,
                txn: txn.to_string(),
            });
    }

    /// A final answer `status` to an INVITE with this Call-ID and From tag
    /// went upstream on the server transaction `txn`: a 2xx confirms the
    /// call; a failure ends it only on the transaction that offered it and
    /// before any 2xx (a re-INVITE's failure, or a refusal of another
    /// INVITE reusing the identifiers, ends nothing).
    pub fn invite_answered(&self, call_id: &str, from_tag: &str, txn: &str, status: u16) {
        if status < 200 {
            return;
        }
        let key = (call_id.to_string(), from_tag.to_string());
        let mut map = self.lock();
        if (200..300).contains(&status) {
            if let Some(c) = map.get_mut(&key) {
                c.confirmed = true;
            }
        } else if map.get(&key).is_some_and(|c| !c.confirmed && c.txn == txn) {
            map.remove(&key);
        }
    }

    /// A BYE forwarded in the dialog with these identifiers got its final
    /// answer from the far side (or none came): the call has ended.
    pub fn bye_answered(&self, call_id: &str, tags: (&str, &str)) {
        let (from_tag, to_tag) = tags;
        let mut map = self.lock();
        map.remove(&(call_id.to_string(), from_tag.to_string()));
        map.remove(&(call_id.to_string(), to_tag.to_string()));
    }

    /// An in-dialog request of an answered call: it is remembered `idle`
    /// from now, as its dialog is.
    fn touch(&self, call_id: &str, tag: &str, now: Instant) {
        if let Some(c) = self.lock().get_mut(&(call_id.to_string(), tag.to_string()))
            && c.confirmed
        {
            c.since = now;
        }
    }

    /// The calls up (or ringing), after forgetting stale ones.
    pub fn count(&self, now: Instant) -> usize {
        let mut map = self.lock();
        self.prune(&mut map, now);
        map.len()
    }

    /// Up to `n` Call-IDs of the calls up, with whether each was answered
    /// (for the log of a drain that ran out of time).
    pub fn open(&self, n: usize) -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = self
            .lock()
            .iter()
            .map(|((id, _), c)| (id.clone(), c.confirmed))
            .collect();
        v.sort();
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_lasts_from_its_invite_to_the_answer_of_its_bye() {
        let now = Instant::now();
        let c = Calls::new(8, Duration::from_secs(100));
        c.offered("c1", "a", "t1", now);
        c.offered("c2", "x", "t2", now);
        c.offered("c3", "p", "t3", now);
        assert_eq!(c.count(now), 3);
        c.invite_answered("c1", "a", "t1", 180);
        c.invite_answered("c1", "a", "t1", 200);
        c.invite_answered("c2", "x", "t2", 486);
        assert_eq!(c.count(now), 2, "a 486 to the INVITE ends its call");
        c.invite_answered("c1", "a", "t9", 491);
        assert_eq!(c.count(now), 2, "a refused re-INVITE ends no call");
        // The callee hangs up: its BYE carries the tags the other way round.
        c.bye_answered("c1", ("b", "a"));
        assert_eq!(c.count(now), 1, "a forwarded BYE's answer ends its call");
        assert_eq!(c.open(5), vec![("c3".to_string(), false)]);
        assert_eq!(
            c.count(now + EARLY_LIMIT),
            0,
            "a call never answered is forgotten"
        );
    }

    #[test]
    fn another_transaction_with_the_ids_ends_no_call() {
        let now = Instant::now();
        let c = Calls::new(8, Duration::from_secs(100));
        // Ringing: a new INVITE reusing its Call-ID and From tag (another
        // branch, so another server transaction) is refused 503 (a drain)
        // or 482: the call rings on.
        c.offered("c1", "a", "t1", now);
        c.offered("c1", "a", "t2", now);
        c.invite_answered("c1", "a", "t2", 503);
        c.invite_answered("c1", "a", "t2", 482);
        assert_eq!(c.count(now), 1, "a reused-ID INVITE's refusal");
        // Its own transaction's failure does end it.
        c.invite_answered("c1", "a", "t1", 487);
        assert_eq!(c.count(now), 0);
        // Answered: only the BYE's answer from the far side ends it.
        c.offered("c2", "x", "t3", now);
        c.invite_answered("c2", "x", "t3", 200);
        c.invite_answered("c2", "x", "t3", 408);
        assert_eq!(c.count(now), 1, "a failure after the 2xx ends nothing");
        c.bye_answered("c2", ("y", "z"));
        assert_eq!(c.count(now), 1, "a BYE of another dialog");
        c.bye_answered("c2", ("y", "x"));
        assert_eq!(c.count(now), 0);
    }

    #[test]
    fn an_answered_call_lives_as_long_as_its_dialog() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(100);
        let d = Dialogs::new(8, idle);
        d.record("c1", "a", None, t0);
        d.calls.offered("c1", "a", "t1", t0);
        d.calls.invite_answered("c1", "a", "t1", 200);
        let later = t0 + Duration::from_secs(90);
        assert_eq!(
            d.membership("c1", "b", "a", None, later),
            Membership::Member
        );
        assert_eq!(
            d.calls.count(t0 + Duration::from_secs(150)),
            1,
            "a re-INVITE at 90 s keeps it"
        );
        assert_eq!(d.calls.count(later + idle), 0, "idle since: forgotten");
    }

    #[test]
    fn known_by_either_tag_bounded_and_forgotten_when_idle() {
        let now = Instant::now();
        let d = Dialogs::new(2, Duration::from_secs(10));
        d.record("c1", "a", None, now);
        assert!(d.membership("c1", "a", "b", None, now) == Membership::Member);
        assert!(
            d.membership("c1", "b", "a", None, now) == Membership::Member,
            "the other side's request"
        );
        assert!(
            d.membership("c1", "x", "y", None, now) != Membership::Member,
            "tags the edge never saw"
        );
        assert!(
            d.membership("c2", "a", "b", None, now) != Membership::Member,
            "another Call-ID"
        );
        d.record("c2", "a", None, now + Duration::from_secs(1));
        d.record("c3", "a", None, now + Duration::from_secs(2));
        assert_eq!(d.len(), 2, "the cap holds");
        let later = now + Duration::from_secs(2);
        assert_ne!(
            d.membership("c1", "a", "b", None, later),
            Membership::Member
        );
        let later = now + Duration::from_secs(20);
        assert_ne!(
            d.membership("c3", "a", "b", None, later),
            Membership::Member
        );
    }

    #[test]
    fn a_dialog_belongs_to_the_outside_peer_it_was_set_up_with() {
        let now = Instant::now();
        let d = Dialogs::new(8, Duration::from_secs(10));
        d.record("c1", "x", Some("a"), now);
        assert_eq!(
            d.membership("c1", "x", "y", Some("a"), now),
            Membership::Member
        );
        assert_eq!(
            d.membership("c1", "y", "x", None, now),
            Membership::Member,
            "from inside"
        );
        assert_eq!(
            d.membership("c1", "x", "y", Some("b"), now),
            Membership::Foreign
        );
        assert_eq!(
            d.membership("c1", "y", "x", Some(""), now),
            Membership::Foreign
        );
        assert_eq!(
            d.membership("c9", "x", "y", Some("b"), now),
            Membership::Unknown
        );
        d.record("c2", "x", None, now);
        assert_eq!(
            d.membership("c2", "x", "y", Some("b"), now),
            Membership::Member,
            "no peer named: anyone, as before"
        );
    }
}
