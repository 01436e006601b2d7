//! The H.323 side of the CVI tests: the Python room system
//! (tests/h323/room.py, on pycrate's ASN.1 codec, independent of fedge's)
//! started with arguments and read back from its JSON result, the test-only
//! gateway stand-in (tests/h323/responder.py) for the room's self-test,
//! and the wire check: tshark's H.225/H.245/RTP dissectors run over a
//! loopback capture, reporting message names, RTP per payload type and
//! every malformed packet or warning.
//!
//! Each Python process is stopped by its own PID on drop, never by name.
//! Nothing here captures or sends outside the loopback interface, and it
//! never decides whether fedge is right: tests assert on what it reports.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::workspace_root;

/// Expert severities tshark reports (epan/proto.h: PI_WARN, PI_ERROR).
const PI_WARN: u64 = 0x0060_0000;
/// The expert group of TCP's own sequence analysis (PI_SEQUENCE): resets
/// and retransmissions on loopback say nothing about H.323.
const PI_SEQUENCE: u64 = 0x0200_0000;

/// The room's script.
pub fn room_script() -> PathBuf {
    workspace_root().join("tests/h323/room.py")
}

/// Why the wire check could not run (not what it found).
#[derive(Debug)]
pub struct CheckError(pub String);

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h323 wire check: {}", self.0)
    }
}

impl std::error::Error for CheckError {}

/// One warning or error tshark's expert system raised.
#[derive(Debug, Clone)]
pub struct Expert {
    pub frame: u32,
    pub severity: u64,
    pub group: u64,
    pub message: String,
}

/// One H.323 signalling frame as tshark dissected it.
#[derive(Debug, Clone)]
pub struct WireFrame {
    pub number: u32,
    /// `eth:ethertype:ip:tcp:q931:q931:h225:h245`
    pub protocols: String,
    /// The Info column: `CS: empty terminalCapabilitySet`.
    pub info: String,
}

/// What tshark saw in an H.323 capture.
#[derive(Debug, Default, Clone)]
pub struct WireReport {
    /// Frames carrying Q.931, H.225 or H.245.
    pub frames: Vec<WireFrame>,
    /// H.225 message bodies in order (`setup`, `connect`, `empty`, ...).
    pub h225: Vec<String>,
    /// H.245 messages in order, tunnelled or not (`terminalCapabilitySet`,
    /// `userInput`, `endSessionCommand`, ...).
    pub h245: Vec<String>,
    /// RTP packets per payload type.
    pub rtp: BTreeMap<u8, usize>,
    /// Frames tshark called malformed.
    pub malformed: Vec<u32>,
    /// Expert items of warning or error severity (TCP sequence analysis
    /// left out).
    pub problems: Vec<Expert>,
    /// Frames with TCP payload on one of the given ports that no H.323
    /// dissector took.
    pub undissected: Vec<u32>,
}

impl WireReport {
    /// Nothing malformed, no warning, nothing left undissected.
    pub fn is_clean(&self) -> bool {
        self.malformed.is_empty() && self.problems.is_empty() && self.undissected.is_empty()
    }

    pub fn has_h225(&self, name: &str) -> bool {
        self.h225.iter().any(|n| n == name)
    }

    pub fn has_h245(&self, name: &str) -> bool {
        self.h245.iter().any(|n| n == name)
    }

    /// RTP packets seen with payload type `pt`.
    pub fn rtp_count(&self, pt: u8) -> usize {
        self.rtp.get(&pt).copied().unwrap_or(0)
    }
}

const FIELDS: &[&str] = &[
    "frame.number",
    "frame.protocols",
    "_ws.col.Info",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.len",
    "rtp.p_type",
    "_ws.malformed",
    "_ws.expert.severity",
    "_ws.expert.group",
    "_ws.expert.message",
    "udp.srcport",
    "udp.dstport",
];

fn tshark_rows(pcap: &Path, h245_ports: &[u16]) -> Result<Vec<Vec<String>>, CheckError> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap);
    // Q.931 over TPKT is found by its heuristic on any port (a decode-as
    // of the port to tpkt would stop there); RTP by the H.245 channels,
    // and by its heuristic for what those do not announce.
    cmd.args(["--enable-heuristic", "rtp_udp"]);
    for p in h245_ports {
        cmd.args(["-d", &format!("tcp.port=={p},h245")]);
    }
    cmd.args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CheckError(format!("tshark: {e}")))?;
    if !out.status.success() {
        return Err(CheckError(format!(
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

fn num(s: &str) -> u64 {
    let s = s.trim();
    s.strip_prefix("0x")
        .map(|h| u64::from_str_radix(h, 16).unwrap_or(0))
        .unwrap_or_else(|| s.parse().unwrap_or(0))
}

/// The H.225 and H.245 names in an Info column (`CS: setup OpenLogicalChannel`,
/// `CS: empty userInput`, several `CS:` when one segment carries several
/// messages, or a bare `terminalCapabilitySet` on an H.245 connection).
/// tshark writes an H.239 message as `presentationTokenRequestgenericRequest`:
/// both names are kept.
fn names_of(protocols: &str, info: &str, report: &mut WireReport) {
    let h245 = protocols.contains(":h245");
    let mut push_h245 = |word: &str| {
        for generic in [
            "genericRequest",
            "genericResponse",
            "genericCommand",
            "genericIndication",
        ] {
            if let Some(prefix) = word.strip_suffix(generic)
                && !prefix.is_empty()
            {
                report.h245.push(prefix.to_string());
                report.h245.push(generic.to_string());
                return;
            }
        }
        report.h245.push(word.to_string());
    };
    let words: Vec<&str> = info
        .split_whitespace()
        .filter(|w| !w.starts_with('[') && !w.starts_with('('))
        .collect();
    if !protocols.contains(":h225") {
        if h245 {
            words.iter().for_each(|w| push_h245(w));
        }
        return;
    }
    let mut h225 = Vec::new();
    for message in words.split(|w| *w == "CS:").skip(1) {
        let Some((body, rest)) = message.split_first() else {
            continue;
        };
        h225.push(body.to_string());
        if h245 {
            rest.iter().for_each(|w| push_h245(w));
        }
    }
    report.h225.extend(h225);
}

fn analyse(rows: &[Vec<String>], ports: &[u16]) -> WireReport {
    let mut report = WireReport::default();
    for row in rows {
        let col = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let number = num(col(0)) as u32;
        let protocols = col(1);
        // Loopback is shared with every other test: only the call's ports.
        let on_ports = [3, 4, 11, 12].iter().any(|&i| {
            col(i)
                .split(';')
                .any(|p| !p.is_empty() && ports.contains(&(num(p) as u16)))
        });
        if !ports.is_empty() && !on_ports {
            continue;
        }
        let h323 = [":q931", ":h225", ":h245"]
            .iter()
            .any(|p| protocols.contains(p));
        if h323 {
            names_of(protocols, col(2), &mut report);
            report.frames.push(WireFrame {
                number,
                protocols: protocols.to_string(),
                info: col(2).to_string(),
            });
        } else if num(col(5)) > 0 {
            let (src, dst) = (num(col(3)) as u16, num(col(4)) as u16);
            if ports.contains(&src) || ports.contains(&dst) {
                report.undissected.push(number);
            }
        }
        if protocols.contains(":rtp") {
            for pt in col(6).split(';').filter(|s| !s.is_empty()) {
                *report.rtp.entry(num(pt) as u8).or_default() += 1;
            }
        }
        if !col(7).is_empty() {
            report.malformed.push(number);
        }
        let severities: Vec<&str> = col(8).split(';').collect();
        let groups: Vec<&str> = col(9).split(';').collect();
        let messages: Vec<&str> = col(10).split(';').collect();
        for (i, sev) in severities.iter().enumerate() {
            let severity = num(sev);
            let group = num(groups.get(i).copied().unwrap_or(""));
            if severity >= PI_WARN && group != PI_SEQUENCE {
                report.problems.push(Expert {
                    frame: number,
                    severity,
                    group,
                    message: messages.get(i).copied().unwrap_or("").to_string(),
                });
            }
        }
    }
    report
}

/// Runs tshark over `pcap` and reports the H.323 in it. `ports` are the
/// call's ports (TCP signalling, any separate H.245 connection, UDP media:
/// the gateway's port plus `RoomResult::ports`); frames on no such port are
/// left out (loopback is shared with other tests), all frames when empty.
/// TCP payload on them that tshark leaves as bare data is decoded again as
/// H.245 (TPKT); what still is not dissected is in `undissected`.
pub fn check_h323(pcap: &Path, ports: &[u16]) -> Result<WireReport, CheckError> {
    let rows = tshark_rows(pcap, &[])?;
    let first = analyse(&rows, ports);
    if first.undissected.is_empty() {
        return Ok(first);
    }
    // Ports whose payload stayed bare data: a separate H.245 connection
    // tshark did not learn from an h245Address.
    let mut h245_ports: Vec<u16> = Vec::new();
    for row in &rows {
        let number = row.first().map(|s| num(s) as u32).unwrap_or(0);
        if !first.undissected.contains(&number) {
            continue;
        }
        for i in [3, 4] {
            let p = row.get(i).map(|s| num(s) as u16).unwrap_or(0);
            if ports.contains(&p) && !h245_ports.contains(&p) {
                h245_ports.push(p);
            }
        }
    }
    let rows = tshark_rows(pcap, &h245_ports)?;
    Ok(analyse(&rows, ports))
}

/// What a room run ended with: its exit code, its JSON result and stderr.
#[derive(Debug, Clone)]
pub struct RoomResult {
    pub code: Option<i32>,
    pub json: Value,
    pub stderr: String,
}

impl RoomResult {
    /// The room's own verdict: the dialogue completed as asked.
    pub fn ok(&self) -> bool {
        self.code == Some(0) && self.json["ok"] == Value::Bool(true)
    }

    fn names(&self, key: &str) -> Vec<String> {
        self.json[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Messages the room sent (`setup`, `h245:userInput`, ...).
    pub fn sent(&self) -> Vec<String> {
        self.names("sent")
    }

    /// Messages the room received (`connect`, `h245:terminalCapabilitySet`, ...).
    pub fn received(&self) -> Vec<String> {
        self.names("received")
    }

    /// RTP packets the room sent with payload type `pt`.
    pub fn rtp_sent(&self, pt: u8) -> u64 {
        self.json["rtp"]["sent"][pt.to_string()]
            .as_u64()
            .unwrap_or(0)
    }

    /// RTP packets the room received with payload type `pt`.
    pub fn rtp_received(&self, pt: u8) -> u64 {
        self.json["rtp"]["received"][pt.to_string()]
            .as_u64()
            .unwrap_or(0)
    }

    /// The Q.931 cause of the gateway's ReleaseComplete, when it sent one.
    pub fn cause(&self) -> Option<u64> {
        self.json["cause"].as_u64()
    }

    /// Every port of the call the room reports: its signalling and H.245
    /// ends (both sides of H.245), its RTP/RTCP sockets and where it sent
    /// RTP. With the gateway's port, what `check_h323` should look at.
    pub fn ports(&self) -> Vec<u16> {
        let r = &self.json;
        let mut addrs: Vec<&Value> =
            vec![&r["signal_local"], &r["h245"]["local"], &r["h245"]["peer"]];
        for key in ["local", "local_rtcp", "sent_to", "received_from"] {
            if let Some(map) = r["rtp"][key].as_object() {
                addrs.extend(map.values());
            }
        }
        let mut ports: Vec<u16> = addrs
            .iter()
            .filter_map(|v| v.as_str())
            .filter_map(|a| a.rsplit(':').next()?.parse().ok())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The H.225 releaseCompleteReason the gateway gave.
    pub fn reason(&self) -> Option<String> {
        self.json["reason"].as_str().map(str::to_string)
    }
}

/// A running room system (tests/h323/room.py), stopped by its PID on drop.
pub struct Room {
    child: Option<Child>,
    out: PathBuf,
}

impl Room {
    /// Calls `dial` at `gateway`; `extra` are further room.py arguments
    /// (`--digits 123#`, `--video`, `--hangup gateway`, `--timeout 15`, ...).
    /// The JSON result goes to `dir`.
    pub fn start(dir: &Path, gateway: SocketAddr, dial: &str, extra: &[&str]) -> Room {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = dir.join(format!("room-{}-{n}.json", std::process::id()));
        let child = Command::new("python3")
            .arg(room_script())
            .args(["--gateway", &gateway.to_string(), "--dial", dial, "--out"])
            .arg(&out)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs tests/h323/room.py (pycrate: .ci/test installs it)");
        Room {
            child: Some(child),
            out,
        }
    }

    /// Waits (at most `within`) for the room to finish and reads its result;
    /// a room still running then is stopped and reported with no code.
    pub fn wait(mut self, within: Duration) -> RoomResult {
        let mut child = self.child.take().expect("a room is waited for once");
        let deadline = Instant::now() + within;
        let mut code = None;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                code = status.code();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if code.is_none() {
            let _ = child.kill();
        }
        // Reaps it (a finished child returns its status again).
        let _ = child.wait();
        let mut stderr = String::new();
        if let Some(err) = child.stderr.take() {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                stderr.push_str(&line);
                stderr.push('\n');
            }
        }
        let json = std::fs::read_to_string(&self.out)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        RoomResult { code, json, stderr }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The test-only gateway stand-in (tests/h323/responder.py): answers one
/// call; stopped by its PID on drop.
pub struct Responder {
    child: Child,
    pub addr: SocketAddr,
}

impl Responder {
    /// Starts it with `extra` arguments (`--release-after 1`, `--no-tunnel`).
    pub fn start(extra: &[&str]) -> Responder {
        let mut child = Command::new("python3")
            .arg(workspace_root().join("tests/h323/responder.py"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs tests/h323/responder.py");
        let mut line = String::new();
        if let Some(out) = child.stdout.as_mut() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("responder did not start: {line:?}"));
        Responder {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_columns_give_h225_and_h245_names() {
        let mut r = WireReport::default();
        names_of(
            "eth:ip:tcp:q931:q931:h225",
            "CS: setup OpenLogicalChannel ",
            &mut r,
        );
        names_of(
            "eth:ip:tcp:q931:q931:h225:h245",
            "CS: empty terminalCapabilitySet masterSlaveDetermination",
            &mut r,
        );
        names_of("eth:ip:tcp:tpkt:h245", "userInput ", &mut r);
        assert_eq!(r.h225, ["setup", "empty"]);
        assert_eq!(
            r.h245,
            [
                "terminalCapabilitySet",
                "masterSlaveDetermination",
                "userInput"
            ]
        );
    }

    #[test]
    fn warnings_count_but_tcp_sequence_notes_do_not() {
        let row = |sev: &str, group: &str| -> Vec<String> {
            [
                "7",
                "eth:ip:tcp:q931:q931:h225",
                "CS: connect",
                "1",
                "2",
                "10",
                "",
                "",
                sev,
                group,
                "m",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let r = analyse(&[row("6291456", "117440512")], &[]);
        assert_eq!(r.problems.len(), 1);
        let r = analyse(&[row("6291456", "33554432")], &[]);
        assert!(r.problems.is_empty());
    }
}
