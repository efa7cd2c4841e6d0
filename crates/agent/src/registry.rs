//! The agent's pull registry: [`RegistryStore`] over the swarm (manifests and layers are
//! blobs fetched as torrents and streamed while they download) and the build-index (tags,
//! with a short-TTL cache). Read-only: pushes go to the proxy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use shoal_build_index_api::{BuildIndexClient, ClientError};
use shoal_core::{Digest, RepoName, Tag};
use shoal_registry::manifest::MAX_MANIFEST_BYTES;
use shoal_registry::{
    ByteStream, ManifestRecord, OpenBlob, RegistryError, RegistryStore, UploadId,
};

use crate::downloads::Downloads;
use crate::error::AgentError;

/// Most cached tag resolutions; the cache is cleared when full (entries live seconds).
const TAG_CACHE_MAX: usize = 100_000;

/// A tag resolution (`None`: no such tag) and when it was fetched.
type CachedTag = (Option<Digest>, Instant);

/// How tag resolutions are cached.
#[derive(Debug, Clone)]
pub(crate) struct TagCaching {
    /// A resolution is fresh for this long.
    pub(crate) ttl: Duration,
    /// Served past `ttl` while the build-index is unavailable, up to this age.
    pub(crate) stale_if_error: Duration,
    /// Counts the pulls answered with a stale resolution.
    pub(crate) stale_served: Counter,
}

/// The agent's registry storage.
pub(crate) struct AgentStore {
    downloads: Arc<Downloads>,
    build_index: Option<BuildIndexClient>,
    caching: TagCaching,
    tags: Mutex<HashMap<(RepoName, Tag), CachedTag>>,
}

impl AgentStore {
    pub(crate) fn new(
        downloads: Arc<Downloads>,
        build_index: Option<BuildIndexClient>,
        caching: TagCaching,
    ) -> Self {
        Self {
            downloads,
            build_index,
            caching,
            tags: Mutex::default(),
        }
    }

    fn index(&self) -> Result<&BuildIndexClient, RegistryError> {
        self.build_index.as_ref().ok_or_else(|| {
            RegistryError::Unavailable("this agent has no build-index configured".into())
        })
    }
}

fn agent_error(e: AgentError) -> RegistryError {
    match e {
        AgentError::BlobUnknown => RegistryError::BlobUnknown,
        AgentError::BadRequest(m) => RegistryError::BlobUploadInvalid(m),
        AgentError::Range(size) => RegistryError::RangeInvalid {
            size,
            upload: false,
        },
        AgentError::Unavailable(m) | AgentError::Download(m) => RegistryError::Unavailable(m),
        AgentError::Internal(m) => RegistryError::Internal(m),
    }
}

fn read_only() -> RegistryError {
    RegistryError::Unsupported("the agent's registry is read-only; push to the proxy".into())
}

#[async_trait]
impl RegistryStore for AgentStore {
    fn writable(&self) -> bool {
        false
    }

    async fn resolve_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<Digest>, RegistryError> {
        let key = (repo.clone(), tag.clone());
        let cached = self.tags.lock().get(&key).copied();
        if let Some((digest, at)) = cached
            && at.elapsed() < self.caching.ttl
        {
            return Ok(digest);
        }
        let digest = match self.index()?.get_tag(repo, tag).await {
            Ok(record) => record.map(|r| r.digest),
            Err(e @ ClientError::Unavailable(_)) => {
                // Stale-if-error: a build-index outage must not break pulls of known tags.
                return match cached {
                    Some((digest, at)) if at.elapsed() < self.caching.stale_if_error => {
                        self.caching.stale_served.inc();
                        tracing::warn!(
                            %repo, %tag, age = ?at.elapsed(),
                            "build-index unavailable, serving the cached tag: {e}"
                        );
                        Ok(digest)
                    }
                    _ => Err(RegistryError::from(e)),
                };
            }
            Err(e) => return Err(RegistryError::from(e)),
        };
        let mut tags = self.tags.lock();
        if tags.len() >= TAG_CACHE_MAX {
            tags.clear();
        }
        tags.insert(key, (digest, Instant::now()));
        Ok(digest)
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Bytes>, RegistryError> {
        let size = match self.downloads.stat(repo, digest).await {
            Ok(size) => size,
            Err(AgentError::BlobUnknown) => return Ok(None),
            Err(e) => return Err(agent_error(e)),
        };
        if size > MAX_MANIFEST_BYTES as u64 {
            // Not a manifest (a layer addressed as one).
            return Ok(None);
        }
        self.downloads
            .fetch(repo, digest)
            .await
            .map_err(agent_error)?;
        let store = self.downloads.store.clone();
        let d = *digest;
        let bytes = tokio::task::spawn_blocking(move || {
            let reader = store.open_blob(&d).map_err(std::io::Error::other)?;
            let mut buf = vec![0; usize::try_from(reader.size()).unwrap_or(0)];
            let n = reader.read_at(0, &mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>(buf)
        })
        .await
        .map_err(|e| RegistryError::Internal(e.to_string()))?
        .map_err(|e| RegistryError::Internal(format!("reading manifest: {e}")))?;
        Ok(Some(Bytes::from(bytes)))
    }

    async fn put_manifest(
        &self,
        _repo: &RepoName,
        _bytes: Bytes,
        _record: ManifestRecord,
        _tags: &[Tag],
    ) -> Result<(), RegistryError> {
        Err(read_only())
    }

    async fn delete_manifest(
        &self,
        _repo: &RepoName,
        _digest: &Digest,
    ) -> Result<bool, RegistryError> {
        Err(read_only())
    }

    async fn delete_tag(&self, _repo: &RepoName, _tag: &Tag) -> Result<bool, RegistryError> {
        Err(read_only())
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Option<Vec<Tag>>, RegistryError> {
        self.index()?
            .list_tags(repo, last, n)
            .await
            .map_err(RegistryError::from)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, RegistryError> {
        Ok(self
            .index()?
            .referrers(repo, subject)
            .await
            .map_err(RegistryError::from)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn catalog(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<RepoName>, RegistryError> {
        self.index()?
            .catalog(last, n)
            .await
            .map_err(RegistryError::from)
    }

    async fn stat_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        match self.downloads.stat(repo, digest).await {
            Ok(size) => Ok(Some(size)),
            Err(AgentError::BlobUnknown) => Ok(None),
            Err(e) => Err(agent_error(e)),
        }
    }

    async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<OpenBlob>, RegistryError> {
        match self.downloads.open(repo, digest).await {
            Ok((size, read)) => Ok(Some(OpenBlob { size, read })),
            Err(AgentError::BlobUnknown) => Ok(None),
            Err(e) => Err(agent_error(e)),
        }
    }

    async fn delete_blob(&self, _repo: &RepoName, _digest: &Digest) -> Result<bool, RegistryError> {
        Err(read_only())
    }

    async fn mount_blob(
        &self,
        _repo: &RepoName,
        _from: Option<&RepoName>,
        _digest: &Digest,
    ) -> Result<bool, RegistryError> {
        Err(read_only())
    }

    async fn start_upload(&self, _repo: &RepoName) -> Result<UploadId, RegistryError> {
        Err(read_only())
    }

    async fn upload_offset(&self, _repo: &RepoName, _id: &UploadId) -> Result<u64, RegistryError> {
        Err(read_only())
    }

    async fn upload_chunk(
        &self,
        _repo: &RepoName,
        _id: &UploadId,
        _offset: u64,
        _body: ByteStream,
    ) -> Result<u64, RegistryError> {
        Err(read_only())
    }

    async fn finish_upload(
        &self,
        _repo: &RepoName,
        _id: &UploadId,
        _digest: &Digest,
        _last_chunk: Option<ByteStream>,
    ) -> Result<u64, RegistryError> {
        Err(read_only())
    }

    async fn cancel_upload(&self, _repo: &RepoName, _id: &UploadId) -> Result<(), RegistryError> {
        Err(read_only())
    }

    async fn put_blob(
        &self,
        _repo: &RepoName,
        _digest: &Digest,
        _body: ByteStream,
    ) -> Result<u64, RegistryError> {
        Err(read_only())
    }
}
