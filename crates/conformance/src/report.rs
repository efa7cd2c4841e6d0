//! Check outcomes and the report of a run.

use std::fmt;
use std::time::Duration;

use crate::Category;

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The registry behaved as the spec says.
    Pass,
    /// It did not: what was expected and what came back.
    Fail(String),
    /// Not run (filtered out by the configuration, or not applicable): why.
    Skip(String),
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Stable id, `<category>/<slug>` (what [`crate::SuiteConfig::skip`] matches).
    pub id: String,
    /// The spec workflow category.
    pub category: Category,
    /// What the check verifies, in one line.
    pub title: String,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// How long the check took.
    pub elapsed: Duration,
}

/// The results of a run, in the order the checks ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every check, skipped ones included.
    pub results: Vec<CheckResult>,
}

impl Report {
    /// How many checks passed.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Pass))
    }

    /// How many checks were skipped.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skip(_)))
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&CheckResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
            .collect()
    }

    /// Whether no check failed.
    pub fn success(&self) -> bool {
        self.failures().is_empty()
    }

    /// The result of check `id`, if it was recorded.
    pub fn get(&self, id: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.id == id)
    }

    /// `(category, passed, failed, skipped)` for every category that has results.
    pub fn by_category(&self) -> Vec<(Category, usize, usize, usize)> {
        Category::ALL
            .iter()
            .filter_map(|&c| {
                let rs: Vec<_> = self.results.iter().filter(|r| r.category == c).collect();
                if rs.is_empty() {
                    return None;
                }
                let n = |f: fn(&Outcome) -> bool| rs.iter().filter(|r| f(&r.outcome)).count();
                Some((
                    c,
                    n(|o| matches!(o, Outcome::Pass)),
                    n(|o| matches!(o, Outcome::Fail(_))),
                    n(|o| matches!(o, Outcome::Skip(_))),
                ))
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }
}

impl fmt::Display for Report {
    /// A table (`RESULT  ID  TITLE`, with the failure or skip reason indented below), then a
    /// per-category summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id_width = self.results.iter().map(|r| r.id.len()).max().unwrap_or(2);
        writeln!(f, "{:<6}  {:<id_width$}  CHECK", "RESULT", "ID")?;
        for r in &self.results {
            let (label, detail) = match &r.outcome {
                Outcome::Pass => ("pass", None),
                Outcome::Fail(m) => ("FAIL", Some(m)),
                Outcome::Skip(m) => ("skip", Some(m)),
            };
            writeln!(f, "{label:<6}  {:<id_width$}  {}", r.id, r.title)?;
            if let Some(detail) = detail {
                for line in detail.lines() {
                    writeln!(f, "{:<6}  {:<id_width$}    {line}", "", "")?;
                }
            }
        }
        writeln!(f)?;
        for (c, p, fl, s) in self.by_category() {
            writeln!(
                f,
                "{:<12} {p:>3} passed, {fl:>3} failed, {s:>3} skipped",
                c.name()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, outcome: Outcome) -> CheckResult {
        CheckResult {
            id: id.to_owned(),
            category: Category::Pull,
            title: "t".into(),
            outcome,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn counts_and_table() {
        let report = Report {
            results: vec![
                result("pull/a", Outcome::Pass),
                result("pull/b", Outcome::Fail("expected 404\ngot 400".into())),
                result("pull/c", Outcome::Skip("why".into())),
            ],
        };
        assert_eq!(report.passed(), 1);
        assert_eq!(report.skipped(), 1);
        assert_eq!(report.failures().len(), 1);
        assert!(!report.success());
        let table = report.to_string();
        assert!(table.contains("FAIL    pull/b  t"), "{table}");
        assert!(table.contains("got 400"), "{table}");
        assert!(
            table.contains("pull           1 passed,   1 failed,   1 skipped"),
            "{table}"
        );
    }
}
