//! Attacks on the federation and internal sides of the running binary
//! (issue 14, points 9 to 12), each performed on loopback and each checked
//! twice: the attacker gains nothing, and a legitimate partner (or the home
//! pool) is still served.
//!
//! - 9: a stranger whose certificate chains to the trust bundle floods
//!   refused requests (cut off after its refusal budget), a partner keeps
//!   requests in progress (held to its per-source budget while another
//!   source is served), a peer that never reads its answers (its send
//!   queue is bounded: the process grows by less than the stated
//!   worst case per connection);
//! - 10: forged To tags do not bypass the enumeration guard, and ACKs
//!   outside a known dialog count against the rate;
//! - 11: the internal listener takes no one but the home pool, and
//!   `fedge firewall` says so;
//! - 12: a SAN without a DNS name is not read by its CN, resumed sessions
//!   are checked again (a partner pinned to another CA cannot resume).
//!
//! Clients: Rust (rustls over tokio) from chosen loopback addresses, and
//! a UDP socket standing in for the home pool.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fedge::pki::LeafSpec;
use fedge::sip::SipMessage;
use fedge::sip::framing::{DatagramItem, StreamDecoder, StreamItem, parse_datagram};
use fedge::sip::headers::HeaderName;
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge::sip::transport::tls::{TlsFiles, client_config, load_certs, load_key, load_roots};
use fedge_testkit::admin::admin_get;
use fedge_testkit::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Decoder;

const WAIT: Duration = Duration::from_secs(5);

/// A SIP peer over TLS from a chosen loopback address.
struct Peer {
    stream: TlsStream<TcpStream>,
    buf: BytesMut,
    decoder: StreamDecoder,
}

async fn tcp_from(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(local, 0))?;
    sock.connect(to).await
}

impl Peer {
    async fn connect_with(
        cfg: Arc<rustls::ClientConfig>,
        local: IpAddr,
        to: SocketAddr,
    ) -> std::io::Result<Peer> {
        let tcp = tcp_from(local, to).await?;
        let name = ServerName::try_from(EDGE_FQDN).unwrap();
        let stream = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await?;
        Ok(Peer {
            stream,
            buf: BytesMut::new(),
            decoder: StreamDecoder::new(Limits::default()),
        })
    }

    async fn connect(
        pki: &Pki,
        cert: &CertFiles,
        local: IpAddr,
        to: SocketAddr,
    ) -> std::io::Result<Peer> {
        let cfg = client_config(&TlsFiles {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
            trust: pki.ca_file.clone(),
        })
        .unwrap();
        Peer::connect_with(cfg, local, to).await
    }

    async fn send(&mut self, data: &str) -> std::io::Result<()> {
        self.stream.write_all(data.as_bytes()).await?;
        self.stream.flush().await
    }

    /// The next message, or `None` when the connection closed or nothing
    /// came within `within`.
    async fn recv(&mut self, within: Duration) -> Option<SipMessage> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(StreamItem::Message(m))) => return Some(m),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => panic!("edge broke framing: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// The next final response (provisional ones skipped).
    async fn final_response(&mut self) -> Option<SipMessage> {
        loop {
            let m = self.recv(WAIT).await?;
            if m.status().is_some_and(|s| s >= 200) {
                return Some(m);
            }
        }
    }
}

fn warning(m: &SipMessage) -> String {
    m.values_named("Warning").next().unwrap_or("").to_string()
}

/// A request from partner.test (or `from_domain`) to `to`.
fn request(method: &str, n: u32, to: &str, from_domain: &str, extra: &str) -> String {
    format!(
        "{method} sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {PARTNER_FQDN};branch=z9hG4bK-att-{method}-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{from_domain}>;tag=a{n}\r\n\
         To: <sip:{to}>{extra}\r\n\
         Call-ID: att-{method}-{n}@{PARTNER_FQDN}\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The home pool: a UDP socket on the edge's next hop that records every
/// request and answers all but ACK (200, with a To tag), unless `silent`.
struct Home {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Home {
    fn start(silent: bool) -> Home {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s2, st2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut b = vec![0u8; 65_536];
            while !st2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut b) else {
                    continue;
                };
                let data = bytes::Bytes::copy_from_slice(&b[..n]);
                let DatagramItem::Message(m) = parse_datagram(data, &Limits::default()) else {
                    continue;
                };
                let Some(method) = m.method().map(|x| x.as_str().to_string()) else {
                    continue;
                };
                s2.lock()
                    .unwrap()
                    .push(format!("{method} {}", m.request_uri_str().unwrap_or("")));
                if silent || method == "ACK" {
                    continue;
                }
                let contact = format!("<sip:home@127.0.0.1:{port}>");
                let mut resp = ResponseBuilder::new(&m, 200)
                    .to_tag("h1")
                    .header("Contact", contact);
                // A UAS copies the Record-Route set into its answer.
                for rr in m.values(HeaderName::RecordRoute) {
                    resp = resp.header("Record-Route", rr.to_string());
                }
                let resp = resp.build();
                let _ = sock.send_to(&resp, from);
            }
        });
        Home { port, seen, stop }
    }

    fn count(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The edge with the home pool on its next hop, `federation` added to its
/// [federation] section and `extra` after [sip]; partner.test enabled.
fn start(pki: &Pki, home: &Home, federation: &str, extra: &str) -> Edge {
    let cfg = test_config(pki, extra)
        .replace(
            "next_hop = \"sip:127.0.0.1:5080;transport=udp\"",
            &format!("next_hop = \"sip:127.0.0.1:{};transport=udp\"", home.port),
        )
        .replace(
            "handshake_timeout = \"2s\"\n",
            &format!("handshake_timeout = \"2s\"\n{federation}\n"),
        );
    let edge = Edge::start(pki, &cfg);
    fedge_ok(
        &edge.config_path,
        &[
            "partner",
            "add",
            "--domain",
            "partner.test",
            "--org",
            "Partner Trust",
            "--edge-fqdn",
            PARTNER_FQDN,
            "--address",
            "127.0.0.1:9",
            "--state",
            "enabled",
            "--reason",
            "attack lab",
        ],
    );
    let t0 = Instant::now();
    while !admin_get(edge.admin, "/registry")
        .to_string()
        .contains("partner.test")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "partner never loaded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    edge
}

fn must_log(edge: &Edge, needles: &[&str]) -> String {
    edge.wait_log(needles, WAIT)
        .unwrap_or_else(|| panic!("no log line with {needles:?}: {:#?}", edge.logs()))
}

fn local(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Point 10: a To tag the partner wrote does not make a request in-dialog;
/// a dialog the edge record-routed does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_to_tags_do_not_bypass_the_enumeration_guard() {
    let pki = Pki::new();
    let home = Home::start(false);
    let edge = start(
        &pki,
        &home,
        "",
        "\n[policy]\nenumeration_limit = 3\nrate = 20\nburst = 20",
    );
    let mut p = Peer::connect(&pki, &pki.partner, local(1), edge.federation)
        .await
        .unwrap();

    // A real dialog with user1 (the first distinct address).
    p.send(&request(
        "INVITE",
        1,
        "user1@fedge.test",
        "partner.test",
        "",
    ))
    .await
    .unwrap();
    let ok = p.final_response().await.expect("the INVITE's answer");
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    let routes: Vec<String> = ok
        .values(HeaderName::RecordRoute)
        .map(str::to_string)
        .collect();
    let contact = ok.first(HeaderName::Contact).unwrap().to_string();
    let target = contact
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string();
    let in_dialog = |method: &str, cseq: u32| {
        format!(
            "{method} {target} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {PARTNER_FQDN};branch=z9hG4bK-dlg-{method}-{cseq}\r\n\
             Max-Forwards: 70\r\n\
             Route: {}\r\n\
             From: <sip:alice@partner.test>;tag=a1\r\n\
             To: <sip:user1@fedge.test>;tag=h1\r\n\
             Call-ID: att-INVITE-1@{PARTNER_FQDN}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            routes.join(", ")
        )
    };
    p.send(&in_dialog("ACK", 1)).await.unwrap();

    // Out-of-dialog MESSAGEs with a forged To tag to user2..user6: two more
    // distinct addresses get through, then the guard refuses.
    let mut refused = 0;
    for n in 2..=6 {
        p.send(&request(
            "MESSAGE",
            n,
            &format!("user{n}@fedge.test"),
            "partner.test",
            ";tag=forged",
        ))
        .await
        .unwrap();
        let r = p.final_response().await.expect("an answer");
        match r.status() {
            Some(200) => {}
            Some(403) => {
                assert!(
                    warning(&r).contains("has reached 3 distinct home addresses"),
                    "{r:?}"
                );
                refused += 1;
            }
            other => panic!("{other:?}: {r:?}"),
        }
    }
    assert_eq!(refused, 3, "user4..user6 refused despite their To tags");
    assert_eq!(home.count("MESSAGE"), 2, "{:?}", home.seen.lock().unwrap());

    // ACKs outside any known dialog count against the rate (burst 20).
    let before = home.count("ACK");
    for n in 0..40 {
        p.send(&request(
            "ACK",
            100 + n,
            "user1@fedge.test",
            "partner.test",
            ";tag=x",
        ))
        .await
        .unwrap();
    }
    // (Refusals of a flood are logged once a second, summarised.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acks = home.count("ACK") - before;
    assert!(acks < 40, "all {acks} stray ACKs crossed");
    assert!(
        metric(
            edge.admin,
            "fedge_rejections_total",
            &["rule=\"rate_limited\""]
        ) >= 1.0,
        "no ACK was held to the rate"
    );

    // The real dialog is still served: its BYE reaches the pool.
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.send(&in_dialog("BYE", 2)).await.unwrap();
    let bye = p.final_response().await.expect("the BYE's answer");
    assert_eq!(bye.status(), Some(200), "{bye:?}");
    assert_eq!(home.count("BYE"), 1);
}

/// Point 11: only the home pool may use the internal listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_listener_takes_only_the_home_pool() {
    let pki = Pki::new();
    let home = Home::start(false);
    let edge = start(&pki, &home, "", "");
    let message = |n: u32, via: &str| {
        format!(
            "MESSAGE sip:bob@partner.test SIP/2.0\r\n\
             Via: SIP/2.0/{via};branch=z9hG4bK-int-{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:ceo@fedge.test>;tag=i{n}\r\n\
             To: <sip:bob@partner.test>\r\n\
             Call-ID: int-{n}\r\n\
             CSeq: 1 MESSAGE\r\n\
             Content-Type: text/plain\r\n\
             Content-Length: 2\r\n\r\nhi"
        )
    };
    let options = |n: u32, via: &str| {
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{via};branch=z9hG4bK-io-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:pool@fedge.test>;tag=o{n}\r\nTo: <sip:127.0.0.1>\r\n\
             Call-ID: io-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // A stranger on UDP: nothing answered, nothing sent to the partner.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let sa = stranger.local_addr().unwrap();
    for (n, text) in [
        (1, message(1, &format!("UDP {sa}"))),
        (2, options(2, &format!("UDP {sa}"))),
    ] {
        stranger.send_to(text.as_bytes(), edge.internal).unwrap();
        let mut b = [0u8; 4096];
        assert!(
            stranger.recv_from(&mut b).is_err(),
            "request {n} from a stranger answered"
        );
    }
    must_log(&edge, &["not a home-pool address", &sa.to_string(), "udp"]);
    // A stranger on TCP: closed at once, nothing read.
    let mut tcp = tcp_from(local(2), edge.internal).await.unwrap();
    let ta = tcp.local_addr().unwrap();
    let _ = tcp
        .write_all(message(3, &format!("TCP {ta}")).as_bytes())
        .await;
    let mut b = [0u8; 1024];
    let read = tokio::time::timeout(WAIT, tcp.read(&mut b)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "stranger's TCP connection not closed: {read:?}"
    );
    must_log(&edge, &["not a home-pool address", &ta.to_string(), "tcp"]);
    assert!(
        !edge
            .logs()
            .iter()
            .any(|l| l.contains("int-1") || l.contains("int-3")),
        "a stranger's request reached the policy"
    );
    // The home pool (127.0.0.1) is still served, on UDP and TCP.
    let pool = UdpSocket::bind("127.0.0.1:0").unwrap();
    pool.set_read_timeout(Some(WAIT)).unwrap();
    let pa = pool.local_addr().unwrap();
    pool.send_to(options(4, &format!("UDP {pa}")).as_bytes(), edge.internal)
        .unwrap();
    let mut b = [0u8; 4096];
    let (n, _) = pool.recv_from(&mut b).expect("the pool's OPTIONS answered");
    assert!(String::from_utf8_lossy(&b[..n]).starts_with("SIP/2.0 200"));
    let mut tcp = tcp_from(local(1), edge.internal).await.unwrap();
    let ta = tcp.local_addr().unwrap();
    tcp.write_all(options(5, &format!("TCP {ta}")).as_bytes())
        .await
        .unwrap();
    let mut b = [0u8; 4096];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).starts_with("SIP/2.0 200"));

    // `fedge firewall` opens the internal port to the home pool only.
    let rules = fedge_ok(&edge.config_path, &["firewall"]);
    let internal: Vec<&str> = rules
        .lines()
        .filter(|l| l.contains("comment \"internal:") && !l.contains("to the next hop"))
        .collect();
    assert_eq!(internal.len(), 2, "udp and tcp: {rules}");
    assert!(
        internal.iter().all(|l| l.contains("ip saddr 127.0.0.1/32")),
        "{rules}"
    );
    // A host-name next hop without allowed_sources is a one-line error.
    let hostname = std::fs::read_to_string(&edge.config_path)
        .unwrap()
        .replace("allowed_sources = [\"127.0.0.1\"]\n", "")
        .replace(
            &format!("next_hop = \"sip:127.0.0.1:{};transport=udp\"", home.port),
            "next_hop = \"sip:pool.fedge.test;transport=tcp\"",
        );
    let path = pki.path().join("hostname.toml");
    std::fs::write(&path, hostname).unwrap();
    let (code, _, err) = fedge_cli(&path, &["firewall"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("allowed_sources"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Point 12: a SAN without a DNS name is not read by its CN (RFC 5922).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_san_without_dns_names_is_not_read_by_its_cn() {
    let pki = Pki::new();
    let home = Home::start(false);
    let edge = start(&pki, &home, "", "");
    let mut spec = LeafSpec::new(PARTNER_FQDN, 30);
    spec.dns_names = Vec::new();
    spec.ips = vec![local(1)];
    let ip_only = pki.leaf("ip-only", &spec);
    let got = match Peer::connect(&pki, &ip_only, local(1), edge.federation).await {
        Err(_) => None,
        Ok(mut p) => {
            let _ = p.send(&options_to_edge(1)).await;
            p.recv(WAIT).await
        }
    };
    assert!(got.is_none(), "CN read despite a SAN: {got:?}");
    must_log(&edge, &["subjectAltName without a DNS name"]);
    // The partner's proper certificate is served.
    let mut p = Peer::connect(&pki, &pki.partner, local(1), edge.federation)
        .await
        .unwrap();
    p.send(&options_to_edge(2)).await.unwrap();
    assert_eq!(p.recv(WAIT).await.and_then(|m| m.status()), Some(200));
}

/// A partner client that keeps its sessions (rustls's in-memory store):
/// TLS 1.3 and 1.2, or 1.2 only.
fn resuming_client(pki: &Pki, cert: &CertFiles, tls12_only: bool) -> Arc<rustls::ClientConfig> {
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(load_roots(&pki.ca_file).unwrap())
        .with_client_auth_cert(
            load_certs(&cert.cert, "certificate").unwrap(),
            load_key(&cert.key).unwrap(),
        )
        .unwrap(),
    )
}

/// Connects with `cfg`, sends an OPTIONS: how the handshake went, and the
/// status of the answer (`None`: refused or closed without one).
async fn options_over(
    cfg: &Arc<rustls::ClientConfig>,
    to: SocketAddr,
    n: u32,
) -> (Option<rustls::HandshakeKind>, Option<u16>) {
    let Ok(mut p) = Peer::connect_with(cfg.clone(), local(1), to).await else {
        return (None, None);
    };
    let kind = p.stream.get_ref().1.handshake_kind();
    let status = match p.send(&options_to_edge(n)).await {
        Ok(()) => p.recv(WAIT).await.and_then(|m| m.status()),
        Err(_) => None,
    };
    p.stream.shutdown().await.ok();
    (kind, status)
}

/// Point 12: sessions resume (TLS 1.3 tickets, TLS 1.2), but a resumed
/// session's certificate is checked again: once the registry pins the
/// partner to another CA, its resumed sessions are refused as a full
/// handshake would be (decisions D68, superseded by the tls notes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_sessions_are_checked_again() {
    use rustls::HandshakeKind::{Full, Resumed};
    let pki = Pki::new();
    let home = Home::start(false);
    let edge = start(&pki, &home, "", "");
    for tls12 in [false, true] {
        let cfg = resuming_client(&pki, &pki.partner, tls12);
        assert_eq!(
            options_over(&cfg, edge.federation, 1).await,
            (Some(Full), Some(200))
        );
        // A valid partner resumes, and is served.
        for n in 2..=3 {
            assert_eq!(
                options_over(&cfg, edge.federation, n).await,
                (Some(Resumed), Some(200)),
                "connection {n} (TLS 1.2 only: {tls12}) was not resumed and served"
            );
        }
    }
    must_log(&edge, &["TLS peer authenticated", "\"resumed\":true"]);
    // A session taken now, before the registry changes.
    let cfg = resuming_client(&pki, &pki.partner, false);
    assert_eq!(options_over(&cfg, edge.federation, 10).await.1, Some(200));

    // The registry pins partner.test to a CA that did not issue its
    // certificate.
    let other = fedge::pki::Authority::new("another CA").unwrap();
    let other_file = pki.path().join("other-ca.crt");
    std::fs::write(&other_file, &other.pem.cert_pem).unwrap();
    fedge_ok(
        &edge.config_path,
        &[
            "partner",
            "update",
            "partner.test",
            "--ca-pin",
            &other_file.display().to_string(),
            "--reason",
            "pinned",
        ],
    );
    // Once the pin is live, the resumed session is refused: the client
    // resumed, the edge checked the chain again and closed.
    let t0 = Instant::now();
    let mut n = 11;
    loop {
        n += 1;
        let (kind, status) = options_over(&cfg, edge.federation, n).await;
        if status.is_none() {
            assert_eq!(
                kind,
                Some(Resumed),
                "the refused connection was not a resumption"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the pin never refused the resumed session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    must_log(&edge, &["TLS resumed session refused", "partner.test"]);
    // A full handshake is refused too, and the edge serves the next comer.
    let full = resuming_client(&pki, &pki.partner, false);
    let (_, status) = options_over(&full, edge.federation, 99).await;
    assert_eq!(status, None);
}

/// Point 9: a stranger with a trusted certificate floods refused requests:
/// after its refusal budget its connection is closed and nothing more is
/// answered or kept; a partner whose own users are refused is not cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_refusals_are_budgeted() {
    let pki = Pki::new();
    let home = Home::start(false);
    let edge = start(
        &pki,
        &home,
        "refusals_per_second = 5\nrefusal_burst = 10",
        "",
    );
    let stranger = pki.leaf("stranger", &LeafSpec::new("sip.stranger.test", 30));
    let mut s = Peer::connect(&pki, &stranger, local(5), edge.federation)
        .await
        .unwrap();
    for n in 0..200u32 {
        if s.send(&request(
            "INVITE",
            n,
            "user1@fedge.test",
            "stranger.test",
            "",
        ))
        .await
        .is_err()
        {
            break;
        }
    }
    let mut answered = 0;
    while let Some(m) = s.recv(WAIT).await {
        if m.status() == Some(403) {
            answered += 1;
        }
    }
    // (Answers still unread when the edge closes may be lost to the reset.)
    assert!(
        answered <= 15,
        "{answered} refusals answered to the stranger"
    );
    must_log(&edge, &["over its refusal budget", "127.0.0.5"]);
    let t0 = Instant::now();
    while metric(edge.admin, "fedge_server_transactions", &[]) > 0.0 {
        assert!(t0.elapsed() < Duration::from_secs(15), "transactions kept");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The partner's users refused 30 times (transit) are all answered, and
    // its connection stays.
    let mut p = Peer::connect(&pki, &pki.partner, local(1), edge.federation)
        .await
        .unwrap();
    for n in 0..30 {
        p.send(&request(
            "MESSAGE",
            n,
            "bob@elsewhere.test",
            "partner.test",
            "",
        ))
        .await
        .unwrap();
        let r = p
            .final_response()
            .await
            .expect("each transit refusal answered");
        assert_eq!(r.status(), Some(403));
    }
    p.send(&options_to_edge(1)).await.unwrap();
    assert_eq!(p.recv(WAIT).await.and_then(|m| m.status()), Some(200));
}

/// Point 9: requests in progress are bounded per source; another source
/// is still served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_progress_are_bounded_per_source() {
    let pki = Pki::new();
    let home = Home::start(true);
    let edge = start(&pki, &home, "max_transactions_per_source = 8", "");
    let mut a = Peer::connect(&pki, &pki.partner, local(6), edge.federation)
        .await
        .unwrap();
    for n in 0..20 {
        a.send(&request(
            "INVITE",
            n,
            "user1@fedge.test",
            "partner.test",
            "",
        ))
        .await
        .unwrap();
    }
    let mut over = 0;
    let deadline = Instant::now() + WAIT;
    while over < 12 && Instant::now() < deadline {
        match a.recv(Duration::from_secs(2)).await {
            Some(m) if m.status() == Some(503) => {
                assert!(
                    warning(&m).contains("too many requests of this source"),
                    "{m:?}"
                );
                over += 1;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(over, 12, "the requests over the budget of 8");
    assert!(
        metric(edge.admin, "fedge_server_transactions", &[]) <= 8.0,
        "more than 8 in progress"
    );
    // Another source of the same partner is served.
    let mut b = Peer::connect(&pki, &pki.partner, local(7), edge.federation)
        .await
        .unwrap();
    b.send(&options_to_edge(7)).await.unwrap();
    assert_eq!(b.recv(WAIT).await.and_then(|m| m.status()), Some(200));
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Point 9: peers that never read their answers cost a bounded amount
/// each: the edge's memory grows by less than the stated worst case per
/// connection (docs/robustness.md), and a partner is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_never_read_cost_a_bounded_amount() {
    const CONNS: usize = 4;
    /// The worst case per connection stated in docs/robustness.md.
    const PER_CONN_KIB: u64 = 3_900;
    let pki = Pki::new();
    let home = Home::start(false);
    let edge = start(&pki, &home, "", "");
    let stranger = pki.leaf("reader", &LeafSpec::new("sip.stranger.test", 30));
    let baseline = rss_kib(edge.pid());
    let pad = "x".repeat(28 * 1024);
    let mut peers = Vec::new();
    for c in 0..CONNS {
        let mut p = Peer::connect(&pki, &stranger, local(8), edge.federation)
            .await
            .unwrap();
        // OPTIONS to the edge is answered to anyone (no refusal budget is
        // spent); each answer echoes the 28 KiB From. Never read.
        for n in 0..600u32 {
            let req = options_to_edge(n).replace(
                "From: <sip:ping@partner.test>;tag=w",
                &format!("From: <sip:ping@partner.test>;pad={pad};tag=w{c}-"),
            );
            let sent = tokio::time::timeout(Duration::from_millis(500), p.send(&req)).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        peers.push(p);
    }
    let mut peak = baseline;
    for _ in 0..20 {
        peak = peak.max(rss_kib(edge.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown = peak.saturating_sub(baseline);
    eprintln!("grew {grown} KiB for {CONNS} connections that never read");
    // Allocator slack besides the connections' own bytes.
    let allowed = CONNS as u64 * PER_CONN_KIB + 8 * 1024;
    assert!(
        grown <= allowed,
        "grew {grown} KiB for {CONNS} connections (allowed {allowed})"
    );
    must_log(&edge, &["send queue is full"]);
    drop(peers);
    let mut p = Peer::connect(&pki, &pki.partner, local(1), edge.federation)
        .await
        .unwrap();
    p.send(&options_to_edge(1)).await.unwrap();
    assert_eq!(p.recv(WAIT).await.and_then(|m| m.status()), Some(200));
}
