//! The agent as a registry mirror: containerd (with a `hosts.toml` naming the agent) sends
//! `GET /v2/<name>/manifests/<ref>?ns=docker.io`; Shoal answers first, and when it has no such
//! image (404) or cannot serve it now (503) the request goes to the allow-listed upstream of
//! that `ns` (`[[mirrors]]`), streamed and digest-verified. An `ns` that is not configured is
//! answered from Shoal alone: the agent never dials a host a request names (no SSRF).
//!
//! Upstream manifests (≤ 4 MiB) are read whole and checked against the digest they were
//! asked by, or the `Docker-Content-Digest` the upstream gave; blobs are streamed chunk by
//! chunk and the last chunk is held back until the whole body's digest matches, so a corrupt
//! or truncated upstream body never completes at the client.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use shoal_backend::{RegistryConfig, UpstreamRegistry};
use shoal_core::{Digest, RepoName, Tag};
use shoal_registry::RegistryError;
use shoal_registry::manifest::MAX_MANIFEST_BYTES;
use shoal_runtime::metrics::Metrics;

use crate::config::MirrorConfig;

const DIGEST_HEADER: &str = "docker-content-digest";

/// The configured upstreams, by the registry host containerd puts in `?ns=`.
#[derive(Debug)]
pub(crate) struct Mirrors {
    by_registry: HashMap<String, Arc<UpstreamRegistry>>,
    default: Option<Arc<UpstreamRegistry>>,
    fetches: Counter,
    failures: Counter,
}

impl Mirrors {
    /// Builds a client per `[[mirrors]]` entry (reading password files); no request is made.
    pub(crate) fn new(configs: &[MirrorConfig], metrics: &Metrics) -> Result<Self, String> {
        let mut by_registry = HashMap::new();
        let mut default = None;
        for c in configs {
            let password = c
                .password_file
                .as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                        .map_err(|e| format!("mirror {}: {}: {e}", c.registry, p.display()))
                })
                .transpose()?;
            let upstream = UpstreamRegistry::new(&RegistryConfig {
                url: c.base_url(),
                username: c.username.clone(),
                password,
                repository_prefix: String::new(),
                timeout_secs: c.timeout.as_secs().max(1),
            })
            .map_err(|e| format!("mirror {}: {e}", c.registry))?;
            let upstream = Arc::new(upstream);
            let key = c.registry.trim().to_ascii_lowercase();
            if key.is_empty() || by_registry.insert(key, Arc::clone(&upstream)).is_some() {
                return Err(format!(
                    "mirror registry {:?} empty or repeated",
                    c.registry
                ));
            }
            if c.default && default.replace(upstream).is_some() {
                return Err("at most one mirror may be the default".into());
            }
        }
        Ok(Self {
            by_registry,
            default,
            fetches: metrics.register(
                "mirror_upstream_fetches",
                "Pulls answered from an upstream registry ([[mirrors]])",
                Counter::default(),
            ),
            failures: metrics.register(
                "mirror_upstream_failures",
                "Upstream pulls that failed (unreachable, refused, digest mismatch)",
                Counter::default(),
            ),
        })
    }

    fn upstream(&self, ns: Option<&str>) -> Option<&Arc<UpstreamRegistry>> {
        match ns {
            Some(ns) => self.by_registry.get(&ns.to_ascii_lowercase()),
            None => self.default.as_ref(),
        }
    }
}

/// What a mirrored request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Manifest(RepoName, Reference),
    Blob(RepoName, Digest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tag(t) => t.fmt(f),
            Self::Digest(d) => d.fmt(f),
        }
    }
}

/// `/v2/<name>/manifests/<ref>` or `/v2/<name>/blobs/<digest>`, every part validated (so
/// nothing but a valid repository path reaches the upstream URL).
fn parse_target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/v2/")?;
    let (before, last) = rest.rsplit_once('/')?;
    let (name, kind) = before.rsplit_once('/')?;
    let name: RepoName = name.parse().ok()?;
    match kind {
        "manifests" => {
            let reference = match last.parse::<Digest>() {
                Ok(d) => Reference::Digest(d),
                Err(_) => Reference::Tag(last.parse().ok()?),
            };
            Some(Target::Manifest(name, reference))
        }
        "blobs" => Some(Target::Blob(name, last.parse().ok()?)),
        _ => None,
    }
}

/// The `ns` query parameter, if any.
fn ns_param(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "ns")
        .map(|(_, v)| v.into_owned())
}

/// Middleware over the agent's registry: Shoal first, then the request's upstream.
pub(crate) async fn layer(
    State(mirrors): State<Arc<Mirrors>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return next.run(request).await;
    }
    let ns = ns_param(request.uri().query());
    let Some(upstream) = mirrors.upstream(ns.as_deref()).cloned() else {
        return next.run(request).await;
    };
    let Some(target) = parse_target(request.uri().path()) else {
        return next.run(request).await;
    };
    let accept: Vec<HeaderValue> = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .cloned()
        .collect();
    let shoal = next.run(request).await;
    if !matches!(
        shoal.status(),
        StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return shoal;
    }
    mirrors.fetches.inc();
    match pull(&upstream, &method, &target, accept).await {
        Ok(Some(resp)) => resp,
        // The upstream has no such image either: Shoal's own answer stands.
        Ok(None) => shoal,
        Err(message) => {
            mirrors.failures.inc();
            tracing::warn!(
                upstream = upstream.base(),
                ?target,
                "mirror pull failed: {message}"
            );
            let mut resp = RegistryError::Unavailable(message).into_response();
            resp.headers_mut().insert(
                HeaderName::from_static("docker-distribution-api-version"),
                HeaderValue::from_static("registry/2.0"),
            );
            resp
        }
    }
}

/// Fetches `target` from `upstream`: `Ok(None)` if it answers 404.
async fn pull(
    upstream: &UpstreamRegistry,
    method: &Method,
    target: &Target,
    accept: Vec<HeaderValue>,
) -> Result<Option<Response>, String> {
    let (repo, rest) = match target {
        Target::Manifest(name, r) => (name, format!("manifests/{r}")),
        Target::Blob(name, d) => (name, format!("blobs/{d}")),
    };
    let url = upstream
        .url(repo.as_str(), &rest)
        .map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::new();
    for v in accept {
        headers.append(header::ACCEPT, v);
    }
    let resp = upstream
        .send(method.clone(), repo.as_str(), &url, &headers)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let given_digest = resp
        .headers()
        .get(DIGEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Digest>().ok());
    // From the header: reqwest's `content_length()` is the body's size, 0 for a HEAD.
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expected = match target {
        Target::Manifest(_, Reference::Digest(d)) | Target::Blob(_, d) => Some(*d),
        Target::Manifest(_, Reference::Tag(_)) => given_digest,
    };
    let mut out = Response::builder().status(StatusCode::OK);
    if let Some(ct) = content_type {
        out = out.header(header::CONTENT_TYPE, ct);
    }
    if *method == Method::HEAD {
        if let Some(d) = expected {
            out = out.header(DIGEST_HEADER, d.to_string());
        }
        if let Some(n) = length {
            out = out.header(header::CONTENT_LENGTH, n);
        }
        return finish(out, Body::empty());
    }
    match (target, expected) {
        (Target::Manifest(..), _) => {
            let bytes = read_limited(resp, MAX_MANIFEST_BYTES).await?;
            let d =
                expected.unwrap_or_else(|| Digest::compute(shoal_core::Algorithm::Sha256, &bytes));
            let actual = Digest::compute(d.algorithm(), &bytes);
            if actual != d {
                return Err(format!("{url}: manifest is {actual}, expected {d}"));
            }
            out = out.header(DIGEST_HEADER, d.to_string());
            out = out.header(header::CONTENT_LENGTH, bytes.len());
            finish(out, Body::from(bytes))
        }
        (Target::Blob(..), Some(d)) => {
            out = out.header(DIGEST_HEADER, d.to_string());
            if let Some(n) = length {
                out = out.header(header::CONTENT_LENGTH, n);
            }
            let body = verified(resp.bytes_stream().boxed(), d, length);
            finish(out, Body::from_stream(body))
        }
        (Target::Blob(..), None) => Err("unreachable: a blob is always addressed by digest".into()),
    }
}

fn finish(builder: axum::http::response::Builder, body: Body) -> Result<Option<Response>, String> {
    builder
        .header("docker-distribution-api-version", "registry/2.0")
        .body(body)
        .map(Some)
        .map_err(|e| format!("building the response: {e}"))
}

/// Reads a body of at most `limit` bytes.
async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("upstream manifest larger than {limit} bytes"));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading the upstream manifest: {e}"))?;
        if buf.len() + chunk.len() > limit {
            return Err(format!("upstream manifest larger than {limit} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Passes `body` through, hashing it, and releases its last chunk only once the whole body
/// hashes to `digest` (and has `length` bytes, when known); otherwise it ends in an error, so
/// the client never receives a complete body that does not verify.
fn verified<S, E>(
    body: S,
    digest: Digest,
    length: Option<u64>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display,
{
    struct State<S> {
        body: S,
        hasher: Option<shoal_core::DigestHasher>,
        held: Option<Bytes>,
        seen: u64,
    }
    let state = State {
        body,
        hasher: Some(digest.hasher()),
        held: None,
        seen: 0,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        let hasher = st.hasher.as_mut()?;
        loop {
            match st.body.next().await {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    hasher.update(&chunk);
                    st.seen += chunk.len() as u64;
                    if let Some(prev) = st.held.replace(chunk) {
                        return Some((Ok(prev), st));
                    }
                }
                Some(Err(e)) => {
                    st.hasher = None;
                    let e = std::io::Error::other(format!("upstream body: {e}"));
                    return Some((Err(e), st));
                }
                None => {
                    let actual = st.hasher.take()?.finalize();
                    if actual != digest || length.is_some_and(|n| n != st.seen) {
                        let e = std::io::Error::other(format!(
                            "upstream blob is {actual} ({} bytes), expected {digest}",
                            st.seen
                        ));
                        tracing::warn!("{e}");
                        return Some((Err(e), st));
                    }
                    return st.held.take().map(|last| (Ok(last), st));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_util::TryStreamExt;
    use shoal_core::Algorithm;

    #[test]
    fn targets_parse_and_bad_paths_do_not() {
        let d = Digest::compute(Algorithm::Sha256, b"x");
        assert_eq!(
            parse_target(&format!("/v2/library/busybox/blobs/{d}")),
            Some(Target::Blob("library/busybox".parse().unwrap(), d))
        );
        assert!(matches!(
            parse_target("/v2/a/b/manifests/latest"),
            Some(Target::Manifest(_, Reference::Tag(_)))
        ));
        assert!(matches!(
            parse_target(&format!("/v2/a/manifests/{d}")),
            Some(Target::Manifest(_, Reference::Digest(_)))
        ));
        for bad in [
            "/v2/",
            "/v2/a/blobs/uploads/",
            "/v2/a/blobs/latest",
            "/v2/../x/manifests/latest",
            "/v2/a%2F..%2Fb/manifests/latest",
            "/v2/a/tags/list",
            "/v2/@evil.example/manifests/latest",
            "/v1/a/manifests/latest",
        ] {
            assert_eq!(parse_target(bad), None, "{bad}");
        }
        assert_eq!(ns_param(Some("ns=docker.io")).as_deref(), Some("docker.io"));
        assert_eq!(ns_param(Some("a=1&ns=ghcr.io")).as_deref(), Some("ghcr.io"));
        assert_eq!(ns_param(Some("a=1")), None);
        assert_eq!(ns_param(None), None);
    }

    #[test]
    fn unknown_ns_has_no_upstream() {
        let metrics = Metrics::new("test");
        let config = |registry: &str, default| MirrorConfig {
            registry: registry.into(),
            url: Some("http://127.0.0.1:9".into()),
            default,
            username: None,
            password_file: None,
            timeout: std::time::Duration::from_secs(1),
        };
        let m = Mirrors::new(
            &[config("docker.io", true), config("ghcr.io", false)],
            &metrics,
        )
        .unwrap();
        assert!(m.upstream(Some("Docker.io")).is_some());
        assert!(m.upstream(Some("evil.example")).is_none());
        assert!(m.upstream(None).is_some());
        let twice = [config("a.io", true), config("b.io", true)];
        assert!(Mirrors::new(&twice, &metrics).is_err());
        let repeated = [config("a.io", false), config("A.io", false)];
        assert!(Mirrors::new(&repeated, &metrics).is_err());
    }

    async fn collect(chunks: Vec<&'static [u8]>, digest: Digest) -> (Vec<u8>, bool) {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        let mut out = Vec::new();
        let mut s = Box::pin(verified(stream, digest, None));
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => return (out, false),
            }
        }
        (out, true)
    }

    #[tokio::test]
    async fn verified_streams_hold_back_the_last_chunk() {
        let good = Digest::compute(Algorithm::Sha256, b"hello world");
        let (out, ok) = collect(vec![b"hello", b" ", b"world"], good).await;
        assert!(ok);
        assert_eq!(out, b"hello world");
        // Corrupt: everything but the last chunk, then an error.
        let (out, ok) = collect(vec![b"hello", b" ", b"WORLD"], good).await;
        assert!(!ok);
        assert_eq!(out, b"hello ");
        // A wrong length fails even with the right digest.
        let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(
            b"hello world",
        ))]);
        let r: Result<Vec<Bytes>, _> = verified(stream, good, Some(12)).try_collect().await;
        assert!(r.is_err());
    }
}
