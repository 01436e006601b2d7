//! Mutual TLS on the federation listener of the running binary: who gets
//! in and who is refused, with openssl s_client as a third-party client and
//! tokio-rustls as a second one.

use std::time::Duration;

use fedge::pki::{Authority, LeafSpec};
use fedge_testkit::*;
use time::OffsetDateTime;

struct Setup {
    pki: Pki,
    edge: Edge,
    untrusted: CertFiles,
    expired: CertFiles,
    wildcard: CertFiles,
}

fn setup() -> Setup {
    let pki = Pki::new();
    let edge = Edge::start(&pki, &test_config(&pki, ""));
    let other_ca = Authority::new("some other CA").unwrap();
    let untrusted = write_pair(
        pki.path(),
        "untrusted",
        &other_ca.issue(&LeafSpec::new(PARTNER_FQDN, 30)).unwrap(),
    );
    let mut exp = LeafSpec::new(PARTNER_FQDN, 30);
    exp.not_before = OffsetDateTime::now_utc() - time::Duration::days(60);
    exp.not_after = OffsetDateTime::now_utc() - time::Duration::days(1);
    let expired = pki.leaf("expired", &exp);
    let mut wild = LeafSpec::new("*.partner.test", 30);
    wild.common_name = "partner wildcard".into();
    let wildcard = pki.leaf("wildcard", &wild);
    Setup {
        pki,
        edge,
        untrusted,
        expired,
        wildcard,
    }
}

fn cert_args(c: &CertFiles) -> Vec<String> {
    vec![
        "-cert".into(),
        c.cert.display().to_string(),
        "-key".into(),
        c.key.display().to_string(),
    ]
}

fn args<'a>(v: &'a [String], ca: &'a str) -> Vec<&'a str> {
    let mut a: Vec<&str> = v.iter().map(String::as_str).collect();
    a.extend(["-CAfile", ca, "-verify_return_error"]);
    a
}

#[test]
fn openssl_s_client_good_and_bad_certificates() {
    let mut s = setup();
    let ca = s.pki.ca_file.display().to_string();
    let req = options_to_edge(1);

    // A trusted partner certificate gets in and its OPTIONS is answered.
    let good = cert_args(&s.pki.partner);
    let out = s_client(
        s.edge.federation,
        &args(&good, &ca),
        req.as_bytes(),
        "SIP/2.0 200",
    );
    assert!(
        out.stdout.contains("SIP/2.0 200 OK"),
        "good certificate refused: {}",
        out.all()
    );
    assert!(
        s.edge
            .wait_log(
                &["TLS peer authenticated", PARTNER_FQDN],
                Duration::from_secs(5)
            )
            .is_some()
    );

    // TLS 1.2 and 1.3 both work; TLS 1.1 is refused.
    for v in ["-tls1_2", "-tls1_3"] {
        let mut a = args(&good, &ca);
        a.push(v);
        let out = s_client(s.edge.federation, &a, req.as_bytes(), "SIP/2.0 200");
        assert!(
            out.stdout.contains("SIP/2.0 200 OK"),
            "{v} refused: {}",
            out.all()
        );
    }
    let mut a = args(&good, &ca);
    a.extend(["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    let out = s_client(s.edge.federation, &a, req.as_bytes(), "SIP/2.0");
    assert!(
        !out.stdout.contains("SIP/2.0"),
        "TLS 1.1 was accepted: {}",
        out.all()
    );
    assert!(
        out.stderr.contains("alert")
            || out.stderr.contains("wrong version")
            || out.stderr.contains("unsupported"),
        "{}",
        out.all()
    );
    assert!(
        s.edge
            .wait_log(
                &["TLS handshake refused", "only TLS 1.2 and 1.3 are accepted"],
                Duration::from_secs(5)
            )
            .is_some(),
        "{:?}",
        s.edge.logs()
    );

    // Refused during the handshake, each with a TLS alert openssl names and a
    // log line that gives the reason.
    let none: Vec<String> = Vec::new();
    let cases: [(&str, Vec<String>, &[&str], &str); 4] = [
        (
            "no certificate",
            none,
            &["certificate required", "handshake failure"],
            "no client certificate presented",
        ),
        (
            "untrusted CA",
            cert_args(&s.untrusted),
            &["unknown ca"],
            "not issued by a CA in the trust bundle",
        ),
        (
            "expired",
            cert_args(&s.expired),
            &["certificate expired"],
            "certificate refused: certificate expired",
        ),
        (
            "wildcard",
            cert_args(&s.wildcard),
            &["certificate unknown", "bad certificate"],
            "certificate refused: wildcard name *.partner.test is not accepted for federation",
        ),
    ];
    for (what, cert, alerts, log_reason) in cases {
        let out = s_client(
            s.edge.federation,
            &args(&cert, &ca),
            req.as_bytes(),
            "SIP/2.0",
        );
        assert!(
            !out.stdout.contains("SIP/2.0"),
            "{what}: SIP got through: {}",
            out.all()
        );
        assert!(
            alerts.iter().any(|a| out.stderr.contains(a)),
            "{what}: no {alerts:?} alert: {}",
            out.all()
        );
        assert!(
            s.edge
                .wait_log(
                    &["TLS handshake refused", log_reason],
                    Duration::from_secs(5)
                )
                .is_some(),
            "{what}: no log line with {log_reason:?}: {:?}",
            s.edge.logs()
        );
    }
    s.edge.assert_healthy();
}

/// A Rust client: the handshake may complete on the client side in TLS 1.3,
/// but the server's alert arrives before any SIP does.
async fn rust_client_outcome(s: &Setup, cert: &CertFiles) -> Result<Reply, std::io::Error> {
    let mut c = tls_connect(s.edge.federation, &s.pki, cert).await?;
    c.send(options_to_edge(7).as_bytes()).await?;
    Ok(c.recv(Duration::from_secs(5)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_good_and_bad_certificates() {
    let mut s = setup();
    match rust_client_outcome(&s, &s.pki.partner).await {
        Ok(Reply::Message(m)) => assert_eq!(m.status(), Some(200)),
        other => panic!("good certificate: {other:?}"),
    }
    for (what, cert) in [
        ("untrusted", &s.untrusted),
        ("expired", &s.expired),
        ("wildcard", &s.wildcard),
    ] {
        match rust_client_outcome(&s, cert).await {
            Err(_) | Ok(Reply::Closed) => {}
            other => panic!("{what} certificate was not refused: {other:?}"),
        }
    }
    s.edge.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let mut s = setup();
    let mut tcp = tokio::net::TcpStream::connect(s.edge.federation)
        .await
        .unwrap();
    // Send nothing; the edge must give up on its own (configured: 2 s).
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut b),
    )
    .await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "connection still open: {r:?}"
    );
    assert!(
        s.edge
            .wait_log(
                &["TLS handshake refused: timed out"],
                Duration::from_secs(5)
            )
            .is_some()
    );
    s.edge.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_keepalive_gets_a_pong_and_identity_reaches_the_edge() {
    let mut s = setup();
    let mut c = tls_connect(s.edge.federation, &s.pki, &s.pki.partner)
        .await
        .unwrap();
    c.send(b"\r\n\r\n").await.unwrap();
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Reply::Pong));
    // A request from a domain no partner holds is refused with the reason,
    // and the log line names the identity the certificate proved.
    let msg = format!(
        "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS {PARTNER_FQDN};branch=z9hG4bK-m1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@partner.test>;tag=a\r\nTo: <sip:bob@fedge.test>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    );
    c.send(msg.as_bytes()).await.unwrap();
    match c.recv(Duration::from_secs(5)).await {
        Reply::Message(m) => {
            assert_eq!(m.status(), Some(403));
            let w = m.values_named("Warning").next().unwrap_or("").to_string();
            assert!(
                w == "399 sip.fedge.test \"domain partner.test is not a federation partner of this service\"",
                "{w}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        s.edge
            .wait_log(
                &[
                    "request refused",
                    "sip.partner.test",
                    "MESSAGE sip:bob@fedge.test"
                ],
                Duration::from_secs(5)
            )
            .is_some()
    );
    s.edge.assert_healthy();
}
