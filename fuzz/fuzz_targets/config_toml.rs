//! Fuzz target: the TOML configuration file. Any text is parsed and, when
//! it parses, checked; either way the answer is a config or one error line
//! (the CLI prints it and exits 2), never a panic.

#![no_main]

use fedge::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(cfg) => {
            if let Err(e) = cfg.validate() {
                assert!(!e.0.contains('\n'), "a multi-line config error: {}", e.0);
            }
        }
        Err(e) => assert!(!e.0.contains('\n'), "a multi-line config error: {}", e.0),
    }
});
