//! Real SIP user agents for the interop tests: baresip (Debian's
//! `baresip-core`) with a private configuration directory, driven through
//! its `ctrl_tcp` module (dial, hang up, events), sending a sine tone
//! (`ausine`) and recording what it decodes (`sndfile`), with SRTP (SDES)
//! and ICE as its account asks; a packet capture on loopback (dumpcap)
//! read back with tshark; and a private network namespace for the calling
//! thread, since baresip's ICE gathers no loopback candidates.
//!
//! Each baresip runs in its own process group and is stopped by that
//! group's id on drop, never by name. Nothing here sends to an address
//! outside the private namespace's loopback interface.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::peers::kill_group;
use crate::pki::CertFiles;

pub use crate::capture::Capture;

/// The address the private namespace adds to its loopback interface for
/// the user agents' media: baresip's ICE gathers no candidate on
/// 127.0.0.0/8. From the benchmarking range (198.18.0.0/15, RFC 2544),
/// and reachable only inside the namespace.
pub const UA_MEDIA_ADDRESS: &str = "198.18.0.1";

/// Moves the calling thread (and every process and thread it starts
/// afterwards) into a new network namespace whose only interface is
/// loopback, up, with 127.0.0.1 and [`UA_MEDIA_ADDRESS`]. Needs root (or
/// CAP_SYS_ADMIN and CAP_NET_ADMIN), as the CI runs the tests.
pub fn enter_private_network() {
    // SAFETY: unshare(2) with CLONE_NEWNET changes only the calling
    // thread's network namespace; it takes no pointers.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {} (the interop tests need root, as .ci/test runs them)",
        std::io::Error::last_os_error()
    );
    for args in [
        vec!["link", "set", "lo", "up"],
        vec![
            "addr",
            "add",
            &format!("{UA_MEDIA_ADDRESS}/32"),
            "dev",
            "lo",
        ],
    ] {
        let st = Command::new("ip")
            .args(&args)
            .status()
            .expect("ip (iproute2) is installed");
        assert!(st.success(), "ip {args:?} failed");
    }
}

/// Runs `body` on a new thread inside [`enter_private_network`]'s
/// namespace and passes its panic on; everything started in it (the edge,
/// Kamailio, the user agents) lives in that namespace.
pub fn in_private_network<F: FnOnce() + Send + 'static>(body: F) {
    let t = std::thread::spawn(move || {
        enter_private_network();
        body();
    });
    if let Err(e) = t.join() {
        std::panic::resume_unwind(e);
    }
}

/// A port `p` on 127.0.0.1 free for UDP and TCP, with `p + 1` free for TCP:
/// baresip listens on UDP and TCP `p` and on TLS `p + 1`.
pub fn free_sip_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if p == u16::MAX {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What one user agent is.
#[derive(Debug, Clone)]
pub struct UaSpec {
    /// Its address of record, e.g. `sip:alice@partner.test`.
    pub aor: String,
    /// The transport of its account (`udp`, `tcp`, `tls`).
    pub transport: String,
    /// Where it sends every request (`sip:127.0.0.1:5061;transport=tls`).
    pub outbound: Option<String>,
    /// `medianat=ice` (full ICE, RFC 5245).
    pub ice: bool,
    /// `mediaenc=...`: `srtp-mand` is SDES (`a=crypto`) on RTP/SAVP, required.
    pub mediaenc: Option<String>,
    /// The frequency of the tone it sends.
    pub tone_hz: u32,
    /// Its certificate (its TLS listener; its client certificate) and the
    /// CA it trusts.
    pub tls: Option<(CertFiles, PathBuf)>,
    /// `rtcp_mux yes`.
    pub rtcp_mux: bool,
    /// The port it listens on: UDP and TCP here, TLS on the next one
    /// ([`free_sip_port`]).
    pub sip_port: u16,
    /// Its DNS server ([`DnsStub`]).
    pub dns: Option<SocketAddr>,
}

impl UaSpec {
    /// A user agent listening on a [`free_sip_port`], answering every call
    /// at once, sending `tone_hz` with SRTP (SDES, mandatory) and ICE.
    pub fn new(aor: &str, transport: &str, tone_hz: u32) -> UaSpec {
        UaSpec {
            aor: aor.to_string(),
            transport: transport.to_string(),
            outbound: None,
            ice: true,
            mediaenc: Some("srtp-mand".into()),
            tone_hz,
            tls: None,
            rtcp_mux: false,
            sip_port: free_sip_port(),
            dns: None,
        }
    }
}

/// A running baresip, stopped on drop.
pub struct Baresip {
    child: Child,
    pub name: String,
    pub dir: PathBuf,
    pub spec: UaSpec,
    ctrl: Mutex<TcpStream>,
    token: Mutex<u64>,
    log: Arc<Mutex<String>>,
    /// Every event and response ctrl_tcp sent, in order.
    messages: Arc<Mutex<Vec<Value>>>,
}

fn config_text(spec: &UaSpec, dir: &Path, ctrl_port: u16) -> String {
    let mut tls = String::new();
    if let Some((_, ca)) = &spec.tls {
        tls = format!(
            "sip_certificate\t{}\nsip_cafile\t{}\n",
            dir.join("sip.pem").display(),
            ca.display()
        );
    }
    if let Some(d) = spec.dns {
        tls.push_str(&format!("dns_server\t{d}\n"));
    }
    format!(
        "# Written by fedge-testkit for one test: no sound hardware, loopback only.
poll_method\tepoll
sip_listen\t127.0.0.1:{port}
{tls}call_local_timeout\t30
call_max_calls\t4
audio_player\talsa,null
audio_source\tausine,{hz}
audio_alert\talsa,null
ausrc_srate\t48000
ausrc_channels\t2
audio_buffer\t20-160
rtp_stats\tyes
rtcp_mux\t{mux}
jitter_buffer_delay\t1-5
module_path\t/usr/lib/baresip/modules
module\tg711.so
module\tausine.so
module\talsa.so
module\tsndfile.so
module\tice.so
module\tsrtp.so
module_tmp\tuuid.so
module_tmp\taccount.so
module_app\tmenu.so
module_app\tctrl_tcp.so
ctrl_tcp_listen\t127.0.0.1:{ctrl_port}
snd_path\t{rec}
",
        port = spec.sip_port,
        hz = spec.tone_hz,
        mux = if spec.rtcp_mux { "yes" } else { "no" },
        rec = dir.join("rec").display(),
    )
}

fn account_line(spec: &UaSpec) -> String {
    let mut line = format!(
        "<{};transport={}>;regint=0;answermode=auto;audio_codecs=PCMU",
        spec.aor, spec.transport
    );
    if let Some(o) = &spec.outbound {
        line.push_str(&format!(";outbound=\"{o}\""));
    }
    if spec.ice {
        line.push_str(";medianat=ice");
    }
    if let Some(m) = &spec.mediaenc {
        line.push_str(&format!(";mediaenc={m}"));
    }
    line.push('\n');
    line
}

/// Reads netstrings (`LEN:JSON,`) from ctrl_tcp into `out`.
fn read_netstrings(mut s: TcpStream, out: Arc<Mutex<Vec<Value>>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Some(colon) = buf.iter().position(|b| *b == b':') {
            let Some(len) = std::str::from_utf8(&buf[..colon])
                .ok()
                .and_then(|l| l.parse::<usize>().ok())
            else {
                return;
            };
            if buf.len() < colon + 1 + len + 1 {
                break;
            }
            let body = &buf[colon + 1..colon + 1 + len];
            if let Ok(v) = serde_json::from_slice::<Value>(body) {
                out.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            }
            buf.drain(..colon + 1 + len + 1);
        }
    }
}

impl Baresip {
    /// Writes `spec`'s configuration into `dir`/baresip-`name` and starts
    /// baresip there; returns once its control port answers.
    pub fn start(dir: &Path, name: &str, spec: UaSpec) -> Baresip {
        let bdir = dir.join(format!("baresip-{name}"));
        std::fs::create_dir_all(bdir.join("rec")).unwrap();
        if let Some((cert, _)) = &spec.tls {
            // baresip reads its certificate and key from one PEM file.
            let mut pem = std::fs::read(&cert.cert).unwrap();
            pem.extend(std::fs::read(&cert.key).unwrap());
            std::fs::write(bdir.join("sip.pem"), pem).unwrap();
        }
        let ctrl_port = free_tcp_port();
        std::fs::write(bdir.join("config"), config_text(&spec, &bdir, ctrl_port)).unwrap();
        std::fs::write(bdir.join("accounts"), account_line(&spec)).unwrap();
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(&bdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("baresip is installed (.ci/test installs baresip-core)");
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let l2 = log.clone();
            std::thread::spawn(move || {
                // baresip's status line ends in '\r', not '\n'.
                let mut r = BufReader::new(pipe);
                let mut line = Vec::new();
                while let Ok(n) = r.read_until(b'\n', &mut line) {
                    if n == 0 {
                        break;
                    }
                    l2.lock().unwrap().push_str(&String::from_utf8_lossy(&line));
                    line.clear();
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let ctrl = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl_port)) {
                break s;
            }
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                kill_group(&mut child);
                panic!(
                    "baresip {name} did not start:\n{}",
                    log.lock().unwrap_or_else(|p| p.into_inner())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let messages = Arc::new(Mutex::new(Vec::new()));
        let reader = ctrl.try_clone().unwrap();
        let m2 = messages.clone();
        std::thread::spawn(move || read_netstrings(reader, m2));
        let b = Baresip {
            child,
            name: name.to_string(),
            dir: bdir,
            spec,
            ctrl: Mutex::new(ctrl),
            token: Mutex::new(0),
            log,
            messages,
        };
        b.wait_log("baresip is ready", Duration::from_secs(10));
        b
    }

    /// Sends a command (`dial`, `hangup`, ...) and returns ctrl_tcp's answer.
    pub fn command(&self, command: &str, params: &str) -> Value {
        let token = {
            let mut t = self.token.lock().unwrap_or_else(|p| p.into_inner());
            *t += 1;
            format!("t{}", *t)
        };
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        let msg = format!("{}:{body},", body.len());
        self.ctrl
            .lock()
            .unwrap()
            .write_all(msg.as_bytes())
            .expect("baresip's ctrl_tcp");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self
                .messages
                .lock()
                .unwrap()
                .iter()
                .find(|v| v["response"] == true && v["token"] == token.as_str())
            {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "baresip {} never answered {command}:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Calls `uri`.
    pub fn dial(&self, uri: &str) {
        let v = self.command("dial", uri);
        assert_eq!(v["ok"], true, "dial {uri}: {v}\n{}", self.logs());
    }

    /// Hangs up the current call.
    pub fn hangup(&self) {
        let v = self.command("hangup", "");
        assert_eq!(v["ok"], true, "hangup: {v}\n{}", self.logs());
    }

    /// Every ctrl_tcp event of `kind` (`CALL_ESTABLISHED`, `CALL_MENC`, ...).
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == true && v["type"] == kind)
            .cloned()
            .collect()
    }

    /// Waits for the `n`th (from 1) event of `kind`.
    pub fn wait_event(&self, kind: &str, n: usize, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = self.events(kind).get(n - 1) {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "baresip {} never reported {kind} #{n}; events: {:?}\nlog:\n{}",
                self.name,
                self.messages.lock().unwrap_or_else(|p| p.into_inner()),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything baresip printed so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until baresip printed `needle`; panics with its output if not.
    pub fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "baresip {} never printed {needle:?}:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The recordings sndfile wrote of the calls' decoded (`dec`) or
    /// encoded (`enc`) audio, oldest first.
    pub fn recordings(&self, which: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join("rec"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(&format!("-{which}.wav")))
            })
            .collect();
        v.sort();
        v
    }

    /// Where the user agent takes SIP over TLS.
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.spec.sip_port + 1))
    }

    /// Where it takes SIP over UDP and TCP.
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.spec.sip_port))
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// What a recording holds: how long the sound lasts, how loud it is, and
/// its frequency (from the zero crossings of the part that is not silent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tone {
    pub seconds: f64,
    pub rms: f64,
    pub hz: f64,
}

/// Reads a 16-bit PCM WAV file (the first channel) and measures its tone.
pub fn tone(path: &Path) -> Tone {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE",
        "{} is not a WAV file",
        path.display()
    );
    let (mut rate, mut channels, mut bits, mut data) = (0u32, 0u16, 0u16, &b[..0]);
    let mut i = 12;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
        let body = &b[i + 8..(i + 8 + len).min(b.len())];
        if id == b"fmt " && body.len() >= 16 {
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            bits = u16::from_le_bytes([body[14], body[15]]);
        } else if id == b"data" {
            data = body;
        }
        i += 8 + len + (len & 1);
    }
    assert!(
        bits == 16 && channels >= 1 && rate > 0,
        "{}: {bits} bits, {channels} channels, {rate} Hz",
        path.display()
    );
    let samples: Vec<f64> = data
        .chunks_exact(2 * channels as usize)
        .map(|f| f64::from(i16::from_le_bytes([f[0], f[1]])))
        .collect();
    // The part that is not silence (before the first packet, after the last).
    let loud = |s: &f64| s.abs() > 300.0;
    let (Some(first), Some(last)) = (
        samples.iter().position(loud),
        samples.iter().rposition(loud),
    ) else {
        return Tone {
            seconds: 0.0,
            rms: 0.0,
            hz: 0.0,
        };
    };
    let part = &samples[first..=last];
    let crossings = part
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    let seconds = part.len() as f64 / f64::from(rate);
    Tone {
        seconds,
        rms: (part.iter().map(|s| s * s).sum::<f64>() / part.len() as f64).sqrt(),
        hz: crossings as f64 / 2.0 / seconds,
    }
}

/// Kamailio as the partner's edge in front of a user agent (template
/// tests/peers/kamailio-partner-ua.cfg): mutual TLS with `fedge` under the
/// partner's certificate, and a TLS listener of its own for the user agent
/// (which need not show a certificate); requests from fedge go to
/// `ua_tls`, the user agent's TLS listener. Returns Kamailio and the
/// address the user agent sends to.
pub fn partner_edge(
    pki: &crate::pki::Pki,
    fedge: SocketAddr,
    ua_tls: SocketAddr,
) -> (crate::peers::Kamailio, SocketAddr) {
    use crate::peers::{Kamailio, free_port, kamailio_modules, peers_dir, render};
    let (udp_port, tls_port) = (free_port(false), free_port(true));
    let ua_port = loop {
        let p = free_tcp_port();
        if p != tls_port {
            break p;
        }
    };
    let kdir = pki.path().join("kamailio-partner-ua");
    std::fs::create_dir_all(&kdir).unwrap();
    let tls_cfg = kdir.join("tls.cfg");
    render(
        &peers_dir().join("kamailio-tls-ua.cfg"),
        &tls_cfg,
        &[
            ("KEY", pki.partner.key.display().to_string()),
            ("CERT", pki.partner.cert.display().to_string()),
            ("CA", pki.ca_file.display().to_string()),
            ("UA_TLS_PORT", ua_port.to_string()),
        ],
    );
    let cfg = kdir.join("kamailio.cfg");
    render(
        &peers_dir().join("kamailio-partner-ua.cfg"),
        &cfg,
        &[
            ("UDP_PORT", udp_port.to_string()),
            ("TLS_PORT", tls_port.to_string()),
            ("UA_TLS_PORT", ua_port.to_string()),
            ("FQDN", crate::pki::PARTNER_FQDN.to_string()),
            ("MPATH", kamailio_modules()),
            ("TLS_CFG", tls_cfg.display().to_string()),
            ("FEDGE", fedge.to_string()),
            ("USERS", format!("sip:{ua_tls};transport=tls")),
        ],
    );
    let kam = Kamailio::spawn("partner-ua", &kdir, &cfg, udp_port, tls_port);
    (kam, SocketAddr::from(([127, 0, 0, 1], ua_port)))
}

/// A DNS server on 127.0.0.1 for the user agents, which resolve host
/// names through DNS only (never /etc/hosts): it answers A queries for its
/// names (a home pool resolves the edge's `[internal] fqdn`, named in its
/// Record-Route), NXDOMAIN for other names and no records for other
/// types. It serves until dropped.
pub struct DnsStub {
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The answer to one DNS query `q` from `names`, or `None` if `q` is not a
/// standard query with one question.
fn dns_answer(q: &[u8], names: &[(String, std::net::Ipv4Addr)]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0xf8 != 0 || q[4..6] != [0, 1] {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question_end = i + 4;
    let question = q.get(12..question_end)?;
    let name = labels.join(".");
    let found = names.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name));
    let rcode = if found.is_some() { 0 } else { 3 };
    let answer = found.filter(|_| qtype == 1).map(|(_, ip)| *ip);
    let mut r = Vec::with_capacity(question_end + 16);
    r.extend_from_slice(&q[..2]);
    r.extend_from_slice(&[0x81 | (q[2] & 0x01), 0x80 | rcode]);
    r.extend_from_slice(&[0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if let Some(ip) = answer {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}

impl DnsStub {
    /// Serves `names` (host name, IPv4 address).
    pub fn start(names: &[(&str, std::net::Ipv4Addr)]) -> DnsStub {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let names: Vec<(String, std::net::Ipv4Addr)> =
            names.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut b = [0u8; 512];
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut b)
                    && let Some(r) = dns_answer(&b[..n], &names)
                {
                    let _ = sock.send_to(&r, from);
                }
            }
        });
        DnsStub {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn the_dns_stub_answers_its_names_only() {
        let names = [("sip.fedge.test".to_string(), std::net::Ipv4Addr::LOCALHOST)];
        let a = dns_answer(&query("SIP.fedge.test", 1), &names).unwrap();
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&a[6..8], &[0, 1], "one answer");
        assert_eq!(&a[a.len() - 4..], &[127, 0, 0, 1]);
        let aaaa = dns_answer(&query("sip.fedge.test", 28), &names).unwrap();
        assert_eq!((aaaa[3] & 0x0f, &aaaa[6..8]), (0, &[0u8, 0][..]));
        let other = dns_answer(&query("other.test", 1), &names).unwrap();
        assert_eq!(other[3] & 0x0f, 3, "NXDOMAIN");
        assert!(dns_answer(&[0; 5], &names).is_none());
    }

    #[test]
    fn a_tone_is_measured_from_a_wav_file() {
        let dir = tempfile::tempdir().unwrap();
        let rate = 8000u32;
        let samples: Vec<i16> = (0..rate * 2)
            .map(|n| {
                let t = f64::from(n) / f64::from(rate);
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect();
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut w = b"RIFF".to_vec();
        w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&[1, 0, 1, 0]);
        w.extend_from_slice(&rate.to_le_bytes());
        w.extend_from_slice(&(rate * 2).to_le_bytes());
        w.extend_from_slice(&[2, 0, 16, 0]);
        w.extend_from_slice(b"data");
        w.extend_from_slice(&(data.len() as u32).to_le_bytes());
        w.extend_from_slice(&data);
        let p = dir.path().join("t.wav");
        std::fs::write(&p, w).unwrap();
        let t = tone(&p);
        assert!((t.hz - 440.0).abs() < 5.0, "{t:?}");
        assert!((t.seconds - 2.0).abs() < 0.01, "{t:?}");
        assert!(t.rms > 5000.0, "{t:?}");
    }
}
