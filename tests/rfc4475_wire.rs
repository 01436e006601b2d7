//! RFC 4475 over the wire: every torture message is sent on its own
//! mutual-TLS connection to the running binary, and gets its syntax verdict
//! first (a 400-class answer with a reason, or that connection alone
//! closed, for the invalid ones; no syntax rejection for the valid ones),
//! while a witness connection keeps being served throughout.

use std::path::PathBuf;
use std::time::Duration;

use fedge_testkit::*;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/rfc4475")
}

struct Row {
    file: String,
    expect: String,
}

fn manifest() -> Vec<Row> {
    std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Row {
                file: c[0].to_string(),
                expect: c[3].to_string(),
            }
        })
        .collect()
}

/// Valid messages a proxy may still answer with 400 (RFC 4475 Note 3 and
/// §3.2.1), plus inv2543, which has no Content-Length: RFC 3261 §18.3 makes
/// that header mandatory on streams, so on TLS its end cannot be found.
const MAY_BE_400: &[&str] = &[
    "insuf.dat",
    "multi01.dat",
    "mcl01.dat",
    "badbranch.dat",
    "inv2543.dat",
];

/// Syntax rejections use these statuses.
const SYNTAX_STATUSES: &[u16] = &[400, 501, 505, 513];

/// Collects final responses (1xx are skipped) until `enough` have arrived,
/// the connection closes, or it stays quiet for `quiet`.
async fn replies(
    c: &mut SipTlsClient,
    quiet: Duration,
    enough: usize,
) -> (Vec<fedge::sip::SipMessage>, bool) {
    let mut out = Vec::new();
    loop {
        if out.len() >= enough {
            return (out, false);
        }
        match c.recv(quiet).await {
            Reply::Message(m) if m.status().is_some_and(|s| s < 200) => {}
            Reply::Message(m) => out.push(m),
            Reply::Pong => {}
            Reply::Closed => return (out, true),
            Reply::Timeout => return (out, false),
        }
    }
}

fn warning_of(m: &fedge::sip::SipMessage) -> String {
    m.values_named("Warning").next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_over_mutual_tls() {
    let pki = Pki::new();
    let mut edge = Edge::start(&pki, &test_config(&pki, ""));
    let mut witness = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .expect("witness connects");
    let mut n = 0u32;
    let mut failures = Vec::new();

    for row in manifest() {
        let data = std::fs::read(corpus_dir().join(&row.file)).unwrap();
        let is_response = data.starts_with(b"SIP/");
        let mut c = tls_connect(edge.federation, &pki, &pki.partner)
            .await
            .expect("corpus connection");
        c.send(&data).await.unwrap();
        // message_timeout is 1 s in the test config: incomplete messages close by then.
        // dblreq holds two requests and, on a stream, 5 stray octets after them.
        let enough = match (is_response, row.file == "dblreq.dat") {
            (true, _) => usize::MAX,
            (false, true) => 3,
            (false, false) => 1,
        };
        let (got, closed) = replies(&mut c, Duration::from_millis(2500), enough).await;
        let statuses: Vec<u16> = got.iter().filter_map(|m| m.status()).collect();
        let file = row.file.as_str();

        match (row.expect.as_str(), is_response) {
            ("reject", false) => match got.first() {
                Some(m) => {
                    let s = m.status().unwrap_or(0);
                    if !SYNTAX_STATUSES.contains(&s) {
                        failures.push(format!("{file}: invalid request answered {s}"));
                    }
                    if !warning_of(m).starts_with("399 sip.fedge.test \"") {
                        failures.push(format!(
                            "{file}: rejection without a reason: {:?}",
                            warning_of(m)
                        ));
                    }
                }
                None if closed => {}
                None => failures.push(format!(
                    "{file}: invalid request neither answered nor closed"
                )),
            },
            (_, true) => {
                // Responses are never answered; the connection must stay usable.
                if !got.is_empty() {
                    failures.push(format!("{file}: a response was answered: {statuses:?}"));
                }
                if closed {
                    failures.push(format!("{file}: connection closed after a response"));
                } else {
                    n += 1;
                    c.send(options_to_edge(1000 + n).as_bytes()).await.unwrap();
                    match c.recv(Duration::from_secs(5)).await {
                        Reply::Message(m) if m.status() == Some(200) => {}
                        other => failures
                            .push(format!("{file}: connection unusable afterwards: {other:?}")),
                    }
                }
            }
            ("parse", false) => {
                if got.is_empty() {
                    failures.push(format!(
                        "{file}: valid request got no answer (closed={closed})"
                    ));
                }
                // On a stream, dblreq's INVITE declares 150 body octets but 155
                // follow: the last 5 ("C\r\n\r\n") are garbage that must be refused.
                let valid = if file == "dblreq.dat" {
                    got.len().min(2)
                } else {
                    got.len()
                };
                for m in &got[..valid] {
                    let s = m.status().unwrap_or(0);
                    if SYNTAX_STATUSES.contains(&s) && !MAY_BE_400.contains(&file) {
                        failures.push(format!(
                            "{file}: valid request refused as malformed: {s} {}",
                            warning_of(m)
                        ));
                    }
                }
                if file == "dblreq.dat" {
                    let stray_refused =
                        got.get(2).is_some_and(|m| m.status() == Some(400)) || closed;
                    if got.len() < 2 || !stray_refused {
                        failures.push(format!("{file}: want two answers then the stray octets refused, got {statuses:?} closed={closed}"));
                    }
                }
            }
            (e, _) => failures.push(format!("{file}: unknown expectation {e}")),
        }

        // The witness connection is served after every message.
        n += 1;
        witness.send(options_to_edge(n).as_bytes()).await.unwrap();
        match witness.recv(Duration::from_secs(5)).await {
            Reply::Message(m) if m.status() == Some(200) => {}
            other => failures.push(format!("after {file}: witness not served: {other:?}")),
        }
    }
    edge.assert_healthy();
    assert!(
        failures.is_empty(),
        "wire verdicts wrong:\n{}",
        failures.join("\n")
    );
    // Every syntax rejection left a log line with its reason.
    assert!(
        edge.wait_log(
            &[
                "malformed message rejected",
                "malformed Via header: expected parameter name"
            ],
            Duration::from_secs(1)
        )
        .is_some(),
        "badinv01's rejection was not logged with its reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_floods_cost_only_their_own_connection() {
    let pki = Pki::new();
    let mut edge = Edge::start(
        &pki,
        &test_config(&pki, "max_head_bytes = 4096\nmax_body_bytes = 8192"),
    );
    let mut witness = tls_connect(edge.federation, &pki, &pki.partner)
        .await
        .unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "binary noise",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("endless header", {
            let mut v = b"OPTIONS sip:x@fedge.test SIP/2.0\r\nX-Long: ".to_vec();
            v.extend(std::iter::repeat_n(b'a', 10_000));
            v
        }),
        ("huge body", {
            let mut v = options_to_edge(5)
                .replace("Content-Length: 0", "Content-Length: 100000")
                .into_bytes();
            v.extend(std::iter::repeat_n(b'b', 9000));
            v
        }),
        (
            "bare LF lines",
            b"OPTIONS sip:x@fedge.test SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bKx\n\n".to_vec(),
        ),
        ("not SIP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let mut c = tls_connect(edge.federation, &pki, &pki.partner)
            .await
            .unwrap();
        let _ = c.send(&bytes).await;
        let (got, closed) = replies(&mut c, Duration::from_millis(2500), usize::MAX).await;
        let statuses: Vec<u16> = got.iter().filter_map(|m| m.status()).collect();
        assert!(
            closed || statuses.iter().all(|s| SYNTAX_STATUSES.contains(s)),
            "{what}: neither refused nor closed: {statuses:?}"
        );
        witness.send(options_to_edge(9).as_bytes()).await.unwrap();
        assert!(
            matches!(witness.recv(Duration::from_secs(5)).await, Reply::Message(m) if m.status() == Some(200)),
            "{what}: witness not served"
        );
    }
    assert!(
        edge.wait_log(&["513", "exceeds"], Duration::from_secs(2))
            .is_some(),
        "no log line for the size limit"
    );
    edge.assert_healthy();
}
