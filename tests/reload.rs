//! Certificate hot reload with real tools: `openssl s_client` reads the
//! serial of the certificate the federation listener serves before and
//! after a SIGHUP, a `fedge reload` and a change of the files on disk,
//! while a partner's user (SIPp behind Kamailio, the partner's edge) keeps
//! a call up through the edge on one TLS connection; bad new files are
//! refused with the reason and the old certificate stays; a trust bundle
//! that no longer trusts the partner's CA refuses its new handshakes and
//! leaves its connection up.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fedge::pki::{Authority, LeafSpec, write_pem};
use fedge_testkit::admin::request;
use fedge_testkit::lab::*;
use fedge_testkit::peers::{Sipp, scenario};
use fedge_testkit::*;

/// Runs openssl with a time limit; stdout.
fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("timeout");
    cmd.arg("10").arg("openssl").args(args);
    let out = match stdin {
        Some(data) => {
            let tmp = std::env::temp_dir().join(format!("reload-{:08x}.pem", rand_u32()));
            std::fs::write(&tmp, data).unwrap();
            let out = cmd
                .stdin(std::fs::File::open(&tmp).unwrap())
                .output()
                .expect("openssl is installed");
            let _ = std::fs::remove_file(&tmp);
            out
        }
        None => cmd
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl is installed"),
    };
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
}

/// `openssl x509 -serial` of a PEM certificate: the hex after `serial=`.
fn serial_of_pem(pem: &str) -> String {
    let out = openssl(&["x509", "-noout", "-serial"], Some(pem));
    out.trim()
        .strip_prefix("serial=")
        .unwrap_or_else(|| panic!("no serial in {out:?}"))
        .trim_start_matches('0')
        .to_string()
}

fn serial_of_file(path: &Path) -> String {
    serial_of_pem(&std::fs::read_to_string(path).unwrap())
}

/// The serial of the certificate the listener at `addr` serves, as
/// `openssl s_client` receives it (presenting `client` for mutual TLS).
fn served_serial(addr: std::net::SocketAddr, client: &CertFiles) -> String {
    let out = openssl(
        &[
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            EDGE_FQDN,
            "-cert",
            &client.cert.display().to_string(),
            "-key",
            &client.key.display().to_string(),
        ],
        None,
    );
    let begin = out
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("s_client saw no certificate: {out}"));
    let end = out[begin..]
        .find("-----END CERTIFICATE-----")
        .map(|e| begin + e + "-----END CERTIFICATE-----".len())
        .unwrap();
    serial_of_pem(&format!("{}\n", &out[begin..end]))
}

/// Puts `from`'s certificate and key where the edge reads its own.
fn install(pki: &Pki, from: &CertFiles) {
    std::fs::copy(&from.cert, &pki.edge.cert).unwrap();
    std::fs::copy(&from.key, &pki.edge.key).unwrap();
}

/// Lines of the edge's log containing every needle.
fn count_log(edge: &Edge, needles: &[&str]) -> usize {
    edge.logs()
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

fn kill_hup(pid: u32) {
    let st = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -HUP {pid}");
}

/// Waits for the "reloaded" log line naming `serial`.
fn wait_reloaded(edge: &Edge, serial: &str, trigger: &str) {
    assert!(
        edge.wait_log(
            &["TLS certificate reloaded", serial, trigger],
            Duration::from_secs(10)
        )
        .is_some(),
        "no reload to {serial} by {trigger}; log:\n{}",
        edge.logs().join("\n")
    );
}

#[test]
fn sighup_fedge_reload_and_a_file_change_swap_the_certificate_under_a_live_call() {
    let lab = Lab::with_config(
        "",
        |c| {
            c.replace(
                "handshake_timeout = \"2s\"",
                "handshake_timeout = \"2s\"\nfile_check = \"300ms\"",
            )
        },
        Some("enabled"),
    );
    let probe = lab
        .pki
        .leaf("probe", &LeafSpec::new("probe.partner.test", 30));
    let fed = lab.edge.federation;
    let first = serial_of_file(&lab.pki.edge.cert);
    assert_eq!(served_serial(fed, &probe), first);

    // A partner's user calls home and holds the call for 15 s.
    let uas = Sipp::spawn(
        lab.dir(),
        &scenario(lab.dir(), "invite_uas.xml", &[]),
        lab.home,
        None,
        &[],
    );
    let held = scenario(lab.dir(), "invite_uac.xml", &[]);
    let text = std::fs::read_to_string(&held).unwrap();
    assert!(text.contains("<pause milliseconds=\"200\"/>"));
    std::fs::write(
        &held,
        text.replace(
            "<pause milliseconds=\"200\"/>",
            "<pause milliseconds=\"15000\"/>",
        ),
    )
    .unwrap();
    let mut caller = lab.spawn_uac(
        lab.kam.udp,
        &held,
        ("bob", "fedge.test"),
        "partner.test",
        &[],
    );
    // Up: the callee's INFO reached the partner's edge.
    let t0 = Instant::now();
    while !lab.kam.logs().contains("REQ INFO") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the call did not come up; fedge:\n{}\nkamailio:\n{}",
            lab.edge.logs().join("\n"),
            lab.kam.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let partner_conns = count_log(&lab.edge, &["TLS peer authenticated", PARTNER_FQDN]);
    assert_eq!(partner_conns, 1, "the partner's edge connected once");
    let outbound = count_log(&lab.edge, &["outbound TLS connection open"]);

    // (a) SIGHUP.
    let second = lab.pki.reissue_edge("edge-2", 30);
    let second_serial = serial_of_file(&second.cert);
    assert_ne!(second_serial, first);
    install(&lab.pki, &second);
    kill_hup(lab.edge.pid());
    wait_reloaded(&lab.edge, &second_serial, "SIGHUP");
    assert_eq!(served_serial(fed, &probe), second_serial);

    // (b) fedge reload (the file watch may see the change first: the
    // command reloads and reports the same certificate).
    let third = lab.pki.reissue_edge("edge-3", 30);
    let third_serial = serial_of_file(&third.cert);
    install(&lab.pki, &third);
    let cli = lab.edge.cli_config("cli.toml");
    let (code, out, err) = fedge_cli(&cli, &["reload"]);
    assert_eq!(code, 0, "fedge reload: {err}");
    assert!(
        out.contains(&third_serial),
        "fedge reload names the served serial {third_serial}: {out}"
    );
    assert_eq!(served_serial(fed, &probe), third_serial);

    // (c) a change on disk, seen by the file check.
    let fourth = lab.pki.reissue_edge("edge-4", 30);
    let fourth_serial = serial_of_file(&fourth.cert);
    install(&lab.pki, &fourth);
    wait_reloaded(&lab.edge, &fourth_serial, "file change");
    assert_eq!(served_serial(fed, &probe), fourth_serial);

    // The call is still up (its BYE not yet sent) after all three.
    assert!(
        caller.exited().is_none(),
        "the call ended before the reloads were done"
    );
    let health = admin_get(lab.edge.admin, "/health");
    assert_eq!(
        health["tls"]["certificate"]["serial"]
            .as_str()
            .unwrap()
            .trim_start_matches('0'),
        fourth_serial
    );
    assert!(health["tls"]["certificate"]["not_after"].as_str().is_some());
    assert!(
        metric(
            lab.edge.admin,
            "fedge_tls_reloads_total",
            &["result=\"ok\""]
        ) >= 3.0
    );
    assert_eq!(
        metric(
            lab.edge.admin,
            "fedge_tls_reloads_total",
            &["result=\"refused\""]
        ),
        0.0
    );

    // The BYE gets its 200, over the same connection.
    lab.assert_ok("caller", &caller.wait(LIMIT));
    lab.assert_ok("callee", &uas.wait(LIMIT));
    assert_eq!(
        count_log(&lab.edge, &["TLS peer authenticated", PARTNER_FQDN]),
        partner_conns,
        "the partner's edge had to connect again"
    );
    assert_eq!(
        count_log(&lab.edge, &["outbound TLS connection open"]),
        outbound,
        "the edge opened a new connection to the partner"
    );
    assert_eq!(
        count_log(&lab.edge, &["TLS reload refused"]),
        0,
        "no reload was refused"
    );
}

/// A bad file set: its name, how to put it in place, what the refusal says.
type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);

#[test]
fn bad_new_files_are_refused_with_the_reason_and_the_old_certificate_stays() {
    let pki = Pki::new();
    let cfg = test_config(&pki, "").replace(
        "handshake_timeout = \"2s\"",
        "handshake_timeout = \"2s\"\nfile_check = \"0s\"",
    );
    let mut edge = Edge::start(&pki, &cfg);
    let cli = edge.cli_config("cli.toml");
    let first = serial_of_file(&pki.edge.cert);
    let original = CertFiles {
        cert: pki.path().join("edge-orig.crt"),
        key: pki.path().join("edge-orig.key"),
    };
    std::fs::copy(&pki.edge.cert, &original.cert).unwrap();
    std::fs::copy(&pki.edge.key, &original.key).unwrap();
    let trust_orig = std::fs::read(&pki.ca_file).unwrap();

    let other = pki.reissue_edge("edge-other", 30);
    let mut expired_spec = fedge_testkit::pki::edge_spec(1);
    expired_spec.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    expired_spec.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let expired = pki.leaf("edge-expired", &expired_spec);
    let wrong_name = pki.leaf("edge-wrong", &LeafSpec::new("sip.other.test", 30));

    // (files to install, what the refusal must say)
    let cases: Vec<Case> = vec![
        (
            "key mismatch",
            Box::new(|| {
                std::fs::copy(&other.cert, &pki.edge.cert).unwrap();
                std::fs::copy(&original.key, &pki.edge.key).unwrap();
            }),
            "do not fit together",
        ),
        (
            "expired",
            Box::new(|| install(&pki, &expired)),
            "expired on",
        ),
        (
            "wrong name",
            Box::new(|| install(&pki, &wrong_name)),
            "but not [federation] fqdn sip.fedge.test",
        ),
        (
            "empty trust bundle",
            Box::new(|| {
                install(&pki, &original);
                std::fs::write(&pki.ca_file, "").unwrap();
            }),
            "trust bundle",
        ),
        (
            "unreadable key",
            Box::new(|| {
                std::fs::write(&pki.ca_file, &trust_orig).unwrap();
                std::fs::copy(&other.cert, &pki.edge.cert).unwrap();
                std::fs::write(&pki.edge.key, "not a key\n").unwrap();
            }),
            "private key",
        ),
    ];
    for (i, (what, put, reason)) in cases.iter().enumerate() {
        put();
        let (code, _, err) = fedge_cli(&cli, &["reload"]);
        assert_eq!(code, 2, "{what}: fedge reload must fail: {err}");
        assert!(
            err.contains(reason) && err.contains("old certificate stays"),
            "{what}: {err}"
        );
        let line = edge
            .wait_log(&["TLS reload refused", reason], Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{what}: no log line; log:\n{}", edge.logs().join("\n")));
        assert!(line.contains("\"ERROR\""), "{what}: at error level: {line}");
        assert_eq!(
            served_serial(edge.federation, &pki.partner),
            first,
            "{what}: the old certificate stays"
        );
        assert_eq!(
            metric(
                edge.admin,
                "fedge_tls_reloads_total",
                &["result=\"refused\""]
            ),
            (i + 1) as f64
        );
    }

    // The API answers 422 with the same reason (here: the unreadable key).
    let token = format!("Bearer {}", edge.token);
    let (status, _, body) = request(
        edge.admin,
        "POST",
        "/api/v1/node/reload",
        &[("Authorization", &token)],
        "",
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("private key"), "{body}");
    // SIGHUP with the same bad files: refused again, still the old one.
    kill_hup(edge.pid());
    let t0 = Instant::now();
    while metric(
        edge.admin,
        "fedge_tls_reloads_total",
        &["result=\"refused\""],
    ) < 7.0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "SIGHUP was not handled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(served_serial(edge.federation, &pki.partner), first);
    // And through the admin API from another host (`--server`): exit 2
    // with the reason.
    let server = format!("http://{}", edge.admin);
    let (code, _, err) = fedge_cli(
        &cli,
        &["--server", &server, "--token", &edge.token, "reload"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("private key"), "{err}");
    assert_eq!(served_serial(edge.federation, &pki.partner), first);

    // Good files again: accepted.
    install(&pki, &other);
    let (code, out, err) = fedge_cli(
        &cli,
        &["--server", &server, "--token", &edge.token, "reload"],
    );
    assert_eq!(code, 0, "{err}");
    let other_serial = serial_of_file(&other.cert);
    assert!(out.contains(&other_serial), "{out}");
    assert_eq!(served_serial(edge.federation, &pki.partner), other_serial);
    edge.assert_healthy();
}

#[test]
fn a_trust_bundle_without_the_partners_ca_refuses_its_new_handshakes_only() {
    let lab = Lab::with_config(
        "",
        |c| {
            c.replace(
                "handshake_timeout = \"2s\"",
                "handshake_timeout = \"2s\"\nfile_check = \"0s\"",
            )
        },
        Some("enabled"),
    );
    let message = |n: u32| {
        let uas = Sipp::spawn(
            lab.dir(),
            &scenario(lab.dir(), "message_uas.xml", &[]),
            lab.home,
            None,
            &[],
        );
        let uac = lab.partner_uac(
            &scenario(lab.dir(), "message_uac.xml", &[]),
            "bob",
            "fedge.test",
            "partner.test",
        );
        lab.assert_ok(&format!("partner MESSAGE {n}"), &uac);
        lab.assert_ok(&format!("home pool {n}"), &uas.wait(LIMIT));
    };
    message(1);
    assert_eq!(
        count_log(&lab.edge, &["TLS peer authenticated", PARTNER_FQDN]),
        1
    );

    // A bundle of another CA only.
    let other_ca = Authority::new("another test CA").unwrap();
    write_pem(&lab.pki.ca_file, &other_ca.pem.cert_pem, false).unwrap();
    let cli = lab.edge.cli_config("cli.toml");
    let (code, _, err) = fedge_cli(&cli, &["reload"]);
    assert_eq!(code, 0, "{err}");

    // A new handshake with the partner's certificate is refused...
    let refused_before = count_log(&lab.edge, &["TLS handshake refused", "trust bundle"]);
    let _ = openssl(
        &[
            "s_client",
            "-connect",
            &lab.edge.federation.to_string(),
            "-cert",
            &lab.pki.partner.cert.display().to_string(),
            "-key",
            &lab.pki.partner.key.display().to_string(),
        ],
        None,
    );
    assert!(
        lab.edge
            .wait_log(
                &[
                    "TLS handshake refused",
                    "not issued by a CA in the trust bundle"
                ],
                Duration::from_secs(5)
            )
            .is_some()
            && count_log(&lab.edge, &["TLS handshake refused", "trust bundle"]) > refused_before,
        "the partner's new handshake was not refused; log:\n{}",
        lab.edge.logs().join("\n")
    );
    // ... while its connection up carries on.
    message(2);
    assert_eq!(
        count_log(&lab.edge, &["TLS peer authenticated", PARTNER_FQDN]),
        1,
        "the partner's edge connected again"
    );
}

#[test]
fn the_cvi_and_admin_tls_listeners_serve_the_new_certificate_too() {
    let pki = Pki::new();
    let cfg = test_config(&pki, "")
        .replace(
            "handshake_timeout = \"2s\"",
            "handshake_timeout = \"2s\"\nfile_check = \"0s\"",
        )
        .replace(
            "[admin]\nlisten = \"127.0.0.1:0\"\n",
            "[admin]\nlisten = \"127.0.0.1:0\"\ntls = true\n",
        )
        + "\n[cvi]\nenabled = true\nlisten = \"127.0.0.1:0\"\nlisten_tls = \"127.0.0.1:0\"\n\
           connector = \"sip:{id}@connector.fedge.test;transport=tcp\"\n\
           connector_address = \"127.0.0.1:9\"\ntenant_key = \"87654321\"\n\
           instructions_base = \"https://cvi.fedge.test\"\n";
    assert!(cfg.contains("tls = true"));
    let edge = Edge::start(&pki, &cfg);
    let cvi_tls = edge.cvi_tls.expect("the CVI TLS listener");
    let first = serial_of_file(&pki.edge.cert);
    for addr in [edge.federation, cvi_tls, edge.admin] {
        assert_eq!(served_serial(addr, &pki.partner), first, "{addr}");
    }

    // SIGHUP: all three serve the new certificate.
    let second = pki.reissue_edge("edge-2", 30);
    let second_serial = serial_of_file(&second.cert);
    install(&pki, &second);
    kill_hup(edge.pid());
    wait_reloaded(&edge, &second_serial, "SIGHUP");
    for addr in [edge.federation, cvi_tls, edge.admin] {
        assert_eq!(served_serial(addr, &pki.partner), second_serial, "{addr}");
    }

    // `fedge reload` over the admin listener's TLS (the CLI accepts only
    // the certificate in the file).
    let cli = pki.path().join("cli-tls.toml");
    std::fs::write(
        &cli,
        cfg.replace(
            "[admin]\nlisten = \"127.0.0.1:0\"",
            &format!("[admin]\nlisten = \"{}\"", edge.admin),
        ),
    )
    .unwrap();
    let third = pki.reissue_edge("edge-3", 30);
    let third_serial = serial_of_file(&third.cert);
    install(&pki, &third);
    let (code, out, err) = fedge_cli(&cli, &["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&third_serial), "{out}");
    for addr in [edge.federation, cvi_tls, edge.admin] {
        assert_eq!(served_serial(addr, &pki.partner), third_serial, "{addr}");
    }

    // A refused file under [admin] tls: the reason, not a TLS failure.
    let wrong = pki.leaf("edge-wrong", &LeafSpec::new("sip.other.test", 30));
    install(&pki, &wrong);
    let (code, _, err) = fedge_cli(&cli, &["reload"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("but not [federation] fqdn"), "{err}");
    for addr in [edge.federation, cvi_tls, edge.admin] {
        assert_eq!(served_serial(addr, &pki.partner), third_serial, "{addr}");
    }
}

/// A partner CA made here (the testkit's CA keeps its key; CRLs need it).
struct PartnerCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl PartnerCa {
    fn new(name: &str) -> PartnerCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(365);
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        PartnerCa {
            issuer: rcgen::Issuer::new(p, key),
            pem,
        }
    }

    /// A partner edge certificate for `name` with `serial`.
    fn leaf(&self, dir: &Path, name: &str, serial: u64) -> CertFiles {
        use rcgen::{
            CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
            SerialNumber,
        };
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
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
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(30);
        p.serial_number = Some(SerialNumber::from(serial));
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let issued = fedge::pki::Issued {
            cert_pem: p.signed_by(&key, &self.issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        };
        write_pair(dir, &format!("crl-leaf-{serial}"), &issued)
    }

    /// This CA's CRL revoking `serials`, number `number`, as PEM.
    fn crl(&self, number: u64, serials: &[u64]) -> String {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
            SerialNumber,
        };
        let now = time::OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(number),
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
        .unwrap()
        .pem()
        .unwrap()
    }
}

/// A partner client that keeps its TLS sessions (tickets): connects to
/// `to`, sends a CRLF ping; how the handshake went and whether the pong came.
fn resuming_ping(
    rt: &tokio::runtime::Runtime,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
    to: std::net::SocketAddr,
) -> (Option<rustls::HandshakeKind>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt.block_on(async {
        let Ok(tcp) = tokio::net::TcpStream::connect(to).await else {
            return (None, false);
        };
        let name = rustls::pki_types::ServerName::try_from(EDGE_FQDN).unwrap();
        let Ok(mut s) = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(name, tcp)
            .await
        else {
            return (None, false);
        };
        let kind = s.get_ref().1.handshake_kind();
        let mut b = [0u8; 16];
        let pong = s.write_all(b"\r\n\r\n").await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(3), s.read(&mut b)).await,
                Ok(Ok(n)) if n > 0
            );
        let _ = s.shutdown().await;
        (kind, pong)
    })
}

#[test]
fn a_new_crl_on_disk_refuses_the_revoked_partner_from_its_next_handshake() {
    let pki = Pki::new();
    let ca = PartnerCa::new("partner CA R");
    let dir = pki.path().to_path_buf();
    let bundle = dir.join("bundle.crt");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(&pki.ca_file).unwrap() + &ca.pem,
    )
    .unwrap();
    let crl = dir.join("r.crl");
    std::fs::write(&crl, ca.crl(1, &[1])).unwrap();
    let cfg = test_config(&pki, "")
        .replace(
            &format!("trust = \"{}\"", pki.ca_file.display()),
            &format!("trust = \"{}\"", bundle.display()),
        )
        .replace(
            "handshake_timeout = \"2s\"",
            &format!(
                "handshake_timeout = \"2s\"\nfile_check = \"300ms\"\ncrls = [\"{}\"]",
                crl.display()
            ),
        );
    let edge = Edge::start(&pki, &cfg);
    let partner = ca.leaf(&dir, PARTNER_FQDN, 4242);
    let handshake = || {
        openssl(
            &[
                "s_client",
                "-connect",
                &edge.federation.to_string(),
                "-cert",
                &partner.cert.display().to_string(),
                "-key",
                &partner.key.display().to_string(),
            ],
            None,
        )
    };
    handshake();
    assert!(
        edge.wait_log(
            &["TLS peer authenticated", PARTNER_FQDN],
            Duration::from_secs(5)
        )
        .is_some(),
        "the partner was not let in before its revocation: {:#?}",
        edge.logs()
    );
    assert_eq!(count_log(&edge, &["certificate refused: revoked"]), 0);
    // A connection of the partner stays up meanwhile (a CRLF ping answered).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut live = rt
        .block_on(tls_connect(edge.federation, &pki, &partner))
        .unwrap();
    rt.block_on(live.send(b"\r\n\r\n")).unwrap();
    assert!(matches!(
        rt.block_on(live.recv(Duration::from_secs(5))),
        Reply::Pong
    ));

    // A session it could resume later (TLS 1.3 ticket), taken before its
    // revocation; it resumes while the CRL does not name it.
    let resuming = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(fedge::sip::transport::tls::load_roots(&pki.ca_file).unwrap())
        .with_client_auth_cert(
            fedge::sip::transport::tls::load_certs(&partner.cert, "certificate").unwrap(),
            fedge::sip::transport::tls::load_key(&partner.key).unwrap(),
        )
        .unwrap(),
    );
    assert_eq!(
        resuming_ping(&rt, &resuming, edge.federation),
        (Some(rustls::HandshakeKind::Full), true)
    );
    assert_eq!(
        resuming_ping(&rt, &resuming, edge.federation),
        (Some(rustls::HandshakeKind::Resumed), true)
    );

    // Its CA's next CRL revokes it: picked up from disk.
    std::fs::write(&crl, ca.crl(2, &[1, 4242])).unwrap();
    let serial = serial_of_file(&pki.edge.cert);
    wait_reloaded(&edge, &serial, "file change");
    // The connection already up is closed: a revocation does not wait for
    // a connection that may last days.
    let got = rt.block_on(live.recv(Duration::from_secs(5)));
    assert!(
        matches!(got, Reply::Closed),
        "still up after its revocation: {got:?}"
    );
    assert!(
        edge.wait_log(
            &[
                "connections of certificates the new CRL revokes closed",
                "CN=sip.partner.test (serial"
            ],
            Duration::from_secs(5)
        )
        .is_some(),
        "{:#?}",
        edge.logs()
    );
    handshake();
    assert!(
        edge.wait_log(
            &["TLS handshake refused", "certificate refused: revoked"],
            Duration::from_secs(5)
        )
        .is_some(),
        "the revoked partner was let in: {:#?}",
        edge.logs()
    );
    // Its session from before the revocation is not resumed (the reload
    // brought new ticket keys), and the full handshake is refused.
    let (kind, pong) = resuming_ping(&rt, &resuming, edge.federation);
    assert!(!pong, "the revoked partner was served on its old session");
    assert_ne!(kind, Some(rustls::HandshakeKind::Resumed));
    // The s_client handshake, the live connection and the resuming
    // client's two before the revocation; none after it.
    assert_eq!(
        count_log(&edge, &["TLS peer authenticated", PARTNER_FQDN]),
        4
    );
}
