//! [`RegistryStore`] over the origins' ring (blob bytes, manifests included) and the
//! build-index (tags, manifest records, referrers).

use std::future::Future;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use shoal_build_index_api::BuildIndexClient;
use shoal_cluster::Node;
use shoal_core::{Algorithm, Digest, RepoName, Tag};
use shoal_origin_client::{OriginClient, OriginClientError, OriginPool};
use shoal_registry::manifest::MAX_MANIFEST_BYTES;
use shoal_registry::{
    ByteStream, ManifestRecord, OpenBlob, RegistryError, RegistryStore, UploadId,
};

/// The proxy's storage: the origins' ring and one build-index.
#[derive(Debug)]
pub struct ProxyStore {
    origins: OriginPool,
    build_index: BuildIndexClient,
}

impl ProxyStore {
    /// A store over the origins of `origins` and `build_index`.
    pub fn new(origins: OriginPool, build_index: BuildIndexClient) -> Self {
        Self {
            origins,
            build_index,
        }
    }

    /// Runs `op` against the origins in the ring's order for `digest` until one has the
    /// answer: `Ok(Some)` wins; `Ok(None)` (not there) and unavailability move on to the next
    /// origin; a rejection (4xx) is final. `Ok(None)` if no origin had it and at least one
    /// answered; the last unavailability if none answered.
    async fn first<T, F, Fut>(&self, digest: &Digest, mut op: F) -> Result<Option<T>, RegistryError>
    where
        F: FnMut(OriginClient) -> Fut,
        Fut: Future<Output = Result<Option<T>, OriginClientError>>,
    {
        let mut answered = false;
        let mut last_err = None;
        for (node, client) in self.origins.route(digest) {
            let result = op(client).await;
            self.origins.report(&node, &result);
            match result {
                Ok(Some(v)) => return Ok(Some(v)),
                Ok(None) => answered = true,
                Err(e @ OriginClientError::Unavailable { .. }) => {
                    tracing::warn!(origin = %node.id, %digest, "origin unavailable: {e}");
                    last_err = Some(e);
                }
                Err(e) => return Err(origin_error(e)),
            }
        }
        match last_err {
            Some(e) if !answered => Err(origin_error(e)),
            _ => Ok(None),
        }
    }

    /// Runs `op` on the first origin, in the ring's order for `key` (healthy owners first),
    /// that does not fail with unavailability. For writes, the origin replicates to the other
    /// owners.
    async fn write<T, F, Fut>(&self, key: &Digest, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut(OriginClient) -> Fut,
        Fut: Future<Output = Result<T, OriginClientError>>,
    {
        let mut last_err = None;
        for (node, client) in self.origins.route(key) {
            let result = op(client).await;
            self.origins.report(&node, &result);
            match result {
                Ok(v) => return Ok(v),
                Err(e @ OriginClientError::Unavailable { .. }) => {
                    tracing::warn!(origin = %node.id, "origin unavailable, trying the next: {e}");
                    last_err = Some(e);
                }
                Err(e) => return Err(origin_error(e)),
            }
        }
        Err(last_err.map_or_else(
            || RegistryError::Unavailable("no origin is known".into()),
            origin_error,
        ))
    }

    /// The origin holding upload session `id` (`<hex of the origin's id>.<origin's session
    /// id>`, so any proxy can continue any upload) and the origin's own session id.
    fn upload_origin<'a>(
        &self,
        id: &'a UploadId,
    ) -> Result<(OriginClient, &'a str), RegistryError> {
        let (node, inner) = id
            .as_str()
            .split_once('.')
            .ok_or(RegistryError::BlobUploadUnknown)?;
        let node_id = hex_decode(node).ok_or(RegistryError::BlobUploadUnknown)?;
        let origin = self
            .origins
            .by_id(&node_id)
            .ok_or(RegistryError::BlobUploadUnknown)?;
        Ok((origin, inner))
    }

    /// The first origin that has the blob, with its size.
    async fn locate(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(OriginClient, u64)>, RegistryError> {
        self.first(digest, |c| {
            let (repo, digest) = (repo.clone(), *digest);
            async move { Ok(c.stat(&repo, &digest).await?.map(|size| (c, size))) }
        })
        .await
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

fn hex_encode(s: &str) -> String {
    hex::encode(s)
}

fn hex_decode(s: &str) -> Option<String> {
    String::from_utf8(hex::decode(s).ok()?).ok()
}

/// 16 random bytes, for spreading upload sessions over the origins.
fn rand_bytes() -> [u8; 16] {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is randomly keyed per instance: good enough to spread load, no extra crate.
    let a = RandomState::new().hash_one(std::time::Instant::now());
    let b = RandomState::new().hash_one(a);
    let mut out = [0; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
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
        Ok(self.build_index.get_tag(repo, tag).await?.map(|r| r.digest))
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Bytes>, RegistryError> {
        // Only manifests pushed to (and not deleted from) this repository.
        if self.build_index.get_manifest(repo, digest).await?.is_none() {
            return Ok(None);
        }
        self.first(digest, |c| {
            let (repo, digest) = (repo.clone(), *digest);
            async move { c.get_bytes(&repo, &digest, MAX_MANIFEST_BYTES).await }
        })
        .await
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        bytes: Bytes,
        record: ManifestRecord,
        tags: &[Tag],
    ) -> Result<(), RegistryError> {
        let digest = record.descriptor.digest;
        let size = bytes.len() as u64;
        self.write(&digest, |c| {
            let (repo, bytes) = (repo.clone(), bytes.clone());
            async move {
                let body: ByteStream =
                    Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
                c.put(&repo, &digest, body, Some(size)).await
            }
        })
        .await?;
        let record = shoal_build_index_api::ManifestRecord::from(record);
        self.build_index.put_manifest(repo, &record).await?;
        futures_util::future::try_join_all(
            tags.iter()
                .map(|tag| self.build_index.put_tag(repo, tag, &digest)),
        )
        .await?;
        Ok(())
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        Ok(self.build_index.delete_manifest(repo, digest).await?)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, RegistryError> {
        Ok(self.build_index.delete_tag(repo, tag).await?)
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Option<Vec<Tag>>, RegistryError> {
        Ok(self.build_index.list_tags(repo, last, n).await?)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, RegistryError> {
        let records = self.build_index.referrers(repo, subject).await?;
        Ok(records.into_iter().map(Into::into).collect())
    }

    async fn catalog(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<RepoName>, RegistryError> {
        Ok(self.build_index.catalog(last, n).await?)
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
        let Some((origin, size)) = self.locate(repo, digest).await? else {
            return Ok(None);
        };
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
        // From every origin that may hold a copy (owners and stand-ins alike).
        let mut any = false;
        for (node, origin) in self.origins.route(digest) {
            let result = origin.delete(repo, digest).await;
            self.origins.report(&node, &result);
            any |= result.map_err(origin_error)?;
        }
        Ok(any)
    }

    async fn mount_blob(
        &self,
        repo: &RepoName,
        from: Option<&RepoName>,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        // Without `from`: a namespace the owning origins have the blob under.
        let found;
        let from = match from {
            Some(from) => from,
            None => {
                found = self
                    .first(digest, |c| {
                        let digest = *digest;
                        async move {
                            let entry = c.blob_entry(&digest).await?;
                            Ok(entry.and_then(|e| e.namespaces.into_iter().next()))
                        }
                    })
                    .await?;
                match &found {
                    Some(ns) => ns,
                    None => return Ok(false),
                }
            }
        };
        let Some((source, size)) = self.locate(from, digest).await? else {
            return Ok(false);
        };
        if self.locate(repo, digest).await?.is_some() {
            return Ok(true);
        }
        // Copy into the target repository's namespace (its storage may differ), streaming.
        let Some((_, body)) = source.get(from, digest).await.map_err(origin_error)? else {
            return Ok(false);
        };
        put_once(&self.origins, repo, digest, body, Some(size)).await?;
        Ok(true)
    }

    async fn start_upload(&self, repo: &RepoName) -> Result<UploadId, RegistryError> {
        // The digest is unknown until the end: any healthy origin takes the session (and
        // replicates the blob to its owners when it is committed). A random key spreads them.
        let key = Digest::compute(Algorithm::Sha256, &rand_bytes());
        let mut last_err = None;
        for (node, client) in self.origins.route(&key) {
            let result = client.start_upload(repo).await;
            self.origins.report(&node, &result);
            match result {
                Ok(inner) => return UploadId::parse(&format!("{}.{inner}", hex_encode(&node.id))),
                Err(e @ OriginClientError::Unavailable { .. }) => last_err = Some(e),
                Err(e) => return Err(origin_error(e)),
            }
        }
        Err(last_err.map_or_else(
            || RegistryError::Unavailable("no origin is known".into()),
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
        put_once(&self.origins, repo, digest, body, None).await
    }
}

/// Streams `body` to the first healthy owner of `digest`. A body can be sent only once: no
/// failover after it started (the client retries the request).
async fn put_once(
    origins: &OriginPool,
    repo: &RepoName,
    digest: &Digest,
    body: ByteStream,
    size: Option<u64>,
) -> Result<u64, RegistryError> {
    let (node, origin): (Node, OriginClient) = origins
        .route(digest)
        .into_iter()
        .next()
        .ok_or_else(|| RegistryError::Unavailable("no origin is known".into()))?;
    let result = origin.put(repo, digest, body, size).await;
    origins.report(&node, &result);
    result.map_err(origin_error)
}
