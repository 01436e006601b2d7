//! Certificates made with rcgen: the development PKI that `fedge serve`
//! creates on first start (a CA, the edge's certificate and a sample
//! partner's), and the same building blocks for tests.
//!
//! Owns certificate *creation* only; loading and verifying belong to
//! `sip::transport::tls`. Nothing made here is fit for production: the
//! keys are generated locally and the CA is trusted by nobody else.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a leaf certificate should say.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Subject CN.
    pub common_name: String,
    /// SAN DNS names (may be empty to test CN fallback).
    pub dns_names: Vec<String>,
    /// SAN IP addresses.
    pub ips: Vec<std::net::IpAddr>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A leaf for `name`, valid from yesterday for `days` days, with `name` as its only SAN.
    pub fn new(name: &str, days: i64) -> LeafSpec {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            common_name: name.to_string(),
            dns_names: vec![name.to_string()],
            ips: Vec::new(),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// A certificate authority that can issue leaves.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate and key, PEM encoded.
    pub pem: Issued,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new self-signed CA named `name`, valid for ten years.
    pub fn new(name: &str) -> Result<Authority, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "fedge development");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let pem = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Authority {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// Issues a leaf usable as both TLS server and client (as an SfB edge
    /// certificate is: it serves partners and connects to them).
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.common_name.as_str());
        params.distinguished_name = dn;
        for n in &spec.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(n.as_str().try_into()?));
        }
        for ip in &spec.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes a file; private keys (`secret`) get mode 0600 on Unix.
pub fn write_pem(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if secret { 0o600 } else { 0o644 });
        }
        let mut f = opts.open(&tmp).map_err(err)?;
        f.write_all(contents.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// Names used by the development PKI.
#[derive(Debug, Clone)]
pub struct DevNames {
    pub edge_fqdn: String,
    pub partner_fqdn: String,
}

/// Where the development PKI lives.
#[derive(Debug, Clone)]
pub struct DevFiles {
    pub dir: PathBuf,
}

impl DevFiles {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn edge_cert(&self) -> PathBuf {
        self.dir.join("edge.crt")
    }
    pub fn edge_key(&self) -> PathBuf {
        self.dir.join("edge.key")
    }
    pub fn partner_cert(&self) -> PathBuf {
        self.dir.join("partner.crt")
    }
    pub fn partner_key(&self) -> PathBuf {
        self.dir.join("partner.key")
    }

    fn all(&self) -> [PathBuf; 6] {
        [
            self.ca_cert(),
            self.ca_key(),
            self.edge_cert(),
            self.edge_key(),
            self.partner_cert(),
            self.partner_key(),
        ]
    }

    /// True when every file of the development PKI exists.
    pub fn complete(&self) -> bool {
        self.all().iter().all(|p| p.exists())
    }
}

/// Creates the development PKI (all of it, so the files always belong
/// together). The edge certificate names the edge FQDN, `localhost` and
/// 127.0.0.1 so that local tools can connect by any of them.
pub fn create_dev_pki(files: &DevFiles, names: &DevNames) -> Result<(), PkiError> {
    let ca = Authority::new("fedge development CA - NOT FOR PRODUCTION")?;
    let mut edge = LeafSpec::new(&names.edge_fqdn, 825);
    edge.dns_names.push("localhost".into());
    edge.ips.push(std::net::IpAddr::from([127, 0, 0, 1]));
    let edge = ca.issue(&edge)?;
    let partner = ca.issue(&LeafSpec::new(&names.partner_fqdn, 825))?;
    write_pem(&files.ca_cert(), &ca.pem.cert_pem, false)?;
    write_pem(&files.ca_key(), &ca.pem.key_pem, true)?;
    write_pem(&files.edge_cert(), &edge.cert_pem, false)?;
    write_pem(&files.edge_key(), &edge.key_pem, true)?;
    write_pem(&files.partner_cert(), &partner.cert_pem, false)?;
    write_pem(&files.partner_key(), &partner.key_pem, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transport::tls::{IdentityError, identity_of};
    use rustls::pki_types::{CertificateDer, pem::PemObject};

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn identity_is_san_dns_names_or_cn() {
        let ca = Authority::new("test CA").unwrap();
        let mut spec = LeafSpec::new("sip.partner.test", 30);
        spec.dns_names.push("SIP.Other.test".into());
        let id = identity_of(&der(&ca.issue(&spec).unwrap().cert_pem), true).unwrap();
        assert_eq!(id.names, ["sip.partner.test", "sip.other.test"]);
        assert!(!id.from_cn);
        assert!(id.matches("sip.other.test."));

        let mut spec = LeafSpec::new("cn-only.partner.test", 30);
        spec.dns_names.clear();
        let id = identity_of(&der(&ca.issue(&spec).unwrap().cert_pem), true).unwrap();
        assert_eq!(id.names, ["cn-only.partner.test"]);
        assert!(id.from_cn);

        let mut spec = LeafSpec::new("*.partner.test", 30);
        spec.common_name = "wild".into();
        let err = identity_of(&der(&ca.issue(&spec).unwrap().cert_pem), true).unwrap_err();
        assert_eq!(err, IdentityError::Wildcard("*.partner.test".into()));
    }

    #[test]
    fn dev_pki_is_written_with_private_keys_protected() {
        let dir = tempfile::tempdir().unwrap();
        let files = DevFiles {
            dir: dir.path().join("dev"),
        };
        assert!(!files.complete());
        create_dev_pki(
            &files,
            &DevNames {
                edge_fqdn: "sip.fedge.test".into(),
                partner_fqdn: "sip.partner.test".into(),
            },
        )
        .unwrap();
        assert!(files.complete());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(files.edge_key())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key readable by others");
        }
        let edge = std::fs::read_to_string(files.edge_cert()).unwrap();
        let id = identity_of(&der(&edge), true).unwrap();
        assert!(id.matches("sip.fedge.test") && id.matches("localhost"));
    }
}
