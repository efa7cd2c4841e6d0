//! The suite against the reference implementation: Debian's `docker-registry` (CNCF
//! distribution 2.8), started on a free port with a temporary filesystem root and deletes
//! enabled. Everything the suite checks must pass there, except exactly what
//! [`profiles::DISTRIBUTION_2_8`] lists (v1.1 features 2.8 predates, and its known bugs):
//! any other failure means the suite is wrong. Set `SHOAL_SKIP_REGISTRY=1` to skip where the
//! registry cannot be installed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shoal_conformance::{Outcome, SkipRule, SuiteConfig, profiles, run};

/// Kills the registry when the test ends.
struct RegistryProcess {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `docker-registry` on a free port and waits until `/v2/` answers. `None` if skipped.
async fn start_reference_registry() -> Option<(RegistryProcess, String)> {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = match Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .env("REGISTRY_HTTP_ADDR", &addr)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if std::env::var_os("SHOAL_SKIP_REGISTRY").is_some_and(|v| v == "1") => {
            eprintln!("skipping: cannot run docker-registry ({e}) and SHOAL_SKIP_REGISTRY=1");
            return None;
        }
        Err(e) => panic!(
            "cannot run docker-registry ({e}): install it with `apt-get install docker-registry` \
             or set SHOAL_SKIP_REGISTRY=1 to skip this test"
        ),
    };
    let mut process = RegistryProcess { child, _dir: dir };
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut exited = None;
    let ready =
        shoal_runtime::wait::wait_until(Duration::from_secs(30), "docker-registry answers", || {
            if let Ok(Some(status)) = process.child.try_wait() {
                exited = Some(status);
            }
            let probe = client.get(format!("{base}/v2/")).send();
            let gone = exited.is_some();
            async move { gone || probe.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
    if let Some(status) = exited {
        panic!("docker-registry exited early with {status}");
    }
    ready.unwrap();
    Some((process, base))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_agrees_with_the_reference_registry() {
    let Some((_registry, base)) = start_reference_registry().await else {
        return;
    };

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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = run(&SuiteConfig::new(format!("http://127.0.0.1:{port}"))).await;
    assert_eq!(report.passed(), 0, "{report}");
    assert!(!report.failures().is_empty());
    let report = run(&SuiteConfig::new("not a url")).await;
    assert_eq!(report.failures().len(), 1, "{report}");
}
