//! The durable replication queue: local tag writes are copied to other zones, with retries.
//!
//! A local tag write that matches `[[replication]]` rules gets one task per remote
//! build-index. A task is one JSON file under `<data_dir>/replication/`, named
//! `<sha256(remote, repository, tag)>-<generation>.task`, written to a temp file, fsynced,
//! renamed and the directory fsynced *before* the write is acknowledged; it is removed only
//! after the remote zone holds the tag ([`deliver`]). Tasks found on start are resumed, so an
//! acknowledged write survives a crash or restart.
//!
//! Tasks are coalesced per `(remote, repository, tag)`: a newer generation replaces a pending
//! one (its file is removed once no delivery of it is running), so a tag pushed many times
//! while a zone is down is delivered once, at its latest generation. Failed deliveries are
//! retried with exponential backoff and jitter; at most `concurrency` run at once.

mod deliver;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rand::Rng;
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use shoal_build_index_api::TagRecord;
use shoal_core::{RepoName, Tag};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{QueueConfig, ReplicationRule};
pub(crate) use deliver::Delivery;

/// One tag to copy to one remote zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Task {
    /// The remote build-index.
    build_index: String,
    /// The remote zone's origins.
    origins: Vec<String>,
    repository: RepoName,
    tag: Tag,
    record: TagRecord,
}

/// What tasks are coalesced by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TaskKey {
    build_index: String,
    repository: RepoName,
    tag: Tag,
}

impl Task {
    fn key(&self) -> TaskKey {
        TaskKey {
            build_index: self.build_index.clone(),
            repository: self.repository.clone(),
            tag: self.tag.clone(),
        }
    }
}

impl TaskKey {
    fn file_name(&self, generation: u64) -> String {
        let mut h = sha2::Sha256::new();
        for part in [
            self.build_index.as_str(),
            self.repository.as_str(),
            self.tag.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update(b"\n");
        }
        format!("{}-{generation:020}.task", hex::encode(h.finalize()))
    }
}

#[derive(Debug)]
struct Pending {
    task: Task,
    due: Instant,
    attempts: u32,
    /// The generation being delivered right now, if any.
    running: Option<u64>,
}

/// A compiled `[[replication]]` rule.
#[derive(Debug)]
struct Rule {
    pattern: Regex,
    build_index: String,
    origins: Vec<String>,
}

/// Replication metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplicationMetrics {
    pub(crate) depth: Gauge,
    pub(crate) delivered: Counter,
    pub(crate) failures: Counter,
    pub(crate) blobs_copied: Counter,
}

/// The queue and its worker. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Replicator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    rules: Vec<Rule>,
    config: QueueConfig,
    delivery: Delivery,
    tasks: Mutex<HashMap<TaskKey, Pending>>,
    wake: Notify,
    metrics: ReplicationMetrics,
}

/// Why the queue could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// A rule is invalid.
    #[error("replication rule {index}: {reason}")]
    Rule { index: usize, reason: String },
    /// The queue directory could not be read or set up.
    #[error("replication queue {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Replicator {
    /// Compiles the rules (checking their URLs), then opens the queue in `dir`, resuming the
    /// tasks left from before.
    pub(crate) fn open(
        dir: &Path,
        rules: &[ReplicationRule],
        config: QueueConfig,
        delivery: Delivery,
        metrics: ReplicationMetrics,
    ) -> Result<Self, OpenError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let err = |reason: String| OpenError::Rule { index, reason };
            let pattern = Regex::new(&format!("^(?:{})$", rule.repository))
                .map_err(|e| err(format!("invalid repository pattern: {e}")))?;
            delivery
                .check_urls(&rule.build_index, &rule.origins)
                .map_err(|e| err(e.to_string()))?;
            compiled.push(Rule {
                pattern,
                build_index: rule.build_index.clone(),
                origins: rule.origins.clone(),
            });
        }
        let io = |source| OpenError::Io {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let tasks = load(dir).map_err(io)?;
        if !tasks.is_empty() {
            tracing::info!(pending = tasks.len(), "resuming replication tasks");
        }
        metrics.depth.set(tasks.len() as i64);
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                rules: compiled,
                config,
                delivery,
                tasks: Mutex::new(tasks),
                wake: Notify::new(),
                metrics,
            }),
        })
    }

    /// Durably queues the replication of a local tag write to every remote whose rule matches
    /// the repository (once per remote build-index). Returns once the task files are on disk.
    pub(crate) async fn enqueue(
        &self,
        repo: &RepoName,
        tag: &Tag,
        record: TagRecord,
    ) -> std::io::Result<()> {
        let mut remotes: Vec<&Rule> = Vec::new();
        for rule in &self.inner.rules {
            if rule.pattern.is_match(repo.as_str())
                && !remotes.iter().any(|r| r.build_index == rule.build_index)
            {
                remotes.push(rule);
            }
        }
        for rule in remotes {
            let task = Task {
                build_index: rule.build_index.clone(),
                origins: rule.origins.clone(),
                repository: repo.clone(),
                tag: tag.clone(),
                record,
            };
            self.enqueue_task(task).await?;
        }
        Ok(())
    }

    async fn enqueue_task(&self, task: Task) -> std::io::Result<()> {
        let key = task.key();
        let generation = task.record.generation;
        let stale = |tasks: &HashMap<TaskKey, Pending>| {
            tasks
                .get(&key)
                .is_some_and(|p| p.task.record.generation >= generation)
        };
        if stale(&self.inner.tasks.lock()) {
            return Ok(());
        }
        let path = self.inner.dir.join(key.file_name(generation));
        let body = serde_json::to_vec(&task).map_err(std::io::Error::other)?;
        let dir = self.inner.dir.clone();
        let written = path.clone();
        tokio::task::spawn_blocking(move || write_durably(&dir, &written, &body))
            .await
            .map_err(std::io::Error::other)??;

        let mut obsolete = None;
        {
            let mut tasks = self.inner.tasks.lock();
            match tasks.entry(key.clone()) {
                Entry::Occupied(mut e) => {
                    let p = e.get_mut();
                    let old = p.task.record.generation;
                    if old >= generation {
                        obsolete = Some(path);
                    } else {
                        // A running delivery removes its own file when it finishes.
                        if p.running.is_none() {
                            obsolete = Some(self.inner.dir.join(key.file_name(old)));
                        }
                        p.task = task;
                        p.due = Instant::now();
                        p.attempts = 0;
                    }
                }
                Entry::Vacant(e) => {
                    e.insert(Pending {
                        task,
                        due: Instant::now(),
                        attempts: 0,
                        running: None,
                    });
                }
            }
            if let Some(file) = obsolete {
                let _ = fs::remove_file(file);
            }
            self.inner.metrics.depth.set(tasks.len() as i64);
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Tasks not yet delivered.
    pub(crate) fn depth(&self) -> usize {
        self.inner.tasks.lock().len()
    }

    /// Delivers due tasks, at most `concurrency` at once, until `shutdown`. Deliveries still
    /// running at shutdown are abandoned; their tasks stay on disk and resume on the next start.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut running = JoinSet::new();
        loop {
            let now = Instant::now();
            let room = self.inner.config.concurrency.saturating_sub(running.len());
            let (ready, next_due) = self.take_due(now, room);
            for task in ready {
                let this = self.clone();
                running.spawn(async move {
                    let result = this.inner.delivery.deliver(&task).await;
                    this.finish(&task, result);
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
        for p in tasks.values_mut().filter(|p| p.running.is_none()) {
            if p.due <= now && ready.len() < room {
                p.running = Some(p.task.record.generation);
                ready.push(p.task.clone());
            } else if p.due > now {
                next_due = Some(next_due.map_or(p.due, |n| n.min(p.due)));
            }
        }
        (ready, next_due)
    }

    /// Records a delivery's outcome. Task files are removed under the table's lock (one
    /// quick unlink), so the table, the files and the metrics agree whenever it is free.
    fn finish(&self, task: &Task, result: Result<(), deliver::DeliveryError>) {
        let key = task.key();
        let generation = task.record.generation;
        let own_file = self.inner.dir.join(key.file_name(generation));
        let metrics = &self.inner.metrics;
        {
            let mut tasks = self.inner.tasks.lock();
            let Entry::Occupied(mut e) = tasks.entry(key) else {
                return;
            };
            let p = e.get_mut();
            p.running = None;
            let superseded = p.task.record.generation != generation;
            if superseded {
                // Deliver the newer generation next.
                p.due = Instant::now();
                p.attempts = 0;
            } else if result.is_ok() {
                e.remove();
            } else {
                p.attempts += 1;
                let delay = backoff(&self.inner.config, p.attempts);
                p.due = Instant::now() + delay;
                if let Err(err) = &result {
                    tracing::warn!(
                        repository = %task.repository, tag = %task.tag,
                        remote = %task.build_index, attempts = p.attempts, retry_in = ?delay,
                        "replication failed: {err}"
                    );
                }
            }
            if (superseded || result.is_ok())
                && let Err(e) = fs::remove_file(&own_file)
            {
                tracing::warn!(path = %own_file.display(), "cannot remove replication task: {e}");
            }
            metrics.depth.set(tasks.len() as i64);
            if result.is_ok() {
                metrics.delivered.inc();
            } else {
                metrics.failures.inc();
            }
        }
        if result.is_ok() {
            tracing::info!(
                repository = %task.repository, tag = %task.tag, digest = %task.record.digest,
                generation, remote = %task.build_index, "tag replicated"
            );
        }
        self.inner.wake.notify_one();
    }
}

/// Writes `body` to `path` atomically and durably: temp file, fsync, rename, fsync the dir.
fn write_durably(dir: &Path, path: &Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// Loads the tasks in `dir`: the highest generation per key; older files, leftovers of
/// interrupted writes and unreadable files are removed.
fn load(dir: &Path) -> std::io::Result<HashMap<TaskKey, Pending>> {
    let mut tasks: HashMap<TaskKey, Pending> = HashMap::new();
    let mut obsolete = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "task") {
            obsolete.push(path);
            continue;
        }
        let task = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Task>(&b).ok());
        let Some(task) = task else {
            tracing::error!(path = %path.display(), "dropping unreadable replication task");
            obsolete.push(path);
            continue;
        };
        let key = task.key();
        let generation = task.record.generation;
        let canonical = dir.join(key.file_name(generation));
        if path != canonical {
            fs::rename(&path, &canonical)?;
        }
        let pending = Pending {
            task,
            due: Instant::now(),
            attempts: 0,
            running: None,
        };
        match tasks.entry(key) {
            Entry::Occupied(mut e) => {
                let older = if e.get().task.record.generation < generation {
                    e.insert(pending).task.record.generation
                } else {
                    generation
                };
                obsolete.push(dir.join(e.key().file_name(older)));
            }
            Entry::Vacant(e) => {
                e.insert(pending);
            }
        }
    }
    for path in obsolete {
        let _ = fs::remove_file(path);
    }
    Ok(tasks)
}

/// Exponential backoff with ±20% jitter, capped.
fn backoff(config: &QueueConfig, attempts: u32) -> Duration {
    let exp = config
        .initial_backoff
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    exp.min(config.max_backoff)
        .mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn task(generation: u64) -> Task {
        Task {
            build_index: "http://b".into(),
            origins: vec!["http://o".into()],
            repository: "demo/app".parse().unwrap(),
            tag: "v1".parse().unwrap(),
            record: TagRecord {
                digest: shoal_core::Digest::compute(shoal_core::Algorithm::Sha256, b"m"),
                generation,
            },
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = QueueConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..QueueConfig::default()
        };
        let b1 = backoff(&c, 1);
        assert!(b1 >= Duration::from_millis(80) && b1 <= Duration::from_millis(120));
        let b3 = backoff(&c, 3);
        assert!(b3 >= Duration::from_millis(320) && b3 <= Duration::from_millis(480));
        assert!(backoff(&c, 40) <= Duration::from_millis(1200));
    }

    #[test]
    fn load_keeps_the_newest_generation_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        for generation in [5, 9, 7] {
            let t = task(generation);
            let path = dir.path().join(t.key().file_name(generation));
            write_durably(dir.path(), &path, &serde_json::to_vec(&t).unwrap()).unwrap();
        }
        fs::write(dir.path().join("x.tmp"), b"partial").unwrap();
        fs::write(dir.path().join("bad.task"), b"not json").unwrap();
        let tasks = load(dir.path()).unwrap();
        assert_eq!(tasks.len(), 1);
        let p = tasks.values().next().unwrap();
        assert_eq!(p.task, task(9));
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![task(9).key().file_name(9)]);
    }
}
