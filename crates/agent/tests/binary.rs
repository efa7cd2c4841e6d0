//! The `shoal-agent` binary as users run it: flags only, no config file, port 0.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_shoal-agent");

#[test]
fn help_exits_zero() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--peer-listen",
        "--data-dir",
        "--tracker",
        "--config",
    ] {
        assert!(text.contains(flag), "{flag}");
    }
}

#[test]
fn bad_config_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "[engine]\npipeline = 3\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pipeline"));
}

#[tokio::test]
async fn runs_on_defaults_serves_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("agent listening")
                && let Some(rest) = line.split("addr=").nth(1)
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("listening line");
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
