//! View models of the console's partner pages: plain strings and flags
//! the templates print, built from the store's records.
//!
//! Owns the wording of warnings and badges (text, never colour alone).
//! It never reads the store or the running edge itself.

use crate::admin::service::{ChainView, PartnerView, TrailView};
use crate::model::partner::{PartnerState, Verb};
use crate::store::StoredPartnerCert;

/// Days before an expiry date when the console starts warning.
pub const WARN_DAYS: i64 = 30;

/// One row of the partners list.
pub struct PartnerRow {
    pub id: String,
    pub org: String,
    pub domains: String,
    pub state: String,
    pub federated: String,
    pub ig_expires: String,
    /// The stored edge certificate's not-after date (empty: none stored).
    pub cert_expires: String,
    pub warnings: Vec<String>,
}

impl PartnerRow {
    pub fn of(p: &PartnerView, cert: Option<&StoredPartnerCert>, today: &str) -> PartnerRow {
        PartnerRow {
            id: p.id.clone(),
            org: p.org_name.clone(),
            domains: p.domains.join(", "),
            state: p.state.clone(),
            federated: p.federated_at.clone().unwrap_or_default(),
            ig_expires: p.ig_expires.clone().unwrap_or_default(),
            cert_expires: cert
                .map(|c| c.cert.not_after.get(..10).unwrap_or_default().to_string())
                .unwrap_or_default(),
            warnings: warnings(p, cert, today),
        }
    }
}

/// A partner's stored edge certificate as its page shows it.
pub struct CertView {
    pub subject: String,
    /// The subjectAltName DNS names, comma-separated.
    pub names: String,
    pub not_after: String,
    pub submitted: String,
    /// The expiry warning, in words (empty: none).
    pub warning: String,
}

impl CertView {
    pub fn of(p: &PartnerView, c: &StoredPartnerCert, today: &str) -> CertView {
        let revoked = p.state == PartnerState::Revoked.as_str();
        CertView {
            subject: c.cert.subject.clone(),
            names: c.cert.names.split(',').collect::<Vec<_>>().join(", "),
            not_after: when(&c.cert.not_after),
            submitted: format!("{} by {}", when(&c.submitted_at), c.submitted_by),
            warning: if revoked {
                None
            } else {
                cert_warning(&c.cert.not_after, today)
            }
            .unwrap_or_default(),
        }
    }
}

/// The warning about an edge certificate's expiry (RFC 3339 `not_after`),
/// if it expired or expires within [`WARN_DAYS`].
pub fn cert_warning(not_after: &str, today: &str) -> Option<String> {
    let date = not_after.get(..10).unwrap_or(not_after);
    match days_until(not_after, today) {
        Some(d) if d < 0 => Some(format!("Edge certificate expired on {date}")),
        Some(0) => Some(format!("Edge certificate expires today ({date})")),
        Some(d) if d <= WARN_DAYS => Some(format!("Edge certificate expires in {d} days ({date})")),
        Some(_) => None,
        None => Some(format!("Edge certificate expiry unreadable: {not_after}")),
    }
}

/// Days from `today` to `date` (both `YYYY-MM-DD`), if both parse.
pub fn days_until(date: &str, today: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(date.get(..10)?, &fmt).ok()?;
    let t = time::Date::parse(today.get(..10)?, &fmt).ok()?;
    Some((d - t).whole_days())
}

/// The expiry warnings of a partner (IG certification, then its stored
/// edge certificate), in words.
pub fn warnings(p: &PartnerView, cert: Option<&StoredPartnerCert>, today: &str) -> Vec<String> {
    let mut w = Vec::new();
    if p.state == PartnerState::Revoked.as_str() {
        return w;
    }
    match p.ig_expires.as_deref() {
        None => w.push("IG certification: no expiry date recorded".to_string()),
        Some(exp) => match days_until(exp, today) {
            Some(d) if d < 0 => w.push(format!("IG certification expired on {exp}")),
            Some(d) if d <= WARN_DAYS => {
                w.push(format!("IG certification expires in {d} days ({exp})"))
            }
            _ => {}
        },
    }
    if let Some(c) = cert.and_then(|c| cert_warning(&c.cert.not_after, today)) {
        w.push(c);
    }
    w
}

/// A lifecycle button: the verb, where it leads, whether a reason is
/// required.
pub struct VerbButton {
    pub verb: String,
    pub to: String,
    pub needs_reason: bool,
}

pub fn verb_buttons(p: &PartnerView) -> Vec<VerbButton> {
    let Ok(state) = p.state.parse::<PartnerState>() else {
        return Vec::new();
    };
    state
        .next()
        .into_iter()
        .map(|(v, to)| VerbButton {
            verb: v.as_str().to_string(),
            to: to.as_str().to_string(),
            // Enabling is asked for a reason too: it goes on the record.
            needs_reason: v.needs_reason() || v == Verb::Enable,
        })
        .collect()
}

/// One line of a partner's history, from the audit chain.
pub struct HistoryRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub change: String,
    pub reason: String,
}

impl HistoryRow {
    pub fn of(e: &ChainView) -> HistoryRow {
        let d: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
        let from = d["from_state"].as_str().unwrap_or("");
        let to = d["to_state"].as_str().unwrap_or("");
        let change = match (from, to) {
            ("", "") => String::new(),
            ("", t) => format!("-> {t}"),
            (f, t) if f == t => t.to_string(),
            (f, t) => format!("{f} -> {t}"),
        };
        let mut reason = d["reason"].as_str().unwrap_or("").to_string();
        if let Some(from) = d["detail"]["im_test_from"].as_str() {
            reason = format!("IM test passed from {from}");
        }
        HistoryRow {
            seq: e.seq,
            at: when(&e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            change,
            reason,
        }
    }
}

/// One recorded IM test.
pub struct ImTestRow {
    pub at: String,
    pub actor: String,
    pub from: String,
}

impl ImTestRow {
    pub fn of(e: &TrailView) -> ImTestRow {
        let d: serde_json::Value = e
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        ImTestRow {
            at: when(&e.at),
            actor: e.actor.clone(),
            from: d["im_test_from"].as_str().unwrap_or("").to_string(),
        }
    }
}

/// An RFC 3339 UTC time as people read it: `2026-12-03 15:28:17 UTC`.
pub fn when(t: &str) -> String {
    match (t.get(..10), t.get(11..19)) {
        (Some(d), Some(h)) if t.ends_with('Z') => format!("{d} {h} UTC"),
        _ => t.to_string(),
    }
}

/// A partner's verdict counts since the edge started, from the metrics.
pub struct CountRow {
    pub what: String,
    pub rule: String,
    pub direction: String,
    pub count: String,
}

/// Reads the counters labelled `partner="<name>"` out of the Prometheus
/// text (refusals by rule and direction, IM tests by result).
pub fn partner_counts(prom: &str, name: &str) -> Vec<CountRow> {
    let want = format!(
        "partner=\"{}\"",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let mut rows = Vec::new();
    for line in prom.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((metric, labels)) = series.split_once('{') else {
            continue;
        };
        let what = match metric {
            "fedge_rejections_total" => "refused",
            "fedge_im_tests_total" => "IM test",
            _ => continue,
        };
        let labels = labels.trim_end_matches('}');
        if !labels.split(',').any(|l| l == want) {
            continue;
        }
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let rule = if what == "IM test" {
            label("result")
        } else {
            label("rule")
        };
        rows.push(CountRow {
            what: what.to_string(),
            rule,
            direction: label("direction"),
            count: value.to_string(),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_one_partner_only() {
        let prom = "fedge_rejections_total{rule=\"rate\",partner=\"a.test\",direction=\"inbound\"} 3\n\
                    fedge_rejections_total{rule=\"rate\",partner=\"b.test\",direction=\"inbound\"} 9\n\
                    fedge_im_tests_total{partner=\"a.test\",result=\"passed\"} 1\n";
        let rows = partner_counts(prom, "a.test");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].rule, "rate");
        assert_eq!(rows[0].count, "3");
        assert_eq!(rows[1].rule, "passed");
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(when("2026-12-03T15:28:17.540Z"), "2026-12-03 15:28:17 UTC");
        assert_eq!(when("soon"), "soon");
    }

    #[test]
    fn certificate_expiry_in_words() {
        let today = "2026-12-03";
        assert_eq!(cert_warning("2027-06-01T00:00:00Z", today), None);
        assert_eq!(
            cert_warning("2026-12-13T10:00:00Z", today).as_deref(),
            Some("Edge certificate expires in 10 days (2026-12-13)")
        );
        assert_eq!(
            cert_warning("2026-12-02T23:59:59Z", today).as_deref(),
            Some("Edge certificate expired on 2026-12-02")
        );
        assert!(cert_warning("junk", today).is_some_and(|w| w.contains("unreadable")));
    }

    #[test]
    fn expiry_in_days() {
        assert_eq!(days_until("2026-01-31", "2026-01-01"), Some(30));
        assert_eq!(days_until("2025-12-31", "2026-01-01"), Some(-1));
        assert_eq!(days_until("junk", "2026-01-01"), None);
    }
}
