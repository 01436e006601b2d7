//! TLS abuse against the federation listener of the running binary (issue
//! 13 §3), beyond what tests/tls.rs already covers (no certificate,
//! untrusted CA, expired, wildcard, TLS 1.1): certificates not yet valid,
//! revoked (CRLs in PEM and DER), chains longer or larger than the caps,
//! per-partner CA pins (CLI, audit, handshake), and protocol abuse (SSLv3
//! and TLS 1.0 hellos, renegotiation under TLS 1.2, a ClientHello in
//! one-byte writes and one-byte records, a trickled hello, plain SIP and
//! HTTP on the TLS port). Every refusal is checked in the log, and after
//! each one a good partner is served on a new connection.
//!
//! Third-party clients: openssl s_client (Debian's openssl 3.0 has no
//! `-ssl3`, so the SSLv3 hello is written by hand) and rustls driven by
//! hand for the fragmented hellos. Certificates: rcgen, with our own CAs
//! (the testkit's Pki keeps its CA key to itself; CRLs need it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedge::pki::{Issued, LeafSpec};
use fedge::sip::transport::tls::{TlsFiles, client_config, spki_sha256};
use fedge_testkit::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;

/// A CA made here: issues leaves, sub-CAs and CRLs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn params(name: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(365);
        p.use_authority_key_identifier_extension = true;
        p
    }

    fn root(name: &str) -> Ca {
        let p = Ca::params(name);
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    fn sub(&self, name: &str) -> Ca {
        let p = Ca::params(name);
        let key = KeyPair::generate().unwrap();
        let pem = p.signed_by(&key, &self.issuer).unwrap().pem();
        Ca {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// A leaf naming `name`, with `serial`; `tweak` changes anything else.
    fn leaf(&self, name: &str, serial: u64, tweak: impl FnOnce(&mut CertificateParams)) -> Issued {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.subject_alt_names
            .push(SanType::DnsName(name.try_into().unwrap()));
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(30);
        p.serial_number = Some(SerialNumber::from(serial));
        p.use_authority_key_identifier_extension = true;
        tweak(&mut p);
        let key = KeyPair::generate().unwrap();
        Issued {
            cert_pem: p.signed_by(&key, &self.issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A CRL of this CA revoking `serials`; PEM text and DER bytes.
    fn crl(&self, serials: &[u64]) -> (String, Vec<u8>) {
        let now = OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - time::Duration::minutes(30),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap();
        (crl.pem().unwrap(), crl.der().to_vec())
    }
}

/// A leaf with its chain (leaf first) in the certificate file.
fn write_chain(dir: &Path, name: &str, leaf: &Issued, chain: &[&Ca]) -> CertFiles {
    let mut pem = leaf.cert_pem.clone();
    for c in chain {
        pem.push_str(&c.pem);
    }
    write_pair(
        dir,
        name,
        &Issued {
            cert_pem: pem,
            key_pem: leaf.key_pem.clone(),
        },
    )
}

/// An edge whose trust bundle holds the testkit's CA and `cas`, with
/// `federation` keys added to its [federation] table.
fn start_edge(pki: &Pki, cas: &[&Ca], federation: &str) -> Edge {
    let mut bundle = std::fs::read_to_string(&pki.ca_file).unwrap();
    for c in cas {
        bundle.push_str(&c.pem);
    }
    let bundle_path = pki.path().join("bundle.crt");
    std::fs::write(&bundle_path, bundle).unwrap();
    let cfg = test_config(pki, "")
        .replace(
            &format!("trust = \"{}\"", pki.ca_file.display()),
            &format!("trust = \"{}\"", bundle_path.display()),
        )
        .replace(
            "handshake_timeout = \"2s\"\n",
            &format!("handshake_timeout = \"2s\"\n{federation}\n"),
        );
    Edge::start(pki, &cfg)
}

/// What a Rust TLS client with `cert` gets for an OPTIONS to the edge.
async fn options_with(edge: &Edge, pki: &Pki, cert: &CertFiles) -> Option<u16> {
    let mut c = tls_connect(edge.federation, pki, cert).await.ok()?;
    c.send(options_to_edge(3).as_bytes()).await.ok()?;
    match c.recv(Duration::from_secs(5)).await {
        Reply::Message(m) => m.status(),
        _ => None,
    }
}

/// The good partner is served on a new connection.
async fn next_partner_served(edge: &mut Edge, pki: &Pki, after: &str) {
    assert_eq!(
        options_with(edge, pki, &pki.partner).await,
        Some(200),
        "the next partner was not served after {after}"
    );
    edge.assert_healthy();
}

fn cert_args(c: &CertFiles) -> Vec<String> {
    vec![
        "-cert".into(),
        c.cert.display().to_string(),
        "-key".into(),
        c.key.display().to_string(),
    ]
}

fn must_log(edge: &Edge, what: &str, needles: &[&str]) -> String {
    edge.wait_log(needles, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{what}: no log line with {needles:?}: {:#?}", edge.logs()))
}

/// Waits until `n` log lines contain `needle` (and asserts no more do).
fn wait_count(edge: &Edge, needle: &str, n: usize) {
    let count = || edge.logs().iter().filter(|l| l.contains(needle)).count();
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count(), n, "{needle}: {:#?}", edge.logs());
}

/// Certificates refused in the handshake: not yet valid, revoked (PEM and
/// DER CRLs), a chain longer than the configured cap, a chain larger than
/// the default cap; the partners around them get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yet_valid_revoked_and_oversized_chains_are_refused() {
    let pki = Pki::new();
    let b = Ca::root("partner CA B");
    let c = Ca::root("partner CA C");
    let dir = pki.path().to_path_buf();
    let (b_crl, _) = b.crl(&[666]);
    let (_, c_crl) = c.crl(&[777]);
    std::fs::write(dir.join("b.crl"), b_crl).unwrap();
    std::fs::write(dir.join("c.crl.der"), c_crl).unwrap();
    let mut edge = start_edge(
        &pki,
        &[&b, &c],
        &format!(
            "crls = [\"{}\", \"{}\"]\nmax_chain_certs = 4",
            dir.join("b.crl").display(),
            dir.join("c.crl.der").display()
        ),
    );
    let ca = pki.ca_file.display().to_string();
    let req = options_to_edge(1);
    let fed = edge.federation;
    let s_client_refused = |what: &str, extra: Vec<String>, alerts: &[&str]| {
        let mut a: Vec<&str> = extra.iter().map(String::as_str).collect();
        a.extend(["-CAfile", &ca, "-verify_return_error"]);
        let out = s_client(fed, &a, req.as_bytes(), "SIP/2.0");
        assert!(
            !out.stdout.contains("SIP/2.0"),
            "{what}: SIP got through: {}",
            out.all()
        );
        assert!(
            alerts.iter().any(|x| out.stderr.contains(x)),
            "{what}: no {alerts:?} alert: {}",
            out.all()
        );
    };

    // Not yet valid (from the testkit's CA).
    let mut soon = LeafSpec::new(PARTNER_FQDN, 30);
    soon.not_before = OffsetDateTime::now_utc() + time::Duration::days(2);
    let soon = pki.leaf("not-yet", &soon);
    s_client_refused(
        "not yet valid",
        cert_args(&soon),
        &[
            "certificate expired",
            "bad certificate",
            "certificate unknown",
        ],
    );
    must_log(
        &edge,
        "not yet valid",
        &[
            "TLS handshake refused",
            "certificate refused: certificate not valid yet",
        ],
    );
    next_partner_served(&mut edge, &pki, "a not-yet-valid certificate").await;

    // Revoked: on B's PEM CRL (openssl) and on C's DER CRL (rustls).
    let revoked_b = write_pair(&dir, "revoked-b", &b.leaf(PARTNER_FQDN, 666, |_| {}));
    s_client_refused(
        "revoked (PEM CRL)",
        cert_args(&revoked_b),
        &["certificate revoked"],
    );
    let line = must_log(
        &edge,
        "revoked (PEM CRL)",
        &["TLS handshake refused", "certificate refused: revoked"],
    );
    assert!(line.contains("127.0.0.1"), "{line}");
    let revoked_c = write_pair(&dir, "revoked-c", &c.leaf(PARTNER_FQDN, 777, |_| {}));
    assert_eq!(options_with(&edge, &pki, &revoked_c).await, None);
    wait_count(&edge, "certificate refused: revoked", 2);
    // The same CAs' other certificates, and a CA without a CRL, get in.
    let good_b = write_pair(&dir, "good-b", &b.leaf(PARTNER_FQDN, 1, |_| {}));
    let good_c = write_pair(&dir, "good-c", &c.leaf(PARTNER_FQDN, 2, |_| {}));
    assert_eq!(options_with(&edge, &pki, &good_b).await, Some(200));
    assert_eq!(options_with(&edge, &pki, &good_c).await, Some(200));
    next_partner_served(&mut edge, &pki, "revoked certificates").await;

    // Chains: leaf + 1 intermediate gets in; leaf + 4 intermediates (5 > 4,
    // the configured cap) is refused, though webpki alone would accept it.
    let s1 = b.sub("B sub 1");
    let short = write_chain(&dir, "short", &s1.leaf(PARTNER_FQDN, 3, |_| {}), &[&s1]);
    assert_eq!(options_with(&edge, &pki, &short).await, Some(200));
    let s2 = s1.sub("B sub 2");
    let s3 = s2.sub("B sub 3");
    let s4 = s3.sub("B sub 4");
    let long = write_chain(
        &dir,
        "long",
        &s4.leaf(PARTNER_FQDN, 4, |_| {}),
        &[&s4, &s3, &s2, &s1],
    );
    let mut a = cert_args(&long);
    a.extend(["-cert_chain".into(), long.cert.display().to_string()]);
    s_client_refused("long chain", a, &["certificate unknown", "bad certificate"]);
    must_log(
        &edge,
        "long chain",
        &[
            "TLS handshake refused",
            "certificates is longer than the cap of 4",
        ],
    );
    assert_eq!(options_with(&edge, &pki, &long).await, None);
    must_log(
        &edge,
        "long chain (rustls)",
        &["chain of 5 certificates is longer than the cap of 4"],
    );

    // A 20 KiB certificate against the default cap of 16 KiB.
    let mut big = vec![0x04, 0x82, 0x4e, 0x20];
    big.extend(std::iter::repeat_n(0x5a, 20_000));
    let fat = write_pair(
        &dir,
        "fat",
        &b.leaf(PARTNER_FQDN, 5, |p| {
            p.custom_extensions.push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 32473, 1],
                big,
            ));
        }),
    );
    assert_eq!(options_with(&edge, &pki, &fat).await, None);
    must_log(
        &edge,
        "large chain",
        &[
            "TLS handshake refused",
            "is larger than the cap of 16384 bytes",
        ],
    );
    next_partner_served(&mut edge, &pki, "oversized chains").await;
}

/// The SPKI SHA-256 of a PEM certificate as openssl computes it.
fn openssl_spki_sha256(cert: &Path) -> String {
    let sh = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -r",
        cert.display()
    );
    let out = Command::new("sh").arg("-c").arg(sh).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Retries until `f` holds, for up to ten seconds (registry changes reach
/// the edge on its next poll).
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A partner pinned to CA B: a certificate from another trusted CA naming
/// its edge is refused in the handshake with the pin as the reason; B's
/// gets in; the pin is set, changed and removed by the CLI and audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_pin_binds_a_partner_edge_to_its_ca() {
    let pki = Pki::new();
    let b = Ca::root("partner CA B");
    let dir = pki.path().to_path_buf();
    let b_file = dir.join("ca-b.crt");
    std::fs::write(&b_file, &b.pem).unwrap();
    let mut edge = start_edge(&pki, &[&b], "");
    let cfg = edge.config_path.clone();
    let b_file_s = b_file.display().to_string();

    // CLI refusals: a malformed pin; a pin without an edge FQDN.
    let (code, _, err) = fedge_cli(
        &cfg,
        &[
            "partner",
            "add",
            "--domain",
            "x.test",
            "--org",
            "X",
            "--ca-pin",
            "sha256:abcd",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("neither a CA certificate file nor sha256"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = fedge_cli(
        &cfg,
        &[
            "partner", "add", "--domain", "x.test", "--org", "X", "--ca-pin", &b_file_s,
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs the partner's edge FQDN"), "{err}");

    fedge_ok(
        &cfg,
        &[
            "partner",
            "add",
            "--domain",
            "partner.test",
            "--org",
            "Partner Trust",
            "--edge-fqdn",
            PARTNER_FQDN,
            "--state",
            "enabled",
            "--reason",
            "lab",
            "--ca-pin",
            &b_file_s,
        ],
    );
    // The stored pin is the SPKI hash openssl computes for B's certificate.
    let pin_b = format!("sha256:{}", openssl_spki_sha256(&b_file));
    let der = CertificateDer::from_pem_slice(b.pem.as_bytes()).unwrap();
    let ours: String = spki_sha256(&der)
        .unwrap()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    assert_eq!(pin_b, format!("sha256:{ours}"));
    let show = fedge_ok(&cfg, &["partner", "show", "partner.test"]);
    assert!(
        show.contains(&format!("ca pin:           {pin_b}")),
        "{show}"
    );

    // The testkit's CA is trusted, but not the one partner.test pinned.
    let pki_ref = &pki;
    eventually("the pin reaches the edge", async || {
        options_with(&edge, pki_ref, &pki_ref.partner)
            .await
            .is_none()
    })
    .await;
    let line = must_log(
        &edge,
        "pinned to another CA",
        &[
            "TLS handshake refused",
            "CA pin of partner partner.test (Partner Trust)",
        ],
    );
    assert!(line.contains(&pin_b), "{line}");
    assert!(
        line.contains("fedge test CA"),
        "the anchor it chained to: {line}"
    );
    // openssl sees the refusal as an alert too.
    let ca = pki.ca_file.display().to_string();
    let mut a: Vec<String> = cert_args(&pki.partner);
    a.extend(["-CAfile".into(), ca.clone()]);
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = s_client(
        edge.federation,
        &args,
        options_to_edge(2).as_bytes(),
        "SIP/2.0",
    );
    assert!(!out.stdout.contains("SIP/2.0"), "{}", out.all());
    // B's certificate for the same edge gets in, directly or via a sub-CA.
    let from_b = write_pair(&dir, "from-b", &b.leaf(PARTNER_FQDN, 10, |_| {}));
    assert_eq!(options_with(&edge, &pki, &from_b).await, Some(200));
    let sub = b.sub("B issuing CA");
    let via_sub = write_chain(
        &dir,
        "via-sub",
        &sub.leaf(PARTNER_FQDN, 11, |_| {}),
        &[&sub],
    );
    assert_eq!(options_with(&edge, &pki, &via_sub).await, Some(200));
    // A certificate naming another edge is not this partner's: the policy
    // refuses its requests for partner.test (no pin is involved).
    let other = pki.leaf("other", &LeafSpec::new("sip.other.test", 30));
    let mut c = tls_connect(edge.federation, &pki, &other).await.unwrap();
    let msg = "MESSAGE sip:bob@fedge.test SIP/2.0\r\nVia: SIP/2.0/TLS sip.other.test;branch=z9hG4bK-o1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@partner.test>;tag=a\r\nTo: <sip:bob@fedge.test>\r\nCall-ID: o1\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
    c.send(msg.as_bytes()).await.unwrap();
    match c.recv(Duration::from_secs(5)).await {
        Reply::Message(m) => {
            assert_eq!(m.status(), Some(403));
            let w = m.values_named("Warning").next().unwrap_or("").to_string();
            assert!(
                w.contains("certificate names sip.other.test, which is not the federation edge on record for domain partner.test"),
                "{w}"
            );
            // Another partner's organisation and edge are never told (issue 14.12).
            assert!(
                !w.contains("Partner Trust") && !w.contains("sip.partner.test"),
                "{w}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Re-pin to the testkit's CA (by hash): B's certificate is now refused
    // and the testkit's accepted; both changes are in the audit trail.
    let pin_a = format!("sha256:{}", openssl_spki_sha256(&pki.ca_file));
    fedge_ok(
        &cfg,
        &[
            "partner",
            "update",
            "partner.test",
            "--ca-pin",
            &pin_a,
            "--reason",
            "CA rollover",
        ],
    );
    eventually("the new pin reaches the edge", async || {
        options_with(&edge, pki_ref, &pki_ref.partner).await == Some(200)
    })
    .await;
    assert_eq!(options_with(&edge, &pki, &from_b).await, None);
    fedge_ok(
        &cfg,
        &[
            "partner",
            "update",
            "partner.test",
            "--unset",
            "ca_pin",
            "--reason",
            "unpinned",
        ],
    );
    eventually("the unpinning reaches the edge", async || {
        options_with(&edge, pki_ref, &from_b).await == Some(200)
    })
    .await;
    let history = fedge_ok(&cfg, &["partner", "history", "partner.test", "--json"]);
    let h: serde_json::Value = serde_json::from_str(&history).unwrap();
    let entries = h["entries"].as_array().unwrap();
    let add = &entries[0];
    assert_eq!(add["action"], "add");
    assert!(add["detail"].as_str().unwrap().contains(&pin_b), "{add}");
    let updates: Vec<&serde_json::Value> =
        entries.iter().filter(|e| e["action"] == "update").collect();
    assert_eq!(updates.len(), 2, "{history}");
    let d0: serde_json::Value =
        serde_json::from_str(updates[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(d0["ca_pin"], serde_json::json!([pin_b, pin_a]));
    assert_eq!(updates[0]["reason"], "CA rollover");
    let d1: serde_json::Value =
        serde_json::from_str(updates[1]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(d1["ca_pin"], serde_json::json!([pin_a, null]));
    edge.assert_healthy();
}

/// Writes raw bytes to the TLS port and reads until the edge closes;
/// returns what came back and the local address (for the log line).
fn raw_exchange(addr: SocketAddr, data: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let local = tcp.local_addr().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = tcp.write_all(data);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("the edge neither answered nor closed: got {got:?}")
            }
            Err(_) => break, // reset: closed
        }
    }
    (got, local)
}

/// An SSLv3 ClientHello (record and client version 3.0, no extensions).
fn sslv3_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x00];
    body.extend([0x42u8; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x04, 0x00, 0x2f, 0x00, 0x0a]); // two ciphers
    body.extend([0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x00, 0x00, hs.len() as u8];
    rec.extend(hs);
    rec
}

/// A TLS alert record (content type 21) is the edge's answer to a bad hello.
fn is_alert(got: &[u8]) -> bool {
    got.first() == Some(&0x15)
}

/// How the ClientHello is cut on the wire.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// One TCP write (and segment, with Nagle off) per byte.
    Bytes,
    /// One TLS record per byte of the handshake message.
    Records,
}

/// A blocking rustls client whose ClientHello is cut as `cut` says; then an
/// OPTIONS; returns the status of the answer.
fn fragmented_hello(addr: SocketAddr, pki: &Pki, cut: Cut) -> Option<u16> {
    let cfg = client_config(&TlsFiles {
        cert: pki.partner.cert.clone(),
        key: pki.partner.key.clone(),
        trust: pki.ca_file.clone(),
    })
    .unwrap();
    let name = ServerName::try_from(EDGE_FQDN).unwrap().to_owned();
    let mut conn = rustls::ClientConnection::new(Arc::clone(&cfg), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match cut {
        Cut::Bytes => {
            for b in &hello {
                tcp.write_all(&[*b]).unwrap();
                tcp.flush().unwrap();
            }
        }
        Cut::Records => {
            let (head, payload) = hello.split_at(5);
            assert_eq!(head[0], 0x16, "one handshake record");
            assert_eq!(
                payload.len(),
                u16::from_be_bytes([head[3], head[4]]) as usize
            );
            for b in payload {
                tcp.write_all(&[0x16, head[1], head[2], 0x00, 0x01, *b])
                    .unwrap();
            }
        }
    }
    let mut s = rustls::Stream::new(&mut conn, &mut tcp);
    s.write_all(options_to_edge(9).as_bytes()).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.strip_prefix("SIP/2.0 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
}

/// openssl s_client in its interactive mode (no -quiet): an "R" line asks
/// for a renegotiation (TLS 1.2 and below).
fn s_client_renegotiate(addr: SocketAddr, pki: &Pki) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            EDGE_FQDN,
            "-tls1_2",
        ])
        .args(["-cert", &pki.partner.cert.display().to_string()])
        .args(["-key", &pki.partner.key.display().to_string()])
        .args(["-CAfile", &pki.ca_file.display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    std::thread::sleep(Duration::from_millis(500));
    let _ = stdin.write_all(b"R\n");
    let _ = stdin.flush();
    std::thread::sleep(Duration::from_millis(500));
    let _ = stdin.write_all(options_to_edge(5).as_bytes());
    let _ = stdin.flush();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    format!("{}\n{}", out.join().unwrap(), err.join().unwrap())
}

/// Protocol abuse: each refused, each logged, the next partner served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_abuse_is_refused_logged_and_harmless() {
    let pki = Pki::new();
    let mut edge = start_edge(&pki, &[], "");
    let fed = edge.federation;

    // SSLv3 (Debian's openssl cannot send one: written by hand).
    let (got, local) = raw_exchange(fed, &sslv3_client_hello());
    assert!(got.is_empty() || is_alert(&got), "{got:?}");
    let line = must_log(
        &edge,
        "SSLv3",
        &["TLS handshake refused", &local.to_string()],
    );
    assert!(line.contains("only TLS 1.2 and 1.3 are accepted"), "{line}");
    next_partner_served(&mut edge, &pki, "an SSLv3 hello").await;

    // TLS 1.0 from openssl (its default security level forbids it: lowered).
    let ca = pki.ca_file.display().to_string();
    let mut a = cert_args(&pki.partner);
    a.extend([
        "-CAfile".into(),
        ca,
        "-tls1".into(),
        "-cipher".into(),
        "DEFAULT@SECLEVEL=0".into(),
    ]);
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let before = edge.logs().len();
    let out = s_client(fed, &args, options_to_edge(1).as_bytes(), "SIP/2.0");
    assert!(
        !out.stdout.contains("SIP/2.0"),
        "TLS 1.0 accepted: {}",
        out.all()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !edge.logs()[before..]
        .iter()
        .any(|l| l.contains("TLS handshake refused") && l.contains("only TLS 1.2 and 1.3"))
    {
        assert!(
            Instant::now() < deadline,
            "TLS 1.0 refusal not logged: {:#?}",
            edge.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    next_partner_served(&mut edge, &pki, "a TLS 1.0 hello").await;

    // Plain SIP and HTTP on the TLS port.
    for (what, text) in [
        ("plain SIP", options_to_edge(4)),
        (
            "HTTP",
            "GET / HTTP/1.1\r\nHost: sip.fedge.test\r\n\r\n".to_string(),
        ),
    ] {
        let (got, local) = raw_exchange(fed, text.as_bytes());
        assert!(
            !String::from_utf8_lossy(&got).contains("SIP/2.0")
                && !String::from_utf8_lossy(&got).contains("HTTP/"),
            "{what}: answered in clear: {got:?}"
        );
        let line = must_log(&edge, what, &["TLS handshake refused", &local.to_string()]);
        assert!(line.contains("not a TLS handshake"), "{what}: {line}");
        next_partner_served(&mut edge, &pki, what).await;
    }

    // Renegotiation under TLS 1.2: rustls answers no_renegotiation; openssl
    // gives up on the connection; nothing else is disturbed.
    let out = s_client_renegotiate(fed, &pki);
    assert!(
        out.contains("RENEGOTIATING") || out.contains("renegotiat"),
        "{out}"
    );
    assert!(
        !out.contains("SIP/2.0 200"),
        "request after a refused renegotiation: {out}"
    );
    // Every line of a connection carries its peer (the connection's span),
    // rustls's own lines included.
    let line = must_log(&edge, "renegotiation", &["NoRenegotiation"]);
    assert!(line.contains("\"peer\":\"127.0.0.1:"), "{line}");
    next_partner_served(&mut edge, &pki, "a renegotiation request").await;

    // A ClientHello in one-byte TCP writes, and in one-byte TLS records, is
    // still a ClientHello: the partner is served.
    for cut in [Cut::Bytes, Cut::Records] {
        let pki_ref = &pki;
        let status = tokio::task::block_in_place(|| fragmented_hello(fed, pki_ref, cut));
        assert_eq!(status, Some(200), "{cut:?}");
    }

    // A hello trickled slower than the handshake deadline (2 s here) is cut
    // at the deadline, however steadily bytes arrive.
    let mut tcp = TcpStream::connect(fed).unwrap();
    let local = tcp.local_addr().unwrap();
    tcp.set_nodelay(true).unwrap();
    let hello = sslv3_client_hello();
    let mut cut_off = false;
    for b in hello.iter().take(40) {
        if tcp.write_all(&[*b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    if !cut_off {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(n) => assert!(is_alert(&buf[..n]), "{:?}", &buf[..n]),
        }
    }
    must_log(
        &edge,
        "trickled hello",
        &["TLS handshake refused: timed out", &local.to_string()],
    );
    next_partner_served(&mut edge, &pki, "a trickled hello").await;
}

/// `fedge serve` with `config`, which must exit by itself (killed after
/// 20 s otherwise); its exit code and stderr.
fn serve_exit(config: &Path) -> (i32, String) {
    let mut child = Command::new(fedge_bin())
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (status.and_then(|s| s.code()).unwrap_or(-1), err)
}

/// Bad CRL and cap settings are configuration errors: one line, exit 2.
#[test]
fn bad_crls_and_caps_are_one_line_config_errors() {
    let pki = Pki::new();
    let dir: PathBuf = pki.path().to_path_buf();
    std::fs::write(dir.join("junk.crl"), b"\x30\x03\x02\x01\x01").unwrap();
    std::fs::write(
        dir.join("empty.pem"),
        b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n",
    )
    .unwrap();
    for (extra, needle) in [
        (
            format!("crls = [\"{}\"]", dir.join("missing.crl").display()),
            "cannot read CRL",
        ),
        (
            format!("crls = [\"{}\"]", dir.join("junk.crl").display()),
            "cannot be used",
        ),
        (
            format!("crls = [\"{}\"]", dir.join("empty.pem").display()),
            "holds no usable PEM X509 CRL",
        ),
        (
            "max_chain_certs = 0".to_string(),
            "max_chain_certs must be at least 1",
        ),
    ] {
        let cfg = test_config(&pki, "").replace(
            "handshake_timeout = \"2s\"\n",
            &format!("handshake_timeout = \"2s\"\n{extra}\n"),
        );
        let path = dir.join("bad.toml");
        std::fs::write(&path, cfg).unwrap();
        let (code, err) = serve_exit(&path);
        assert_eq!(code, 2, "{extra}: {err}");
        assert!(err.contains(needle), "{extra}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{extra}: {err}");
    }
}
