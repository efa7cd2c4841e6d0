//! Write-back: committed blobs are copied to their namespace's backend through a durable
//! [`Queue`] (`shoal_runtime::queue`).
//!
//! A task is one file under `<data_dir>/writeback/`, written *before* the upload is
//! acknowledged and removed only after the backend holds the blob. Tasks found on start are
//! resumed, so an upload acknowledged before a crash still reaches the backend. While a task is
//! pending its blob is pinned in the local store and never evicted.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use shoal_backend::{BackendError, BackendRouter, ObjectKey};
use shoal_core::{Digest, RepoName};
use shoal_runtime::queue::{Attempt, Executor, Job, Queue};
use shoal_store::{BlobStore, StoreError};

/// The write-back queue.
pub(crate) type Writeback = Queue<BackendWriter>;

/// What must be written where. (The JSON shape and file name are those of tasks written by
/// earlier versions, so pending tasks survive an upgrade.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct WritebackJob {
    namespace: RepoName,
    digest: Digest,
}

impl WritebackJob {
    pub(crate) fn new(namespace: &RepoName, digest: &Digest) -> Self {
        Self {
            namespace: namespace.clone(),
            digest: *digest,
        }
    }
}

impl Job for WritebackJob {
    type Key = Self;

    fn key(&self) -> Self {
        self.clone()
    }

    fn file_stem(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.namespace.as_str());
        h.update(b"\n");
        h.update(self.digest.to_string());
        hex::encode(h.finalize())
    }
}

/// Copies a blob from the local store to its namespace's backend.
#[derive(Debug)]
pub(crate) struct BackendWriter {
    pub(crate) store: BlobStore,
    pub(crate) backends: Arc<BackendRouter>,
}

impl Executor for BackendWriter {
    type Job = WritebackJob;

    async fn execute(&self, job: &WritebackJob) -> Attempt {
        let (ns, d) = (&job.namespace, &job.digest);
        match self.write(job).await {
            Ok(outcome @ (Outcome::Written | Outcome::AlreadyThere)) => {
                tracing::debug!(namespace = %ns, digest = %d, ?outcome, "written back");
            }
            Ok(Outcome::NoBackend) => {
                tracing::warn!(namespace = %ns, digest = %d, "no backend for namespace; blob stays local only");
            }
            Ok(Outcome::ReadOnlyBackend) => {
                tracing::error!(namespace = %ns, digest = %d, "backend for namespace is read-only; blob stays local only");
            }
            Ok(Outcome::LocalBlobMissing) => {
                tracing::warn!(namespace = %ns, digest = %d, "blob to write back is not in the local store; dropping task");
            }
            Err(e) => return Attempt::Retry(e.to_string()),
        }
        Attempt::Done
    }

    /// The blob stays in the local store while its task exists.
    fn recorded(&self, job: &WritebackJob) {
        self.store.pin(&job.digest);
    }

    fn removed(&self, job: &WritebackJob) {
        self.store.unpin(&job.digest);
    }
}

impl BackendWriter {
    async fn write(&self, job: &WritebackJob) -> Result<Outcome, WritebackError> {
        let Some(backend) = self.backends.route(&job.namespace) else {
            return Ok(Outcome::NoBackend);
        };
        let key = ObjectKey::for_blob(&job.digest);
        let store = self.store.clone();
        let digest = job.digest;
        let reader = match tokio::task::spawn_blocking(move || store.open_blob(&digest)).await {
            Ok(Ok(r)) => r,
            Ok(Err(StoreError::NotFound(_))) => return Ok(Outcome::LocalBlobMissing),
            Ok(Err(e)) => return Err(WritebackError::Local(e.to_string())),
            Err(e) => return Err(WritebackError::Local(e.to_string())),
        };
        let size = reader.size();
        match backend.stat(&job.namespace, &key).await {
            Ok(meta) if meta.size == size => return Ok(Outcome::AlreadyThere),
            Ok(_) | Err(BackendError::NotFound) => {}
            Err(e) => return Err(WritebackError::Backend(e)),
        }
        let body = Box::pin(reader.into_chunks(0..size));
        match backend.put(&job.namespace, &key, size, body).await {
            Ok(()) => Ok(Outcome::Written),
            Err(BackendError::ReadOnly) => Ok(Outcome::ReadOnlyBackend),
            Err(e) => Err(WritebackError::Backend(e)),
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Written,
    AlreadyThere,
    NoBackend,
    ReadOnlyBackend,
    LocalBlobMissing,
}

#[derive(Debug, thiserror::Error)]
enum WritebackError {
    #[error("backend: {0}")]
    Backend(BackendError),
    #[error("local store: {0}")]
    Local(String),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use shoal_core::Algorithm;
    use shoal_runtime::CancellationToken;
    use shoal_runtime::queue::{QueueConfig, QueueMetrics};
    use shoal_store::StoreConfig;

    use super::*;

    fn open(dir: &std::path::Path, store: &BlobStore) -> Writeback {
        let writer = BackendWriter {
            store: store.clone(),
            backends: Arc::new(BackendRouter::new(Vec::new())),
        };
        let config = QueueConfig::default();
        Queue::open("write-back", dir, writer, config, QueueMetrics::default()).unwrap()
    }

    /// A task's blob stays pinned from its enqueue, across a restart, until it is finished.
    #[tokio::test]
    async fn tasks_pin_their_blob_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (sdir, qdir) = (dir.path().join("store"), dir.path().join("writeback"));
        let store = BlobStore::open(&sdir, StoreConfig::default()).unwrap();
        let d = Digest::compute(Algorithm::Sha256, b"x");
        let job = WritebackJob::new(&"demo".parse().unwrap(), &d);
        let q = open(&qdir, &store);
        assert!(q.enqueue(&job).unwrap());
        assert!(store.is_pinned(&d));
        q.abandon(&job);
        assert!(!store.is_pinned(&d));
        q.enqueue_now(std::slice::from_ref(&job)).unwrap();
        drop(q);

        let store = BlobStore::open(&sdir, StoreConfig::default()).unwrap();
        let q = open(&qdir, &store);
        assert!(store.is_pinned(&d), "a resumed task pins its blob");
        let token = CancellationToken::new();
        let run = tokio::spawn(q.clone().run(token.clone()));
        // No backend routes the namespace: the task is done (the blob stays local only).
        shoal_runtime::wait::wait_until(Duration::from_secs(10), "queue drained", || async {
            q.depth() == 0
        })
        .await
        .unwrap();
        token.cancel();
        run.await.unwrap();
        assert!(!store.is_pinned(&d));
    }
}
