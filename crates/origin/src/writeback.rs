//! Write-back: committed blobs are copied to their namespace's backend through a durable
//! [`Queue`].
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
use shoal_store::{BlobStore, StoreError};

use crate::queue::{Attempt, Executor, Job, Queue};

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
    fn file_stem(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.namespace.as_str());
        h.update(b"\n");
        h.update(self.digest.to_string());
        hex::encode(h.finalize())
    }

    fn digest(&self) -> Digest {
        self.digest
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
