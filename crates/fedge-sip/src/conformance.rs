//! RFC 4475 torture messages against the parser and the generic request
//! checks, driven by the corpus's MANIFEST.tsv (tests only).
//!
//! Each message is parsed as one UDP datagram, the setting RFC 4475 was
//! written for; the stream behaviour is covered by tests/rfc4475_wire.rs.

use std::path::PathBuf;

use bytes::Bytes;

use super::framing::{DatagramItem, parse_datagram};
use super::parse::Limits;
use super::validate::check_request;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/rfc4475")
}

struct Row {
    file: String,
    expect: String,
    proxy_expect: String,
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv"))
        .expect("MANIFEST.tsv is readable");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 5, "manifest row has five columns: {l}");
            Row {
                file: cols[0].to_string(),
                expect: cols[3].to_string(),
                proxy_expect: cols[4].to_string(),
            }
        })
        .collect()
}

/// RFC 4475 Note 3: these may be rejected with 400 by the parser itself.
const MAY_REJECT_400: &[&str] = &["insuf.dat", "multi01.dat", "mcl01.dat"];

/// The status `reject NNN` in a proxy_expect column, if any.
fn expected_reject_status(proxy_expect: &str) -> Option<u16> {
    let rest = proxy_expect.strip_prefix("reject ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn every_corpus_message_gets_its_manifest_verdict() {
    let rows = manifest();
    assert_eq!(rows.len(), 49, "RFC 4475 has 49 messages");
    let mut failures = Vec::new();
    for row in &rows {
        let data = std::fs::read(corpus_dir().join(&row.file)).expect("corpus file is readable");
        let item = parse_datagram(Bytes::from(data), &Limits::default());
        let proxy_status = expected_reject_status(&row.proxy_expect);
        match (row.expect.as_str(), item) {
            ("parse", DatagramItem::Message(m)) => {
                if !m.is_request() {
                    // Responses the RFC wants dropped: the edge forwards only
                    // responses matching its own client transactions.
                    if !(row.proxy_expect.starts_with("drop")
                        || row.proxy_expect.starts_with("accept"))
                    {
                        failures.push(format!(
                            "{}: response with proxy verdict {}",
                            row.file, row.proxy_expect
                        ));
                    }
                    continue;
                }
                let verdict = check_request(&m, &[]);
                // A 404 is a routing answer (no route for that Request-URI),
                // given above this layer: the generic checks must let it pass.
                let proxy_status = proxy_status.filter(|s| *s != 404);
                match (proxy_status, verdict) {
                    (Some(want), Err(r)) if r.status == want => {}
                    (Some(want), other) => {
                        failures.push(format!("{}: want {want}, got {other:?}", row.file))
                    }
                    (None, Ok(())) => {}
                    (None, Err(r)) => failures.push(format!(
                        "{}: unexpected {} {}",
                        row.file, r.status, r.reason
                    )),
                }
            }
            ("parse", DatagramItem::Rejected(r)) if MAY_REJECT_400.contains(&row.file.as_str()) => {
                if r.error.status != 400 {
                    failures.push(format!(
                        "{}: rejected with {} instead of 400",
                        row.file, r.error.status
                    ));
                }
            }
            ("reject", DatagramItem::Rejected(r)) => {
                let want = proxy_status.unwrap_or(400);
                let ok = r.error.status == want
                    || (row.file == "mismatch02.dat" && r.error.status == 400);
                if !ok {
                    failures.push(format!(
                        "{}: rejected with {} ({}), want {want}",
                        row.file, r.error.status, r.error.reason
                    ));
                }
                if row.proxy_expect.starts_with("drop") && r.is_request() {
                    failures.push(format!("{}: a response was taken for a request", row.file));
                }
            }
            (expect, DatagramItem::Rejected(r)) => failures.push(format!(
                "{}: expected {expect}, rejected: {} {}",
                row.file, r.error.status, r.error.reason
            )),
            (expect, DatagramItem::Message(_)) => {
                failures.push(format!("{}: expected {expect}, but it parsed", row.file))
            }
            (_, DatagramItem::KeepAlive) => {
                failures.push(format!("{}: taken for a keep-alive", row.file))
            }
        }
    }
    assert!(
        failures.is_empty(),
        "corpus verdicts wrong:\n{}",
        failures.join("\n")
    );
}

#[test]
fn rejections_carry_a_readable_reason() {
    for row in manifest().iter().filter(|r| r.expect == "reject") {
        let data = std::fs::read(corpus_dir().join(&row.file)).expect("corpus file is readable");
        if let DatagramItem::Rejected(r) = parse_datagram(Bytes::from(data), &Limits::default()) {
            assert!(
                r.error.reason.len() > 10,
                "{}: reason too thin: {:?}",
                row.file,
                r.error.reason
            );
        }
    }
}

#[test]
fn valid_messages_keep_their_bytes() {
    // Parsing never rewrites: the message bytes are the file's bytes
    // (up to Content-Length for the datagram with trailing octets).
    for row in manifest().iter().filter(|r| r.expect == "parse") {
        let data = std::fs::read(corpus_dir().join(&row.file)).expect("corpus file is readable");
        if let DatagramItem::Message(m) =
            parse_datagram(Bytes::from(data.clone()), &Limits::default())
        {
            assert!(data.starts_with(m.raw()), "{}: bytes changed", row.file);
        }
    }
}

/// Deterministic xorshift, so a failure is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    const INTERESTING: &[u8] = b"\r\n \t:;,<>\"\\%@[]=/0123456789\x00\xff\xc3";
    for _ in 0..1 + rng.below(4) {
        if data.is_empty() {
            data.push(b'x');
        }
        let at = rng.below(data.len());
        match rng.below(5) {
            0 => data[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 => data.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 => {
                data.remove(at);
            }
            3 => data.truncate(at),
            _ => {
                let len = rng.below(32).min(data.len() - at);
                let chunk: Vec<u8> = data[at..at + len].to_vec();
                let to = rng.below(data.len());
                for (i, b) in chunk.into_iter().enumerate() {
                    data.insert(to + i, b);
                }
            }
        }
    }
}

#[test]
fn mutated_corpus_never_panics_and_parses_stably() {
    use super::framing::{StreamDecoder, StreamItem};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    let files: Vec<Vec<u8>> = manifest()
        .iter()
        .map(|r| std::fs::read(corpus_dir().join(&r.file)).expect("corpus file"))
        .collect();
    let mut rng = Rng(0x5eed_f00d_dead_beef);
    let limits = Limits::default();
    for round in 0..rounds() {
        let mut data = files[round % files.len()].clone();
        mutate(&mut rng, &mut data);
        // As a datagram: a message that parses must parse again from its own bytes.
        if let DatagramItem::Message(m) = parse_datagram(Bytes::from(data.clone()), &limits) {
            match parse_datagram(m.raw().clone(), &limits) {
                DatagramItem::Message(again) => {
                    assert_eq!(again.headers().len(), m.headers().len())
                }
                other => panic!("round {round}: reparse differs: {other:?}"),
            }
            let _ = check_request(&m, &[]);
            let _ = (
                m.top_via(),
                m.from(),
                m.to(),
                m.cseq(),
                m.request_uri(),
                m.summary(),
            );
        }
        // As a stream, fed in two pieces.
        let mut d = StreamDecoder::new(limits);
        let cut = rng.below(data.len() + 1);
        let mut buf = BytesMut::from(&data[..cut]);
        for piece in [&data[cut..], &[][..]] {
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(StreamItem::Message(m))) => {
                        let _ = check_request(&m, &[]);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            buf.extend_from_slice(piece);
        }
    }
}

/// 20 000 rounds by default; FEDGE_MUTATION_ROUNDS raises it for a long local run.
fn rounds() -> usize {
    std::env::var("FEDGE_MUTATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}
