//! The Federation Partnership Agreement a partner submits, checked against
//! `fpa-schemas/fpa.schema.json` and turned into partner details.
//!
//! Owns FPA validation: every violation is reported with its JSON path,
//! schema rules first, then the rules a schema cannot express (a SIP domain
//! that parses as a host name but not as a SIP domain, say). Nothing is
//! written here; the caller adds the partner only when the list is empty.

use std::fmt;
use std::sync::OnceLock;

use serde_json::Value;

use crate::model::partner::{Contacts, PartnerDetails};

/// The schema, built into the binary so the file on disk cannot drift from it.
pub const SCHEMA: &str = include_str!("../../fpa-schemas/fpa.schema.json");

/// One problem in an FPA file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer to the offending value (`/` for the document itself).
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The built-in schema could not be used (a defect of this build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("FPA schema is not JSON: {0}")]
    NotJson(String),
    #[error("FPA schema is invalid: {0}")]
    Invalid(String),
}

fn validator() -> Result<&'static jsonschema::Validator, SchemaError> {
    static V: OnceLock<Result<jsonschema::Validator, SchemaError>> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value =
            serde_json::from_str(SCHEMA).map_err(|e| SchemaError::NotJson(e.to_string()))?;
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| SchemaError::Invalid(e.to_string()))
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn s(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(Value::as_str).map(str::to_string)
}

/// Validates FPA text and returns the partner details it describes, or
/// every violation found.
pub fn parse(text: &str) -> Result<PartnerDetails, Vec<Violation>> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        vec![Violation {
            path: "/".into(),
            message: format!(
                "not valid JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        }]
    })?;
    let v = validator().map_err(|e| {
        vec![Violation {
            path: "/".into(),
            message: e.to_string(),
        }]
    })?;
    let mut out: Vec<Violation> = v
        .iter_errors(&doc)
        .map(|e| {
            let p = e.instance_path().to_string();
            Violation {
                path: if p.is_empty() { "/".into() } else { p },
                message: e.to_string(),
            }
        })
        .collect();
    if !out.is_empty() {
        return Err(out);
    }
    let domains: Vec<String> = doc
        .pointer("/technical/sip_domains")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let data: Vec<&str> = doc
        .pointer("/usage/data")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let product = [s(&doc, "/technical/product"), s(&doc, "/technical/version")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let comment = format!(
        "FPA signed by {} ({}) on {}; data: {}; product: {}; sector: {}",
        s(&doc, "/contacts/signatory/name").unwrap_or_default(),
        s(&doc, "/contacts/signatory/role").unwrap_or_default(),
        s(&doc, "/contacts/signatory/signed_on").unwrap_or_default(),
        data.join(", "),
        product,
        s(&doc, "/organisation/sector").unwrap_or_default(),
    );
    let mut details = PartnerDetails {
        org_name: s(&doc, "/organisation/name").unwrap_or_default(),
        org_reg_number: s(&doc, "/organisation/registration_number"),
        org_address: s(&doc, "/organisation/address"),
        domains,
        edge_fqdn: s(&doc, "/technical/edge_fqdn"),
        address: None,
        usage_statement: s(&doc, "/usage/statement"),
        contacts: Contacts {
            spoc_name: s(&doc, "/contacts/spoc/name"),
            spoc_email: s(&doc, "/contacts/spoc/email"),
            spoc_phone: s(&doc, "/contacts/spoc/phone"),
            tech_name: s(&doc, "/contacts/technical/name"),
            tech_email: s(&doc, "/contacts/technical/email"),
            tech_phone: s(&doc, "/contacts/technical/phone"),
            tech_sip: s(&doc, "/contacts/technical/sip_address"),
        },
        ig_level: s(&doc, "/organisation/information_governance/level"),
        ig_expires: s(&doc, "/organisation/information_governance/expires"),
        comment: Some(comment),
        rate_limit: None,
        product_check: None,
        ca_pin: None,
    };
    details.normalise();
    // Rules the schema cannot express, mapped back to where they came from.
    for (field, message) in details.problems() {
        let path = match field.as_str() {
            "domains" => "/technical/sip_domains",
            "edge_fqdn" => "/technical/edge_fqdn",
            "tech_sip" => "/contacts/technical/sip_address",
            "ig_expires" => "/organisation/information_governance/expires",
            "spoc_email" => "/contacts/spoc/email",
            "tech_email" => "/contacts/technical/email",
            "org_name" => "/organisation/name",
            _ => "/",
        };
        out.push(Violation {
            path: path.into(),
            message,
        });
    }
    if out.is_empty() {
        Ok(details)
    } else {
        Err(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = include_str!("../../fpa-schemas/examples/fpa-valid.json");

    #[test]
    fn the_example_is_valid_and_maps_to_details() {
        let d = parse(VALID).unwrap();
        assert_eq!(d.org_name, "Northshire County Council Adult Social Care");
        assert_eq!(
            d.domains,
            ["northshire.gov.test", "care.northshire.gov.test"]
        );
        assert_eq!(d.edge_fqdn.as_deref(), Some("sip.northshire.gov.test"));
        assert_eq!(
            d.contacts.tech_sip.as_deref(),
            Some("sip:sam.patel@northshire.gov.test")
        );
        assert_eq!(d.ig_expires.as_deref(), Some("2027-06-30"));
        assert!(d.comment.unwrap().contains("signed by Jo Bloggs"));
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let mut doc: Value = serde_json::from_str(VALID).unwrap();
        doc["technical"]["sip_domains"][1] = Value::from("not a domain");
        doc["technical"]["product"] = Value::from("jabber");
        doc["organisation"]["information_governance"]["expires"] = Value::from("next year");
        doc["contacts"]["spoc"]["email"] = Value::from("helpdesk");
        doc["usage"].as_object_mut().unwrap().remove("statement");
        doc["extra"] = Value::from(1);
        let errs = parse(&doc.to_string()).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|v| v.path.as_str()).collect();
        for want in [
            "/technical/sip_domains/1",
            "/technical/product",
            "/organisation/information_governance/expires",
            "/contacts/spoc/email",
            "/usage",
            "/",
        ] {
            assert!(paths.contains(&want), "no violation at {want}: {errs:#?}");
        }
    }

    #[test]
    fn broken_json_is_one_violation_with_a_position() {
        let errs = parse("{\n  \"fpa_version\": 1,\n  oops\n}").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("line 3"), "{}", errs[0]);
    }

    #[test]
    fn the_schema_file_is_the_built_in_one() {
        let on_disk = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fpa-schemas/fpa.schema.json"
        ))
        .unwrap();
        assert_eq!(on_disk, SCHEMA);
        assert!(validator().is_ok());
    }
}
