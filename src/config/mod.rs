//! The one TOML configuration file, its embedded defaults, and the
//! commented example `fedge config example` prints.
//!
//! Owns reading and checking settings. Every mistake becomes a
//! [`ConfigError`] whose message fits on one line and names the file, the
//! key and what is wrong; the CLI turns it into exit code 2. Relative paths
//! in a file are taken relative to that file's directory; the embedded
//! defaults are relative to the working directory. It never binds,
//! connects or starts anything.
//!
//! The pieces: `edge.rs` and `services.rs` hold the sections and their
//! defaults, `load.rs` reads a file, `validate.rs` checks values,
//! `derived.rs` computes what other modules need from them,
//! `operations.rs` holds `[cluster]`, `[drain]` and `[capture]`, and
//! `example.toml` is the commented example.

mod derived;
mod edge;
mod error;
mod load;
mod operations;
mod services;
mod validate;

pub use derived::NextHop;
pub use edge::{
    AdminConfig, Config, DEFAULT_BODY_TYPES, FederationConfig, InternalConfig, LogConfig,
    PolicyConfig, PublicConfig, RuntimeConfig, SipConfig, StoreConfig, TopologyConfig,
};
pub use error::ConfigError;
pub use operations::{CaptureConfig, ClusterConfig, DrainConfig, HepTargetError, hep_target};
pub use services::{CviSection, DnsSection, MediaSection};

/// The commented example printed by `fedge config example`; it equals the
/// embedded defaults (a test holds it to that).
pub const EXAMPLE: &str = include_str!("example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_equals_the_embedded_defaults() {
        let parsed = Config::from_toml(EXAMPLE).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn example_names_every_key() {
        let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let defaults: toml::Table =
            toml::from_str(&toml::to_string(&Config::default()).unwrap()).unwrap();
        for (section, table) in &defaults {
            let ex = example
                .get(section)
                .and_then(|v| v.as_table())
                .unwrap_or_else(|| panic!("example lacks [{section}]"));
            for key in table.as_table().unwrap().keys() {
                assert!(ex.contains_key(key), "example lacks [{section}] {key}");
            }
        }
        Config::default().validate().unwrap();
    }

    #[test]
    fn media_addresses_must_reach_the_relay() {
        let check = |toml: &str| Config::from_toml(toml).unwrap().validate();
        // A public federation listener with the loopback media default.
        let e = check("[federation]\nlisten = \"192.0.2.10:5061\"\n").unwrap_err();
        assert!(
            e.0.contains("[media] federation_address is 127.0.0.1 (loopback)"),
            "{}",
            e.0
        );
        // Binding every interface needs an address to advertise.
        let e = check("[media]\nfederation_address = \"0.0.0.0\"\n").unwrap_err();
        assert!(e.0.contains("set federation_advertise"), "{}", e.0);
        check("[federation]\nlisten = \"192.0.2.10:5061\"\n[media]\nfederation_address = \"0.0.0.0\"\nfederation_advertise = \"192.0.2.10\"\n").unwrap();
        // Or no relay at all.
        check("[federation]\nlisten = \"192.0.2.10:5061\"\n[media]\nenabled = false\n").unwrap();
        let e = check("[media]\nport_min = 60000\nport_max = 60001\n").unwrap_err();
        assert!(e.0.contains("at least two even/odd pairs"), "{}", e.0);
    }

    #[test]
    fn media_networks_and_partner_shares_are_checked() {
        let check = |toml: &str| Config::from_toml(toml).unwrap().validate();
        let e = check("[media]\nrefused_networks = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(
            e.0.starts_with("[media] networks: \"10.0.0.0/33\""),
            "{}",
            e.0
        );
        assert!(!e.0.contains('\n'));
        let e = check("[media]\nmax_pairs_per_partner = 1\n").unwrap_err();
        assert!(e.0.contains("max_pairs_per_partner"), "{}", e.0);
        check("[media]\nallowed_networks = [\"192.0.2.0/24\", \"2001:db8::1\"]\nrefused_networks = []\n").unwrap();
        // The default refuses loopback on both sides, private space on the partner side.
        let [partner, home] = Config::default().media.networks().unwrap();
        let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let private: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        assert!(!partner.allows(lo) && !home.allows(lo));
        assert!(!partner.allows(private) && home.allows(private));
    }

    #[test]
    fn errors_are_one_line_and_say_where() {
        let e = Config::from_toml("[federation]\nlisen = \"1.2.3.4:5\"\n").unwrap_err();
        assert!(
            e.0.starts_with("line 2, column 1: unknown field `lisen`"),
            "{}",
            e.0
        );
        assert!(!e.0.contains('\n'));
        let e = Config::from_toml("[federation]\nlisten = \"nonsense\"\n").unwrap_err();
        assert!(e.0.contains("line 2"), "{}", e.0);
        let e = Config::from_toml("[sip]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert!(e.0.contains("line 2"), "{}", e.0);
    }

    #[test]
    fn values_are_checked() {
        let mut c = Config::default();
        c.federation.fqdn = "192.0.2.1".into();
        assert!(c.validate().unwrap_err().0.contains("not an IP address"));
        let mut c = Config::default();
        c.internal.next_hop = "sip:pool.fedge.test;transport=sctp".into();
        assert!(c.validate().unwrap_err().0.contains("sctp"));
        let mut c = Config::default();
        c.store.url = "mysql://x".into();
        assert!(c.validate().is_err());
        let c = Config::default();
        assert_eq!(
            c.next_hop().unwrap(),
            NextHop {
                host: "127.0.0.1".into(),
                port: 5080,
                transport: "udp".into()
            }
        );
        let mut c = Config::default();
        c.internal.next_hop = "sip:[::1]:5090;transport=tcp".into();
        let nh = c.next_hop().unwrap();
        assert_eq!((nh.host.as_str(), nh.port), ("::1", 5090));
        assert!(nh.host.parse::<std::net::IpAddr>().is_ok());
    }

    #[test]
    fn media_io_is_epoll_or_io_uring() {
        let c = Config::from_toml("[media]\nio = \"epoll\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.media.engine_io(), crate::media::engine::Io::Epoll);
        let c = Config::from_toml("[media]\nio = \"io_uring\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.media.engine_io(), crate::media::engine::Io::IoUring);
        assert_eq!(
            Config::default().media.engine_io(),
            crate::media::engine::DEFAULT_IO
        );
        assert!(Config::default().media.connect_peers);
        let c = Config::from_toml("[media]\nio = \"io_uring\"\nconnect_peers = false\n").unwrap();
        c.validate().unwrap();
        assert!(!c.media.connect_peers);
        let c = Config::from_toml("[media]\nio = \"uring\"\n").unwrap();
        assert_eq!(
            c.validate().unwrap_err().0,
            "[media] io \"uring\" must be \"epoll\" or \"io_uring\""
        );
    }

    #[test]
    fn admission_budgets_are_checked() {
        let fed = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().err().map(|e| e.0).unwrap_or_default()
        };
        let e = fed(&|c| c.federation.max_handshakes = 0);
        assert_eq!(e, "[federation] max_handshakes must be at least 1");
        let e = fed(&|c| c.federation.max_handshakes_per_source = 0);
        assert!(
            e.contains("max_handshakes_per_source must be from 1"),
            "{e}"
        );
        let e = fed(&|c| c.federation.max_handshakes_per_source = 257);
        assert!(e.contains("to max_handshakes (256)"), "{e}");
        let e = fed(&|c| c.federation.max_connections_per_identity = 2000);
        assert!(e.contains("to max_connections (1024)"), "{e}");
        assert!(!e.contains('\n'));
        let ok = Config::from_toml(
            "[federation]\nmax_handshakes = 64\nmax_handshakes_per_source = 64\nmax_connections_per_identity = 1\n",
        )
        .unwrap();
        ok.validate().unwrap();
    }

    #[test]
    fn cvi_listeners_are_checked() {
        let cvi = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            c.cvi.enabled = true;
            f(&mut c);
            c.validate().err().map(|e| e.0).unwrap_or_default()
        };
        assert_eq!(cvi(&|_| {}), "", "the defaults are valid");
        assert!(
            cvi(&|c| c.cvi.listen = "0.0.0.0:5060".parse().unwrap()).contains("not a wildcard")
        );
        assert!(
            cvi(&|c| c.cvi.listen_tls = Some("[::]:5061".parse().unwrap())).contains("listen_tls")
        );
        let e = cvi(&|c| c.cvi.listen = c.internal.listen);
        assert!(
            e.contains("[cvi] listen") && e.contains("another listener"),
            "{e}"
        );
        let e = cvi(&|c| c.cvi.listen_tls = Some(c.federation.listen));
        assert!(e.contains("another listener"), "{e}");
        let e = cvi(&|c| {
            c.media.enabled = true;
            c.cvi.media_port_min = 50000;
            c.cvi.media_port_max = 50100;
        });
        assert!(e.contains("overlap"), "{e}");
        assert!(cvi(&|c| c.cvi.trusted = vec!["not a/thing".into()]).contains("trusted"));
        assert!(cvi(&|c| c.cvi.max_calls = 0).contains("max_calls"));
        // The guards against strangers (issue 14).
        assert!(
            cvi(&|c| c.cvi.max_calls_per_source = 0)
                .contains("[cvi] max_calls_per_source must be at least 1")
        );
        assert!(
            cvi(&|c| c.cvi.guess_window = std::time::Duration::ZERO)
                .contains("[cvi] guess_window must be greater than zero")
        );
        assert!(cvi(&|c| c.cvi.max_connections_per_source = 81).contains("must not exceed"));
        assert!(cvi(&|c| c.cvi.guess_budget = 101).contains("guess_budget_global"));
        // The top of the port space is refused, not overflowed.
        let e = cvi(&|c| {
            c.cvi.media_port_min = 65535;
            c.cvi.media_port_max = 65535;
        });
        assert!(e.contains("[cvi] media_port_min 65535"), "{e}");
        // H.323: checked only when on.
        let h323 = |f: &dyn Fn(&mut Config)| {
            cvi(&|c| {
                c.cvi.h323 = true;
                f(c)
            })
        };
        assert_eq!(h323(&|_| {}), "", "the H.323 defaults are valid");
        assert!(cvi(&|c| c.cvi.h323_listen = "0.0.0.0:1720".parse().unwrap()).is_empty());
        assert!(
            h323(&|c| c.cvi.h323_listen = "0.0.0.0:1720".parse().unwrap()).contains("wildcard")
        );
        assert!(h323(&|c| c.cvi.h323_listen = c.cvi.listen).contains("[cvi] h323_listen"));
        assert!(h323(&|c| c.cvi.h323_ras = c.cvi.listen).contains("[cvi] h323_ras"));
        assert!(
            h323(&|c| {
                c.cvi.h245_port_min = 45000;
                c.cvi.h245_port_max = 45100;
            })
            .contains("overlap the media ports")
        );
        assert!(h323(&|c| c.cvi.h245_port_max = 100).contains("h245_port_min"));
        // ICE-TCP for browsers: needs webrtc and a port of its own.
        let tcp = |f: &dyn Fn(&mut Config)| {
            cvi(&|c| {
                c.cvi.webrtc = true;
                c.cvi.webrtc_tcp = Some(3478);
                f(c)
            })
        };
        assert_eq!(tcp(&|_| {}), "", "a port of its own is valid");
        let e = tcp(&|c| c.cvi.webrtc = false);
        assert!(
            e.contains("[cvi] webrtc_tcp 3478 needs webrtc = true"),
            "{e}"
        );
        assert!(tcp(&|c| c.cvi.webrtc_tcp = Some(0)).contains("webrtc_tcp 0"));
        let e = tcp(&|c| {
            c.cvi.listen = "127.0.0.2:3478".parse().unwrap();
        });
        assert!(e.contains("a port of its own"), "{e}");
        let mut c = Config::default();
        c.media.enabled = true;
        c.media.port_min = 50000;
        c.media.port_max = 50002;
        let e = c.validate().err().map(|e| e.0).unwrap_or_default();
        assert!(e.contains("two even/odd pairs"), "{e}");
    }

    #[test]
    fn the_public_listener_needs_its_own_port() {
        let mut c = Config::default();
        c.public.listen = c.admin.listen;
        let e = c.validate().unwrap_err().0;
        assert!(
            e.starts_with("[public] listen 127.0.0.1:8061 is the address of [admin] listen"),
            "{e}"
        );
        let mut c = Config::default();
        c.public.listen = "0.0.0.0:5061".parse().unwrap();
        let e = c.validate().unwrap_err().0;
        assert!(e.contains("[federation] listen"), "{e}");
        let mut c = Config::default();
        c.public.fpa_per_hour = 0;
        assert!(c.validate().unwrap_err().0.contains("fpa_per_hour"));
        let mut c = Config::default();
        c.public.max_connections_per_source = 300;
        let e = c.validate().unwrap_err().0;
        assert_eq!(
            e,
            "[public] max_connections_per_source must be from 1 to max_connections (256)"
        );
        let c =
            Config::from_toml("[admin]\ntls = true\n[public]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        c.validate().unwrap();
        assert!(c.admin.tls);
        assert_eq!(Config::default().public.listen.port(), 8062);
    }

    #[test]
    fn the_public_intake_caps_and_connection_lifetime() {
        let d = Config::default().public;
        assert_eq!(d.connection_lifetime, std::time::Duration::from_secs(30));
        assert_eq!((d.fpa_pending_max, d.fpa_per_hour_total), (50, 60));
        let c = Config::from_toml(
            "[public]\nconnection_lifetime = \"5s\"\nfpa_pending_max = 3\nfpa_per_hour_total = 4\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.public.connection_lifetime.as_secs(), 5);
        assert_eq!(
            (c.public.fpa_pending_max, c.public.fpa_per_hour_total),
            (3, 4)
        );
        let mut c = Config::default();
        c.public.connection_lifetime = std::time::Duration::from_millis(100);
        let e = c.validate().unwrap_err().0;
        assert_eq!(
            e,
            "[public] connection_lifetime 100ms must be from 1s to 1h"
        );
        let mut c = Config::default();
        c.public.fpa_pending_max = 0;
        assert!(c.validate().unwrap_err().0.contains("fpa_pending_max"));
        let mut c = Config::default();
        c.public.fpa_per_hour_total = 0;
        assert!(c.validate().unwrap_err().0.contains("fpa_per_hour_total"));
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fedge.toml");
        std::fs::write(
            &p,
            "[federation]\ncert = \"tls/edge.crt\"\n[store]\nurl = \"sqlite://db/fedge.db\"\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.federation.cert, dir.path().join("tls/edge.crt"));
        assert_eq!(
            c.store.url,
            format!("sqlite://{}", dir.path().join("db/fedge.db").display())
        );
    }
}
