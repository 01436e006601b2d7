//! `fedge reload`: asks the running edge to read its `[federation] cert`,
//! `key`, `trust` and `crls` files again (as SIGHUP does), through its
//! admin listener (`POST /api/v1/node/reload`, authenticated as
//! `fedge media` is, see `cli/notify.rs`) or, with `--server`, through
//! the admin API of another host.
//!
//! Owns the command's output and exit code: 0 and the certificate now
//! served; 2 with the edge's reason when it refused the new files (the old
//! ones stay in force); 1 when the edge cannot be reached. It never reads
//! a certificate file itself.

use fedge::config::Config;
use serde_json::Value;

use super::failure::Failure;

/// The path of the reload route.
const ROUTE: &str = "/api/v1/node/reload";

/// `fedge reload` on this host's edge.
pub fn run(cfg: &Config) -> Result<(), Failure> {
    match super::media::call(cfg, "POST", ROUTE) {
        Ok(v) => {
            print_outcome(&v);
            Ok(())
        }
        // The edge's refusal names the configuration key and the file:
        // a configuration mistake (exit 2), as `--server` reports it.
        Err(f) if f.msg.starts_with("[federation]") || f.msg.starts_with("[admin]") => {
            Err(Failure::usage(format!(
                "reload refused, the old certificate stays: {}",
                f.msg
            )))
        }
        // Under [admin] tls the CLI accepts only the certificate in the
        // file; when the edge refused that file, it still serves the old
        // one and the CLI cannot connect: say what is wrong with the file.
        Err(f) if cfg.admin.tls => match fedge::server::check_tls_files(cfg) {
            Err(why) => Err(Failure::usage(format!(
                "reload refused, the old certificate stays: {why}"
            ))),
            Ok(_) => Err(f),
        },
        Err(f) => Err(f),
    }
}

/// `fedge --server URL reload`.
pub fn remote(api: &super::remote::Remote) -> Result<(), Failure> {
    match api.post(ROUTE, &serde_json::json!({})) {
        Ok(v) => {
            print_outcome(&v);
            Ok(())
        }
        Err(f) if f.code == 2 => Err(Failure::usage(format!(
            "reload refused, the old certificate stays: {}",
            f.msg
        ))),
        Err(f) => Err(f),
    }
}

fn print_outcome(v: &Value) {
    let c = &v["certificate"];
    println!(
        "reloaded: serving certificate serial {} ({}), valid until {}; {} reload(s), {} refused since start",
        c["serial"].as_str().unwrap_or("?"),
        c["subject"].as_str().unwrap_or("?"),
        c["not_after"].as_str().unwrap_or("?"),
        v["reloads"],
        v["refused"],
    );
}
