//! The HTTP client of Shoal's origin API (`/v1/namespace/{ns}/…`, see `docs/PROTOCOL.md`):
//! blob stat, streamed get and put, delete, and resumable upload sessions.
//!
//! Bodies stream both ways; nothing buffers a whole blob except [`OriginClient::get_bytes`],
//! which has a size limit. Failures say whether another origin could be tried
//! ([`OriginClientError::Unavailable`]) or the origin refused the request
//! ([`OriginClientError::Rejected`]).
//!
//! [`OriginClient`] talks to one origin; [`OriginPool`] holds one per member of a ring of
//! origins (`shoal-cluster`) and lists them in the order to try for a digest. Deciding what to
//! do on a failure (fail over, give up) stays with the caller.
//!
//! Origins also use it to talk to each other: [`OriginClient::as_replica`] marks requests with
//! [`REPLICA_HEADER`] (answer from the cache only; store a copy without replicating it further)
//! and [`OriginClient::list_blobs`] pages through an origin's cache for repair.

mod pool;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::{Body, Client, Method, RequestBuilder, Response, StatusCode, Url};
use serde::{Deserialize, Serialize};
use shoal_core::{Digest, RepoName, error_chain};

pub use pool::OriginPool;

/// A stream of body bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// The request header (value `1`) with which origins talk to sibling origins: a `HEAD` or
/// `GET` is answered from the origin's local cache only (`404` if it is not cached; never a
/// backend fetch), and a `PUT` stores the blob (and writes it back as usual) without
/// replicating it further.
pub const REPLICA_HEADER: &str = "shoal-replica";

/// One page of an origin's cache listing (`GET /v1/blobs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobPage {
    /// Cached blobs in digest order.
    pub blobs: Vec<BlobEntry>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<Digest>,
}

/// A blob in an origin's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The namespaces it was stored under (empty for blobs cached before origins recorded
    /// them).
    pub namespaces: Vec<RepoName>,
}

/// Most of an error body read to describe a failure.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why an origin request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginClientError {
    /// Connecting, sending or reading failed, or the origin answered 5xx: another origin (or a
    /// retry) may succeed.
    #[error("origin {origin} unavailable: {reason}")]
    Unavailable {
        /// The origin's base URL.
        origin: String,
        /// What went wrong.
        reason: String,
    },
    /// The origin refused the request (4xx), with its error code (e.g. `DIGEST_INVALID`).
    #[error("origin refused the request ({status} {code}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The error code from the body (`UNKNOWN` if there was none).
        code: String,
        /// The error message.
        message: String,
    },
    /// The base URL is not an http(s) URL.
    #[error("invalid origin URL {0:?}")]
    InvalidUrl(String),
}

impl OriginClientError {
    /// The error code, for rejections.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// An upload session's progress after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadProgress {
    /// Bytes received so far.
    pub offset: u64,
}

/// A client of one origin.
#[derive(Debug, Clone)]
pub struct OriginClient {
    http: Client,
    base: String,
    /// Whether requests carry [`REPLICA_HEADER`].
    replica: bool,
}

impl OriginClient {
    /// A client of the origin at `base_url` (`http://host:port`). Connections time out after
    /// 5 s and stalled reads after 60 s; there is no overall timeout (blobs can be huge).
    pub fn new(base_url: &str) -> Result<Self, OriginClientError> {
        let ok = Url::parse(base_url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !ok {
            return Err(OriginClientError::InvalidUrl(base_url.to_owned()));
        }
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| OriginClientError::InvalidUrl(format!("{base_url}: {e}")))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            replica: false,
        })
    }

    /// The same client (sharing its connections), sending [`REPLICA_HEADER`] with every
    /// request: for origins talking to sibling origins. `stat` and `get` then see only the
    /// sibling's cache, and `put` stores a replica that is not replicated further.
    pub fn as_replica(&self) -> Self {
        Self {
            replica: true,
            ..self.clone()
        }
    }

    /// A page of the origin's cache: up to `limit` blobs whose digests sort after `after`
    /// (the origin caps `limit`). Follow [`BlobPage::next`] for the rest.
    pub async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<BlobPage, OriginClientError> {
        let mut url = format!("{}/v1/blobs?limit={limit}", self.base);
        if let Some(after) = after {
            url.push_str(&format!("&after={after}"));
        }
        let resp = self
            .check(self.send(self.request(Method::GET, url)).await?)
            .await?;
        resp.json::<BlobPage>()
            .await
            .map_err(|e| self.unavailable(format!("reading blob listing: {}", error_chain(&e))))
    }

    /// A cached blob's size and namespaces (`GET /v1/blobs/{digest}`). `None` if the origin
    /// does not have it in its cache.
    pub async fn blob_entry(
        &self,
        digest: &Digest,
    ) -> Result<Option<BlobEntry>, OriginClientError> {
        let url = format!("{}/v1/blobs/{digest}", self.base);
        let resp = self.send(self.request(Method::GET, url)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp).await?;
        resp.json::<BlobEntry>()
            .await
            .map(Some)
            .map_err(|e| self.unavailable(format!("reading a blob entry: {}", error_chain(&e))))
    }

    fn request(&self, method: Method, url: String) -> RequestBuilder {
        let req = self.http.request(method, url);
        if self.replica {
            req.header(REPLICA_HEADER, "1")
        } else {
            req
        }
    }

    /// The origin's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, ns: &RepoName, rest: &str) -> String {
        // Repository names use only [a-z0-9._/-]: `/` is the only character to encode.
        format!(
            "{}/v1/namespace/{}/{rest}",
            self.base,
            ns.as_str().replace('/', "%2F")
        )
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> OriginClientError {
        OriginClientError::Unavailable {
            origin: self.base.clone(),
            reason: reason.to_string(),
        }
    }

    async fn send(&self, req: RequestBuilder) -> Result<Response, OriginClientError> {
        req.send()
            .await
            .map_err(|e| self.unavailable(error_chain(&e)))
    }

    /// Turns a non-success response into an error.
    async fn check(&self, resp: Response) -> Result<Response, OriginClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let (code, message) = error_body(resp).await;
        if status.is_server_error() {
            return Err(self.unavailable(format!("{status} {code}: {message}")));
        }
        Err(OriginClientError::Rejected {
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// The blob's size, or `None` if the origin (and its backend) does not have it.
    pub async fn stat(
        &self,
        ns: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, OriginClientError> {
        let resp = self
            .send(self.request(Method::HEAD, self.url(ns, &format!("blobs/{digest}"))))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp).await?;
        content_length(&resp)
            .map(Some)
            .ok_or_else(|| self.unavailable("HEAD answer without Content-Length"))
    }

    /// Streams the blob: its size and its bytes. `None` if the origin does not have it. The
    /// stream ends with an error if fewer bytes than the size arrive.
    pub async fn get(
        &self,
        ns: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(u64, ByteStream)>, OriginClientError> {
        let resp = self
            .send(self.request(Method::GET, self.url(ns, &format!("blobs/{digest}"))))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp).await?;
        let size = content_length(&resp)
            .ok_or_else(|| self.unavailable("GET answer without Content-Length"))?;
        let stream = resp
            .bytes_stream()
            .map_err(|e| std::io::Error::other(error_chain(&e)));
        Ok(Some((size, Box::pin(stream))))
    }

    /// Streams `start..end` of the blob (a ranged GET). `None` if the origin does not have it.
    pub async fn get_range(
        &self,
        ns: &RepoName,
        digest: &Digest,
        range: std::ops::Range<u64>,
    ) -> Result<Option<ByteStream>, OriginClientError> {
        if range.is_empty() {
            return Ok(Some(Box::pin(futures_util::stream::empty())));
        }
        let req = self
            .request(Method::GET, self.url(ns, &format!("blobs/{digest}")))
            .header(
                reqwest::header::RANGE,
                format!("bytes={}-{}", range.start, range.end - 1),
            );
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp).await?;
        let stream = resp
            .bytes_stream()
            .map_err(|e| std::io::Error::other(error_chain(&e)));
        Ok(Some(Box::pin(stream)))
    }

    /// The whole blob in memory, for small blobs such as manifests. Blobs larger than `limit`
    /// are refused (`Rejected` with code `SIZE_INVALID`).
    pub async fn get_bytes(
        &self,
        ns: &RepoName,
        digest: &Digest,
        limit: usize,
    ) -> Result<Option<Bytes>, OriginClientError> {
        let Some((size, mut stream)) = self.get(ns, digest).await? else {
            return Ok(None);
        };
        if size > limit as u64 {
            return Err(OriginClientError::Rejected {
                status: 413,
                code: "SIZE_INVALID".into(),
                message: format!("blob is {size} bytes; the limit is {limit}"),
            });
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.unavailable(e))?;
            if buf.len() + chunk.len() > limit {
                return Err(self.unavailable("blob grew past its Content-Length"));
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.len() as u64 != size {
            return Err(self.unavailable(format!("got {} of {size} bytes", buf.len())));
        }
        Ok(Some(Bytes::from(buf)))
    }

    /// Uploads a whole blob in one request (the origin verifies `digest` before storing it).
    /// Returns the stored size.
    pub async fn put(
        &self,
        ns: &RepoName,
        digest: &Digest,
        body: ByteStream,
        size: Option<u64>,
    ) -> Result<u64, OriginClientError> {
        let mut req = self
            .request(Method::PUT, self.url(ns, &format!("blobs/{digest}")))
            .body(Body::wrap_stream(body));
        if let Some(size) = size {
            req = req.header(reqwest::header::CONTENT_LENGTH, size);
        }
        self.check(self.send(req).await?).await?;
        // The origin answers 201 without a size; ask (cheap: the blob is in its cache).
        self.stat(ns, digest)
            .await?
            .ok_or_else(|| self.unavailable("blob missing right after upload"))
    }

    /// Deletes the blob from the origin and its backend. False if it was not there.
    pub async fn delete(&self, ns: &RepoName, digest: &Digest) -> Result<bool, OriginClientError> {
        let resp = self
            .send(self.request(Method::DELETE, self.url(ns, &format!("blobs/{digest}"))))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(resp).await?;
        Ok(true)
    }

    /// Starts an upload session; returns its id.
    pub async fn start_upload(&self, ns: &RepoName) -> Result<String, OriginClientError> {
        let resp = self
            .send(self.request(Method::POST, self.url(ns, "uploads")))
            .await?;
        let resp = self.check(resp).await?;
        resp.headers()
            .get("upload-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| self.unavailable("upload answer without an upload id"))
    }

    /// Bytes the session has received. `None` if the session is unknown.
    pub async fn upload_offset(
        &self,
        ns: &RepoName,
        id: &str,
    ) -> Result<Option<u64>, OriginClientError> {
        let resp = self
            .send(self.request(Method::GET, self.url(ns, &format!("uploads/{id}"))))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp).await?;
        Ok(Some(progress(&resp).ok_or_else(|| {
            self.unavailable("upload status without a Range header")
        })?))
    }

    /// Appends a chunk that starts at `offset`. Returns the new offset. A wrong offset is
    /// `Rejected` with status 416.
    pub async fn upload_chunk(
        &self,
        ns: &RepoName,
        id: &str,
        offset: u64,
        body: ByteStream,
        len: Option<u64>,
    ) -> Result<u64, OriginClientError> {
        let mut req = self
            .request(Method::PATCH, self.url(ns, &format!("uploads/{id}")))
            .body(Body::wrap_stream(body));
        if let Some(len) = len {
            req = req.header(reqwest::header::CONTENT_LENGTH, len);
            if len > 0 {
                req = req.header(
                    reqwest::header::CONTENT_RANGE,
                    format!("{offset}-{}", offset + len - 1),
                );
            }
        }
        let resp = self.check(self.send(req).await?).await?;
        progress(&resp).ok_or_else(|| self.unavailable("chunk answer without a Range header"))
    }

    /// Appends the optional last chunk and commits the upload as `digest` (verified by the
    /// origin; a mismatch is `Rejected` with code `DIGEST_INVALID` and stores nothing).
    pub async fn finish_upload(
        &self,
        ns: &RepoName,
        id: &str,
        digest: &Digest,
        last_chunk: Option<ByteStream>,
    ) -> Result<(), OriginClientError> {
        let mut req = self.request(
            Method::PUT,
            self.url(ns, &format!("uploads/{id}?digest={digest}")),
        );
        req = match last_chunk {
            Some(body) => req.body(Body::wrap_stream(body)),
            None => req.header(reqwest::header::CONTENT_LENGTH, 0),
        };
        self.check(self.send(req).await?).await?;
        Ok(())
    }

    /// Abandons an upload session.
    pub async fn cancel_upload(&self, ns: &RepoName, id: &str) -> Result<(), OriginClientError> {
        let resp = self
            .send(self.request(Method::DELETE, self.url(ns, &format!("uploads/{id}"))))
            .await?;
        self.check(resp).await?;
        Ok(())
    }
}

fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Bytes received, from an upload answer's `Range: 0-<last>` (`0-0` may mean empty; the
/// origin sends `Shoal-Upload-Offset` to disambiguate).
fn progress(resp: &Response) -> Option<u64> {
    if let Some(v) = resp.headers().get("shoal-upload-offset") {
        return v.to_str().ok()?.parse().ok();
    }
    let range = resp.headers().get(reqwest::header::RANGE)?.to_str().ok()?;
    let (_, last) = range.split_once('-')?;
    let last: u64 = last.parse().ok()?;
    Some(last + 1)
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: String,
    #[serde(default)]
    message: String,
}

/// The first error code and message of an OCI-style error body, or the text.
async fn error_body(mut resp: Response) -> (String, String) {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(&body)
        && let Some(first) = parsed.errors.into_iter().next()
    {
        return (first.code, first.message);
    }
    let text = String::from_utf8_lossy(&body)
        .trim()
        .chars()
        .take(500)
        .collect();
    ("UNKNOWN".to_owned(), text)
}
