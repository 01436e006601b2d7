//! Logging set-up for `fedge serve`: the tracing subscriber (text or
//! JSON), the field formatter that escapes control characters in every
//! logged value, and the budget for repetitive warnings.
//!
//! Owns how a log line is written. It never writes a peer-controlled byte
//! as it came: CR, LF, ESC and every other control character in a field
//! value (the message included) becomes a visible escape, so one event is
//! one line and a peer cannot forge lines or terminal sequences. The JSON
//! format escapes them already.

use std::fmt;

use fedge::config::Config;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// Starts logging as `cfg` says and sets the warning budget.
pub fn init(cfg: &Config) {
    fedge::sip::log_limit::global().configure(cfg.log.repeat_limit, cfg.log.repeat_window);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.fmt_fields(EscapingFields::default()).init();
    }
}

/// Summarises suppressed warnings at the end of each window, so a flood
/// that stops is reported too. Runs until the runtime stops.
pub fn spawn_summaries() {
    let window = fedge::sip::log_limit::global().window();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            fedge::sip::log_limit::flush();
        }
    });
}

/// The default field formatter, with control characters escaped.
#[derive(Debug, Default)]
pub struct EscapingFields(DefaultFields);

impl<'w> FormatFields<'w> for EscapingFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut plain = String::new();
        self.0.format_fields(Writer::new(&mut plain), fields)?;
        write_escaped(&mut writer, &plain)
    }
}

/// True for a character a log line must not carry raw: control
/// characters, the Unicode line and paragraph separators (which some
/// viewers break lines on) and the bidirectional formatting characters
/// (which reorder what the reader sees).
fn unsafe_in_log(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Writes `s` with every control character (and the Unicode separators
/// and bidi controls, see `unsafe_in_log`) replaced by a visible escape
/// (`\n`, `\r`, `\t`, `\e`, or `\u{..}`).
pub fn write_escaped(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(unsafe_in_log) {
        w.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or('\0');
        match c {
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            '\u{1b}' => w.write_str("\\e")?,
            c => write!(w, "\\u{{{:x}}}", c as u32)?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    w.write_str(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        let mut out = String::new();
        write_escaped(&mut out, "INVITE a\nFAKE\r\x1b[31m\u{85}\u{7f}é ok").unwrap();
        assert_eq!(out, "INVITE a\\nFAKE\\r\\e[31m\\u{85}\\u{7f}é ok");
    }

    #[test]
    fn unicode_line_breaks_and_bidi_controls_are_escaped_too() {
        let mut out = String::new();
        write_escaped(&mut out, "a\u{2028}b\u{2029}c\u{202e}d\u{2066}e").unwrap();
        assert_eq!(out, "a\\u{2028}b\\u{2029}c\\u{202e}d\\u{2066}e");
    }
}
