//! Counters and gauges with labels, exposed in the Prometheus text format
//! at the admin listener's `/metrics`.
//!
//! Owns naming and exposition only; the rules that count live elsewhere.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

type Key = (&'static str, String);

/// A small metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, u64>>,
    gauges: Mutex<BTreeMap<Key, f64>>,
    help: Mutex<BTreeMap<&'static str, (&'static str, &'static str)>>,
}

fn labels(l: &[(&str, &str)]) -> String {
    let mut out = String::new();
    render_labels(l, &mut out);
    out
}

/// Writes `{k="v",...}` (values escaped) into `out`, which it clears
/// first; nothing for no labels. One buffer, no allocation per label: it
/// runs once per request on the proxy's path.
fn render_labels(l: &[(&str, &str)], out: &mut String) {
    out.clear();
    if l.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// The label pairs `labels` rendered (`{k="v",...}`, values escaped).
fn parse_labels(rendered: &str) -> Vec<(String, String)> {
    let inner = rendered
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or("");
    let mut out = Vec::new();
    let mut chars = inner.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_string(), value));
        if chars.next().is_none() {
            break;
        }
    }
    out
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn describe(&self, name: &'static str, kind: &'static str, help: &'static str) {
        self.help
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_insert((kind, help));
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, help: &'static str, l: &[(&str, &str)]) {
        thread_local! {
            static RENDERED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        RENDERED.with_borrow_mut(|rendered| {
            render_labels(l, rendered);
            let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            // The series exists (every request after the first): found by
            // its rendered labels, nothing allocated.
            let key = (name, std::mem::take(rendered));
            if let Some(n) = counters.get_mut(&key) {
                *n += 1;
                *rendered = key.1;
                return;
            }
            drop(counters);
            self.describe(name, "counter", help);
            *self
                .counters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key)
                .or_insert(0) += 1;
        });
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, l: &[(&str, &str)], v: f64) {
        self.describe(name, "gauge", help);
        self.gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((name, labels(l)), v);
    }

    /// Removes every series of a gauge (before setting the current ones).
    pub fn clear_gauge(&self, name: &'static str) {
        self.gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(n, _), _| *n != name);
    }

    pub fn counter(&self, name: &'static str, l: &[(&str, &str)]) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(name, labels(l)))
            .copied()
            .unwrap_or(0)
    }

    /// Every series of counter `name`: its labels (as given to [`inc`]) and
    /// value.
    ///
    /// [`inc`]: Metrics::inc
    pub fn counter_series(&self, name: &str) -> Vec<(Vec<(String, String)>, u64)> {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|((_, l), v)| (parse_labels(l), *v))
            .collect()
    }

    /// The Prometheus text exposition of everything, plus `extra` lines.
    pub fn render(&self, extra: &[(&'static str, &'static str, f64)]) -> String {
        let help = self.help.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        let mut last = "";
        for ((name, l), v) in self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if *name != last {
                let (kind, h) = help.get(name).copied().unwrap_or(("counter", ""));
                let _ = writeln!(out, "# HELP {name} {h}\n# TYPE {name} {kind}");
                last = name;
            }
            let _ = writeln!(out, "{name}{l} {v}");
        }
        for ((name, l), v) in self.gauges.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if *name != last {
                let (kind, h) = help.get(name).copied().unwrap_or(("gauge", ""));
                let _ = writeln!(out, "# HELP {name} {h}\n# TYPE {name} {kind}");
                last = name;
            }
            let _ = writeln!(out, "{name}{l} {v}");
        }
        for (name, h, v) in extra {
            // Cumulative values are counters, by the Prometheus naming rule.
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {h}\n# TYPE {name} {kind}\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod series_tests {
    use super::*;

    #[test]
    fn counter_series_gives_back_the_labels() {
        let m = Metrics::new();
        m.inc("c", "h", &[("rule", "rate"), ("partner", "a\"b,c")]);
        m.inc("c", "h", &[("rule", "rate"), ("partner", "a\"b,c")]);
        m.inc("c", "h", &[]);
        m.inc("other", "h", &[("partner", "x")]);
        let mut s = m.counter_series("c");
        s.sort();
        assert_eq!(
            s,
            vec![
                (vec![], 1),
                (
                    vec![
                        ("rule".to_string(), "rate".to_string()),
                        ("partner".to_string(), "a\"b,c".to_string())
                    ],
                    2
                ),
            ]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = Metrics::new();
        m.inc(
            "fedge_rejections_total",
            "Requests refused",
            &[("rule", "rate"), ("partner", "a\"b")],
        );
        m.inc(
            "fedge_rejections_total",
            "Requests refused",
            &[("rule", "rate"), ("partner", "a\"b")],
        );
        m.set(
            "fedge_partner_ig_days_left",
            "Days",
            &[("partner", "x")],
            12.0,
        );
        let t = m.render(&[("fedge_up", "Up", 1.0)]);
        assert!(t.contains("# TYPE fedge_rejections_total counter\nfedge_rejections_total{rule=\"rate\",partner=\"a\\\"b\"} 2\n"), "{t}");
        assert!(t.contains("fedge_partner_ig_days_left{partner=\"x\"} 12\n"));
        assert!(t.contains("fedge_up 1\n"));
        assert_eq!(
            m.counter(
                "fedge_rejections_total",
                &[("rule", "rate"), ("partner", "a\"b")]
            ),
            2
        );
    }
}
