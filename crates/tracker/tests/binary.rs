//! The `shoal-tracker` binary as users run it: flags only, no config file, port 0.

#![allow(clippy::unwrap_used)]

use shoal_testkit::ServiceProcess;

use shoal_tracker::proto::AnnounceRequest;
use shoal_tracker::proto::tracker_client::TrackerClient;

const BIN: &str = env!("CARGO_BIN_EXE_shoal-tracker");

#[test]
fn help_exits_zero() {
    shoal_testkit::assert_help_lists(BIN, &["--listen", "--config", "--origin"]);
}

#[test]
fn bad_config_is_a_usage_error() {
    shoal_testkit::assert_bad_config_is_usage_error(BIN, "lisen = \"127.0.0.1:0\"\n", "lisen");
}

#[tokio::test]
async fn runs_on_defaults_serves_grpc_and_health_and_stops_on_sigterm() {
    let tracker = ServiceProcess::start(BIN, ["--listen", "127.0.0.1:0"], "tracker listening");
    let base = tracker.base_url();

    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("{base}/readiness")).await.unwrap();
    assert_eq!(ready.status(), 200);

    // gRPC on the same port.
    let mut client = TrackerClient::connect(base.clone()).await.unwrap();
    let resp = client
        .announce(AnnounceRequest {
            info_hash: vec![1; 32],
            peer_id: vec![2; 32],
            port: 7000,
            ..AnnounceRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.peers.is_empty());
    assert_eq!(resp.interval_ms, 3000);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shoal_tracker_announces_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("shoal_tracker_peers 1"), "{metrics}");
    drop(client);

    let exit = tokio::task::spawn_blocking(move || tracker.terminate())
        .await
        .unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit}");
}
