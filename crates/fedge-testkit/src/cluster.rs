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
    let base = test_config(pki, "");
    let sqlite = format!("url = \"sqlite://{}/fedge.db\"", pki.path().display());
    assert!(base.contains(&sqlite), "test_config's store line moved");
    let cfg = base.replace(&sqlite, &format!("url = \"{pg_url}\""));
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
        let pg = Postgres::start();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("node-{}", (b'a' + i as u8) as char);
            nodes.push(Edge::start(pki, &node_config(pki, &pg.url, &name, extra)));
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
