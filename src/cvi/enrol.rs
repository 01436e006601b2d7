//! Enrolling meeting organisers for CVI: the checks a local
//! administrator's request must pass (a valid address in one of the
//! configured domains, Teams confirmed in the users' policy, an
//! organisation name and ODS code) and the bulk CSV form (exactly one
//! column, headed `EmailAddress`). Pure: text in, rows or errors out, each
//! error naming its line.

pub use crate::model::cvi::Enrolment;

/// A row that cannot be enrolled, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line of the CSV file, or position on the command line.
    pub line: usize,
    pub what: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// Why an address or an organisation cannot be enrolled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrolError {
    #[error("{given:?} is not an email address")]
    NotAnEmail { given: String },
    #[error("{email} is not in a domain enrolled here ({domains})")]
    OtherDomain { email: String, domains: String },
    #[error("--org names the organisation and may not be empty")]
    NoOrgName,
    #[error("--ods {given:?} is not an ODS code (letters and digits, up to 10)")]
    NotOds { given: String },
    #[error("--teams-enabled must confirm that Microsoft Teams is in these users' policy")]
    TeamsNotConfirmed,
}

/// Checks an address: one `@`, a plausible local part, a domain of
/// letters, digits and hyphens in dot-separated labels, and that domain
/// (or a parent of it) in `domains`.
pub fn check_email(email: &str, domains: &[String]) -> Result<String, EnrolError> {
    let e = email.trim();
    let Some((local, domain)) = e.split_once('@') else {
        return Err(EnrolError::NotAnEmail { given: e.into() });
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !local_ok || !domain_ok {
        return Err(EnrolError::NotAnEmail { given: e.into() });
    }
    let d = domain.to_ascii_lowercase();
    let allowed = domains.iter().any(|a| {
        let a = a.trim_start_matches('@').to_ascii_lowercase();
        d == a || d.ends_with(&format!(".{a}"))
    });
    if !allowed {
        return Err(EnrolError::OtherDomain {
            email: e.into(),
            domains: domains.join(", "),
        });
    }
    Ok(e.to_ascii_lowercase())
}

/// The organisation fields every request carries.
pub fn check_org(org_name: &str, ods_code: &str, teams_enabled: bool) -> Result<(), EnrolError> {
    if org_name.trim().is_empty() {
        return Err(EnrolError::NoOrgName);
    }
    let ods = ods_code.trim();
    if ods.is_empty() || ods.len() > 10 || !ods.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(EnrolError::NotOds {
            given: ods_code.into(),
        });
    }
    if !teams_enabled {
        return Err(EnrolError::TeamsNotConfirmed);
    }
    Ok(())
}

/// The addresses of a CSV file with exactly one column headed
/// `EmailAddress`, one per line (blank lines skipped, quotes allowed).
pub fn parse_csv(text: &str) -> Result<Vec<(usize, String)>, RowError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let Some((n, header)) = lines.find(|(_, l)| !l.trim().is_empty()) else {
        return Err(RowError {
            line: 1,
            what: "the file is empty; it needs a header line EmailAddress".into(),
        });
    };
    let h = unquote(header.trim());
    if h.contains(',') || h.contains(';') {
        return Err(RowError {
            line: n,
            what: format!(
                "the file must have exactly one column, headed EmailAddress (found {header:?})"
            ),
        });
    }
    if h != "EmailAddress" {
        return Err(RowError {
            line: n,
            what: format!("the column must be headed EmailAddress (found {h:?})"),
        });
    }
    let mut out = Vec::new();
    for (n, l) in lines {
        let v = unquote(l.trim());
        if v.is_empty() {
            continue;
        }
        out.push((n, v.to_string()));
    }
    Ok(out)
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
}

/// Checks every row: the good ones, and an error per bad one (a row with
/// a comma is more than one column).
pub fn check_rows(
    rows: &[(usize, String)],
    domains: &[String],
) -> (Vec<(usize, String)>, Vec<RowError>) {
    check(rows, domains, true)
}

/// Checks addresses given one by one (`--email`, the API's and the
/// console's list), numbered from 1 in the order given.
pub fn check_emails(
    emails: &[String],
    domains: &[String],
) -> (Vec<(usize, String)>, Vec<RowError>) {
    let rows: Vec<(usize, String)> = emails
        .iter()
        .enumerate()
        .map(|(i, e)| (i + 1, e.clone()))
        .collect();
    check(&rows, domains, false)
}

fn check(
    rows: &[(usize, String)],
    domains: &[String],
    csv: bool,
) -> (Vec<(usize, String)>, Vec<RowError>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (line, value) in rows {
        if csv && (value.contains(',') || value.contains(';')) {
            bad.push(RowError {
                line: *line,
                what: format!("{value:?} has more than one column"),
            });
            continue;
        }
        match check_email(value, domains) {
            Ok(e) if !seen.insert(e.clone()) => bad.push(RowError {
                line: *line,
                what: format!("{e} appears twice"),
            }),
            Ok(e) => good.push((*line, e)),
            Err(e) => bad.push(RowError {
                line: *line,
                what: e.to_string(),
            }),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["nhs.net".into()]
    }

    #[test]
    fn emails() {
        assert_eq!(
            check_email(" Jane.Doe@NHS.net ", &domains()),
            Ok("jane.doe@nhs.net".into())
        );
        assert!(
            check_email("jane@trust.nhs.net", &domains()).is_ok(),
            "a subdomain of an enrolled domain"
        );
        for bad in [
            "jane",
            "@nhs.net",
            "jane@",
            "ja ne@nhs.net",
            "jane@nhs",
            "jane@-x.nhs.net",
            ".jane@nhs.net",
            "ja..ne@nhs.net",
        ] {
            assert!(
                check_email(bad, &domains())
                    .unwrap_err()
                    .to_string()
                    .contains("is not an email address"),
                "{bad}"
            );
        }
        assert!(
            check_email("jane@gmail.com", &domains())
                .unwrap_err()
                .to_string()
                .contains("not in a domain enrolled here (nhs.net)")
        );
        assert!(check_email("jane@evilnhs.net", &domains()).is_err());
    }

    #[test]
    fn organisation_fields() {
        assert!(check_org("Leeds Trust", "RR8", true).is_ok());
        assert!(
            check_org("", "RR8", true)
                .unwrap_err()
                .to_string()
                .contains("--org")
        );
        assert!(
            check_org("Leeds", "R R8", true)
                .unwrap_err()
                .to_string()
                .contains("ODS code")
        );
        assert!(
            check_org("Leeds", "RR8", false)
                .unwrap_err()
                .to_string()
                .contains("--teams-enabled")
        );
    }

    #[test]
    fn csv_files() {
        let rows = parse_csv("\u{feff}EmailAddress\r\na@nhs.net\r\n\r\n\"b@nhs.net\"\r\n").unwrap();
        assert_eq!(
            rows,
            vec![(2, "a@nhs.net".to_string()), (4, "b@nhs.net".to_string())]
        );
        assert!(parse_csv("").unwrap_err().what.contains("empty"));
        let e = parse_csv("Email,Name\na@nhs.net,A\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.what.contains("exactly one column"));
        assert!(
            parse_csv("Email\na@nhs.net\n")
                .unwrap_err()
                .what
                .contains("headed EmailAddress")
        );
        let rows = parse_csv(
            "EmailAddress\na@nhs.net\nnot-an-address\nc@gmail.com\na@nhs.net\nd@nhs.net,x\n",
        )
        .unwrap();
        let (good, bad) = check_rows(&rows, &domains());
        assert_eq!(good, vec![(2, "a@nhs.net".to_string())]);
        let lines: Vec<(usize, bool)> = bad.iter().map(|e| (e.line, !e.what.is_empty())).collect();
        assert_eq!(lines, vec![(3, true), (4, true), (5, true), (6, true)]);
        assert!(
            bad[2].what.contains("appears twice") && bad[3].what.contains("more than one column")
        );
        assert_eq!(
            bad[0].to_string(),
            "line 3: \"not-an-address\" is not an email address"
        );
    }
}
