//! A throw-away PKI for tests and benchmarks: a CA, the edge's certificate,
//! a good partner certificate, and further leaves on demand, written into a
//! temporary directory. It never writes outside that directory.

use std::path::{Path, PathBuf};

use fedge::pki::{Authority, Issued, LeafSpec, write_pem};

pub const EDGE_FQDN: &str = "sip.fedge.test";
pub const PARTNER_FQDN: &str = "sip.partner.test";

/// A certificate and key written to disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test PKI: our CA, the edge's certificate, a good partner certificate,
/// and helpers for bad ones.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Authority,
    pub ca_file: PathBuf,
    pub edge: CertFiles,
    pub partner: CertFiles,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::new("fedge test CA").expect("CA");
        let ca_file = dir.path().join("ca.crt");
        write_pem(&ca_file, &ca.pem.cert_pem, false).unwrap();
        let edge = write_pair(dir.path(), "edge", &ca.issue(&edge_spec(30)).unwrap());
        let partner = write_pair(
            dir.path(),
            "partner",
            &ca.issue(&LeafSpec::new(PARTNER_FQDN, 30)).unwrap(),
        );
        Pki {
            dir,
            ca,
            ca_file,
            edge,
            partner,
        }
    }

    /// Issues and writes a leaf from this CA.
    pub fn leaf(&self, name: &str, spec: &LeafSpec) -> CertFiles {
        write_pair(self.dir.path(), name, &self.ca.issue(spec).unwrap())
    }

    /// Another certificate for the edge (its names, a new key and serial,
    /// valid `days`), written as `name`.crt and `name`.key.
    pub fn reissue_edge(&self, name: &str, days: i64) -> CertFiles {
        self.leaf(name, &edge_spec(days))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What the edge's certificate says: [`EDGE_FQDN`] and localhost, valid
/// from yesterday for `days` days.
pub fn edge_spec(days: i64) -> LeafSpec {
    let mut spec = LeafSpec::new(EDGE_FQDN, days);
    spec.dns_names.push("localhost".into());
    spec
}

pub fn write_pair(dir: &Path, name: &str, issued: &Issued) -> CertFiles {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    write_pem(&cert, &issued.cert_pem, false).unwrap();
    write_pem(&key, &issued.key_pem, true).unwrap();
    CertFiles { cert, key }
}
