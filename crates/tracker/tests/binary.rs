//! The `shoal-tracker` binary as users run it: flags only, no config file, port 0.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use shoal_tracker::proto::AnnounceRequest;
use shoal_tracker::proto::tracker_client::TrackerClient;

const BIN: &str = env!("CARGO_BIN_EXE_shoal-tracker");

#[test]
fn help_exits_zero() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("--listen") && text.contains("--config") && text.contains("--origin"));
}

#[test]
fn bad_config_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tracker.toml");
    std::fs::write(&cfg, "lisen = \"127.0.0.1:0\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}

#[tokio::test]
async fn runs_on_defaults_serves_grpc_and_health_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line
                .contains("tracker listening")
                .then(|| line.split("addr=").nth(1))
                .flatten()
            {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("listening line");
    let base = format!("http://{addr}");

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

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit}");
}
