//! Certificate hot reload: the `[federation] cert`, `key`, `trust` and
//! `crls` files are read again on SIGHUP, on `POST /api/v1/node/reload`
//! (`fedge reload`), and when they change on disk (checked every
//! `[federation] file_check`, once the change has settled).
//!
//! Owns building every TLS configuration the edge serves from those files
//! (the federation listener, the outbound pool's client side, the CVI TLS
//! listener, the admin listener under `[admin] tls`), all or nothing, and
//! swapping them in: new handshakes get the new ones, connections already
//! up keep theirs. A bad new set (unreadable, key not fitting the
//! certificate, expired or not yet valid, not naming `[federation] fqdn`,
//! an empty or unparsable trust bundle, an unusable CRL) is refused with
//! one log line and the old configuration stays in force. The chain caps
//! and the partners' CA pins stay as at start-up; only the files are read
//! again. It never closes a connection and never reads the rest of the
//! configuration file again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::{ClientConfig, ServerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::tls::{ReloadOutcome, ReloadRefused, ServedCert, TlsControl};
use crate::config::Config;
use crate::federation::metrics::Metrics;
use crate::sip::transport::outbound::Pool;
use crate::sip::transport::tls::{
    ChainCheck, ChainPolicy, ClientAuth, Resumption, ServerTls, client_config_with, identity_of,
    load_certs, server_tls,
};

use super::{admin_tls, tls_files, tls_policy};

/// Every TLS configuration built from one reading of the files.
pub(super) struct Material {
    /// The federation listener's: a new one (a new session cache and new
    /// ticket keys) at each reload, so no session outlives the files it
    /// was checked against.
    pub fed: Arc<ServerTls>,
    pub client: Arc<ClientConfig>,
    /// The CVI TLS listener's (certificate optional), when it runs.
    pub cvi: Option<Arc<ServerTls>>,
    /// The admin listener's, under `[admin] tls`.
    pub admin: Option<Arc<ServerConfig>>,
    pub cert: ServedCert,
}

/// Reads the files and builds every configuration from them. `strict`
/// (a reload) also refuses a certificate that is expired, not yet valid
/// or does not name `[federation] fqdn`; at start-up the preflight's
/// checks alone apply, as before. The error is one line naming the file.
pub(super) fn load(
    cfg: &Config,
    check: Option<Arc<dyn ChainCheck>>,
    strict: bool,
) -> Result<Material, ReloadRefused> {
    let files = tls_files(cfg);
    let cert = served_cert(&cfg.federation.cert, &cfg.federation.fqdn, strict)?;
    let policy = tls_policy::chain_policy(cfg, check).map_err(|e| e.to_string())?;
    let f = &cfg.federation;
    let resumption = Resumption {
        enabled: f.tls_resumption,
        cache: f.tls_session_cache,
        ticket_rotation: f.tls_ticket_rotation,
    };
    let fed = server_tls(&files, ClientAuth::Required, &policy, &resumption)
        .map_err(|e| format!("[federation] {e}"))?;
    let client = client_config_with(&files, &policy).map_err(|e| format!("[federation] {e}"))?;
    let cvi = if cfg.cvi.enabled && cfg.cvi.listen_tls.is_some() {
        // As at start-up: the CVI listener checks room certificates against
        // the trust bundle, without the federation's CRLs and pins.
        Some(
            server_tls(
                &files,
                ClientAuth::Optional,
                &ChainPolicy::default(),
                &Resumption::disabled(),
            )
            .map_err(|e| format!("[federation] {e}"))?,
        )
    } else {
        None
    };
    let admin = if cfg.admin.tls {
        Some(admin_tls::server_config(cfg).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok(Material {
        fed,
        client,
        cvi,
        admin,
        cert,
    })
}

/// The leaf certificate's facts; with `strict`, its name and validity
/// checked as partners will check them.
fn served_cert(path: &Path, fqdn: &str, strict: bool) -> Result<ServedCert, ReloadRefused> {
    let where_ = path.display();
    let chain = load_certs(path, "certificate").map_err(|e| format!("[federation] {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("[federation] certificate {where_} holds no certificate"))?;
    let (_, x) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("[federation] certificate {where_} cannot be parsed: {e}"))?;
    let not_after = x.validity().not_after.timestamp();
    let not_before = x.validity().not_before.timestamp();
    if strict {
        let names = identity_of(leaf, false)
            .map(|id| id.names)
            .unwrap_or_default();
        let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
        if !names.iter().any(|n| name_matches(n, &fqdn)) {
            return Err(format!(
                "[federation] certificate {where_} names {} but not [federation] fqdn {fqdn}: partners would refuse it",
                if names.is_empty() {
                    "nothing".to_string()
                } else {
                    names.join(", ")
                }
            )
            .into());
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if not_after <= now {
            return Err(format!(
                "[federation] certificate {where_} expired on {}",
                rfc3339(not_after)
            )
            .into());
        }
        if not_before > now {
            return Err(format!(
                "[federation] certificate {where_} is not valid before {}",
                rfc3339(not_before)
            )
            .into());
        }
    }
    Ok(ServedCert {
        serial: serial_hex(x.raw_serial()),
        subject: x.subject().to_string(),
        not_after: rfc3339(not_after),
        loaded_at: rfc3339(time::OffsetDateTime::now_utc().unix_timestamp()),
    })
}

/// A certificate name against the FQDN: equal, or a one-label wildcard
/// (`fedge config check` matches them with this too).
pub fn name_matches(name: &str, fqdn: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(rest) => fqdn
            .split_once('.')
            .is_some_and(|(label, parent)| !label.is_empty() && parent == rest),
        None => name == fqdn,
    }
}

/// A serial as openssl prints it: upper-case hex, without the sign byte.
fn serial_hex(raw: &[u8]) -> String {
    let mut bytes = raw;
    while bytes.len() > 1 && bytes[0] == 0 {
        bytes = &bytes[1..];
    }
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// What the running edge swaps on a good reload.
pub(super) struct Swaps {
    pub fed: Arc<ArcSwap<ServerTls>>,
    pub cvi: Option<Arc<ArcSwap<ServerTls>>>,
    pub admin: Option<Arc<ArcSwap<ServerConfig>>>,
    pub pool: Arc<Pool>,
    /// The connections up: a new CRL closes the federation connections of
    /// certificates it revokes.
    pub table: Arc<crate::sip::transport::ConnectionTable>,
}

/// A digest of the files' contents (or of why one cannot be read).
type Fingerprint = [u8; 32];

/// What has been applied and refused, by the files' fingerprints.
struct Seen {
    served: ServedCert,
    applied: Fingerprint,
    refused: Option<Fingerprint>,
}

/// The running edge's TLS material and its reload.
pub struct Reloader {
    cfg: Config,
    check: Option<Arc<dyn ChainCheck>>,
    swaps: Swaps,
    seen: Mutex<Seen>,
    /// One reload at a time (a signal and a request may cross).
    gate: Mutex<()>,
    ok: AtomicU64,
    refused: AtomicU64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("cert", &self.cfg.federation.cert)
            .finish_non_exhaustive()
    }
}

const RELOADS_HELP: &str = "Reloads of the TLS certificate, key, trust bundle and CRLs, by result";

impl Reloader {
    /// The reloader of what `first` (the start-up's material, already
    /// swapped in) was built from.
    pub(super) fn new(
        cfg: &Config,
        check: Option<Arc<dyn ChainCheck>>,
        swaps: Swaps,
        first: ServedCert,
        metrics: Arc<Metrics>,
    ) -> Arc<Reloader> {
        let r = Reloader {
            cfg: cfg.clone(),
            check,
            swaps,
            seen: Mutex::new(Seen {
                served: first,
                applied: [0; 32],
                refused: None,
            }),
            gate: Mutex::new(()),
            ok: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            metrics,
        };
        let fp = fingerprint(&r.paths());
        r.seen_mut().applied = fp;
        r.publish_expiry();
        Arc::new(r)
    }

    fn seen_mut(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The files a reload reads.
    fn paths(&self) -> Vec<PathBuf> {
        let f = &self.cfg.federation;
        let mut p = vec![f.cert.clone(), f.key.clone(), f.trust.clone()];
        p.extend(f.crls.iter().cloned());
        p
    }

    fn publish_expiry(&self) {
        let served = self.seen_mut().served.clone();
        if let Ok(t) = time::OffsetDateTime::parse(
            &served.not_after,
            &time::format_description::well_known::Rfc3339,
        ) {
            self.metrics.set(
                "fedge_tls_cert_not_after_seconds",
                "The served federation certificate's notAfter (Unix seconds)",
                &[],
                t.unix_timestamp() as f64,
            );
        }
    }

    /// Reads the files, builds everything, and swaps it in; or refuses.
    fn apply(&self, trigger: &str) -> Result<ReloadOutcome, ReloadRefused> {
        let _one = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let fp = fingerprint(&self.paths());
        match load(&self.cfg, self.check.clone(), true) {
            Ok(m) => {
                self.swaps.fed.store(m.fed);
                self.swaps.pool.set_client_config(m.client);
                if let (Some(s), Some(c)) = (&self.swaps.cvi, m.cvi) {
                    s.store(c);
                }
                if let (Some(s), Some(c)) = (&self.swaps.admin, m.admin) {
                    s.store(c);
                }
                {
                    let mut seen = self.seen_mut();
                    seen.served = m.cert.clone();
                    seen.applied = fp;
                    seen.refused = None;
                }
                self.close_revoked();
                let reloads = self.ok.fetch_add(1, Ordering::Relaxed) + 1;
                self.metrics
                    .inc("fedge_tls_reloads_total", RELOADS_HELP, &[("result", "ok")]);
                self.publish_expiry();
                let c = &m.cert;
                info!(%trigger, serial = %c.serial, subject = %c.subject, not_after = %c.not_after,
                    "TLS certificate reloaded: new handshakes get it; connections up keep theirs");
                Ok(ReloadOutcome {
                    certificate: m.cert,
                    reloads,
                    refused: self.refused.load(Ordering::Relaxed),
                })
            }
            Err(why) => {
                self.seen_mut().refused = Some(fp);
                self.refused.fetch_add(1, Ordering::Relaxed);
                self.metrics.inc(
                    "fedge_tls_reloads_total",
                    RELOADS_HELP,
                    &[("result", "refused")],
                );
                let served = self.seen_mut().served.serial.clone();
                error!(%trigger, reason = %why, serial = %served,
                    "TLS reload refused; the certificate in force stays");
                Err(why)
            }
        }
    }

    /// Closes the federation connections whose certificate the CRLs now
    /// revoke (the new CRL already refuses their next handshake; a
    /// revocation must not wait for a connection that lasts days).
    fn close_revoked(&self) {
        let crls = &self.cfg.federation.crls;
        if crls.is_empty() {
            return;
        }
        let revoked = match crate::sip::transport::tls::revoked_serials(crls) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot read the CRLs to check the connections up");
                return;
            }
        };
        if revoked.is_empty() {
            return;
        }
        let names = std::cell::RefCell::new(Vec::new());
        let n = self.swaps.table.close_where(|c| {
            let hit = crate::role::Role::of(c.tag) == crate::role::Role::Federation
                && c.identity
                    .as_ref()
                    .is_some_and(|id| revoked.contains(&(id.issuer.clone(), id.serial.clone())));
            if hit && let Some(id) = &c.identity {
                names
                    .borrow_mut()
                    .push(format!("{} (serial {})", id.subject, id.serial));
            }
            hit
        });
        if n > 0 {
            warn!(closed = n, certificates = %names.borrow().join(", "),
                "connections of certificates the new CRL revokes closed");
        }
    }

    /// Whether the files differ from what was last applied or refused.
    fn changed(&self, fp: &Fingerprint) -> bool {
        let seen = self.seen_mut();
        *fp != seen.applied && seen.refused.as_ref() != Some(fp)
    }

    /// Reloads on SIGHUP and, every `[federation] file_check` (unless
    /// 0s), when the files changed and have stayed the same for one
    /// more check (a file being written is not read half-way).
    pub(super) fn spawn(self: &Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        let me = self.clone();
        let every = self.cfg.federation.file_check;
        tokio::spawn(async move {
            let mut hup = hangups();
            let mut tick = (!every.is_zero()).then(|| {
                let mut t = tokio::time::interval(every);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut pending: Option<Fingerprint> = None;
            loop {
                let trigger = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    Some(()) = next_hangup(&mut hup) => "SIGHUP",
                    _ = next_tick(&mut tick) => {
                        let paths = me.paths();
                        let fp = tokio::task::spawn_blocking(move || fingerprint(&paths))
                            .await
                            .unwrap_or([0; 32]);
                        if !me.changed(&fp) {
                            pending = None;
                            continue;
                        }
                        if pending != Some(fp) {
                            pending = Some(fp); // settle: read it at the next check
                            continue;
                        }
                        pending = None;
                        "file change"
                    }
                };
                let me2 = me.clone();
                let _ = tokio::task::spawn_blocking(move || me2.apply(trigger)).await;
            }
        })
    }
}

impl TlsControl for Reloader {
    fn served(&self) -> ServedCert {
        self.seen_mut().served.clone()
    }

    fn reload(&self, trigger: &str) -> Result<ReloadOutcome, ReloadRefused> {
        self.apply(trigger)
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// SHA-256 over each file's path and content (or the error reading it).
fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in paths {
        ctx.update(p.as_os_str().as_encoded_bytes());
        match std::fs::read(p) {
            Ok(data) => {
                ctx.update(&(data.len() as u64).to_be_bytes());
                ctx.update(&data);
            }
            Err(e) => ctx.update(format!("\0unreadable: {:?}", e.kind()).as_bytes()),
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

/// The SIGHUP stream (none where signals are not available).
fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                error!(error = %e, "cannot handle SIGHUP: reload with `fedge reload`");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

async fn next_hangup(h: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    {
        match h {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = h;
        std::future::pending().await
    }
}

async fn next_tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_print_as_openssl_does() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8F01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x12, 0xab]), "12AB");
    }

    #[test]
    fn names_match_exactly_or_by_one_label_wildcard() {
        assert!(name_matches("sip.fedge.test", "sip.fedge.test"));
        assert!(name_matches("*.fedge.test", "sip.fedge.test"));
        assert!(!name_matches("*.test", "sip.fedge.test"));
        assert!(!name_matches("sip.other.test", "sip.fedge.test"));
    }

    #[test]
    fn a_changed_file_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pem");
        std::fs::write(&p, "one").unwrap();
        let a = fingerprint(std::slice::from_ref(&p));
        assert_eq!(a, fingerprint(std::slice::from_ref(&p)));
        std::fs::write(&p, "two").unwrap();
        assert_ne!(a, fingerprint(std::slice::from_ref(&p)));
        std::fs::remove_file(&p).unwrap();
        assert_ne!(a, fingerprint(std::slice::from_ref(&p)));
    }
}
