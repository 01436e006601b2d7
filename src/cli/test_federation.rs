//! `fedge test-federation DOMAIN`: the way to a partner checked step by
//! step (DNS, TCP, mutual TLS, OPTIONS, an IM to its technical contact),
//! like SfB's Test-CsFederatedPartner. Needs no running edge.
//!
//! Owns printing one line per step and the exit code (0 only when all
//! passed). It never changes the partner's record itself.

use std::time::Duration;

use fedge::config::Config;
use fedge::federation::probe::{self, Me};
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
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    for s in &steps {
        println!(
            "  {:<8} {:<6} {}",
            s["name"].as_str().unwrap_or_default(),
            if s["ok"] == true { "ok" } else { "FAILED" },
            s["detail"].as_str().unwrap_or_default()
        );
    }
    match steps.iter().find(|s| s["ok"] != true) {
        None if run["passed"] == true => {
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
            s["name"].as_str().unwrap_or_default()
        ))),
    }
}

/// Runs the probe against `domain`, each step within `timeout`.
pub fn run(cfg: &Config, domain: String, timeout: Duration) -> Result<(), Failure> {
    let tls = fedge::sip::transport::tls::client_config(&server::tls_files(cfg))
        .map_err(|e| Failure::usage(format!("[federation] {e}")))?;
    let me = Me {
        fqdn: cfg.federation.fqdn.clone(),
        port: cfg.federation.listen.port(),
        address: format!(
            "sip:{}@{}",
            cfg.policy.test_user,
            cfg.federation
                .home_domains
                .first()
                .map(String::as_str)
                .unwrap_or(&cfg.federation.fqdn)
        ),
    };
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
        for s in &steps {
            println!(
                "  {:<8} {:<6} {}",
                s.name,
                if s.ok { "ok" } else { "FAILED" },
                s.detail
            );
        }
        match steps.iter().find(|s| !s.ok) {
            None if steps.last().is_some_and(|s| s.name == "message") => {
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
                s.name
            ))),
        }
    })
}
