//! A registry served on a loopback port, a client for it, and manifest builders.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use shoal_core::{Algorithm, Digest};
use tower::ServiceExt;

use crate::mem::MemStore;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";

pub(crate) fn sha256(data: &[u8]) -> Digest {
    Digest::compute(Algorithm::Sha256, data)
}

/// A running registry over a [`MemStore`].
pub(crate) struct Registry {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) store: Arc<MemStore>,
}

impl Registry {
    pub(crate) async fn start() -> Self {
        Self::with_store(MemStore::new()).await
    }

    pub(crate) async fn with_store(store: MemStore) -> Self {
        let store = Arc::new(store);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = shoal_registry::router(store.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Self {
            base: format!("http://{addr}"),
            client,
            store,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub(crate) async fn head(&self, path: &str) -> Response {
        self.request(Method::HEAD, path).send().await.unwrap()
    }

    pub(crate) async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    /// Pushes a blob with a monolithic `POST ?digest=`.
    pub(crate) async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = sha256(data);
        let resp = self
            .request(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        digest
    }

    /// Starts an upload session; returns its `Location`.
    pub(crate) async fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        header(&resp, "location")
    }

    pub(crate) async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: &str,
        body: &[u8],
    ) -> Response {
        self.request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes a config and a layer, then an image manifest referencing them under `tag`;
    /// returns the manifest's bytes and digest.
    pub(crate) async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (Vec<u8>, Digest) {
        let config = format!("{{\"seed\":\"{seed}\"}}");
        let layer = format!("layer of {seed}");
        let config_digest = self.push_blob(repo, config.as_bytes()).await;
        let layer_digest = self.push_blob(repo, layer.as_bytes()).await;
        let manifest = image_manifest(
            (CONFIG_TYPE, &config_digest, config.len()),
            &[(&layer_digest, layer.len())],
            None,
            None,
            None,
        );
        let resp = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let digest = sha256(&manifest);
        (manifest, digest)
    }

    /// Sends a raw request straight to the router (no URL normalisation on the way).
    pub(crate) async fn oneshot(&self, method: &str, path: &str) -> axum::response::Response {
        shoal_registry::router(self.store.clone())
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
    }
}

/// An OCI image manifest.
pub(crate) fn image_manifest(
    config: (&str, &Digest, usize),
    layers: &[(&Digest, usize)],
    subject: Option<(&Digest, usize)>,
    artifact_type: Option<&str>,
    annotation: Option<&str>,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config.0, "digest": config.1.to_string(), "size": config.2},
        "layers": layers.iter().map(|(d, s)| json!({
            "mediaType": LAYER_TYPE, "digest": d.to_string(), "size": s
        })).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": s});
    }
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    if let Some(a) = annotation {
        m["annotations"] = json!({"org.example.note": a});
    }
    serde_json::to_vec(&m).unwrap()
}

/// An OCI image index.
pub(crate) fn index(children: &[(&Digest, usize)]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(d, s)| json!({
            "mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": s,
            "platform": {"os": "linux", "architecture": "amd64"}
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

pub(crate) fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {resp:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts the status, the API version header and the spec error code of an error response;
/// returns its headers for further checks.
pub(crate) async fn assert_error(resp: Response, status: StatusCode, code: &str) -> HeaderMap {
    assert_eq!(resp.status(), status, "{resp:?}");
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], code, "{body}");
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    headers
}

/// The status and spec error code of a response from [`Registry::oneshot`].
pub(crate) async fn oneshot_error(resp: axum::response::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    (
        status,
        body["errors"][0]["code"].as_str().unwrap().to_owned(),
    )
}
