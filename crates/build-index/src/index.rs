//! Tag and manifest semantics over the record store: generations, tombstones, per-tag locks,
//! and the hand-off of local tag writes to replication.
//!
//! Every mutation of a tag runs under that tag's lock (a `tokio::sync::Mutex` per key, held
//! across the backend calls and dropped from the table when nobody waits on it), so a read,
//! the generation computed from it and the write are one step. One build-index process owns a
//! backend's records; two processes writing the same records would race.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use shoal_build_index_api::{ManifestRecord, TagRecord};
use shoal_core::{Digest, RepoName, Tag};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::replication::Replicator;
use crate::store::{RecordStore, StoreError, StoredTag};

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexError {
    /// Reading or writing records failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The replication task could not be made durable; the tag was written but not
    /// acknowledged.
    #[error("cannot queue replication: {0}")]
    Queue(std::io::Error),
}

type TagKey = (RepoName, Tag);

/// Tags and manifests.
#[derive(Debug)]
pub(crate) struct Index {
    store: Arc<RecordStore>,
    locks: DashMap<TagKey, Arc<Mutex<()>>>,
    replicator: Replicator,
}

/// A held tag lock; removes its table entry on drop when nobody else holds or awaits it.
struct TagLock<'a> {
    locks: &'a DashMap<TagKey, Arc<Mutex<()>>>,
    key: TagKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for TagLock<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.locks
            .remove_if(&self.key, |_, m| Arc::strong_count(m) == 1);
    }
}

/// Microseconds since the Unix epoch.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The generation of a local write over `current`: `max(now, current + 1)`.
fn next_generation(current: Option<&StoredTag>) -> u64 {
    now_micros().max(current.map_or(0, |c| c.generation.saturating_add(1)))
}

impl Index {
    pub(crate) fn new(store: Arc<RecordStore>, replicator: Replicator) -> Self {
        Self {
            store,
            locks: DashMap::new(),
            replicator,
        }
    }

    async fn lock(&self, repo: &RepoName, tag: &Tag) -> TagLock<'_> {
        let key = (repo.clone(), tag.clone());
        let mutex = Arc::clone(self.locks.entry(key.clone()).or_default().value());
        let guard = mutex.lock_owned().await;
        TagLock {
            locks: &self.locks,
            key,
            guard: Some(guard),
        }
    }

    /// The live record of a tag.
    pub(crate) async fn get_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<TagRecord>, IndexError> {
        Ok(self.store.read_tag(repo, tag).await?.and_then(|s| s.live()))
    }

    /// A local write: assigns the next generation, stores the record, and durably queues its
    /// replication before returning.
    pub(crate) async fn put_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: Digest,
    ) -> Result<TagRecord, IndexError> {
        let _lock = self.lock(repo, tag).await;
        let current = self.store.read_tag(repo, tag).await?;
        let record = TagRecord {
            digest,
            generation: next_generation(current.as_ref()),
        };
        let state = StoredTag {
            digest,
            generation: record.generation,
            deleted: false,
        };
        self.store.write_tag(repo, tag, &state).await?;
        self.replicator
            .enqueue(repo, tag, record)
            .await
            .map_err(IndexError::Queue)?;
        Ok(record)
    }

    /// A write replicated from another zone: applied only if it supersedes the stored state
    /// (live or tombstone). Never replicated further. Returns whether it was applied.
    pub(crate) async fn replicate_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        record: TagRecord,
    ) -> Result<bool, IndexError> {
        let _lock = self.lock(repo, tag).await;
        let current = self.store.read_tag(repo, tag).await?;
        if current.is_some_and(|c| !record.supersedes(&c.record())) {
            return Ok(false);
        }
        let state = StoredTag {
            digest: record.digest,
            generation: record.generation,
            deleted: false,
        };
        self.store.write_tag(repo, tag, &state).await?;
        Ok(true)
    }

    /// Replaces a live tag by a tombstone with the next generation. False if there was no live
    /// tag.
    pub(crate) async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, IndexError> {
        let _lock = self.lock(repo, tag).await;
        self.tombstone_locked(repo, tag, None).await
    }

    /// Writes a tombstone over the live state of `tag` (only if it points at `only_if`, when
    /// given). The caller holds the tag's lock.
    async fn tombstone_locked(
        &self,
        repo: &RepoName,
        tag: &Tag,
        only_if: Option<&Digest>,
    ) -> Result<bool, IndexError> {
        let Some(current) = self.store.read_tag(repo, tag).await? else {
            return Ok(false);
        };
        if current.deleted || only_if.is_some_and(|d| *d != current.digest) {
            return Ok(false);
        }
        let tombstone = StoredTag {
            digest: current.digest,
            generation: next_generation(Some(&current)),
            deleted: true,
        };
        self.store.write_tag(repo, tag, &tombstone).await?;
        Ok(true)
    }

    /// Live tags in lexical order after `last`, at most `n`; `None` for an unknown repository.
    pub(crate) async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&Tag>,
        n: Option<usize>,
    ) -> Result<Option<Vec<Tag>>, IndexError> {
        let tags = self.store.scan_tags(repo, last, n, |s| !s.deleted).await?;
        if tags.is_empty() && !self.store.repo_known(repo).await? {
            return Ok(None);
        }
        Ok(Some(tags.into_iter().map(|(t, _)| t).collect()))
    }

    pub(crate) async fn put_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
    ) -> Result<(), IndexError> {
        Ok(self.store.write_manifest(repo, record).await?)
    }

    pub(crate) async fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, IndexError> {
        Ok(self.store.read_manifest(repo, digest).await?)
    }

    /// Deletes the repository's live tags that point at the manifest (tombstones), then the
    /// manifest's record. False if the manifest is unknown.
    pub(crate) async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, IndexError> {
        let Some(record) = self.store.read_manifest(repo, digest).await? else {
            return Ok(false);
        };
        let pointing = self
            .store
            .scan_tags(repo, None, None, |s| !s.deleted && s.digest == *digest)
            .await?;
        for (tag, _) in pointing {
            let _lock = self.lock(repo, &tag).await;
            self.tombstone_locked(repo, &tag, Some(digest)).await?;
        }
        self.store.delete_manifest(repo, &record).await?;
        Ok(true)
    }

    pub(crate) async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, IndexError> {
        Ok(self.store.referrers(repo, subject).await?)
    }

    pub(crate) async fn catalog(
        &self,
        last: Option<&RepoName>,
        n: Option<usize>,
    ) -> Result<Vec<RepoName>, IndexError> {
        Ok(self.store.catalog(last, n).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_follow_the_clock_and_always_grow() {
        let d = Digest::compute(shoal_core::Algorithm::Sha256, b"x");
        let now = now_micros();
        assert!(next_generation(None) >= now);
        let future = StoredTag {
            digest: d,
            generation: now + 10_000_000_000,
            deleted: false,
        };
        assert_eq!(next_generation(Some(&future)), future.generation + 1);
    }
}
