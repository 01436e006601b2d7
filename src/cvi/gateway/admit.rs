//! Whether a room's new INVITE may start a call: a UDP source not seen
//! lately proves its address first (it answers an OPTIONS probe sent to
//! the packet's source, with a branch only a real listener there sees);
//! then the drain switch, the source's share and the node's capacity; and
//! whether a source may try a conference ID now (the guess budgets).
//!
//! Decides and answers refusals; never allocates media or calls the
//! connector. A refused INVITE holds nothing but its remembered answer.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::call::{Call, Refused, unknown_id};
use super::leg::Path;
use super::{CALL_LOG, Gateway, lock};
use crate::cvi::Trust;
use crate::cvi::meetings::is_conference_id;
use crate::sip::log_limit;
use crate::sip::message::SipMessage;
use crate::sip::request::RequestBuilder;
use crate::sip::response::random_token;
use crate::sip::transport::Source;

/// UDP probes in flight at most (each holds an INVITE and a timer).
const MAX_PROBES: usize = 256;

/// Why a conference ID attempt was refused: status, reason, Retry-After.
pub(super) type IdRefusal = (u16, String, Option<u64>);

impl Gateway {
    /// Over UDP, true once the source proved its address (now or lately);
    /// false when it did not (the INVITE is answered 503 and nothing else
    /// is held). TCP and TLS sources are proven by their handshake.
    pub(super) async fn proven_source(
        &self,
        invite: &SipMessage,
        source: &Source,
        call_id: &str,
    ) -> bool {
        if source.conn.is_some() || !self.cfg.udp_probe || self.proven.is_proven(source.remote) {
            return true;
        }
        let ok = if self.probing.fetch_add(1, Ordering::Relaxed) < MAX_PROBES {
            let trying = self.response(invite, 100, None, None).build();
            self.respond(invite, source, trying).await;
            let ok = self.probe(source.remote).await;
            self.probing.fetch_sub(1, Ordering::Relaxed);
            ok
        } else {
            self.probing.fetch_sub(1, Ordering::Relaxed);
            false
        };
        if ok {
            self.proven.prove(source.remote, self.cfg.udp_proven_for);
            return true;
        }
        self.stats.unproven.fetch_add(1, Ordering::Relaxed);
        let r = self
            .response(
                invite,
                503,
                Some(&random_token()),
                Some("this UDP source did not answer the gateway's OPTIONS: call over TCP or TLS, or answer OPTIONS"),
            )
            .header("Retry-After", "5")
            .build();
        self.remember_final(call_id, &r);
        self.respond(invite, source, r).await;
        // Spoofed INVITEs come as fast as an attacker sends them: at most
        // one line a second, with the running count.
        let now = self.started.elapsed().as_secs() + 1;
        if self.unproven_logged.swap(now, Ordering::Relaxed) != now {
            info!(
                remote = %source.remote,
                unproven_total = self.stats.unproven.load(Ordering::Relaxed),
                "CVI UDP INVITE dropped: the source did not answer the probe"
            );
        }
        false
    }

    /// Sends OPTIONS to `to` (the packet's source, never the Via a sender
    /// chose) and waits for any answer to it.
    async fn probe(&self, to: SocketAddr) -> bool {
        let options = RequestBuilder::new("OPTIONS", format!("sip:{to}"))
            .via(format!(
                "SIP/2.0/UDP {};branch=z9hG4bK-cvi-probe-{};rport",
                self.cfg.local,
                random_token()
            ))
            .from(format!(
                "<sip:gateway@{}>;tag={}",
                self.cfg.domain,
                random_token()
            ))
            .to(format!("<sip:{to}>"))
            .call_id(format!("{}@{}", random_token(), self.cfg.domain))
            .cseq(1)
            .build();
        let path = Path::Udp(self.udp.clone(), to, self.pool.capture().cloned());
        let answer = tokio::time::timeout(
            self.cfg.udp_probe_timeout,
            self.transact(&path, options, None, None),
        )
        .await;
        matches!(answer, Ok(Ok(_)))
    }

    /// Refuses a new call while draining, when its source holds its share
    /// or when the node is full (503 with Retry-After); true when it is
    /// admitted and counted (for the node and for its source).
    pub(super) async fn admit(&self, invite: &SipMessage, source: &Source, call_id: &str) -> bool {
        let refusal = if self.draining() {
            self.stats.refused_draining.fetch_add(1, Ordering::Relaxed);
            Some((
                "60",
                "this gateway is draining: it takes no new calls".to_string(),
            ))
        } else if !self
            .per_source
            .take(source.remote.ip(), self.cfg.max_calls_per_source)
        {
            self.stats.refused_source.fetch_add(1, Ordering::Relaxed);
            Some((
                "30",
                format!(
                    "this source address already holds its maximum of {} calls",
                    self.cfg.max_calls_per_source
                ),
            ))
        } else if self.live.fetch_add(1, Ordering::Relaxed) >= self.cfg.max_calls {
            self.live.fetch_sub(1, Ordering::Relaxed);
            self.per_source.release(source.remote.ip());
            self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
            Some((
                "30",
                format!(
                    "this gateway carries its maximum of {} calls",
                    self.cfg.max_calls
                ),
            ))
        } else {
            None
        };
        let Some((retry, why)) = refusal else {
            return true;
        };
        let r = self
            .response(invite, 503, Some(&random_token()), Some(&why))
            .header("Retry-After", retry)
            .build();
        self.remember_final(call_id, &r);
        self.respond(invite, source, r).await;
        if log_limit::allow(source.remote.ip(), CALL_LOG) {
            warn!(call_id = %call_id, remote = %source.remote, "CVI call refused: {why}");
        }
        false
    }

    /// Whether the room of `call` may join meeting `id`: its source must
    /// not be locked out, and the ID must name a meeting that can be joined
    /// now. A wrong ID counts against the source's budget; every kind of
    /// wrong ID gets the same answer.
    pub(super) async fn try_id(&self, call: &Call, id: &str) -> Result<(), IdRefusal> {
        let ip = call.source.remote.ip();
        if let Err(left) = self.guesses.check(ip) {
            let s = left.as_secs().max(1);
            return Err((
                503,
                format!("too many wrong conference IDs from this address: try again in {s} s"),
                Some(s),
            ));
        }
        match self.check_meeting(id).await {
            Ok(()) => Ok(()),
            // The database failing is ours, not a wrong ID.
            Err(Refused::Store(why)) => Err((503, why, None)),
            Err(refused) => {
                self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                if log_limit::allow(ip, CALL_LOG) {
                    info!(call_id = %call.room.call_id, reason = %refused.why(), "conference ID not accepted");
                }
                // Only a well-formed ID is a guess (an empty or short entry
                // at the reception is a fumble, not an attempt).
                if is_conference_id(id) {
                    self.guesses.wrong(ip);
                }
                Err((404, unknown_id(id, &self.cfg.domain), None))
            }
        }
    }

    /// Trusted by source address (over TCP or TLS, whose handshake proves
    /// the address; over UDP only when the operator opted in), or by a
    /// domain its verified TLS client certificate names. The From domain
    /// is the caller's to choose, so it is never taken as proof.
    pub(super) fn trusted(&self, call: &Call) -> bool {
        // A browser (WebRTC) is never trusted: it waits in the lobby.
        if let Some(c) = &call.source.conn
            && lock(&self.browsers).contains(&c.id)
        {
            return false;
        }
        let ip = call.source.remote.ip();
        let by_address = call.source.conn.is_some() || self.cfg.trust_udp;
        let names = call
            .source
            .identity
            .as_deref()
            .map(|i| i.names.as_slice())
            .unwrap_or_default();
        self.cfg.trusted.iter().any(|t| match t {
            Trust::Net(..) => by_address && t.matches(ip, None),
            Trust::Domain(_) => names.iter().any(|n| t.matches(ip, Some(n))),
        })
    }
}
