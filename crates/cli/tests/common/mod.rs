//! Shared helpers for `shoal` binary tests: a real in-process origin, fake HTTP servers, and
//! running the binary without blocking the runtime the servers live on.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use shoal_core::{Algorithm, Digest};
use shoal_origin::{Origin, OriginConfig};
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_shoal");

/// A server running on its own task until stopped.
pub struct Running {
    pub addr: SocketAddr,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("stops within 10 s")
            .unwrap()
            .unwrap();
    }
}

/// A real origin (HTTP API only) with its data and filesystem backend under `dir`.
pub async fn start_origin(dir: &Path) -> Running {
    let mut config = OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        ..OriginConfig::default()
    };
    // HTTP only: no peer transport to bind.
    config.p2p.enabled = false;
    let origin = Origin::bind(config).await.unwrap();
    let addr = origin.local_addr();
    let token = CancellationToken::new();
    let handle = tokio::spawn(origin.run(token.clone()));
    Running {
        addr,
        token,
        handle,
    }
}

/// Serves `app` on 127.0.0.1:0.
pub async fn serve(app: axum::Router) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let serve = shoal_runtime::admin::serve(listener, app, token.clone());
    let handle = tokio::spawn(async move { Ok(serve.await?) });
    Running {
        addr,
        token,
        handle,
    }
}

/// Runs `shoal` with `args` on a blocking thread (the servers keep running meanwhile).
pub async fn shoal(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(&args)
            .env_remove("SHOAL_ORIGIN")
            .env_remove("SHOAL_AGENT")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn sha256(data: &[u8]) -> Digest {
    Digest::compute(Algorithm::Sha256, data)
}

/// Names of the entries in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
