//! HTTP/1.1 towards the edge's admin listener: one request, a JSON or text
//! body, a Prometheus sample. It never keeps a connection open.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// One HTTP/1.1 request (empty body) to the admin listener: status and
/// body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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
