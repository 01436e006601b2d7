//! The checks a request passed on its way to the policy's verdict, for
//! `fedge explain` (which runs the very `decide` the proxy runs).
//!
//! Owns the recorder. When it is off ([`Trace::off`], what the proxy
//! passes) it holds no vector, pushes nothing and never calls the closure
//! that would format a detail: the hot path pays one branch per check and
//! no allocation. Never decides anything; the rules record into it.

/// One check a request passed, with what it looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// A short stable name (`certificate`, `partner`, `content`, ...).
    pub check: &'static str,
    /// What was seen, for a person.
    pub detail: String,
}

/// A recorder of passed checks; a no-op when off.
#[derive(Debug, Default)]
pub struct Trace {
    checks: Option<Vec<Check>>,
}

impl Trace {
    /// Records nothing, allocates nothing.
    pub const fn off() -> Trace {
        Trace { checks: None }
    }

    /// Records every check passed.
    pub fn on() -> Trace {
        Trace {
            checks: Some(Vec::new()),
        }
    }

    /// True when checks are recorded.
    pub fn is_on(&self) -> bool {
        self.checks.is_some()
    }

    /// Records that `check` passed; `detail` runs only when recording.
    #[inline]
    pub fn pass(&mut self, check: &'static str, detail: impl FnOnce() -> String) {
        if let Some(v) = &mut self.checks {
            v.push(Check {
                check,
                detail: detail(),
            });
        }
    }

    /// The checks recorded so far (none when off).
    pub fn checks(&self) -> &[Check] {
        self.checks.as_deref().unwrap_or(&[])
    }

    /// The checks recorded, in order.
    pub fn into_checks(self) -> Vec<Check> {
        self.checks.unwrap_or_default()
    }

    /// The capacity held (0 when off: nothing was ever allocated).
    pub fn capacity(&self) -> usize {
        self.checks.as_ref().map_or(0, Vec::capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_records_nothing_and_never_formats() {
        let mut t = Trace::off();
        t.pass("x", || panic!("a detail formatted while tracing is off"));
        assert!(t.checks().is_empty());
        assert_eq!(t.capacity(), 0);
        let mut t = Trace::on();
        t.pass("x", || "seen".into());
        assert_eq!(
            t.into_checks(),
            [Check {
                check: "x",
                detail: "seen".into()
            }]
        );
    }
}
