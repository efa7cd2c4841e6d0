//! The pull side as Kubernetes nodes use it: a real containerd (Debian's, started privately for
//! this test) pulls an image from the agent with `ctr`, unpacks it and runs it with runc. The
//! image goes in through the proxy over the OCI API: one layer holding busybox and a file of
//! random bytes that spans several pieces, whose SHA-256 the container computes from the
//! inside. (`crates/cli/tests/host_config.rs` pulls through containerd's mirror
//! configuration instead.)
//!
//! Without containerd, `ctr`, runc or `/bin/busybox` (CI installs them with Debian's
//! `docker.io` and `busybox-static`) this test fails, unless `SHOAL_SKIP_DOCKER=1` says to skip
//! it.
#![allow(clippy::unwrap_used)]

mod common;

use common::Cluster;
use shoal_dev::DevConfig;
use shoal_testkit::{Containerd, TestImage};

const REPO: &str = "e2e/containerd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_from_the_agent_and_runs_the_image() {
    let Some(containerd) = tokio::task::spawn_blocking(Containerd::start)
        .await
        .unwrap()
    else {
        return;
    };
    // Several 256 KiB pieces at any piece length.
    let image = tokio::task::spawn_blocking(|| TestImage::build(12 << 20))
        .await
        .unwrap();
    let c = Cluster::start(DevConfig::new("unused")).await;
    let proxy = c.addrs.proxy.to_string();
    image.push(&reqwest::Client::new(), &proxy, REPO, "1").await;

    let reference = format!("{}/{REPO}:1", c.addrs.agent);
    let hashed = tokio::task::spawn_blocking(move || {
        containerd.pull_and_hash(&reference, &["--plain-http"])
    })
    .await
    .unwrap();
    assert_eq!(
        hashed, image.blob_sha256,
        "the file inside the container differs from the one pushed"
    );
    c.stop().await;
}
