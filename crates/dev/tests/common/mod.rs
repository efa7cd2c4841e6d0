//! Shared helpers: a dev cluster per test, and pushes over the OCI API.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::json;
use shoal_core::{Algorithm, Digest};
use shoal_dev::{DevAddrs, DevCluster, DevConfig};
use tokio_util::sync::CancellationToken;

pub mod manifests;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Where the push helpers push: the dev cluster's proxy, or another registry.
pub trait PushTarget {
    /// `host:port` of the registry.
    fn push_host(&self) -> String;
}

impl PushTarget for Cluster {
    fn push_host(&self) -> String {
        self.addrs.proxy.to_string()
    }
}

/// Any registry by `host:port` (e.g. the reference registry).
pub struct Registry(pub String);

impl PushTarget for Registry {
    fn push_host(&self) -> String {
        self.0.clone()
    }
}

pub struct Cluster {
    pub addrs: DevAddrs,
    token: CancellationToken,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a dev cluster with `config` (its data directory is replaced by a temp dir).
    pub async fn start(config: DevConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cluster = DevCluster::bind(DevConfig {
            data_dir: dir.path().to_owned(),
            ..config
        })
        .await
        .unwrap();
        let addrs = cluster.addrs();
        let token = CancellationToken::new();
        let running = tokio::spawn(cluster.run(token.clone()));
        Self {
            addrs,
            token,
            running,
            _dir: dir,
        }
    }

    pub fn proxy(&self, path: &str) -> String {
        format!("http://{}/v2/{path}", self.addrs.proxy)
    }

    pub fn agent(&self, path: &str) -> String {
        format!("http://{}/v2/{path}", self.addrs.agent)
    }

    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.running)
            .await
            .expect("cluster stops")
            .unwrap()
            .unwrap();
    }
}

/// Pushes a blob with POST + two PATCH chunks + PUT.
pub async fn push_blob(http: &Client, c: &impl PushTarget, repo: &str, data: &[u8]) -> Digest {
    let host = c.push_host();
    let digest = Digest::compute(Algorithm::Sha256, data);
    let resp = http
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let mut location = resp.headers()["location"].to_str().unwrap().to_owned();
    let half = data.len() / 2;
    for (start, chunk) in [(0, &data[..half]), (half, &data[half..])] {
        let url = absolute(&host, &location);
        let resp = http
            .patch(url)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        location = resp.headers()["location"].to_str().unwrap().to_owned();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let resp = http
        .put(format!(
            "{}{sep}digest={digest}",
            absolute(&host, &location)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{:?}",
        resp.text().await
    );
    digest
}

/// A `Location` as a URL (the reference registry answers absolute ones, the proxy paths).
fn absolute(host: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("http://{host}{location}")
    }
}

pub async fn push_image(
    http: &Client,
    c: &impl PushTarget,
    repo: &str,
    tag: &str,
    layer: &[u8],
) -> Digest {
    let config = json!({"architecture": "amd64", "os": "linux", "tag": tag}).to_string();
    let config_digest = push_blob(http, c, repo, config.as_bytes()).await;
    let layer_digest = push_blob(http, c, repo, layer).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}],
    })
    .to_string();
    push_manifest(http, c, repo, tag, OCI_MANIFEST, &manifest).await
}

/// GETs an OCI manifest at `url` and asserts a `200` with its media type and `digest`;
/// returns the body.
pub async fn get_manifest(http: &Client, url: &str, digest: &Digest) -> bytes::Bytes {
    let resp = http
        .get(url)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    assert_eq!(resp.headers()["content-type"], OCI_MANIFEST);
    assert_eq!(
        resp.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );
    resp.bytes().await.unwrap()
}

/// Pushes a manifest (any media type) by tag; returns its digest.
pub async fn push_manifest(
    http: &Client,
    c: &impl PushTarget,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &str,
) -> Digest {
    let resp = http
        .put(format!(
            "http://{}/v2/{repo}/manifests/{reference}",
            c.push_host()
        ))
        .header("content-type", media_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{:?}",
        resp.text().await
    );
    Digest::compute(Algorithm::Sha256, body.as_bytes())
}
