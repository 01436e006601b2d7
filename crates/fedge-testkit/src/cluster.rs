//! Several `fedge serve` nodes on one throw-away PostgreSQL: the shape of
//! a production deployment, on loopback. Each node has its own listeners
//! (ephemeral ports) and its own `[cluster] node` name; they share the
//! database and the test PKI.

use crate::edge::{Edge, test_config};
use crate::pg::Postgres;
use crate::pki::Pki;

/// A test configuration for node `name` on the database at `pg_url`;
/// `extra` is appended (sections the base configuration does not open).
pub fn node_config(pki: &Pki, pg_url: &str, name: &str, extra: &str) -> String {
    node_config_with_store(pki, pg_url, name, extra, "")
}

/// Like [`node_config`], with `store_lines` added to `[store]` (e.g.
/// `notify = false`).
pub fn node_config_with_store(
    pki: &Pki,
    pg_url: &str,
    name: &str,
    extra: &str,
    store_lines: &str,
) -> String {
    let base = test_config(pki, "");
    let sqlite = format!("url = \"sqlite://{}/fedge.db\"", pki.path().display());
    assert!(base.contains(&sqlite), "test_config's store line moved");
    let cfg = base.replace(&sqlite, &format!("url = \"{pg_url}\"\n{store_lines}"));
    format!(
        "{cfg}\n[cluster]\nnode = \"{name}\"\nheartbeat = \"200ms\"\ngone_after = \"1s\"\n{extra}"
    )
}

/// PostgreSQL and `n` nodes named `node-a`, `node-b`, ...
pub struct Cluster {
    /// The nodes, in name order (dropped before the database).
    pub nodes: Vec<Edge>,
    pub pg: Postgres,
}

impl Cluster {
    /// Starts PostgreSQL and `n` nodes with `extra` appended to each
    /// node's configuration.
    pub fn start(pki: &Pki, n: usize, extra: &str) -> Cluster {
        Cluster::start_with_store(pki, n, extra, "")
    }

    /// Like [`Cluster::start`], with `store_lines` added to each node's
    /// `[store]` section.
    pub fn start_with_store(pki: &Pki, n: usize, extra: &str, store_lines: &str) -> Cluster {
        let pg = Postgres::start();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("node-{}", (b'a' + i as u8) as char);
            nodes.push(Edge::start(
                pki,
                &node_config_with_store(pki, &pg.url, &name, extra, store_lines),
            ));
        }
        Cluster { nodes, pg }
    }

    /// Starts one more node on the same database.
    pub fn add_node(&mut self, pki: &Pki, extra: &str) -> &Edge {
        let name = format!("node-{}", (b'a' + self.nodes.len() as u8) as char);
        self.nodes.push(Edge::start(
            pki,
            &node_config(pki, &self.pg.url, &name, extra),
        ));
        self.nodes.last().expect("just pushed")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The nodes stop before PostgreSQL does (field order does the
        // rest; this makes it explicit).
        self.nodes.clear();
    }
}

/// Adds `domain` as an enabled partner (edge [`crate::PARTNER_FQDN`])
/// through the CLI with configuration `cli`.
pub fn add_enabled_partner(cli: &std::path::Path, domain: &str) {
    crate::fedge_ok(
        cli,
        &[
            "partner",
            "add",
            "--domain",
            domain,
            "--org",
            "Cluster Partner",
            "--edge-fqdn",
            crate::PARTNER_FQDN,
            "--state",
            "enabled",
            "--reason",
            "cluster test",
        ],
    );
}

/// The state of the partner holding `domain` in `edge`'s registry snapshot.
pub fn partner_state(edge: &Edge, domain: &str) -> Option<String> {
    let v = crate::admin_get(edge.admin, "/registry");
    v["partners"]
        .as_array()?
        .iter()
        .find(|p| {
            p["domains"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == domain))
        })
        .map(|p| p["state"].as_str().unwrap_or("").to_string())
}

/// Waits (up to `within`) until `edge` enforces `state` for `domain`.
pub fn wait_partner_state(edge: &Edge, domain: &str, state: &str, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    while partner_state(edge, domain).as_deref() != Some(state) {
        assert!(
            std::time::Instant::now() < deadline,
            "{domain} never became {state} on {}",
            edge.admin
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// One JSON exchange with an admin listener using `token`: status and
/// body (`Null` when empty).
pub fn api_call(
    addr: std::net::SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let (status, _, b) = crate::admin::request(addr, method, path, &headers, &body);
    let v = if b.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&b).unwrap_or(serde_json::Value::String(b))
    };
    (status, v)
}

/// The id of the partner holding `domain`, from `edge`'s API.
pub fn partner_id(edge: &Edge, domain: &str) -> String {
    let (status, list) = api_call(edge.admin, &edge.token, "GET", "/api/v1/partners", None);
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .and_then(|a| {
            a.iter().find(|p| {
                p["domains"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == domain))
            })
        })
        .and_then(|p| p["id"].as_str())
        .unwrap_or_else(|| panic!("no partner {domain} in {list}"))
        .to_string()
}
