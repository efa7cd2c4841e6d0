//! The `shoal-proxy` binary as users run it: flags only, no config file, port 0.

#![allow(clippy::unwrap_used)]

use shoal_testkit::ServiceProcess;

const BIN: &str = env!("CARGO_BIN_EXE_shoal-proxy");

#[test]
fn help_exits_zero() {
    shoal_testkit::assert_help_lists(BIN, &["--listen", "--config", "--origin", "--build-index"]);
}

#[test]
fn bad_config_is_a_usage_error() {
    shoal_testkit::assert_bad_config_is_usage_error(BIN, "lisen = \"127.0.0.1:0\"\n", "lisen");
}

#[tokio::test]
async fn serves_health_and_the_api_version_check_and_stops_on_sigterm() {
    // Nothing listens on port 1: the proxy still starts (its ring notices the dead origin).
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--origin",
        "127.0.0.1:1",
        "--build-index",
        "http://127.0.0.1:1",
    ];
    let proxy = ServiceProcess::start(BIN, args, "proxy listening");
    let base = proxy.base_url();
    assert_eq!(
        reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .status(),
        200
    );
    let v2 = reqwest::get(format!("{base}/v2/")).await.unwrap();
    assert_eq!(v2.status(), 200);
    assert_eq!(
        v2.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let exit = tokio::task::spawn_blocking(move || proxy.terminate())
        .await
        .unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit}");
}
