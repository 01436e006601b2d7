//! One gateway call: the room system's dialog and INVITE, the state of its
//! answer, the key presses for the reception, the connector's dialog once
//! dialled and the SDP last sent to each side; and what the room dialled.
//!
//! State only: never sends anything and never decides what a call does.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::leg::Leg;
use crate::cvi::meetings::is_conference_id;
use crate::sip::message::SipMessage;
use crate::sip::transport::Source;

/// Room key presses queued for the reception at most.
const KEY_QUEUE: usize = 64;

/// What the room system dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialled {
    Reception,
    TestCall,
    Meeting(String),
    Unknown(String),
}

/// Reads the Request-URI's user part.
pub fn dialled(user: &str, reception: &str, test_call: &str, tenant: Option<&str>) -> Dialled {
    if user.eq_ignore_ascii_case(reception) {
        return Dialled::Reception;
    }
    if user.eq_ignore_ascii_case(test_call) {
        return Dialled::TestCall;
    }
    if is_conference_id(user) {
        return Dialled::Meeting(user.to_string());
    }
    if let Some((key, id)) = user.split_once('.')
        && is_conference_id(id)
        && tenant.is_some_and(|t| t == key)
    {
        return Dialled::Meeting(id.to_string());
    }
    Dialled::Unknown(user.to_string())
}

/// What a room is told for every conference ID it cannot join (unknown,
/// ended or withdrawn alike: the answer reveals nothing about the ID).
pub(super) fn unknown_id(id: &str, domain: &str) -> String {
    format!("no meeting can be joined with conference ID {id} at {domain}")
}

/// Why a conference ID cannot be joined.
#[derive(Debug)]
pub(super) enum Refused {
    /// The meeting has ended.
    Ended(String),
    /// Unknown, or its organiser withdrawn.
    NotFound(String),
    /// The database could not say.
    Store(String),
}

impl Refused {
    /// The reason, for the room's Warning and the log.
    pub(super) fn why(&self) -> &str {
        let (Refused::Ended(why) | Refused::NotFound(why) | Refused::Store(why)) = self;
        why
    }
}

/// One gateway call.
pub(super) struct Call {
    pub(super) key: String,
    pub(super) room: Arc<Leg>,
    pub(super) invite: SipMessage,
    pub(super) source: Source,
    pub(super) tag: String,
    /// A final answer went to the room's INVITE (200 or an error).
    pub(super) answered: AtomicBool,
    /// The last response to the room's INVITE, for its retransmissions.
    pub(super) last: Mutex<Option<Bytes>>,
    pub(super) acked: Notify,
    pub(super) acked_flag: AtomicBool,
    /// Our 200 to the room's INVITE went out (an ACK before it is nothing).
    pub(super) ok_sent: AtomicBool,
    /// The highest CSeq of the room's requests in its dialog, and of the
    /// connector's (none yet).
    pub(super) room_cseq: Mutex<u32>,
    pub(super) connector_cseq: Mutex<Option<u32>>,
    pub(super) ended: CancellationToken,
    /// Key presses for the reception (bounded: a peer cannot queue more).
    pub(super) keys: mpsc::Sender<char>,
    pub(super) keys_rx: Mutex<Option<mpsc::Receiver<char>>>,
    pub(super) connector: Mutex<Option<Arc<Leg>>>,
    /// What the relay offers the connector (SDP for side B).
    pub(super) offer_b: Mutex<Vec<u8>>,
    /// The SDP last sent to each leg (for re-INVITEs we answer).
    pub(super) last_sdp: Mutex<[Vec<u8>; 2]>,
    /// Our re-INVITE to the room is in progress (its own gets 491).
    pub(super) reinviting: AtomicBool,
    pub(super) counted: AtomicBool,
    /// A mid-call offer passed between the legs (`share`).
    pub(super) passing: Mutex<super::share::Passing>,
}

impl Call {
    /// A new call `key` for the room's `invite`, answered with our `tag`.
    pub(super) fn new(
        key: String,
        room: Leg,
        invite: SipMessage,
        source: Source,
        tag: String,
    ) -> Call {
        let (keys, keys_rx) = mpsc::channel(KEY_QUEUE);
        let cseq = invite.cseq().map_or(0, |c| c.seq);
        Call {
            key,
            room: Arc::new(room),
            invite,
            source,
            tag,
            answered: AtomicBool::new(false),
            last: Mutex::new(None),
            acked: Notify::new(),
            acked_flag: AtomicBool::new(false),
            ok_sent: AtomicBool::new(false),
            room_cseq: Mutex::new(cseq),
            connector_cseq: Mutex::new(None),
            ended: CancellationToken::new(),
            keys,
            keys_rx: Mutex::new(Some(keys_rx)),
            connector: Mutex::new(None),
            offer_b: Mutex::new(Vec::new()),
            last_sdp: Mutex::new([Vec::new(), Vec::new()]),
            reinviting: AtomicBool::new(false),
            counted: AtomicBool::new(true),
            passing: Mutex::new(Default::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_dialled() {
        let d = |u: &str| dialled(u, "teams", "test_call", Some("12345678"));
        assert_eq!(d("teams"), Dialled::Reception);
        assert_eq!(d("TEAMS"), Dialled::Reception);
        assert_eq!(d("test_call"), Dialled::TestCall);
        assert_eq!(d("1234567890"), Dialled::Meeting("1234567890".into()));
        assert_eq!(
            d("12345678.1234567890"),
            Dialled::Meeting("1234567890".into())
        );
        assert_eq!(
            d("99999999.1234567890"),
            Dialled::Unknown("99999999.1234567890".into())
        );
        assert_eq!(d("123"), Dialled::Unknown("123".into()));
    }
}
