//! Records as small JSON objects in a [`Backend`] (layout in [`crate::keys`]).
//!
//! This layer reads and writes single records and pages through keys; it knows nothing about
//! generations or locks (that is [`crate::index`]). The backend is the source of truth: nothing
//! here is cached except which repositories already have a marker.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashSet;
use futures_util::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_backend::{Backend, BackendError, KeyError, ListRequest, ObjectKey};
use shoal_build_index_api::{ManifestRecord, TagRecord};
use shoal_core::{Digest, RepoName, Tag};

use crate::keys;

/// The largest record read back. Records are usually a few hundred bytes, but a manifest
/// record carries the manifest's annotations, and manifests may be 4 MiB.
const MAX_RECORD: usize = 8 << 20;
/// Records read concurrently when a listing needs their contents.
const READ_CONCURRENCY: usize = 16;
/// Keys asked for per backend list call.
const LIST_PAGE: usize = 1000;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The backend failed.
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    /// A key could not be built (cannot happen for validated names).
    #[error("key: {0}")]
    Key(#[from] KeyError),
    /// A stored record is not what this build-index writes.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl StoreError {
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Self::Backend(e) if e.is_transient())
    }
}

/// A tag as stored: a live record, or a tombstone left by a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredTag {
    /// The digest (for a tombstone: the digest the tag pointed at when deleted).
    pub(crate) digest: Digest,
    /// The generation of this state.
    pub(crate) generation: u64,
    /// Whether this is a tombstone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) deleted: bool,
}

impl StoredTag {
    pub(crate) fn record(&self) -> TagRecord {
        TagRecord {
            digest: self.digest,
            generation: self.generation,
        }
    }

    /// The live record, `None` for a tombstone.
    pub(crate) fn live(&self) -> Option<TagRecord> {
        (!self.deleted).then(|| self.record())
    }
}

/// Record storage over one backend.
#[derive(Debug)]
pub(crate) struct RecordStore {
    backend: Arc<dyn Backend>,
    /// Passed as the namespace of calls that concern no single repository (catalog).
    global_ns: RepoName,
    /// Repositories whose marker this process has written or seen.
    marked: DashSet<RepoName>,
}

impl RecordStore {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        let Ok(global_ns) = "shoal-build-index".parse() else {
            unreachable!("a valid repository name")
        };
        Self {
            backend,
            global_ns,
            marked: DashSet::new(),
        }
    }

    async fn read<T: DeserializeOwned>(
        &self,
        ns: &RepoName,
        key: &ObjectKey,
    ) -> Result<Option<T>, StoreError> {
        let mut stream = match self.backend.get(ns, key, None).await {
            Ok(s) => s,
            Err(BackendError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BackendError::Unavailable(Box::new(e)))?;
            if buf.len() + chunk.len() > MAX_RECORD {
                return Err(corrupt(key, "record too large"));
            }
            buf.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| corrupt(key, &e.to_string()))
    }

    async fn write<T: Serialize>(
        &self,
        ns: &RepoName,
        key: &ObjectKey,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes =
            Bytes::from(serde_json::to_vec(value).map_err(|e| corrupt(key, &e.to_string()))?);
        let len = bytes.len() as u64;
        let body = futures_util::stream::once(async move { Ok(bytes) }).boxed();
        self.backend.put(ns, key, len, body).await?;
        Ok(())
    }

    /// One page of keys under `prefix` after `after`, and the cursor of the next page.
    async fn list_keys(
        &self,
        ns: &RepoName,
        prefix: String,
        after: Option<ObjectKey>,
        limit: usize,
    ) -> Result<(Vec<ObjectKey>, Option<ObjectKey>), StoreError> {
        let page = self
            .backend
            .list(
                ns,
                ListRequest {
                    prefix,
                    after,
                    limit,
                },
            )
            .await?;
        Ok((page.keys, page.next))
    }

    /// Whether any key exists under `prefix`.
    async fn any_under(&self, ns: &RepoName, prefix: String) -> Result<bool, StoreError> {
        let (keys, _) = self.list_keys(ns, prefix, None, 1).await?;
        Ok(!keys.is_empty())
    }

    // ---- tags ----

    pub(crate) async fn read_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<StoredTag>, StoreError> {
        self.read(repo, &keys::tag(repo, tag)?).await
    }

    pub(crate) async fn write_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        state: &StoredTag,
    ) -> Result<(), StoreError> {
        self.mark(repo).await?;
        self.write(repo, &keys::tag(repo, tag)?, state).await
    }

    /// Tags with a stored state (live or tombstone) in lexical order after `after`, with their
    /// states, until `keep` has accepted `limit` of them (`None`: all).
    pub(crate) async fn scan_tags(
        &self,
        repo: &RepoName,
        after: Option<&Tag>,
        limit: Option<usize>,
        keep: impl Fn(&StoredTag) -> bool,
    ) -> Result<Vec<(Tag, StoredTag)>, StoreError> {
        let prefix = keys::tags_prefix(repo);
        let mut cursor = after.map(|t| keys::tag(repo, t)).transpose()?;
        let mut out = Vec::new();
        loop {
            if limit.is_some_and(|l| out.len() >= l) {
                return Ok(out);
            }
            let want = limit.map_or(LIST_PAGE, |l| (l - out.len()).clamp(1, LIST_PAGE));
            let (page, next) = self
                .list_keys(repo, prefix.clone(), cursor.clone(), want)
                .await?;
            let states: Vec<Option<StoredTag>> = futures_util::stream::iter(page.clone())
                .map(|k| async move { self.read::<StoredTag>(repo, &k).await })
                .buffered(READ_CONCURRENCY)
                .try_collect()
                .await?;
            for (key, state) in page.iter().zip(states) {
                let (Some(tag), Some(state)) = (keys::tag_of(&prefix, key), state) else {
                    continue;
                };
                if keep(&state) && limit.is_none_or(|l| out.len() < l) {
                    out.push((tag, state));
                }
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Whether the repository has any tag state (even a tombstone) or manifest.
    pub(crate) async fn repo_known(&self, repo: &RepoName) -> Result<bool, StoreError> {
        Ok(self.any_under(repo, keys::tags_prefix(repo)).await?
            || self.any_under(repo, keys::manifests_prefix(repo)).await?)
    }

    // ---- manifests ----

    pub(crate) async fn read_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        self.read(repo, &keys::manifest(repo, digest)?).await
    }

    /// Writes the record and, if it has a subject, its referrer entry.
    pub(crate) async fn write_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
    ) -> Result<(), StoreError> {
        self.mark(repo).await?;
        let digest = &record.descriptor.digest;
        if let Some(subject) = &record.subject {
            self.write(repo, &keys::referrer(repo, subject, digest)?, record)
                .await?;
        }
        self.write(repo, &keys::manifest(repo, digest)?, record)
            .await
    }

    /// Removes the record and its referrer entry.
    pub(crate) async fn delete_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
    ) -> Result<(), StoreError> {
        let digest = &record.descriptor.digest;
        if let Some(subject) = &record.subject {
            self.backend
                .delete(repo, &keys::referrer(repo, subject, digest)?)
                .await?;
        }
        self.backend
            .delete(repo, &keys::manifest(repo, digest)?)
            .await?;
        Ok(())
    }

    /// Records of the manifests whose subject is `subject`, in key (digest) order.
    pub(crate) async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, StoreError> {
        let prefix = keys::referrers_prefix(repo, subject);
        let mut cursor = None;
        let mut out = Vec::new();
        loop {
            let (page, next) = self
                .list_keys(repo, prefix.clone(), cursor, LIST_PAGE)
                .await?;
            let records: Vec<Option<ManifestRecord>> = futures_util::stream::iter(page)
                .map(|k| async move { self.read::<ManifestRecord>(repo, &k).await })
                .buffered(READ_CONCURRENCY)
                .try_collect()
                .await?;
            out.extend(records.into_iter().flatten());
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    // ---- repositories ----

    /// Writes the repository's marker once per process (idempotent).
    async fn mark(&self, repo: &RepoName) -> Result<(), StoreError> {
        if self.marked.contains(repo) {
            return Ok(());
        }
        self.write(repo, &keys::repository(repo)?, &serde_json::json!({}))
            .await?;
        self.marked.insert(repo.clone());
        Ok(())
    }

    /// Repositories with tag states or manifests, in lexical order after `last`, at most
    /// `limit` (`None`: all).
    pub(crate) async fn catalog(
        &self,
        last: Option<&RepoName>,
        limit: Option<usize>,
    ) -> Result<Vec<RepoName>, StoreError> {
        let mut cursor = last.map(keys::repository).transpose()?;
        let mut out = Vec::new();
        loop {
            if limit.is_some_and(|l| out.len() >= l) {
                return Ok(out);
            }
            let want = limit.map_or(LIST_PAGE, |l| (l - out.len()).clamp(1, LIST_PAGE));
            let (page, next) = self
                .list_keys(&self.global_ns, keys::REPOSITORIES.to_owned(), cursor, want)
                .await?;
            let repos: Vec<RepoName> = page.iter().filter_map(keys::repository_of).collect();
            let known: Vec<bool> = futures_util::stream::iter(repos.clone())
                .map(|r| async move { self.repo_known(&r).await })
                .buffered(READ_CONCURRENCY)
                .try_collect()
                .await?;
            for (repo, known) in repos.into_iter().zip(known) {
                if known && limit.is_none_or(|l| out.len() < l) {
                    self.marked.insert(repo.clone());
                    out.push(repo);
                }
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }
}

fn corrupt(key: &ObjectKey, reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: reason.to_owned(),
    }
}
