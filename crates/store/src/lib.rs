//! Shoal's local content-addressed blob store (the disk cache of origins and agents).
//!
//! Layout under the store's directory:
//!
//! ```text
//! blobs/<alg>/<h0h1>/<h2h3>/<hex>            committed, verified blob content
//! blobs/<alg>/<h0h1>/<h2h3>/<hex>.metainfo   its metainfo, when generated
//! blobs/<alg>/<h0h1>/<h2h3>/<hex>.namespaces the namespaces it was stored under, one a line
//! tmp/<random>                               blobs being written (never visible as blobs)
//! partial/<alg>/<hex>[.status]               piece-wise downloads (see [`PartialBlob`])
//! ```
//!
//! Writes go to a [`TempBlob`] in `tmp/`, which hashes as it writes (keeping SHA-256's state
//! every 256 KiB, from which [`VerifiedBlob::chained_metainfo`] reads a metainfo); [`BlobStore::commit`]
//! checks the digest, fsyncs and renames the file into `blobs/`. A crash at any point leaves
//! either no blob or a complete, verified one; `tmp/` is emptied on open.
//!
//! The store keeps an in-memory index (size, last access, pins) rebuilt from the directory on
//! open. Last access is persisted as the blob file's mtime (coarsely, at most once a minute per
//! blob). When the bytes stored pass the high watermark, least recently used unpinned blobs are
//! removed until usage is under the low watermark. Pinned blobs (e.g. awaiting write-back) are
//! never evicted.
//!
//! All methods here do blocking file I/O: call them from `spawn_blocking` or a blocking thread.
//! The store is **not** a network or backend client and knows nothing about HTTP.

mod alloc;
mod index;
mod namespaces;
mod partial;
mod read;
mod temp;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use shoal_core::{Digest, MetaInfo, RepoName};

use index::Index;
pub use partial::{PartialBlob, PieceWrite};
pub use read::{BlobReader, ByteChunks, READ_CHUNK};
pub use temp::TempBlob;

/// Capacity and eviction settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreConfig {
    /// Bytes of blob content the store may hold.
    pub capacity_bytes: u64,
    /// Eviction starts when usage exceeds this fraction of capacity.
    pub high_watermark: f64,
    /// Eviction stops once usage is at or below this fraction of capacity.
    pub low_watermark: f64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            capacity_bytes: 100 << 30,
            high_watermark: 0.9,
            low_watermark: 0.8,
        }
    }
}

/// Errors from store operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The content's digest is not the expected one; nothing was stored.
    #[error("digest mismatch: expected {}, content is {}", .0.expected, .0.actual)]
    DigestMismatch(Box<DigestMismatch>),
    /// The content's length is not the expected one; nothing was stored.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Expected size.
        expected: u64,
        /// Actual size.
        actual: u64,
    },
    /// The blob is not in the store.
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// A [`PartialBlob`] was finished while pieces are still missing.
    #[error("blob {digest} is incomplete: {have} of {pieces} pieces")]
    Incomplete {
        /// The blob.
        digest: Digest,
        /// Pieces present.
        have: u32,
        /// Pieces in the blob.
        pieces: u32,
    },
    /// The watermarks are not `0 < low <= high <= 1`.
    #[error("invalid watermarks: low {low}, high {high}")]
    Watermarks {
        /// Low watermark.
        low: f64,
        /// High watermark.
        high: f64,
    },
    /// A file system error.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The error.
        source: io::Error,
    },
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    move |source| StoreError::Io {
        context: context.into(),
        source,
    }
}

/// The two digests of a [`StoreError::DigestMismatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestMismatch {
    /// The digest the caller claimed.
    pub expected: Digest,
    /// The digest of the bytes received.
    pub actual: Digest,
}

/// A snapshot of the store's usage, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Blobs stored.
    pub blobs: u64,
    /// Bytes of blob content stored.
    pub bytes: u64,
    /// Bytes in pinned blobs.
    pub pinned_bytes: u64,
    /// Blobs evicted since open.
    pub evictions: u64,
}

/// The store. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    blobs_dir: PathBuf,
    tmp_dir: PathBuf,
    partial_dir: PathBuf,
    config: StoreConfig,
    index: Mutex<Index>,
    partials: partial::Registry,
}

impl BlobStore {
    /// Opens (creating if needed) a store in `dir`: clears leftovers of interrupted writes and
    /// indexes the committed blobs. Partial downloads are left alone, for
    /// [`BlobStore::partial`] to resume.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let (low, high) = (config.low_watermark, config.high_watermark);
        if !(0.0 < low && low <= high && high <= 1.0) {
            return Err(StoreError::Watermarks { low, high });
        }
        let blobs_dir = dir.join("blobs");
        let tmp_dir = dir.join("tmp");
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(io_err("clearing tmp dir"))?;
        }
        fs::create_dir_all(&tmp_dir).map_err(io_err("creating tmp dir"))?;
        fs::create_dir_all(&blobs_dir).map_err(io_err("creating blobs dir"))?;
        let index = Index::scan(&blobs_dir)?;
        tracing::info!(
            blobs = index.len(),
            bytes = index.bytes(),
            dir = %dir.display(),
            "blob store opened"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                blobs_dir,
                tmp_dir,
                partial_dir: dir.join("partial"),
                config,
                index: Mutex::new(index),
                partials: partial::Registry::default(),
            }),
        })
    }

    /// The configured capacity and watermarks.
    pub fn config(&self) -> StoreConfig {
        self.inner.config
    }

    /// A new temporary blob to write content into.
    pub fn create_temp(&self) -> Result<TempBlob, StoreError> {
        TempBlob::create(&self.inner.tmp_dir)
    }

    /// Verifies `temp` against `expected` and makes it visible as that blob: [`Self::verify`]
    /// then [`Self::publish`].
    pub fn commit(&self, temp: TempBlob, expected: &Digest) -> Result<u64, StoreError> {
        let verified = self.verify(temp, expected)?;
        self.publish(verified)
    }

    /// Checks `temp`'s content against `expected`. On a mismatch the temporary file is deleted
    /// and nothing is stored. The verified blob is not visible until [`Self::publish`]; if it
    /// is dropped instead, its file is deleted.
    pub fn verify(&self, temp: TempBlob, expected: &Digest) -> Result<VerifiedBlob, StoreError> {
        let v = temp.verify(expected)?;
        Ok(VerifiedBlob {
            file: Some(v.file),
            path: v.path,
            size: v.size,
            digest: *expected,
            hashed: v.hashed,
        })
    }

    /// Makes a verified blob visible: fsync, atomic rename, directory fsync. Publishing a
    /// blob that already exists succeeds without rewriting it. May evict other blobs to stay
    /// under the high watermark.
    pub fn publish(&self, mut verified: VerifiedBlob) -> Result<u64, StoreError> {
        let digest = verified.digest;
        let size = verified.size;
        let dest = self.blob_path(&digest);
        let file = verified.file.take().expect("file present until published");
        if self.inner.index.lock().contains(&digest) && dest.exists() {
            return Ok(size);
        }
        file.sync_all().map_err(io_err("syncing blob"))?;
        drop(file);
        let parent = dest.parent().expect("blob paths have a parent");
        fs::create_dir_all(parent).map_err(io_err("creating blob dir"))?;
        fs::rename(&verified.path, &dest).map_err(io_err("renaming blob into place"))?;
        verified.path = PathBuf::new();
        sync_dir(parent)?;
        self.inner.index.lock().insert(digest, size, now_ms());
        self.evict_if_needed();
        Ok(size)
    }

    /// The size of a stored blob, without counting as an access.
    pub fn stat(&self, digest: &Digest) -> Option<u64> {
        self.inner.index.lock().size(digest)
    }

    /// Opens a blob for reading and records the access.
    pub fn open_blob(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        let size = self
            .inner
            .index
            .lock()
            .touch(digest, now_ms())
            .ok_or(StoreError::NotFound(*digest))?;
        let path = self.blob_path(digest);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Removed behind our back: forget it.
                self.inner.index.lock().remove(digest);
                return Err(StoreError::NotFound(*digest));
            }
            Err(e) => return Err(io_err("opening blob")(e)),
        };
        if self
            .inner
            .index
            .lock()
            .should_persist_access(digest, now_ms())
        {
            let _ = file.set_modified(SystemTime::now());
        }
        Ok(BlobReader::new(file, size))
    }

    /// Keeps a blob from being evicted until a matching [`Self::unpin`]. Pins are counted and
    /// live in memory: their owner (e.g. a durable write-back queue) re-pins after a restart.
    /// Pinning a blob that is not (yet) stored reserves the pin for when it arrives.
    pub fn pin(&self, digest: &Digest) {
        self.inner.index.lock().pin(*digest);
    }

    /// Releases one pin.
    pub fn unpin(&self, digest: &Digest) {
        self.inner.index.lock().unpin(digest);
        self.evict_if_needed();
    }

    /// Whether the blob has a pin (see [`Self::pin`]).
    pub fn is_pinned(&self, digest: &Digest) -> bool {
        self.inner.index.lock().is_pinned(digest)
    }

    /// Deletes a blob and its sidecars, pinned or not.
    pub fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        self.inner.index.lock().remove(digest);
        self.remove_files(digest)
    }

    /// Deletes a blob and its sidecars unless it is pinned (e.g. awaiting write-back); returns
    /// whether it was deleted. The check and the removal happen under the index lock, so a
    /// writer that pins a blob before publishing it (as uploads do) never loses its copy to a
    /// concurrent `delete_unpinned`.
    pub fn delete_unpinned(&self, digest: &Digest) -> Result<bool, StoreError> {
        let mut index = self.inner.index.lock();
        if index.is_pinned(digest) || !index.contains(digest) {
            return Ok(false);
        }
        index.remove(digest);
        self.remove_files(digest)?;
        Ok(true)
    }

    /// Up to `limit` stored blobs `(digest, size)` whose digests sort after `after`, in digest
    /// order: page through the store by passing the last digest of a page as the next `after`.
    /// Each page is a snapshot; blobs added or removed between pages may be missed or seen.
    pub fn list(&self, after: Option<&Digest>, limit: usize) -> Vec<(Digest, u64)> {
        self.inner.index.lock().page(after, limit)
    }

    /// Records, durably and idempotently, that the blob was stored under `namespace`. Returns
    /// whether the namespace is new for it; [`StoreError::NotFound`] if the blob is not stored.
    /// The record is deleted with the blob.
    pub fn add_namespace(&self, digest: &Digest, namespace: &RepoName) -> Result<bool, StoreError> {
        if !self.inner.index.lock().contains(digest) {
            return Err(StoreError::NotFound(*digest));
        }
        namespaces::add(&namespaces_path(&self.blob_path(digest)), namespace)
    }

    /// The namespaces recorded for a blob, in the order they were first recorded (empty if none
    /// were, or the blob is not stored).
    pub fn namespaces(&self, digest: &Digest) -> Result<Vec<RepoName>, StoreError> {
        namespaces::read(&namespaces_path(&self.blob_path(digest)))
    }

    /// Stores a blob's metainfo next to it (atomically).
    pub fn write_metainfo(&self, meta: &MetaInfo) -> Result<(), StoreError> {
        let dest = metainfo_path(&self.blob_path(&meta.digest()));
        let mut temp = self.create_temp()?;
        temp.write(&meta.encode())?;
        let (file, path) = temp.into_parts()?;
        file.sync_all().map_err(io_err("syncing metainfo"))?;
        drop(file);
        fs::create_dir_all(dest.parent().expect("has parent")).map_err(io_err("metainfo dir"))?;
        fs::rename(&path, &dest).map_err(io_err("renaming metainfo into place"))
    }

    /// The stored metainfo of a blob, if any and if it decodes with this build's format.
    pub fn read_metainfo(&self, digest: &Digest) -> Option<MetaInfo> {
        let bytes = fs::read(metainfo_path(&self.blob_path(digest))).ok()?;
        match MetaInfo::decode(&bytes) {
            Ok(m) if m.digest() == *digest => Some(m),
            Ok(_) | Err(_) => None,
        }
    }

    /// Current usage.
    pub fn stats(&self) -> StoreStats {
        self.inner.index.lock().stats()
    }

    /// Evicts least recently used unpinned blobs once usage passes the high watermark, down to
    /// the low watermark. If pins stop it short of the low watermark, it stays in that mode and
    /// carries on as blobs are unpinned (hysteresis), rather than waiting for the next time
    /// usage crosses the high watermark. Returns how many blobs were removed.
    pub fn evict_if_needed(&self) -> usize {
        let config = self.inner.config;
        let high = (config.capacity_bytes as f64 * config.high_watermark) as u64;
        let low = (config.capacity_bytes as f64 * config.low_watermark) as u64;
        let victims = {
            let mut index = self.inner.index.lock();
            if index.bytes() > high {
                index.set_draining(true);
            }
            if !index.draining() {
                return 0;
            }
            let victims = index.take_lru_until(low);
            if index.bytes() <= low {
                index.set_draining(false);
            }
            victims
        };
        if victims.is_empty() && self.inner.index.lock().bytes() > high {
            tracing::warn!(
                capacity = config.capacity_bytes,
                "blob store over its high watermark but every blob is pinned"
            );
        }
        for d in &victims {
            if let Err(e) = self.remove_files(d) {
                tracing::warn!(digest = %d, "evicting blob: {e}");
            }
        }
        if !victims.is_empty() {
            tracing::info!(evicted = victims.len(), "evicted blobs");
        }
        victims.len()
    }

    fn remove_files(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        // The blob first: a crash part-way leaves orphaned sidecars, never a blob without them.
        for p in [path.clone(), metainfo_path(&path), namespaces_path(&path)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing blob")(e)),
            }
        }
        Ok(())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.inner
            .blobs_dir
            .join(digest.algorithm().name())
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex)
    }
}

/// Content that matched its digest, waiting for [`BlobStore::publish`]. Dropping it deletes
/// the file.
#[derive(Debug)]
pub struct VerifiedBlob {
    file: Option<fs::File>,
    path: PathBuf,
    size: u64,
    digest: Digest,
    /// The upload's SHA-256 pass, when the digest is a `sha256` one.
    hashed: Option<shoal_core::HashedBlob>,
}

impl VerifiedBlob {
    /// The blob's chained metainfo with pieces of `piece_len` bytes, from the hash pass that
    /// verified it (no second read): `None` unless the digest is `sha256`, the blob was
    /// written through a [`TempBlob`] and `piece_len` is a multiple of 256 KiB; build it from
    /// the content then.
    pub fn chained_metainfo(&self, piece_len: u32) -> Option<MetaInfo> {
        self.hashed.as_ref()?.metainfo(piece_len)
    }

    /// The verified size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The verified digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

impl Drop for VerifiedBlob {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn metainfo_path(blob: &Path) -> PathBuf {
    blob.with_extension("metainfo")
}

fn namespaces_path(blob: &Path) -> PathBuf {
    blob.with_extension("namespaces")
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
