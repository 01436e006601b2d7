//! The internal listener (home pool side): UDP and TCP on one address,
//! answering OPTIONS to the edge and refusing bad datagrams without harm.

use std::net::UdpSocket;
use std::time::Duration;

use fedge_testkit::*;

fn options(transport: &str, port: u16, n: u32, rport: bool) -> String {
    let rp = if rport { ";rport" } else { "" };
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK-int-{n}{rp}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:pool@fedge.test>;tag=p{n}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: int-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

fn recv_status(sock: &UdpSocket) -> Option<(u16, String)> {
    let mut b = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut b).ok()?;
    let text = String::from_utf8_lossy(&b[..n]).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text))
}

#[test]
fn udp_options_keepalives_and_bad_datagrams() {
    let pki = Pki::new();
    let mut edge = Edge::start(&pki, &test_config(&pki, ""));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = sock.local_addr().unwrap().port();

    // Answered to the Via sent-by port (RFC 3261 §18.2.2), which is ours.
    sock.send_to(options("UDP", port, 1, false).as_bytes(), edge.internal)
        .unwrap();
    assert_eq!(recv_status(&sock).map(|s| s.0), Some(200));

    // A keep-alive datagram is ignored; the next request is still answered.
    sock.send_to(b"\r\n\r\n", edge.internal).unwrap();
    // A malformed request (CSeq method mismatch) is answered 400 with a reason,
    // sent to the packet's source because the Via asks for rport.
    let bad = options("UDP", 9, 2, true).replace("CSeq: 2 OPTIONS", "CSeq: 2 INVITE");
    sock.send_to(bad.as_bytes(), edge.internal).unwrap();
    let (status, text) = recv_status(&sock).expect("400 for the malformed datagram");
    assert_eq!(status, 400);
    assert!(text.contains("Warning: 399 sip.fedge.test \"CSeq method INVITE does not match the request method OPTIONS\""), "{text}");
    // Pure noise is dropped and logged, and costs nothing else.
    sock.send_to(&[0xff, 0x00, 0x13, 0x37], edge.internal)
        .unwrap();
    sock.send_to(options("UDP", port, 3, false).as_bytes(), edge.internal)
        .unwrap();
    assert_eq!(recv_status(&sock).map(|s| s.0), Some(200));
    assert!(
        edge.wait_log(&["malformed datagram rejected"], Duration::from_secs(2))
            .is_some()
    );
    edge.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_on_the_same_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let mut edge = Edge::start(&pki, &test_config(&pki, ""));
    let mut tcp = tokio::net::TcpStream::connect(edge.internal).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    tcp.write_all(options("TCP", port, 1, false).as_bytes())
        .await
        .unwrap();
    let mut b = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).starts_with("SIP/2.0 200 OK\r\n"));
    // A request for a user is refused with a reason (no partner serves the domain).
    let msg = options("TCP", port, 2, false).replace(
        "OPTIONS sip:127.0.0.1 SIP/2.0",
        "OPTIONS sip:carol@unknown.test SIP/2.0",
    );
    tcp.write_all(msg.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut b))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&b[..n]).into_owned();
    assert!(
        text.starts_with("SIP/2.0 404 Not Found\r\n") && text.contains("unknown.test"),
        "{text}"
    );
    edge.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listeners_and_ipv6_references() {
    let pki = Pki::new();
    // The home pool speaks from ::1 here.
    let cfg = test_config(&pki, "")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"[::1]:0\"")
        .replace(
            "allowed_sources = [\"127.0.0.1\"]",
            "allowed_sources = [\"127.0.0.1\", \"::1\"]",
        );
    let mut edge = Edge::start(&pki, &cfg);
    assert!(edge.federation.is_ipv6() && edge.internal.is_ipv6());

    // UDP over ::1, Request-URI naming the edge by its IPv6 address.
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = sock.local_addr().unwrap().port();
    let req = format!(
        "OPTIONS sip:[::1] SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:{port};branch=z9hG4bK-v6-1\r\nMax-Forwards: 70\r\n\
         From: <sip:pool@[::1]>;tag=v6\r\nTo: <sip:[::1]>\r\nCall-ID: v6-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(req.as_bytes(), edge.internal).unwrap();
    assert_eq!(recv_status(&sock).map(|s| s.0), Some(200));

    // Mutual TLS over ::1 with IPv6 references in Via, From and Contact.
    let mut c = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();
    let msg = "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS [2001:db8::5]:5061;branch=z9hG4bK-v6-2;received=[2001:db8::6]\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@[2001:db8::5]>;tag=a\r\nTo: <sip:bob@fedge.test>\r\n\
         Contact: <sip:alice@[2001:db8::5]:5061;transport=tls>\r\nCall-ID: v6-2\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n".to_string();
    c.send(msg.as_bytes()).await.unwrap();
    match c.recv(Duration::from_secs(5)).await {
        Reply::Message(m) => {
            assert_eq!(m.status(), Some(403));
            let via = m.top_via().expect("Via echoed");
            assert_eq!(via.host.to_string(), "[2001:db8::5]");
            assert_eq!(via.port, Some(5061));
        }
        other => panic!("{other:?}"),
    }
    edge.assert_healthy();
}
