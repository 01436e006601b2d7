//! The federation lab for end-to-end tests: fedge between a home pool
//! (SIPp, or a test's own socket, on fedge's UDP next hop) and a partner
//! organisation (Kamailio as its edge over mutual TLS, SIPp as its users),
//! with helpers to import partners, run scenarios and check refusals.
//! It never reaches into fedge's internals: only its listeners, logs and CLI.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::admin::admin_get;
use crate::edge::{Edge, fedge_ok, test_config};
use crate::peers::{Kamailio, Sipp, SippResult, free_port, scenario};
use crate::pki::{PARTNER_FQDN, Pki};

pub const LIMIT: Duration = Duration::from_secs(40);

pub struct Lab {
    pub pki: Pki,
    pub edge: Edge,
    pub kam: Kamailio,
    /// The home pool's port (fedge's next hop).
    pub home: u16,
    /// The partner's users, behind Kamailio.
    pub users: u16,
}

pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    /// The usual lab: partner.test enabled behind Kamailio.
    pub fn new() -> Lab {
        Lab::with("", Some("enabled"))
    }

    /// A lab whose edge configuration gets `extra` after the `[sip]` timers
    /// (it may open further sections), with partner.test imported in
    /// `state` (not at all when `None`).
    pub fn with(extra: &str, state: Option<&str>) -> Lab {
        Lab::with_config(&format!("t1 = \"100ms\"\n{extra}"), |c| c, state)
    }

    /// As [`Lab::with`], with `edit` applied to the whole configuration
    /// text (for keys in sections the test configuration already has).
    pub fn with_config(
        extra: &str,
        edit: impl FnOnce(String) -> String,
        state: Option<&str>,
    ) -> Lab {
        let pki = Pki::new();
        let home = free_port(false);
        let cfg = edit(test_config(&pki, extra)).replace(
            "next_hop = \"sip:127.0.0.1:5080;transport=udp\"",
            &format!("next_hop = \"sip:127.0.0.1:{home};transport=udp\""),
        );
        let edge = Edge::start(&pki, &cfg);
        let users = free_port(false);
        let kam = Kamailio::start(
            pki.path(),
            "partner",
            PARTNER_FQDN,
            &pki.partner,
            &pki.ca_file,
            edge.federation,
            localhost(users),
        );
        let lab = Lab {
            pki,
            edge,
            kam,
            home,
            users,
        };
        if let Some(state) = state {
            lab.import_as(
                "partner.test",
                "Partner Trust",
                PARTNER_FQDN,
                lab.kam.tls,
                state,
            );
        }
        lab
    }

    pub fn dir(&self) -> &Path {
        self.pki.path()
    }

    /// Adds an enabled partner and waits until the edge enforces it.
    pub fn import(&self, domain: &str, org: &str, edge_fqdn: &str, address: SocketAddr) {
        self.import_as(domain, org, edge_fqdn, address, "enabled");
    }

    /// Adds a partner in `state` and waits until the edge has it.
    pub fn import_as(
        &self,
        domain: &str,
        org: &str,
        edge_fqdn: &str,
        address: SocketAddr,
        state: &str,
    ) {
        fedge_ok(
            &self.edge.config_path,
            &[
                "partner",
                "add",
                "--domain",
                domain,
                "--org",
                org,
                "--edge-fqdn",
                edge_fqdn,
                "--address",
                &address.to_string(),
                "--state",
                state,
                "--reason",
                "test lab",
            ],
        );
        self.wait_state(domain, Some(state));
    }

    pub fn cli(&self, args: &[&str]) -> String {
        fedge_ok(&self.edge.config_path, args)
    }

    pub fn wait_state(&self, domain: &str, want: Option<&str>) {
        let t0 = Instant::now();
        loop {
            let v = admin_get(self.edge.admin, "/registry");
            let state = v["partners"].as_array().and_then(|ps| {
                ps.iter()
                    .find(|p| {
                        p["domains"]
                            .as_array()
                            .is_some_and(|d| d.iter().any(|x| x == domain))
                    })
                    .map(|p| p["state"].as_str().unwrap_or("").to_string())
            });
            if state.as_deref() == want {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "registry never showed {domain} as {want:?}: {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A second enabled partner, other.test ("Other Org"), with its own
    /// Kamailio edge `sip.other.test`; its users' port is not listened on.
    pub fn other_partner(&self) -> Kamailio {
        let cert = self
            .pki
            .leaf("other", &fedge::pki::LeafSpec::new("sip.other.test", 30));
        let kam = Kamailio::start(
            self.dir(),
            "other",
            "sip.other.test",
            &cert,
            &self.pki.ca_file,
            self.edge.federation,
            localhost(free_port(false)),
        );
        self.import("other.test", "Other Org", "sip.other.test", kam.tls);
        kam
    }

    /// A user `from` (user, domain) starts sending `sc` to `to` (user,
    /// domain) through `via`, from local port `port`; `extra` are further
    /// SIPp arguments (e.g. `-m 600 -r 200`, which override the single call).
    pub fn spawn_from(
        &self,
        via: SocketAddr,
        port: u16,
        sc: &Path,
        to: (&str, &str),
        from: (&str, &str),
        extra: &[&str],
    ) -> Sipp {
        let mut args = vec![
            "-s",
            to.0,
            "-key",
            "to_domain",
            to.1,
            "-key",
            "from_domain",
            from.1,
            "-key",
            "from_user",
            from.0,
        ];
        args.extend_from_slice(extra);
        Sipp::spawn(self.dir(), sc, port, Some(via), &args)
    }

    /// A user of the partner behind `via` (a Kamailio's UDP address) starts
    /// sending `sc` to `to_user@to_domain` as alice@`from_domain`.
    pub fn spawn_uac(
        &self,
        via: SocketAddr,
        sc: &Path,
        to: (&str, &str),
        from_domain: &str,
        extra: &[&str],
    ) -> Sipp {
        self.spawn_from(via, free_port(false), sc, to, ("alice", from_domain), extra)
    }

    /// A partner user sends through Kamailio.
    pub fn partner_uac(
        &self,
        sc: &Path,
        to_user: &str,
        to_domain: &str,
        from_domain: &str,
    ) -> SippResult {
        self.spawn_uac(self.kam.udp, sc, (to_user, to_domain), from_domain, &[])
            .wait(LIMIT)
    }

    /// A home user sends through fedge's internal listener (from `port`).
    pub fn home_uac(
        &self,
        sc: &Path,
        port: u16,
        to_user: &str,
        to_domain: &str,
        from_domain: &str,
    ) -> SippResult {
        self.spawn_from(
            self.edge.internal,
            port,
            sc,
            (to_user, to_domain),
            ("bob", from_domain),
            &[],
        )
        .wait(LIMIT)
    }

    pub fn assert_ok(&self, what: &str, r: &SippResult) {
        assert!(
            r.ok(),
            "{what}: SIPp exit {:?}\nerrors:\n{}\nmessages:\n{}\nfedge:\n{}\nkamailio:\n{}",
            r.code,
            r.errors,
            r.messages,
            self.edge.logs().join("\n"),
            self.kam.logs()
        );
    }
}

/// Escapes text for an XML attribute.
pub fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A SIPp ereg action: `regexp` must match (or, `inverse`, must not) in
/// `search` ("msg", "body", or a header name such as "Warning:").
pub fn ereg(regexp: &str, search: &str, var: &str, inverse: bool) -> String {
    let place = match search {
        "msg" | "body" => format!("search_in=\"{search}\""),
        h => format!("search_in=\"hdr\" header=\"{h}\""),
    };
    let check = if inverse {
        "check_it_inverse=\"true\""
    } else {
        "check_it=\"true\""
    };
    format!(
        "<ereg regexp=\"{}\" {place} {check} assign_to=\"{var}\"/>",
        xml(regexp)
    )
}

/// The `<Reference>` that marks SIPp variables as used.
pub fn refs(vars: &[&str]) -> String {
    format!("<Reference variables=\"{}\"/>", vars.join(","))
}

/// Checks of a refusal made by the edge: Warning code and text (a
/// regular expression), and the ms-diagnostics-public code when given.
pub fn refusal(warn: u16, text: &str, diag: Option<u16>) -> (String, String) {
    let mut checks = ereg(
        &format!("{warn} sip\\.fedge\\.test \".*{text}"),
        "Warning:",
        "w",
        false,
    );
    let mut vars = vec!["w"];
    if let Some(code) = diag {
        checks.push_str(&ereg(
            &format!("^ *{code};reason="),
            "ms-diagnostics-public:",
            "d",
            false,
        ));
        vars.push("d");
    }
    (checks, refs(&vars))
}

/// ereg actions checking a response's Warning 399 and ms-diagnostics-public.
pub fn refusal_checks(warning: &str, code: u16) -> (String, String) {
    refusal(399, warning, Some(code))
}

impl Lab {
    /// Runs `template` (filled with `values`) from a partner user, or from a
    /// home user, to `to`; it must be refused with `status` and pass
    /// `checks`, and the edge must log the refusal.
    #[allow(clippy::too_many_arguments)]
    pub fn refused(
        &self,
        partner_side: bool,
        template: &str,
        values: &[(&str, &str)],
        status: u16,
        (checks, references): (String, String),
        to: &str,
        from_domain: &str,
    ) {
        let status_s = status.to_string();
        let mut vals = vec![
            ("STATUS", status_s.as_str()),
            ("CHECKS", checks.as_str()),
            ("REFERENCES", references.as_str()),
        ];
        vals.extend_from_slice(values);
        let sc = scenario(self.dir(), template, &vals);
        let (user, domain) = to.split_once('@').unwrap();
        let r = if partner_side {
            self.partner_uac(&sc, user, domain, from_domain)
        } else {
            self.home_uac(&sc, free_port(false), user, domain, from_domain)
        };
        self.assert_ok(
            &format!("{template} to {to} from {from_domain}: want {status}"),
            &r,
        );
        assert!(
            self.edge
                .wait_log(
                    &["request refused", &format!("\"status\":{status}")],
                    Duration::from_secs(5)
                )
                .is_some(),
            "no log line for the refusal"
        );
    }

    /// A partner user's MESSAGE to `to_user@fedge.test` is delivered: the
    /// home pool (SIPp) gets it and the 200 comes back.
    pub fn message_delivered(&self, to_user: &str, what: &str) {
        let home = Sipp::spawn(
            self.dir(),
            &scenario(self.dir(), "message_uas.xml", &[]),
            self.home,
            None,
            &[],
        );
        let r = self.partner_uac(
            &scenario(self.dir(), "message_uac.xml", &[]),
            to_user,
            "fedge.test",
            "partner.test",
        );
        self.assert_ok(what, &r);
        self.assert_ok(&format!("{what}: home pool"), &home.wait(LIMIT));
    }
}

pub fn refused_message(
    lab: &Lab,
    partner_side: bool,
    to: &str,
    from_domain: &str,
    status: u16,
    warning: &str,
    code: u16,
) {
    lab.refused(
        partner_side,
        "message_uac.xml",
        &[],
        status,
        refusal_checks(warning, code),
        to,
        from_domain,
    );
}
