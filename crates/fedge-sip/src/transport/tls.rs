//! TLS for SIP listeners and outbound connections: TLS 1.2 and 1.3 with
//! the aws-lc-rs provider, client certificates required or optional per
//! listener ([`ClientAuth`]) and verified against configured trust anchors,
//! and the peer's identity read from its certificate. Which partner or
//! room an identity belongs to is the application's rule, never decided
//! here.
//!
//! Owns certificate loading and what counts as an identity: the SAN DNS
//! names of the end-entity certificate (the subject CN only when there is
//! no SAN extension at all, RFC 5922 §7.1), lower-cased. A listener may
//! resume sessions ([`Resumption`]: TLS 1.3 tickets, TLS 1.2 session IDs
//! and tickets, a bounded cache, rotated ticket keys); a resumed session's
//! chain is then checked again by the listener's current verifier
//! ([`ServerTls::recheck_resumed`]) before the connection is used, so
//! resumption never skips a check a full handshake makes. The outbound
//! side never resumes. A certificate carrying a wildcard name is refused
//! during the handshake, so the peer sees a TLS alert and nothing above
//! this layer ever meets it. Revocation lists, chain caps and the
//! application's chain check (CA pins) are in `chain.rs`.

mod chain;

pub use chain::{
    ChainCa, ChainCheck, ChainPolicy, ChainRefused, DEFAULT_MAX_CHAIN_BYTES,
    DEFAULT_MAX_CHAIN_CERTS, LoadedCrl, VerifiedChain, load_crls, revoked_serials, spki_sha256,
};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::crypto::GetRandomFailed;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ProducesTickets, WebPkiClientVerifier};
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig, ServerConnection};

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
    #[error("CRL {path} cannot be used: {detail}")]
    Crl { path: PathBuf, detail: String },
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
    /// The issuer's distinguished name (with `serial`, what a CRL names).
    pub issuer: String,
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
    #[error("certificate has a subjectAltName without a DNS name; its CN is not used (RFC 5922)")]
    SanWithoutDns,
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
    // RFC 5922 §7.1: the CN counts only when there is no SAN extension at
    // all; a SAN without a DNS name names no SIP domain.
    let has_san = san.is_some();
    if let Some(san) = san {
        for gn in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = gn {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() && !has_san {
        for cn in x.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
                from_cn = true;
            }
        }
    }
    if names.is_empty() {
        return Err(if has_san {
            IdentityError::SanWithoutDns
        } else {
            IdentityError::NoName
        });
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
        issuer: x.issuer().to_string(),
    })
}

/// The aws-lc-rs provider with the default cipher suites: its RSA
/// signatures cost half of ring's, which is most of a full handshake with
/// an RSA certificate (chosen by measurement, see the tls notes).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
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

/// Session resumption on a TLS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumption {
    /// Resume at all (TLS 1.3 tickets, TLS 1.2 session IDs and tickets).
    pub enabled: bool,
    /// Most TLS 1.2 sessions kept by session ID (the oldest go first).
    pub cache: usize,
    /// How long one ticket key encrypts new tickets; a ticket is accepted
    /// for at most twice this, and a key is erased after that.
    pub ticket_rotation: Duration,
}

impl Resumption {
    /// Every connection makes a full handshake.
    pub const fn disabled() -> Resumption {
        Resumption {
            enabled: false,
            cache: 0,
            ticket_rotation: Duration::from_secs(3600),
        }
    }
}

/// A TLS listener's server configuration with the client-certificate
/// verifier it was built with, for [`ServerTls::recheck_resumed`]. A new
/// one (a reload) has a new session cache and new ticket keys: sessions
/// of the old one are not resumed by it.
#[derive(Debug)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ServerTls {
    /// Checks a resumed session's client certificate chain again, as a
    /// full handshake would check it now (trust anchors, revocation
    /// lists, chain caps, expiry, identity, the application's chain check
    /// against the registry as it is now): a resumed session restores the
    /// certificate the client showed when the session began, without the
    /// verifier seeing it again. Full handshakes pass at once (their chain
    /// was just checked).
    pub fn recheck_resumed(&self, conn: &ServerConnection) -> Result<(), rustls::Error> {
        if conn.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
            return Ok(());
        }
        match conn.peer_certificates() {
            Some([end_entity, intermediates @ ..]) => self
                .verifier
                .verify_client_cert(end_entity, intermediates, UnixTime::now())
                .map(|_| ()),
            _ if self.verifier.client_auth_mandatory() => {
                Err(rustls::Error::NoCertificatesPresented)
            }
            _ => Ok(()),
        }
    }
}

/// Server side of a TLS listener: our certificate, client certificates as
/// `auth` says, checked against `trust`, default chain caps, no CRLs, no
/// resumption.
pub fn server_config(files: &TlsFiles, auth: ClientAuth) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(files, auth, &ChainPolicy::default())
}

/// [`server_config`] with revocation lists, chain caps and the
/// application's chain check.
pub fn server_config_with(
    files: &TlsFiles,
    auth: ClientAuth,
    policy: &ChainPolicy,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_tls(files, auth, policy, &Resumption::disabled()).map(|t| t.config.clone())
}

/// A listener's configuration ([`server_config_with`]) with session
/// resumption as `resumption` says, and its verifier for
/// [`ServerTls::recheck_resumed`].
pub fn server_tls(
    files: &TlsFiles,
    auth: ClientAuth,
    policy: &ChainPolicy,
    resumption: &Resumption,
) -> Result<Arc<ServerTls>, TlsError> {
    let certs = load_certs(&files.cert, "certificate")?;
    let key = load_key(&files.key)?;
    let roots = load_roots(&files.trust)?;
    let provider = provider();
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
    if !policy.crls.is_empty() {
        // A CA without a CRL here is not a reason to refuse its certificates.
        builder = builder
            .with_crls(policy.crls.iter().cloned())
            .allow_unknown_revocation_status();
    }
    if auth == ClientAuth::Optional {
        builder = builder.allow_unauthenticated();
    }
    let inner = builder
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let verifier: Arc<dyn ClientCertVerifier> = Arc::new(chain::GuardedClientVerifier {
        inner,
        mandatory: auth == ClientAuth::Required,
        roots,
        provider: provider.clone(),
        policy: policy.clone(),
    });
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("certificate and key do not fit together: {e}")))?;
    if resumption.enabled {
        // Resumed sessions are checked again by the listener
        // (`ServerTls::recheck_resumed`): a resumption skips no check.
        cfg.session_storage =
            rustls::server::ServerSessionMemoryCache::new(resumption.cache.max(1));
        let rotation = u32::try_from(resumption.ticket_rotation.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        cfg.ticketer = Arc::new(
            rustls::ticketer::TicketRotator::new(rotation, ticket_keys)
                .map_err(|e| TlsError::Rustls(format!("ticket keys: {e}")))?,
        );
        // One ticket per connection: partners reconnect one at a time.
        cfg.send_tls13_tickets = 1;
    } else {
        // No session resumption: every connection proves itself in full.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    }
    Ok(Arc::new(ServerTls {
        config: Arc::new(cfg),
        verifier,
    }))
}

/// One ticket key of a [`rustls::ticketer::TicketRotator`]: the provider's
/// own ticketer (an AEAD under a fresh random key), which the rotator
/// replaces every rotation period and erases one period later.
fn ticket_keys() -> Result<Box<dyn ProducesTickets>, GetRandomFailed> {
    let inner = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|_| GetRandomFailed)?;
    Ok(Box::new(TicketKey(inner)))
}

#[derive(Debug)]
struct TicketKey(Arc<dyn ProducesTickets>);

impl ProducesTickets for TicketKey {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(cipher)
    }
}

/// Client side for outbound partner connections: presents our certificate
/// and verifies the partner's server certificate against `trust`.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(files, &ChainPolicy::default())
}

/// [`client_config`] with revocation lists, chain caps and the
/// application's chain check applied to the partner edge's certificate.
pub fn client_config_with(
    files: &TlsFiles,
    policy: &ChainPolicy,
) -> Result<Arc<ClientConfig>, TlsError> {
    let certs = load_certs(&files.cert, "certificate")?;
    let key = load_key(&files.key)?;
    let roots = load_roots(&files.trust)?;
    let provider = provider();
    let mut builder = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone());
    if !policy.crls.is_empty() {
        builder = builder
            .with_crls(policy.crls.iter().cloned())
            .allow_unknown_revocation_status();
    }
    let inner = builder
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let verifier = chain::GuardedServerVerifier {
        inner,
        roots,
        provider: provider.clone(),
        policy: policy.clone(),
    };
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("certificate and key do not fit together: {e}")))?;
    // No resumption toward partners either: their certificate is checked
    // (revocation, pins) on every connection.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// A readable reason for a failed handshake, for the log line an operator
/// reads when a partner says "we cannot connect".
pub fn describe_handshake_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(err) => describe_tls_error(err),
        None => e.to_string(),
    }
}

/// A readable reason for a TLS error (see [`describe_handshake_error`]).
pub fn describe_tls_error(err: &rustls::Error) -> String {
    use rustls::{InvalidMessage, PeerMisbehaved};
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<chain::Refused>() {
                Some(r) => format!("certificate refused: {r}"),
                None => format!("certificate refused: {}", other.0),
            }
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate refused: not issued by a CA in the trust bundle (UnknownIssuer)".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::Revoked) => {
            "certificate refused: revoked (its serial is on its CA's certificate revocation list)"
                .into()
        }
        rustls::Error::InvalidCertificate(c) => format!("certificate refused: {c}"),
        rustls::Error::NoCertificatesPresented => {
            "no client certificate presented (mutual TLS is required)".into()
        }
        rustls::Error::PeerIncompatible(p) => {
            format!("peer is incompatible ({p:?}); only TLS 1.2 and 1.3 are accepted")
        }
        rustls::Error::InvalidMessage(
            m @ (InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion),
        ) => format!(
            "not a TLS handshake ({m:?}): plain text (SIP or HTTP?) or garbage on the TLS port"
        ),
        rustls::Error::PeerMisbehaved(PeerMisbehaved::TooManyRenegotiationRequests) => {
            "renegotiation refused: renegotiation is not supported (TooManyRenegotiationRequests)"
                .into()
        }
        other => other.to_string(),
    }
}
