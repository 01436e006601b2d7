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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::net::UdpSocket;

    use super::*;
    use crate::response::ResponseBuilder;
    use crate::ua::Dialog;

    /// A UDP path for the tests.
    #[derive(Debug, Clone)]
    struct Udp(Arc<UdpSocket>, SocketAddr);

    impl Reliability for Udp {
        fn reliable(&self) -> bool {
            false
        }
    }

    impl Carrier for Udp {
        async fn send(&self, data: Bytes) {
            let _ = self.0.send_to(&data, self.1).await;
        }
    }

    fn timers() -> Timers {
        Timers {
            t1: Duration::from_millis(20),
            t2: Duration::from_millis(80),
            t4: Duration::from_millis(100),
            timer_c: Duration::from_millis(300),
        }
    }

    fn parse(b: &[u8]) -> SipMessage {
        let b = Bytes::copy_from_slice(b);
        let he = find_head_end(&b, 0).expect("a head");
        parse_framed(b.clone(), he, &Limits::default()).expect("parses")
    }

    /// Our socket, the peer's, the path to the peer, and a dialog to it.
    async fn setup() -> (Arc<UdpSocket>, UdpSocket, Udp, Dialog) {
        let ours = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = peer.local_addr().unwrap();
        let via = format!("SIP/2.0/UDP {}", ours.local_addr().unwrap());
        let d = Dialog::calling(
            "c1@test".into(),
            "<sip:a@test>;tag=a1".into(),
            &format!("sip:b@{to}"),
            via,
            "<sip:a@127.0.0.1>".into(),
        );
        (ours.clone(), peer, Udp(ours, to), d)
    }

    /// The next request the peer gets, within `wait`.
    async fn next(peer: &UdpSocket, wait: Duration) -> Option<SipMessage> {
        let mut b = vec![0u8; 8192];
        let (n, _) = tokio::time::timeout(wait, peer.recv_from(&mut b))
            .await
            .ok()?
            .ok()?;
        Some(parse(&b[..n]))
    }

    fn answer(req: &SipMessage, status: u16) -> SipMessage {
        parse(&ResponseBuilder::new(req, status).to_tag("b1").build())
    }

    #[tokio::test]
    async fn a_non_invite_retransmits_after_a_provisional_answer() {
        let (_s, peer, path, d) = setup().await;
        let agent: Arc<Agent<Udp>> = Agent::new(timers());
        let bye = d.request("BYE", &[], None);
        let a2 = agent.clone();
        let waiting = tokio::spawn(async move { a2.request(&path, bye.data, None, None).await });
        let first = next(&peer, Duration::from_secs(1)).await.unwrap();
        assert!(agent.on_response(answer(&first, 100)));
        // Timer E goes on at T2 in Proceeding (RFC 3261 §17.1.2.2): past
        // the copies already sent, more come.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while next(&peer, Duration::from_millis(1)).await.is_some() {}
        let again = next(&peer, Duration::from_millis(500)).await.unwrap();
        assert_eq!(again.method(), Some(&Method::Bye));
        assert!(agent.on_response(answer(&first, 200)));
        let done = waiting.await.unwrap().unwrap();
        assert_eq!(done.response.status(), Some(200));
    }

    #[tokio::test]
    async fn a_request_nobody_answers_times_out() {
        let (_s, _peer, path, d) = setup().await;
        let agent: Arc<Agent<Udp>> = Agent::new(timers());
        let r = d.request("OPTIONS", &[], None);
        let got = agent.request(&path, r.data, None, None).await;
        assert_eq!(got.err(), Some(TxnError::Timeout));
        assert!(agent.is_empty());
    }

    #[tokio::test]
    async fn an_error_answer_to_an_invite_is_acked_again_on_its_retransmission() {
        let (_s, peer, path, d) = setup().await;
        let agent: Arc<Agent<Udp>> = Agent::new(timers());
        let inv = d.request("INVITE", &[], Some(("application/sdp", b"v=0\r\n")));
        let a2 = agent.clone();
        let waiting = tokio::spawn(async move { a2.request(&path, inv.data, None, None).await });
        let invite = next(&peer, Duration::from_secs(1)).await.unwrap();
        let busy = answer(&invite, 486);
        assert!(agent.on_response(busy.clone()));
        assert_eq!(waiting.await.unwrap().unwrap().response.status(), Some(486));
        let ack = next(&peer, Duration::from_secs(1)).await.unwrap();
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(
            ack.top_via().unwrap().branch(),
            invite.top_via().unwrap().branch()
        );
        // The 486 again (our ACK was lost): the same ACK again.
        assert!(agent.on_response(busy));
        let ack2 = next(&peer, Duration::from_secs(1)).await.unwrap();
        assert_eq!(ack2.method(), Some(&Method::Ack));
    }

    #[tokio::test]
    async fn an_aborted_ringing_invite_is_cancelled_and_its_487_returned() {
        let (_s, peer, path, d) = setup().await;
        let agent: Arc<Agent<Udp>> = Agent::new(timers());
        let inv = d.request("INVITE", &[], None);
        let (prov_tx, mut prov_rx) = mpsc::unbounded_channel();
        let abort = CancellationToken::new();
        let (a2, ab2) = (agent.clone(), abort.clone());
        let waiting = tokio::spawn(async move {
            a2.request(&path, inv.data, Some(&prov_tx), Some(&ab2))
                .await
        });
        let invite = next(&peer, Duration::from_secs(1)).await.unwrap();
        assert!(agent.on_response(answer(&invite, 180)));
        assert_eq!(prov_rx.recv().await.unwrap().status(), Some(180));
        abort.cancel();
        let cancel = next(&peer, Duration::from_secs(1)).await.unwrap();
        assert_eq!(cancel.method(), Some(&Method::Cancel));
        // The CANCEL is retransmitted until answered: a transaction of its own.
        let cancel2 = next(&peer, Duration::from_secs(1)).await.unwrap();
        assert_eq!(cancel2.method(), Some(&Method::Cancel));
        assert!(agent.on_response(answer(&cancel, 200)));
        assert!(agent.on_response(answer(&invite, 487)));
        let got = waiting.await.unwrap().unwrap();
        assert_eq!(got.response.status(), Some(487));
    }

    #[tokio::test]
    async fn a_2xx_gets_its_ack_again_when_retransmitted() {
        let (_s, peer, path, d) = setup().await;
        let agent: Arc<Agent<Udp>> = Agent::new(timers());
        let inv = d.request("INVITE", &[], None);
        let (a2, p2) = (agent.clone(), path.clone());
        let waiting = tokio::spawn(async move { a2.request(&p2, inv.data, None, None).await });
        let invite = next(&peer, Duration::from_secs(1)).await.unwrap();
        let ok = parse(
            &ResponseBuilder::new(&invite, 200)
                .to_tag("b1")
                .header("Contact", "<sip:b@192.0.2.9>")
                .header("Record-Route", "<sip:p1;lr>")
                .header("Record-Route", "<sip:p2;lr>")
                .build(),
        );
        assert!(agent.on_response(ok.clone()));
        let answered = waiting.await.unwrap().unwrap();
        d.confirm(&answered.response);
        agent.ack(&path, &answered, d.ack(inv.cseq)).await;
        let ack = next(&peer, Duration::from_secs(1)).await.unwrap();
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.request_uri_str(), Some("sip:b@192.0.2.9"));
        assert_ne!(
            ack.top_via().unwrap().branch(),
            invite.top_via().unwrap().branch()
        );
        let text = String::from_utf8_lossy(ack.raw()).to_string();
        assert!(text.contains(";tag=b1\r\n"), "{text}");
        // The route set is the Record-Route reversed (RFC 3261 §12.1.2).
        let routes: Vec<&str> = ack.values(crate::headers::HeaderName::Route).collect();
        assert_eq!(routes, ["<sip:p2;lr>", "<sip:p1;lr>"], "{text}");
        assert!(agent.on_response(ok));
        let again = next(&peer, Duration::from_secs(1)).await.unwrap();
        assert_eq!(again.method(), Some(&Method::Ack));
    }
}
