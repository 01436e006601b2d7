//! Fuzz target: one UDP datagram through `parse_datagram` (both parse
//! phases), then what the edge does next with it: the generic request
//! checks of RFC 3261 §16.3, the answer to a rejected request, and the
//! response to a well-formed one, which must parse. The body is read as
//! the content rules read it (media types, MIME multipart, SDP lines).

#![no_main]

mod common;

use bytes::Bytes;
use fedge_sip::body;
use fedge_sip::framing::{DatagramItem, parse_datagram};
use fedge_sip::headers::HeaderName;
use fedge_sip::parse::parse_framed;
use fedge_sip::validate::check_request;
use fedge_sip::{Method, ResponseBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = Bytes::copy_from_slice(data);
    match parse_datagram(data.clone(), &common::limits()) {
        DatagramItem::KeepAlive => {
            assert!(data.iter().all(|b| b.is_ascii_whitespace()));
        }
        DatagramItem::Message(m) => {
            common::touch(&m);
            let again = parse_framed(m.raw().clone(), m.head_end(), &common::limits())
                .unwrap_or_else(|r| panic!("message no longer parses: {}", r.error));
            assert_eq!(again, m);
            let ct = m.first(HeaderName::ContentType);
            let _ = ct.map(body::media_type);
            for part in body::leaves(ct, m.first(HeaderName::ContentDisposition), m.body()) {
                assert!(part.body.is_empty() || body::range_in(m.body(), part.body).is_some());
                let _ = body::sdp_attributes(part.body).count();
            }
            if m.is_request() {
                let refusal = check_request(&m, &["fedge-fuzz"]);
                let status = refusal.as_ref().err().map_or(200, |r| r.status);
                if m.method() != Some(&Method::Ack) {
                    let mut b = ResponseBuilder::new(&m, status);
                    if let Err(r) = &refusal {
                        b = b.warning(399, "edge.fuzz.test", &r.reason);
                        for (n, v) in &r.headers {
                            b = b.header(*n, v.clone());
                        }
                    }
                    let resp = common::must_parse(&b.build(), "the response to a valid request");
                    assert_eq!(resp.status(), Some(status));
                    assert_eq!(resp.call_id(), m.call_id());
                }
            }
        }
        DatagramItem::Rejected(r) => {
            assert!(r.error.status >= 400);
            if let Some(p) = &r.partial {
                common::touch(p);
                if r.is_request() {
                    let _ = p.top_via().map(|v| (v.rport(), v.port));
                    let _ = ResponseBuilder::new(p, r.error.status)
                        .warning(399, "edge.fuzz.test", &r.error.reason)
                        .build();
                }
            }
        }
    }
});
