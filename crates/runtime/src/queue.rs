//! A durable task queue: every task is a file on disk, written (temp file, fsync, rename,
//! directory fsync) before the caller acknowledges anything, run with bounded concurrency,
//! retried with exponential backoff and jitter until it finishes, and resumed after a restart.
//!
//! What a task is and how it runs is the business of the [`Job`] and the [`Executor`]; this
//! module is only the bookkeeping. The origin runs two queues (write-back to its backend and
//! replication to sibling origins), the build-index one (tag replication to other zones).
//!
//! * **Files.** A task is the JSON of its [`Job`] in `<dir>/<file_stem>.task`. On
//!   [`Queue::open`], tasks are loaded and due at once; files with another extension
//!   (interrupted writes) and unreadable task files are removed, and a task stored under
//!   another name than its [`Job::file_stem`] is renamed to it.
//! * **Coalescing.** Tasks with the same [`Job::key`] are one entry: a task of a higher
//!   [`Job::generation`] replaces a pending one (its file is removed, once no attempt at it is
//!   running), a task of an equal or lower generation is ignored. Jobs without generations
//!   (all 0) are thus simply deduplicated.
//! * **Hooks.** [`Executor::recorded`] and [`Executor::removed`] bracket the life of each task
//!   file, e.g. to pin what a task needs (the origin keeps a task's blob in its cache).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
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
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A task: serialised as JSON into its file.
pub trait Job: Clone + Eq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What tasks are coalesced by (for jobs without generations, the job itself).
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;

    /// The task's coalescing key.
    fn key(&self) -> Self::Key;

    /// A name unique to the task (including its generation) and stable across versions,
    /// usable as a file name (the file is `<stem>.task`), e.g. a hash of its fields.
    fn file_stem(&self) -> String;

    /// The task's generation: a task replaces a pending one of the same key only if its
    /// generation is higher. Default 0 (never replaced; equal tasks are deduplicated).
    fn generation(&self) -> u64 {
        0
    }
}

/// How one attempt at a task ended.
#[derive(Debug)]
pub enum Attempt {
    /// The task is finished, successfully or for good (the executor logs which): its file is
    /// removed.
    Done,
    /// It failed in a way that may pass: retried after a backoff. The reason is logged.
    Retry(String),
}

/// Runs tasks, and hears of their files coming and going.
pub trait Executor: Debug + Send + Sync + 'static {
    /// The task type.
    type Job: Job;

    /// Runs one attempt at `job`.
    fn execute(&self, job: &Self::Job) -> impl Future<Output = Attempt> + Send;

    /// Called once a task's file is on disk (enqueued or loaded on open), before the task can
    /// run; under the queue's lock, so it must be quick and must not call into the queue.
    fn recorded(&self, job: &Self::Job) {
        let _ = job;
    }

    /// Called once a task's file is removed (finished, abandoned or superseded); under the
    /// queue's lock, like [`Self::recorded`].
    fn removed(&self, job: &Self::Job) {
        let _ = job;
    }
}

/// How a queue runs its tasks: a config section such as the origin's `[writeback]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Tasks run concurrently. Default 4.
    pub concurrency: usize,
    /// Delay before the first retry of a failed task; doubles per failure, with ±20% jitter.
    /// Default `1s`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay between retries. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl QueueConfig {
    /// The delay before retrying a task that failed `attempts` times: exponential, capped at
    /// `max_backoff`, with ±20% jitter.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        exp.min(self.max_backoff)
            .mul_f64(rand::rng().random_range(0.8..1.2))
    }
}

/// Queue metrics, registered by the service under its own names.
#[derive(Debug, Clone, Default)]
pub struct QueueMetrics {
    /// Tasks not yet finished.
    pub depth: Gauge,
    /// Attempts that finished their task.
    pub completed: Counter,
    /// Attempts that failed and are retried.
    pub failures: Counter,
}

/// The entry of one key.
#[derive(Debug)]
struct Pending<J> {
    /// The newest task of the key.
    job: J,
    /// When to (re)try; `None` until [`Queue::activate`].
    due: Option<Instant>,
    attempts: u32,
    /// An attempt is running, at `job` or at `superseded`.
    running: bool,
    /// A task replaced by `job` while an attempt at it was running; that attempt removes its
    /// file when it finishes.
    superseded: Option<J>,
}

impl<J> Pending<J> {
    fn new(job: J, due: Option<Instant>) -> Self {
        Self {
            job,
            due,
            attempts: 0,
            running: false,
            superseded: None,
        }
    }
}

type Table<J> = HashMap<<J as Job>::Key, Pending<J>>;

/// The queue. Cheap to clone.
#[derive(Debug)]
pub struct Queue<E: Executor> {
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
    executor: E,
    config: QueueConfig,
    tasks: Mutex<Table<E::Job>>,
    wake: Notify,
    metrics: QueueMetrics,
}

impl<E: Executor> Queue<E> {
    /// Opens the queue in `dir` (created if missing), loading the tasks left from before:
    /// they are due at once. `name` is for logs. Blocking (file I/O).
    pub fn open(
        name: &'static str,
        dir: &Path,
        executor: E,
        config: QueueConfig,
        metrics: QueueMetrics,
    ) -> io::Result<Self> {
        let tasks = load::<E::Job>(name, dir)?;
        if !tasks.is_empty() {
            tracing::info!(pending = tasks.len(), "resuming {name} tasks");
        }
        for p in tasks.values() {
            executor.recorded(&p.job);
        }
        metrics.depth.set(tasks.len() as i64);
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                dir: dir.to_owned(),
                executor,
                config,
                tasks: Mutex::new(tasks),
                wake: Notify::new(),
                metrics,
            }),
        })
    }

    /// The executor.
    pub fn executor(&self) -> &E {
        &self.inner.executor
    }

    /// Durably records `job`, which runs only after [`Self::activate`] (e.g. once the data it
    /// needs is published; a task left unactivated by a crash runs after a restart, so its
    /// executor must cope with missing data). Blocking (file I/O and fsync). Returns false if
    /// the task was not new (an equal or newer one of its key is pending).
    pub fn enqueue(&self, job: &E::Job) -> io::Result<bool> {
        Ok(self.insert(std::slice::from_ref(job), None)? == 1)
    }

    /// Durably records `jobs` (one directory fsync for all) and lets them run at once.
    /// Blocking. Returns how many were new.
    pub fn enqueue_now(&self, jobs: &[E::Job]) -> io::Result<usize> {
        let created = self.insert(jobs, Some(Instant::now()))?;
        if created > 0 {
            self.inner.wake.notify_one();
        }
        Ok(created)
    }

    fn insert(&self, jobs: &[E::Job], due: Option<Instant>) -> io::Result<usize> {
        let newer = |tasks: &Table<E::Job>, job: &E::Job| {
            tasks
                .get(&job.key())
                .is_none_or(|p| job.generation() > p.job.generation())
        };
        let new: Vec<&E::Job> = {
            let tasks = self.inner.tasks.lock();
            jobs.iter().filter(|j| newer(&tasks, j)).collect()
        };
        if new.is_empty() {
            return Ok(0);
        }
        for job in &new {
            let body = serde_json::to_vec(job).map_err(io::Error::other)?;
            write_file(&self.task_path(job), &body)?;
        }
        fs::File::open(&self.inner.dir)?.sync_all()?;

        let mut tasks = self.inner.tasks.lock();
        let mut created = 0;
        for job in new {
            match tasks.entry(job.key()) {
                Entry::Vacant(e) => {
                    e.insert(Pending::new(job.clone(), due));
                }
                Entry::Occupied(mut e) => {
                    let p = e.get_mut();
                    if job.generation() <= p.job.generation() {
                        // An equal or newer task got in meanwhile: ours is obsolete, unless it
                        // is the very file of a pending task.
                        let ours = self.task_path(job);
                        let kept = std::iter::once(&p.job).chain(&p.superseded);
                        if kept.map(|k| self.task_path(k)).all(|k| k != ours) {
                            let _ = fs::remove_file(ours);
                        }
                        continue;
                    }
                    let old = std::mem::replace(&mut p.job, job.clone());
                    if p.running && p.superseded.is_none() {
                        p.superseded = Some(old);
                    } else {
                        self.retire(&old);
                    }
                    p.due = due;
                    p.attempts = 0;
                }
            }
            self.inner.executor.recorded(job);
            created += 1;
        }
        self.inner.metrics.depth.set(tasks.len() as i64);
        Ok(created)
    }

    /// Lets an enqueued task run.
    pub fn activate(&self, job: &E::Job) {
        if let Some(p) = self.inner.tasks.lock().get_mut(&job.key())
            && p.job == *job
        {
            p.due.get_or_insert_with(Instant::now);
        }
        self.inner.wake.notify_one();
    }

    /// Forgets a task (e.g. one created by [`Self::enqueue`] whose data could not be
    /// published, or was deleted), with any older task of its key that is still running.
    pub fn abandon(&self, job: &E::Job) {
        let mut tasks = self.inner.tasks.lock();
        if let Entry::Occupied(e) = tasks.entry(job.key())
            && e.get().job == *job
        {
            let p = e.remove();
            self.retire(&p.job);
            if let Some(old) = &p.superseded {
                self.retire(old);
            }
        }
        self.inner.metrics.depth.set(tasks.len() as i64);
    }

    /// Tasks not yet finished (one per key).
    pub fn depth(&self) -> usize {
        self.inner.tasks.lock().len()
    }

    /// Runs due tasks, at most `concurrency` at once, until `shutdown`. Attempts still running
    /// at shutdown are abandoned; their tasks stay on disk and resume on the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut running = JoinSet::new();
        loop {
            let now = Instant::now();
            let room = self.inner.config.concurrency.saturating_sub(running.len());
            let (ready, next_due) = self.take_due(now, room);
            for job in ready {
                let this = self.clone();
                running.spawn(async move {
                    let attempt = this.inner.executor.execute(&job).await;
                    this.finish(&job, attempt);
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
        for p in tasks.values_mut().filter(|p| !p.running) {
            let Some(due) = p.due else { continue };
            if due <= now && ready.len() < room {
                p.running = true;
                ready.push(p.job.clone());
            } else if due > now {
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
            }
        }
        (ready, next_due)
    }

    /// Records an attempt's outcome. Task files are removed under the table's lock (one quick
    /// unlink), so the table, the files and the metrics agree whenever it is free.
    fn finish(&self, job: &E::Job, attempt: Attempt) {
        let metrics = &self.inner.metrics;
        let mut tasks = self.inner.tasks.lock();
        if let Entry::Occupied(mut e) = tasks.entry(job.key()) {
            let p = e.get_mut();
            if p.superseded.as_ref() == Some(job) {
                // A newer task replaced this one while it ran; the newer one is due.
                p.running = false;
                p.superseded = None;
                self.retire(job);
            } else if p.running && p.job == *job {
                match &attempt {
                    Attempt::Done => {
                        e.remove();
                        self.retire(job);
                    }
                    Attempt::Retry(error) => {
                        p.running = false;
                        p.attempts += 1;
                        let backoff = self.inner.config.backoff(p.attempts);
                        p.due = Some(Instant::now() + backoff);
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
            // Otherwise the task was abandoned (and maybe enqueued anew) while it ran.
        }
        match attempt {
            Attempt::Done => metrics.completed.inc(),
            Attempt::Retry(_) => metrics.failures.inc(),
        };
        metrics.depth.set(tasks.len() as i64);
        drop(tasks);
        self.inner.wake.notify_one();
    }

    /// Removes a task's file and tells the executor.
    fn retire(&self, job: &E::Job) {
        let path = self.task_path(job);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "cannot remove {} task: {e}", self.inner.name);
        }
        self.inner.executor.removed(job);
    }

    fn task_path(&self, job: &E::Job) -> PathBuf {
        task_path(&self.inner.dir, job)
    }
}

/// A [`Job::file_stem`] made of a task's fields: the hex SHA-256 of each part followed by a
/// newline.
pub fn hashed_stem<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

fn task_path(dir: &Path, job: &impl Job) -> PathBuf {
    dir.join(format!("{}.task", job.file_stem()))
}

/// Writes `body` to `path` through a fsynced temp file (the caller fsyncs the directory).
fn write_file(path: &Path, body: &[u8]) -> io::Result<()> {
    // A temp name of its own per write: two requests may record the same task at once (two
    // uploads of one blob), and must not rename each other's temp file away.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{n}.tmp"));
    {
        let f = fs::File::create(&tmp)?;
        io::Write::write_all(&mut &f, body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Loads the tasks in `dir`: the newest per key, renamed to their canonical file names. Older
/// tasks, leftovers of interrupted writes and unreadable files are removed.
fn load<J: Job>(name: &str, dir: &Path) -> io::Result<Table<J>> {
    fs::create_dir_all(dir)?;
    // Listed first, so that renaming does not disturb the listing.
    let paths = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    let mut tasks: Table<J> = HashMap::new();
    let mut obsolete = Vec::new();
    let now = Instant::now();
    for path in paths {
        if path.extension().is_none_or(|e| e != "task") {
            obsolete.push(path); // an interrupted write's temp file
            continue;
        }
        let job = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<J>(&b).ok());
        let Some(job) = job else {
            tracing::error!(path = %path.display(), "dropping unreadable {name} task");
            obsolete.push(path);
            continue;
        };
        let canonical = task_path(dir, &job);
        if path != canonical {
            fs::rename(&path, &canonical)?;
        }
        match tasks.entry(job.key()) {
            Entry::Vacant(e) => {
                e.insert(Pending::new(job, Some(now)));
            }
            Entry::Occupied(mut e) => {
                let kept = &mut e.get_mut().job;
                if job.generation() > kept.generation() {
                    let older = task_path(dir, kept);
                    if older != canonical {
                        obsolete.push(older);
                    }
                    *kept = job;
                } else if canonical != task_path(dir, kept) {
                    obsolete.push(canonical);
                }
            }
        }
    }
    for path in obsolete {
        let _ = fs::remove_file(path);
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests;
