//! The gateway's client transactions: a request sent on a leg and its
//! answers, with retransmission over UDP (RFC 3261 Timers A/B and E/F),
//! Timer C and CANCEL for INVITEs, and the ACK of final answers kept for
//! their retransmissions.
//!
//! Matches responses to the requests waiting for them; never decides what
//! a call does with an answer.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::leg::{Leg, Path};
use super::{Gateway, lock};
use crate::sip::message::SipMessage;
use crate::sip::parse::{Limits, find_head_end, parse_framed};
use crate::sip::response::quote;

/// Why a request of ours got no final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum TxnError {
    #[error("the transaction was dropped")]
    Dropped,
    #[error("no answer in time")]
    Timeout,
}

/// Removes a transaction's entry from `pending` when dropped.
struct Unpend<'a>(
    &'a Mutex<HashMap<String, mpsc::UnboundedSender<SipMessage>>>,
    String,
);

impl Drop for Unpend<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(&self.1);
    }
}

impl Gateway {
    /// Sends a request and waits for its final answer, retransmitting over
    /// UDP (RFC 3261 Timers A/B and E/F); provisional answers go to `prov`.
    /// An INVITE is CANCELled when `abort` fires or when it has rung for
    /// the ring timeout (Timer C), and its final answer (a 487, or a 2xx
    /// that crossed the CANCEL) is still awaited and returned, for the
    /// caller to ACK (and BYE).
    pub(super) async fn transact(
        &self,
        path: &Path,
        data: Bytes,
        key: &str,
        invite: bool,
        prov: Option<&mpsc::UnboundedSender<SipMessage>>,
        abort: Option<&CancellationToken>,
    ) -> Result<SipMessage, TxnError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(key.to_string(), tx);
        let _pending = Unpend(&self.pending, key.to_string());
        self.send(path, data.clone()).await;
        let t1 = self.cfg.t1;
        let mut every = t1;
        let mut next = tokio::time::Instant::now() + every;
        let mut deadline = tokio::time::Instant::now() + t1 * 64;
        let mut heard = false;
        let mut cancelled = false;
        let never = CancellationToken::new();
        let abort = abort.unwrap_or(&never);
        loop {
            let retransmit = !path.reliable() && !heard;
            tokio::select! {
                m = rx.recv() => match m {
                    Some(resp) if resp.status().is_some_and(|s| s >= 200) => return Ok(resp),
                    Some(resp) => {
                        heard = true;
                        if invite && !cancelled {
                            deadline = tokio::time::Instant::now() + self.cfg.ring_timeout;
                        }
                        if let Some(p) = prov {
                            let _ = p.send(resp);
                        }
                    }
                    None => return Err(TxnError::Dropped),
                },
                _ = tokio::time::sleep_until(next), if retransmit => {
                    self.send(path, data.clone()).await;
                    every = if invite { every * 2 } else { (every * 2).min(self.cfg.t2) };
                    next += every;
                }
                _ = abort.cancelled(), if invite && !cancelled => {
                    cancelled = true;
                    self.cancel(path, &data);
                    deadline = tokio::time::Instant::now() + t1 * 64;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if invite && heard && !cancelled {
                        // Rang too long (Timer C): CANCEL, then wait for the 487.
                        cancelled = true;
                        self.cancel(path, &data);
                        deadline = tokio::time::Instant::now() + t1 * 64;
                        continue;
                    }
                    return Err(TxnError::Timeout);
                }
            }
        }
    }

    /// Sends the CANCEL of an INVITE we sent, as its own transaction.
    fn cancel(&self, path: &Path, invite: &Bytes) {
        let Some(inv) = parse(invite) else { return };
        let Some(c) = crate::sip::proxy::txn::build_cancel(&inv) else {
            return;
        };
        let (Some(call_id), Some(cseq)) = (inv.call_id(), inv.cseq()) else {
            return;
        };
        let key = format!("{call_id}|{}|CANCEL", cseq.seq);
        if let Some(me) = self.me.upgrade() {
            let path = path.clone();
            tokio::spawn(async move {
                let _ = me.transact(&path, c, &key, false, None, None).await;
            });
        }
    }

    /// Sends the ACK for a final answer to our INVITE `key` and keeps it for
    /// that answer's retransmissions.
    pub(super) async fn ack(&self, key: &str, path: &Path, ack: Bytes) {
        self.send(path, ack.clone()).await;
        lock(&self.acks).insert(
            key.to_string(),
            (path.clone(), ack, tokio::time::Instant::now()),
        );
    }

    /// The ACK of a non-2xx final answer `resp` to our INVITE `invite`
    /// (the client transaction's own, RFC 3261 §17.1.1.3).
    pub(super) async fn ack_error(
        &self,
        key: &str,
        path: &Path,
        invite: &Bytes,
        resp: &SipMessage,
    ) {
        if let Some(ack) = parse(invite)
            .as_ref()
            .and_then(|inv| crate::sip::proxy::txn::build_ack(inv, resp))
        {
            self.ack(key, path, ack).await;
        }
    }

    /// Sends a BYE on `leg` and waits for its answer.
    pub(super) async fn bye(&self, leg: &Leg, reason: &str) {
        let (data, key, _) = leg.request(
            "BYE",
            &[("Reason".into(), format!("SIP;text={}", quote(reason)))],
            None,
        );
        let _ = self
            .transact(&leg.path, data, &key, false, None, None)
            .await;
    }

    /// A response: to the transaction waiting for it, or, for a final
    /// answer already ACKed, the same ACK again.
    pub(super) async fn on_response(&self, msg: SipMessage) {
        let (Some(call_id), Some(cseq)) = (msg.call_id(), msg.cseq()) else {
            return;
        };
        let key = format!("{call_id}|{}|{}", cseq.seq, cseq.method);
        let tx = lock(&self.pending).get(&key).cloned();
        if let Some(tx) = tx {
            let _ = tx.send(msg);
            return;
        }
        // A retransmitted final answer to an INVITE already answered: the
        // same ACK again.
        if msg.status().is_some_and(|s| s >= 200) {
            let again = lock(&self.acks)
                .get(&key)
                .map(|(p, a, _)| (p.clone(), a.clone()));
            if let Some((path, ack)) = again {
                self.send(&path, ack).await;
            }
        }
    }
}

fn parse(data: &Bytes) -> Option<SipMessage> {
    let he = find_head_end(data, 0)?;
    parse_framed(data.clone(), he, &Limits::default()).ok()
}
