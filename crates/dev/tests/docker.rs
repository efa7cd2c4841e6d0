//! The real thing: a Docker daemon pushes an image (one layer ≥ 64 MiB) to the dev cluster's
//! proxy, forgets it, pulls it back through the agent (so every layer crosses the swarm) and
//! runs it. Uses `.ci/harness/docker-e2e.sh`; `.ci/run` starts the daemon.
//!
//! Without a Docker daemon this test fails, unless `SHOAL_SKIP_DOCKER=1` says to skip it.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use shoal_dev::{DevCluster, DevConfig};
use tokio_util::sync::CancellationToken;

fn docker_available() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_push_to_proxy_pull_from_agent_and_run() {
    if !docker_available() {
        if std::env::var_os("SHOAL_SKIP_DOCKER").is_some() {
            eprintln!("SHOAL_SKIP_DOCKER set and no Docker daemon: skipping");
            return;
        }
        panic!(
            "no Docker daemon answers `docker info`; start one with .ci/harness/start-dockerd.sh \
             (or set SHOAL_SKIP_DOCKER=1 to skip this test)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::bind(DevConfig::new(dir.path())).await.unwrap();
    let addrs = cluster.addrs();
    let token = CancellationToken::new();
    let running = tokio::spawn(cluster.run(token.clone()));

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.ci/harness/docker-e2e.sh"
    );
    let push = format!("localhost:{}", addrs.proxy.port());
    let pull = format!("localhost:{}", addrs.agent.port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args([script, &push, &pull, "64"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "docker-e2e.sh failed");
    assert!(
        stdout.contains("docker-e2e: 1 passed, 0 failed"),
        "{stdout}"
    );

    // The pull went through the swarm: the agent received at least the 64 MiB layer as pieces.
    let agent_base = format!("http://{}", addrs.agent);
    let received = shoal_testkit::metric(&agent_base, "shoal_agent_p2p_downloaded_bytes").await;
    assert!(
        received >= (64u64 << 20) as f64,
        "agent received {received} bytes"
    );

    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("cluster stops within 30 s")
        .unwrap()
        .unwrap();
}
