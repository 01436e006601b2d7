//! The gateway's requests on its legs, through the shared user-agent
//! transaction layer (`sip::ua::Agent`, on the proxy's `ClientTxn`):
//! retransmission over UDP, Timer C and CANCEL for INVITEs, the ACK of
//! error answers, and the ACK of a 2xx repeated for its retransmissions.
//!
//! Only passes requests and responses between the gateway and that layer;
//! never decides what a call does with an answer.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Gateway;
use super::leg::{Leg, Path};
use crate::sip::message::SipMessage;
use crate::sip::response::quote;
use crate::sip::ua::{Answered, TxnError};

impl Gateway {
    /// Sends a request and waits for its final answer; provisional
    /// answers go to `prov`. An INVITE is CANCELled when `abort` fires or
    /// when it has rung for the ring timeout (Timer C), and its final
    /// answer (a 487, or a 2xx that crossed the CANCEL) is still awaited
    /// and returned, for the caller to ACK (a 2xx) and BYE.
    pub(super) async fn transact(
        &self,
        path: &Path,
        data: Bytes,
        prov: Option<&mpsc::UnboundedSender<SipMessage>>,
        abort: Option<&CancellationToken>,
    ) -> Result<Answered, TxnError> {
        self.agent.request(path, data, prov, abort).await
    }

    /// Sends the ACK of a 2xx to our INVITE on `leg`, kept for that
    /// answer's retransmissions.
    pub(super) async fn ack(&self, leg: &Leg, answered: &Answered, cseq: u32) {
        self.agent
            .ack(&leg.path, answered, leg.dialog.ack(cseq))
            .await;
    }

    /// Sends a BYE on `leg` and waits for its answer.
    pub(super) async fn bye(&self, leg: &Leg, reason: &str) {
        let r = leg.request(
            "BYE",
            &[("Reason".into(), format!("SIP;text={}", quote(reason)))],
            None,
        );
        let _ = self.transact(&leg.path, r.data, None, None).await;
    }

    /// A response: to the transaction waiting for it (or absorbing its
    /// retransmissions); any other is dropped.
    pub(super) fn on_response(&self, msg: SipMessage) {
        self.agent.on_response(msg);
    }
}
