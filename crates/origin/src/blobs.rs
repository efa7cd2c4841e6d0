//! The origin's blob logic, independent of HTTP: local hits, backend fetches on a miss
//! (single-flight), verified commits with write-back, and metainfo generation.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use shoal_backend::{BackendError, BackendRouter, ObjectKey};
use shoal_core::{Digest, InfoHash, MetaInfo, MetaInfoBuilder, RepoName};
use shoal_store::{BlobReader, BlobStore, READ_CHUNK, StoreError, TempBlob};

use crate::error::ApiError;
use crate::sink;
use crate::writeback::Writeback;
use shoal_runtime::flight::SingleFlight;

/// Blob metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlobMetrics {
    pub(crate) backend_fetches: Counter,
    pub(crate) backend_fetch_failures: Counter,
    pub(crate) commits: Counter,
    pub(crate) store_bytes: Gauge,
    pub(crate) store_blobs: Gauge,
    pub(crate) evictions: Gauge,
}

/// Blob operations shared by all request handlers.
#[derive(Debug)]
pub(crate) struct Blobs {
    pub(crate) store: BlobStore,
    pub(crate) backends: Arc<BackendRouter>,
    pub(crate) writeback: Writeback,
    piece_length: u32,
    fetches: SingleFlight<Digest, Result<u64, ApiError>>,
    metainfos: SingleFlight<Digest, Result<Arc<MetaInfo>, ApiError>>,
    /// Info hashes of the metainfo handed out, so peers asking for a torrent find its blob.
    seeds: parking_lot::Mutex<HashMap<InfoHash, Digest>>,
    metrics: BlobMetrics,
}

impl Blobs {
    pub(crate) fn new(
        store: BlobStore,
        backends: Arc<BackendRouter>,
        writeback: Writeback,
        piece_length: u32,
        metrics: BlobMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            backends,
            writeback,
            piece_length,
            fetches: SingleFlight::default(),
            metainfos: SingleFlight::default(),
            seeds: parking_lot::Mutex::default(),
            metrics,
        })
    }

    /// Whether uploads to `namespace` have somewhere durable to go.
    pub(crate) fn check_writable(&self, namespace: &RepoName) -> Result<(), ApiError> {
        if self.backends.route(namespace).is_none() {
            return Err(ApiError::NameInvalid(format!(
                "no storage backend is configured for namespace {namespace}"
            )));
        }
        Ok(())
    }

    /// Size of the blob, from the cache or the backend, without downloading it.
    pub(crate) async fn stat(
        &self,
        namespace: &RepoName,
        digest: &Digest,
    ) -> Result<u64, ApiError> {
        if let Some(size) = self.store.stat(digest) {
            return Ok(size);
        }
        let backend = self
            .backends
            .route(namespace)
            .ok_or(ApiError::BlobUnknown)?;
        Ok(backend
            .stat(namespace, &ObjectKey::for_blob(digest))
            .await?
            .size)
    }

    /// Opens the blob for reading, fetching it from the backend first if it is not cached.
    pub(crate) async fn open(
        self: &Arc<Self>,
        namespace: &RepoName,
        digest: &Digest,
    ) -> Result<BlobReader, ApiError> {
        // A blob evicted between the fetch and the open is fetched again, a few times at most
        // (a cache too small to hold a blob for a moment is a configuration error).
        for _ in 0..3 {
            let store = self.store.clone();
            let d = *digest;
            match blocking(move || store.open_blob(&d)).await? {
                Ok(reader) => return Ok(reader),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            // Not cached: fetch (shared with concurrent requests), then open again.
            self.fetch(namespace, digest).await?;
        }
        Err(ApiError::Internal(
            "blob was evicted as soon as it was fetched; the cache is too small".into(),
        ))
    }

    async fn fetch(
        self: &Arc<Self>,
        namespace: &RepoName,
        digest: &Digest,
    ) -> Result<u64, ApiError> {
        let this = Arc::clone(self);
        let (ns, d) = (namespace.clone(), *digest);
        self.fetches
            .run(*digest, move || async move {
                let result = this.fetch_uncached(&ns, &d).await;
                match &result {
                    Ok(size) => {
                        this.metrics.backend_fetches.inc();
                        tracing::info!(namespace = %ns, digest = %d, size, "fetched from backend");
                        this.spawn_metainfo(d);
                    }
                    Err(ApiError::BlobUnknown) => {}
                    Err(e) => {
                        this.metrics.backend_fetch_failures.inc();
                        tracing::warn!(namespace = %ns, digest = %d, "backend fetch failed: {e}");
                    }
                }
                result
            })
            .await
            .unwrap_or_else(|| Err(ApiError::Internal("fetch task died".into())))
    }

    async fn fetch_uncached(&self, namespace: &RepoName, digest: &Digest) -> Result<u64, ApiError> {
        let backend = self
            .backends
            .route(namespace)
            .ok_or(ApiError::BlobUnknown)?;
        let stream = backend
            .get(namespace, &ObjectKey::for_blob(digest), None)
            .await?;
        let temp = self.create_temp().await?;
        let (temp, result) = sink::append(temp, stream).await;
        if let Err(e) = result {
            return Err(ApiError::Unavailable(format!("fetching from backend: {e}")));
        }
        let temp = temp.ok_or_else(|| ApiError::Internal("temp blob lost".into()))?;
        let store = self.store.clone();
        let d = *digest;
        let size = blocking(move || store.commit(temp, &d))
            .await?
            .map_err(|e| match e {
                StoreError::DigestMismatch(_) => {
                    ApiError::Internal(format!("backend returned corrupt content: {e}"))
                }
                e => e.into(),
            })?;
        Ok(size)
    }

    /// Deletes the blob from the cache and from the namespace's backend, and drops a pending
    /// write-back of it. False if neither had it.
    pub(crate) async fn delete(
        &self,
        namespace: &RepoName,
        digest: &Digest,
    ) -> Result<bool, ApiError> {
        self.writeback.abandon(namespace, digest);
        let store = self.store.clone();
        let d = *digest;
        let cached = store.stat(&d).is_some();
        if cached {
            blocking(move || store.delete(&d)).await??;
        }
        let mut stored = false;
        if let Some(backend) = self.backends.route(namespace) {
            let key = ObjectKey::for_blob(digest);
            match backend.stat(namespace, &key).await {
                Ok(_) => match backend.delete(namespace, &key).await {
                    Ok(()) | Err(BackendError::NotFound) => stored = true,
                    Err(BackendError::ReadOnly) => {
                        return Err(ApiError::Unsupported(format!(
                            "the backend of namespace {namespace} is read-only"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                },
                Err(BackendError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(cached || stored)
    }

    /// A fresh temporary blob.
    pub(crate) async fn create_temp(&self) -> Result<TempBlob, ApiError> {
        let store = self.store.clone();
        Ok(blocking(move || store.create_temp()).await??)
    }

    /// Verifies an uploaded blob, records its write-back durably, and makes it visible. Only
    /// after this returns may the upload be acknowledged.
    pub(crate) async fn commit_upload(
        self: &Arc<Self>,
        namespace: &RepoName,
        temp: TempBlob,
        digest: &Digest,
    ) -> Result<u64, ApiError> {
        let (store, writeback, ns, d) = (
            self.store.clone(),
            self.writeback.clone(),
            namespace.clone(),
            *digest,
        );
        let size = blocking(move || -> Result<u64, ApiError> {
            let verified = store.verify(temp, &d)?;
            let created = writeback
                .enqueue(&ns, &d)
                .map_err(|e| ApiError::Internal(format!("recording write-back: {e}")))?;
            match store.publish(verified) {
                Ok(size) => {
                    writeback.activate(&ns, &d);
                    Ok(size)
                }
                Err(e) => {
                    if created {
                        writeback.abandon(&ns, &d);
                    }
                    Err(e.into())
                }
            }
        })
        .await??;
        self.metrics.commits.inc();
        if self.store.read_metainfo(digest).is_none() {
            self.spawn_metainfo(*digest);
        }
        Ok(size)
    }

    /// The blob's metainfo: from its sidecar, or generated (once, shared) from the content.
    pub(crate) async fn metainfo(
        self: &Arc<Self>,
        namespace: &RepoName,
        digest: &Digest,
    ) -> Result<Arc<MetaInfo>, ApiError> {
        let store = self.store.clone();
        let d = *digest;
        let meta = match blocking(move || store.read_metainfo(&d)).await? {
            Some(m) => Arc::new(m),
            None => {
                // Make sure the content is here (fetching it if needed) before hashing it.
                drop(self.open(namespace, digest).await?);
                self.generate_metainfo(*digest).await?
            }
        };
        self.seeds.lock().insert(meta.info_hash(), *digest);
        Ok(meta)
    }

    /// The blob behind a torrent this origin handed out metainfo for, if it is still cached:
    /// its metainfo and an open reader. Blocking.
    pub(crate) fn seed(&self, info_hash: &InfoHash) -> Option<(MetaInfo, BlobReader)> {
        let digest = *self.seeds.lock().get(info_hash)?;
        let meta = self.store.read_metainfo(&digest)?;
        let reader = self.store.open_blob(&digest).ok()?;
        Some((meta, reader))
    }

    fn spawn_metainfo(self: &Arc<Self>, digest: Digest) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.generate_metainfo(digest).await {
                tracing::warn!(%digest, "generating metainfo: {e}");
            }
        });
    }

    async fn generate_metainfo(
        self: &Arc<Self>,
        digest: Digest,
    ) -> Result<Arc<MetaInfo>, ApiError> {
        let (store, piece_length) = (self.store.clone(), self.piece_length);
        self.metainfos
            .run(digest, move || async move {
                blocking(move || -> Result<Arc<MetaInfo>, ApiError> {
                    if let Some(m) = store.read_metainfo(&digest) {
                        return Ok(Arc::new(m));
                    }
                    let reader = store.open_blob(&digest)?;
                    let mut builder = MetaInfoBuilder::new(piece_length)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    let mut buf = vec![0u8; READ_CHUNK];
                    let mut offset = 0;
                    while offset < reader.size() {
                        let n = reader
                            .read_at(offset, &mut buf)
                            .map_err(|e| ApiError::Internal(format!("reading blob: {e}")))?;
                        if n == 0 {
                            return Err(ApiError::Internal("blob shorter than indexed".into()));
                        }
                        builder.update(&buf[..n]);
                        offset += n as u64;
                    }
                    let meta = builder
                        .finish(digest)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    store.write_metainfo(&meta)?;
                    Ok(Arc::new(meta))
                })
                .await?
            })
            .await
            .unwrap_or_else(|| Err(ApiError::Internal("metainfo task died".into())))
    }

    /// Copies the store's usage into the gauges (run before every scrape).
    pub(crate) fn refresh_store_metrics(store: &BlobStore, metrics: &BlobMetrics) {
        let s = store.stats();
        metrics.store_bytes.set(s.bytes as i64);
        metrics.store_blobs.set(s.blobs as i64);
        metrics.evictions.set(s.evictions as i64);
    }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))
}

/// Adapts a store chunk stream for `sink::append`-style consumers and HTTP bodies.
pub(crate) fn chunks(reader: BlobReader, range: std::ops::Range<u64>) -> shoal_backend::ByteStream {
    reader.into_chunks(range).boxed()
}
