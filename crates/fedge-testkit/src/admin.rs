//! HTTP/1.1 towards the edge's admin listener: one request, a JSON or text
//! body, a Prometheus sample. It never keeps a connection open.
//!
//! Every admin route needs an account: [`crate::Edge::start`] creates an
//! operator token for each edge and registers it here under the admin
//! address, and [`http`] (so every helper built on it) sends it. Tests of
//! authentication itself use [`request`], which sends only what it is given.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

fn tokens() -> &'static Mutex<HashMap<SocketAddr, String>> {
    static TOKENS: OnceLock<Mutex<HashMap<SocketAddr, String>>> = OnceLock::new();
    TOKENS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Makes [`http`] send `token` (`Authorization: Bearer`) to `addr`.
pub fn register_token(addr: SocketAddr, token: &str) {
    tokens().lock().unwrap().insert(addr, token.to_string());
}

/// Forgets the token of `addr` (its edge stopped).
pub fn forget_token(addr: SocketAddr) {
    tokens().lock().unwrap().remove(&addr);
}

/// The operator token registered for `addr`, if any.
pub fn token_for(addr: SocketAddr) -> Option<String> {
    tokens().lock().unwrap().get(&addr).cloned()
}

/// Creates an operator account named `name` with an API token (no
/// password: no argon2 cost) in the database at `db_url`, or, when it
/// exists already (an edge restarted on its database), a new token for
/// it. Runs on its own thread and runtime, so that it works from sync
/// and async tests alike.
pub fn operator_token(db_url: &str, name: &str) -> String {
    let (url, name) = (db_url.to_string(), name.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = fedge::store::Store::open(&url)
                .await
                .expect("open the edge's store");
            let token = match store
                .add_token_account(
                    &name,
                    fedge::model::account::Role::Operator,
                    None,
                    "testkit",
                    "testkit",
                )
                .await
            {
                Ok(c) => c.token,
                Err(fedge::store::StoreError::Conflict(_)) => store
                    .issue_token(&name, "testkit", None, "testkit")
                    .await
                    .expect("a token for the testkit's operator"),
                Err(e) => panic!("cannot create the testkit's operator account: {e}"),
            };
            store.close().await;
            token
        })
    })
    .join()
    .expect("the token thread")
}

/// A full request to the admin listener with exactly the `headers` given
/// (no registered token is added) and a body: the status, the response
/// head (lower-case header names) and the body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {resp:?}"));
    let (h, b) = resp
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no body in {resp:?}"));
    (status, h.to_ascii_lowercase(), b.to_string())
}

/// One HTTP/1.1 request (empty body) to the admin listener, with the
/// operator token registered for `addr` if any: status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token_for(addr)
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_else(|| panic!("{method} {path}: no body in {resp:?}"));
    (status, body)
}

/// GET a path from the admin listener; returns the body as text.
pub fn admin_text(addr: SocketAddr, path: &str) -> String {
    http(addr, "GET", path).1
}

/// GET a path from the admin listener; returns the JSON body.
pub fn admin_get(addr: SocketAddr, path: &str) -> serde_json::Value {
    let body = admin_text(addr, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("admin {path}: {e}: {body}"))
}

/// The value of the Prometheus sample `name{labels}` on the edge's
/// /metrics (labels as rendered, e.g. `rule="file_transfer"`, all of which
/// must appear), summed over the samples that match; 0 when none does.
pub fn metric(addr: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    admin_text(addr, "/metrics")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            (series == &name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|lab| series.contains(lab))
        })
        .map(|(_, v)| {
            v.parse::<f64>()
                .unwrap_or_else(|e| panic!("metric {name}: {v:?}: {e}"))
        })
        .sum()
}
