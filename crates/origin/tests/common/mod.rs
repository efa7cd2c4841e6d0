//! Shared helpers for origin integration tests: an in-process origin on port 0, and a backend
//! wrapper that counts calls and can fail or stall on demand.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use shoal_backend::{
    Backend, BackendError, BackendRouter, ByteStream, FilesystemBackend, ListPage, ListRequest,
    ObjectKey, ObjectMeta,
};
use shoal_core::{Algorithm, Digest, RepoName};
use shoal_origin::{Origin, OriginConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct TestOrigin {
    pub base: String,
    pub data_dir: PathBuf,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn config(data_dir: &Path) -> OriginConfig {
    let mut c = OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        ..OriginConfig::default()
    };
    c.p2p.transport = shoal_transport::TransportConfig::localhost();
    c.writeback.initial_backoff = Duration::from_millis(50);
    c.writeback.max_backoff = Duration::from_millis(200);
    c
}

impl TestOrigin {
    pub async fn start(config: OriginConfig) -> Self {
        let data_dir = config.data_dir.clone();
        Self::launch(Origin::bind(config).await.unwrap(), data_dir)
    }

    pub async fn start_with(config: OriginConfig, backends: BackendRouter) -> Self {
        let data_dir = config.data_dir.clone();
        Self::launch(
            Origin::bind_with_backends(config, backends).await.unwrap(),
            data_dir,
        )
    }

    /// An origin that is a member of `cluster` (its id: its bound address).
    pub async fn start_in(config: OriginConfig, cluster: shoal_cluster::Cluster) -> Self {
        let data_dir = config.data_dir.clone();
        Self::launch(
            Origin::bind_with_cluster(config, cluster).await.unwrap(),
            data_dir,
        )
    }

    /// `host:port`, the origin's member id when it has no `cluster_id`.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    fn launch(origin: Origin, data_dir: PathBuf) -> Self {
        let base = format!("http://{}", origin.local_addr());
        let token = CancellationToken::new();
        let handle = tokio::spawn(origin.run(token.clone()));
        Self {
            base,
            data_dir,
            token,
            handle,
        }
    }

    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("origin stops within 10 s")
            .unwrap()
            .unwrap();
    }

    pub fn blob_url(&self, ns: &str, d: &Digest) -> String {
        format!(
            "{}/v1/namespace/{}/blobs/{d}",
            self.base,
            ns.replace('/', "%2F")
        )
    }

    pub fn uploads_url(&self, ns: &str) -> String {
        format!(
            "{}/v1/namespace/{}/uploads",
            self.base,
            ns.replace('/', "%2F")
        )
    }

    /// A metric's value from /metrics (summing all series of that name).
    pub async fn metric(&self, name: &str) -> f64 {
        shoal_testkit::metric(&self.base, name).await
    }

    pub async fn wait_metric(&self, name: &str, what: &str, pred: impl Fn(f64) -> bool) {
        let pred = &pred;
        shoal_runtime::wait::wait_until(Duration::from_secs(20), what, || async move {
            pred(self.metric(name).await)
        })
        .await
        .unwrap();
    }

    pub async fn put_blob(&self, ns: &str, data: &[u8]) -> Digest {
        let d = sha256(data);
        let resp = reqwest::Client::new()
            .put(self.blob_url(ns, &d))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        d
    }

    pub async fn get_blob(&self, ns: &str, d: &Digest) -> reqwest::Response {
        reqwest::get(self.blob_url(ns, d)).await.unwrap()
    }
}

pub use shoal_testkit::pseudo_random_bytes as data;

pub fn sha256(data: &[u8]) -> Digest {
    Digest::compute(Algorithm::Sha256, data)
}

pub fn ns(s: &str) -> RepoName {
    s.parse().unwrap()
}

/// Files left in a directory tree (recursively).
pub fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Wraps a backend: counts calls, can refuse writes (as an unreachable server would), and can
/// hold every `get` until released.
#[derive(Debug)]
pub struct Faulty {
    pub inner: Arc<dyn Backend>,
    pub gets: AtomicUsize,
    pub puts: AtomicUsize,
    pub fail_puts: AtomicBool,
    gate: watch::Sender<bool>,
}

impl Faulty {
    pub fn new(inner: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gets: AtomicUsize::new(0),
            puts: AtomicUsize::new(0),
            fail_puts: AtomicBool::new(false),
            gate: watch::channel(true).0,
        })
    }

    pub fn filesystem(root: PathBuf) -> Arc<Self> {
        Self::new(Arc::new(FilesystemBackend::new(root)))
    }

    pub fn hold_gets(&self) {
        self.gate.send_replace(false);
    }

    pub fn release_gets(&self) {
        self.gate.send_replace(true);
    }

    pub fn router(self: &Arc<Self>) -> BackendRouter {
        BackendRouter::single(Arc::clone(self) as Arc<dyn Backend>)
    }
}

#[async_trait::async_trait]
impl Backend for Faulty {
    async fn stat(&self, ns: &RepoName, key: &ObjectKey) -> Result<ObjectMeta, BackendError> {
        self.inner.stat(ns, key).await
    }

    async fn get(
        &self,
        ns: &RepoName,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BackendError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let _ = self.gate.subscribe().wait_for(|open| *open).await;
        self.inner.get(ns, key, range).await
    }

    async fn put(
        &self,
        ns: &RepoName,
        key: &ObjectKey,
        len: u64,
        body: ByteStream,
    ) -> Result<(), BackendError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.fail_puts.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("injected outage".into()));
        }
        self.inner.put(ns, key, len, body).await
    }

    async fn delete(&self, ns: &RepoName, key: &ObjectKey) -> Result<(), BackendError> {
        self.inner.delete(ns, key).await
    }

    async fn list(&self, ns: &RepoName, req: ListRequest) -> Result<ListPage, BackendError> {
        self.inner.list(ns, req).await
    }
}

pub async fn wait_ready(base: &str) {
    shoal_runtime::wait::wait_until(Duration::from_secs(10), "origin ready", || async move {
        reqwest::get(format!("{base}/readiness"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .unwrap();
}

pub fn init_logs() {
    shoal_runtime::telemetry::init(&shoal_runtime::telemetry::LogConfig {
        format: shoal_runtime::telemetry::LogFormat::Human,
        filter: "debug,hyper=info,reqwest=info".into(),
    });
}
