//! The `shoal-origin` binary as users run it: flags only, no config file, port 0.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use shoal_testkit::ServiceProcess;

const BIN: &str = env!("CARGO_BIN_EXE_shoal-origin");

#[test]
fn help_exits_zero() {
    shoal_testkit::assert_help_lists(
        BIN,
        &[
            "--listen",
            "--data-dir",
            "--config",
            "--cluster-id",
            "--advertise-addr",
        ],
    );
}

#[test]
fn bad_config_is_a_usage_error() {
    shoal_testkit::assert_bad_config_is_usage_error(BIN, "lisen = \"127.0.0.1:0\"\n", "lisen");
}

#[tokio::test]
async fn runs_on_defaults_serves_health_and_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--peer-listen",
        "127.0.0.1:0",
        "--data-dir",
    ];
    args.push(dir.path().to_str().unwrap());
    let origin = ServiceProcess::start(BIN, args, "origin listening");
    let base = origin.base_url();

    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let blob = b"hello from the binary".to_vec();
    let d = shoal_core::Digest::compute(shoal_core::Algorithm::Sha256, &blob);
    let resp = reqwest::Client::new()
        .put(format!("{base}/v1/namespace/demo/blobs/{d}"))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("# TYPE shoal_origin_writeback_queue_depth gauge"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_origin_uploads_committed_total 1"),
        "{metrics}"
    );
    // The default backend is the filesystem under the data dir.
    shoal_runtime::wait::wait_until(Duration::from_secs(10), "written back", || {
        let p = dir
            .path()
            .join("backend/blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex());
        async move { p.exists() }
    })
    .await
    .unwrap();

    let exit = tokio::task::spawn_blocking(move || origin.terminate())
        .await
        .unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit}");
}
