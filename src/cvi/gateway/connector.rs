//! The connector leg: where the connector is for a meeting, the gateway's
//! INVITE to it (ringing passed to the room, CANCEL when the room leaves),
//! its refusals mapped to the room, and the bridge once it answers:
//! the room's 200, or, after the reception, a re-INVITE of the room (with
//! its glare loop, RFC 3261 §14.1).
//!
//! Never decides whether a meeting may be joined (the caller checked it).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::call::Call;
use super::leg::{Leg, Path, Pooled};
use super::sdp::{continue_origin, sdp_of};
use super::{Gateway, lock};
use crate::media::Side;
use crate::role::Role;
use crate::sip::message::SipMessage;
use crate::sip::transport::Transport;
use crate::sip::transport::outbound::{ConnectError, StreamTarget};
use crate::sip::ua::Answered;
use crate::sip::uri::{Uri, UriError};

/// Why the connector cannot be called.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectorError {
    #[error("the connector URI {uri:?} is not a SIP URI: {error}")]
    BadUri { uri: String, error: UriError },
    #[error("the connector {host}:{port} cannot be resolved: {error}")]
    Unresolved {
        host: String,
        port: u16,
        error: std::io::Error,
    },
    #[error("the connector {0} has no address")]
    NoAddress(String),
    #[error("shutting down")]
    ShuttingDown,
    #[error("the connector cannot be reached: {0}")]
    Unreachable(ConnectError),
}

/// The connector's final answer to our INVITE, and the INVITE's CSeq.
struct Dialled {
    answered: Answered,
    cseq: u32,
}

impl Gateway {
    /// Where the connector is: its URI for this meeting and how to reach it.
    async fn connector_path(&self, id: &str) -> Result<(String, Path, Transport), ConnectorError> {
        let uri_text = self
            .cfg
            .connector
            .replace("{id}", id)
            .replace("{tenant}", self.cfg.tenant_key.as_deref().unwrap_or(""));
        let uri = Uri::parse(&uri_text).map_err(|error| ConnectorError::BadUri {
            uri: uri_text.clone(),
            error,
        })?;
        let transport = match uri.transport().map(|t| t.to_ascii_lowercase()).as_deref() {
            Some("tls") => Transport::Tls,
            Some("tcp") => Transport::Tcp,
            Some("udp") | None if uri.scheme_str.eq_ignore_ascii_case("sip") => Transport::Udp,
            _ => Transport::Tls,
        };
        let host = uri
            .domain()
            .map(str::to_string)
            .or_else(|| uri.host.map(|h| h.to_string()))
            .unwrap_or_default();
        let default_port = if transport == Transport::Tls {
            5061
        } else {
            5060
        };
        let (conn_host, port) = self
            .cfg
            .connector_address
            .clone()
            .unwrap_or((host.clone(), uri.port.unwrap_or(default_port)));
        let path = match transport {
            Transport::Udp => {
                let addr = tokio::net::lookup_host((conn_host.as_str(), port))
                    .await
                    .map_err(|error| ConnectorError::Unresolved {
                        host: conn_host.clone(),
                        port,
                        error,
                    })?
                    .next()
                    .ok_or_else(|| ConnectorError::NoAddress(conn_host.clone()))?;
                Path::Udp(self.udp.clone(), addr, self.pool.capture().cloned())
            }
            t => {
                let target = StreamTarget {
                    transport: t,
                    host: conn_host,
                    port,
                    server_name: (t == Transport::Tls).then(|| host.clone()),
                    tag: Role::Cvi.tag(),
                    max_conns: 4,
                };
                let me = self.me.upgrade().ok_or(ConnectorError::ShuttingDown)?;
                let conn = self
                    .pool
                    .get(&target, me)
                    .await
                    .map_err(ConnectorError::Unreachable)?;
                Path::Pooled(Arc::new(Pooled {
                    target,
                    conn: Mutex::new(conn),
                    pool: self.pool.clone(),
                    gateway: self.me.clone(),
                }))
            }
        };
        Ok((uri_text, path, transport))
    }

    /// Before the room was answered, an error answer to its INVITE; after
    /// (the reception answered it), a BYE.
    async fn fail_or_hang_up(
        &self,
        call: &Arc<Call>,
        answered_before: bool,
        status: u16,
        why: &str,
    ) {
        if answered_before {
            self.hang_up(call, false, why).await;
        } else {
            self.fail(call, status, why).await;
        }
    }

    /// Calls the connector for meeting `id` and bridges the room system to it.
    pub(super) async fn connect(self: Arc<Self>, call: Arc<Call>, id: String) {
        // Key presses matter only at the reception.
        lock(&call.keys_rx).take();
        if call.ended.is_cancelled() {
            return;
        }
        let answered_before = call.answered.load(Ordering::Relaxed);
        let (uri, path, transport) = match self.connector_path(&id).await {
            Ok(x) => x,
            Err(why) => {
                self.stats.connector_failed.fetch_add(1, Ordering::Relaxed);
                warn!(call_id = %call.room.call_id, reason = %why, "connector unreachable");
                self.fail_or_hang_up(&call, answered_before, 503, &why.to_string())
                    .await;
                return;
            }
        };
        let from = call
            .invite
            .from()
            .map(|f| f.uri.raw.to_string())
            .unwrap_or_else(|| format!("sip:gateway@{}", self.cfg.domain));
        let leg = Arc::new(Leg::connector(&self, &from, &uri, path, transport));
        *lock(&call.connector) = Some(leg.clone());
        lock(&self.calls).insert(leg.call_id.clone(), call.clone());
        if call.ended.is_cancelled() {
            // Ended meanwhile: `end` may have run before the entry existed.
            lock(&self.calls).remove(&leg.call_id);
            return;
        }
        let Some(a) = self
            .clone()
            .dial(&call, &leg, &id, &uri, answered_before)
            .await
        else {
            return;
        };
        let resp = &a.answered.response;
        let status = resp.status().unwrap_or(500);
        if !(200..300).contains(&status) {
            // The transaction layer ACKed it (RFC 3261 §17.1.1.3).
            if call.ended.is_cancelled() {
                return;
            }
            self.stats.connector_failed.fetch_add(1, Ordering::Relaxed);
            let (to_room, why) = refusal(status, resp);
            self.fail_or_hang_up(&call, answered_before, to_room, &why)
                .await;
            return;
        }
        // The connector answered: its dialog, our ACK.
        leg.confirm(resp);
        self.ack(&leg, &a.answered, a.cseq).await;
        if call.ended.is_cancelled() {
            // Its 200 crossed our CANCEL (or the room left): leave the meeting.
            self.bye(&leg, "the room system left").await;
            return;
        }
        self.bridge(&call, &leg, resp, &id, answered_before).await;
    }

    /// Sends the INVITE to the connector and waits for its final answer,
    /// passing ringing to a room not yet answered; `None` (the room told)
    /// when no final answer came.
    async fn dial(
        self: Arc<Self>,
        call: &Arc<Call>,
        leg: &Leg,
        id: &str,
        uri: &str,
        answered_before: bool,
    ) -> Option<Dialled> {
        let trusted = self.trusted(call);
        let mut headers = vec![
            ("X-Fedge-Conference-Id".to_string(), id.to_string()),
            ("User-Agent".to_string(), self.cfg.agent.clone()),
        ];
        if trusted {
            headers.push(("X-Fedge-Trusted-Device".into(), "yes".into()));
        }
        let offer_b = lock(&call.offer_b).clone();
        let invite = leg.request("INVITE", &headers, Some(("application/sdp", &offer_b)));
        info!(call_id = %call.room.call_id, connector = %uri, trusted, "calling the connector");
        // Ringing reaches a room system not yet answered.
        let (prov_tx, mut prov_rx) = mpsc::unbounded_channel::<SipMessage>();
        if !answered_before {
            let (gw, call2) = (self.clone(), call.clone());
            tokio::spawn(async move {
                while let Some(p) = prov_rx.recv().await {
                    if (p.status() == Some(180) || p.status() == Some(183))
                        && !call2.answered.load(Ordering::Relaxed)
                    {
                        let r = gw.dialog_response(&call2.invite, 180, &call2.tag).build();
                        gw.respond(&call2.invite, &call2.source, r).await;
                    }
                }
            });
        }
        // The room leaving while the connector rings CANCELs the INVITE;
        // its final answer still comes back here to be ACKed.
        let outcome = self
            .transact(&leg.path, invite.data, Some(&prov_tx), Some(&call.ended))
            .await;
        drop(prov_tx);
        match outcome {
            Ok(answered) => Some(Dialled {
                answered,
                cseq: invite.cseq,
            }),
            Err(_) if call.ended.is_cancelled() => None,
            Err(why) => {
                self.stats.connector_failed.fetch_add(1, Ordering::Relaxed);
                let why = format!("the meeting service did not answer: {why}");
                self.fail_or_hang_up(call, answered_before, 408, &why).await;
                None
            }
        }
    }

    /// The connector answered 2xx with `resp`: its media on the relay, then
    /// the room answered (or re-INVITEd, after the reception).
    async fn bridge(
        &self,
        call: &Arc<Call>,
        leg: &Leg,
        resp: &SipMessage,
        id: &str,
        answered_before: bool,
    ) {
        let relayed = match sdp_of(resp) {
            None => Err("the meeting service answered without SDP".to_string()),
            Some(answer_b) => self
                .relay
                .update(&call.key, Side::B, &[&answer_b], false)
                .map(|mut v| v.pop().unwrap_or_default())
                .map_err(|e| format!("the meeting service's SDP cannot be relayed: {e}")),
        };
        let for_a = match relayed {
            Ok(x) => x,
            Err(why) => {
                self.stats.connector_failed.fetch_add(1, Ordering::Relaxed);
                if answered_before {
                    self.hang_up_both(call, &why).await;
                } else {
                    self.fail(call, 502, &why).await;
                    self.bye(leg, &why).await;
                }
                return;
            }
        };
        let offer_b = lock(&call.offer_b).clone();
        lock(&call.last_sdp)[1] = offer_b;
        self.relay.mark_answered(&call.key);
        self.stats.connected.fetch_add(1, Ordering::Relaxed);
        if !answered_before {
            if self.answer(call, &for_a).await {
                info!(call_id = %call.room.call_id, meeting = %id, "room system joined the meeting");
            } else {
                self.hang_up_both(call, "no ACK from the room system").await;
            }
            return;
        }
        self.reinvite_room(call, &for_a, id).await;
    }

    /// The room system was answered by the reception: a re-INVITE offers
    /// it the meeting's media (the connector's answer, through the relay),
    /// as a new version of the session it has (RFC 3264 §8).
    async fn reinvite_room(&self, call: &Arc<Call>, for_a: &[u8], id: &str) {
        let previous = lock(&call.last_sdp)[0].clone();
        let for_a = continue_origin(&previous, for_a);
        for attempt in 1..=3 {
            let reinvite = call
                .room
                .request("INVITE", &[], Some(("application/sdp", &for_a)));
            call.reinviting.store(true, Ordering::Relaxed);
            let outcome = self
                .transact(&call.room.path, reinvite.data, None, None)
                .await;
            call.reinviting.store(false, Ordering::Relaxed);
            match outcome {
                Ok(a) if a.response.status().is_some_and(|s| (200..300).contains(&s)) => {
                    self.ack(&call.room, &a, reinvite.cseq).await;
                    if let Some(room_answer) = sdp_of(&a.response) {
                        let _ = self
                            .relay
                            .update(&call.key, Side::A, &[&room_answer], false);
                    }
                    lock(&call.last_sdp)[0] = for_a;
                    info!(call_id = %call.room.call_id, meeting = %id, "room system joined the meeting");
                    return;
                }
                Ok(Answered { response: r, .. }) => {
                    // The transaction layer ACKed it.
                    if r.status() == Some(491) && attempt < 3 && !call.ended.is_cancelled() {
                        // Glare: the room re-INVITEd at the same time. The
                        // room owns the Call-ID, so we wait 0-2 s (RFC 3261
                        // §14.1) and offer again.
                        let wait = Duration::from_millis(rand::random_range(0..2000));
                        debug!(call_id = %call.room.call_id, ?wait, "re-INVITE glare: offering again");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => continue,
                            _ = call.ended.cancelled() => return,
                        }
                    }
                    let why = format!(
                        "the room system refused the meeting's media ({})",
                        r.status().unwrap_or(0)
                    );
                    self.hang_up_both(call, &why).await;
                    return;
                }
                Err(why) => {
                    self.hang_up_both(
                        call,
                        &format!("the room system did not answer the re-INVITE: {why}"),
                    )
                    .await;
                    return;
                }
            }
        }
    }
}

/// The status the room gets for the connector's error answer, and why.
fn refusal(status: u16, resp: &SipMessage) -> (u16, String) {
    let answered = || {
        format!(
            "the meeting service answered {status} {}",
            resp.reason_phrase().unwrap_or("")
        )
    };
    match status {
        // Only our own CANCEL (Timer C) draws a 487 here.
        487 => (
            480,
            "the meeting service did not answer in time".to_string(),
        ),
        401 | 407 => (503, answered()),
        s if (500..600).contains(&s) => (503, answered()),
        s => (s, answered()),
    }
}
