//! One H.323 call signalling connection: one call (the first Setup; a
//! second call on the connection is refused), interworked to SIP. The
//! room's Setup becomes an INVITE to the gateway on an in-process
//! connection; the gateway's answers come back as Q.931 (Call Proceeding,
//! Alerting, Connect with the fast-start answers, Release Complete with a
//! cause); the room's Release Complete or a closed connection becomes a
//! BYE (or CANCEL); the gateway's BYE becomes endSessionCommand and
//! Release Complete. H.245 runs tunnelled or on a separate channel the
//! room offers (`h245Address`: we connect to it). A Setup without fast
//! start is served by H.245 logical channels before Connect (slow start,
//! `call/channels.rs`).
//!
//! Owns one connection's framing bounds (TPKT size, the Setup deadline),
//! its malformed input (Release Complete with cause 95 or 100, logged
//! within the log budget, then closed) and the mapping both ways. Never
//! decides about the meeting, never touches media.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fedge_h323::h225::{self, Alias, Body, ReleaseReason, Signal};
use fedge_h323::h245::{self, Control, Media, Olc};
use fedge_h323::{q931, tpkt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::h245::{Event, Session};
use super::sip::{self, Codec, Dialog, Offer, Release};
use super::{H323, H323_LOG};
use crate::role::Role;
use crate::sip::log_limit;
use crate::sip::message::{Method, SipMessage};
use crate::sip::response::{ResponseBuilder, random_token};
use crate::sip::transport::{Connection, InProcess};

/// Q.931 causes we send ourselves.
const NORMAL: u8 = 16;
const INVALID_IE: u8 = 100;
const INVALID_MESSAGE: u8 = 95;
const BEARER_NOT_IMPLEMENTED: u8 = 65;
const RECOVERY_ON_TIMER_EXPIRY: u8 = 102;
/// The longest a call waits for the gateway's final answer.
const CALLING_LIMIT: Duration = Duration::from_secs(180);
/// How long connecting to a room's H.245 address may take.
const H245_CONNECT: Duration = Duration::from_secs(5);
/// How long a write to a room may take before the call is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// TPKT frames off one TCP stream.
struct Frames {
    rd: OwnedReadHalf,
    buf: BytesMut,
    dec: tpkt::Decoder,
}

/// Why a connection's input ended.
enum Input {
    Frame(Bytes),
    Closed,
    Bad(String),
}

impl Frames {
    fn new(rd: OwnedReadHalf, max: usize) -> Frames {
        Frames {
            rd,
            buf: BytesMut::with_capacity(1024),
            dec: tpkt::Decoder::new(max),
        }
    }

    async fn next(&mut self) -> Input {
        loop {
            match self.dec.decode(&mut self.buf) {
                Ok(Some(f)) => return Input::Frame(f),
                Ok(None) => {}
                Err(e) => return Input::Bad(format!("TPKT: {e}")),
            }
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Input::Closed,
                Ok(_) => {}
            }
        }
    }
}

/// How long our offered H.245 address waits for the room to connect.
const H245_ACCEPT: Duration = Duration::from_secs(30);

/// Accepts the room's H.245 connection on our listener, if we offered
/// one (never, without one; an error after `H245_ACCEPT`).
async fn accept_of(l: &mut Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => tokio::time::timeout(H245_ACCEPT, l.accept())
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
        None => std::future::pending().await,
    }
}

/// A listener for H.245 in `[cvi] h245_port_min..=h245_port_max` on our
/// call signalling address (a few random tries).
async fn bind_h245(h: &H323) -> Option<TcpListener> {
    let (lo, hi) = (
        h.cfg.h245_port_min,
        h.cfg.h245_port_max.max(h.cfg.h245_port_min),
    );
    for _ in 0..16 {
        let port = rand::random_range(lo..=hi);
        if let Ok(l) = TcpListener::bind((h.cfg.listen.ip(), port)).await {
            return Some(l);
        }
    }
    None
}

/// Waits for the next frame of an optional channel (never, without one).
async fn next_of(f: &mut Option<Frames>) -> Input {
    match f {
        Some(f) => f.next().await,
        None => std::future::pending().await,
    }
}

async fn write(wr: &mut OwnedWriteHalf, data: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(data)).await,
        Ok(Ok(()))
    )
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE sent, no final answer yet.
    Calling,
    /// 200 taken, Connect sent.
    Connected,
    /// Over.
    Ended,
}

/// One call's interworking state.
struct Call {
    h: Arc<H323>,
    wr: OwnedWriteHalf,
    remote: SocketAddr,
    local: SocketAddr,
    call_ref: u16,
    call_id: Option<[u8; 16]>,
    conference_id: [u8; 16],
    tunnelling: bool,
    proposals: Vec<Olc>,
    dialog: Dialog,
    invite_branch: String,
    conn: Connection,
    state: State,
    alerted: bool,
    session: Session,
    /// The separate H.245 channel's writer, once connected.
    h245_wr: Option<OwnedWriteHalf>,
    /// The room's H.245 address from its Setup, connected to once.
    h245_target: Option<SocketAddr>,
    /// Our H.245 listener, offered in Connect to a room that neither
    /// tunnels nor gave an address (taken over by the call's loop).
    h245_listener: Option<TcpListener>,
    /// The room's media (from its fast start) and our SDP o= numbers.
    room_media: Offer,
    sdp_session: u64,
    sdp_version: u64,
    /// The last SDP we gave the gateway without a content stream (the
    /// base of a presentation's offers).
    last_sdp: String,
    /// The room's H.239 presentation, while it is being opened or open.
    share: Option<share::Share>,
    /// Slow start (no fast start in the Setup): the channels by H.245.
    slow: Option<channels::Slow>,
    /// The meeting's presentation towards the room, and the bound on the
    /// room's own.
    present: present::Present,
}

/// Serves one call signalling connection to its end.
pub(super) async fn serve(
    h: Arc<H323>,
    stream: TcpStream,
    remote: SocketAddr,
    stop: CancellationToken,
) {
    let local = stream.local_addr().unwrap_or(h.cfg.listen);
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut frames = Frames::new(rd, h.cfg.max_frame);
    let first = tokio::select! {
        _ = stop.cancelled() => return,
        r = tokio::time::timeout(h.cfg.setup_timeout, frames.next()) => r,
    };
    let frame = match first {
        Err(_) => {
            if log_limit::allow(remote.ip(), H323_LOG) {
                info!(%remote, "H.323 connection closed: no Setup within its deadline");
            }
            return;
        }
        Ok(Input::Closed) => return,
        Ok(Input::Bad(why)) => {
            return malformed(&h, &mut wr, remote, None, INVALID_MESSAGE, &why).await;
        }
        Ok(Input::Frame(f)) => f,
    };
    let setup = match read_setup(&frame) {
        Ok(s) => s,
        Err((call_ref, cause, why)) => {
            return malformed(&h, &mut wr, remote, call_ref, cause, &why).await;
        }
    };
    let Some((mut call, inproc)) = Call::start(h.clone(), wr, remote, local, setup).await else {
        return;
    };
    call.run(frames, inproc, stop).await;
}

/// A Setup, decoded.
struct SetupIn {
    call_ref: u16,
    signal: Signal,
    setup: h225::Setup,
    called: Option<String>,
}

type Refusal = (Option<u16>, u8, String);

fn read_setup(frame: &[u8]) -> Result<SetupIn, Refusal> {
    let m =
        q931::Message::decode(frame).map_err(|e| (None, INVALID_MESSAGE, format!("Q.931: {e}")))?;
    let cr = Some(m.call_ref);
    if m.kind != q931::MessageType::Setup {
        return Err((cr, INVALID_MESSAGE, format!("{:?} before Setup", m.kind)));
    }
    let uu = m.user_user.as_deref().ok_or((
        cr,
        INVALID_IE,
        "Setup without user-user information".to_string(),
    ))?;
    let signal = h225::decode(uu).map_err(|e| (cr, INVALID_IE, format!("H.225: {e}")))?;
    let Body::Setup(setup) = signal.body.clone() else {
        return Err((
            cr,
            INVALID_IE,
            "Setup message with another H.225 body".into(),
        ));
    };
    Ok(SetupIn {
        call_ref: m.call_ref,
        signal,
        setup,
        called: m.called,
    })
}

/// Release Complete with `cause` for malformed input, logged, then closed.
async fn malformed(
    h: &H323,
    wr: &mut OwnedWriteHalf,
    remote: SocketAddr,
    call_ref: Option<u16>,
    cause: u8,
    why: &str,
) {
    h.stats.malformed.fetch_add(1, Ordering::Relaxed);
    if log_limit::allow(remote.ip(), H323_LOG) {
        info!(%remote, cause, reason = why, "H.323 input refused: malformed");
    }
    if let Some(cr) = call_ref
        && let Some(b) = release_bytes(h, cr, None, cause, ReleaseReason::Undefined)
    {
        let _ = write(wr, &b).await;
    }
    let _ = wr.shutdown().await;
}

/// A whole TPKT frame of one Q.931 message from us (the destination side).
fn q931_frame(
    h: &H323,
    call_ref: u16,
    kind: q931::MessageType,
    signal: &Signal,
    cause: Option<u8>,
) -> Option<Vec<u8>> {
    let uu = h225::encode(signal, &h.cfg.vendor).ok()?;
    let m = q931::Message {
        call_ref,
        from_destination: true,
        kind,
        bearer: None,
        cause,
        display: None,
        calling: None,
        called: None,
        user_user: Some(uu),
        other: Vec::new(),
    };
    Some(tpkt::encode(&m.encode()))
}

fn signal(body: Body, call_id: Option<[u8; 16]>, tunnelling: bool) -> Signal {
    Signal {
        body,
        call_id,
        h245_tunnelling: tunnelling,
        h245_control: Vec::new(),
        fast_start: Vec::new(),
        h245_address: None,
    }
}

fn release_bytes(
    h: &H323,
    call_ref: u16,
    call_id: Option<[u8; 16]>,
    cause: u8,
    reason: ReleaseReason,
) -> Option<Vec<u8>> {
    let s = signal(
        Body::ReleaseComplete {
            reason: Some(reason),
        },
        call_id,
        false,
    );
    q931_frame(
        h,
        call_ref,
        q931::MessageType::ReleaseComplete,
        &s,
        Some(cause),
    )
}

fn reason_of(r: Release) -> ReleaseReason {
    match r {
        Release::UnreachableDestination => ReleaseReason::UnreachableDestination,
        Release::DestinationRejection => ReleaseReason::DestinationRejection,
        Release::GatewayResources => ReleaseReason::GatewayResources,
        Release::InConf => ReleaseReason::InConf,
        Release::BadFormatAddress => ReleaseReason::BadFormatAddress,
        Release::Undefined => ReleaseReason::Undefined,
    }
}

/// The alias a Setup dials: the first destination alias that names a user,
/// else the Called party number.
fn dialled_alias(s: &SetupIn) -> Option<String> {
    s.setup
        .destination
        .iter()
        .find_map(|a| match a {
            Alias::Dialled(d)
            | Alias::H323Id(d)
            | Alias::Url(d)
            | Alias::Email(d)
            | Alias::Party(d) => Some(d.clone()),
            _ => None,
        })
        .or_else(|| s.called.clone())
}

/// The room's name for From: its first usable source alias.
fn caller_name(s: &SetupIn) -> String {
    s.setup
        .source
        .iter()
        .find_map(|a| match a {
            Alias::Dialled(d) | Alias::H323Id(d) | Alias::Url(d) | Alias::Email(d) => {
                let u: String = d
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .take(32)
                    .collect();
                (!u.is_empty()).then_some(u)
            }
            _ => None,
        })
        .unwrap_or_else(|| "h323".into())
}

fn codec_of(m: &Media) -> Option<Codec> {
    match m {
        Media::G711Ulaw { .. } => Some(Codec::Pcmu),
        Media::G711Alaw { .. } => Some(Codec::Pcma),
        Media::G722 { .. } => Some(Codec::G722),
        Media::H264 { profile, level } => Some(Codec::H264 {
            profile: *profile,
            level: *level,
        }),
        _ => None,
    }
}

/// The SDP offer from the fast-start proposals: the room's receive
/// channels (reverse-only proposals: `forward` false) give the addresses
/// and codecs.
fn offer_of(proposals: &[Olc]) -> Offer {
    let mut offer = Offer::default();
    for o in proposals.iter().filter(|o| !o.forward && !o.presentation) {
        let (Some(rtp), Some(codec)) = (o.rtp, codec_of(&o.media)) else {
            continue;
        };
        let slot = match codec {
            Codec::H264 { .. } => &mut offer.video,
            _ => &mut offer.audio,
        };
        match slot {
            // Alternatives for the same stream (the same receive address).
            Some(st) if st.rtp == rtp => {
                if !st.codecs.contains(&codec) {
                    st.codecs.push(codec);
                }
            }
            Some(_) => {}
            None => {
                *slot = Some(sip::Stream {
                    rtp,
                    codecs: vec![codec],
                })
            }
        }
    }
    offer
}

/// Our fast-start answers: for each stream the gateway answered, the
/// room's transmit proposal with the chosen codec (mediaChannel = the
/// relay, where the room sends) and its receive proposal (the room's own
/// address kept, our RTCP added).
fn fast_start_answers(proposals: &[Olc], answer: &sip::Answer) -> Vec<Olc> {
    let mut out = Vec::new();
    for a in [answer.audio, answer.video].into_iter().flatten() {
        let same = |m: &Media| {
            codec_of(m).is_some_and(|c| match (c, a.codec) {
                (Codec::H264 { .. }, Codec::H264 { .. }) => true,
                (x, y) => x == y,
            })
        };
        let dynamic = matches!(a.codec, Codec::H264 { .. }).then_some(a.payload_type);
        if let Some(tx) = proposals
            .iter()
            .find(|o| o.forward && !o.presentation && same(&o.media))
        {
            let mut o = tx.clone();
            o.rtp = Some(a.rtp);
            o.rtcp = Some(a.rtcp);
            o.reverse = None;
            o.payload_type = dynamic.or(o.payload_type);
            out.push(o);
        }
        if let Some(rx) = proposals
            .iter()
            .find(|o| !o.forward && !o.presentation && same(&o.media))
        {
            let mut o = rx.clone();
            o.rtcp = Some(a.rtcp);
            o.payload_type = dynamic.or(o.payload_type);
            out.push(o);
        }
    }
    out
}

/// Parses one SIP message the gateway sent (or we made).
mod answers;
mod channels;
mod present;
mod run;
mod share;
