//! Client transactions of a user agent (RFC 3261 §17.1): a request sent on
//! a path of the UA's choosing, its provisional and final answers, CANCEL
//! on request or at Timer C, the ACK of an error answer, and the ACK of a
//! 2xx sent again when that 2xx is retransmitted.
//!
//! The timers and states are the proxy's `ClientTxn`; this module only
//! carries out what it returns, from the task that awaits the answer (and
//! from a task of its own while a finished transaction absorbs
//! retransmissions). Never builds the request itself, never decides what
//! an answer means.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::message::{Method, SipMessage};
use crate::parse::{Limits, find_head_end, parse_framed};
use crate::proxy::topology::ResponseEdit;
use crate::proxy::txn::{
    AckBuilder, Action, ClientSpec, ClientTxn, Reliability, Step, Timers, Upstream, build_ack,
    build_cancel, client_key,
};

/// How a UA's request travels (a UDP destination, a connection, a pooled
/// connection opened again when it closed): the UA's own path type.
pub trait Carrier: Reliability + Clone + Send + Sync + 'static {
    /// Sends bytes on the path; failures are the carrier's to report.
    fn send(&self, data: Bytes) -> impl Future<Output = ()> + Send;
}

/// Why a request got no final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("the request cannot be parsed")]
    Unparsable,
    #[error("the request has no branch")]
    NoBranch,
    #[error("the transaction was dropped")]
    Dropped,
    #[error("no answer in time")]
    Timeout,
}

/// A final answer to a request of ours.
#[derive(Debug)]
pub struct Answered {
    pub response: SipMessage,
    /// The transaction's key (its branch and method).
    pub key: String,
}

/// A transaction in the table: its state machine, where its responses go,
/// and the ACK of a 2xx (an INVITE's) to repeat.
struct Entry<C> {
    txn: Arc<ClientTxn<C>>,
    responses: mpsc::UnboundedSender<SipMessage>,
    ack: Mutex<Option<(C, Bytes)>>,
}

/// Removes a transaction from the table when dropped, if still armed.
struct Unlist<'a, C> {
    txns: &'a Mutex<HashMap<String, Arc<Entry<C>>>>,
    key: Option<String>,
}

impl<C> Drop for Unlist<'_, C> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            lock(self.txns).remove(&k);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The client transactions of one user agent.
pub struct Agent<C> {
    me: Weak<Agent<C>>,
    timers: Timers,
    txns: Mutex<HashMap<String, Arc<Entry<C>>>>,
}

impl<C> std::fmt::Debug for Agent<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

/// What a driver loop is waiting for besides responses.
struct Drive<'a> {
    /// The final answer came: retransmitted 2xx get our ACK again.
    lingering: bool,
    provisional: Option<&'a mpsc::UnboundedSender<SipMessage>>,
    abort: Option<&'a CancellationToken>,
    cancel: Option<Bytes>,
}

impl<C: Carrier> Agent<C> {
    /// `timers.timer_c` is how long an INVITE may ring before it is
    /// CANCELled.
    pub fn new(timers: Timers) -> Arc<Agent<C>> {
        Arc::new_cyclic(|me| Agent {
            me: me.clone(),
            timers,
            txns: Mutex::new(HashMap::new()),
        })
    }

    /// Transactions in the table (waiting, or absorbing retransmissions).
    pub fn len(&self) -> usize {
        lock(&self.txns).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A response received: to its transaction (matched on the top Via's
    /// branch and the CSeq method, RFC 3261 §17.1.3). False when it
    /// matches none.
    pub fn on_response(&self, resp: SipMessage) -> bool {
        let key = resp
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .zip(resp.cseq().map(|c| c.method.to_string()))
            .map(|(b, m)| client_key(&b, &m));
        let entry = key.and_then(|k| lock(&self.txns).get(&k).cloned());
        match entry {
            Some(e) => e.responses.send(resp).is_ok(),
            None => false,
        }
    }

    /// Sends `data` (a whole request with our Via and branch) on `path`
    /// and waits for its final answer; provisional answers go to
    /// `provisional`. An INVITE is CANCELled when `abort` fires or at Timer
    /// C, and its final answer (a 487, or a 2xx that crossed the CANCEL) is
    /// still awaited and returned. An error answer to an INVITE is ACKed
    /// here; a 2xx is the caller's to ACK with [`Agent::ack`].
    pub async fn request(
        &self,
        path: &C,
        data: Bytes,
        provisional: Option<&mpsc::UnboundedSender<SipMessage>>,
        abort: Option<&CancellationToken>,
    ) -> Result<Answered, TxnError> {
        let msg = find_head_end(&data, 0)
            .and_then(|he| parse_framed(data.clone(), he, &Limits::default()).ok())
            .ok_or(TxnError::Unparsable)?;
        let method = msg.method().cloned().ok_or(TxnError::Unparsable)?;
        let branch = msg
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .ok_or(TxnError::NoBranch)?;
        let key = client_key(&branch, method.as_str());
        let invite = method == Method::Invite;
        let (cancel, ack_for) = if invite {
            let cancel = build_cancel(&msg);
            let inv = msg.clone();
            let ack: AckBuilder =
                Box::new(move |resp: &SipMessage| build_ack(&inv, resp).unwrap_or_default());
            (cancel, Some(ack))
        } else {
            (None, None)
        };
        let txn = ClientTxn::new(ClientSpec {
            key: key.clone(),
            method,
            request: data.clone(),
            cancel: cancel.clone(),
            ack_for,
            path: path.clone(),
            timers: self.timers,
            // A UA's transaction: every action is carried out here.
            upstream: Upstream::Local(Mutex::new(None)),
            received: msg,
            response_edit: ResponseEdit::Nothing,
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let entry = Arc::new(Entry {
            txn: txn.clone(),
            responses: tx,
            ack: Mutex::new(None),
        });
        lock(&self.txns).insert(key.clone(), entry.clone());
        // Whatever way this future ends (even dropped), the entry goes,
        // unless the finished transaction goes on absorbing retransmissions.
        let mut unlist = Unlist {
            txns: &self.txns,
            key: Some(key.clone()),
        };
        path.send(data).await;
        let step = txn.on_timer(Instant::now());
        let drive = Drive {
            lingering: false,
            provisional,
            abort,
            cancel,
        };
        let outcome = self.drive(&entry, &mut rx, step, drive).await;
        match outcome {
            (Some(Ok(response)), Some(next)) => {
                // Finished: absorb retransmissions of the final answer.
                if let Some(me) = self.me.upgrade() {
                    unlist.key = None;
                    tokio::spawn(async move {
                        let step = Step {
                            actions: Vec::new(),
                            next: Some(next),
                        };
                        let drive = Drive {
                            lingering: true,
                            provisional: None,
                            abort: None,
                            cancel: None,
                        };
                        me.drive(&entry, &mut rx, step, drive).await;
                    });
                }
                Ok(Answered { response, key })
            }
            (result, _) => match result {
                Some(Ok(response)) => Ok(Answered { response, key }),
                Some(Err(e)) => Err(e),
                None => Err(TxnError::Dropped),
            },
        }
    }

    /// Sends the ACK of a 2xx to our INVITE (`answered`) and keeps it, to
    /// send again when the 2xx is retransmitted (RFC 3261 §13.2.2.4).
    pub async fn ack(&self, path: &C, answered: &Answered, ack: Bytes) {
        path.send(ack.clone()).await;
        if let Some(e) = lock(&self.txns).get(&answered.key) {
            *lock(&e.ack) = Some((path.clone(), ack));
        }
    }

    /// Runs the CANCEL `data` of one of our INVITEs as its own
    /// transaction (boxed: a transaction started from inside another).
    fn cancel(me: Arc<Self>, path: C, data: Bytes) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _ = me.request(&path, data, None, None).await;
        })
    }

    /// Carries out steps until a final answer (returned with the next
    /// wake-up, if the transaction goes on) or the end of the transaction.
    async fn drive(
        &self,
        entry: &Entry<C>,
        rx: &mut mpsc::UnboundedReceiver<SipMessage>,
        mut step: Step,
        drive: Drive<'_>,
    ) -> (Option<Result<SipMessage, TxnError>>, Option<Instant>) {
        let never = CancellationToken::new();
        let abort = drive.abort.unwrap_or(&never);
        let mut aborted = false;
        let txn = &entry.txn;
        loop {
            let mut result = None;
            for a in std::mem::take(&mut step.actions) {
                match a {
                    Action::Downstream(d) if drive.cancel.as_ref() == Some(&d) => {
                        // The CANCEL is a transaction of its own (§9.1).
                        if let Some(me) = self.me.upgrade() {
                            tokio::spawn(Self::cancel(me, txn.path.clone(), d));
                        }
                    }
                    Action::Downstream(d) => txn.path.send(d).await,
                    Action::Upstream(resp) if resp.status().is_some_and(|s| s >= 200) => {
                        if drive.lingering {
                            // A 2xx retransmitted after the final answer: our ACK again.
                            let again = lock(&entry.ack).clone();
                            if let Some((path, ack)) = again {
                                path.send(ack).await;
                            }
                        } else {
                            result = Some(Ok(resp));
                        }
                    }
                    Action::Upstream(resp) => {
                        if let Some(p) = drive.provisional {
                            let _ = p.send(resp);
                        }
                    }
                    Action::Timeout(..) => result = Some(Err(TxnError::Timeout)),
                }
            }
            if result.is_some() || step.next.is_none() {
                if step.next.is_none() {
                    lock(&self.txns).remove(&txn.key);
                }
                return (result, step.next);
            }
            let next = step.next.unwrap_or_else(Instant::now);
            step = tokio::select! {
                m = rx.recv() => match m {
                    Some(resp) => txn.on_response(resp, Instant::now()),
                    None => return (None, None),
                },
                _ = tokio::time::sleep_until(next) => txn.on_timer(Instant::now()),
                _ = abort.cancelled(), if txn.invite && !aborted => {
                    aborted = true;
                    txn.on_cancel(Instant::now())
                }
            };
        }
    }
}
