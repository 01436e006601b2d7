//! `fedge test-federation DOMAIN`: the way to a partner checked step by
//! step (DNS, TCP, mutual TLS, OPTIONS, an IM to its technical contact),
//! like SfB's Test-CsFederatedPartner. Needs no running edge.
//!
//! Owns printing one line per step and the exit code (0 only when all
//! passed). It never changes the partner's record itself.

use std::time::Duration;

use fedge::config::Config;
use fedge::federation::probe;
use fedge::server;

use super::common::with_store;
use super::failure::Failure;

/// `fedge --server URL test-federation DOMAIN`: the same run by the edge
/// behind the API (its certificate, its view of DNS); the result is kept
/// there for the console (`GET /api/v1/partners/{id}/tests`).
pub fn remote(api: &super::remote::Remote, domain: &str) -> Result<(), Failure> {
    let id = api.partner_id(domain)?;
    let p = api.get(&format!("/api/v1/partners/{}", super::remote::seg(&id)))?;
    let run = api.post(
        &format!(
            "/api/v1/partners/{}/test-federation",
            super::remote::seg(&id)
        ),
        &serde_json::json!({ "domain": domain }),
    )?;
    println!(
        "federation test: {} ({}, {}) from {} as {}",
        domain,
        p["org_name"].as_str().unwrap_or_default(),
        p["state"].as_str().unwrap_or_default(),
        api.server(),
        run["from"].as_str().unwrap_or_default()
    );
    let steps: Vec<(String, bool, String)> = run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["ok"] == true,
                s["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    report(domain, &steps, run["passed"] == true)
}

/// Prints one line per step (name, ok, detail) and the verdict: 0 only when
/// every step passed and the run `finished` (the IM was sent).
fn report(domain: &str, steps: &[(String, bool, String)], finished: bool) -> Result<(), Failure> {
    for (name, ok, detail) in steps {
        println!(
            "  {:<8} {:<6} {}",
            name,
            if *ok { "ok" } else { "FAILED" },
            detail
        );
    }
    match steps.iter().find(|s| !s.1) {
        None if finished => {
            println!(
                "all steps passed: ask the technical contact to reply, then check `fedge partner show {domain}`"
            );
            Ok(())
        }
        None => Err(Failure::runtime(format!(
            "federation test with {domain} did not finish"
        ))),
        Some(s) => Err(Failure::runtime(format!(
            "federation test with {domain} failed at step {}",
            s.0
        ))),
    }
}

/// Runs the probe against `domain`, each step within `timeout`.
pub fn run(cfg: &Config, domain: String, timeout: Duration) -> Result<(), Failure> {
    let tls = fedge::sip::transport::tls::client_config(&server::tls_files(cfg))
        .map_err(|e| Failure::usage(format!("[federation] {e}")))?;
    let me = server::probe_me(cfg);
    let resolver = cfg.dns.resolver;
    with_store(cfg, |store| async move {
        let dns = fedge::dns::Dns::new(resolver).map_err(|e| Failure::runtime(e.to_string()))?;
        let partner = store.partner_by_domain(&domain).await.map_err(|e| {
            if e.is_usage() {
                Failure::usage(e.to_string())
            } else {
                Failure::runtime(e.to_string())
            }
        })?;
        println!(
            "federation test: {} ({}, {}) from {} as {}",
            domain, partner.details.org_name, partner.state, me.fqdn, me.address
        );
        let steps = probe::run(
            &partner,
            &domain.to_ascii_lowercase(),
            &dns,
            tls,
            &me,
            timeout,
        )
        .await;
        let finished = steps.last().is_some_and(|s| s.name == "message");
        let steps: Vec<(String, bool, String)> = steps
            .into_iter()
            .map(|s| (s.name.to_string(), s.ok, s.detail))
            .collect();
        report(&domain, &steps, finished)
    })
}
