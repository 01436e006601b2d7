//! A packet capture on the loopback interface for the interop tests:
//! dumpcap in its own process group, proven started and proven flushed by
//! probe datagrams rather than by sleeps, read back with tshark.
//!
//! It never captures outside the loopback interface of the calling
//! thread's network namespace, and stops its dumpcap by PID, never by name.

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::kill_group;

/// A packet capture on the loopback interface (dumpcap), stopped by its
/// PID; read back with tshark. Its start and stop are proven rather than
/// waited for: a probe datagram to a port of its own must be in the file
/// before `start` returns (the filter is in place) and a second one before
/// `stop` signals dumpcap (everything sent before it has been written).
pub struct Capture {
    child: Option<Child>,
    pub file: PathBuf,
    /// The probe's receiving socket (kept open so that its port stays
    /// ours) and the socket that sends to it.
    probe: Option<(UdpSocket, UdpSocket)>,
}

/// How long dumpcap gets to show a probe in its file (its filter goes in
/// place a moment after it says "Capturing on"; it writes out at least
/// every 100 ms).
const PROBE_WAIT: Duration = Duration::from_secs(20);

impl Capture {
    /// Starts capturing `filter` (a capture filter) on `lo` into `file`,
    /// and returns once a probe datagram has been captured.
    pub fn start(file: &Path, filter: &str) -> Capture {
        let sink = UdpSocket::bind("127.0.0.1:0").expect("a probe port on loopback");
        let sender = UdpSocket::bind("127.0.0.1:0").expect("a probe sender on loopback");
        let port = sink.local_addr().expect("the probe's address").port();
        let filter = format!("({filter}) or (udp and dst port {port} and dst host 127.0.0.1)");
        let mut child = Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f", &filter, "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("dumpcap is installed (with tshark)");
        // dumpcap says "Capturing on 'Loopback: lo'" once it captures.
        let mut err = BufReader::new(child.stderr.take().expect("dumpcap's stderr"));
        let mut line = String::new();
        let _ = err.read_line(&mut line);
        assert!(
            line.contains("Capturing on"),
            "dumpcap did not start: {line}"
        );
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        let mut capture = Capture {
            child: Some(child),
            file: file.to_path_buf(),
            probe: Some((sink, sender)),
        };
        capture.probe("start");
        capture
    }

    /// Sends a probe datagram marked `what` every 50 ms until dumpcap's
    /// file holds it; panics after [`PROBE_WAIT`].
    fn probe(&mut self, what: &str) {
        let Some((sink, sender)) = &self.probe else {
            return;
        };
        let to = sink.local_addr().expect("the probe's address");
        let mark = format!("fedge-capture-probe-{what}-{:016x}", rand::random::<u64>());
        let deadline = Instant::now() + PROBE_WAIT;
        // The probe can only be written after what the file holds now.
        let from = std::fs::metadata(&self.file).map_or(0, |m| m.len() as usize);
        loop {
            let _ = sender.send_to(mark.as_bytes(), to);
            std::thread::sleep(Duration::from_millis(50));
            let seen = std::fs::read(&self.file).is_ok_and(|b| {
                b.get(from..)
                    .is_some_and(|tail| tail.windows(mark.len()).any(|w| w == mark.as_bytes()))
            });
            if seen {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dumpcap did not capture its {what} probe within {PROBE_WAIT:?} ({})",
                self.file.display()
            );
        }
    }

    /// Stops the capture once everything sent so far is in the file (a
    /// last probe), then SIGINT: dumpcap writes out what it holds.
    pub fn stop(&mut self) {
        // A failing test's capture is stopped as it is (no probe, whose
        // own failure would panic again).
        if self.child.is_some() && !std::thread::panicking() {
            self.probe("stop");
            self.probe = None;
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_group(&mut child);
        }
    }

    /// tshark's `-T fields` output of the capture: one row per packet
    /// matching `display_filter`, `fields` separated by `|`; `decode` are
    /// `-d` arguments (`udp.port==50000,rtp`).
    pub fn fields(
        &mut self,
        decode: &[String],
        display_filter: &str,
        fields: &[&str],
    ) -> Vec<Vec<String>> {
        self.stop();
        let mut cmd = Command::new("tshark");
        cmd.arg("-n").arg("-r").arg(&self.file);
        for d in decode {
            cmd.args(["-d", d]);
        }
        cmd.args(["-Y", display_filter, "-T", "fields", "-E", "separator=|"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .expect("tshark is installed (.ci/test installs it)");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
        // A failing test's capture outlives its temporary directory.
        if std::thread::panicking()
            && let Some(name) = self.file.file_name()
        {
            let keep = std::env::temp_dir().join(name);
            if std::fs::copy(&self.file, &keep).is_ok() {
                eprintln!("capture kept in {}", keep.display());
            }
        }
    }
}
