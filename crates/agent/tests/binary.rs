//! The `shoal-agent` binary as users run it: flags only, no config file, port 0.

#![allow(clippy::unwrap_used)]

use shoal_testkit::ServiceProcess;

const BIN: &str = env!("CARGO_BIN_EXE_shoal-agent");

#[test]
fn help_exits_zero() {
    shoal_testkit::assert_help_lists(
        BIN,
        &[
            "--listen",
            "--peer-listen",
            "--data-dir",
            "--tracker",
            "--config",
        ],
    );
}

#[test]
fn bad_config_is_a_usage_error() {
    shoal_testkit::assert_bad_config_is_usage_error(BIN, "[engine]\npipeline = 3\n", "pipeline");
}

#[tokio::test]
async fn runs_on_defaults_serves_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--peer-listen",
        "127.0.0.1:0",
        "--data-dir",
    ];
    args.push(dir.path().to_str().unwrap());
    let agent = ServiceProcess::start(BIN, args, "agent listening");
    let addr = agent.addr().to_owned();
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    // No tracker is running: a blob request fails cleanly with 503, not a hang or a crash.
    let d = shoal_core::Digest::compute(shoal_core::Algorithm::Sha256, b"x");
    let resp = reqwest::get(format!("http://{addr}/v1/namespaces/demo/blobs/{d}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let bad = reqwest::get(format!("http://{addr}/v1/namespaces/demo/blobs/sha256:zz"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(dir.path().join("peer_id").exists());
    let exit = tokio::task::spawn_blocking(move || agent.terminate())
        .await
        .unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit}");
}
