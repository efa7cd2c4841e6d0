//! `shoal dev` as a user runs it: the binary starts the whole cluster, writes
//! `endpoints.json`, serves both registries, and stops cleanly on SIGTERM.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_writes_endpoints_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["dev", "--data-dir"])
        .arg(dir.path())
        .args([
            "--proxy-listen",
            "127.0.0.1:0",
            "--agent-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoints = dir.path().join("endpoints.json");
    let found = shoal_runtime::wait::wait_until(Duration::from_secs(30), "endpoints.json", || {
        let exists = endpoints.exists();
        async move { exists }
    })
    .await;
    if found.is_err() {
        let _ = child.kill();
        panic!("shoal dev wrote no endpoints.json within 30 s");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&endpoints).unwrap()).unwrap();
    for key in ["proxy", "agent", "origin", "tracker", "build_index"] {
        let addr = v[key].as_str().unwrap();
        assert!(
            addr.parse::<std::net::SocketAddr>().is_ok(),
            "{key}: {addr}"
        );
    }
    for key in ["proxy", "agent"] {
        let resp = reqwest::get(format!("http://{}/v2/", v[key].as_str().unwrap()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{key} /v2/");
        assert_eq!(
            resp.headers()["docker-distribution-api-version"],
            "registry/2.0"
        );
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exited.success(), "shoal dev exited with {exited}");
}
