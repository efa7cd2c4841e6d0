//! Shared helpers for tracker integration tests: an in-process tracker and origin on port 0,
//! a gRPC client, and a counting HTTP proxy that can hold requests until released.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shoal_core::{Algorithm, Digest};
use shoal_origin::{Origin, OriginConfig};
use shoal_tracker::proto::tracker_client::TrackerClient;
use shoal_tracker::{Tracker, TrackerConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub type Client = TrackerClient<tonic::transport::Channel>;

/// A service running on its own task until stopped.
pub struct Running {
    pub addr: SocketAddr,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn new(
        addr: SocketAddr,
        token: CancellationToken,
        handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    ) -> Self {
        Self {
            addr,
            token,
            handle,
        }
    }

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

pub fn tracker_config() -> TrackerConfig {
    TrackerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..TrackerConfig::default()
    }
}

pub async fn start_tracker(config: TrackerConfig) -> Running {
    let tracker = Tracker::bind(config).await.unwrap();
    let addr = tracker.local_addr();
    let token = CancellationToken::new();
    let handle = tokio::spawn(tracker.run(token.clone()));
    Running {
        addr,
        token,
        handle,
    }
}

pub async fn client(tracker: &Running) -> Client {
    TrackerClient::connect(tracker.base()).await.unwrap()
}

/// Starts a real origin with its data (and filesystem backend) under `dir`, not seeding over
/// the peer protocol (so its metainfo responses carry no peer headers).
pub async fn start_origin(dir: &std::path::Path) -> Running {
    let mut config = origin_config(dir);
    config.p2p.enabled = false;
    launch_origin(Origin::bind(config).await.unwrap())
}

/// Starts a real origin that seeds over the peer protocol on 127.0.0.1 (port 0); returns it
/// and its advertised peer address.
pub async fn start_seeding_origin(dir: &std::path::Path) -> (Running, SocketAddr) {
    let mut config = origin_config(dir);
    config.p2p.transport = shoal_transport::TransportConfig::localhost();
    let origin = Origin::bind(config).await.unwrap();
    let peer_addr = origin.peer_addr().unwrap();
    (launch_origin(origin), peer_addr)
}

fn origin_config(dir: &std::path::Path) -> OriginConfig {
    OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        piece_length: 64 * 1024,
        ..OriginConfig::default()
    }
}

fn launch_origin(origin: Origin) -> Running {
    let addr = origin.local_addr();
    let token = CancellationToken::new();
    let handle = tokio::spawn(origin.run(token.clone()));
    Running {
        addr,
        token,
        handle,
    }
}

pub fn blob(len: usize, seed: u8) -> (Vec<u8>, Digest) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let d = Digest::compute(Algorithm::Sha256, &data);
    (data, d)
}

/// Uploads `data` to the origin in one request.
pub async fn upload(origin: &Running, ns: &str, data: &[u8], d: &Digest) {
    let resp = reqwest::Client::new()
        .put(format!(
            "{}/v1/namespace/{}/blobs/{d}",
            origin.base(),
            ns.replace('/', "%2F")
        ))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

/// An address nothing listens on (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A reverse proxy in front of an origin that counts requests and holds each one until
/// [`Proxy::release`] (or forwards at once when created open).
pub struct Proxy {
    pub running: Running,
    pub hits: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: String, open: bool) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let (gate, gate_rx) = watch::channel(open);
        let http = reqwest::Client::new();
        let state = (Arc::clone(&hits), gate_rx, http, upstream);
        // The tracker health-checks its origins: answered here, not counted as a metainfo hit.
        let app = axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .fallback(
                |axum::extract::State((hits, mut gate, http, upstream)): axum::extract::State<
                    (
                        Arc<AtomicUsize>,
                        watch::Receiver<bool>,
                        reqwest::Client,
                        String,
                    ),
                >,
                 uri: axum::http::Uri| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    let resp = http
                        .get(format!("{upstream}{}", uri.path()))
                        .send()
                        .await
                        .unwrap();
                    let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
                    (status, resp.bytes().await.unwrap())
                },
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let serve = shoal_runtime::admin::serve(listener, app, token.clone());
        let handle = tokio::spawn(async move { Ok(serve.await?) });
        Self {
            running: Running {
                addr,
                token,
                handle,
            },
            hits,
            gate,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn release(&self) {
        self.gate.send_replace(true);
    }
}

/// A metric's value from the tracker's `/metrics`, 0 when absent.
pub async fn metric(tracker: &Running, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", tracker.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}
