//! The CVI harness's H.323 parts: an edge with H.323 on, the connector an
//! H.323 room's call reaches (audio, or audio and H.264), the call's
//! loopback capture checked by tshark's H.225/H.245 dissectors, the wait
//! for the room's media at the connector, and the relay's stream ports.
//!
//! It never decides whether fedge is right beyond what a caller asks (the
//! wire check fails on what tshark calls malformed or on a missing
//! message), never binds a fixed port, and stops only what it started.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Cvi, H323_ON, RELAY, wait_for};
use crate::admin::admin_get;
use crate::capture::Capture;
use crate::h323::{RoomResult, WireReport, check_h323};
use crate::lab::{ereg, refs};
use crate::peers::Sipp;
use crate::rtp::{udp_rx_queue, write_pcap};

impl Cvi {
    /// An edge with H.323 on ([`H323_ON`]) and `overrides` in `[cvi]`;
    /// fails unless its H.323 listener is logged.
    pub fn start_h323(overrides: &[(&str, &str)]) -> Cvi {
        let mut all: Vec<(&str, &str)> = H323_ON.to_vec();
        all.extend_from_slice(overrides);
        let cvi = Cvi::start(&all);
        // The listener is logged: its address is what the rooms dial.
        let _: SocketAddr = cvi.h323_listener("tcp");
        cvi
    }

    /// The meeting's audio the connector plays (PCMA, SSRC 0x22222222),
    /// written to `meeting.pcap` in the test's directory.
    pub fn meeting_pcap(&self) -> PathBuf {
        let pcap = self.dir().join("meeting.pcap");
        write_pcap(&pcap, 0x2222_2222, 0xbb, 150);
        pcap
    }

    /// The connector for an H.323 room's call to meeting `id`: checks the
    /// INVITE's Request-URI names the meeting, answers with audio (and
    /// H.264 with `video`), plays the meeting's PCMA, then `end`; its
    /// media port.
    pub fn h323_connector(&self, id: &str, video: bool, end: &str) -> (Sipp, u16) {
        let checks = ereg(
            &format!("^INVITE sip:{id}@connector\\.fedge\\.test;transport=tcp SIP/2\\.0"),
            "msg",
            "ruri",
            false,
        );
        let template = if video {
            "cvi_h323_connector_uas.xml"
        } else {
            "cvi_connector_uas.xml"
        };
        let pcap = self.meeting_pcap();
        self.connector_with(template, &checks, &refs(&["ruri"]), &pcap, end)
    }

    /// A capture of the call's traffic on loopback, in the test's
    /// directory as `name`.
    pub fn capture(&self, name: &str) -> Capture {
        Capture::start(&self.dir().join(name), "tcp or udp")
    }

    /// Stops `cap` and has tshark decode the room's wire (its ports and
    /// the edge's H.323 listener): fails if anything is malformed.
    pub fn wire(&self, mut cap: Capture, room: &RoomResult) -> WireReport {
        cap.stop();
        let mut ports = room.ports();
        ports.push(self.h323_listener("tcp").port());
        let report = check_h323(&cap.file, &ports).expect("tshark runs");
        assert!(report.is_clean(), "tshark: {report:?}");
        report
    }

    /// The room's wire is clean and has the H.225 messages `want`.
    pub fn wire_check(&self, cap: Capture, room: &RoomResult, want: &[&str]) {
        self.wire_check_h245(cap, room, want, &[]);
    }

    /// The same, and the H.245 messages `want_h245` seen (tunnelled or on
    /// a separate channel).
    pub fn wire_check_h245(
        &self,
        cap: Capture,
        room: &RoomResult,
        want: &[&str],
        want_h245: &[&str],
    ) {
        let report = self.wire(cap, room);
        for w in want {
            assert!(report.has_h225(w), "{w} not on the wire: {report:?}");
        }
        for w in want_h245 {
            assert!(report.has_h245(w), "H.245 {w} not on the wire: {report:?}");
        }
    }

    /// Waits until the connector's audio socket `media` (and with `video`
    /// its video socket, `media + 2`) has what the room sent through the
    /// relay (SIPp does not read its media sockets: what arrived waits
    /// there).
    pub fn media_at_connector(&self, media: u16, video: bool, within: Duration) {
        let t0 = Instant::now();
        while udp_rx_queue(media).unwrap_or(0) == 0
            || (video && udp_rx_queue(media + 2).unwrap_or(0) == 0)
        {
            assert!(
                t0.elapsed() < within,
                "audio {:?} and video {:?} at the connector\nfedge:\n{}",
                udp_rx_queue(media),
                udp_rx_queue(media + 2),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The relay's address of stream `i` towards side `side` (0: the room,
    /// 1: the connector), once the call's session has `n` streams.
    pub fn relay_port(&self, n: usize, i: usize, side: usize) -> SocketAddr {
        let mut port = 0;
        wait_for(self, "the relay's streams", Duration::from_secs(20), || {
            let v = admin_get(self.edge.admin, "/cvi");
            let streams = &v["media"][0]["streams"];
            if streams.as_array().map_or(0, Vec::len) == n {
                port = streams[i][side]["port"].as_u64().unwrap_or(0) as u16;
            }
            port != 0
        });
        SocketAddr::from((RELAY, port))
    }
}
