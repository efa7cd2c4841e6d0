//! The durable write-back queue: committed uploads are copied to their backend, with retries.
//!
//! A task is one file under `<data_dir>/writeback/`, written (fsync, rename, fsync) *before*
//! the upload is acknowledged, and removed only after the backend holds the blob. Tasks found
//! on start are resumed, so an upload acknowledged before a crash still reaches the backend.
//! While a task is pending its blob is pinned in the local store and never evicted.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use shoal_backend::{BackendError, BackendRouter, ObjectKey};
use shoal_core::{Digest, RepoName};
use shoal_store::{BlobStore, StoreError};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::WritebackConfig;

/// What must be written where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Task {
    namespace: RepoName,
    digest: Digest,
}

impl Task {
    fn file_name(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.namespace.as_str());
        h.update(b"\n");
        h.update(self.digest.to_string());
        format!("{}.task", hex::encode(h.finalize()))
    }
}

#[derive(Debug)]
struct Pending {
    /// When to (re)try; `None` until [`Writeback::activate`] (the blob is not published yet).
    due: Option<Instant>,
    attempts: u32,
    running: bool,
}

/// Write-back metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct WritebackMetrics {
    pub(crate) depth: Gauge,
    pub(crate) completed: Counter,
    pub(crate) failures: Counter,
}

/// The queue. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Writeback {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    store: BlobStore,
    backends: Arc<BackendRouter>,
    config: WritebackConfig,
    tasks: Mutex<HashMap<Task, Pending>>,
    wake: Notify,
    metrics: WritebackMetrics,
}

impl Writeback {
    /// Opens the queue in `dir`, loading (and pinning the blobs of) tasks left from before.
    pub(crate) fn open(
        dir: &Path,
        store: BlobStore,
        backends: Arc<BackendRouter>,
        config: WritebackConfig,
        metrics: WritebackMetrics,
    ) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut tasks = HashMap::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "task") {
                let _ = fs::remove_file(&path); // an interrupted enqueue's temp file
                continue;
            }
            let task = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Task>(&b).ok());
            let Some(task) = task else {
                tracing::error!(path = %path.display(), "dropping unreadable write-back task");
                let _ = fs::remove_file(&path);
                continue;
            };
            // Tasks are addressed by their canonical file name from now on.
            let canonical = dir.join(task.file_name());
            if path != canonical {
                fs::rename(&path, &canonical)?;
            }
            store.pin(&task.digest);
            tasks.insert(
                task,
                Pending {
                    due: Some(Instant::now()),
                    attempts: 0,
                    running: false,
                },
            );
        }
        if !tasks.is_empty() {
            tracing::info!(pending = tasks.len(), "resuming write-back tasks");
        }
        metrics.depth.set(tasks.len() as i64);
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                store,
                backends,
                config,
                tasks: Mutex::new(tasks),
                wake: Notify::new(),
                metrics,
            }),
        })
    }

    /// Durably records that `digest` must be written back for `namespace` and pins the blob.
    /// The task runs only after [`Self::activate`], once the blob is published; a task whose
    /// blob never got published (a crash in between) is dropped when it runs after a restart.
    /// Blocking (file I/O and fsync). Returns false if the task already existed.
    pub(crate) fn enqueue(&self, namespace: &RepoName, digest: &Digest) -> std::io::Result<bool> {
        let task = Task {
            namespace: namespace.clone(),
            digest: *digest,
        };
        if self.inner.tasks.lock().contains_key(&task) {
            return Ok(false);
        }
        let path = self.inner.dir.join(task.file_name());
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec(&task).map_err(std::io::Error::other)?;
        {
            let f = fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut &f, &body)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.inner.dir)?.sync_all()?;
        let mut tasks = self.inner.tasks.lock();
        let created = !tasks.contains_key(&task);
        if created {
            tasks.insert(
                task,
                Pending {
                    due: None,
                    attempts: 0,
                    running: false,
                },
            );
            self.inner.store.pin(digest);
        }
        self.inner.metrics.depth.set(tasks.len() as i64);
        Ok(created)
    }

    /// Lets an enqueued task run now that its blob is published.
    pub(crate) fn activate(&self, namespace: &RepoName, digest: &Digest) {
        let task = Task {
            namespace: namespace.clone(),
            digest: *digest,
        };
        if let Some(p) = self.inner.tasks.lock().get_mut(&task) {
            p.due.get_or_insert_with(Instant::now);
        }
        self.inner.wake.notify_one();
    }

    /// Forgets a task created by [`Self::enqueue`] whose blob could not be published.
    pub(crate) fn abandon(&self, namespace: &RepoName, digest: &Digest) {
        let task = Task {
            namespace: namespace.clone(),
            digest: *digest,
        };
        let mut tasks = self.inner.tasks.lock();
        if tasks.remove(&task).is_some() {
            let _ = fs::remove_file(self.inner.dir.join(task.file_name()));
            self.inner.store.unpin(digest);
        }
        self.inner.metrics.depth.set(tasks.len() as i64);
    }

    /// Tasks not yet completed.
    pub(crate) fn depth(&self) -> usize {
        self.inner.tasks.lock().len()
    }

    /// Runs due tasks, at most `concurrency` at once, until `shutdown`. Tasks still running at
    /// shutdown are abandoned and resume on the next start.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut running = JoinSet::new();
        loop {
            let now = Instant::now();
            let room = self.inner.config.concurrency.saturating_sub(running.len());
            let (ready, next_due) = self.take_due(now, room);
            for task in ready {
                let this = self.clone();
                running.spawn(async move {
                    let result = this.execute(&task).await;
                    this.finish(task, result);
                });
            }
            let sleep_until = next_due.unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep_until(sleep_until) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        running.shutdown().await;
    }

    /// Marks up to `room` due tasks as running; returns them and the next due time of the rest.
    fn take_due(&self, now: Instant, room: usize) -> (Vec<Task>, Option<Instant>) {
        let mut tasks = self.inner.tasks.lock();
        let mut ready = Vec::new();
        let mut next_due: Option<Instant> = None;
        for (task, p) in tasks.iter_mut().filter(|(_, p)| !p.running) {
            let Some(due) = p.due else { continue };
            if due <= now && ready.len() < room {
                p.running = true;
                ready.push(task.clone());
            } else if due > now {
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
            }
        }
        (ready, next_due)
    }

    async fn execute(&self, task: &Task) -> Result<Outcome, WritebackError> {
        let Some(backend) = self.inner.backends.route(&task.namespace) else {
            return Ok(Outcome::NoBackend);
        };
        let key = ObjectKey::for_blob(&task.digest);
        let store = self.inner.store.clone();
        let digest = task.digest;
        let reader = match tokio::task::spawn_blocking(move || store.open_blob(&digest)).await {
            Ok(Ok(r)) => r,
            Ok(Err(StoreError::NotFound(_))) => return Ok(Outcome::LocalBlobMissing),
            Ok(Err(e)) => return Err(WritebackError::Local(e.to_string())),
            Err(e) => return Err(WritebackError::Local(e.to_string())),
        };
        let size = reader.size();
        match backend.stat(&task.namespace, &key).await {
            Ok(meta) if meta.size == size => return Ok(Outcome::AlreadyThere),
            Ok(_) | Err(BackendError::NotFound) => {}
            Err(e) => return Err(WritebackError::Backend(e)),
        }
        let body = Box::pin(reader.into_chunks(0..size));
        match backend.put(&task.namespace, &key, size, body).await {
            Ok(()) => Ok(Outcome::Written),
            Err(BackendError::ReadOnly) => Ok(Outcome::ReadOnlyBackend),
            Err(e) => Err(WritebackError::Backend(e)),
        }
    }

    fn finish(&self, task: Task, result: Result<Outcome, WritebackError>) {
        let done = match &result {
            Ok(outcome) => {
                match outcome {
                    Outcome::Written | Outcome::AlreadyThere => {
                        tracing::debug!(namespace = %task.namespace, digest = %task.digest, ?outcome, "written back");
                    }
                    Outcome::NoBackend => {
                        tracing::warn!(namespace = %task.namespace, digest = %task.digest, "no backend for namespace; blob stays local only");
                    }
                    Outcome::ReadOnlyBackend => {
                        tracing::error!(namespace = %task.namespace, digest = %task.digest, "backend for namespace is read-only; blob stays local only");
                    }
                    Outcome::LocalBlobMissing => {
                        tracing::warn!(namespace = %task.namespace, digest = %task.digest, "blob to write back is not in the local store; dropping task");
                    }
                }
                true
            }
            Err(_) => false,
        };
        let mut tasks = self.inner.tasks.lock();
        if done {
            tasks.remove(&task);
            let _ = fs::remove_file(self.inner.dir.join(task.file_name()));
            self.inner.store.unpin(&task.digest);
            self.inner.metrics.completed.inc();
        } else if let Some(p) = tasks.get_mut(&task) {
            p.running = false;
            p.attempts += 1;
            let backoff = backoff(&self.inner.config, p.attempts);
            p.due = Some(Instant::now() + backoff);
            self.inner.metrics.failures.inc();
            if let Err(e) = &result {
                tracing::warn!(
                    namespace = %task.namespace,
                    digest = %task.digest,
                    attempts = p.attempts,
                    retry_in = ?backoff,
                    "write-back failed: {e}"
                );
            }
        }
        self.inner.metrics.depth.set(tasks.len() as i64);
        drop(tasks);
        self.inner.wake.notify_one();
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

/// Exponential backoff with ±20% jitter, capped.
fn backoff(config: &WritebackConfig, attempts: u32) -> Duration {
    let exp = config
        .initial_backoff
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(config.max_backoff);
    capped.mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = WritebackConfig {
            concurrency: 1,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        let b1 = backoff(&c, 1);
        assert!(b1 >= Duration::from_millis(80) && b1 <= Duration::from_millis(120));
        let b3 = backoff(&c, 3);
        assert!(b3 >= Duration::from_millis(320) && b3 <= Duration::from_millis(480));
        let b30 = backoff(&c, 30);
        assert!(b30 <= Duration::from_millis(1200));
    }
}
