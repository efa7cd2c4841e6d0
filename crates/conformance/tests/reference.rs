//! The suite against the reference implementation: Debian's `docker-registry` (CNCF
//! distribution 2.8, [`ReferenceRegistry`]: a free port, a temporary filesystem root, deletes
//! enabled). Everything the suite checks must pass there, except exactly what
//! [`profiles::DISTRIBUTION_2_8`] lists (v1.1 features 2.8 predates, and its known bugs):
//! any other failure means the suite is wrong. Set `SHOAL_SKIP_REGISTRY=1` to skip where the
//! registry cannot be installed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use shoal_conformance::{Outcome, SkipRule, SuiteConfig, profiles, run};
use shoal_testkit::ReferenceRegistry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_agrees_with_the_reference_registry() {
    let Some(registry) = ReferenceRegistry::start().await else {
        return;
    };
    let base = registry.base_url();

    // Everything, nothing skipped: the failures must be exactly what the profile lists.
    let report = run(&SuiteConfig::new(&base)).await;
    println!("{report}");
    let rules = profiles::rules(profiles::DISTRIBUTION_2_8);
    let failed: BTreeSet<&str> = report.failures().iter().map(|r| r.id.as_str()).collect();
    let unexpected: Vec<&str> = failed
        .iter()
        .copied()
        .filter(|id| !rules.iter().any(|r| r.matches(id)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the suite disagrees with the reference registry on {unexpected:?} (a suite bug, or a \
         2.8 limitation to document in profiles::DISTRIBUTION_2_8)"
    );
    let stale: Vec<&SkipRule> = rules
        .iter()
        .filter(|r| !failed.iter().any(|id| r.matches(id)))
        .collect();
    assert!(
        stale.is_empty(),
        "distribution 2.8 now passes what these rules skip: {stale:?}"
    );

    // With the profile, a clean run (only the listed checks skipped).
    let config = SuiteConfig::new(&base).with_skips(rules);
    let report = run(&config).await;
    assert!(report.success(), "{report}");
    assert_eq!(report.skipped(), failed.len(), "{report}");
    assert!(report.passed() >= 70, "{report}");
    for r in &report.results {
        if let Outcome::Skip(reason) = &r.outcome {
            assert!(!reason.is_empty(), "{}", r.id);
        }
    }
}

#[tokio::test]
async fn an_unreachable_registry_fails_every_category_without_panicking() {
    // A port nothing listens on (bound, then released).
    let port = shoal_testkit::free_port();
    let report = run(&SuiteConfig::new(format!("http://127.0.0.1:{port}"))).await;
    assert_eq!(report.passed(), 0, "{report}");
    assert!(!report.failures().is_empty());
    let report = run(&SuiteConfig::new("not a url")).await;
    assert_eq!(report.failures().len(), 1, "{report}");
}
