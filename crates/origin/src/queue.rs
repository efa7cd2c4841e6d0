//! A durable task queue: every task is a file on disk, written (fsync, rename, directory
//! fsync) before the caller acknowledges anything, run with bounded concurrency, retried with
//! exponential backoff and jitter until it finishes, and resumed after a restart.
//!
//! The origin runs two: write-back of committed blobs to their backend (`writeback.rs`) and
//! replication to sibling origins (`replicate.rs`). What a task is and how it runs is the
//! [`Executor`]'s business; this module is only the bookkeeping. Every task names one blob,
//! which stays pinned in the local store (never evicted) while the task exists.

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs;
use std::future::Future;
use std::hash::Hash;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_core::Digest;
use shoal_store::BlobStore;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::QueueConfig;

/// A task: serialised as JSON into its file.
pub(crate) trait Job:
    Clone + Eq + Hash + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// A name unique to the task and stable across versions, usable as a file name (the file
    /// is `<stem>.task`), e.g. a hash of its fields.
    fn file_stem(&self) -> String;
    /// The blob the task needs; pinned while the task exists.
    fn digest(&self) -> Digest;
}

/// How one attempt at a task ended.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The task is finished, successfully or for good (the executor logs which): its file is
    /// removed and its blob unpinned.
    Done,
    /// It failed in a way that may pass: retried after a backoff.
    Retry(String),
}

/// Runs tasks.
pub(crate) trait Executor: Debug + Send + Sync + 'static {
    /// The task type.
    type Job: Job;
    /// Runs one attempt at `job`.
    fn execute(&self, job: &Self::Job) -> impl Future<Output = Attempt> + Send;
}

/// Queue metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueMetrics {
    pub(crate) depth: Gauge,
    pub(crate) completed: Counter,
    pub(crate) failures: Counter,
}

#[derive(Debug)]
struct Pending {
    /// When to (re)try; `None` until [`Queue::activate`] (the blob is not published yet).
    due: Option<Instant>,
    attempts: u32,
    running: bool,
}

/// The queue. Cheap to clone.
#[derive(Debug)]
pub(crate) struct Queue<E: Executor> {
    inner: Arc<Inner<E>>,
}

impl<E: Executor> Clone for Queue<E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

#[derive(Debug)]
struct Inner<E: Executor> {
    /// For logs: "write-back", "replication".
    name: &'static str,
    dir: PathBuf,
    store: BlobStore,
    executor: E,
    config: QueueConfig,
    tasks: Mutex<HashMap<E::Job, Pending>>,
    wake: Notify,
    metrics: QueueMetrics,
}

impl<E: Executor> Queue<E> {
    /// Opens the queue in `dir`, loading (and pinning the blobs of) tasks left from before;
    /// they are due at once.
    pub(crate) fn open(
        name: &'static str,
        dir: &Path,
        store: BlobStore,
        executor: E,
        config: QueueConfig,
        metrics: QueueMetrics,
    ) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut tasks = HashMap::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "task") {
                let _ = fs::remove_file(&path); // an interrupted enqueue's temp file
                continue;
            }
            let job = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<E::Job>(&b).ok());
            let Some(job) = job else {
                tracing::error!(path = %path.display(), "dropping unreadable {name} task");
                let _ = fs::remove_file(&path);
                continue;
            };
            // Tasks are addressed by their canonical file name from now on.
            let canonical = task_path(dir, &job);
            if path != canonical {
                fs::rename(&path, &canonical)?;
            }
            store.pin(&job.digest());
            tasks.insert(
                job,
                Pending {
                    due: Some(Instant::now()),
                    attempts: 0,
                    running: false,
                },
            );
        }
        if !tasks.is_empty() {
            tracing::info!(pending = tasks.len(), "resuming {name} tasks");
        }
        metrics.depth.set(tasks.len() as i64);
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                dir: dir.to_owned(),
                store,
                executor,
                config,
                tasks: Mutex::new(tasks),
                wake: Notify::new(),
                metrics,
            }),
        })
    }

    /// The executor.
    pub(crate) fn executor(&self) -> &E {
        &self.inner.executor
    }

    /// Durably records `job` and pins its blob. The task runs only after [`Self::activate`],
    /// once the blob is published; a task whose blob never got published (a crash in between)
    /// finds no blob when it runs after a restart. Blocking (file I/O and fsync). Returns false
    /// if the task already existed.
    pub(crate) fn enqueue(&self, job: &E::Job) -> io::Result<bool> {
        Ok(self.insert(std::slice::from_ref(job), None)? == 1)
    }

    /// Durably records `jobs` (one directory fsync for all) and lets them run at once: for
    /// blobs that are already published. Blocking. Returns how many were new.
    pub(crate) fn enqueue_now(&self, jobs: &[E::Job]) -> io::Result<usize> {
        let created = self.insert(jobs, Some(Instant::now()))?;
        if created > 0 {
            self.inner.wake.notify_one();
        }
        Ok(created)
    }

    fn insert(&self, jobs: &[E::Job], due: Option<Instant>) -> io::Result<usize> {
        let new: Vec<&E::Job> = {
            let tasks = self.inner.tasks.lock();
            jobs.iter().filter(|j| !tasks.contains_key(*j)).collect()
        };
        if new.is_empty() {
            return Ok(0);
        }
        for job in &new {
            let path = task_path(&self.inner.dir, *job);
            let tmp = path.with_extension("tmp");
            let body = serde_json::to_vec(job).map_err(io::Error::other)?;
            {
                let f = fs::File::create(&tmp)?;
                io::Write::write_all(&mut &f, &body)?;
                f.sync_all()?;
            }
            fs::rename(&tmp, &path)?;
        }
        fs::File::open(&self.inner.dir)?.sync_all()?;
        let mut tasks = self.inner.tasks.lock();
        let mut created = 0;
        for job in new {
            if !tasks.contains_key(job) {
                tasks.insert(
                    job.clone(),
                    Pending {
                        due,
                        attempts: 0,
                        running: false,
                    },
                );
                self.inner.store.pin(&job.digest());
                created += 1;
            }
        }
        self.inner.metrics.depth.set(tasks.len() as i64);
        Ok(created)
    }

    /// Lets an enqueued task run now that its blob is published.
    pub(crate) fn activate(&self, job: &E::Job) {
        if let Some(p) = self.inner.tasks.lock().get_mut(job) {
            p.due.get_or_insert_with(Instant::now);
        }
        self.inner.wake.notify_one();
    }

    /// Forgets a task (e.g. one created by [`Self::enqueue`] whose blob could not be
    /// published, or whose blob was deleted).
    pub(crate) fn abandon(&self, job: &E::Job) {
        let mut tasks = self.inner.tasks.lock();
        if tasks.remove(job).is_some() {
            let _ = fs::remove_file(task_path(&self.inner.dir, job));
            self.inner.store.unpin(&job.digest());
        }
        self.inner.metrics.depth.set(tasks.len() as i64);
    }

    /// Tasks not yet finished.
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
            for job in ready {
                let this = self.clone();
                running.spawn(async move {
                    let attempt = this.inner.executor.execute(&job).await;
                    this.finish(job, attempt);
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
    fn take_due(&self, now: Instant, room: usize) -> (Vec<E::Job>, Option<Instant>) {
        let mut tasks = self.inner.tasks.lock();
        let mut ready = Vec::new();
        let mut next_due: Option<Instant> = None;
        for (job, p) in tasks.iter_mut().filter(|(_, p)| !p.running) {
            let Some(due) = p.due else { continue };
            if due <= now && ready.len() < room {
                p.running = true;
                ready.push(job.clone());
            } else if due > now {
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
            }
        }
        (ready, next_due)
    }

    fn finish(&self, job: E::Job, attempt: Attempt) {
        let mut tasks = self.inner.tasks.lock();
        match attempt {
            Attempt::Done => {
                if tasks.remove(&job).is_some() {
                    let _ = fs::remove_file(task_path(&self.inner.dir, &job));
                    self.inner.store.unpin(&job.digest());
                }
                self.inner.metrics.completed.inc();
            }
            Attempt::Retry(error) => {
                if let Some(p) = tasks.get_mut(&job) {
                    p.running = false;
                    p.attempts += 1;
                    let backoff = backoff(&self.inner.config, p.attempts);
                    p.due = Some(Instant::now() + backoff);
                    self.inner.metrics.failures.inc();
                    tracing::warn!(
                        task = ?job,
                        attempts = p.attempts,
                        retry_in = ?backoff,
                        "{} failed: {error}",
                        self.inner.name
                    );
                }
            }
        }
        self.inner.metrics.depth.set(tasks.len() as i64);
        drop(tasks);
        self.inner.wake.notify_one();
    }
}

fn task_path(dir: &Path, job: &impl Job) -> PathBuf {
    dir.join(format!("{}.task", job.file_stem()))
}

/// Exponential backoff with ±20% jitter, capped.
fn backoff(config: &QueueConfig, attempts: u32) -> Duration {
    let exp = config
        .initial_backoff
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(config.max_backoff);
    capped.mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicU32, Ordering};

    use serde::Deserialize;
    use shoal_core::Algorithm;
    use shoal_store::StoreConfig;

    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = QueueConfig {
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

    #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
    struct Note {
        digest: Digest,
        n: u32,
    }

    impl Job for Note {
        fn file_stem(&self) -> String {
            format!("{}-{}", self.digest.hex(), self.n)
        }
        fn digest(&self) -> Digest {
            self.digest
        }
    }

    /// Fails every task's first `fail_first` attempts.
    #[derive(Debug)]
    struct Flaky {
        fail_first: u32,
        attempts: AtomicU32,
    }

    impl Executor for Flaky {
        type Job = Note;
        async fn execute(&self, _: &Note) -> Attempt {
            if self.attempts.fetch_add(1, Ordering::SeqCst) < self.fail_first {
                Attempt::Retry("not yet".into())
            } else {
                Attempt::Done
            }
        }
    }

    fn open(dir: &Path, store: &BlobStore, fail_first: u32) -> Queue<Flaky> {
        let config = QueueConfig {
            concurrency: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        };
        let flaky = Flaky {
            fail_first,
            attempts: AtomicU32::new(0),
        };
        Queue::open(
            "test",
            dir,
            store.clone(),
            flaky,
            config,
            QueueMetrics::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn tasks_persist_pin_retry_and_finish() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("store"), StoreConfig::default()).unwrap();
        let qdir = dir.path().join("queue");
        let d = Digest::compute(Algorithm::Sha256, b"x");
        let jobs = [Note { digest: d, n: 1 }, Note { digest: d, n: 2 }];
        {
            let q = open(&qdir, &store, 0);
            assert!(q.enqueue(&jobs[0]).unwrap());
            assert!(!q.enqueue(&jobs[0]).unwrap());
            assert_eq!(q.enqueue_now(&jobs).unwrap(), 1);
            assert_eq!(q.depth(), 2);
            assert!(store.is_pinned(&d));
            q.abandon(&jobs[0]);
            q.abandon(&jobs[1]);
            assert!(!store.is_pinned(&d), "pins are counted and released");
            q.enqueue_now(&jobs).unwrap();
        }
        // Reopened: both tasks are back, due at once; they fail three times, then finish.
        let store = BlobStore::open(&dir.path().join("store"), StoreConfig::default()).unwrap();
        let q = open(&qdir, &store, 3);
        assert_eq!(q.depth(), 2);
        assert!(store.is_pinned(&d));
        let token = CancellationToken::new();
        let run = tokio::spawn(q.clone().run(token.clone()));
        shoal_runtime::wait::wait_until(Duration::from_secs(10), "queue drained", || async {
            q.depth() == 0
        })
        .await
        .unwrap();
        token.cancel();
        run.await.unwrap();
        assert_eq!(q.executor().attempts.load(Ordering::SeqCst), 5);
        assert!(!store.is_pinned(&d));
        assert_eq!(
            fs::read_dir(&qdir).unwrap().count(),
            0,
            "task files removed"
        );
    }
}
