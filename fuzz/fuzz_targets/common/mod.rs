//! Helpers shared by the SIP fuzz targets: walking every accessor of a
//! parsed message (so lazily parsed headers are exercised too), and the
//! one parse the targets use to check that bytes the edge writes parse.
//! Never asserts anything a peer's input can make false.

#![allow(dead_code)]

use bytes::Bytes;
use fedge_sip::SipMessage;
use fedge_sip::framing::{DatagramItem, parse_datagram};
use fedge_sip::headers::HeaderName;
use fedge_sip::parse::{Limits, Rejected};

/// Limits small enough that the fuzzer reaches every size check.
pub fn limits() -> Limits {
    Limits {
        max_head: 4096,
        max_body: 8192,
        max_headers: 48,
    }
}

/// Reads every view of a message the layers above use.
pub fn touch(m: &SipMessage) {
    let _ = m.start_line_str();
    let _ = m.summary();
    let _ = (m.method(), m.status(), m.reason_phrase(), m.request_uri());
    for h in m.headers() {
        let _ = (m.value(h), m.name_str(h));
    }
    for v in m.vias() {
        let _ = (v.branch(), v.received(), v.rport(), v.port);
    }
    if let Some(f) = m.from() {
        let _ = (f.tag(), f.check_params(), f.uri.domain(), f.uri.transport());
    }
    if let Some(t) = m.to() {
        let _ = (t.tag(), t.uri.is_loose_route());
    }
    let _ = (m.call_id(), m.cseq(), m.max_forwards(), m.body().len());
    let _ = m.values_named("x-ms-diagnostics").count();
    let _ = m.first(HeaderName::ContentType);
}

/// Parses bytes the edge itself wrote: they must make one well-formed message.
pub fn must_parse(out: &Bytes, what: &str) -> SipMessage {
    match parse_datagram(out.clone(), &Limits::default()) {
        DatagramItem::Message(m) => {
            assert_eq!(
                m.raw().len(),
                out.len(),
                "{what}: the edge wrote trailing octets:\n{}",
                String::from_utf8_lossy(out)
            );
            m
        }
        DatagramItem::Rejected(Rejected { error, .. }) => panic!(
            "{what} does not parse ({error}):\n{}",
            String::from_utf8_lossy(out)
        ),
        DatagramItem::KeepAlive => panic!("{what} is empty"),
    }
}
