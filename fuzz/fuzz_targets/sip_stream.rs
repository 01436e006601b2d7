//! Fuzz target: SIP on a byte stream (TCP, TLS): Content-Length framing,
//! keep-alives, size limits, then both parse phases. The input is read
//! twice, whole and in chunks whose size comes from its first byte; the
//! two readings must yield the same items (a peer's segmentation must not
//! change what the edge reads). Messages must re-parse alone, and the
//! answer to a rejected request must be buildable.

#![no_main]

mod common;

use bytes::{Bytes, BytesMut};
use fedge_sip::ResponseBuilder;
use fedge_sip::framing::{StreamDecoder, StreamError, StreamItem};
use fedge_sip::parse::{Rejected, find_head_end, parse_framed};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Ping,
    Message(Bytes),
    Rejected(u16, String, Option<Bytes>),
    Fatal(u16, String),
    Truncated(usize),
}

fn answer(r: &Rejected) {
    if let (Some(req), true) = (&r.partial, r.is_request()) {
        common::touch(req);
        let _ = ResponseBuilder::new(req, r.error.status)
            .warning(399, "edge.fuzz.test", &r.error.reason)
            .build();
    }
}

fn item(i: StreamItem) -> Seen {
    match i {
        StreamItem::Ping => Seen::Ping,
        StreamItem::Message(m) => {
            common::touch(&m);
            // Phase one and two again on the framed bytes alone.
            let raw = m.raw().clone();
            let he = find_head_end(&raw, 0).expect("a framed message has a head");
            assert_eq!(he, m.head_end());
            let again = parse_framed(raw.clone(), he, &common::limits())
                .unwrap_or_else(|r| panic!("framed message no longer parses: {}", r.error));
            assert_eq!(again, m);
            Seen::Message(raw)
        }
        StreamItem::Rejected(r) => {
            answer(&r);
            Seen::Rejected(
                r.error.status,
                r.error.reason.clone(),
                r.partial.map(|p| p.raw().clone()),
            )
        }
    }
}

fn error(e: StreamError) -> Seen {
    match e {
        StreamError::Fatal(r) => {
            answer(&r);
            Seen::Fatal(r.error.status, r.error.reason)
        }
        StreamError::Truncated(n) => Seen::Truncated(n),
        StreamError::Io(e) => panic!("I/O error from a decoder: {e}"),
    }
}

fn read(input: &[u8], chunk: usize) -> Vec<Seen> {
    let mut d = StreamDecoder::new(common::limits());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(c);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(i)) => out.push(item(i)),
                Ok(None) => break,
                Err(e) => {
                    out.push(error(e));
                    return out;
                }
            }
        }
    }
    // As tokio's FramedRead does at end of stream.
    for _ in 0..=input.len() {
        match d.decode_eof(&mut buf) {
            Ok(Some(i)) => out.push(item(i)),
            Ok(None) => return out,
            Err(e) => {
                out.push(error(e));
                return out;
            }
        }
    }
    panic!("decode_eof never ended");
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, input)) = data.split_first() else {
        return;
    };
    let whole = read(input, input.len());
    let chunked = read(input, usize::from(c % 64) + 1);
    assert_eq!(whole, chunked, "segmentation changed what was read");
});
