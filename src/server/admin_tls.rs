//! The admin listener over TLS (`[admin] tls = true`): the edge's own
//! certificate and key (the federation listener's files), no client
//! certificate, HTTP/1.1.
//!
//! Owns the admin TLS configuration and the listener that hands axum
//! finished handshakes. Handshakes run beside the accept loop, each within
//! the federation handshake timeout and at most `MAX_HANDSHAKES` at once,
//! so a slow client cannot hold the listener. The configuration is read
//! at each accept (`server::reload` swaps it when the files change). It
//! never decides who may use a route (`admin::auth` does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::ServeError;
use crate::config::Config;
use crate::sip::transport::tls::{load_certs, load_key, load_roots, provider};

/// Admin TLS handshakes in progress at once; more wait for the accept.
const MAX_HANDSHAKES: usize = 64;

/// The admin listener's TLS configuration: the federation certificate and
/// key, no client authentication, ALPN http/1.1.
pub(super) fn server_config(cfg: &Config) -> Result<Arc<ServerConfig>, ServeError> {
    let bad = |e: String| ServeError::Config(format!("[admin] tls: {e}"));
    let certs = load_certs(&cfg.federation.cert, "certificate").map_err(|e| bad(e.to_string()))?;
    let key = load_key(&cfg.federation.key).map_err(|e| bad(e.to_string()))?;
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(format!("certificate and key do not fit together: {e}")))?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// A listener that yields connections whose TLS handshake finished.
pub(super) struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` until `shutdown`.
    pub(super) fn start(
        tcp: TcpListener,
        tls: Arc<ArcSwap<ServerConfig>>,
        handshake_timeout: Duration,
        shutdown: CancellationToken,
    ) -> std::io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (sock, peer) = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = tcp.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            debug!(error = %e, "admin accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                // Read at each accept: a certificate reload swaps it.
                let acceptor = TlsAcceptor::from(tls.load_full());
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(sock)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "admin TLS handshake failed"),
                        Err(_) => debug!(%peer, "admin TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, addr })
    }
}

impl crate::admin::AdminListener for TlsListener {}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A TLS client configuration for the CLI's requests to this edge's own
/// admin listener under `[admin] tls`: it accepts the very certificate
/// `[federation] cert` names (pinned by its DER bytes, with the handshake
/// signature checked), whatever CA issued it and whatever name the CLI
/// dials; or, when that file has just been replaced and the edge still
/// serves the one before (until it reloads: `fedge reload`), a certificate
/// that names `[federation] fqdn` and chains to the anchor of
/// `[federation] trust` that the certificate file itself chains to.
pub fn admin_client_config(cfg: &Config) -> Result<Arc<rustls::ClientConfig>, ServeError> {
    let bad = |e: String| ServeError::Config(format!("[admin] tls: {e}"));
    let verifier = own_cert_verifier(cfg)?;
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// The CLI's check of its own admin listener's certificate.
fn own_cert_verifier(cfg: &Config) -> Result<Arc<OwnCert>, ServeError> {
    let bad = |e: String| ServeError::Config(format!("[admin] tls: {e}"));
    let certs = load_certs(&cfg.federation.cert, "certificate").map_err(|e| bad(e.to_string()))?;
    let Some(own) = certs.first().cloned() else {
        return Err(bad("no certificate".into()));
    };
    let provider = provider();
    // The trust bundle may be the very file being replaced: without a
    // usable one, only the pinned certificate is accepted. Of the bundle,
    // only the anchors our own certificate file chains to may vouch for a
    // renewal: the partners' CAs in it never can, whatever names they copy.
    let chained = load_roots(&cfg.federation.trust).ok().and_then(|roots| {
        let name = rustls::pki_types::ServerName::try_from(cfg.federation.fqdn.clone()).ok()?;
        let ours = own_anchors(&certs, &roots, &name, &provider)?;
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(ours, provider.clone())
                .build()
                .ok()?;
        Some((verifier, name))
    });
    let own_issuer = issuer_of(&own);
    Ok(Arc::new(OwnCert {
        own,
        own_issuer,
        chained,
        algs: provider.signature_verification_algorithms,
    }))
}

/// The anchors of `roots` under which the certificate file (`file`: its
/// leaf, then any intermediates) verifies for `fqdn`, each tried alone;
/// `None` when there is none. The file's certificate may have expired (it
/// is being replaced): it is tried now and at the middle of its validity,
/// because the question is which CA issued it, not whether it is current.
fn own_anchors(
    file: &[rustls::pki_types::CertificateDer<'static>],
    roots: &rustls::RootCertStore,
    fqdn: &rustls::pki_types::ServerName<'static>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Option<Arc<rustls::RootCertStore>> {
    use rustls::client::danger::ServerCertVerifier as _;
    let (leaf, intermediates) = file.split_first()?;
    let now = rustls::pki_types::UnixTime::now();
    let times = [Some(now), mid_validity(leaf)];
    let mut ours = rustls::RootCertStore::empty();
    for anchor in &roots.roots {
        let alone = rustls::RootCertStore {
            roots: vec![anchor.clone()],
        };
        let Ok(v) = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(alone),
            provider.clone(),
        )
        .build() else {
            continue;
        };
        let verifies = times.iter().flatten().any(|t| {
            v.verify_server_cert(leaf, intermediates, fqdn, &[], *t)
                .is_ok()
        });
        if verifies {
            ours.roots.push(anchor.clone());
        }
    }
    (!ours.is_empty()).then(|| Arc::new(ours))
}

/// The middle of a certificate's validity (none if it does not parse).
fn mid_validity(
    cert: &rustls::pki_types::CertificateDer<'_>,
) -> Option<rustls::pki_types::UnixTime> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let v = &c.tbs_certificate.validity;
    let from = u64::try_from(v.not_before.timestamp()).ok()?;
    let to = u64::try_from(v.not_after.timestamp()).ok()?;
    Some(rustls::pki_types::UnixTime::since_unix_epoch(
        Duration::from_secs(from + to.saturating_sub(from) / 2),
    ))
}

/// The raw issuer name of a certificate (none if it does not parse).
fn issuer_of(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<Vec<u8>> {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .map(|(_, c)| c.tbs_certificate.issuer.as_raw().to_vec())
}

/// Accepts the edge's own certificate, or one for its FQDN that chains to
/// an anchor of its trust bundle under which the certificate file itself
/// verifies ([`own_anchors`]) and has the same issuer name as the file
/// (see [`admin_client_config`]): the certificate still served between a
/// renewal on disk and the reload. The trust bundle also holds partners'
/// CAs, which must not be able to stand in for this edge towards its own
/// CLI (which sends it its bearer token): an issuer name can be copied by
/// anyone who runs a CA, the anchor's key cannot.
#[derive(Debug)]
struct OwnCert {
    own: rustls::pki_types::CertificateDer<'static>,
    own_issuer: Option<Vec<u8>>,
    chained: Option<(
        Arc<rustls::client::WebPkiServerVerifier>,
        rustls::pki_types::ServerName<'static>,
    )>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for OwnCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.own.as_ref() {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        let refused = || {
            rustls::Error::General(
                "the admin listener did not present this edge's [federation] cert (nor one for [federation] fqdn from its issuer in [federation] trust); after a change of CA, reload with SIGHUP (kill -HUP <the pid of fedge serve>)"
                    .into(),
            )
        };
        let Some((verifier, fqdn)) = &self.chained else {
            return Err(refused());
        };
        if self.own_issuer.is_none() || issuer_of(end_entity) != self.own_issuer {
            return Err(refused());
        }
        verifier
            .verify_server_cert(end_entity, intermediates, fqdn, ocsp, now)
            .map_err(|_| refused())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, LeafSpec};
    use rustls::client::danger::ServerCertVerifier;

    fn der(pem: &str) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// The CLI's verifier for a certificate file `cert_pem` and a trust
    /// bundle of `trust` (PEM CA certificates), for `sip.fedge.test`.
    fn verifier_for(dir: &tempfile::TempDir, cert_pem: &str, trust: &[&str]) -> Arc<OwnCert> {
        let cert = dir.path().join("edge.crt");
        let bundle = dir.path().join("trust.crt");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&bundle, trust.concat()).unwrap();
        let mut cfg = Config::default();
        cfg.federation.cert = cert;
        cfg.federation.trust = bundle;
        cfg.federation.fqdn = "sip.fedge.test".into();
        assert!(admin_client_config(&cfg).is_ok());
        own_cert_verifier(&cfg).unwrap()
    }

    fn check(v: &OwnCert, pem: &str) -> Result<(), rustls::Error> {
        let name = rustls::pki_types::ServerName::try_from("sip.fedge.test").unwrap();
        let now = rustls::pki_types::UnixTime::now();
        v.verify_server_cert(&der(pem), &[], &name, &[], now)
            .map(|_| ())
    }

    #[test]
    fn the_cli_accepts_a_renewed_certificate_only_from_its_own_ca() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let ours = Authority::new("Our CA").unwrap();
        let partners = Authority::new("A partner's CA").unwrap();
        // A partner's CA that copies our CA's subject name exactly.
        let copycat = Authority::new("Our CA").unwrap();
        let fqdn = "sip.fedge.test";
        let file = ours.issue(&LeafSpec::new(fqdn, 30)).unwrap();
        let renewed = ours.issue(&LeafSpec::new(fqdn, 60)).unwrap();
        let impostor = partners.issue(&LeafSpec::new(fqdn, 30)).unwrap();
        let same_name = copycat.issue(&LeafSpec::new(fqdn, 30)).unwrap();
        assert_eq!(
            issuer_of(&der(&same_name.cert_pem)),
            issuer_of(&der(&file.cert_pem)),
            "the copycat's issuer name is ours, byte for byte"
        );
        // The trust bundle holds partners' CAs as well as our own.
        let v = verifier_for(
            &dir,
            &file.cert_pem,
            &[
                &ours.pem.cert_pem,
                &partners.pem.cert_pem,
                &copycat.pem.cert_pem,
            ],
        );
        assert!(
            check(&v, &file.cert_pem).is_ok(),
            "the pinned file certificate"
        );
        assert!(
            check(&v, &renewed.cert_pem).is_ok(),
            "a renewal from our CA"
        );
        let e = check(&v, &impostor.cert_pem).unwrap_err();
        assert!(e.to_string().contains("SIGHUP"), "{e}");
        let e = check(&v, &same_name.cert_pem).unwrap_err();
        assert!(e.to_string().contains("SIGHUP"), "the copycat's leaf: {e}");
        // The copycat listed first in the bundle changes nothing.
        let v = verifier_for(
            &dir,
            &file.cert_pem,
            &[&copycat.pem.cert_pem, &ours.pem.cert_pem],
        );
        assert!(check(&v, &renewed.cert_pem).is_ok());
        assert!(check(&v, &same_name.cert_pem).is_err());

        // Our CA missing from the bundle: only the pinned file is taken.
        let v = verifier_for(&dir, &file.cert_pem, &[&copycat.pem.cert_pem]);
        assert!(check(&v, &file.cert_pem).is_ok());
        assert!(check(&v, &renewed.cert_pem).is_err());
        assert!(check(&v, &same_name.cert_pem).is_err());

        // The file's certificate has expired (the renewal is on its way):
        // its CA is still the one that may vouch for the renewal.
        let mut old = LeafSpec::new(fqdn, 30);
        old.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(90);
        old.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let expired = ours.issue(&old).unwrap();
        let v = verifier_for(
            &dir,
            &expired.cert_pem,
            &[&copycat.pem.cert_pem, &ours.pem.cert_pem],
        );
        assert!(check(&v, &renewed.cert_pem).is_ok(), "renewal after expiry");
        assert!(check(&v, &same_name.cert_pem).is_err());
    }
}
