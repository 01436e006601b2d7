//! The checked-in OpenAPI document (docs/openapi.json) is the one the code
//! generates: a route or a body changed without regenerating it fails here,
//! naming the command that regenerates it. Also checks that the document
//! describes every /api/v1 route the API serves and that the binary's
//! `fedge api openapi` prints the same document.

use std::path::Path;

const REGENERATE: &str = "cargo run -q -- api openapi > docs/openapi.json";

fn checked_in() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with `{REGENERATE}`", path.display()))
}

#[test]
fn checked_in_document_is_current() {
    let code = fedge::admin::api::openapi_json();
    let file = checked_in();
    if code != file {
        let at = code
            .lines()
            .zip(file.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| code.lines().count().min(file.lines().count()));
        panic!(
            "docs/openapi.json is stale (first difference at line {}: code has {:?}, file has {:?}); regenerate it with `{REGENERATE}`",
            at + 1,
            code.lines().nth(at).unwrap_or("<end>"),
            file.lines().nth(at).unwrap_or("<end>"),
        );
    }
}

#[test]
fn the_cli_prints_the_same_document() {
    let out = std::process::Command::new(fedge_testkit::edge::fedge_bin())
        .args(["api", "openapi"])
        .output()
        .expect("run fedge api openapi");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        fedge::admin::api::openapi_json(),
        "`fedge api openapi` prints another document than the library makes"
    );
}

#[test]
fn every_route_is_described() {
    let doc: serde_json::Value =
        serde_json::from_str(&checked_in()).expect("docs/openapi.json is JSON");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/partners", &["get", "post"][..]),
        ("/api/v1/partners/{id}", &["get", "patch"]),
        ("/api/v1/partners/{id}/{verb}", &["post"]),
        ("/api/v1/partners/{id}/history", &["get"]),
        ("/api/v1/partners/{id}/test-federation", &["post"]),
        ("/api/v1/partners/{id}/tests", &["get"]),
        ("/api/v1/cvi/organisers", &["get", "post"]),
        ("/api/v1/cvi/organisers/{email}", &["delete"]),
        ("/api/v1/cvi/meetings", &["post"]),
        ("/api/v1/cvi/meetings/{id}", &["get"]),
        ("/api/v1/cvi", &["get"]),
        ("/api/v1/cvi/drain", &["post"]),
        ("/api/v1/media", &["get"]),
        ("/api/v1/media/drain", &["post"]),
        ("/api/v1/status", &["get"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/openapi.json", &["get"]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in docs/openapi.json"));
        for m in methods {
            let op = &item[*m];
            assert!(op.is_object(), "{m} {path} is not described");
            assert!(
                op["responses"]["401"].is_object(),
                "{m} {path} does not say that it needs an account (401)"
            );
        }
    }
    for scheme in ["bearer", "session"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "security scheme {scheme} missing"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["PartnerView"]["properties"]["state"]["type"],
        "string"
    );
    // Every route needs an account (the document's default), except logging in.
    assert_eq!(
        doc["security"],
        serde_json::json!([{"bearer": []}, {"session": []}])
    );
    assert_eq!(
        doc["paths"]["/api/v1/session"]["post"]["security"],
        serde_json::json!([{}]),
        "logging in must be described as needing no account"
    );
}
