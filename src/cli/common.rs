//! What several subcommands share: loading the configuration (the --config
//! file or the embedded defaults), running a function with the store open
//! on a small runtime, and reading a time given on the command line
//! (`--expires 2h` or an RFC 3339 time).
//!
//! Owns turning a configuration mistake into exit code 2. It never prints.

use std::path::PathBuf;

use anyhow::Context as _;
use fedge::config::Config;
use fedge::store::Store;

use super::failure::Failure;

/// The --config file, checked, or the embedded defaults without one.
pub fn load_config(path: &Option<PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => Config::load(p).map_err(|e| Failure::usage(e.0)),
        None => Ok(Config::default()),
    }
}

/// Opens the store on a small runtime and runs `f` with it.
pub fn with_store<F, Fut>(cfg: &Config, f: F) -> Result<(), Failure>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let store = Store::open(&cfg.store.url).await.map_err(|e| {
            if e.is_unreachable() {
                Failure::runtime(format!(
                    "the database is unreachable: {e}; no change was made"
                ))
            } else {
                Failure::runtime(e.to_string())
            }
        })?;
        let result = f(store.clone()).await;
        store.close().await;
        result
    })
}

/// The moment `--expires` names, as the store keeps times (UTC,
/// milliseconds): a duration from `now` (`2h`, `90m`, `1d 4h`, humantime's
/// forms) or an RFC 3339 time. A time not after `now` is refused, and every
/// refusal shows an example that is valid at `now`.
pub fn parse_expiry(raw: &str, now: time::OffsetDateTime) -> Result<String, Failure> {
    use time::format_description::well_known::Rfc3339;
    let text = raw.trim();
    let example = || {
        let later = (now + time::Duration::hours(2))
            .replace_nanosecond(0)
            .unwrap_or(now);
        let shown = later
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .unwrap_or_default();
        format!("--expires 2h or --expires {shown}")
    };
    let at = match humantime::parse_duration(text) {
        Ok(d) => {
            let d = time::Duration::try_from(d).map_err(|_| {
                Failure::usage(format!("--expires {raw:?} is too far ahead; e.g. {}", example()))
            })?;
            now.checked_add(d).ok_or_else(|| {
                Failure::usage(format!("--expires {raw:?} is too far ahead; e.g. {}", example()))
            })?
        }
        Err(_) => time::OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
            Failure::usage(format!(
                "--expires {raw:?} is not a duration from now and is not an RFC 3339 time ({e}); e.g. {}",
                example()
            ))
        })?,
    };
    let utc = at.to_offset(time::UtcOffset::UTC);
    if utc <= now {
        return Err(Failure::usage(format!(
            "--expires {raw} is not in the future; e.g. {}",
            example()
        )));
    }
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    utc.format(&fmt)
        .map_err(|e| Failure::usage(format!("--expires {raw}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::parse_expiry;
    use time::macros::datetime;

    const NOW: time::OffsetDateTime = datetime!(2026-12-03 12:00:00 UTC);

    fn msg(raw: &str) -> String {
        match parse_expiry(raw, NOW) {
            Ok(v) => panic!("{raw} accepted as {v}"),
            Err(f) => {
                assert_eq!(f.code, 2, "{raw}: {}", f.msg);
                f.msg
            }
        }
    }

    #[test]
    fn relative_and_absolute_forms() {
        let ok = |raw: &str| parse_expiry(raw, NOW).unwrap_or_else(|f| panic!("{raw}: {}", f.msg));
        assert_eq!(ok("2h"), "2026-12-03T14:00:00.000Z");
        assert_eq!(ok(" 90m "), "2026-12-03T13:30:00.000Z");
        assert_eq!(ok("1day 4h"), "2026-12-04T16:00:00.000Z");
        assert_eq!(ok("2026-12-03T17:00:00Z"), "2026-12-03T17:00:00.000Z");
        assert_eq!(ok("2026-12-03T17:00:00+01:00"), "2026-12-03T16:00:00.000Z");
    }

    #[test]
    fn refusals_show_an_example_valid_now() {
        for raw in [
            "2026-12-01T17:00:00Z",
            "0s",
            "tomorrowish",
            "2026-13-01T00:00:00Z",
        ] {
            let m = msg(raw);
            assert!(
                m.contains("e.g. --expires 2h or --expires 2026-12-03T14:00:00Z"),
                "{raw}: {m}"
            );
            assert_eq!(m.lines().count(), 1, "{m}");
        }
        assert!(msg("2026-12-01T17:00:00Z").contains("not in the future"));
        assert!(msg("100000000000d").contains("too far ahead"));
    }
}
