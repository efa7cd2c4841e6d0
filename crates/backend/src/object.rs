//! Cloud object stores (S3 and S3-compatible, GCS, Azure Blob Storage, plain HTTP) through the
//! `object_store` crate.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use serde::{Deserialize, Serialize};
use shoal_core::RepoName;

use crate::{Backend, BackendError, ByteStream, ListPage, ListRequest, ObjectKey, ObjectMeta};

/// Bodies shorter than this are sent with a single PUT; longer ones as a multipart upload.
const MULTIPART_THRESHOLD: u64 = 5 * 1024 * 1024;
/// Size of each part of a multipart upload (S3's minimum part size is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded concurrently during a multipart upload.
const PART_CONCURRENCY: usize = 4;

/// Settings shared by every object store kind.
struct ObjectStoreCommon {
    timeout_secs: u64,
    max_retries: usize,
}

fn default_timeout_secs() -> u64 {
    30
}

fn default_max_retries() -> usize {
    2
}

impl ObjectStoreCommon {
    fn client_options(&self) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(Duration::from_secs(self.timeout_secs.max(1)))
            .with_connect_timeout(Duration::from_secs(self.timeout_secs.clamp(1, 10)))
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: Duration::from_secs(self.timeout_secs.max(1) * 3),
            ..RetryConfig::default()
        }
    }
}

/// Amazon S3 or an S3-compatible store (MinIO, Ceph, R2, ...).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name. Required.
    pub bucket: String,
    /// Region. Default: from `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL for S3-compatible stores, e.g. `http://127.0.0.1:9000`. Default: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Use path-style addressing (`<endpoint>/<bucket>/<key>`), as most S3-compatible stores
    /// need. Default: false (virtual-hosted style, `<bucket>.<endpoint>/<key>`).
    #[serde(default)]
    pub path_style: bool,
    /// Allow plain `http://` endpoints. Default: false.
    #[serde(default)]
    pub allow_http: bool,
    /// Access key id. Default: `AWS_ACCESS_KEY_ID` or the ambient AWS credentials (instance
    /// profile, web identity, ...).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key. Default: `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials. Default: `AWS_SESSION_TOKEN`.
    #[serde(default)]
    pub session_token: Option<String>,
    /// Directory inside the bucket or container under which all keys are stored, without
    /// leading or trailing `/`. Default: none (keys are stored at the top level).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Timeout of each HTTP request, in seconds. Default: 30.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries the object store client makes by itself for transient failures within one
    /// call, e.g. for one part of a multipart upload. Default: 2. Use 0 to leave all retrying
    /// to the caller.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
}

/// Google Cloud Storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    /// Bucket name. Required.
    pub bucket: String,
    /// Path of a service account JSON key file. Default: `GOOGLE_SERVICE_ACCOUNT`,
    /// `GOOGLE_APPLICATION_CREDENTIALS` or the ambient credentials.
    #[serde(default)]
    pub service_account_path: Option<String>,
    /// Directory inside the bucket or container under which all keys are stored, without
    /// leading or trailing `/`. Default: none (keys are stored at the top level).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Timeout of each HTTP request, in seconds. Default: 30.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries the object store client makes by itself for transient failures within one
    /// call, e.g. for one part of a multipart upload. Default: 2. Use 0 to leave all retrying
    /// to the caller.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
}

/// Azure Blob Storage.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Storage account name. Default: `AZURE_STORAGE_ACCOUNT_NAME`.
    #[serde(default)]
    pub account: Option<String>,
    /// Container name. Required.
    pub container: String,
    /// Storage account access key. Default: `AZURE_STORAGE_ACCOUNT_KEY` or the ambient
    /// credentials.
    #[serde(default)]
    pub access_key: Option<String>,
    /// Talk to the local Azurite emulator instead of Azure. Default: false.
    #[serde(default)]
    pub use_emulator: bool,
    /// Directory inside the bucket or container under which all keys are stored, without
    /// leading or trailing `/`. Default: none (keys are stored at the top level).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Timeout of each HTTP request, in seconds. Default: 30.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries the object store client makes by itself for transient failures within one
    /// call, e.g. for one part of a multipart upload. Default: 2. Use 0 to leave all retrying
    /// to the caller.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
}

/// A read-only plain HTTP server (objects are fetched from `<url>/<prefix>/<key>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Base URL. Required.
    pub url: String,
    /// Directory inside the bucket or container under which all keys are stored, without
    /// leading or trailing `/`. Default: none (keys are stored at the top level).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Timeout of each HTTP request, in seconds. Default: 30.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries the object store client makes by itself for transient failures within one
    /// call, e.g. for one part of a multipart upload. Default: 2. Use 0 to leave all retrying
    /// to the caller.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
}

fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("prefix", &self.prefix)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureConfig")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("access_key", &redacted(&self.access_key))
            .field("use_emulator", &self.use_emulator)
            .field("prefix", &self.prefix)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

macro_rules! impl_common {
    ($($t:ty),*) => {$(
        impl $t {
            fn common(&self) -> ObjectStoreCommon {
                ObjectStoreCommon {
                    timeout_secs: self.timeout_secs,
                    max_retries: self.max_retries,
                }
            }
        }
    )*};
}

impl_common!(S3Config, GcsConfig, AzureConfig, HttpConfig);

/// Why an object store backend could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("cannot configure {kind} backend: {source}")]
pub struct ObjectStoreConfigError {
    kind: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ObjectStoreConfigError {
    fn new(
        kind: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }
}

/// A [`Backend`] over any [`ObjectStore`], with an optional key prefix inside it.
///
/// Keys are stored at `<prefix>/<key>`. Only keys that `object_store` can represent without
/// escaping (no `%`, `{`, `}`, `^`, `` ` ``, `]`, `"`, `>`, `[`, `~`, `<`, `#`, `|`) are
/// accepted, so stored names equal keys; others fail with [`BackendError::UnsupportedKey`].
///
/// Listing relies on the store returning keys in lexicographic order, as S3, GCS and Azure do.
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: Option<String>,
    read_only: bool,
}

impl fmt::Debug for ObjectStoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreBackend")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl ObjectStoreBackend {
    /// Wraps `store`; keys live under `prefix` (leading and trailing `/` are ignored; `None`
    /// or empty means the top level).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Option<String>) -> Self {
        let prefix = prefix
            .map(|p| p.trim_matches('/').to_string())
            .filter(|p| !p.is_empty());
        Self {
            store,
            prefix,
            read_only: false,
        }
    }

    /// Makes the backend refuse writes and deletes with [`BackendError::ReadOnly`].
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// An S3 (or S3-compatible) backend.
    pub fn s3(config: &S3Config) -> Result<Self, ObjectStoreConfigError> {
        use object_store::aws::AmazonS3Builder;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_allow_http(config.allow_http)
            .with_client_options(
                config
                    .common()
                    .client_options()
                    .with_allow_http(config.allow_http),
            )
            .with_retry(config.common().retry());
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let store = builder
            .build()
            .map_err(|e| ObjectStoreConfigError::new("s3", e))?;
        Ok(Self::new(Arc::new(store), config.prefix.clone()))
    }

    /// A Google Cloud Storage backend.
    pub fn gcs(config: &GcsConfig) -> Result<Self, ObjectStoreConfigError> {
        use object_store::gcp::GoogleCloudStorageBuilder;
        let mut builder = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(&config.bucket)
            .with_client_options(config.common().client_options())
            .with_retry(config.common().retry());
        if let Some(path) = &config.service_account_path {
            builder = builder.with_service_account_path(path);
        }
        let store = builder
            .build()
            .map_err(|e| ObjectStoreConfigError::new("gcs", e))?;
        Ok(Self::new(Arc::new(store), config.prefix.clone()))
    }

    /// An Azure Blob Storage backend.
    pub fn azure(config: &AzureConfig) -> Result<Self, ObjectStoreConfigError> {
        use object_store::azure::MicrosoftAzureBuilder;
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_container_name(&config.container)
            .with_use_emulator(config.use_emulator)
            .with_client_options(config.common().client_options())
            .with_retry(config.common().retry());
        if let Some(account) = &config.account {
            builder = builder.with_account(account);
        }
        if let Some(key) = &config.access_key {
            builder = builder.with_access_key(key);
        }
        let store = builder
            .build()
            .map_err(|e| ObjectStoreConfigError::new("azure", e))?;
        Ok(Self::new(Arc::new(store), config.prefix.clone()))
    }

    /// A read-only plain HTTP backend.
    pub fn http(config: &HttpConfig) -> Result<Self, ObjectStoreConfigError> {
        use object_store::http::HttpBuilder;
        let store = HttpBuilder::new()
            .with_url(&config.url)
            .with_client_options(
                config
                    .common()
                    .client_options()
                    .with_allow_http(config.url.starts_with("http:")),
            )
            .with_retry(config.common().retry())
            .build()
            .map_err(|e| ObjectStoreConfigError::new("http", e))?;
        Ok(Self::new(Arc::new(store), config.prefix.clone()).read_only())
    }

    fn path_of(&self, key: &ObjectKey) -> Result<Path, BackendError> {
        let full = match &self.prefix {
            Some(prefix) => format!("{prefix}/{}", key.as_str()),
            None => key.as_str().to_string(),
        };
        let path = Path::from(full.as_str());
        if path.as_ref() != full {
            return Err(BackendError::UnsupportedKey(key.clone()));
        }
        Ok(path)
    }

    /// The key of a listed location, or `None` if it is not under the prefix or not a key.
    fn key_of(&self, location: &Path) -> Option<ObjectKey> {
        let raw = location.as_ref();
        let rel = match &self.prefix {
            Some(prefix) => raw.strip_prefix(prefix.as_str())?.strip_prefix('/')?,
            None => raw,
        };
        ObjectKey::new(rel).ok()
    }

    async fn put_small(
        &self,
        path: &Path,
        len: u64,
        mut body: ByteStream,
    ) -> Result<(), BackendError> {
        // `len` is below the multipart threshold, so this buffer is bounded.
        let mut buf = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut written: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BackendError::Unavailable(Box::new(e)))?;
            written += chunk.len() as u64;
            if written > len {
                return Err(BackendError::BodyLength {
                    expected: len,
                    actual: written,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        if written != len {
            return Err(BackendError::BodyLength {
                expected: len,
                actual: written,
            });
        }
        self.store
            .put(path, PutPayload::from_bytes(buf.freeze()))
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        path: &Path,
        len: u64,
        body: ByteStream,
    ) -> Result<(), BackendError> {
        let upload = self.store.put_multipart(path).await.map_err(map_error)?;
        let mut guard = AbortOnDrop {
            writer: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            path: path.clone(),
        };
        let writer = guard
            .writer
            .as_mut()
            .ok_or_else(|| BackendError::Permanent("multipart writer vanished".into()))?;
        let result = write_parts(writer, len, body).await;
        let Some(writer) = guard.writer.take() else {
            return Err(BackendError::Permanent("multipart writer vanished".into()));
        };
        match result {
            Ok(()) => {
                writer.finish().await.map_err(map_error)?;
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(path = %path, error = %abort, "failed to abort multipart upload");
                }
                Err(e)
            }
        }
    }
}

/// Aborts the multipart upload in the background if the `put` future is dropped mid-way, so a
/// cancelled upload does not leave parts behind.
struct AbortOnDrop {
    writer: Option<WriteMultipart>,
    path: Path,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let path = self.path.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(path = %path, error = %e, "failed to abort cancelled multipart upload");
                }
            });
        }
    }
}

async fn write_parts(
    writer: &mut WriteMultipart,
    len: u64,
    mut body: ByteStream,
) -> Result<(), BackendError> {
    let mut written: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk: Bytes = chunk.map_err(|e| BackendError::Unavailable(Box::new(e)))?;
        written += chunk.len() as u64;
        if written > len {
            return Err(BackendError::BodyLength {
                expected: len,
                actual: written,
            });
        }
        writer
            .wait_for_capacity(PART_CONCURRENCY)
            .await
            .map_err(map_error)?;
        writer.put(chunk);
    }
    if written != len {
        return Err(BackendError::BodyLength {
            expected: len,
            actual: written,
        });
    }
    Ok(())
}

/// Maps an `object_store` error onto the transient/permanent split.
///
/// `Generic` errors carry network failures (connection refused, timeouts, resets) and HTTP
/// statuses without a dedicated variant; they are transient unless they report a 4xx status
/// other than 408 (timeout) and 429 (throttling).
pub(crate) fn map_error(e: object_store::Error) -> BackendError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => BackendError::NotFound,
        E::Generic { .. } | E::JoinError { .. } => {
            if has_permanent_status(&e) {
                BackendError::Permanent(Box::new(e))
            } else {
                BackendError::Unavailable(Box::new(e))
            }
        }
        E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => BackendError::Permanent(Box::new(e)),
        other => BackendError::Unavailable(Box::new(other)),
    }
}

/// Whether the error chain reports an HTTP status that retrying will not fix.
fn has_permanent_status(e: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return false;
        }
        let text = err.to_string();
        if let Some(idx) = text.find("status code: ") {
            let code: String = text[idx + 13..].chars().take(3).collect();
            if let Ok(code) = code.parse::<u16>() {
                return (400..500).contains(&code) && code != 408 && code != 429;
            }
        }
        source = err.source();
    }
    false
}

#[async_trait::async_trait]
impl Backend for ObjectStoreBackend {
    async fn stat(
        &self,
        _namespace: &RepoName,
        key: &ObjectKey,
    ) -> Result<ObjectMeta, BackendError> {
        let path = self.path_of(key)?;
        let meta = self.store.head(&path).await.map_err(map_error)?;
        Ok(ObjectMeta { size: meta.size })
    }

    async fn get(
        &self,
        _namespace: &RepoName,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BackendError> {
        let path = self.path_of(key)?;
        if let Some(r) = &range {
            // Object stores cannot express empty or inverted ranges; answer them from a HEAD.
            if r.start >= r.end {
                let size = self.store.head(&path).await.map_err(map_error)?.size;
                if r.start > r.end || r.end > size {
                    return Err(BackendError::InvalidRange {
                        start: r.start,
                        end: r.end,
                        size,
                    });
                }
                return Ok(futures_util::stream::empty().boxed());
            }
        }
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(e) => {
                let mapped = map_error(e);
                // A range starting past the end is refused by the server (416); tell it apart
                // from other failures by the object's size.
                if let (Some(r), BackendError::Permanent(_) | BackendError::Unavailable(_)) =
                    (&range, &mapped)
                    && let Ok(meta) = self.store.head(&path).await
                    && r.end > meta.size
                {
                    return Err(BackendError::InvalidRange {
                        start: r.start,
                        end: r.end,
                        size: meta.size,
                    });
                }
                return Err(mapped);
            }
        };
        if let Some(r) = range {
            // Servers clamp a range that ends past the object; the contract is to refuse it.
            if result.range != r {
                return Err(BackendError::InvalidRange {
                    start: r.start,
                    end: r.end,
                    size: result.meta.size,
                });
            }
        }
        Ok(result.into_stream().map_err(std::io::Error::from).boxed())
    }

    async fn put(
        &self,
        _namespace: &RepoName,
        key: &ObjectKey,
        len: u64,
        body: ByteStream,
    ) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        let path = self.path_of(key)?;
        if len < MULTIPART_THRESHOLD {
            self.put_small(&path, len, body).await
        } else {
            self.put_multipart(&path, len, body).await
        }
    }

    async fn delete(&self, _namespace: &RepoName, key: &ObjectKey) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        let path = self.path_of(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_error(e)),
        }
    }

    async fn list(
        &self,
        _namespace: &RepoName,
        request: ListRequest,
    ) -> Result<ListPage, BackendError> {
        // object_store matches prefixes by whole segments: list the deepest complete directory
        // of the requested prefix and filter the rest client-side.
        let dir = match request.prefix.rfind('/') {
            Some(idx) => &request.prefix[..idx],
            None => "",
        };
        let full_dir = match (&self.prefix, dir.is_empty()) {
            (Some(p), true) => Some(p.clone()),
            (Some(p), false) => Some(format!("{p}/{dir}")),
            (None, true) => None,
            (None, false) => Some(dir.to_string()),
        };
        let dir_path = full_dir.as_deref().map(Path::from);
        let mut stream = match &request.after {
            Some(after) => {
                let offset = self.path_of(after)?;
                self.store.list_with_offset(dir_path.as_ref(), &offset)
            }
            None => self.store.list(dir_path.as_ref()),
        };
        let limit = request.limit.max(1);
        let mut keys = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(map_error)?;
            let Some(key) = self.key_of(&meta.location) else {
                continue;
            };
            if !key.as_str().starts_with(&request.prefix) {
                if key.as_str() > request.prefix.as_str() {
                    // Sorted listing: nothing further can match.
                    break;
                }
                continue;
            }
            if request.after.as_ref().is_some_and(|after| &key <= after) {
                continue;
            }
            if keys.len() == limit {
                more = true;
                break;
            }
            keys.push(key);
        }
        let next = if more { keys.last().cloned() } else { None };
        Ok(ListPage { keys, next })
    }
}
