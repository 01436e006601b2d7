//! One browser call: its sockets (the browser's ICE/DTLS/SRTP port and a
//! plain-RTP pair per stream towards the relay), the INVITE presented to
//! the gateway on an in-process connection, then the loop that moves RTP
//! between str0m (the browser's side, decrypted) and the relay, and ends
//! the call from either side (Leave, lost connection, BYE).
//!
//! Owns the call's sockets and its SIP dialog as the caller. It never
//! decides about the meeting (the gateway answers), never rewrites a
//! payload (headers only: payload type, nothing transcoded), and never
//! panics on either side's input.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::config::CryptoProvider;
use str0m::format::Codec as RtcCodec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::rtp;
use super::sdp::Checked;
use super::tcp::{self, Conn, IceTcp, Route};
use super::{CallState, Refusal, Stats, WebRtcConfig, lock};
use crate::cvi::gateway::Gateway;
use crate::cvi::h323::sip::{self as isip, Answer, Codec, Dialog, Offer, Stream};
use crate::role::Role;
use crate::sip::message::{Method, SipMessage};
use crate::sip::response::{ResponseBuilder, random_token};
use crate::sip::transport::{Connection, ConnectionTable, InProcess};

static CRYPTO: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(str0m::crypto::from_feature_flags()));

/// How long the browser has to complete ICE and DTLS after the answer.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// A plain RTP/RTCP socket pair towards the relay.
struct Pair {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    addr: SocketAddr,
}

/// A call's sockets and its str0m session, with the browser's answer,
/// before the gateway is asked.
pub(super) struct Prepared {
    rtc: Rtc,
    ice: UdpSocket,
    ice_addr: SocketAddr,
    audio: Pair,
    video: Option<Pair>,
    answer: String,
    /// ICE-TCP: connections naming this call, and its routing entry.
    tcp: Option<(mpsc::Receiver<Conn>, Route, SocketAddr)>,
}

/// A call's ICE-TCP connections (towards the browser).
#[derive(Default)]
struct TcpSide {
    /// Frames sent to each peer (a writer task per connection).
    writers: std::collections::HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
}

impl TcpSide {
    /// Starts a connection's reader and writer; its first frame returned.
    fn accept(&mut self, c: Conn, frames: &mpsc::Sender<(SocketAddr, Vec<u8>)>) -> Vec<u8> {
        let (r, mut w) = c.stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        self.writers.retain(|_, w| !w.is_closed());
        self.writers.insert(c.peer, tx);
        tokio::spawn(tcp::pump(r, c.peer, frames.clone(), c.slot));
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if !tcp::write_frame(&mut w, &b).await {
                    return;
                }
            }
        });
        c.first
    }

    /// Queues `b` to `to` (dropped when its connection is gone or full).
    fn send(&self, to: SocketAddr, b: &[u8]) {
        if let Some(w) = self.writers.get(&to) {
            let _ = w.try_send(b.to_vec());
        }
    }
}

/// What the call needs from its front end.
pub(super) struct Context {
    pub gateway: Arc<Gateway>,
    pub table: Arc<ConnectionTable>,
    pub domain: String,
    pub meeting: String,
    /// The caller's name as a SIP user part (From).
    pub user: String,
    pub remote: SocketAddr,
    pub call_id: String,
    pub hangup: CancellationToken,
    pub state: Arc<Mutex<CallState>>,
    pub stats: Arc<Stats>,
    pub answer_timeout: Duration,
}

/// Binds a UDP socket on a free port of the media range (`even`: an even
/// port whose successor is bound too, for RTP and RTCP).
async fn bind(cfg: &WebRtcConfig, even: bool) -> Option<(UdpSocket, Option<UdpSocket>)> {
    let span = u32::from(cfg.port_max.saturating_sub(cfg.port_min)) + 1;
    for _ in 0..64 {
        let mut port = cfg.port_min as u32 + rand::random::<u32>() % span;
        if even {
            port &= !1;
            if port < u32::from(cfg.port_min) || port + 1 > u32::from(cfg.port_max) {
                continue;
            }
        }
        let Ok(p) = u16::try_from(port) else { continue };
        let Ok(a) = UdpSocket::bind(SocketAddr::new(cfg.bind, p)).await else {
            continue;
        };
        if !even {
            return Some((a, None));
        }
        if let Ok(b) = UdpSocket::bind(SocketAddr::new(cfg.bind, p + 1)).await {
            return Some((a, Some(b)));
        }
    }
    None
}

async fn pair(cfg: &WebRtcConfig) -> Result<Pair, Refusal> {
    let no_port = || {
        Refusal::new(
            503,
            "no media port is free on this gateway: try again later",
        )
    };
    let (rtp, rtcp) = bind(cfg, true).await.ok_or_else(no_port)?;
    let rtcp = rtcp.ok_or_else(no_port)?;
    let addr = rtp.local_addr().map_err(|_| no_port())?;
    Ok(Pair { rtp, rtcp, addr })
}

impl Prepared {
    /// Binds the call's sockets and answers the browser's offer.
    pub async fn new(
        cfg: &WebRtcConfig,
        ice_tcp: Option<&Arc<IceTcp>>,
        checked: Checked,
    ) -> Result<Prepared, Refusal> {
        let no_port = || {
            Refusal::new(
                503,
                "no media port is free on this gateway: try again later",
            )
        };
        let (ice, _) = bind(cfg, false).await.ok_or_else(no_port)?;
        let port = ice.local_addr().map_err(|_| no_port())?.port();
        let ice_addr = SocketAddr::new(cfg.advertise, port);
        let audio = pair(cfg).await?;
        let video = match checked.video {
            true => Some(pair(cfg).await?),
            false => None,
        };
        let mut rtc = Rtc::builder()
            .set_crypto_provider(CRYPTO.clone())
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_h264(true)
            .build(Instant::now());
        let cand = Candidate::host(ice_addr, "udp")
            .map_err(|e| Refusal::new(500, format!("no ICE candidate: {e}")))?;
        rtc.add_local_candidate(cand);
        let tcp = match ice_tcp {
            Some(t) => {
                let cand = Candidate::builder()
                    .tcp()
                    .host(t.advertise)
                    .tcptype(TcpType::Passive)
                    .build()
                    .map_err(|e| Refusal::new(500, format!("no ICE-TCP candidate: {e}")))?;
                rtc.add_local_candidate(cand);
                let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
                let (rx, route) = t.register(ufrag);
                Some((rx, route, t.advertise))
            }
            None => None,
        };
        let answer = rtc
            .sdp_api()
            .accept_offer(checked.offer)
            .map_err(|e| Refusal::new(400, format!("the offer cannot be answered: {e}")))?;
        Ok(Prepared {
            rtc,
            ice,
            ice_addr,
            audio,
            video,
            answer: answer.to_sdp_string(),
            tcp,
        })
    }

    /// Presents the call to the gateway and waits for its final answer:
    /// on 200 the browser's SDP answer and the call's loop to run; else
    /// the gateway's refusal for the page.
    pub async fn start(
        self,
        ctx: Context,
    ) -> Result<(String, impl Future<Output = ()> + Send + 'static), Refusal> {
        let (conn, mut inproc) =
            Connection::in_process(&ctx.table, Role::Cvi.tag(), ctx.remote, self.ice_addr);
        lock(&ctx.gateway.browsers).insert(conn.id);
        let mut leg = Leg {
            gateway: ctx.gateway.clone(),
            conn,
            remote: ctx.remote,
            dialog: Dialog {
                uri: format!("sip:{}@{}", ctx.meeting, ctx.domain),
                call_id: ctx.call_id.clone(),
                from_tag: random_token(),
                to_tag: None,
                local: self.ice_addr,
                from_user: ctx.user.clone(),
                domain: ctx.domain.clone(),
                cseq: 1,
            },
            offer: Offer {
                audio: Some(Stream {
                    rtp: self.audio.addr,
                    codecs: vec![Codec::Pcmu],
                }),
                video: self.video.as_ref().map(|v| Stream {
                    rtp: v.addr,
                    codecs: vec![Codec::H264 {
                        profile: 0x42,
                        level: 0x1f,
                    }],
                }),
            },
        };
        let branch = random_token();
        let sdp = isip::offer_sdp(&leg.offer, 1);
        leg.send(Bytes::from(leg.dialog.invite(&sdp, &branch)))
            .await;
        let deadline = tokio::time::Instant::now() + ctx.answer_timeout;
        let answer = loop {
            let m = tokio::select! {
                m = inproc.recv() => m.and_then(crate::cvi::inproc::parse),
                _ = tokio::time::sleep_until(deadline) => {
                    let c = leg.dialog.cancel(&branch);
                    leg.send(Bytes::from(c)).await;
                    leg.forget();
                    return Err(Refusal::new(504, "the meeting did not answer in time"));
                }
                _ = ctx.hangup.cancelled() => None,
            };
            let Some(m) = m else {
                leg.forget();
                return Err(Refusal::new(503, "the gateway closed the call"));
            };
            let Some(status) = m.status() else {
                // A request before the answer (not expected): refused.
                let r = ResponseBuilder::new(&m, 481).build();
                leg.send(r).await;
                continue;
            };
            match status {
                100..=199 => continue,
                200..=299 => {
                    leg.dialog.to_tag = m.to().and_then(|t| t.tag().map(str::to_string));
                    let ack = leg.dialog.ack(&random_token());
                    leg.send(Bytes::from(ack)).await;
                    break isip::read_answer(m.body());
                }
                _ => {
                    let mut d = leg.dialog.clone();
                    d.to_tag = m.to().and_then(|t| t.tag().map(str::to_string));
                    leg.send(Bytes::from(d.ack_failure(&branch))).await;
                    leg.forget();
                    return Err(refusal_of(status, &m));
                }
            }
        };
        info!(remote = %ctx.remote, call_id = %ctx.call_id, "browser call connected");
        let browser_answer = self.answer.clone();
        let call = Live {
            p: self,
            leg,
            answer,
            state: ctx.state,
            stats: ctx.stats,
            mids: Mids::default(),
            down_seq: [None, None],
            down_pt: [None, None],
            connector_video_ssrc: None,
            connected: false,
            tcp_side: TcpSide::default(),
        };
        Ok((browser_answer, call.run(inproc, ctx.hangup)))
    }
}

/// The gateway's refusal as the page's: its Warning text when it gave
/// one, else the reason phrase.
fn refusal_of(status: u16, m: &SipMessage) -> Refusal {
    let warning = m.values_named("Warning").next().and_then(|w| {
        let q = w.find('"')?;
        Some(w[q + 1..].trim_end_matches('"').to_string())
    });
    let reason = warning
        .or_else(|| m.reason_phrase().map(str::to_string))
        .unwrap_or_else(|| "the call was refused".into());
    let http = match status {
        404 | 410 | 484 | 604 => 404,
        486 | 480 | 503 | 600 | 603 => 503,
        403 => 403,
        _ => 502,
    };
    Refusal::new(http, reason)
}

/// The call's SIP leg into the gateway.
struct Leg {
    gateway: Arc<Gateway>,
    conn: Connection,
    remote: SocketAddr,
    dialog: Dialog,
    offer: Offer,
}

impl Leg {
    async fn send(&self, b: Bytes) {
        let sent = crate::cvi::inproc::to_gateway(
            &self.gateway,
            &self.conn,
            self.remote,
            self.dialog.local,
            b,
        )
        .await;
        if !sent {
            debug!("a browser call's SIP message did not parse");
        }
    }

    /// The connection is no longer a browser's (the call is over).
    fn forget(&self) {
        lock(&self.gateway.browsers).remove(&self.conn.id);
    }
}

/// The browser's media sections, learnt as str0m adds them.
#[derive(Default)]
struct Mids {
    audio: Option<Mid>,
    video: Option<Mid>,
}

/// A connected call.
struct Live {
    p: Prepared,
    leg: Leg,
    answer: Answer,
    state: Arc<Mutex<CallState>>,
    stats: Arc<Stats>,
    mids: Mids,
    /// Extended sequence numbers towards the browser (audio, video).
    down_seq: [Option<u64>; 2],
    /// The browser's payload type per stream (0 audio, 1 video), found
    /// once from the negotiated codecs (they do not change in a call).
    down_pt: [Option<Pt>; 2],
    connector_video_ssrc: Option<u32>,
    connected: bool,
    tcp_side: TcpSide,
}

/// Why a call ended, as the loop sees it.
enum End {
    /// The page left (or the browser is gone): BYE to the gateway.
    Browser(&'static str),
    /// The gateway hung up (BYE answered).
    Gateway(&'static str),
}

impl Live {
    async fn run(mut self, mut inproc: InProcess, hangup: CancellationToken) {
        let mut b_ice = vec![0u8; 2048];
        let mut b_a = vec![0u8; 2048];
        let mut b_ac = vec![0u8; 2048];
        let mut b_v = vec![0u8; 2048];
        let mut b_vc = vec![0u8; 2048];
        let connect_by = tokio::time::Instant::now() + CONNECT_LIMIT;
        let (frames_tx, mut frames) = mpsc::channel::<(SocketAddr, Vec<u8>)>(256);
        let (mut conns, tcp_addr) = match self.p.tcp.take() {
            Some((rx, route, addr)) => (Some((rx, route)), Some(addr)),
            None => (None, None),
        };
        let end = loop {
            let deadline = match self.drive().await {
                Ok(d) => d,
                Err(e) => break e,
            };
            let video = self.p.video.as_ref();
            tokio::select! {
                _ = hangup.cancelled() => break End::Browser("you left the meeting"),
                _ = tokio::time::sleep_until(connect_by), if !self.connected => {
                    break End::Browser("the browser's media did not connect");
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let _ = self.p.rtc.handle_input(Input::Timeout(Instant::now()));
                }
                r = self.p.ice.recv_from(&mut b_ice) => {
                    if let Ok((n, from)) = r {
                        let to = self.p.ice_addr;
                        self.on_browser_packet(Protocol::Udp, &b_ice[..n], from, to);
                    }
                }
                c = next_conn(conns.as_mut().map(|c| &mut c.0)) => match (c, tcp_addr) {
                    (Some(c), Some(to)) => {
                        let peer = c.peer;
                        let first = self.tcp_side.accept(c, &frames_tx);
                        self.on_browser_packet(Protocol::Tcp, &first, peer, to);
                    }
                    _ => conns = None,
                },
                Some((from, b)) = frames.recv() => {
                    if let Some(to) = tcp_addr {
                        self.on_browser_packet(Protocol::Tcp, &b, from, to);
                    }
                }
                r = self.p.audio.rtp.recv_from(&mut b_a) => {
                    if let Ok((n, _)) = r {
                        self.forward_down(0, &b_a[..n]);
                    }
                }
                _ = self.p.audio.rtcp.recv_from(&mut b_ac) => {}
                r = recv_of(video.map(|v| &v.rtp), &mut b_v) => {
                    if let Some(n) = r {
                        self.forward_down(1, &b_v[..n]);
                    }
                }
                r = recv_of(video.map(|v| &v.rtcp), &mut b_vc) => {
                    if let Some(n) = r && rtp::asks_keyframe(&b_vc[..n]) {
                        self.ask_browser_keyframe();
                    }
                }
                m = inproc.recv() => match m.and_then(crate::cvi::inproc::parse) {
                    Some(m) => if let Some(e) = self.on_sip(m).await { break e },
                    None => break End::Gateway("the gateway closed the call"),
                },
            }
        };
        let why = match end {
            End::Browser(why) => {
                let bye = self.leg.dialog.request("BYE", &random_token(), None);
                self.leg.send(Bytes::from(bye)).await;
                why
            }
            End::Gateway(why) => why,
        };
        info!(remote = %self.leg.remote, reason = why, "browser call ended");
        *lock(&self.state) = CallState::Ended(why.to_string());
        self.leg.forget();
        self.p.rtc.disconnect();
        let _ = self.drive().await;
    }

    /// Sends what str0m has to send and handles its events; the next
    /// time it wants to be woken, or why the call ends.
    async fn drive(&mut self) -> Result<Instant, End> {
        loop {
            match self.p.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Ok(t),
                Ok(Output::Transmit(t)) if t.proto == Protocol::Tcp => {
                    self.tcp_side.send(t.destination, &t.contents);
                }
                Ok(Output::Transmit(t)) => {
                    let _ = self.p.ice.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => {
                    if let Some(end) = self.on_event(e).await {
                        return Err(end);
                    }
                }
                Err(e) => {
                    debug!(error = %e, "browser call: WebRTC failed");
                    return Err(End::Browser("the browser's connection failed"));
                }
            }
        }
    }

    async fn on_event(&mut self, e: Event) -> Option<End> {
        match e {
            Event::Connected => self.connected = true,
            Event::MediaAdded(m) => match m.kind {
                MediaKind::Audio if self.mids.audio.is_none() => self.mids.audio = Some(m.mid),
                MediaKind::Video if self.mids.video.is_none() => self.mids.video = Some(m.mid),
                _ => {}
            },
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Some(End::Browser("the browser's connection was lost"));
            }
            Event::RtpPacket(p) => self.forward_up(&p).await,
            Event::KeyframeRequest(_) => {
                // The browser wants a key frame of the meeting's video.
                if let (Some(v), Some(ssrc)) = (&self.p.video, self.connector_video_ssrc)
                    && let Some(to) = self.answer.video.map(|a| a.rtcp)
                {
                    let _ = v.rtcp.send_to(&rtp::pli(1, ssrc), to).await;
                }
            }
            Event::Closed => return Some(End::Browser("the browser closed the call")),
            _ => {}
        }
        None
    }

    fn on_browser_packet(&mut self, proto: Protocol, b: &[u8], from: SocketAddr, to: SocketAddr) {
        let Ok(contents) = b.try_into() else { return };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto,
                source: from,
                destination: to,
                contents,
            },
        );
        if self.p.rtc.accepts(&input) {
            let _ = self.p.rtc.handle_input(input);
        }
    }

    /// One decrypted RTP packet of the browser's, to the relay.
    async fn forward_up(&mut self, p: &str0m::rtp::RtpPacket) {
        let mid = self
            .p
            .rtc
            .direct_api()
            .stream_rx(&p.header.ssrc)
            .map(|s| s.mid());
        let (sock, to) = match mid {
            Some(m) if Some(m) == self.mids.audio => (&self.p.audio.rtp, self.answer.audio),
            Some(m) if Some(m) == self.mids.video => match &self.p.video {
                Some(v) => (&v.rtp, self.answer.video),
                None => return,
            },
            _ => return,
        };
        let Some(to) = to else { return };
        let out = rtp::build(&rtp::Packet {
            pt: to.payload_type,
            marker: p.header.marker,
            seq: p.header.sequence_number,
            ts: p.header.timestamp,
            ssrc: *p.header.ssrc,
            payload: &p.payload,
        });
        if sock.send_to(&out, to.rtp).await.is_ok() {
            self.stats.packets_up.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One packet from the relay (`k` 0 audio, 1 video), to the browser.
    fn forward_down(&mut self, k: usize, b: &[u8]) {
        let Some(pk) = rtp::parse(b) else { return };
        let Some(mid) = (if k == 0 {
            self.mids.audio
        } else {
            self.mids.video
        }) else {
            return;
        };
        let pt = match self.down_pt[k] {
            Some(pt) => pt,
            None => {
                let Some(pt) = self.browser_pt(mid, k == 1) else {
                    return;
                };
                self.down_pt[k] = Some(pt);
                pt
            }
        };
        if k == 1 {
            self.connector_video_ssrc = Some(pk.ssrc);
        }
        let seq = extend(&mut self.down_seq[k], pk.seq);
        let payload: Arc<[u8]> = Arc::from(pk.payload);
        let mut api = self.p.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        tx.write_rtp(
            RtpWrite::new(pt, SeqNo::from(seq), pk.ts, Instant::now(), payload)
                .marker(pk.marker)
                .nackable(k == 1),
        );
        self.stats.packets_down.fetch_add(1, Ordering::Relaxed);
    }

    /// The payload type the browser takes for the connector's codec.
    fn browser_pt(&self, mid: Mid, video: bool) -> Option<Pt> {
        let remote = self.p.rtc.media(mid)?.remote_pts();
        let want = if video {
            RtcCodec::H264
        } else {
            RtcCodec::PCMU
        };
        self.p
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == want && remote.contains(&p.pt()))
            .map(|p| p.pt())
            .or_else(|| remote.first().copied())
    }

    fn ask_browser_keyframe(&mut self) {
        let Some(mid) = self.mids.video else { return };
        if let Some(rx) = self.p.rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }

    /// A SIP message from the gateway during the call.
    async fn on_sip(&mut self, m: SipMessage) -> Option<End> {
        if m.status().is_some() {
            // Answers to our BYE or retransmitted 200s: a 200 is ACKed again.
            if m.cseq().is_some_and(|c| c.method == "INVITE") && m.status() == Some(200) {
                let ack = self.leg.dialog.ack(&random_token());
                self.leg.send(Bytes::from(ack)).await;
            }
            return None;
        }
        let (status, end) = match m.method() {
            Some(Method::Ack) => return None,
            Some(Method::Bye) => (200, Some(End::Gateway("the meeting ended the call"))),
            Some(Method::Invite) => {
                // The gateway's re-INVITE: our ports stay, the relay's may move.
                let answer = isip::read_answer(m.body());
                if answer.audio.is_some() {
                    self.answer = answer;
                }
                let sdp = isip::offer_sdp(&self.leg.offer, 1);
                let r = ResponseBuilder::new(&m, 200)
                    .header(
                        "Contact",
                        format!("<sip:browser@{};transport=tcp>", self.leg.dialog.local),
                    )
                    .body("application/sdp", Bytes::from(sdp))
                    .build();
                self.leg.send(r).await;
                return None;
            }
            Some(Method::Info) | Some(Method::Options) | Some(Method::Update) => (200, None),
            _ => (501, None),
        };
        let r = ResponseBuilder::new(&m, status).build();
        self.leg.send(r).await;
        end
    }
}

/// Receives on `s` when there is one (else never).
async fn recv_of(s: Option<&UdpSocket>, buf: &mut [u8]) -> Option<usize> {
    match s {
        Some(s) => s.recv_from(buf).await.ok().map(|(n, _)| n),
        None => std::future::pending().await,
    }
}

/// The next ICE-TCP connection for the call (None when the queue is
/// gone; never when there is no ICE-TCP).
async fn next_conn(rx: Option<&mut mpsc::Receiver<Conn>>) -> Option<Conn> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Extends a 16-bit RTP sequence number against the last one seen.
fn extend(last: &mut Option<u64>, seq: u16) -> u64 {
    let next = match *last {
        None => u64::from(seq),
        Some(l) => {
            let delta = i64::from(seq.wrapping_sub(l as u16) as i16);
            (l as i64 + delta).max(0) as u64
        }
    };
    if last.is_none_or(|l| next > l) {
        *last = Some(next);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_extend_across_the_wrap() {
        let mut l = None;
        assert_eq!(extend(&mut l, 65534), 65534);
        assert_eq!(extend(&mut l, 65535), 65535);
        assert_eq!(extend(&mut l, 0), 65536);
        assert_eq!(extend(&mut l, 65535), 65535, "a late packet");
        assert_eq!(extend(&mut l, 1), 65537);
    }
}
