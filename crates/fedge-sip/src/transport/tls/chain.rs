//! What a peer's certificate chain must satisfy besides a valid signature
//! path: revocation (CRLs, PEM or DER, checked in the handshake), caps on
//! the chain's length and size (checked before any signature is), and an
//! application hook ([`ChainCheck`]) that sees the verified path's CAs, for
//! per-partner CA pins.
//!
//! Owns the client and server certificate verifiers the TLS configs use,
//! and the reasons they give. Never decides which CA a peer must chain to:
//! that is the hook's (the application's) rule; this file only reports
//! the CAs of the path webpki verified.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use x509_parser::prelude::FromDer as _;

use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use super::{IdentityError, PeerIdentity, TlsError, identity_of};

/// Default cap on the certificates a peer presents (its own included).
/// Public CA chains are 2 to 4 long; webpki alone would build up to 8.
pub const DEFAULT_MAX_CHAIN_CERTS: usize = 5;
/// Default cap on the bytes of the certificates a peer presents. A
/// 4096-bit RSA chain of four is about 8 KiB.
pub const DEFAULT_MAX_CHAIN_BYTES: usize = 16 * 1024;

/// One CA on a verified path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCa {
    /// The CA's subject, for logs.
    pub subject: String,
    /// SHA-256 of the CA's DER SubjectPublicKeyInfo (an HPKP-style pin).
    pub spki_sha256: [u8; 32],
}

/// The CAs of a path webpki verified: the end-entity's issuer first, the
/// trust anchor last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifiedChain {
    pub cas: Vec<ChainCa>,
}

impl VerifiedChain {
    /// True when a CA on the path has this SPKI hash.
    pub fn contains(&self, spki_sha256: &[u8; 32]) -> bool {
        self.cas.iter().any(|c| &c.spki_sha256 == spki_sha256)
    }

    /// The trust anchor the path ends at.
    pub fn anchor(&self) -> Option<&ChainCa> {
        self.cas.last()
    }
}

/// Why the application's [`ChainCheck`] refused a chain: the text goes into
/// the handshake's log line as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChainRefused(pub String);

/// The application's rule on a verified chain (a partner's CA pin). Called
/// for every path webpki finds, until one passes; if none passes, the
/// last refusal is the handshake's reason.
pub trait ChainCheck: fmt::Debug + Send + Sync {
    fn check(&self, peer: &PeerIdentity, chain: &VerifiedChain) -> Result<(), ChainRefused>;
}

/// Revocation lists, chain caps and the application's check.
#[derive(Debug, Clone)]
pub struct ChainPolicy {
    /// CRLs checked for every certificate on the path; a certificate whose
    /// CA has no CRL here is not refused for that.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub max_certs: usize,
    pub max_bytes: usize,
    pub check: Option<Arc<dyn ChainCheck>>,
}

impl Default for ChainPolicy {
    fn default() -> Self {
        ChainPolicy {
            crls: Vec::new(),
            max_certs: DEFAULT_MAX_CHAIN_CERTS,
            max_bytes: DEFAULT_MAX_CHAIN_BYTES,
            check: None,
        }
    }
}

/// A CRL read from a file, with what the log says about it.
#[derive(Debug, Clone)]
pub struct LoadedCrl {
    pub path: PathBuf,
    pub der: CertificateRevocationListDer<'static>,
    pub issuer: String,
    pub revoked: usize,
    /// The CRL's nextUpdate (UNIX seconds), if it has one.
    pub next_update: Option<i64>,
}

/// Reads CRLs, PEM (one or more `X509 CRL` blocks) or DER (one per file).
pub fn load_crls(paths: &[PathBuf]) -> Result<Vec<LoadedCrl>, TlsError> {
    let mut out = Vec::new();
    for path in paths {
        let data = std::fs::read(path).map_err(|source| TlsError::Read {
            what: "CRL",
            path: path.clone(),
            source,
        })?;
        let ders: Vec<CertificateRevocationListDer<'static>> =
            if data.trim_ascii_start().starts_with(b"-----BEGIN") {
                let v: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&data)
                    .collect::<Result<_, _>>()
                    .map_err(|e| TlsError::Pem {
                        what: "CRL",
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                if v.is_empty() {
                    return Err(TlsError::Empty {
                        what: "CRL",
                        path: path.clone(),
                        kind: "X509 CRL",
                    });
                }
                v
            } else {
                vec![CertificateRevocationListDer::from(data)]
            };
        for der in ders {
            out.push(describe_crl(path, der)?);
        }
    }
    Ok(out)
}

/// The (issuer, serial) pairs the CRLs at `paths` revoke, in the forms
/// [`super::PeerIdentity`] carries (issuer DN as text, serial as hex), so
/// that connections already up can be checked against a new CRL.
pub fn revoked_serials(
    paths: &[PathBuf],
) -> Result<std::collections::HashSet<(String, String)>, TlsError> {
    let mut out = std::collections::HashSet::new();
    for crl in load_crls(paths)? {
        let Ok((_, parsed)) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(crl.der.as_ref())
        else {
            continue;
        };
        let issuer = parsed.issuer().to_string();
        for r in parsed.iter_revoked_certificates() {
            out.insert((issuer.clone(), r.raw_serial_as_string()));
        }
    }
    Ok(out)
}

fn describe_crl(
    path: &Path,
    der: CertificateRevocationListDer<'static>,
) -> Result<LoadedCrl, TlsError> {
    let bad = |detail: String| TlsError::Crl {
        path: path.to_path_buf(),
        detail,
    };
    // webpki is what checks revocation: it must accept the CRL.
    webpki::OwnedCertRevocationList::from_der(der.as_ref()).map_err(|e| bad(format!("{e:?}")))?;
    let (_, crl) =
        x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| bad(format!("not a CRL: {e}")))?;
    Ok(LoadedCrl {
        path: path.to_path_buf(),
        issuer: crl.issuer().to_string(),
        revoked: crl.iter_revoked_certificates().count(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        der,
    })
}

/// Why a verifier of this file refused a certificate; rendered by
/// `describe_handshake_error` as "certificate refused: ...".
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error(transparent)]
    Identity(IdentityError),
    #[error("chain of {count} certificates is longer than the cap of {max}")]
    TooLong { count: usize, max: usize },
    #[error("chain of {bytes} bytes is larger than the cap of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    #[error("{0}")]
    Check(ChainRefused),
}

fn refused(r: Refused) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(r))))
}

impl ChainPolicy {
    /// The caps, checked before any signature work.
    fn check_size(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let count = 1 + intermediates.len();
        if count > self.max_certs {
            return Err(refused(Refused::TooLong {
                count,
                max: self.max_certs,
            }));
        }
        let bytes = end_entity.len() + intermediates.iter().map(|c| c.len()).sum::<usize>();
        if bytes > self.max_bytes {
            return Err(refused(Refused::TooLarge {
                bytes,
                max: self.max_bytes,
            }));
        }
        Ok(())
    }
}

/// DER of `content` wrapped in a SEQUENCE (webpki keeps trust anchors'
/// subject and SPKI without their outer tag).
fn der_sequence(content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = vec![0x30];
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 of a certificate's DER SubjectPublicKeyInfo: the pin of a CA
/// certificate (`openssl x509 -pubkey | openssl pkey -pubin -outform der |
/// openssl dgst -sha256` prints the same).
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<[u8; 32], IdentityError> {
    let (_, x) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    Ok(sha256(x.public_key().raw))
}

fn chain_of(path: &webpki::VerifiedPath<'_>) -> VerifiedChain {
    let mut cas: Vec<ChainCa> = path
        .intermediate_certificates()
        .map(|c| {
            let der = c.der();
            let subject = x509_parser::parse_x509_certificate(der.as_ref())
                .map(|(_, x)| x.subject().to_string())
                .unwrap_or_default();
            ChainCa {
                subject,
                spki_sha256: sha256(c.subject_public_key_info().as_ref()),
            }
        })
        .collect();
    let anchor = path.anchor();
    let subject_der = der_sequence(anchor.subject.as_ref());
    let subject = x509_parser::x509::X509Name::from_der(&subject_der)
        .map(|(_, n)| n.to_string())
        .unwrap_or_default();
    cas.push(ChainCa {
        subject,
        spki_sha256: sha256(&der_sequence(anchor.subject_public_key_info.as_ref())),
    });
    cas.dedup();
    VerifiedChain { cas }
}

/// Finds a path that the application's check accepts; the check's last
/// refusal is the reason when none does.
#[allow(clippy::too_many_arguments)]
fn check_paths(
    check: &dyn ChainCheck,
    peer: &PeerIdentity,
    roots: &RootCertStore,
    provider: &CryptoProvider,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<(), rustls::Error> {
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let refusal: RefCell<Option<ChainRefused>> = RefCell::new(None);
    let verify = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        match check.check(peer, &chain_of(path)) {
            Ok(()) => Ok(()),
            Err(r) => {
                *refusal.borrow_mut() = Some(r);
                Err(webpki::Error::UnknownIssuer)
            }
        }
    };
    let result = cert.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &roots.roots,
        intermediates,
        now,
        usage,
        None,
        Some(&verify),
    );
    match (result, refusal.into_inner()) {
        (Ok(_), _) => Ok(()),
        (Err(_), Some(r)) => Err(refused(Refused::Check(r))),
        (Err(e), None) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(e)),
        ))),
    }
}

/// Verifies client certificates: caps, then webpki (with CRLs), then a
/// usable identity (when mandatory), then the application's check.
#[derive(Debug)]
pub(crate) struct GuardedClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub mandatory: bool,
    pub roots: Arc<RootCertStore>,
    pub provider: Arc<CryptoProvider>,
    pub policy: ChainPolicy,
}

impl ClientCertVerifier for GuardedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
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
        self.policy.check_size(end_entity, intermediates)?;
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let peer = match identity_of(end_entity, true) {
            Ok(p) => p,
            Err(e) if self.mandatory => return Err(refused(Refused::Identity(e))),
            // Where certificates are optional, one without a usable identity is no identity.
            Err(_) => return Ok(ok),
        };
        if let Some(check) = &self.policy.check {
            check_paths(
                check.as_ref(),
                &peer,
                &self.roots,
                &self.provider,
                end_entity,
                intermediates,
                now,
                webpki::KeyUsage::client_auth(),
            )?;
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies a partner edge's server certificate on our outbound
/// connections: caps, webpki (with CRLs), then the application's check.
#[derive(Debug)]
pub(crate) struct GuardedServerVerifier {
    pub inner: Arc<WebPkiServerVerifier>,
    pub roots: Arc<RootCertStore>,
    pub provider: Arc<CryptoProvider>,
    pub policy: ChainPolicy,
}

impl ServerCertVerifier for GuardedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.policy.check_size(end_entity, intermediates)?;
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let (Some(check), Ok(peer)) = (&self.policy.check, identity_of(end_entity, false)) {
            check_paths(
                check.as_ref(),
                &peer,
                &self.roots,
                &self.provider,
                end_entity,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
            )?;
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_sequence_lengths() {
        assert_eq!(der_sequence(&[1, 2]), vec![0x30, 2, 1, 2]);
        let long = vec![0u8; 300];
        let w = der_sequence(&long);
        assert_eq!(&w[..4], &[0x30, 0x82, 0x01, 0x2c]);
        assert_eq!(w.len(), 304);
    }

    #[test]
    fn caps_count_and_bytes() {
        let p = ChainPolicy {
            max_certs: 2,
            max_bytes: 10,
            ..ChainPolicy::default()
        };
        let c = |n: usize| CertificateDer::from(vec![0u8; n]);
        assert!(p.check_size(&c(4), &[c(4)]).is_ok());
        let e = super::super::describe_tls_error(&p.check_size(&c(1), &[c(1), c(1)]).unwrap_err());
        assert_eq!(
            e,
            "certificate refused: chain of 3 certificates is longer than the cap of 2"
        );
        let e = super::super::describe_tls_error(&p.check_size(&c(8), &[c(4)]).unwrap_err());
        assert_eq!(
            e,
            "certificate refused: chain of 12 bytes is larger than the cap of 10 bytes"
        );
    }
}
