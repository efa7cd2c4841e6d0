//! The in-memory index of committed blobs: sizes, last access, pins.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::ops::Bound;
use std::path::Path;
use std::time::SystemTime;

use shoal_core::Digest;

use crate::{StoreError, StoreStats, io_err};

/// How stale the persisted access time (the blob file's mtime) may get, in milliseconds.
const PERSIST_ACCESS_EVERY_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    /// Last access as (wall-clock ms, sequence number): the sequence orders accesses within
    /// the same millisecond.
    last_access: (u64, u64),
    persisted_access_ms: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Ordered by digest, so that listings can page through it.
    blobs: BTreeMap<Digest, Entry>,
    pins: HashMap<Digest, u32>,
    bytes: u64,
    evictions: u64,
    seq: u64,
    /// Set when usage passed the high watermark; cleared once it is back under the low one.
    draining: bool,
}

impl Index {
    /// Indexes `blobs/<alg>/<aa>/<bb>/<hex>`; files that do not fit the layout are ignored.
    pub(crate) fn scan(blobs_dir: &Path) -> Result<Self, StoreError> {
        let mut index = Self::default();
        for alg in read_dir(blobs_dir)? {
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            for shard1 in read_dir(&alg.path())? {
                for shard2 in read_dir(&shard1.path())? {
                    for file in read_dir(&shard2.path())? {
                        let name = file.file_name().to_string_lossy().into_owned();
                        if name.contains('.') {
                            continue; // a sidecar (`.metainfo`, `.namespaces`)
                        }
                        let Ok(digest) = format!("{alg_name}:{name}").parse::<Digest>() else {
                            tracing::warn!(path = %file.path().display(), "ignoring stray file");
                            continue;
                        };
                        let Ok(meta) = file.metadata() else { continue };
                        let mtime = meta
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_millis() as u64);
                        index.blobs.insert(
                            digest,
                            Entry {
                                size: meta.len(),
                                last_access: (mtime, 0),
                                persisted_access_ms: mtime,
                            },
                        );
                        index.bytes += meta.len();
                    }
                }
            }
        }
        Ok(index)
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining
    }

    pub(crate) fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    pub(crate) fn len(&self) -> usize {
        self.blobs.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn contains(&self, d: &Digest) -> bool {
        self.blobs.contains_key(d)
    }

    pub(crate) fn size(&self, d: &Digest) -> Option<u64> {
        self.blobs.get(d).map(|e| e.size)
    }

    fn stamp(&mut self, now_ms: u64) -> (u64, u64) {
        self.seq += 1;
        (now_ms, self.seq)
    }

    pub(crate) fn insert(&mut self, d: Digest, size: u64, now_ms: u64) {
        let last_access = self.stamp(now_ms);
        let old = self.blobs.insert(
            d,
            Entry {
                size,
                last_access,
                persisted_access_ms: now_ms,
            },
        );
        if let Some(old) = old {
            self.bytes -= old.size;
        }
        self.bytes += size;
    }

    pub(crate) fn remove(&mut self, d: &Digest) {
        if let Some(old) = self.blobs.remove(d) {
            self.bytes -= old.size;
        }
    }

    /// Records an access; returns the size if the blob is indexed.
    pub(crate) fn touch(&mut self, d: &Digest, now_ms: u64) -> Option<u64> {
        let stamp = self.stamp(now_ms);
        let e = self.blobs.get_mut(d)?;
        e.last_access = e.last_access.max(stamp);
        Some(e.size)
    }

    /// Whether the access time should be written to disk now (and notes that it will be).
    pub(crate) fn should_persist_access(&mut self, d: &Digest, now_ms: u64) -> bool {
        match self.blobs.get_mut(d) {
            Some(e) if now_ms.saturating_sub(e.persisted_access_ms) >= PERSIST_ACCESS_EVERY_MS => {
                e.persisted_access_ms = now_ms;
                true
            }
            _ => false,
        }
    }

    /// Up to `limit` blobs with digests after `after`, in digest order.
    pub(crate) fn page(&self, after: Option<&Digest>, limit: usize) -> Vec<(Digest, u64)> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.blobs
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(d, e)| (*d, e.size))
            .collect()
    }

    pub(crate) fn is_pinned(&self, d: &Digest) -> bool {
        self.pins.contains_key(d)
    }

    pub(crate) fn pin(&mut self, d: Digest) {
        *self.pins.entry(d).or_insert(0) += 1;
    }

    pub(crate) fn unpin(&mut self, d: &Digest) {
        if let Some(n) = self.pins.get_mut(d) {
            *n -= 1;
            if *n == 0 {
                self.pins.remove(d);
            }
        }
    }

    /// Removes least recently used unpinned blobs from the index until at most `target` bytes
    /// remain (or nothing evictable is left) and returns them for the caller to delete.
    pub(crate) fn take_lru_until(&mut self, target: u64) -> Vec<Digest> {
        let mut candidates: Vec<((u64, u64), Digest)> = self
            .blobs
            .iter()
            .filter(|(d, _)| !self.pins.contains_key(*d))
            .map(|(d, e)| (e.last_access, *d))
            .collect();
        candidates.sort_unstable();
        let mut victims = Vec::new();
        for (_, d) in candidates {
            if self.bytes <= target {
                break;
            }
            self.remove(&d);
            victims.push(d);
        }
        self.evictions += victims.len() as u64;
        victims
    }

    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            blobs: self.blobs.len() as u64,
            bytes: self.bytes,
            pinned_bytes: self
                .pins
                .keys()
                .filter_map(|d| self.blobs.get(d))
                .map(|e| e.size)
                .sum(),
            evictions: self.evictions,
        }
    }
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    let entries = fs::read_dir(dir).map_err(io_err(format!("reading {}", dir.display())))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() || t.is_file()))
        .collect())
}
