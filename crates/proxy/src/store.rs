//! [`RegistryStore`] over origins (blob bytes, manifests included) and the build-index (tags,
//! manifest records, referrers).

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use shoal_build_index_api::BuildIndexClient;
use shoal_core::{Digest, RepoName, Tag};
use shoal_origin_client::{OriginClient, OriginClientError};
use shoal_registry::manifest::MAX_MANIFEST_BYTES;
use shoal_registry::{
    ByteStream, ManifestRecord, OpenBlob, RegistryError, RegistryStore, UploadId,
};

/// The proxy's storage: a list of origins and one build-index.
#[derive(Debug)]
pub struct ProxyStore {
    origins: Vec<OriginClient>,
    build_index: BuildIndexClient,
}

impl ProxyStore {
    /// A store over `origins` (at least one) and `build_index`.
    pub fn new(origins: Vec<OriginClient>, build_index: BuildIndexClient) -> Self {
        assert!(!origins.is_empty(), "a proxy needs at least one origin");
        Self {
            origins,
            build_index,
        }
    }

    /// Origins in the order to try for `digest`: the one its digest picks first, then the rest.
    fn origins_for(&self, digest: &Digest) -> impl Iterator<Item = (usize, &OriginClient)> {
        let n = self.origins.len();
        let raw = digest.raw();
        let start = usize::from(raw[0]) << 8 | usize::from(raw[1]);
        (0..n).map(move |i| {
            let idx = (start + i) % n;
            (idx, &self.origins[idx])
        })
    }

    /// The origin that takes new uploads of `digest`.
    fn owner(&self, digest: &Digest) -> &OriginClient {
        let mut it = self.origins_for(digest);
        it.next().map_or(&self.origins[0], |(_, o)| o)
    }

    /// The origin holding upload session `id` (`<origin index>.<origin's session id>`) and the
    /// origin's own id.
    fn upload_origin<'a>(
        &self,
        id: &'a UploadId,
    ) -> Result<(&OriginClient, &'a str), RegistryError> {
        let (idx, inner) = id
            .as_str()
            .split_once('.')
            .ok_or(RegistryError::BlobUploadUnknown)?;
        let idx: usize = idx.parse().map_err(|_| RegistryError::BlobUploadUnknown)?;
        let origin = self
            .origins
            .get(idx)
            .ok_or(RegistryError::BlobUploadUnknown)?;
        Ok((origin, inner))
    }

    /// The first origin that has the blob, with its size.
    async fn locate(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(usize, u64)>, RegistryError> {
        let mut last_err = None;
        for (idx, origin) in self.origins_for(digest) {
            match origin.stat(repo, digest).await {
                Ok(Some(size)) => return Ok(Some((idx, size))),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(origin = origin.base_url(), %digest, "stat failed: {e}");
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            // Every origin failed or said no, and at least one failed: we cannot tell.
            Some(e) if self.origins.len() == 1 => Err(origin_error(e)),
            _ => Ok(None),
        }
    }
}

/// Maps an origin failure to a registry error.
fn origin_error(e: OriginClientError) -> RegistryError {
    match &e {
        OriginClientError::Rejected { code, message, .. } => match code.as_str() {
            "DIGEST_INVALID" => RegistryError::DigestInvalid(message.clone()),
            "BLOB_UNKNOWN" => RegistryError::BlobUnknown,
            "BLOB_UPLOAD_UNKNOWN" => RegistryError::BlobUploadUnknown,
            "BLOB_UPLOAD_INVALID" => RegistryError::BlobUploadInvalid(message.clone()),
            "NAME_INVALID" => RegistryError::NameInvalid(message.clone()),
            "SIZE_INVALID" => RegistryError::SizeInvalid(message.clone()),
            "UNSUPPORTED" => RegistryError::Unsupported(message.clone()),
            _ => RegistryError::Internal(e.to_string()),
        },
        OriginClientError::Unavailable { .. } => RegistryError::Unavailable(e.to_string()),
        OriginClientError::InvalidUrl(_) => RegistryError::Internal(e.to_string()),
    }
}

#[async_trait]
impl RegistryStore for ProxyStore {
    fn writable(&self) -> bool {
        true
    }

    async fn resolve_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<Digest>, RegistryError> {
        Ok(self
            .build_index
            .get_tag(repo, tag)
            .await
            .map_err(RegistryError::from)?
            .map(|r| r.digest))
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Bytes>, RegistryError> {
        // Only manifests pushed to (and not deleted from) this repository.
        if self
            .build_index
            .get_manifest(repo, digest)
            .await
            .map_err(RegistryError::from)?
            .is_none()
        {
            return Ok(None);
        }
        let mut last_err = None;
        for (_, origin) in self.origins_for(digest) {
            match origin.get_bytes(repo, digest, MAX_MANIFEST_BYTES).await {
                Ok(Some(bytes)) => return Ok(Some(bytes)),
                Ok(None) => {}
                Err(e) => last_err = Some(e),
            }
        }
        match last_err {
            Some(e) => Err(origin_error(e)),
            None => Ok(None),
        }
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        bytes: Bytes,
        record: ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<(), RegistryError> {
        let digest = record.descriptor.digest;
        let size = bytes.len() as u64;
        let body: ByteStream = Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
        self.owner(&digest)
            .put(repo, &digest, body, Some(size))
            .await
            .map_err(origin_error)?;
        let record = shoal_build_index_api::ManifestRecord::from(record);
        self.build_index
            .put_manifest(repo, &record)
            .await
            .map_err(RegistryError::from)?;
        if let Some(tag) = tag {
            self.build_index
                .put_tag(repo, tag, &digest)
                .await
                .map_err(RegistryError::from)?;
        }
        Ok(())
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        self.build_index
            .delete_manifest(repo, digest)
            .await
            .map_err(RegistryError::from)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, RegistryError> {
        self.build_index
            .delete_tag(repo, tag)
            .await
            .map_err(RegistryError::from)
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Option<Vec<Tag>>, RegistryError> {
        self.build_index
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
            .build_index
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
        self.build_index
            .catalog(last, n)
            .await
            .map_err(RegistryError::from)
    }

    async fn stat_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        Ok(self.locate(repo, digest).await?.map(|(_, size)| size))
    }

    async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<OpenBlob>, RegistryError> {
        let Some((idx, size)) = self.locate(repo, digest).await? else {
            return Ok(None);
        };
        let origin = self.origins[idx].clone();
        let (repo, digest) = (repo.clone(), *digest);
        let read = move |range: Range<u64>| -> ByteStream {
            Box::pin(
                futures_util::stream::once(async move {
                    match origin.get_range(&repo, &digest, range).await {
                        Ok(Some(stream)) => Ok(stream),
                        Ok(None) => Err(std::io::Error::other("blob vanished from the origin")),
                        Err(e) => Err(std::io::Error::other(e)),
                    }
                })
                .try_flatten(),
            )
        };
        Ok(Some(OpenBlob {
            size,
            read: Box::new(read),
        }))
    }

    async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, RegistryError> {
        let mut any = false;
        for (_, origin) in self.origins_for(digest) {
            any |= origin.delete(repo, digest).await.map_err(origin_error)?;
        }
        Ok(any)
    }

    async fn mount_blob(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let Some((idx, size)) = self.locate(from, digest).await? else {
            return Ok(false);
        };
        if self.locate(repo, digest).await?.is_some() {
            return Ok(true);
        }
        // Copy into the target repository's namespace (its storage may differ), streaming.
        let source = &self.origins[idx];
        let Some((_, body)) = source.get(from, digest).await.map_err(origin_error)? else {
            return Ok(false);
        };
        self.owner(digest)
            .put(repo, digest, body, Some(size))
            .await
            .map_err(origin_error)?;
        Ok(true)
    }

    async fn start_upload(&self, repo: &RepoName) -> Result<UploadId, RegistryError> {
        // The digest is unknown until the end: spread sessions over the origins at random and
        // try the next one if an origin is down.
        let first = usize::from(rand_byte()) % self.origins.len();
        let mut last_err = None;
        for i in 0..self.origins.len() {
            let idx = (first + i) % self.origins.len();
            match self.origins[idx].start_upload(repo).await {
                Ok(inner) => return UploadId::parse(&format!("{idx}.{inner}")),
                Err(e @ OriginClientError::Unavailable { .. }) => last_err = Some(e),
                Err(e) => return Err(origin_error(e)),
            }
        }
        Err(last_err.map_or_else(
            || RegistryError::Unavailable("no origin".into()),
            origin_error,
        ))
    }

    async fn upload_offset(&self, repo: &RepoName, id: &UploadId) -> Result<u64, RegistryError> {
        let (origin, inner) = self.upload_origin(id)?;
        origin
            .upload_offset(repo, inner)
            .await
            .map_err(origin_error)?
            .ok_or(RegistryError::BlobUploadUnknown)
    }

    async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &UploadId,
        _offset: u64,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let (origin, inner) = self.upload_origin(id)?;
        origin
            .upload_chunk(repo, inner, 0, body, None)
            .await
            .map_err(origin_error)
    }

    async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<ByteStream>,
    ) -> Result<u64, RegistryError> {
        let (origin, inner) = self.upload_origin(id)?;
        origin
            .finish_upload(repo, inner, digest, last_chunk)
            .await
            .map_err(origin_error)?;
        origin
            .stat(repo, digest)
            .await
            .map_err(origin_error)?
            .ok_or_else(|| RegistryError::Internal("blob missing right after upload".into()))
    }

    async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<(), RegistryError> {
        let (origin, inner) = self.upload_origin(id)?;
        origin
            .cancel_upload(repo, inner)
            .await
            .map_err(origin_error)
    }

    async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        self.owner(digest)
            .put(repo, digest, body, None)
            .await
            .map_err(origin_error)
    }
}

/// A random byte, for spreading upload sessions.
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is randomly keyed per instance: good enough to spread load, no extra crate.
    RandomState::new()
        .hash_one(std::time::Instant::now())
        .to_le_bytes()[0]
}
