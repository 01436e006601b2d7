//! TLS for SIP listeners and outbound connections: TLS 1.2 and 1.3 with
//! the ring provider, client certificates required or optional per
//! listener ([`ClientAuth`]) and verified against configured trust anchors,
//! and the peer's identity read from its certificate. Which partner or
//! room an identity belongs to is the application's rule, never decided
//! here.
//!
//! Owns certificate loading and what counts as an identity: the SAN DNS
//! names of the end-entity certificate (the subject CN only when there is
//! no SAN), lower-cased. A certificate carrying a wildcard name is refused
//! during the handshake, so the peer sees a TLS alert and nothing above
//! this layer ever meets it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable PEM {kind}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{what} {path} is not valid PEM: {detail}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

/// The identity a peer proved with its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Lower-cased DNS names from the SAN extension (or the CN when there is no SAN).
    pub names: Vec<String>,
    /// True when `names` came from the subject CN because there was no SAN.
    pub from_cn: bool,
    /// The subject distinguished name, for logs.
    pub subject: String,
    /// The certificate serial number, for logs and audit.
    pub serial: String,
}

impl PeerIdentity {
    /// True when the certificate names `fqdn` (case-insensitive, exact).
    pub fn matches(&self, fqdn: &str) -> bool {
        let f = fqdn.trim_end_matches('.');
        self.names.iter().any(|n| n.eq_ignore_ascii_case(f))
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names.join(","))
    }
}

/// Why a certificate's names are unacceptable as an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("certificate names no DNS identity (no SAN DNS name and no CN)")]
    NoName,
    #[error("wildcard name {0} is not accepted for federation")]
    Wildcard(String),
    #[error("certificate name {0:?} is not a valid DNS name")]
    BadName(String),
}

/// Reads the identity of an end-entity certificate.
pub fn identity_of(
    cert: &CertificateDer<'_>,
    refuse_wildcards: bool,
) -> Result<PeerIdentity, IdentityError> {
    let (_, x) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let san = x
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let mut names: Vec<String> = Vec::new();
    let mut from_cn = false;
    if let Some(san) = san {
        for gn in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = gn {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in x.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
                from_cn = true;
            }
        }
    }
    if names.is_empty() {
        return Err(IdentityError::NoName);
    }
    for n in &names {
        if n.contains('*') {
            if refuse_wildcards {
                return Err(IdentityError::Wildcard(n.clone()));
            }
        } else if crate::uri::parse_host(n).map(|h| h.is_ip()).unwrap_or(true) {
            return Err(IdentityError::BadName(n.clone()));
        }
    }
    Ok(PeerIdentity {
        names,
        from_cn,
        subject: x.subject().to_string(),
        serial: x.raw_serial_as_string(),
    })
}

/// The ring provider with the default cipher suites.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Loads a PEM certificate chain.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

/// Loads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "private key",
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "private key",
            path: path.to_path_buf(),
            kind: "private key",
        },
        other => TlsError::Pem {
            what: "private key",
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    })
}

/// Loads trust anchors from a PEM bundle.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let certs = load_certs(path, "trust bundle")?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| TlsError::Rustls(format!("trust anchor in {}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

/// Paths of the edge's certificate, key and trust anchors.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust: PathBuf,
}

/// Verifies client certificates with webpki, then insists on a usable identity.
#[derive(Debug)]
struct IdentityClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

#[derive(Debug)]
struct IdentityRefused(IdentityError);

impl fmt::Display for IdentityRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IdentityRefused {}

impl ClientCertVerifier for IdentityClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        identity_of(end_entity, true).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                IdentityRefused(e),
            ))))
        })?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether a TLS listener insists on a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Mutual TLS: a client certificate is required, verified against the
    /// trust store, and must name a usable DNS identity (no wildcard); a
    /// connection without one is refused in the handshake.
    Required,
    /// A client certificate is verified when one is presented, but none is
    /// needed, and one naming no usable identity is not an error.
    Optional,
}

/// Server side of a TLS listener: our certificate, client certificates as
/// `auth` says, checked against `trust`.
pub fn server_config(files: &TlsFiles, auth: ClientAuth) -> Result<Arc<ServerConfig>, TlsError> {
    build_server_config(files, |roots, provider| match auth {
        ClientAuth::Required => {
            let inner = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            Ok(Arc::new(IdentityClientVerifier { inner }) as Arc<dyn ClientCertVerifier>)
        }
        ClientAuth::Optional => WebPkiClientVerifier::builder_with_provider(roots, provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string())),
    })
}

/// Our certificate and key with the client verifier `verifier` builds from
/// the trust store.
fn build_server_config(
    files: &TlsFiles,
    verifier: impl FnOnce(
        Arc<rustls::RootCertStore>,
        Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert, "certificate")?;
    let key = load_key(&files.key)?;
    let roots = load_roots(&files.trust)?;
    let provider = provider();
    let verifier = verifier(roots, provider.clone())?;
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("certificate and key do not fit together: {e}")))?;
    Ok(Arc::new(cfg))
}

/// Client side for outbound partner connections: presents our certificate
/// and verifies the partner's server certificate against `trust`.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let certs = load_certs(&files.cert, "certificate")?;
    let key = load_key(&files.key)?;
    let roots = load_roots(&files.trust)?;
    let provider = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("certificate and key do not fit together: {e}")))?;
    Ok(Arc::new(cfg))
}

/// A readable reason for a failed handshake, for the log line an operator
/// reads when a partner says "we cannot connect".
pub fn describe_handshake_error(e: &std::io::Error) -> String {
    let Some(err) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return e.to_string();
    };
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<IdentityRefused>() {
                Some(r) => format!("certificate refused: {r}"),
                None => format!("certificate refused: {}", other.0),
            }
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate refused: not issued by a CA in the trust bundle (UnknownIssuer)".into()
        }
        rustls::Error::InvalidCertificate(c) => format!("certificate refused: {c}"),
        rustls::Error::NoCertificatesPresented => {
            "no client certificate presented (mutual TLS is required)".into()
        }
        rustls::Error::PeerIncompatible(p) => {
            format!("peer is incompatible ({p:?}); only TLS 1.2 and 1.3 are accepted")
        }
        other => other.to_string(),
    }
}
