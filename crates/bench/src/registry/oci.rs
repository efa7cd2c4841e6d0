//! A small OCI distribution client over reqwest (HTTP/1.1, keep-alive): monolithic blob
//! uploads, manifest pushes, and timed manifest GETs with the `Accept` headers Docker sends.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use sha2::{Digest as _, Sha256};

/// The OCI image manifest media type.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The manifest media types `dockerd` (20.10) accepts when pulling, one `Accept` header each,
/// in its order.
const DOCKER_ACCEPT: [&str; 6] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
];

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An HTTP/1.1 keep-alive client.
pub(crate) fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(300))
        .tcp_nodelay(true)
        .build()?)
}

/// The `Accept` headers of a Docker manifest request.
pub(crate) fn docker_accept() -> HeaderMap {
    let mut h = HeaderMap::new();
    for t in DOCKER_ACCEPT {
        h.append(ACCEPT, HeaderValue::from_static(t));
    }
    h
}

/// A registry's base URL.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    pub(crate) http: reqwest::Client,
    /// `http://host:port`.
    pub(crate) base: String,
}

impl Registry {
    pub(crate) fn new(http: &reqwest::Client, host_port: &str) -> Self {
        Self {
            http: http.clone(),
            base: format!("http://{host_port}"),
        }
    }

    /// Uploads `data` as one blob (POST, then PUT with the body and the digest) and returns
    /// its digest.
    pub(crate) async fn push_blob(&self, repo: &str, data: &[u8]) -> anyhow::Result<String> {
        let digest = sha256(data);
        let resp = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .send()
            .await
            .with_context(|| format!("starting an upload to {}", self.base))?;
        if resp.status().as_u16() != 202 {
            bail!(
                "POST {}/v2/{repo}/blobs/uploads/ answered {}: {}",
                self.base,
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .context("upload answered no Location")?
            .to_str()?
            .to_owned();
        let url = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let resp = self
            .http
            .put(format!("{url}{sep}digest={digest}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await?;
        if resp.status().as_u16() != 201 {
            bail!(
                "finishing the upload of {digest} to {} answered {}: {}",
                self.base,
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(digest)
    }

    /// PUTs an OCI manifest by tag (or digest) and returns its digest.
    pub(crate) async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &[u8],
    ) -> anyhow::Result<String> {
        let resp = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header(CONTENT_TYPE, OCI_MANIFEST)
            .body(manifest.to_vec())
            .send()
            .await?;
        if resp.status().as_u16() != 201 {
            bail!(
                "PUT {}/v2/{repo}/manifests/{reference} answered {}: {}",
                self.base,
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(sha256(manifest))
    }

    /// One timed `GET /v2/<repo>/manifests/<reference>` with Docker's `Accept` headers, from
    /// sending the request to the last body byte. Checks the status and that the body hashes
    /// to `want` (after the clock stopped).
    pub(crate) async fn timed_get_manifest(
        &self,
        accept: &HeaderMap,
        repo: &str,
        reference: &str,
        want: &str,
    ) -> anyhow::Result<Duration> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let req = self.http.get(&url).headers(accept.clone()).build()?;
        let started = Instant::now();
        let resp = self
            .http
            .execute(req)
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let took = started.elapsed();
        ensure!(
            status.as_u16() == 200,
            "GET {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let got = sha256(&body);
        ensure!(got == want, "GET {url} returned manifest {got}, not {want}");
        Ok(took)
    }
}

/// A small OCI image manifest over `config` and `layer` (digest, size); `n` goes into an
/// annotation so that every `n` gives a distinct manifest.
pub(crate) fn manifest(config: (&str, usize), layer: (&str, usize), n: Option<u64>) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0,
            "size": config.1,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer.0,
            "size": layer.1,
        }],
    });
    if let Some(n) = n {
        m["annotations"] = serde_json::json!({ "dev.shoal.bench.n": n.to_string() });
    }
    m.to_string().into_bytes()
}
