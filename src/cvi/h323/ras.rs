//! RAS on UDP as a gatekeeper-less gateway uses it: a GRQ is refused (this
//! node is no gatekeeper), an LRQ for an alias this node serves (the
//! reception, the test call, a conference ID) is confirmed with our call
//! signalling address, any other LRQ rejected; everything else is counted
//! and ignored.
//!
//! Owns the UDP socket's answers; never keeps state per sender and never
//! answers to an address other than the sender's (a reply address in an
//! LRQ is not followed: a forged one would make us reflect).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fedge_h323::h225::{self, Alias, Ras};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{H323, H323_LOG, H323Config, Stats};
use crate::cvi::gateway::{Dialled, dialled};
use crate::sip::log_limit;

/// Whether this node serves an alias (so an LRQ for it is confirmed).
pub(super) fn serves(cfg: &H323Config, alias: &Alias) -> bool {
    let s = match alias {
        Alias::Dialled(s)
        | Alias::H323Id(s)
        | Alias::Url(s)
        | Alias::Email(s)
        | Alias::Party(s) => s,
        _ => return false,
    };
    let Some(uri) = super::sip::request_uri(s, &cfg.domain) else {
        return false;
    };
    // When the alias names a domain, it must be ours.
    let a = s.trim().trim_start_matches("h323:");
    if let Some((_, dom)) = a.split_once('@')
        && !dom.eq_ignore_ascii_case(&cfg.domain)
    {
        return false;
    }
    let user = uri
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or("");
    !matches!(
        dialled(
            user,
            &cfg.reception,
            &cfg.test_call,
            cfg.tenant_key.as_deref()
        ),
        Dialled::Unknown(_)
    )
}

/// The answer to one RAS message, if any.
pub(super) fn answer(cfg: &H323Config, stats: &Stats, ras: Ras) -> Option<Ras> {
    match ras {
        Ras::Grq { seq, .. } => {
            stats.ras_grj.fetch_add(1, Ordering::Relaxed);
            Some(Ras::Grj {
                seq,
                reason: h225::GrjReason::ResourceUnavailable,
            })
        }
        Ras::Lrq {
            seq, destination, ..
        } => {
            if destination.iter().any(|a| serves(cfg, a)) {
                stats.ras_lcf.fetch_add(1, Ordering::Relaxed);
                Some(Ras::Lcf {
                    seq,
                    call_signal: cfg.listen,
                    ras: cfg.ras,
                })
            } else {
                stats.ras_lrj.fetch_add(1, Ordering::Relaxed);
                Some(Ras::Lrj {
                    seq,
                    reason: h225::LrjReason::RequestDenied,
                })
            }
        }
        _ => {
            stats.ras_ignored.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

pub(super) async fn run(h: Arc<H323>, sock: UdpSocket, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let ras = match h225::decode_ras(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                h.stats.ras_ignored.fetch_add(1, Ordering::Relaxed);
                if log_limit::allow(from.ip(), H323_LOG) {
                    info!(%from, error = %e, "RAS message not understood: ignored");
                }
                continue;
            }
        };
        if let Some(a) = answer(&h.cfg, &h.stats, ras)
            && let Ok(b) = h225::encode_ras(&a)
        {
            let _ = sock.send_to(&b, from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> H323Config {
        H323Config {
            domain: "cvi.example".into(),
            reception: "teams".into(),
            test_call: "test_call".into(),
            tenant_key: Some("87654321".into()),
            listen: "192.0.2.1:1720".parse().unwrap(),
            ras: "192.0.2.1:1719".parse().unwrap(),
            h245_port_min: 33000,
            h245_port_max: 39999,
            setup_timeout: std::time::Duration::from_secs(10),
            max_frame: 65536,
            max_connections: 8,
            max_connections_per_source: 2,
            vendor: "fedge".into(),
        }
    }

    #[test]
    fn lrq_for_what_we_serve_grq_refused() {
        let (c, s) = (cfg(), Stats::default());
        let lrq = |a: Alias| Ras::Lrq {
            seq: 9,
            destination: vec![a],
            reply: Some("203.0.113.9:1719".parse().unwrap()),
        };
        for a in [
            Alias::Dialled("1234567890".into()),
            Alias::Url("h323:teams@cvi.example".into()),
            Alias::H323Id("test_call".into()),
            Alias::Dialled("87654321.1234567890".into()),
        ] {
            assert!(
                matches!(answer(&c, &s, lrq(a.clone())), Some(Ras::Lcf { seq: 9, call_signal, .. }) if call_signal == c.listen),
                "{a:?}"
            );
        }
        for a in [
            Alias::Dialled("12345".into()),
            Alias::Url("h323:teams@elsewhere.example".into()),
            Alias::H323Id("bob".into()),
        ] {
            assert!(
                matches!(
                    answer(&c, &s, lrq(a.clone())),
                    Some(Ras::Lrj { seq: 9, .. })
                ),
                "{a:?}"
            );
        }
        let grq = Ras::Grq {
            seq: 3,
            ras: None,
            aliases: Vec::new(),
        };
        assert!(matches!(answer(&c, &s, grq), Some(Ras::Grj { seq: 3, .. })));
        assert!(answer(&c, &s, Ras::Other("registrationRequest")).is_none());
        assert_eq!(s.ras_lcf.load(Ordering::Relaxed), 4);
        assert_eq!(s.ras_ignored.load(Ordering::Relaxed), 1);
    }
}
