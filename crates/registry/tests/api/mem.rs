//! An in-memory [`RegistryStore`] for the tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use parking_lot::Mutex;
use shoal_core::{Digest, RepoName, Tag};
use shoal_registry::{
    ByteStream, ManifestRecord, OpenBlob, RegistryError, RegistryStore, UploadId,
};

#[derive(Default)]
struct Repo {
    blobs: HashMap<Digest, Bytes>,
    manifests: HashMap<Digest, (Bytes, ManifestRecord)>,
    tags: BTreeMap<Tag, Digest>,
}

#[derive(Default)]
struct Inner {
    repos: BTreeMap<RepoName, Repo>,
    uploads: HashMap<String, (RepoName, Vec<u8>)>,
}

/// Everything in memory; `read_only` stores refuse pushes at the router.
#[derive(Default)]
pub(crate) struct MemStore {
    inner: Mutex<Inner>,
    read_only: bool,
    next_upload: AtomicU64,
    /// How many times `open_blob` was called.
    pub(crate) opens: AtomicUsize,
}

impl MemStore {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn read_only() -> Self {
        Self {
            read_only: true,
            ..Self::default()
        }
    }

    pub(crate) fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }

    pub(crate) fn has_blob(&self, repo: &str, digest: &Digest) -> bool {
        let repo: RepoName = repo.parse().unwrap();
        self.inner
            .lock()
            .repos
            .get(&repo)
            .is_some_and(|r| r.blobs.contains_key(digest))
    }

    /// Inserts a blob directly (for read-only stores).
    pub(crate) fn insert_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::compute(shoal_core::Algorithm::Sha256, data);
        let mut inner = self.inner.lock();
        let repo = inner.repos.entry(repo.parse().unwrap()).or_default();
        repo.blobs.insert(digest, Bytes::copy_from_slice(data));
        digest
    }

    /// Stores `bytes` under a digest they do not hash to (a corrupted store).
    pub(crate) fn insert_corrupt_manifest(
        &self,
        repo: &str,
        digest: Digest,
        tag: &str,
        bytes: &[u8],
    ) {
        let mut inner = self.inner.lock();
        let repo = inner.repos.entry(repo.parse().unwrap()).or_default();
        let record = ManifestRecord {
            descriptor: shoal_registry::manifest::Descriptor {
                media_type: shoal_registry::manifest::OCI_MANIFEST.into(),
                digest,
                size: bytes.len() as u64,
                artifact_type: None,
                annotations: None,
                platform: None,
                urls: None,
            },
            subject: None,
        };
        repo.manifests
            .insert(digest, (Bytes::copy_from_slice(bytes), record));
        repo.tags.insert(tag.parse().unwrap(), digest);
    }
}

async fn collect(mut body: ByteStream) -> Result<Bytes, RegistryError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RegistryError::BlobUploadInvalid(e.to_string()))?;
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn verify(digest: &Digest, data: &[u8]) -> Result<(), RegistryError> {
    let actual = Digest::compute(digest.algorithm(), data);
    if actual == *digest {
        Ok(())
    } else {
        Err(RegistryError::DigestInvalid(format!(
            "content hashes to {actual}"
        )))
    }
}

#[async_trait]
impl RegistryStore for MemStore {
    fn writable(&self) -> bool {
        !self.read_only
    }

    async fn resolve_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<Digest>, RegistryError> {
        let inner = self.inner.lock();
        Ok(inner.repos.get(repo).and_then(|r| r.tags.get(tag)).copied())
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Bytes>, RegistryError> {
        let inner = self.inner.lock();
        Ok(inner
            .repos
            .get(repo)
            .and_then(|r| r.manifests.get(digest))
            .map(|(b, _)| b.clone()))
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        bytes: Bytes,
        record: ManifestRecord,
        tags: &[Tag],
    ) -> Result<(), RegistryError> {
        verify(&record.descriptor.digest, &bytes)?;
        let mut inner = self.inner.lock();
        let repo = inner.repos.entry(repo.clone()).or_default();
        let digest = record.descriptor.digest;
        repo.manifests.insert(digest, (bytes, record));
        for tag in tags {
            repo.tags.insert(tag.clone(), digest);
        }
        Ok(())
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let mut inner = self.inner.lock();
        let Some(repo) = inner.repos.get_mut(repo) else {
            return Ok(false);
        };
        let found = repo.manifests.remove(digest).is_some();
        repo.tags.retain(|_, d| d != digest);
        Ok(found)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, RegistryError> {
        let mut inner = self.inner.lock();
        Ok(inner
            .repos
            .get_mut(repo)
            .is_some_and(|r| r.tags.remove(tag).is_some()))
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Option<Vec<Tag>>, RegistryError> {
        let inner = self.inner.lock();
        let Some(repo) = inner.repos.get(repo) else {
            return Ok(None);
        };
        let tags = repo
            .tags
            .keys()
            .filter(|t| last.is_none_or(|l| t.as_str() > l))
            .take(n.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        Ok(Some(tags))
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, RegistryError> {
        let inner = self.inner.lock();
        let mut out: Vec<ManifestRecord> = inner
            .repos
            .get(repo)
            .map(|r| {
                r.manifests
                    .values()
                    .filter(|(_, rec)| rec.subject.as_ref() == Some(subject))
                    .map(|(_, rec)| rec.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|r| r.descriptor.digest);
        Ok(out)
    }

    async fn catalog(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<RepoName>, RegistryError> {
        let inner = self.inner.lock();
        Ok(inner
            .repos
            .keys()
            .filter(|r| last.is_none_or(|l| r.as_str() > l))
            .take(n.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn stat_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let inner = self.inner.lock();
        Ok(inner
            .repos
            .get(repo)
            .and_then(|r| r.blobs.get(digest))
            .map(|b| b.len() as u64))
    }

    async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<OpenBlob>, RegistryError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.lock();
        let Some(data) = inner
            .repos
            .get(repo)
            .and_then(|r| r.blobs.get(digest))
            .cloned()
        else {
            return Ok(None);
        };
        Ok(Some(OpenBlob {
            size: data.len() as u64,
            read: Box::new(move |range| {
                let chunk = data.slice(range.start as usize..range.end as usize);
                Box::pin(stream::once(async move { Ok(chunk) }))
            }),
        }))
    }

    async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, RegistryError> {
        let mut inner = self.inner.lock();
        Ok(inner
            .repos
            .get_mut(repo)
            .is_some_and(|r| r.blobs.remove(digest).is_some()))
    }

    async fn mount_blob(
        &self,
        repo: &RepoName,
        from: Option<&RepoName>,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let mut inner = self.inner.lock();
        let found = match from {
            Some(from) => inner.repos.get(from).and_then(|r| r.blobs.get(digest)),
            None => inner.repos.values().find_map(|r| r.blobs.get(digest)),
        };
        let Some(data) = found.cloned() else {
            return Ok(false);
        };
        inner
            .repos
            .entry(repo.clone())
            .or_default()
            .blobs
            .insert(*digest, data);
        Ok(true)
    }

    async fn start_upload(&self, repo: &RepoName) -> Result<UploadId, RegistryError> {
        let id = format!("up-{}", self.next_upload.fetch_add(1, Ordering::SeqCst));
        self.inner
            .lock()
            .uploads
            .insert(id.clone(), (repo.clone(), Vec::new()));
        UploadId::parse(&id)
    }

    async fn upload_offset(&self, repo: &RepoName, id: &UploadId) -> Result<u64, RegistryError> {
        let inner = self.inner.lock();
        match inner.uploads.get(id.as_str()) {
            Some((r, data)) if r == repo => Ok(data.len() as u64),
            _ => Err(RegistryError::BlobUploadUnknown),
        }
    }

    async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &UploadId,
        offset: u64,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let chunk = collect(body).await?;
        let mut inner = self.inner.lock();
        match inner.uploads.get_mut(id.as_str()) {
            Some((r, data)) if r == repo => {
                if data.len() as u64 != offset {
                    return Err(RegistryError::RangeInvalid {
                        size: data.len() as u64,
                        upload: true,
                    });
                }
                data.extend_from_slice(&chunk);
                Ok(data.len() as u64)
            }
            _ => Err(RegistryError::BlobUploadUnknown),
        }
    }

    async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<ByteStream>,
    ) -> Result<u64, RegistryError> {
        let last = match last_chunk {
            Some(body) => collect(body).await?,
            None => Bytes::new(),
        };
        let mut inner = self.inner.lock();
        let mut data = match inner.uploads.get(id.as_str()) {
            Some((r, data)) if r == repo => data.clone(),
            _ => return Err(RegistryError::BlobUploadUnknown),
        };
        data.extend_from_slice(&last);
        verify(digest, &data)?;
        inner.uploads.remove(id.as_str());
        let size = data.len() as u64;
        inner
            .repos
            .entry(repo.clone())
            .or_default()
            .blobs
            .insert(*digest, Bytes::from(data));
        Ok(size)
    }

    async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<(), RegistryError> {
        let mut inner = self.inner.lock();
        match inner.uploads.get(id.as_str()) {
            Some((r, _)) if r == repo => {
                inner.uploads.remove(id.as_str());
                Ok(())
            }
            _ => Err(RegistryError::BlobUploadUnknown),
        }
    }

    async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let data = collect(body).await?;
        verify(digest, &data)?;
        let size = data.len() as u64;
        self.inner
            .lock()
            .repos
            .entry(repo.clone())
            .or_default()
            .blobs
            .insert(*digest, data);
        Ok(size)
    }
}
