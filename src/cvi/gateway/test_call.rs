//! The test call: the gateway answers the room system itself, plays a
//! prompt, then sends the room's own media back to it for a while.
//!
//! Owns the echo sockets; never calls the connector.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::UdpSocket;

use super::call::Call;
use super::sdp::{choose_audio, echo_sdp};
use super::{Gateway, lock};
use crate::cvi::audio::{self, Prompt};
use crate::media::sdp;

impl Gateway {
    /// The test call: a prompt, then the room system's own media back.
    pub(super) async fn test_call(self: Arc<Self>, call: Arc<Call>, offer: &[u8]) {
        self.stats.test_calls.fetch_add(1, Ordering::Relaxed);
        lock(&call.keys_rx).take();
        let Ok(desc) = sdp::describe(offer) else {
            return;
        };
        let mut socks = Vec::new();
        for s in &desc.streams {
            if !s.relayed || s.port == 0 {
                socks.push(None);
                continue;
            }
            match UdpSocket::bind((self.cfg.player_address, 0)).await {
                Ok(x) => socks.push(Some(Arc::new(x))),
                Err(e) => {
                    self.fail(
                        &call,
                        503,
                        &format!("no media socket for the test call: {e}"),
                    )
                    .await;
                    return;
                }
            }
        }
        if !self.answer_locally(&call, &echo_sdp(offer, &socks)).await {
            return;
        }
        // The prompt first, on the first audio stream, in the codec offered first.
        if let Some((i, codec, _)) = choose_audio(offer, &desc)
            && let (Some(Some(sock)), Some(to)) = (socks.get(i), self.relay_b(&call, i))
        {
            let stop = call.ended.child_token();
            audio::play(
                sock,
                to,
                codec,
                rand::random(),
                (1, 0),
                &audio::prompt(Prompt::TestCall, codec),
                &stop,
            )
            .await;
        }
        for (i, sock) in socks.into_iter().enumerate() {
            let Some(sock) = sock else { continue };
            // Echo only what comes from the relay's ports of this stream
            // (the room's media, from its latched address): anyone else
            // who finds the socket gets nothing back.
            let relay = self.relay_b(&call, i);
            let ended = call.ended.clone();
            tokio::spawn(async move {
                let mut b = vec![0u8; 8192];
                loop {
                    tokio::select! {
                        _ = ended.cancelled() => return,
                        r = sock.recv_from(&mut b) => match r {
                            Ok((n, from)) => {
                                if relay.is_some_and(|r| r.ip() == from.ip() && (from.port() == r.port() || from.port() == r.port() + 1)) {
                                    let _ = sock.send_to(&b[..n], from).await;
                                }
                            }
                            Err(_) => return,
                        },
                    }
                }
            });
        }
        tokio::select! {
            _ = call.ended.cancelled() => {}
            _ = tokio::time::sleep(self.cfg.test_call_time) => {
                self.hang_up(&call, false, "the test call's time is up").await;
            }
        }
    }
}
