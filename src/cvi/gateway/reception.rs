//! The reception: the gateway answers the room system itself, plays a
//! prompt and collects a conference ID (RFC 4733 telephone-events in RTP,
//! or SIP INFO), up to the configured number of tries. Its outcome is
//! `Entered(id)` (a meeting that can be joined) or `GaveUp`.
//!
//! Owns the reception's media socket and prompts; never calls the
//! connector (the gateway does that with the outcome).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::call::Call;
use super::sdp::{choose_audio, player_sdp};
use super::{Gateway, lock};
use crate::cvi::audio::{self, Codec, Prompt};
use crate::cvi::dtmf::{self, Collected, Collector};
use crate::media::sdp;

/// The longest one attempt at the reception may take.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(60);

/// How a reception ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The room entered the ID of a meeting that can be joined now.
    Entered(String),
    /// No valid ID in the tries allowed, or the call ended meanwhile.
    GaveUp,
}

/// A reception in progress: its socket, where the relay takes its audio,
/// and the prompt player's RTP state.
pub(super) struct Reception {
    sock: Arc<UdpSocket>,
    to: SocketAddr,
    codec: Codec,
    ssrc: u32,
    rtp: (u16, u32),
    keys: mpsc::Receiver<char>,
    collector: Collector,
}

impl Gateway {
    /// The reception: prompts and a conference ID, then the meeting.
    pub(super) async fn reception(self: Arc<Self>, call: Arc<Call>, offer: &[u8]) {
        let Some(mut r) = self.open_reception(&call, offer).await else {
            return;
        };
        match r.run(&self, &call).await {
            Outcome::Entered(id) => {
                drop(r);
                self.clone().connect(call, id).await;
            }
            // A call already ended is not hung up again (`hang_up` checks).
            Outcome::GaveUp => self.hang_up(&call, false, "no valid conference ID").await,
        }
    }

    /// Answers the room with the reception's media and starts listening
    /// for key presses; `None` when the call is over.
    async fn open_reception(&self, call: &Arc<Call>, offer: &[u8]) -> Option<Reception> {
        let desc = sdp::describe(offer).ok()?;
        let Some((audio_i, codec, te_pt)) = choose_audio(offer, &desc) else {
            self.fail(call, 488, "the reception speaks G.711 (PCMU or PCMA) audio")
                .await;
            return None;
        };
        let sock = match UdpSocket::bind((self.cfg.player_address, 0)).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.fail(
                    call,
                    503,
                    &format!("no media socket for the reception: {e}"),
                )
                .await;
                return None;
            }
        };
        let local = sock.local_addr().ok()?;
        let player_sdp = player_sdp(&desc, offer, audio_i, local, codec, te_pt);
        if !self.answer_locally(call, &player_sdp).await {
            return None;
        }
        let to = self.relay_b(call, audio_i)?;
        // Key presses in RTP reach the collector with those from SIP INFO.
        if let Some(pt) = te_pt {
            listen_for_keys(sock.clone(), pt, call);
        }
        let keys = lock(&call.keys_rx).take()?;
        Some(Reception {
            sock,
            to,
            codec,
            ssrc: rand::random(),
            rtp: (rand::random::<u16>(), rand::random::<u32>()),
            keys,
            collector: Collector::new(self.cfg.digit_pause, 10),
        })
    }
}

/// Turns the telephone-events (payload type `pt`) arriving on `sock` into
/// the call's key presses, until the call ends.
fn listen_for_keys(sock: Arc<UdpSocket>, pt: u8, call: &Call) {
    let (keys, ended) = (call.keys.clone(), call.ended.clone());
    tokio::spawn(async move {
        let mut b = vec![0u8; 2048];
        let mut presses = Presses::default();
        loop {
            tokio::select! {
                _ = ended.cancelled() => return,
                r = sock.recv_from(&mut b) => match r {
                    Ok((n, _)) => {
                        if let Some(e) = dtmf::rtp_event(&b[..n], pt)
                            && let Some(d) = presses.packet(e, tokio::time::Instant::now())
                        {
                            let _ = keys.try_send(d);
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    });
}

impl Reception {
    /// Prompts, entries and their checks, until a meeting is found or the
    /// tries are used up (then the goodbye prompt).
    pub(super) async fn run(&mut self, gw: &Gateway, call: &Call) -> Outcome {
        let mut prompt = Prompt::Welcome;
        for attempt in 0..gw.cfg.tries {
            let Some(entry) = self.attempt(gw, call, prompt).await else {
                return Outcome::GaveUp;
            };
            info!(call_id = %call.room.call_id, attempt = attempt + 1, entered = %entry, "conference ID entered");
            match gw.try_id(call, &entry).await {
                Ok(()) => {
                    self.play(call, Prompt::Connecting).await;
                    return Outcome::Entered(entry);
                }
                // Locked out (or the database down): no more tries now.
                Err((503, _, _)) => break,
                // Unknown, ended or withdrawn: the same prompt for each.
                Err(_) => prompt = Prompt::Invalid,
            }
        }
        self.play(call, Prompt::Goodbye).await;
        Outcome::GaveUp
    }

    /// Plays a prompt to the end (or until the call ends).
    async fn play(&self, call: &Call, prompt: Prompt) {
        let stop = call.ended.child_token();
        audio::play(
            &self.sock,
            self.to,
            self.codec,
            self.ssrc,
            self.rtp,
            &audio::prompt(prompt, self.codec),
            &stop,
        )
        .await;
    }

    /// One attempt: `prompt` plays until the first key (barge-in), then the
    /// keys make an entry (empty when none came); `None` when the call ended.
    async fn attempt(&mut self, gw: &Gateway, call: &Call, prompt: Prompt) -> Option<String> {
        let stop = CancellationToken::new();
        let samples = audio::prompt(prompt, self.codec);
        let playing = {
            let (sock, stop) = (self.sock.clone(), stop.clone());
            let (to, codec, ssrc, rtp) = (self.to, self.codec, self.ssrc, self.rtp);
            tokio::spawn(
                async move { audio::play(&sock, to, codec, ssrc, rtp, &samples, &stop).await },
            )
        };
        // Each attempt ends within a minute whatever keys arrive (a
        // room sending `*` for ever must not hold a call slot).
        let give_up = tokio::time::Instant::now() + ATTEMPT_LIMIT;
        let collector = &mut self.collector;
        let entry = loop {
            let wait = if collector.started() {
                gw.cfg.digit_pause
            } else {
                Duration::from_secs(20) + gw.cfg.digit_pause
            };
            tokio::select! {
                _ = call.ended.cancelled() => { stop.cancel(); return None; }
                k = self.keys.recv() => {
                    let Some(k) = k else { stop.cancel(); return None };
                    stop.cancel();
                    if let Collected::Entry(e) = collector.key(k) { break e; }
                }
                _ = tokio::time::sleep(wait) => {
                    if let Collected::Entry(e) = collector.timeout() { break e; }
                    if !collector.started() { break String::new(); }
                }
                _ = tokio::time::sleep_until(give_up) => {
                    match collector.timeout() {
                        Collected::Entry(e) => break e,
                        Collected::More => break String::new(),
                    }
                }
            }
        };
        stop.cancel();
        if let Ok(next) = playing.await {
            self.rtp = next;
        }
        Some(entry)
    }
}

/// Turns the RTP packets of telephone-events into key presses: every
/// packet of one press carries the same digit and timestamp (RFC 4733
/// §2.5.1.2), so a press is counted once. A press replayed with the same
/// timestamp counts again after a silence (recorded key presses do this).
#[derive(Debug, Default)]
struct Presses {
    last: Option<(char, u32, tokio::time::Instant)>,
}

impl Presses {
    const SILENCE: Duration = Duration::from_millis(150);

    fn packet(&mut self, e: dtmf::Event, now: tokio::time::Instant) -> Option<char> {
        let digit = e.digit.to_ascii_uppercase();
        let same = self.last.is_some_and(|(d, ts, at)| {
            d == digit && ts == e.timestamp && now.duration_since(at) < Self::SILENCE
        });
        self.last = Some((digit, e.timestamp, now));
        // The end packets of a press that was never heard still count it.
        (!same).then_some(digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_presses_from_rtp() {
        let t0 = tokio::time::Instant::now();
        let ev = |digit, timestamp, end| dtmf::Event {
            timestamp,
            digit,
            end,
        };
        let mut p = Presses::default();
        let mut got = String::new();
        let mut at = |p: &mut Presses, e, ms: u64| {
            if let Some(d) = p.packet(e, t0 + Duration::from_millis(ms)) {
                got.push(d);
            }
        };
        // One press: seven packets and three end packets, 20 ms apart.
        for i in 0..10u64 {
            at(&mut p, ev('1', 13280, i >= 7), i * 20);
        }
        // The same recording again after a pause: a second press.
        for i in 0..10u64 {
            at(&mut p, ev('1', 13280, i >= 7), 500 + i * 20);
        }
        // Another digit right after, then one with a new timestamp.
        at(&mut p, ev('2', 13280, false), 700);
        at(&mut p, ev('2', 16000, false), 720);
        at(&mut p, ev('2', 16000, true), 740);
        assert_eq!(got, "1122");
    }
}
