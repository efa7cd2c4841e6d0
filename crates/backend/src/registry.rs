//! A read-only pull-through backend over an upstream OCI registry.

use std::fmt;
use std::ops::Range;

use futures_util::{StreamExt, TryStreamExt};
use reqwest::{Method, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use shoal_core::RepoName;
use url::Url;

use crate::upstream::{UpstreamRegistry, status_error};
use crate::{Backend, BackendError, ByteStream, ListPage, ListRequest, ObjectKey, ObjectMeta};

/// An upstream OCI registry to pull blobs from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of the registry, e.g. `https://registry-1.docker.io`. Required.
    pub url: String,
    /// User name for basic auth and for token requests. Default: anonymous.
    #[serde(default)]
    pub username: Option<String>,
    /// Password or access token for `username`. Default: none.
    #[serde(default)]
    pub password: Option<String>,
    /// Prepended to the namespace to form the upstream repository name: with `library/`,
    /// namespace `ubuntu` is fetched from `library/ubuntu`. Default: empty.
    #[serde(default)]
    pub repository_prefix: String,
    /// Connect timeout and the longest wait for any single read, in seconds. Default: 30.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    30
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("repository_prefix", &self.repository_prefix)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// Why a registry backend could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    /// The base URL does not parse or is not http(s).
    #[error("invalid registry url {0:?}")]
    Url(String),
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A read-only backend that fetches blobs from an upstream registry's blob API.
///
/// Only blob keys ([`ObjectKey::for_blob`]) are supported; others fail with
/// [`BackendError::UnsupportedKey`]. `put` and `delete` fail with [`BackendError::ReadOnly`],
/// and `list` fails with a permanent error because the distribution API cannot enumerate
/// blobs (an empty page would wrongly claim there are none).
///
/// Authentication follows the registry's `WWW-Authenticate` challenge: bearer tokens are
/// fetched from the announced realm (with basic credentials if configured) and cached per
/// scope until they expire; a `Basic` challenge is answered with the configured credentials.
pub struct RegistryBackend {
    upstream: UpstreamRegistry,
    repository_prefix: String,
}

impl fmt::Debug for RegistryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBackend")
            .field("upstream", &self.upstream)
            .field("repository_prefix", &self.repository_prefix)
            .finish()
    }
}

impl RegistryBackend {
    /// Builds the backend; no request is made until the first call.
    pub fn new(config: &RegistryConfig) -> Result<Self, RegistryConfigError> {
        Ok(Self {
            upstream: UpstreamRegistry::new(config)?,
            repository_prefix: config.repository_prefix.clone(),
        })
    }

    fn blob_url(
        &self,
        namespace: &RepoName,
        key: &ObjectKey,
    ) -> Result<(String, Url), BackendError> {
        let digest = key
            .blob_digest()
            .ok_or_else(|| BackendError::UnsupportedKey(key.clone()))?;
        let repo = format!("{}{}", self.repository_prefix, namespace.as_str());
        let url = self.upstream.url(&repo, &format!("blobs/{digest}"))?;
        Ok((repo, url))
    }

    async fn send(
        &self,
        method: Method,
        repo: &str,
        url: &Url,
        range: Option<&Range<u64>>,
    ) -> Result<Response, BackendError> {
        let mut headers = header::HeaderMap::new();
        if let Some(r) = range
            && let Ok(v) = format!("bytes={}-{}", r.start, r.end - 1).parse()
        {
            headers.insert(header::RANGE, v);
        }
        self.upstream.send(method, repo, url, &headers).await
    }
}

fn content_length(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Parses `Content-Range: bytes <first>-<last>/<size>` into `(first..last + 1, size)`.
fn content_range(response: &Response) -> Option<(Range<u64>, Option<u64>)> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, size) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    Some((first..last.checked_add(1)?, size.trim().parse().ok()))
}

/// Streams exactly `len` bytes of `stream` after skipping the first `skip`; stops reading once
/// they are delivered and fails with `UnexpectedEof` if the stream ends early.
fn slice_stream(stream: ByteStream, skip: u64, len: u64) -> ByteStream {
    futures_util::stream::unfold(
        (stream, skip, len),
        |(mut stream, mut skip, mut remaining)| async move {
            loop {
                if remaining == 0 {
                    return None;
                }
                let chunk = match stream.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => return Some((Err(e), (stream, skip, 0))),
                    None => {
                        let e = std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("body ended {remaining} bytes early"),
                        );
                        return Some((Err(e), (stream, skip, 0)));
                    }
                };
                let n = chunk.len() as u64;
                if skip >= n {
                    skip -= n;
                    continue;
                }
                // skip < n, and n is a usize.
                let mut part = chunk.slice(usize::try_from(skip).unwrap_or(0)..);
                skip = 0;
                if part.len() as u64 > remaining {
                    part.truncate(usize::try_from(remaining).unwrap_or(usize::MAX));
                }
                remaining -= part.len() as u64;
                if !part.is_empty() {
                    return Some((Ok(part), (stream, skip, remaining)));
                }
            }
        },
    )
    .boxed()
}

#[async_trait::async_trait]
impl Backend for RegistryBackend {
    async fn stat(
        &self,
        namespace: &RepoName,
        key: &ObjectKey,
    ) -> Result<ObjectMeta, BackendError> {
        let (repo, url) = self.blob_url(namespace, key)?;
        let response = self.send(Method::HEAD, &repo, &url, None).await?;
        if !response.status().is_success() {
            return Err(status_error(response.status(), &url));
        }
        let size = content_length(&response).ok_or_else(|| {
            BackendError::Permanent(format!("{url}: HEAD response has no Content-Length").into())
        })?;
        Ok(ObjectMeta { size })
    }

    async fn get(
        &self,
        namespace: &RepoName,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BackendError> {
        let (repo, url) = self.blob_url(namespace, key)?;
        if let Some(r) = &range
            && r.start >= r.end
        {
            // HTTP cannot express an empty range: validate it against the size.
            let size = self.stat(namespace, key).await?.size;
            if r.start > r.end || r.end > size {
                return Err(BackendError::InvalidRange {
                    start: r.start,
                    end: r.end,
                    size,
                });
            }
            return Ok(futures_util::stream::empty().boxed());
        }
        let response = self.send(Method::GET, &repo, &url, range.as_ref()).await?;
        let status = response.status();
        if status == StatusCode::RANGE_NOT_SATISFIABLE
            && let Some(r) = &range
        {
            let size = self.stat(namespace, key).await?.size;
            return Err(BackendError::InvalidRange {
                start: r.start,
                end: r.end,
                size,
            });
        }
        if !status.is_success() {
            return Err(status_error(status, &url));
        }
        let partial = status == StatusCode::PARTIAL_CONTENT;
        let served = if partial {
            content_range(&response)
        } else {
            None
        };
        let total = content_length(&response);
        let body: ByteStream = response
            .bytes_stream()
            .map_err(std::io::Error::other)
            .boxed();
        let Some(r) = range else {
            return Ok(body);
        };
        if partial {
            let Some((served, size)) = served else {
                return Err(BackendError::Permanent(
                    format!("{url}: 206 response without a valid Content-Range").into(),
                ));
            };
            if served.start != r.start || served.end < r.end {
                // The server clamped the range to the object: it extends past the end.
                return Err(BackendError::InvalidRange {
                    start: r.start,
                    end: r.end,
                    size: size.unwrap_or(served.end),
                });
            }
            return Ok(slice_stream(body, 0, r.end - r.start));
        }
        // The server ignored the Range header and sends the whole blob: cut it out here.
        match total {
            Some(size) if r.end > size => Err(BackendError::InvalidRange {
                start: r.start,
                end: r.end,
                size,
            }),
            _ => Ok(slice_stream(body, r.start, r.end - r.start)),
        }
    }

    async fn put(
        &self,
        _namespace: &RepoName,
        _key: &ObjectKey,
        _len: u64,
        _body: ByteStream,
    ) -> Result<(), BackendError> {
        Err(BackendError::ReadOnly)
    }

    async fn delete(&self, _namespace: &RepoName, _key: &ObjectKey) -> Result<(), BackendError> {
        Err(BackendError::ReadOnly)
    }

    async fn list(
        &self,
        _namespace: &RepoName,
        _request: ListRequest,
    ) -> Result<ListPage, BackendError> {
        Err(BackendError::Permanent(
            "an upstream registry cannot list blobs".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_urls() {
        for url in ["not a url", "ftp://x", "file:///tmp"] {
            let config = RegistryConfig {
                url: url.into(),
                username: None,
                password: None,
                repository_prefix: String::new(),
                timeout_secs: 1,
            };
            assert!(RegistryBackend::new(&config).is_err(), "{url}");
        }
    }

    #[tokio::test]
    async fn slices_streams() {
        let chunks: Vec<std::io::Result<bytes::Bytes>> = vec![
            Ok(bytes::Bytes::from_static(b"0123")),
            Ok(bytes::Bytes::from_static(b"4567")),
            Ok(bytes::Bytes::from_static(b"89")),
        ];
        let stream = futures_util::stream::iter(chunks).boxed();
        let out: Vec<bytes::Bytes> = slice_stream(stream, 3, 4).try_collect().await.unwrap();
        assert_eq!(out.concat(), b"3456");
        let short: Vec<std::io::Result<bytes::Bytes>> =
            vec![Ok(bytes::Bytes::from_static(b"0123"))];
        let stream = futures_util::stream::iter(short).boxed();
        let result: std::io::Result<Vec<bytes::Bytes>> =
            slice_stream(stream, 2, 5).try_collect().await;
        assert_eq!(
            result.unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }
}
