//! Shared helpers for build-index integration tests: in-process build-indexes and origins on
//! port 0 (or on a given address, to restart them where others expect them).
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_build_index::config::ReplicationRule;
use shoal_build_index::{BuildIndex, BuildIndexConfig};
use shoal_build_index_api::BuildIndexClient;
use shoal_core::{Algorithm, Digest, RepoName, Tag};
use shoal_origin::{Origin, OriginConfig};
use shoal_origin_client::OriginClient;
use tokio_util::sync::CancellationToken;

/// How long a test waits for a condition before failing.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

pub fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

pub fn sha256(data: &[u8]) -> Digest {
    Digest::compute(Algorithm::Sha256, data)
}

/// A build-index config for tests: loopback port 0 (or `listen`), fast retries.
pub fn index_config(data_dir: &Path) -> BuildIndexConfig {
    let mut c = BuildIndexConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        ..BuildIndexConfig::default()
    };
    c.replication_queue.initial_backoff = Duration::from_millis(50);
    c.replication_queue.max_backoff = Duration::from_millis(300);
    c
}

pub fn rule(repository: &str, build_index: &str, origins: &[&str]) -> ReplicationRule {
    ReplicationRule {
        repository: repository.to_owned(),
        build_index: build_index.to_owned(),
        origins: origins.iter().map(|o| (*o).to_owned()).collect(),
    }
}

pub struct TestIndex {
    pub addr: SocketAddr,
    pub base: String,
    pub client: BuildIndexClient,
    pub data_dir: PathBuf,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestIndex {
    pub async fn start(config: BuildIndexConfig) -> Self {
        let data_dir = config.data_dir.clone();
        let index = BuildIndex::bind(config).await.unwrap();
        let addr = index.local_addr();
        let base = format!("http://{addr}");
        let token = CancellationToken::new();
        let handle = tokio::spawn(index.run(token.clone()));
        Self {
            addr,
            client: BuildIndexClient::new(&base).unwrap(),
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
            .expect("build-index stops within 10 s")
            .unwrap()
            .unwrap();
    }

    pub async fn metric(&self, name: &str) -> f64 {
        shoal_testkit::metric(&self.base, name).await
    }

    pub async fn wait_metric(&self, name: &str, pred: impl Fn(f64) -> bool) {
        let pred = &pred;
        shoal_runtime::wait::wait_until(
            WAIT,
            name,
            || async move { pred(self.metric(name).await) },
        )
        .await
        .unwrap();
    }

    /// Task files in the replication queue directory.
    pub fn queued_files(&self) -> usize {
        queued_files(&self.data_dir)
    }
}

pub fn queued_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("replication"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "task"))
                .count()
        })
        .unwrap_or(0)
}

pub struct TestOrigin {
    pub addr: SocketAddr,
    pub base: String,
    pub client: OriginClient,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// An origin without peer seeding, on `listen` (port 0 for a free port).
pub fn origin_config(data_dir: &Path, listen: SocketAddr) -> OriginConfig {
    let mut c = OriginConfig {
        listen,
        data_dir: data_dir.to_owned(),
        ..OriginConfig::default()
    };
    c.p2p.enabled = false;
    c.writeback.initial_backoff = Duration::from_millis(50);
    c.writeback.max_backoff = Duration::from_millis(200);
    c
}

impl TestOrigin {
    pub async fn start(data_dir: &Path, listen: SocketAddr) -> Self {
        let origin = Origin::bind(origin_config(data_dir, listen)).await.unwrap();
        let addr = origin.local_addr();
        let base = format!("http://{addr}");
        let token = CancellationToken::new();
        let handle = tokio::spawn(origin.run(token.clone()));
        Self {
            addr,
            client: OriginClient::new(&base).unwrap(),
            base,
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

    pub async fn put(&self, ns: &RepoName, data: &[u8]) -> Digest {
        let d = sha256(data);
        let body: shoal_origin_client::ByteStream = Box::pin(futures_util::stream::once({
            let bytes = bytes::Bytes::copy_from_slice(data);
            async move { Ok(bytes) }
        }));
        self.client
            .put(ns, &d, body, Some(data.len() as u64))
            .await
            .unwrap();
        d
    }

    pub async fn has(&self, ns: &RepoName, d: &Digest) -> bool {
        matches!(self.client.stat(ns, d).await, Ok(Some(_)))
    }
}

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A multi-platform image pushed to an origin: blobs, two image manifests and their index.
pub struct Image {
    pub index: Digest,
    pub children: Vec<Digest>,
    pub blobs: Vec<Digest>,
}

impl Image {
    /// Every manifest and blob, for checking a zone has them all.
    pub fn all(&self) -> Vec<Digest> {
        let mut all = vec![self.index];
        all.extend(&self.children);
        all.extend(&self.blobs);
        all
    }
}

fn descriptor(media_type: &str, d: &Digest, size: usize) -> String {
    format!(r#"{{"mediaType":"{media_type}","digest":"{d}","size":{size}}}"#)
}

/// Pushes an image with `seed`-dependent content: per platform a config and two layers (one
/// layer shared by both), an image manifest each, and an index over them.
pub async fn push_image(origin: &TestOrigin, ns: &RepoName, seed: u64) -> Image {
    let shared = shoal_testkit::pseudo_random_bytes(300_000, seed);
    let shared_d = origin.put(ns, &shared).await;
    let mut blobs = vec![shared_d];
    let mut children = Vec::new();
    let mut child_json = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux","seed":{seed}}}"#);
        let config_d = origin.put(ns, config.as_bytes()).await;
        let layer = shoal_testkit::pseudo_random_bytes(1_500_000 + i * 1000, seed * 10 + i as u64);
        let layer_d = origin.put(ns, &layer).await;
        blobs.extend([config_d, layer_d]);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{},{}]}}"#,
            descriptor(OCI_CONFIG, &config_d, config.len()),
            descriptor(OCI_LAYER, &shared_d, shared.len()),
            descriptor(OCI_LAYER, &layer_d, layer.len()),
        );
        let manifest_d = origin.put(ns, manifest.as_bytes()).await;
        children.push(manifest_d);
        child_json.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{manifest_d}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
            manifest.len()
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        child_json.join(",")
    );
    let index_d = origin.put(ns, index.as_bytes()).await;
    Image {
        index: index_d,
        children,
        blobs,
    }
}

/// Waits until `index` resolves `repo:tag` to `digest` and `origin` has every piece of `image`.
pub async fn wait_replicated(
    index: &TestIndex,
    origin: &TestOrigin,
    repo: &RepoName,
    tag: &Tag,
    digest: &Digest,
    image: &Image,
) {
    shoal_runtime::wait::wait_until(WAIT, "remote zone resolves the tag", || async move {
        matches!(index.client.get_tag(repo, tag).await, Ok(Some(r)) if r.digest == *digest)
    })
    .await
    .unwrap();
    // The tag is written last, so by now everything it needs is there.
    for d in image.all() {
        assert!(origin.has(repo, &d).await, "remote origin lacks {d}");
    }
    for m in std::iter::once(&image.index).chain(&image.children) {
        let record = index.client.get_manifest(repo, m).await.unwrap();
        assert!(
            record.is_some(),
            "remote build-index lacks the record of {m}"
        );
    }
}
