//! Fuzz target: the message editor as the proxy uses it on forwarding.
//! A well-formed request gets the proxy's edits (our Route entries out and
//! what our tokens hid restored, Max-Forwards down, Record-Route on one or
//! two legs, topology hidden either way, router strips and adds, a new
//! body, our Via on top); a response gets the upstream edits (top Via out,
//! topology restored or hidden). The bytes written must parse as one
//! well-formed message, keep the transaction's identity, and carry exactly
//! the body meant. Forged topology tokens must restore nothing.

#![no_main]

mod common;

use std::sync::OnceLock;

use bytes::Bytes;
use fedge_sip::SipMessage;
use fedge_sip::edit::Editor;
use fedge_sip::framing::{DatagramItem, parse_datagram};
use fedge_sip::headers::{HeaderName, NameAddr};
use fedge_sip::proxy::topology::{Hide, ResponseEdit, Topology, TopologyKey};
use fedge_sip::uri::{Host, Uri};
use fedge_sip::validate::check_request;
use libfuzzer_sys::fuzz_target;

const SELF: &str = "edge.fuzz.test";
const OUTER: &str = "<sip:edge.fuzz.test:5061;transport=tls;lr>";
const INNER: &str = "<sip:edge.fuzz.test:5062;transport=tls;lr>";
const PEER: &str = "partner-a";
const VIA: &str = "SIP/2.0/TLS edge.fuzz.test:5061";
const BODY: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

fn topology() -> &'static Topology {
    static T: OnceLock<Topology> = OnceLock::new();
    T.get_or_init(|| {
        Topology::new(
            &[TopologyKey {
                id: 1,
                secret: [7u8; 32],
                retire_at: None,
            }],
            std::time::Duration::from_secs(3600),
            vec!["home.test".into()],
            format!("{SELF}:5061;transport=tls"),
        )
        .expect("system random numbers")
    })
}

fn is_self(u: &Uri<'_>) -> bool {
    matches!(u.host, Some(Host::Name(n)) if n.trim_end_matches('.').eq_ignore_ascii_case(SELF))
        && u.port.is_none_or(|p| p == 5061 || p == 5062)
}

/// The proxy's `prepare` and `build_forward`, with the choices a router
/// would make taken from `mode`.
fn forward(msg: &SipMessage, mode: u8) -> Bytes {
    let hide = match mode % 3 {
        0 => Hide::Nothing,
        1 => Hide::Source,
        _ => Hide::Destination,
    };
    let record_route = mode & 4 != 0;
    let two_legs = mode & 8 != 0;
    let stateful = mode & 16 != 0;
    let new_body = mode & 32 != 0;

    let routes: Vec<usize> = msg.indices(HeaderName::Route).collect();
    let mut own = Vec::new();
    for &i in &routes {
        match NameAddr::parse(msg.value(&msg.headers()[i])) {
            Ok(na) if na.uri.user.is_none() && is_self(&na.uri) => own.push(i),
            _ => break,
        }
    }
    let route_uris: Vec<Uri<'_>> = own
        .iter()
        .filter_map(|&i| NameAddr::parse(msg.value(&msg.headers()[i])).ok())
        .map(|na| na.uri)
        .collect();
    let target = msg.request_uri();
    let call_id = msg.call_id().unwrap_or("");
    match topology().restore_request(call_id, PEER, &route_uris, target.as_ref(), is_self) {
        Ok((restored, original)) => assert!(
            restored.is_empty() && original.is_none(),
            "a forged token restored {restored:?} {original:?}"
        ),
        Err(_) => {} // refused: fails closed
    }

    let mut ed = Editor::new(msg);
    if hide == Hide::Destination {
        ed.remove_all(HeaderName::Route);
    } else {
        for &i in &own {
            ed.remove_value(i);
        }
    }
    match msg.indices(HeaderName::MaxForwards).next() {
        Some(i) => ed.replace_value(
            i,
            msg.max_forwards()
                .unwrap_or(70)
                .saturating_sub(1)
                .to_string(),
        ),
        None => ed.append("Max-Forwards", "70"),
    }
    if hide == Hide::Source {
        let rr = record_route.then_some((OUTER, INNER));
        let _ = topology().hide_request(msg, &mut ed, rr, stateful, PEER);
    } else if record_route {
        ed.insert_before_first(HeaderName::RecordRoute, OUTER);
        if two_legs {
            ed.insert_before_first(HeaderName::RecordRoute, INNER);
        }
    }
    for name in [
        "P-Asserted-Identity",
        "x-ms-diagnostics-public",
        "Proxy-Authorization",
    ] {
        ed.remove_header(name);
    }
    ed.append("P-Asserted-Identity", "<sip:fuzz@home.test>");
    if new_body {
        ed.set_body(Bytes::from_static(BODY));
    }
    ed.insert_before_first(HeaderName::Via, &format!("{VIA};branch=z9hG4bK-fuzz"));
    ed.finish()
}

/// The proxy's `upstream_bytes`.
fn upstream(resp: &SipMessage, mode: u8) -> Bytes {
    let edit = match mode % 3 {
        0 => ResponseEdit::Nothing,
        1 => ResponseEdit::Restore {
            vias: vec!["SIP/2.0/TLS home.test;branch=z9hG4bK-home".into()],
            record_route: if mode & 4 != 0 {
                vec![OUTER.into(), INNER.into(), "<sip:p.home.test;lr>".into()]
            } else {
                Vec::new()
            },
        },
        _ => ResponseEdit::Hide {
            below: usize::from(mode >> 2 & 3),
            ours: usize::from(mode >> 4 & 3),
            peer: PEER.into(),
        },
    };
    let mut ed = Editor::new(resp);
    if let Some(i) = resp.indices(HeaderName::Via).next() {
        ed.remove_value(i);
    }
    match &edit {
        ResponseEdit::Nothing => {}
        ResponseEdit::Restore { vias, record_route } => {
            topology().restore_response(resp, &mut ed, vias, record_route, is_self)
        }
        ResponseEdit::Hide { below, ours, peer } => {
            topology().hide_response(resp, &mut ed, OUTER, (*below, *ours), peer)
        }
    }
    ed.finish()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let DatagramItem::Message(msg) =
        parse_datagram(Bytes::copy_from_slice(input), &common::limits())
    else {
        return;
    };
    if msg.is_request() {
        if check_request(&msg, &[]).is_err() {
            return; // refused before routing
        }
        let out = forward(&msg, mode);
        let fwd = common::must_parse(&out, "the forwarded request");
        assert_eq!(fwd.method(), msg.method());
        assert_eq!(fwd.call_id(), msg.call_id());
        assert_eq!(fwd.cseq(), msg.cseq());
        let top = fwd.top_via().expect("our Via on top");
        assert_eq!(top.branch(), Some("z9hG4bK-fuzz"));
        let want = if mode & 32 != 0 { BODY } else { msg.body() };
        assert_eq!(fwd.body(), want, "the forwarded body");
        let mf = msg.max_forwards().map_or(70, |n| n.saturating_sub(1));
        assert_eq!(fwd.max_forwards(), Some(mf));
    } else {
        let out = upstream(&msg, mode);
        let up = common::must_parse(&out, "the response passed upstream");
        assert_eq!(up.status(), msg.status());
        assert_eq!(up.call_id(), msg.call_id());
        assert_eq!(up.body(), msg.body());
    }
});
