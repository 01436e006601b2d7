//! HEP3 capture (`[capture] hep`) end to end: a partner user's MESSAGE goes
//! through Kamailio (the partner's edge, mutual TLS) and fedge to the home
//! pool (SIPp over UDP), and fedge sends a HEP3 copy of each message it
//! receives and sends.
//!
//! Receivers: the test's own UDP socket (decoded with fedge's codec, every
//! field checked), and sngrep (Debian's, an independent HEP3 decoder) with
//! its `-O` pcap dissected by tshark. Debian's tshark 4.0 has no HEP
//! dissector, so tshark reads what sngrep decoded, not the HEP itself.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fedge::sip::hep::{self, HepPacket};
use fedge::sip::transport::Transport;
use fedge_testkit::lab::{Lab, localhost};
use fedge_testkit::peers::free_port;
use fedge_testkit::*;

const PASSWORD: &str = "hep-s3cret";

fn capture_section(port: u16, extra: &str) -> String {
    format!(
        "\n[capture]\nhep = \"udp:127.0.0.1:{port}\"\ncapture_id = 4242\npassword = \"{PASSWORD}\"\n{extra}"
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The datagrams `sock` receives until `done` holds of them or `limit`
/// passes.
fn collect(
    sock: &UdpSocket,
    limit: Duration,
    done: impl Fn(&[HepPacket]) -> bool,
) -> Vec<HepPacket> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline && !done(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(hep::decode(&buf[..n]).unwrap_or_else(|e| panic!("not HEP3: {e}")));
        }
    }
    got
}

fn start_line(p: &HepPacket) -> String {
    let s = String::from_utf8_lossy(&p.payload);
    s.lines().next().unwrap_or("").to_string()
}

/// The Call-ID of the MESSAGE among `got`, and that dialog's packets.
fn message_dialog(got: &[HepPacket]) -> Option<(String, Vec<&HepPacket>)> {
    let id = got
        .iter()
        .find(|p| start_line(p).starts_with("MESSAGE "))?
        .correlation_id
        .clone()?;
    let dialog = got
        .iter()
        .filter(|p| p.correlation_id.as_deref() == Some(id.as_str()))
        .collect();
    Some((id, dialog))
}

#[test]
fn hep_copies_of_a_message_dialog_carry_real_addresses_and_transports() {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = collector.local_addr().unwrap().port();
    let lab = Lab::with(&capture_section(port, ""), Some("enabled"));
    let t0 = now_secs();
    lab.message_delivered("bob", "MESSAGE through the edge with capture on");
    let got = collect(&collector, Duration::from_secs(10), |g| {
        message_dialog(g).is_some_and(|(_, d)| d.len() >= 4)
    });
    let t1 = now_secs();
    let (call_id, dialog) = message_dialog(&got).expect("no HEP copy of the MESSAGE");
    assert_eq!(
        dialog.len(),
        4,
        "MESSAGE in and out, 200 in and out: {dialog:#?}"
    );
    let home = localhost(lab.home);
    let fed = lab.edge.federation;
    let int = lab.edge.internal;
    for p in &dialog {
        assert_eq!(p.capture_id, 4242);
        assert_eq!(p.auth_key.as_deref(), Some(PASSWORD));
        assert_eq!(p.proto_type, hep::PROTO_SIP);
        assert!(
            (t0..=t1).contains(&u64::from(p.time_sec)),
            "time {} outside {t0}..={t1}",
            p.time_sec
        );
        let text = String::from_utf8_lossy(&p.payload);
        assert!(text.contains(&format!("Call-ID: {call_id}")), "{text}");
    }
    // In the order the edge saw them (each copy is stamped when read or
    // written, and the sender keeps the queue's order).
    let (m_in, m_out, ok_in, ok_out) = (dialog[0], dialog[1], dialog[2], dialog[3]);
    assert!(start_line(m_in).starts_with("MESSAGE sip:bob@fedge.test"));
    assert_eq!(
        m_in.dst, fed,
        "partner -> edge goes to the federation listener"
    );
    assert_eq!(m_in.src.ip(), fed.ip());
    assert_ne!(m_in.src, fed);
    assert_eq!(m_in.ip_proto, hep::IPPROTO_TCP);
    assert_eq!(m_in.transport(), Some(Transport::Tls));

    assert!(start_line(m_out).starts_with("MESSAGE "));
    assert_eq!(
        (m_out.src, m_out.dst),
        (int, home),
        "edge -> home pool over UDP"
    );
    assert_eq!(m_out.transport(), Some(Transport::Udp));

    assert_eq!(start_line(ok_in), "SIP/2.0 200 OK");
    assert_eq!((ok_in.src, ok_in.dst), (home, int));
    assert_eq!(ok_in.transport(), Some(Transport::Udp));

    assert_eq!(start_line(ok_out), "SIP/2.0 200 OK");
    assert_eq!(
        (ok_out.src, ok_out.dst),
        (fed, m_in.src),
        "the 200 back on the partner's connection"
    );
    assert_eq!(ok_out.transport(), Some(Transport::Tls));

    let when = |p: &HepPacket| (p.time_sec, p.time_usec);
    assert!(when(m_in) <= when(m_out) && when(m_out) <= when(ok_in) && when(ok_in) <= when(ok_out));
    assert!(metric(lab.edge.admin, "fedge_capture_sent_total", &[]) >= 4.0);
    assert_eq!(
        metric(lab.edge.admin, "fedge_capture_dropped_total", &[]),
        0.0
    );
    // The password is in no log line and not in `fedge config show`.
    assert!(!lab.edge.logs().iter().any(|l| l.contains(PASSWORD)));
    let shown = fedge_ok(&lab.edge.config_path, &["config", "show"]);
    assert!(
        shown.contains("[capture]") && !shown.contains(PASSWORD),
        "{shown}"
    );
}

/// sngrep listening for HEP (with the same password) until stopped by its
/// PID; its `-O` pcap holds what it decoded.
struct Sngrep {
    child: Child,
    pcap: std::path::PathBuf,
}

impl Sngrep {
    fn start(dir: &Path, port: u16, password: &str) -> Sngrep {
        let conf = dir.join("sngrep.conf");
        std::fs::write(&conf, format!("set eep.listen.pass {password}\n")).unwrap();
        let pcap = dir.join("sngrep.pcap");
        let child = Command::new("sngrep")
            .args(["-F", "-f"])
            .arg(&conf)
            .args(["-N", "-q", "-L", &format!("udp:127.0.0.1:{port}"), "-O"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sngrep (Debian package sngrep) must be installed");
        // Listening once the port is taken.
        let deadline = Instant::now() + Duration::from_secs(10);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < deadline, "sngrep did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sngrep { child, pcap }
    }

    /// Stops sngrep (SIGTERM to its PID: it writes the pcap out) and
    /// returns the pcap's path.
    fn stop(mut self) -> std::path::PathBuf {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.pcap.clone()
    }
}

impl Drop for Sngrep {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tshark's fields of every SIP frame of `pcap`, one Vec per frame.
fn tshark_fields(pcap: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec![
        "-r".to_string(),
        pcap.display().to_string(),
        "-Y".into(),
        "sip".into(),
        "-T".into(),
        "fields".into(),
        "-E".into(),
        "separator=|".into(),
    ];
    for f in fields {
        args.push("-e".into());
        args.push((*f).into());
    }
    let out = Command::new("tshark")
        .args(&args)
        .output()
        .expect("tshark (Debian package tshark) must be installed");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

#[test]
fn sngrep_receives_the_dialog_and_tshark_dissects_it() {
    let port = free_port(false);
    let pki_dir = tempfile::tempdir().unwrap();
    let sngrep = Sngrep::start(pki_dir.path(), port, PASSWORD);
    let lab = Lab::with(&capture_section(port, ""), Some("enabled"));
    lab.message_delivered("carol", "MESSAGE through the edge, sngrep collecting");
    // The copies are on their way once the 200 is back; give sngrep until
    // the edge has counted them sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(lab.edge.admin, "fedge_capture_sent_total", &[]) < 4.0 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pcap = sngrep.stop();
    let frames = tshark_fields(
        &pcap,
        &[
            "ip.src",
            "udp.srcport",
            "ip.dst",
            "udp.dstport",
            "sip.Call-ID",
            "sip.Method",
            "sip.Status-Code",
            "sip.Via.transport",
            "_ws.malformed",
            "frame.time_epoch",
        ],
    );
    let (fed, int, home) = (lab.edge.federation, lab.edge.internal, localhost(lab.home));
    let msg = frames
        .iter()
        .find(|f| f[5] == "MESSAGE" && f[3] == fed.port().to_string())
        .unwrap_or_else(|| panic!("no MESSAGE to the edge in sngrep's capture: {frames:?}"));
    let call_id = msg[4].clone();
    let dialog: Vec<&Vec<String>> = frames.iter().filter(|f| f[4] == call_id).collect();
    assert_eq!(dialog.len(), 4, "{dialog:?}");
    for f in &dialog {
        assert_eq!(f[8], "", "malformed frame: {f:?}");
        assert_eq!(f[0], "127.0.0.1");
        assert_eq!(f[2], "127.0.0.1");
    }
    let addr = |f: &Vec<String>| (f[1].parse::<u16>().unwrap(), f[3].parse::<u16>().unwrap());
    let partner_port = addr(dialog[0]).0;
    // MESSAGE partner -> edge (its top Via says TLS), edge -> home, then the
    // 200 home -> edge and edge -> partner.
    assert_eq!(
        (dialog[0][5].as_str(), addr(dialog[0])),
        ("MESSAGE", (partner_port, fed.port()))
    );
    assert_eq!(dialog[0][7].split(',').next(), Some("TLS"));
    assert_eq!(
        (dialog[1][5].as_str(), addr(dialog[1])),
        ("MESSAGE", (int.port(), home.port()))
    );
    assert_eq!(dialog[1][7].split(',').next(), Some("UDP"));
    assert_eq!(
        (dialog[2][6].as_str(), addr(dialog[2])),
        ("200", (home.port(), int.port()))
    );
    assert_eq!(
        (dialog[3][6].as_str(), addr(dialog[3])),
        ("200", (fed.port(), partner_port))
    );
    // sngrep kept the HEP timestamps: in order.
    let t: Vec<f64> = dialog.iter().map(|f| f[9].parse().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
}

#[test]
fn sngrep_refuses_copies_with_the_wrong_password() {
    let port = free_port(false);
    let dir = tempfile::tempdir().unwrap();
    let sngrep = Sngrep::start(dir.path(), port, "another-password");
    let lab = Lab::with(&capture_section(port, ""), Some("enabled"));
    lab.message_delivered(
        "dave",
        "MESSAGE with a collector that wants another password",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(lab.edge.admin, "fedge_capture_sent_total", &[]) < 4.0 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pcap = sngrep.stop();
    let frames = if pcap.exists() {
        tshark_fields(&pcap, &["sip.Call-ID"])
    } else {
        Vec::new()
    };
    assert!(
        frames.is_empty(),
        "sngrep took copies with the wrong key: {frames:?}"
    );
    assert!(metric(lab.edge.admin, "fedge_capture_sent_total", &[]) >= 4.0);
}

#[test]
fn a_collector_that_is_down_costs_nothing() {
    // Nothing listens on the collector's port.
    let port = free_port(false);
    let lab = Lab::with(&capture_section(port, ""), Some("enabled"));
    for (i, user) in ["erin", "frank", "grace"].iter().enumerate() {
        lab.message_delivered(user, &format!("MESSAGE {i} with the collector down"));
    }
    // Nothing about capture is worth a warning: a lost copy is only counted.
    let complaints: Vec<String> = lab
        .edge
        .logs()
        .into_iter()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\""))
        .filter(|l| l.contains("capture") || l.contains("HEP"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
    let sent = metric(lab.edge.admin, "fedge_capture_sent_total", &[]);
    assert!(sent >= 12.0, "sent {sent}");
    assert_eq!(
        metric(lab.edge.admin, "fedge_capture_dropped_total", &[]),
        0.0
    );
}

#[test]
fn a_full_queue_drops_and_counts_and_the_proxy_answers_every_request() {
    let port = free_port(false);
    let lab = Lab::with(&capture_section(port, "queue = 1\n"), Some("enabled"));
    // A burst on one connection with a queue of one: the proxy answers
    // every request and the copies that found the queue full are counted.
    const N: u32 = 3000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answered = rt.block_on(async {
        let mut c = tls_connect(lab.edge.federation, &lab.pki, &lab.pki.partner)
            .await
            .unwrap();
        let burst: String = (1..=N).map(options_to_edge).collect();
        c.send(burst.as_bytes()).await.unwrap();
        let mut answered = 0;
        while answered < N {
            match c.recv(Duration::from_secs(20)).await {
                Reply::Message(m) if m.status().is_some() => answered += 1,
                Reply::Message(_) | Reply::Pong => {}
                other => panic!("after {answered} answers: {other:?}"),
            }
        }
        answered
    });
    assert_eq!(answered, N);
    let deadline = Instant::now() + Duration::from_secs(10);
    let total = |admin: SocketAddr| {
        metric(admin, "fedge_capture_sent_total", &[])
            + metric(admin, "fedge_capture_dropped_total", &[])
    };
    // Every copy (N requests in, N answers out) is either sent or dropped.
    while total(lab.edge.admin) < f64::from(2 * N) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(total(lab.edge.admin) >= f64::from(2 * N));
    let dropped = metric(lab.edge.admin, "fedge_capture_dropped_total", &[]);
    assert!(
        dropped > 0.0,
        "a queue of one took a burst of {N} without a drop"
    );
    lab.message_delivered("heidi", "MESSAGE after the burst");
}
