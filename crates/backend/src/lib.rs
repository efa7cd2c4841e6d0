//! Pluggable blob storage: the [`Backend`] trait, its implementations and namespace routing.
//!
//! A backend is the durable home of blobs and tags behind Shoal's caches: origins fetch blobs
//! from it on a miss and write committed uploads back to it; the build-index keeps its tag
//! records in one. Keys are [`ObjectKey`]s,
//! relative paths; blobs live at [`ObjectKey::for_blob`]. Every call also carries the namespace
//! (the repository name) because some backends, such as an upstream registry, need it.
//!
//! Implementations: local filesystem (the embedded default), S3 and S3-compatible stores, GCS,
//! Azure, read-only HTTP, and a read-only upstream OCI registry (pull-through). A
//! [`BackendRouter`] maps namespaces to backends by an ordered list of regexes.
//!
//! Backends are configured with [`BackendConfig`] (tagged by `kind`) and routes with
//! [`RouteConfig`]; [`open`] builds one backend and [`BackendRouter::from_config`] a router.
//! Building never touches the network; failures surface on the first call.
//!
//! This crate is **not** a cache: it never keeps blobs locally, and it does not retry; callers
//! decide about retries using [`BackendError::is_transient`].

mod fs;
mod key;
mod object;
mod registry;
mod router;
mod upstream;

use std::fmt;
use std::io;
use std::ops::Range;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use shoal_core::RepoName;

pub use fs::{FilesystemBackend, TEMP_DIR};
pub use key::{KeyError, ObjectKey};
pub use object::{
    AzureConfig, GcsConfig, HttpConfig, ObjectStoreBackend, ObjectStoreConfigError, S3Config,
};
pub use registry::{RegistryBackend, RegistryConfig, RegistryConfigError};
pub use router::{BackendConfig, BackendRouter, FilesystemConfig, RouteConfig, RouterError, open};
pub use upstream::{UpstreamRegistry, status_error};

/// A stream of byte chunks: request bodies going into a backend and content coming out.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// What a backend knows about a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
}

/// One page of a listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// Only keys that start with this string are listed.
    pub prefix: String,
    /// Resume after this key (the `next` of the previous page); `None` starts at the beginning.
    pub after: Option<ObjectKey>,
    /// Page size; backends may return fewer.
    pub limit: usize,
}

/// A page of keys, in lexicographic order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Keys on this page.
    pub keys: Vec<ObjectKey>,
    /// Pass as [`ListRequest::after`] to get the next page; `None` when this is the last page.
    pub next: Option<ObjectKey>,
}

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No object at that key.
    #[error("object not found")]
    NotFound,
    /// The backend cannot store or delete (HTTP and registry backends are read-only).
    #[error("backend is read-only")]
    ReadOnly,
    /// The requested byte range is outside the object.
    #[error("range {start}..{end} is outside the object of {size} bytes")]
    InvalidRange {
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// Object size.
        size: u64,
    },
    /// The key cannot be used with this backend (e.g. a non-blob key on a registry backend).
    #[error("key {0} is not supported by this backend")]
    UnsupportedKey(ObjectKey),
    /// The body delivered a different number of bytes than announced.
    #[error("body had {actual} bytes, expected {expected}")]
    BodyLength {
        /// Announced length.
        expected: u64,
        /// Delivered length.
        actual: u64,
    },
    /// A failure that may go away if retried: network errors, timeouts, 5xx, throttling.
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A failure that retrying will not fix: denied access, bad configuration, bad request.
    #[error("backend error: {0}")]
    Permanent(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BackendError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Durable blob storage. Implementations are cheap to share (`Arc<dyn Backend>`).
///
/// All methods stream: no implementation buffers a whole object in memory.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// Size of the object at `key`, or [`BackendError::NotFound`].
    async fn stat(&self, namespace: &RepoName, key: &ObjectKey)
    -> Result<ObjectMeta, BackendError>;

    /// The object's content, or the bytes in `range` of it.
    async fn get(
        &self,
        namespace: &RepoName,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BackendError>;

    /// Stores `len` bytes from `body` at `key`, replacing any object there. The object becomes
    /// visible only once complete: readers never see a partial object.
    async fn put(
        &self,
        namespace: &RepoName,
        key: &ObjectKey,
        len: u64,
        body: ByteStream,
    ) -> Result<(), BackendError>;

    /// Removes the object; deleting a missing object is not an error.
    async fn delete(&self, namespace: &RepoName, key: &ObjectKey) -> Result<(), BackendError>;

    /// Lists keys in lexicographic order, one page at a time.
    async fn list(
        &self,
        namespace: &RepoName,
        request: ListRequest,
    ) -> Result<ListPage, BackendError>;
}
