//! Proxy behaviour with in-process Rust peers, for what third-party tools
//! cannot show easily: UDP retransmission and Timer F, BENOTIFY, every
//! method, bodies and unknown headers byte for byte, loops, and absorbed
//! retransmissions.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fedge::sip::SipMessage;
use fedge::sip::framing::{DatagramItem, StreamDecoder, StreamItem, parse_datagram};
use fedge::sip::parse::Limits;
use fedge::sip::response::ResponseBuilder;
use fedge::sip::transport::tls::{ClientAuth, TlsFiles, server_config};
use fedge_testkit::peers::free_port;
use fedge_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

/// Starts fedge whose next hop is UDP 127.0.0.1:`home`.
fn edge_with_home(pki: &Pki, home: u16, sip_extra: &str) -> Edge {
    let cfg = test_config(pki, sip_extra).replace(
        "next_hop = \"sip:127.0.0.1:5080;transport=udp\"",
        &format!("next_hop = \"sip:127.0.0.1:{home};transport=udp\""),
    );
    Edge::start(pki, &cfg)
}

fn enable_partner(edge: &Edge, domain: &str, edge_fqdn: &str, address: Option<SocketAddr>) {
    let mut args = vec![
        "partner",
        "add",
        "--domain",
        domain,
        "--org",
        "Partner Trust",
        "--edge-fqdn",
        edge_fqdn,
        "--state",
        "enabled",
        "--reason",
        "test",
    ];
    let a = address.map(|a| a.to_string());
    if let Some(a) = &a {
        args.extend(["--address", a.as_str()]);
    }
    fedge_ok(&edge.config_path, &args);
    let t0 = std::time::Instant::now();
    while !admin_get(edge.admin, "/registry")
        .to_string()
        .contains(domain)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "registry never loaded {domain}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The usual set-up: a home pool socket as fedge's next hop, fedge with
/// `sip_extra`, partner.test enabled, and one partner TLS connection.
struct Setup {
    /// Holds the temporary directory (certificates, database) for the test's lifetime.
    pki: Pki,
    home: UdpSocket,
    edge: Edge,
    c: SipTlsClient,
}

async fn setup(sip_extra: &str) -> Setup {
    let pki = Pki::new();
    let home = UdpSocket::bind("127.0.0.1:0").unwrap();
    let edge = edge_with_home(&pki, home.local_addr().unwrap().port(), sip_extra);
    enable_partner(&edge, "partner.test", PARTNER_FQDN, None);
    let c = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    Setup { pki, home, edge, c }
}

fn request(
    method: &str,
    ruri: &str,
    from: &str,
    to: &str,
    branch: &str,
    extra: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS sip.partner.test:5061;branch={branch}\r\nMax-Forwards: 70\r\n\
         From: <{from}>;tag=p1\r\nTo: <{to}>\r\nCall-ID: {branch}@partner.test\r\nCSeq: 7 {method}\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

fn recv_datagram(sock: &UdpSocket, within: Duration) -> Option<(SipMessage, SocketAddr)> {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut b = vec![0u8; 65535];
    let (n, from) = sock.recv_from(&mut b).ok()?;
    match parse_datagram(Bytes::copy_from_slice(&b[..n]), &Limits::default()) {
        DatagramItem::Message(m) => Some((m, from)),
        other => panic!("edge sent something unparsable: {other:?}"),
    }
}

/// Answers `req` as the home pool would, with `status`.
fn answer(sock: &UdpSocket, req: &SipMessage, to: SocketAddr, status: u16) {
    let r = ResponseBuilder::new(req, status).to_tag("home").build();
    sock.send_to(&r, to).unwrap();
}

async fn final_reply(c: &mut SipTlsClient, within: Duration) -> Reply {
    loop {
        match c.recv(within).await {
            Reply::Message(m) if m.status().is_some_and(|s| s < 200) => continue,
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_next_hop_gets_retransmissions_then_timer_f_answers_408() {
    let Setup {
        pki: _pki,
        home,
        edge: _edge,
        mut c,
    } = setup("t1 = \"50ms\"\nt2 = \"200ms\"").await;
    c.send(&request(
        "MESSAGE",
        "sip:bob@fedge.test",
        "sip:alice@partner.test",
        "sip:bob@fedge.test",
        "z9hG4bK-tf",
        "Content-Type: text/plain\r\n",
        b"hi",
    ))
    .await
    .unwrap();
    // The silent home pool sees the same request again and again (Timer E).
    let mut copies = Vec::new();
    while let Some((m, _)) = recv_datagram(&home, Duration::from_millis(600)) {
        copies.push(m);
        if copies.len() == 4 {
            break;
        }
    }
    assert!(
        copies.len() >= 3,
        "want retransmissions, got {}",
        copies.len()
    );
    let branch = |m: &SipMessage| m.top_via().and_then(|v| v.branch().map(str::to_string));
    assert!(
        copies.windows(2).all(|w| w[0].raw() == w[1].raw()),
        "retransmissions differ"
    );
    assert!(branch(&copies[0]).unwrap().starts_with("z9hG4bK-fe"));
    // 64*T1 = 3.2 s later the partner gets 408 with a reason.
    match final_reply(&mut c, Duration::from_secs(15)).await {
        Reply::Message(m) => {
            assert_eq!(m.status(), Some(408));
            assert!(
                m.values_named("Warning")
                    .next()
                    .unwrap_or("")
                    .contains("no answer from the next hop")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benotify_is_relayed_and_never_waited_for() {
    let Setup {
        pki: _pki,
        home,
        edge: _edge,
        mut c,
    } = setup("t1 = \"50ms\"").await;
    let body = b"<categories/>";
    c.send(&request(
        "BENOTIFY",
        "sip:bob@fedge.test",
        "sip:alice@partner.test",
        "sip:bob@fedge.test",
        "z9hG4bK-bn",
        "Event: presence\r\nContent-Type: application/msrtc-event-categories+xml\r\n",
        body,
    ))
    .await
    .unwrap();
    let (m, _) = recv_datagram(&home, Duration::from_secs(5)).expect("BENOTIFY relayed");
    assert_eq!(m.method().map(|m| m.as_str()), Some("BENOTIFY"));
    assert_eq!(m.body(), body);
    // No retransmission and no 408: nobody waits for an answer that never comes.
    assert!(
        recv_datagram(&home, Duration::from_secs(1)).is_none(),
        "BENOTIFY was retransmitted"
    );
    assert!(
        matches!(c.recv(Duration::from_secs(4)).await, Reply::Timeout),
        "the partner got an answer to a BENOTIFY"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_crosses_with_bodies_and_unknown_headers_intact() {
    // Several runtime threads here, one elsewhere: both are exercised.
    let Setup {
        pki: _pki,
        home,
        edge: _edge,
        mut c,
    } = setup("\n[runtime]\nthreads = 2").await;
    // A Lync-style two-SDP multipart body with a NUL, and headers the edge does not know.
    let body: Vec<u8> = b"--b1\r\nContent-Type: application/sdp\r\nContent-Disposition: session; handling=optional; ms-proxy-2007fallback\r\n\r\nv=0\r\na=x-candidate:\x00\xff\r\n--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n--b1--\r\n".to_vec();
    let odd = "X-Odd-Header:   spaced   value\r\nms-conversation-id: AdQ1xVxU\r\nx-folded: first\r\n  second\r\n";
    for (i, method) in [
        "INVITE",
        "MESSAGE",
        "INFO",
        "OPTIONS",
        "SUBSCRIBE",
        "NOTIFY",
        "SERVICE",
        "UPDATE",
        "PRACK",
        "REFER",
        "FOOBAR",
    ]
    .iter()
    .enumerate()
    {
        let branch = format!("z9hG4bK-m{i}");
        let ct = "Content-Type: multipart/alternative;boundary=b1\r\n";
        let sent = request(
            method,
            "sip:bob@fedge.test",
            "sip:alice@partner.test",
            "sip:bob@fedge.test",
            &branch,
            &format!("{odd}{ct}"),
            &body,
        );
        c.send(&sent).await.unwrap();
        let (m, from) = recv_datagram(&home, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{method} not relayed"));
        assert_eq!(m.method().map(|x| x.as_str()), Some(*method));
        assert_eq!(m.body(), &body[..], "{method}: body changed");
        let raw = String::from_utf8_lossy(m.raw());
        assert!(
            raw.contains(odd),
            "{method}: unknown headers changed:\n{raw}"
        );
        assert!(
            raw.contains("\r\nMax-Forwards: 69\r\n"),
            "{method}: Max-Forwards not decremented"
        );
        // The edge's Via is on top of the partner's, which is intact.
        let vias: Vec<String> = m.vias().map(|v| format!("{}", v.host)).collect();
        assert_eq!(vias.len(), 2, "{method}");
        assert!(raw.contains(&format!(
            "Via: SIP/2.0/TLS sip.partner.test:5061;branch={branch}\r\n"
        )));
        answer(&home, &m, from, 200);
        match final_reply(&mut c, Duration::from_secs(5)).await {
            Reply::Message(r) => {
                assert_eq!(r.status(), Some(200), "{method}");
                assert_eq!(
                    r.vias().count(),
                    1,
                    "{method}: the edge's Via reached the partner"
                );
                assert_eq!(r.top_via().unwrap().branch(), Some(branch.as_str()));
            }
            other => panic!("{method}: {other:?}"),
        }
        if *method == "INVITE" {
            // ACK for the 2xx goes end to end, along the route (here: the next hop).
            let ack = request(
                "ACK",
                "sip:bob@fedge.test",
                "sip:alice@partner.test",
                "sip:bob@fedge.test;tag=home",
                "z9hG4bK-ack0",
                "",
                b"",
            );
            c.send(&ack).await.unwrap();
            let (a, _) = recv_datagram(&home, Duration::from_secs(5)).expect("ACK relayed");
            assert_eq!(a.method().map(|x| x.as_str()), Some("ACK"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_back_to_the_edge_is_detected() {
    let pki = Pki::new();
    // The next hop is the edge's own internal listener: a misconfiguration that loops.
    let own = free_port(true);
    let cfg = test_config(&pki, "")
        .replace(
            "[internal]\nlisten = \"127.0.0.1:0\"",
            &format!("[internal]\nlisten = \"127.0.0.1:{own}\""),
        )
        .replace(
            "next_hop = \"sip:127.0.0.1:5080;transport=udp\"",
            &format!("next_hop = \"sip:127.0.0.1:{own};transport=udp\""),
        );
    let edge = Edge::start(&pki, &cfg);
    enable_partner(&edge, "partner.test", PARTNER_FQDN, None);
    let mut c = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    c.send(&request(
        "MESSAGE",
        "sip:bob@fedge.test",
        "sip:alice@partner.test",
        "sip:bob@fedge.test",
        "z9hG4bK-loop",
        "",
        b"",
    ))
    .await
    .unwrap();
    match final_reply(&mut c, Duration::from_secs(10)).await {
        Reply::Message(m) => {
            assert_eq!(
                m.status(),
                Some(482),
                "{:?}",
                m.values_named("Warning").next()
            );
            assert!(
                m.values_named("Warning")
                    .next()
                    .unwrap_or("")
                    .contains("loop")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        admin_get(edge.admin, "/health")["sip"]["loops"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );
}

/// A partner's edge in-process: mutual TLS with the partner certificate,
/// answering every request with 200 and recording what it received.
async fn fake_partner_edge(pki: &Pki) -> (SocketAddr, Arc<Mutex<Vec<SipMessage>>>) {
    let cfg = server_config(
        &TlsFiles {
            cert: pki.partner.cert.clone(),
            key: pki.partner.key.clone(),
            trust: pki.ca_file.clone(),
        },
        ClientAuth::Required,
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = s2.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = BytesMut::new();
                let mut dec = StreamDecoder::new(Limits::default());
                loop {
                    while let Ok(Some(item)) = dec.decode(&mut buf) {
                        if let StreamItem::Message(m) = item {
                            if m.is_request() && m.method().is_some_and(|x| x.as_str() != "ACK") {
                                let r = ResponseBuilder::new(&m, 200).to_tag("partner").build();
                                let _ = tls.write_all(&r).await;
                            }
                            seen.lock().unwrap().push(m);
                        }
                    }
                    match tls.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_requests_are_absorbed_and_answered_again() {
    let pki = Pki::new();
    let edge = edge_with_home(&pki, free_port(false), "");
    let (partner_addr, seen) = fake_partner_edge(&pki).await;
    enable_partner(&edge, "partner.test", PARTNER_FQDN, Some(partner_addr));
    let pool = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = pool.local_addr().unwrap().port();
    let msg = format!(
        "MESSAGE sip:alice@partner.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-rt1\r\nMax-Forwards: 70\r\n\
         From: <sip:bob@fedge.test>;tag=h1\r\nTo: <sip:alice@partner.test>\r\nCall-ID: rt1@fedge.test\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    );
    pool.send_to(msg.as_bytes(), edge.internal).unwrap();
    let (r1, _) = recv_datagram(&pool, Duration::from_secs(10)).expect("first answer");
    assert_eq!(r1.status(), Some(200));
    // The same request again (a UDP retransmission): answered from the
    // transaction, not forwarded a second time.
    pool.send_to(msg.as_bytes(), edge.internal).unwrap();
    let (r2, _) = recv_datagram(&pool, Duration::from_secs(5)).expect("second answer");
    assert_eq!(r2.raw(), r1.raw());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the retransmission was forwarded"
    );
    assert!(
        admin_get(edge.admin, "/health")["sip"]["retransmissions"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );
    // The partner's edge saw our client certificate and our Record-Route-free MESSAGE, Via on top.
    let m = seen.lock().unwrap()[0].clone();
    assert!(m.top_via().unwrap().host.to_string() == "sip.fedge.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_only_from_where_the_invite_came_from() {
    let pki = Pki::new();
    let home = UdpSocket::bind("127.0.0.1:0").unwrap();
    let edge = edge_with_home(&pki, home.local_addr().unwrap().port(), "");
    enable_partner(&edge, "partner.test", PARTNER_FQDN, None);
    let mut a = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    let mut b = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    let invite = request(
        "INVITE",
        "sip:bob@fedge.test",
        "sip:alice@partner.test",
        "sip:bob@fedge.test",
        "z9hG4bK-cx",
        "",
        b"",
    );
    a.send(&invite).await.unwrap();
    let (inv, from) = recv_datagram(&home, Duration::from_secs(5)).expect("INVITE relayed");
    answer(&home, &inv, from, 180);
    assert!(
        matches!(a.recv(Duration::from_secs(5)).await, Reply::Message(m) if m.status() == Some(100))
    );
    assert!(
        matches!(a.recv(Duration::from_secs(5)).await, Reply::Message(m) if m.status() == Some(180))
    );
    // The same CANCEL from another connection matches nothing it may touch.
    let cancel = String::from_utf8(invite.clone())
        .unwrap()
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 7 INVITE", "CSeq: 7 CANCEL");
    b.send(cancel.as_bytes()).await.unwrap();
    assert!(
        matches!(b.recv(Duration::from_secs(5)).await, Reply::Message(m) if m.status() == Some(481))
    );
    assert!(
        recv_datagram(&home, Duration::from_millis(300)).is_none(),
        "a foreign CANCEL reached the callee"
    );
    // From the INVITE's own connection it works: 200, and CANCEL downstream.
    a.send(cancel.as_bytes()).await.unwrap();
    assert!(
        matches!(a.recv(Duration::from_secs(5)).await, Reply::Message(m) if m.status() == Some(200))
    );
    let (c, _) = recv_datagram(&home, Duration::from_secs(5)).expect("CANCEL relayed");
    assert_eq!(c.method().map(|m| m.as_str()), Some("CANCEL"));
    assert_eq!(
        c.top_via().unwrap().branch(),
        inv.top_via().unwrap().branch(),
        "CANCEL must match the forwarded INVITE's branch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_router_is_repaired() {
    let Setup {
        pki: _pki,
        home,
        edge,
        mut c,
    } = setup("").await;
    // The dialog, as the edge saw it begin (a To tag alone does not put
    // a request in a dialog: issue 14.10).
    let invite = "INVITE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS sip.partner.test:5061;branch=z9hG4bK-strict-inv\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@partner.test>;tag=p1\r\nTo: <sip:bob@fedge.test>\r\n\
         Call-ID: strict@partner.test\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";
    c.send(invite.as_bytes()).await.unwrap();
    let (inv, _) = recv_datagram(&home, Duration::from_secs(5)).expect("INVITE relayed");
    assert_eq!(inv.method().map(|m| m.as_str()), Some("INVITE"));
    // An RFC 2543 strict router puts our Record-Route URI in the
    // Request-URI and the remote target last in Route (RFC 3261 §16.4).
    let ours = format!(
        "sip:{EDGE_FQDN}:{};transport=tls;lr",
        edge.federation.port()
    );
    let bye = format!(
        "BYE {ours} SIP/2.0\r\nVia: SIP/2.0/TLS sip.partner.test:5061;branch=z9hG4bK-strict\r\nMax-Forwards: 70\r\n\
         Route: <sip:bob@192.0.2.20:5060>\r\nFrom: <sip:alice@partner.test>;tag=p1\r\nTo: <sip:bob@fedge.test>;tag=callee\r\n\
         Call-ID: strict@partner.test\r\nCSeq: 8 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes();
    c.send(&bye).await.unwrap();
    let Some((m, _)) = recv_datagram(&home, Duration::from_secs(5)) else {
        panic!(
            "BYE not relayed; the partner got {:?}",
            c.recv(Duration::from_secs(1)).await
        );
    };
    assert_eq!(m.request_uri_str(), Some("sip:bob@192.0.2.20:5060"));
    assert!(
        m.first(fedge::sip::headers::HeaderName::Route).is_none(),
        "the used Route entry must go"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_cannot_route_into_the_home_network_or_forge_hiding_tokens() {
    use fedge::sip::headers::HeaderName;
    let Setup {
        pki: _pki,
        home,
        edge,
        mut c,
    } = setup("").await;
    let port = edge.federation.port();
    // A Route past the edge's own entry, naming an internal host: dropped.
    c.send(&request(
        "MESSAGE",
        "sip:bob@fedge.test",
        "sip:alice@partner.test",
        "sip:bob@fedge.test",
        "z9hG4bK-inject",
        &format!(
            "Route: <sip:{EDGE_FQDN}:{port};transport=tls;lr>, <sip:10.9.9.9:5060;lr>\r\n\
             Content-Type: text/plain\r\n"
        ),
        b"hi",
    ))
    .await
    .unwrap();
    let (m, from) = recv_datagram(&home, Duration::from_secs(5)).expect("MESSAGE relayed");
    assert_eq!(m.first(HeaderName::Route), None, "{:?}", m.summary());
    assert!(!String::from_utf8_lossy(m.raw()).contains("10.9.9.9"));
    answer(&home, &m, from, 200);
    let Reply::Message(r) = final_reply(&mut c, Duration::from_secs(5)).await else {
        panic!("no answer")
    };
    assert_eq!(r.status(), Some(200));

    // Forged tokens: a stand-in Contact and a sealed route the edge never made.
    for (n, (ruri, route)) in [
        (
            format!("sip:fe1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@{EDGE_FQDN}:{port};transport=tls"),
            String::new(),
        ),
        (
            "sip:bob@fedge.test".to_string(),
            format!("Route: <sip:{EDGE_FQDN}:{port};transport=tls;lr;fe-h=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA>\r\n"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let bye = format!(
            "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS sip.partner.test:5061;branch=z9hG4bK-forged{n}\r\nMax-Forwards: 70\r\n\
             {route}From: <sip:alice@partner.test>;tag=p1\r\nTo: <sip:bob@fedge.test>;tag=callee\r\n\
             Call-ID: forged{n}@partner.test\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        c.send(bye.as_bytes()).await.unwrap();
        let Reply::Message(r) = final_reply(&mut c, Duration::from_secs(5)).await else {
            panic!("no answer to forged token {n}")
        };
        assert_eq!(r.status(), Some(404), "forged token {n}");
        let w = r.values_named("Warning").next().unwrap_or("");
        assert!(w.contains("was not made by this edge for this dialog"), "{w}");
        assert!(
            recv_datagram(&home, Duration::from_millis(200)).is_none(),
            "forged token {n} reached the home side"
        );
    }
}
