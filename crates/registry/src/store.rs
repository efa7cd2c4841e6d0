//! What a registry front end needs from the storage behind it.
//!
//! The proxy implements [`RegistryStore`] over origins and the build-index (read and write);
//! the agent over its swarm and the build-index (read only: [`RegistryStore::writable`] is
//! false and every push answers `UNSUPPORTED`). The HTTP layer ([`crate::router`]) does all
//! parsing, validation and spec error mapping; stores only move bytes and records.

use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use shoal_core::{Digest, RepoName, Tag};

use crate::error::RegistryError;
use crate::manifest::Descriptor;

/// A stream of body bytes (request bodies in, blob contents out).
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// A blob ready to be read: its size, and a way to stream any byte range of it.
pub struct OpenBlob {
    /// Blob size in bytes.
    pub size: u64,
    /// Streams `range` (already validated against `size`). Stores that are still downloading
    /// the blob may stream bytes as they become verified.
    pub read: Box<dyn FnOnce(Range<u64>) -> ByteStream + Send>,
}

impl std::fmt::Debug for OpenBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBlob")
            .field("size", &self.size)
            .finish()
    }
}

/// What the store records about a manifest it holds (for `Content-Type` and the referrers
/// API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The descriptor of the manifest itself: media type, digest, size, artifact type and
    /// annotations.
    pub descriptor: Descriptor,
    /// The manifest it refers to, if any (`subject`).
    pub subject: Option<Digest>,
}

/// An opaque upload session id (`[A-Za-z0-9._~-]{1,256}`, safe in a URL path segment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// Validates an id from a URL.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let ok = !s.is_empty()
            && s.len() <= 256
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(RegistryError::BlobUploadUnknown)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Storage behind the OCI Distribution API. Every method gets validated names and digests.
/// "Not found" is `Ok(None)`/`Ok(false)`; errors are for failures.
#[async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    /// Whether pushes and deletes are accepted.
    fn writable(&self) -> bool;

    // ---- tags and manifests ----

    /// The digest a tag points to.
    async fn resolve_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<Digest>, RegistryError>;

    /// A manifest's bytes, if the repository holds it.
    async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Bytes>, RegistryError>;

    /// Stores a validated manifest (its bytes hash to `record.descriptor.digest`) in the
    /// repository, and points each of `tags` (none, one, or several: a push by digest may
    /// name tags) at it.
    async fn put_manifest(
        &self,
        repo: &RepoName,
        bytes: Bytes,
        record: ManifestRecord,
        tags: &[Tag],
    ) -> Result<(), RegistryError>;

    /// Removes a manifest from the repository (and the tags pointing at it). False if absent.
    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, RegistryError>;

    /// Removes a tag. False if absent.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, RegistryError>;

    /// Tags of the repository in lexical order, starting after `last`, at most `n`.
    /// `None` if the repository is unknown.
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Option<Vec<Tag>>, RegistryError>;

    /// Manifests in the repository whose `subject` is `subject`.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, RegistryError>;

    /// Repositories in lexical order, starting after `last`, at most `n`.
    async fn catalog(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<RepoName>, RegistryError>;

    // ---- blobs ----

    /// The blob's size, without reading it (a HEAD never starts a download).
    async fn stat_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError>;

    /// Opens the blob for reading.
    async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<OpenBlob>, RegistryError>;

    /// Deletes the blob. False if absent.
    async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, RegistryError>;

    /// Makes a blob of repository `from` available in `repo` (cross-repository mount); with
    /// no `from`, of any repository that has it (an anonymous mount: every repository is
    /// readable here, as there is no authentication). False if no such repository has it, or
    /// the store cannot tell (the client then uploads).
    async fn mount_blob(
        &self,
        repo: &RepoName,
        from: Option<&RepoName>,
        digest: &Digest,
    ) -> Result<bool, RegistryError>;

    // ---- uploads ----

    /// Starts an upload session.
    async fn start_upload(&self, repo: &RepoName) -> Result<UploadId, RegistryError>;

    /// Bytes received so far by the session.
    async fn upload_offset(&self, repo: &RepoName, id: &UploadId) -> Result<u64, RegistryError>;

    /// Appends a chunk at `offset` (the session's current offset; the router checks
    /// `Content-Range` against [`upload_offset`](Self::upload_offset) first). Returns the new
    /// offset.
    async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &UploadId,
        offset: u64,
        body: ByteStream,
    ) -> Result<u64, RegistryError>;

    /// Appends the optional last chunk, verifies the whole upload against `digest` and makes
    /// the blob available. Returns its size. A mismatch is `DIGEST_INVALID` and stores nothing.
    async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<ByteStream>,
    ) -> Result<u64, RegistryError>;

    /// Abandons the session.
    async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<(), RegistryError>;

    /// Stores a whole blob in one request (`POST …/uploads/?digest=`), verifying `digest`.
    async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64, RegistryError>;
}
