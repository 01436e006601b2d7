//! `fedge audit verify` and `fedge audit export`: the tamper-evident audit
//! chain for information-governance audits.
//!
//! Owns the report's wording, the export's file format (JSON lines, one
//! chain entry per line, verifiable on its own) and exit codes (1 when a
//! chain does not hold). It never changes the chain; the encoding and the
//! check are `store::audit`'s.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use clap::Subcommand;
use fedge::config::Config;
use fedge::store::audit::{ChainEntry, GENESIS, check};

use super::common::with_store;
use super::failure::Failure;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Walk the audit chain (or an export) and name the first entry that was
    /// edited, deleted or reordered.
    Verify {
        /// Check an export file (JSON lines) on its own instead of the database.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Also require the chain to contain this entry, recorded earlier
        /// from `fedge audit verify` (catches removal of the latest entries).
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<String>,
    },
    /// Write the chain's entries as JSON lines for an IG audit.
    Export {
        /// Only entries at or after this: a date (2026-12-01), an RFC 3339
        /// time, or a duration back from now (30d).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// The format: jsonl (one entry per line; the only one).
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

pub fn run(cmd: AuditCmd, cfg: &Config) -> Result<(), Failure> {
    match cmd {
        AuditCmd::Verify {
            file: Some(file),
            expect_head,
        } => verify_file(&file, expect_head.as_deref()),
        AuditCmd::Verify {
            file: None,
            expect_head,
        } => {
            let expect = expect_head.as_deref().map(parse_head).transpose()?;
            with_store(cfg, |store| async move {
                let verdict = store
                    .audit_verify()
                    .await
                    .map_err(|e| Failure::runtime(e.to_string()))?;
                if let Err(b) = verdict {
                    return Err(Failure::runtime(format!("audit chain broken: {b}")));
                }
                let entries = store
                    .audit_entries(None)
                    .await
                    .map_err(|e| Failure::runtime(e.to_string()))?;
                report(&entries, Some(GENESIS), expect, "audit chain")
            })
        }
        AuditCmd::Export {
            since,
            format,
            output,
        } => {
            if format != "jsonl" {
                return Err(Failure::usage(format!(
                    "--format {format:?}: the export format is jsonl"
                )));
            }
            let since = since.as_deref().map(parse_since).transpose()?;
            with_store(cfg, |store| async move {
                let entries = store
                    .audit_entries(since.as_deref())
                    .await
                    .map_err(|e| Failure::runtime(e.to_string()))?;
                write_export(&entries, output.as_ref())
            })
        }
    }
}

fn write_export(entries: &[ChainEntry], output: Option<&PathBuf>) -> Result<(), Failure> {
    let mut text = String::new();
    for e in entries {
        let line = serde_json::to_string(e).map_err(|e| Failure::runtime(e.to_string()))?;
        text.push_str(&line);
        text.push('\n');
    }
    match output {
        Some(path) => {
            std::fs::write(path, text)
                .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "exported {} audit entries to {}{}",
                entries.len(),
                path.display(),
                range(entries)
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .map_err(|e| Failure::runtime(format!("cannot write the export: {e}")))?;
        }
    }
    Ok(())
}

fn range(entries: &[ChainEntry]) -> String {
    match (entries.first(), entries.last()) {
        (Some(a), Some(b)) => format!(" (entries {} to {})", a.seq, b.seq),
        _ => String::new(),
    }
}

/// Checks an export on its own: consecutive entries, each hash its own
/// fields', each linked to the one before. An export that starts at entry
/// 1 is checked from the genesis.
fn verify_file(path: &PathBuf, expect_head: Option<&str>) -> Result<(), Failure> {
    let expect = expect_head.map(parse_head).transpose()?;
    let f = std::fs::File::open(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let mut entries = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Failure::runtime(format!("{}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: ChainEntry = serde_json::from_str(&line).map_err(|e| {
            Failure::runtime(format!(
                "{} line {}: not an audit entry ({e})",
                path.display(),
                i + 1
            ))
        })?;
        entries.push(e);
    }
    let start = entries.first().filter(|e| e.seq == 1).map(|_| GENESIS);
    report(&entries, start, expect, &path.display().to_string())
}

fn report(
    entries: &[ChainEntry],
    start: Option<&str>,
    expect: Option<(i64, String)>,
    what: &str,
) -> Result<(), Failure> {
    match check(entries, start) {
        Ok((n, head)) => {
            if let Some((seq, hash)) = &expect {
                match entries.iter().find(|e| e.seq == *seq) {
                    Some(e) if &e.hash == hash => {}
                    Some(_) => {
                        return Err(Failure::runtime(format!(
                            "{what}: entry {seq} is not the one recorded ({hash}): the chain was rewritten from there"
                        )));
                    }
                    None => {
                        return Err(Failure::runtime(format!(
                            "{what}: entry {seq} recorded earlier is missing: the latest entries were removed"
                        )));
                    }
                }
            }
            let first = entries.first().map(|e| e.seq).unwrap_or(0);
            let last = entries.last().map(|e| e.seq).unwrap_or(0);
            println!("{what}: ok, {n} entries unbroken ({first} to {last})");
            if let Some(e) = entries.first().filter(|_| start.is_none()) {
                println!(
                    "starts after hash {} (entry {} of the full chain)",
                    e.prev_hash,
                    e.seq - 1
                );
            }
            println!(
                "head {last}:{head} (keep it; `fedge audit verify --expect-head {last}:{head}` later proves nothing before it was removed or rewritten)"
            );
            Ok(())
        }
        Err(b) => Err(Failure::runtime(format!("{what} broken: {b}"))),
    }
}

fn parse_head(raw: &str) -> Result<(i64, String), Failure> {
    let bad = || {
        Failure::usage(format!(
            "--expect-head {raw:?}: give SEQ:HASH as `fedge audit verify` prints it"
        ))
    };
    let (seq, hash) = raw.split_once(':').ok_or_else(bad)?;
    let seq: i64 = seq.trim().parse().map_err(|_| bad())?;
    let hash = hash.trim().to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((seq, hash))
}

/// `--since` as the store compares times (RFC 3339 UTC text).
fn parse_since(raw: &str) -> Result<String, Failure> {
    use time::format_description::well_known::Rfc3339;
    let text = raw.trim();
    let now = time::OffsetDateTime::now_utc();
    // The store's own form (UTC, milliseconds), so that text order is time order.
    let stored = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    if let Ok(d) = humantime::parse_duration(text) {
        let d = time::Duration::try_from(d)
            .map_err(|_| Failure::usage(format!("--since {raw:?} is too far back")))?;
        let at = now
            .checked_sub(d)
            .ok_or_else(|| Failure::usage(format!("--since {raw:?} is too far back")))?;
        return at
            .format(&stored)
            .map_err(|e| Failure::usage(e.to_string()));
    }
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return at
            .to_offset(time::UtcOffset::UTC)
            .format(&stored)
            .map_err(|e| Failure::usage(e.to_string()));
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if time::Date::parse(text, &fmt).is_ok() {
        return Ok(text.to_string());
    }
    Err(Failure::usage(format!(
        "--since {raw:?}: give a date (2026-12-01), an RFC 3339 time or a duration back from now (30d)"
    )))
}
