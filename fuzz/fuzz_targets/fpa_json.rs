//! Fuzz target: a Federation Partnership Agreement as a partner submits
//! it. Any text gets violations or partner details, never a panic; details
//! returned pass the model's own checks.

#![no_main]

use fedge::federation::fpa;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match fpa::parse(text) {
        Ok(details) => assert!(
            details.problems().is_empty(),
            "accepted details have problems: {:?}",
            details.problems()
        ),
        Err(violations) => {
            assert!(!violations.is_empty());
            for v in &violations {
                assert!(v.path.starts_with('/'), "path {:?}", v.path);
                let _ = v.to_string();
            }
        }
    }
});
