//! The policy's rule tables: one row per rule, inbound and outbound,
//! the IM test address, allowed-domain partners found by SRV, and the
//! answers when the next hop cannot be reached. Never touches sockets.

use super::*;
use crate::dns::SrvTarget;
use crate::federation::product::Version;
use crate::federation::refusal::diagnostic_code;
use crate::model::partner::PartnerState;
use crate::sip::parse::{Limits, find_head_end, parse_framed};
use crate::sip::proxy::Hide;
use crate::sip::transport::outbound::ConnectError;
use std::net::SocketAddr;

fn partner(id: &str, domains: &[&str], edge: Option<&str>, state: PartnerState) -> Partner {
    crate::model::partner::sample(id, domains, edge, state)
}

fn snapshot() -> Snapshot {
    let mut lab = partner(
        "l",
        &["lab.test"],
        Some("sip.lab.test"),
        PartnerState::Enabled,
    );
    lab.details.product_check = Some("off".into());
    Snapshot::build(
        1,
        vec![
            partner("a", &["a.test"], Some("sip.a.test"), PartnerState::Enabled),
            partner(
                "b",
                &["b.test"],
                Some("sip.b.test"),
                PartnerState::Suspended,
            ),
            partner(
                "n",
                &["new.test"],
                Some("sip.new.test"),
                PartnerState::Approved,
            ),
            partner(
                "h1",
                &["h1.test"],
                Some("edge.host.test"),
                PartnerState::Enabled,
            ),
            partner(
                "h2",
                &["h2.test"],
                Some("edge.host.test"),
                PartnerState::Enabled,
            ),
            lab,
        ],
    )
}

fn cfg() -> PolicyConfig {
    PolicyConfig {
        fqdn: "sip.fedge.test".into(),
        home_domains: vec!["fedge.test".into()],
        next_hop: Hop::Udp(SocketAddr::from(([127, 0, 0, 1], 5080))),
        local_addrs: vec![IpAddr::from([127, 0, 0, 1])],
        partner_connections: 4,
        content: content::Rules {
            body_types: content::DEFAULT_BODY_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_body: 65536,
        },
        products: Minimums {
            client: Version::parse("4.0.7577.4103").unwrap(),
            server: Version::parse("4.0").unwrap(),
            allow_other: false,
        },
        test_user: "federation-test".into(),
    }
}

/// A request; `extra` are header lines, `body` goes with `ct`.
fn req(
    method: &str,
    ruri: &str,
    from: &str,
    to: &str,
    extra: &str,
    ct: &str,
    body: &str,
) -> SipMessage {
    let ct_line = if ct.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {ct}\r\n")
    };
    let s = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS x.test;branch=z9hG4bKp\r\nMax-Forwards: 70\r\n\
         From: <{from}>;tag=f\r\nTo: <{to}>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n{extra}{ct_line}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let raw = bytes::Bytes::from(s);
    let he = find_head_end(&raw, 0).unwrap();
    parse_framed(raw, he, &Limits::default()).unwrap()
}

fn msg(method: &str, ruri: &str, from: &str, to: &str) -> SipMessage {
    req(method, ruri, from, to, "", "", "")
}

fn id(names: &[&str]) -> PeerIdentity {
    PeerIdentity {
        names: names.iter().map(|s| s.to_string()).collect(),
        from_cn: false,
        subject: String::new(),
        serial: String::new(),
        issuer: String::new(),
    }
}

fn inbound_of(m: &SipMessage, peer: &[&str]) -> Verdict {
    decide(
        m,
        Role::Federation,
        Some(&id(peer)),
        &RequestInfo::default(),
        &snapshot(),
        &cfg(),
        None,
    )
}

fn reject(v: &Verdict) -> (u16, u16, Option<u16>, String) {
    match &v.decision {
        // The full reason (the log's); what the sender reads is checked in
        // `refusal`'s tests.
        Decision::Reject(r) => (
            r.status,
            r.warn_code,
            diagnostic_code(r),
            r.detail.clone().unwrap_or_else(|| r.reason.clone()),
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Identity and routing, inbound: one row per rule.
#[test]
fn inbound_table() {
    type Row<'a> = (&'a [&'a str], &'a str, &'a str, u16, u16, &'a str, &'a str);
    let rows: &[Row] = &[
        (
            &["sip.z.test"],
            "sip:x@z.test",
            "sip:bob@fedge.test",
            403,
            1002,
            "unknown_domain",
            "domain z.test is not a federation partner",
        ),
        (
            &["sip.a.test"],
            "sip:x@z.test",
            "sip:bob@fedge.test",
            403,
            1002,
            "unknown_domain",
            "is not a domain of partner Org a",
        ),
        (
            &["sip.a.test"],
            "sip:x@b.test",
            "sip:bob@fedge.test",
            403,
            1010,
            "spoofed_domain",
            "belongs to partner Org b whose edge is sip.b.test",
        ),
        (
            &["sip.b.test"],
            "sip:x@b.test",
            "sip:bob@fedge.test",
            403,
            1002,
            "not_enabled",
            "partner Org b (domain b.test) is suspended",
        ),
        (
            &["sip.new.test"],
            "sip:x@new.test",
            "sip:bob@fedge.test",
            403,
            1002,
            "not_enabled",
            "approved but not yet enabled: until then only sip:federation-test@fedge.test",
        ),
        (
            &["sip.a.test"],
            "sip:x@a.test",
            "sip:y@h1.test",
            403,
            1017,
            "transit",
            "domain h1.test is not served here",
        ),
        (
            &["edge.host.test"],
            "sip:x@h1.test",
            "sip:y@lab.test",
            403,
            1017,
            "transit",
            "not served here",
        ),
    ];
    for (names, from, ruri, status, code, rule, frag) in rows {
        let v = inbound_of(&msg("MESSAGE", ruri, from, ruri), names);
        let (s, _, c, reason) = reject(&v);
        assert_eq!(
            (s, c, v.label()),
            (*status, Some(*code), *rule),
            "{names:?} {from} -> {ruri}: {reason}"
        );
        assert!(reason.contains(frag), "{reason:?} lacks {frag:?}");
    }
    // Admitted: to the next hop, trust header replaced, partner named.
    for (names, from) in [
        (&["sip.a.test"][..], "sip:x@a.test"),
        (&["edge.host.test"][..], "sip:x@h2.test"),
    ] {
        let v = inbound_of(
            &msg("INVITE", "sip:bob@FEDGE.test", from, "sip:bob@fedge.test"),
            names,
        );
        match &v.decision {
            Decision::Forward(f) => {
                assert_eq!(f.leg, Role::Internal.side());
                assert_eq!(f.hop, cfg().next_hop);
                assert_eq!(f.strip, [TRUST_HEADER]);
                assert!(
                    f.add[0]
                        .1
                        .starts_with("ms-source-type=DirectPartner;ms-ep-fqdn=sip.fedge.test")
                );
                assert_eq!(f.hide, Hide::Destination);
            }
            other => panic!("{other:?}"),
        }
        assert!(v.partner.is_some());
    }
    // In dialog the To domain counts (the Request-URI is a Contact address).
    let m = msg(
        "BYE",
        "sip:bob@192.0.2.10:5060",
        "sip:x@a.test",
        "sip:bob@fedge.test",
    );
    let info = RequestInfo {
        in_dialog: true,
        ..RequestInfo::default()
    };
    let v = decide(
        &m,
        Role::Federation,
        Some(&id(&["sip.a.test"])),
        &info,
        &snapshot(),
        &cfg(),
        None,
    );
    assert!(matches!(v.decision, Decision::Forward(_)));
    // OPTIONS to the edge itself is answered.
    let v = inbound_of(
        &msg(
            "OPTIONS",
            "sip:sip.fedge.test",
            "sip:x@z.test",
            "sip:sip.fedge.test",
        ),
        &["sip.z.test"],
    );
    assert!(matches!(v.decision, Decision::Answer { status: 200, .. }));
}

/// The onboarding test address: approved and enabled partners may reach it.
#[test]
fn im_test_address() {
    for (peer, from) in [
        ("sip.new.test", "sip:tech@new.test"),
        ("sip.a.test", "sip:tech@a.test"),
    ] {
        let v = inbound_of(
            &msg(
                "MESSAGE",
                "sip:federation-test@fedge.test",
                from,
                "sip:federation-test@fedge.test",
            ),
            &[peer],
        );
        assert!(
            v.im_test && matches!(v.decision, Decision::Answer { status: 200, .. }),
            "{peer}: {v:?}"
        );
    }
    let v = inbound_of(
        &msg(
            "INVITE",
            "sip:federation-test@fedge.test",
            "sip:tech@new.test",
            "sip:x@fedge.test",
        ),
        &["sip.new.test"],
    );
    assert_eq!(reject(&v).0, 405);
    let v = inbound_of(
        &msg(
            "MESSAGE",
            "sip:federation-test@fedge.test",
            "sip:x@b.test",
            "sip:x@fedge.test",
        ),
        &["sip.b.test"],
    );
    assert_eq!(
        (reject(&v).0, v.label()),
        (403, "not_enabled"),
        "a suspended partner may not test"
    );
}

/// Products and content, inbound: one row per rule.
#[test]
fn inbound_product_and_content_table() {
    const FT: &str = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=data 7000 TCP/RTP/AVP 127\r\n\r\n--b\r\nContent-Type: application/ms-filetransfer+xml\r\n\r\n<request/>\r\n--b--\r\n";
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        u16,
        u16,
        &'a str,
        &'a str,
    );
    let rows: &[Row] = &[
        (
            "sip.a.test",
            "sip:x@a.test",
            "User-Agent: Cisco-Jabber/12.9.3 (Windows)\r\n",
            "",
            "",
            403,
            399,
            "product",
            "Cisco-Jabber/12.9.3 is not Lync",
        ),
        (
            "sip.a.test",
            "sip:x@a.test",
            "User-Agent: UCCAPI/4.0.7577.314 OC/4.0.7577.314 (Microsoft Lync 2010)\r\n",
            "",
            "",
            403,
            399,
            "product",
            "4.0.7577.314 is older than the oldest accepted, 4.0.7577.4103",
        ),
        (
            "sip.a.test",
            "sip:x@a.test",
            "",
            "multipart/mixed;boundary=b",
            FT,
            606,
            309,
            "file_transfer",
            "File transfer is switched off",
        ),
        (
            "sip.a.test",
            "sip:x@a.test",
            "Require: siprec\r\n",
            "application/sdp",
            "v=0\r\n",
            403,
            399,
            "recording",
            "Recording is switched off",
        ),
        (
            "sip.a.test",
            "sip:x@a.test",
            "",
            "application/x-shockwave-flash",
            "CWS",
            415,
            399,
            "body_type",
            "application/x-shockwave-flash may not cross",
        ),
    ];
    for (peer, from, extra, ct, body, status, warn, rule, frag) in rows {
        let m = req(
            "INVITE",
            "sip:bob@fedge.test",
            from,
            "sip:bob@fedge.test",
            extra,
            ct,
            body,
        );
        let v = inbound_of(&m, &[peer]);
        let (s, w, _, reason) = reject(&v);
        assert_eq!((s, w, v.label()), (*status, *warn, *rule), "{reason}");
        assert!(reason.contains(frag), "{reason:?} lacks {frag:?}");
    }
    // Good products pass; a lab partner may use any product.
    for ua in [
        "UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)",
        "RTCC/6.0.0.0 ConfServer",
    ] {
        let m = req(
            "MESSAGE",
            "sip:bob@fedge.test",
            "sip:x@a.test",
            "sip:bob@fedge.test",
            &format!("User-Agent: {ua}\r\n"),
            "text/plain",
            "hi",
        );
        assert_eq!(inbound_of(&m, &["sip.a.test"]).label(), "forward", "{ua}");
    }
    let m = req(
        "MESSAGE",
        "sip:bob@fedge.test",
        "sip:x@lab.test",
        "sip:bob@fedge.test",
        "User-Agent: Cisco-Jabber/12.9.3\r\n",
        "",
        "",
    );
    assert_eq!(inbound_of(&m, &["sip.lab.test"]).label(), "forward");
    // P-Asserted-Identity naming another domain is removed.
    let m = req(
        "MESSAGE",
        "sip:bob@fedge.test",
        "sip:x@a.test",
        "sip:bob@fedge.test",
        "P-Asserted-Identity: <sip:ceo@fedge.test>\r\n",
        "",
        "",
    );
    let v = inbound_of(&m, &["sip.a.test"]);
    let Decision::Forward(f) = &v.decision else {
        panic!("{v:?}")
    };
    assert!(
        f.strip.iter().any(|h| h == "P-Asserted-Identity") && v.label() == "forward_pai_removed"
    );
    let m = req(
        "MESSAGE",
        "sip:bob@fedge.test",
        "sip:x@a.test",
        "sip:bob@fedge.test",
        "P-Asserted-Identity: <sip:x@a.test>\r\n",
        "",
        "",
    );
    let Decision::Forward(f) = inbound_of(&m, &["sip.a.test"]).decision else {
        panic!()
    };
    assert!(!f.strip.iter().any(|h| h == "P-Asserted-Identity"));
}

#[test]
fn outbound_table() {
    let snap = snapshot();
    type Row<'a> = (&'a str, &'a str, u16, u16, &'a str, &'a str);
    let rows: &[Row] = &[
        (
            "sip:x@a.test",
            "sip:y@a.test",
            403,
            1017,
            "foreign_from",
            "From domain a.test is not a home domain",
        ),
        (
            "sip:x@fedge.test",
            "sip:y@z.test",
            404,
            1005,
            "unknown_domain",
            "no federation partner serves domain z.test",
        ),
        (
            "sip:x@fedge.test",
            "sip:y@fedge.test",
            404,
            1005,
            "unknown_domain",
            "is a home domain",
        ),
        (
            "sip:x@fedge.test",
            "sip:y@b.test",
            403,
            1005,
            "not_enabled",
            "partner Org b (domain b.test) is suspended",
        ),
    ];
    for (from, ruri, status, code, rule, frag) in rows {
        let v = decide(
            &msg("MESSAGE", ruri, from, ruri),
            Role::Internal,
            None,
            &RequestInfo::default(),
            &snap,
            &cfg(),
            None,
        );
        let (s, _, c, reason) = reject(&v);
        assert_eq!(
            (s, c, v.label()),
            (*status, Some(*code), *rule),
            "{from} -> {ruri}: {reason}"
        );
        assert!(reason.contains(frag), "{reason:?} lacks {frag:?}");
    }
    // File transfer is refused outbound too.
    let m = req(
        "INFO",
        "sip:y@a.test",
        "sip:x@fedge.test",
        "sip:y@a.test",
        "",
        "application/ms-filetransfer+xml",
        "<response/>",
    );
    let v = decide(
        &m,
        Role::Internal,
        None,
        &RequestInfo::default(),
        &snap,
        &cfg(),
        None,
    );
    assert_eq!((reject(&v).0, reject(&v).1), (606, 309));
    let v = decide(
        &msg(
            "MESSAGE",
            "sip:y@a.test",
            "sip:x@fedge.test",
            "sip:y@a.test",
        ),
        Role::Internal,
        None,
        &RequestInfo::default(),
        &snap,
        &cfg(),
        None,
    );
    match v.decision {
        Decision::Forward(f) => {
            assert_eq!(f.leg, Role::Federation.side());
            let Hop::Stream(t) = f.hop else { panic!() };
            assert_eq!(
                (t.host.as_str(), t.port, t.server_name.as_deref()),
                ("sip.a.test", 5061, Some("sip.a.test"))
            );
            assert_eq!(t.max_conns, 4);
            assert!(f.strip.iter().any(|s| s == "ms-diagnostics"));
            assert_eq!(f.hide, Hide::Source);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connection_failures_carry_sfb_codes() {
    // The answer as the proxy sends it.
    let forward_failed = |role, err: &ConnectError| forward_failed(role, err).reject();
    let t = |name_mismatch| ConnectError::Tls {
        target: "t".into(),
        detail: "d".into(),
        name_mismatch,
    };
    assert_eq!(
        diagnostic_code(&forward_failed(Role::Internal, &t(true))),
        Some(1010)
    );
    assert_eq!(
        diagnostic_code(&forward_failed(Role::Internal, &t(false))),
        Some(1047)
    );
    let r = forward_failed(
        Role::Internal,
        &ConnectError::Resolve {
            host: "h".into(),
            detail: "nx".into(),
        },
    );
    assert_eq!((r.status, diagnostic_code(&r)), (504, Some(1014)));
    let r = forward_failed(
        Role::Federation,
        &ConnectError::Timeout {
            target: "pool".into(),
        },
    );
    assert_eq!(r.status, 503);
}

#[test]
fn allowed_domain_partners_are_found_and_checked_by_srv() {
    let snap = Snapshot::build(
        1,
        vec![
            partner("d", &["dom.test"], None, PartnerState::Enabled),
            partner("a", &["a.test"], Some("sip.a.test"), PartnerState::Enabled),
        ],
    );
    let t = |target: &str, port: u16| SrvTarget {
        priority: 0,
        weight: 0,
        port,
        target: target.into(),
    };
    let facts = |answer: SrvAnswer| SrvFacts {
        domain: "dom.test".into(),
        answer,
    };
    let inbound = msg(
        "MESSAGE",
        "sip:x@fedge.test",
        "sip:y@dom.test",
        "sip:x@fedge.test",
    );
    let outbound = msg(
        "MESSAGE",
        "sip:y@dom.test",
        "sip:x@fedge.test",
        "sip:y@dom.test",
    );
    let info = RequestInfo::default();
    // Which domain needs looking up: only the allowed-domain partner's.
    assert_eq!(
        srv_needed(&inbound, Role::Federation, &info, &snap).as_deref(),
        Some("dom.test")
    );
    assert_eq!(
        srv_needed(&outbound, Role::Internal, &info, &snap).as_deref(),
        Some("dom.test")
    );
    let pinned = msg(
        "MESSAGE",
        "sip:y@a.test",
        "sip:x@fedge.test",
        "sip:y@a.test",
    );
    assert_eq!(srv_needed(&pinned, Role::Internal, &info, &snap), None);

    let good = facts(SrvAnswer::Targets(vec![t("sip.dom.test", 5071)]));
    let elsewhere = facts(SrvAnswer::Targets(vec![
        t("sip.sub.dom.test", 5061),
        t("edge.other.test", 5061),
    ]));
    let missing = facts(SrvAnswer::NotFound);
    let failed = facts(SrvAnswer::Failed("timed out".into()));
    let other_domain = SrvFacts {
        domain: "else.test".into(),
        answer: SrvAnswer::Targets(vec![t("sip.else.test", 5061)]),
    };
    let decide_in = |peer: &str, f: &SrvFacts| {
        decide(
            &inbound,
            Role::Federation,
            Some(&id(&[peer])),
            &info,
            &snap,
            &cfg(),
            Some(f),
        )
    };
    // Inbound: the certificate must name the SRV target.
    assert!(matches!(
        decide_in("sip.dom.test", &good).decision,
        Decision::Forward(_)
    ));
    let rows: [(&str, &SrvFacts, u16, u16, &str, &str); 5] = [
        (
            "sip.evil.test",
            &good,
            403,
            1010,
            "spoofed_domain",
            "but _sipfederationtls._tcp.dom.test names sip.dom.test",
        ),
        (
            "sip.sub.dom.test",
            &elsewhere,
            504,
            1009,
            "srv_domain",
            "not directly in dom.test (the same-domain rule)",
        ),
        (
            "sip.dom.test",
            &missing,
            403,
            1008,
            "no_srv",
            "publishes no _sipfederationtls._tcp.dom.test SRV record",
        ),
        (
            "sip.dom.test",
            &failed,
            504,
            1008,
            "dns_failed",
            "failed: timed out",
        ),
        (
            "sip.dom.test",
            &other_domain,
            504,
            1008,
            "dns_failed",
            "was not looked up",
        ),
    ];
    for (peer, f, status, code, rule, frag) in rows {
        let v = decide_in(peer, f);
        let (s, _, c, reason) = reject(&v);
        assert_eq!(
            (s, c, v.label()),
            (status, Some(code), rule),
            "{peer}: {reason}"
        );
        assert!(reason.contains(frag), "{reason}");
    }
    // Outbound: to the SRV target and port, its certificate checked against the target.
    let v = decide(
        &outbound,
        Role::Internal,
        None,
        &info,
        &snap,
        &cfg(),
        Some(&good),
    );
    let Decision::Forward(f) = v.decision else {
        panic!("{:?}", v.label())
    };
    let Hop::Stream(st) = f.hop else { panic!() };
    assert_eq!(
        (st.host.as_str(), st.port, st.server_name.as_deref()),
        ("sip.dom.test", 5071, Some("sip.dom.test"))
    );
    for (f, status, code, rule) in [
        (&elsewhere, 504, 1009, "srv_domain"),
        (&missing, 504, 1008, "no_srv"),
        (&failed, 504, 1008, "dns_failed"),
    ] {
        let v = decide(
            &outbound,
            Role::Internal,
            None,
            &info,
            &snap,
            &cfg(),
            Some(f),
        );
        let (s, _, c, reason) = reject(&v);
        assert_eq!((s, c, v.label()), (status, Some(code), rule), "{reason}");
    }
}
