//! Reading a configuration file: TOML parsing with line and column in
//! errors, and relative paths taken from the file's directory.
//!
//! Owns turning text into a [`Config`]. It never decides whether values are
//! sensible (validate.rs does; `load` calls it).

use std::path::Path;

use super::edge::Config;
use super::error::ConfigError;

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        let mut cfg = Config::from_toml(&text)
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))?;
        Ok(cfg)
    }

    /// Parses TOML text (no path resolution, no checks).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let (l, c) = line_col(text, span.start);
                    ConfigError(format!("line {l}, column {c}: {msg}"))
                }
                None => ConfigError(msg),
            }
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.federation.cert,
            &mut self.federation.key,
            &mut self.federation.trust,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for p in &mut self.federation.crls {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(rest) = self.store.url.strip_prefix("sqlite://") {
            let p = Path::new(rest);
            if p.is_relative() && !rest.starts_with(':') && !rest.is_empty() {
                self.store.url = format!("sqlite://{}", base.join(p).display());
            }
        }
    }
}
