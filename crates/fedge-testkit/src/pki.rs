//! A throw-away PKI for tests and benchmarks: a CA, the edge's certificate,
//! a good partner certificate, and further leaves on demand, written into a
//! temporary directory. It never writes outside that directory.
//!
//! [`Pki::new_rsa`] makes the edge's and the partner's certificates
//! RSA-2048 under an RSA-2048 CA, with the `openssl` command-line tool
//! (rcgen cannot make RSA keys with ring): the shape of most real partner
//! PKIs, and the expensive one for a TLS server.

use std::path::{Path, PathBuf};
use std::process::Command;

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

    /// A PKI whose edge and partner certificates are RSA-2048 (SHA-256
    /// signatures) under an RSA-2048 CA, made with `openssl`. The trust
    /// bundle (`ca_file`) holds the RSA CA and the ECDSA CA, so [`Pki::leaf`]
    /// still issues (ECDSA) leaves that the edge trusts.
    pub fn new_rsa() -> Pki {
        let mut p = Pki::new();
        let dir = p.dir.path().to_path_buf();
        let rsa_ca = rsa_ca(&dir, "rsa-ca");
        p.edge = rsa_leaf(&dir, &rsa_ca, "edge-rsa", &[EDGE_FQDN, "localhost"]);
        p.partner = rsa_leaf(&dir, &rsa_ca, "partner-rsa", &[PARTNER_FQDN]);
        let bundle = format!(
            "{}{}",
            std::fs::read_to_string(&rsa_ca.cert).unwrap(),
            p.ca.pem.cert_pem
        );
        write_pem(&p.ca_file, &bundle, false).unwrap();
        p
    }

    /// An RSA-2048 leaf for `names` (the first is the CN) issued by this
    /// PKI's own (ECDSA) CA with `openssl`, written as `name`.crt and
    /// `name`.key: an RSA partner the edge trusts without a second CA.
    pub fn rsa_leaf(&self, name: &str, names: &[&str]) -> CertFiles {
        let dir = self.dir.path();
        let ca = CertFiles {
            cert: dir.join("ecdsa-ca-for-openssl.crt"),
            key: dir.join("ecdsa-ca-for-openssl.key"),
        };
        write_pem(&ca.cert, &self.ca.pem.cert_pem, false).unwrap();
        write_pem(&ca.key, &self.ca.pem.key_pem, true).unwrap();
        rsa_leaf(dir, &ca, name, names)
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

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed (the test command installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed RSA-2048 CA, valid from yesterday for 30 days.
fn rsa_ca(dir: &Path, name: &str) -> CertFiles {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-keyout",
            &key.to_string_lossy(),
            "-out",
            &cert.to_string_lossy(),
            "-days",
            "30",
            "-subj",
            "/CN=fedge test RSA CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    CertFiles { cert, key }
}

/// An RSA-2048 leaf for `names` (the first is the CN), issued by `ca`,
/// usable as a TLS server and client certificate.
fn rsa_leaf(dir: &Path, ca: &CertFiles, name: &str, names: &[&str]) -> CertFiles {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let ext = dir.join(format!("{name}.ext"));
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        &ext,
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={}\n",
            san.join(",")
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-keyout",
            &key.to_string_lossy(),
            "-out",
            &csr.to_string_lossy(),
            "-subj",
            &format!("/CN={}", names[0]),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-sha256",
            "-in",
            &csr.to_string_lossy(),
            "-CA",
            &ca.cert.to_string_lossy(),
            "-CAkey",
            &ca.key.to_string_lossy(),
            "-set_serial",
            &format!("0x{:x}", rand::random::<u64>() >> 1),
            "-days",
            "30",
            "-extfile",
            &ext.to_string_lossy(),
            "-out",
            &cert.to_string_lossy(),
        ],
    );
    CertFiles { cert, key }
}
