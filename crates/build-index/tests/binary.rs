//! The `shoal-build-index` binary as users run it: flags only, no config file, port 0.
#![allow(clippy::unwrap_used)]

use shoal_build_index_api::BuildIndexClient;
use shoal_testkit::ServiceProcess;

const BIN: &str = env!("CARGO_BIN_EXE_shoal-build-index");

#[test]
fn help_exits_zero() {
    shoal_testkit::assert_help_lists(BIN, &["--listen", "--data-dir", "--config", "--origin"]);
}

#[test]
fn bad_config_is_a_usage_error() {
    shoal_testkit::assert_bad_config_is_usage_error(BIN, "lisen = \"127.0.0.1:0\"\n", "lisen");
}

#[tokio::test]
async fn runs_on_defaults_serves_tags_health_and_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];
    let index = ServiceProcess::start(BIN, args, "build-index listening");
    let base = index.base_url();

    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let client = BuildIndexClient::new(&base).unwrap();
    let repo = "library/ubuntu".parse().unwrap();
    let tag = "latest".parse().unwrap();
    let d = shoal_core::Digest::compute(shoal_core::Algorithm::Sha256, b"manifest");
    let rec = client.put_tag(&repo, &tag, &d).await.unwrap();
    assert_eq!(client.get_tag(&repo, &tag).await.unwrap(), Some(rec));
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("# TYPE shoal_build_index_replication_queue_depth gauge"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_build_index_tags_put_total 1"),
        "{metrics}"
    );
    // The default backend is the filesystem under the data dir.
    assert!(
        dir.path()
            .join("backend/tags/library/ubuntu!/latest")
            .is_file()
    );

    let exit = tokio::task::spawn_blocking(move || index.terminate())
        .await
        .unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit}");
}
