//! An OCI Distribution Spec v1.1 conformance suite, run over real HTTP against any registry:
//! [`run`] checks every endpoint, status code, header and error code the spec defines for
//! the **pull**, **push**, **content discovery** (tags list, referrers) and **content
//! management** (deletes) workflows, plus **bad input** (malformed manifests, unknown media
//! types, oversized bodies, invalid names, tags and digests, path traversal: each must get a
//! spec error and the registry must keep serving).
//!
//! The checks follow the official suite (opencontainers/distribution-spec `conformance/`,
//! both the ginkgo workflows and the newer API/data runner) and the spec text; every check has
//! a stable id (`<category>/<slug>`, listed by `shoal-conformance --list`) that
//! [`SuiteConfig::skip`] rules match. [`profiles`] holds the rules for registries known not to
//! support parts of v1.1 (distribution 2.8) and the checks that currently fail against Shoal.
//!
//! This crate is **not** a registry, a client library or a load test: it pushes a few small
//! artifacts under its own namespace (random per run, so reruns never collide), checks what
//! comes back and deletes what it can. It needs no credentials and does not follow redirects.

mod checks;
mod data;
mod http;
pub mod profiles;
mod report;

use std::fmt;
use std::str::FromStr;

pub use checks::CATALOG;
pub use report::{CheckResult, Outcome, Report};

/// A spec workflow category (plus bad input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Pulling manifests and blobs (`GET`/`HEAD`, ranges, 404s).
    Pull,
    /// Pushing blobs (monolithic, chunked, streamed, mounts) and manifests.
    Push,
    /// Tags list (with `n`/`last`/`Link`) and the referrers API.
    Discovery,
    /// Deleting tags, manifests and blobs.
    Management,
    /// Malformed or hostile requests: spec errors, and the registry keeps serving.
    BadInput,
}

impl Category {
    /// Every category, in run order.
    pub const ALL: [Self; 5] = [
        Self::Pull,
        Self::Push,
        Self::Discovery,
        Self::Management,
        Self::BadInput,
    ];

    /// The id prefix: `pull`, `push`, `discovery`, `management`, `bad-input`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Discovery => "discovery",
            Self::Management => "management",
            Self::BadInput => "bad-input",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Category {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!("unknown category {s:?} (pull, push, discovery, management, bad-input)")
            })
    }
}

/// Checks not to run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipRule {
    /// A check id (`pull/blob-range`), an id prefix ending in `*` (`discovery/referrers-*`),
    /// or a category (`discovery/*`).
    pub pattern: String,
    /// Shown in the report.
    pub reason: String,
}

impl SkipRule {
    /// A rule skipping `pattern` because of `reason`.
    pub fn new(pattern: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            reason: reason.into(),
        }
    }

    /// Whether this rule covers check `id`.
    pub fn matches(&self, id: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => self.pattern == id,
        }
    }
}

/// What to run, against what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteConfig {
    /// The registry under test: `http://host:port`.
    pub base_url: String,
    /// Where setup content is pushed, when the registry under test cannot take pushes itself
    /// (a read-only mirror fed by another registry). `None`: `base_url`.
    pub push_url: Option<String>,
    /// The repository namespace everything goes under (`<namespace>/pull`, …).
    pub namespace: String,
    /// Which categories to run.
    pub categories: Vec<Category>,
    /// Checks not to run.
    pub skip: Vec<SkipRule>,
    /// The registry under test refuses every push and delete: push and management checks
    /// then verify the refusals (405 `UNSUPPORTED`) instead, and pull/discovery content is
    /// pushed to [`Self::push_url`].
    pub read_only: bool,
}

impl SuiteConfig {
    /// Every category against `base_url`, under `conformance/test-<random>`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            push_url: None,
            namespace: format!("conformance/test-{:08x}", data::random_u64() as u32),
            categories: Category::ALL.to_vec(),
            skip: Vec::new(),
            read_only: false,
        }
    }

    /// Only `categories`.
    pub fn with_categories(mut self, categories: &[Category]) -> Self {
        self.categories = categories.to_vec();
        self
    }

    /// Also skip what `rules` cover.
    pub fn with_skips(mut self, rules: impl IntoIterator<Item = SkipRule>) -> Self {
        self.skip.extend(rules);
        self
    }

    /// The rule that skips check `id`, if any.
    pub fn skip_rule(&self, id: &str) -> Option<&SkipRule> {
        self.skip.iter().find(|r| r.matches(id))
    }
}

/// Runs the configured checks and reports every outcome. Never panics on registry
/// misbehaviour: a registry that cannot be reached fails every check.
pub async fn run(config: &SuiteConfig) -> Report {
    checks::run(config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_rules_match_ids_prefixes_and_categories() {
        let config = SuiteConfig::new("http://127.0.0.1:1").with_skips([
            SkipRule::new("pull/blob-range", "a"),
            SkipRule::new("discovery/referrers-*", "b"),
            SkipRule::new("management/*", "c"),
        ]);
        assert_eq!(
            config
                .skip_rule("pull/blob-range")
                .map(|r| r.reason.as_str()),
            Some("a")
        );
        assert!(config.skip_rule("pull/blob-range-suffix").is_none());
        assert_eq!(
            config
                .skip_rule("discovery/referrers-list")
                .map(|r| r.reason.as_str()),
            Some("b")
        );
        assert_eq!(
            config
                .skip_rule("management/delete-blob")
                .map(|r| r.reason.as_str()),
            Some("c")
        );
        assert!(config.namespace.starts_with("conformance/test-"));
        assert_ne!(config.namespace, SuiteConfig::new("x").namespace);
    }

    #[test]
    fn categories_parse_from_their_names() {
        for c in Category::ALL {
            assert_eq!(c.name().parse::<Category>(), Ok(c));
        }
        assert!("nope".parse::<Category>().is_err());
    }

    #[test]
    fn every_catalogued_check_has_a_unique_id_in_its_category() {
        let mut seen = std::collections::HashSet::new();
        for (id, _) in CATALOG {
            assert!(seen.insert(*id), "duplicate id {id}");
            let (category, slug) = id.split_once('/').unwrap();
            assert!(category.parse::<Category>().is_ok(), "{id}");
            assert!(!slug.is_empty() && !slug.contains('/'), "{id}");
        }
    }
}
