//! Fuzz target: the CVI enrolment CSV (one column, EmailAddress). Any
//! text gets rows or one error with its line, never a panic; the rows
//! accepted are addresses that pass the check again, unchanged, once each.

#![no_main]

use fedge::cvi::enrol::{check_email, check_rows, parse_csv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1);
    let rows = match parse_csv(text) {
        Ok(rows) => rows,
        Err(e) => {
            assert!(
                e.line >= 1 && e.line <= lines,
                "error line {} of {lines}",
                e.line
            );
            return;
        }
    };
    let domains = vec!["nhs.net".to_string(), "care.test".to_string()];
    let (good, bad) = check_rows(&rows, &domains);
    assert_eq!(good.len() + bad.len(), rows.len());
    let mut seen = std::collections::HashSet::new();
    for (line, email) in &good {
        assert!(*line >= 1 && *line <= lines);
        assert_eq!(check_email(email, &domains).as_deref(), Ok(email.as_str()));
        assert!(seen.insert(email.clone()), "{email} accepted twice");
    }
});
