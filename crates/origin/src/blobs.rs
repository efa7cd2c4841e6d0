//! The origin's blob logic, independent of HTTP: local hits, backend fetches on a miss
//! (single-flight), verified commits with write-back, and metainfo generation.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use shoal_backend::{BackendError, BackendRouter, ObjectKey};
use shoal_core::{Digest, InfoHash, MetaInfo, MetaInfoBuilder, MetaInfoError, RepoName};
use shoal_store::{BlobReader, BlobStore, READ_CHUNK, StoreError, TempBlob, VerifiedBlob};

use crate::error::ApiError;
use crate::replicate::Replication;
use crate::sink;
use crate::writeback::{Writeback, WritebackJob};
use shoal_runtime::flight::SingleFlight;

/// Blob metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlobMetrics {
    pub(crate) backend_fetches: Counter,
    pub(crate) backend_fetch_failures: Counter,
    pub(crate) commits: Counter,
    pub(crate) metainfo_reads: Counter,
    pub(crate) store_bytes: Gauge,
    pub(crate) store_blobs: Gauge,
    pub(crate) evictions: Gauge,
}

/// How a blob being committed reached this origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Uploaded by a client: replicated to the other owners.
    Upload,
    /// Pushed by a sibling origin (`Shoal-Replica`): not replicated further.
    Replica,
    /// Copied by this origin's repair.
    Repair,
}

/// Blob operations shared by all request handlers.
#[derive(Debug)]
pub(crate) struct Blobs {
    pub(crate) store: BlobStore,
    pub(crate) backends: Arc<BackendRouter>,
    pub(crate) writeback: Writeback,
    /// Replication to the other owners, with a cluster.
    pub(crate) replication: Option<Replication>,
    /// Piece lengths of generated metainfo: (min, max), see `shoal_core::piece_length_for`.
    piece_lengths: (u32, u32),
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
        replication: Option<Replication>,
        piece_lengths: (u32, u32),
        metrics: BlobMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            backends,
            writeback,
            replication,
            piece_lengths,
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

    /// Fetches the blob from the namespace's backend into the cache (shared with concurrent
    /// requests for it) and records the namespace. Returns its size.
    pub(crate) async fn fetch(
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
        let ns = namespace.clone();
        let piece_lengths = self.piece_lengths;
        let size = blocking(move || {
            let verified = store.verify(temp, &d)?;
            let meta = chained_metainfo(&verified, piece_lengths);
            let size = store.publish(verified)?;
            keep_metainfo(&store, meta);
            if let Err(e) = store.add_namespace(&d, &ns) {
                tracing::warn!(namespace = %ns, digest = %d, "recording the namespace: {e}");
            }
            Ok(size)
        })
        .await?
        .map_err(|e| match e {
            StoreError::DigestMismatch(_) => {
                ApiError::Internal(format!("backend returned corrupt content: {e}"))
            }
            e => e.into(),
        })?;
        Ok(size)
    }

    /// The size of a blob cached here as a blob of `namespace` (what a sibling origin asks
    /// with `Shoal-Replica`): `None` if it is not cached or not recorded under `namespace`.
    pub(crate) async fn replica_stat(
        &self,
        namespace: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, ApiError> {
        let (store, ns, d) = (self.store.clone(), namespace.clone(), *digest);
        blocking(move || {
            let Some(size) = store.stat(&d) else {
                return Ok(None);
            };
            Ok(store.namespaces(&d)?.contains(&ns).then_some(size))
        })
        .await?
    }

    /// Opens a cached blob, without fetching it from a backend.
    pub(crate) async fn open_cached(&self, digest: &Digest) -> Result<BlobReader, ApiError> {
        let (store, d) = (self.store.clone(), *digest);
        Ok(blocking(move || store.open_blob(&d)).await??)
    }

    /// Takes on a blob that is already in the cache (fetched by repair) as a blob of each of
    /// `namespaces`: records them and queues their write-backs. Blocking work off the async
    /// threads.
    pub(crate) async fn adopt(
        &self,
        namespaces: &[RepoName],
        digest: &Digest,
    ) -> Result<(), ApiError> {
        let (store, writeback, nss, d) = (
            self.store.clone(),
            self.writeback.clone(),
            namespaces.to_vec(),
            *digest,
        );
        blocking(move || -> Result<(), ApiError> {
            for ns in &nss {
                let job = WritebackJob::new(ns, &d);
                writeback
                    .enqueue(&job)
                    .map_err(|e| ApiError::Internal(format!("recording write-back: {e}")))?;
                writeback.activate(&job);
                store.add_namespace(&d, ns)?;
            }
            Ok(())
        })
        .await?
    }

    /// Deletes the blob from the cache and from the namespace's backend, and drops a pending
    /// write-back of it. False if neither had it.
    pub(crate) async fn delete(
        &self,
        namespace: &RepoName,
        digest: &Digest,
    ) -> Result<bool, ApiError> {
        self.writeback
            .abandon(&WritebackJob::new(namespace, digest));
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

    /// Verifies a blob received under `namespaces` (an upload: one), records its write-backs
    /// durably, makes it visible, records its namespaces and, for an upload in a cluster,
    /// queues its copies to the other owners. Only after this returns may an upload be
    /// acknowledged.
    pub(crate) async fn commit(
        self: &Arc<Self>,
        namespaces: &[RepoName],
        temp: TempBlob,
        digest: &Digest,
        arrival: Arrival,
    ) -> Result<u64, ApiError> {
        let replication = self
            .replication
            .clone()
            .filter(|_| arrival == Arrival::Upload);
        let (store, writeback, nss, d) = (
            self.store.clone(),
            self.writeback.clone(),
            namespaces.to_vec(),
            *digest,
        );
        let piece_lengths = self.piece_lengths;
        let size = blocking(move || -> Result<u64, ApiError> {
            let internal =
                |what: &str, e: std::io::Error| ApiError::Internal(format!("{what}: {e}"));
            let verified = store.verify(temp, &d)?;
            let meta = chained_metainfo(&verified, piece_lengths);
            let jobs: Vec<WritebackJob> = nss.iter().map(|ns| WritebackJob::new(ns, &d)).collect();
            let mut created = Vec::new();
            for job in &jobs {
                match writeback.enqueue(job) {
                    Ok(new) => created.push(new),
                    Err(e) => {
                        abandon_created(&writeback, &jobs, &created);
                        return Err(internal("recording write-back", e));
                    }
                }
            }
            let size = match store.publish(verified) {
                Ok(size) => size,
                Err(e) => {
                    abandon_created(&writeback, &jobs, &created);
                    return Err(e.into());
                }
            };
            keep_metainfo(&store, meta);
            for job in &jobs {
                writeback.activate(job);
            }
            for ns in &nss {
                store.add_namespace(&d, ns)?;
                if let Some(replication) = &replication {
                    replication
                        .replicate(ns, &d)
                        .map_err(|e| internal("recording replication", e))?;
                }
            }
            Ok(size)
        })
        .await??;
        if arrival != Arrival::Repair {
            self.metrics.commits.inc();
        }
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
                match self.generate_metainfo(*digest).await {
                    // The damaged copy is gone: fetch a good one (from the backend or a
                    // replica) and try once more.
                    Err(ApiError::CorruptCache(_)) => {
                        drop(self.open(namespace, digest).await?);
                        self.generate_metainfo(*digest).await?
                    }
                    other => other?,
                }
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
        let (store, (min, max)) = (self.store.clone(), self.piece_lengths);
        let reads = self.metrics.metainfo_reads.clone();
        self.metainfos
            .run(digest, move || async move {
                blocking(move || -> Result<Arc<MetaInfo>, ApiError> {
                    if let Some(m) = store.read_metainfo(&digest) {
                        return Ok(Arc::new(m));
                    }
                    reads.inc();
                    let reader = store.open_blob(&digest)?;
                    let piece_length = shoal_core::piece_length_for(reader.size(), min, max);
                    let mut builder = MetaInfoBuilder::new(digest.algorithm(), piece_length)
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
                    let meta = match builder.finish(digest) {
                        Ok(meta) => meta,
                        // Only a chain builder checks the digest: sha256 blobs, every blob
                        // an origin cuts into its usual piece lengths.
                        Err(MetaInfoError::DigestMismatch(_)) => {
                            let dropped = store.delete_unpinned(&digest)?;
                            tracing::error!(
                                %digest,
                                dropped,
                                "cached blob does not hash to its digest (damaged on disk); \
                                 dropped unless pinned, so that it is fetched again"
                            );
                            return Err(ApiError::CorruptCache(digest));
                        }
                        Err(e) => return Err(ApiError::Internal(e.to_string())),
                    };
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

/// The metainfo of a blob just verified, from the hash pass that verified it (a `sha256`
/// blob cut into the usual piece lengths): it is ready when the upload is, with no second
/// read of the blob. `None` otherwise; it is then built from the content in the background.
fn chained_metainfo(verified: &VerifiedBlob, (min, max): (u32, u32)) -> Option<MetaInfo> {
    verified.chained_metainfo(shoal_core::piece_length_for(verified.size(), min, max))
}

/// Stores a published blob's metainfo unless it has one (a blob uploaded again keeps the
/// metainfo, and so the torrent, it had). Best effort: a missing sidecar is generated later.
fn keep_metainfo(store: &BlobStore, meta: Option<MetaInfo>) {
    let Some(meta) = meta else { return };
    if store.read_metainfo(&meta.digest()).is_some() {
        return;
    }
    if let Err(e) = store.write_metainfo(&meta) {
        tracing::warn!(digest = %meta.digest(), "storing metainfo: {e}");
    }
}

/// Forgets the write-back tasks `enqueue` created for a blob that will not be published.
fn abandon_created(writeback: &Writeback, jobs: &[WritebackJob], created: &[bool]) {
    for (job, _) in jobs.iter().zip(created).filter(|(_, new)| **new) {
        writeback.abandon(job);
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
