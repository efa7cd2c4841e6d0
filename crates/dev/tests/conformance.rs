//! The OCI conformance suite (`shoal-conformance`) against a dev cluster over HTTP: every
//! category against the proxy (the push registry), and the pull side against the agent
//! (read-only: content is pushed through the proxy, pull and discovery are checked on the
//! agent, and its pushes and deletes must be refused).
//!
//! Set `SHOAL_CONFORMANCE_SKIP` (comma-separated check ids or `prefix*` patterns; `known` for
//! `shoal_conformance::profiles::SHOAL_KNOWN_BUGS`) to filter checks temporarily.
#![allow(clippy::unwrap_used)]

mod common;

use common::Cluster;
use shoal_conformance::{Category, SkipRule, SuiteConfig, profiles, run};
use shoal_dev::DevConfig;

fn requested_skips() -> Vec<SkipRule> {
    std::env::var("SHOAL_CONFORMANCE_SKIP")
        .map(|list| profiles::parse_skip_list(&list))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_passes_the_conformance_suite() {
    let c = Cluster::start(DevConfig::new("")).await;
    let config =
        SuiteConfig::new(format!("http://{}", c.addrs.proxy)).with_skips(requested_skips());
    let report = run(&config).await;
    println!("{report}");
    assert!(
        report.success(),
        "{} conformance failures against the proxy:\n{report}",
        report.failures().len()
    );
    assert!(report.passed() >= 90, "{report}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agent_passes_the_pull_side_of_the_suite() {
    let c = Cluster::start(DevConfig::new("")).await;
    let mut config =
        SuiteConfig::new(format!("http://{}", c.addrs.agent)).with_skips(requested_skips());
    config.push_url = Some(format!("http://{}", c.addrs.proxy));
    config.read_only = true;
    let report = run(&config).await;
    println!("{report}");
    assert!(
        report.success(),
        "{} conformance failures against the agent:\n{report}",
        report.failures().len()
    );
    // Pull and discovery ran in full; push and management checked the refusals.
    for category in [Category::Pull, Category::Discovery] {
        let (_, passed, ..) = report
            .by_category()
            .into_iter()
            .find(|(c, ..)| *c == category)
            .unwrap();
        assert!(passed > 10, "{category}: {report}");
    }
    for id in [
        "push/read-only-upload",
        "push/read-only-manifest",
        "management/read-only-delete",
    ] {
        assert!(report.get(id).is_some(), "{id} did not run:\n{report}");
    }
    c.stop().await;
}
