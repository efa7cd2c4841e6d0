//! The durable replication queue: local tag writes are copied to other zones, with retries.
//!
//! A local tag write that matches `[[replication]]` rules gets one task per remote
//! build-index, in a durable [`Queue`] (`shoal_runtime::queue`). A task is one JSON file under
//! `<data_dir>/replication/`, named `<sha256(remote, repository, tag)>-<generation>.task`,
//! written to a temp file, fsynced, renamed and the directory fsynced *before* the write is
//! acknowledged; it is removed only after the remote zone holds the tag ([`deliver`]). Tasks
//! found on start are resumed, so an acknowledged write survives a crash or restart.
//!
//! Tasks are coalesced per `(remote, repository, tag)` (the queue's key) by generation: a newer
//! generation replaces a pending one (its file is removed once no delivery of it is running),
//! so a tag pushed many times while a zone is down is delivered once, at its latest
//! generation. Failed deliveries are retried with exponential backoff and jitter; at most
//! `concurrency` run at once.

mod deliver;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use serde::{Deserialize, Serialize};
use shoal_build_index_api::TagRecord;
use shoal_core::{RepoName, Tag};
use shoal_runtime::queue::{self, Attempt, Executor, Job, Queue, QueueConfig, QueueMetrics};
use tokio_util::sync::CancellationToken;

use crate::config::ReplicationRule;
pub(crate) use deliver::Delivery;

/// One tag to copy to one remote zone. (The JSON shape and file name are those of tasks
/// written by earlier versions, so pending tasks survive an upgrade.)
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
pub(crate) struct TaskKey {
    build_index: String,
    repository: RepoName,
    tag: Tag,
}

impl Job for Task {
    type Key = TaskKey;

    fn key(&self) -> TaskKey {
        TaskKey {
            build_index: self.build_index.clone(),
            repository: self.repository.clone(),
            tag: self.tag.clone(),
        }
    }

    fn file_stem(&self) -> String {
        let key = [
            self.build_index.as_str(),
            self.repository.as_str(),
            self.tag.as_str(),
        ];
        format!("{}-{:020}", queue::hashed_stem(key), self.generation())
    }

    fn generation(&self) -> u64 {
        self.record.generation
    }
}

impl Executor for Delivery {
    type Job = Task;

    async fn execute(&self, task: &Task) -> Attempt {
        match self.deliver(task).await {
            Ok(()) => {
                tracing::info!(
                    repository = %task.repository, tag = %task.tag, digest = %task.record.digest,
                    generation = task.record.generation, remote = %task.build_index,
                    "tag replicated"
                );
                Attempt::Done
            }
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }
}

/// A compiled `[[replication]]` rule.
#[derive(Debug)]
struct Rule {
    pattern: Regex,
    build_index: String,
    origins: Vec<String>,
}

/// The rules, the queue and its worker. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Replicator {
    rules: Arc<[Rule]>,
    queue: Queue<Delivery>,
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
    /// tasks left from before. Blocking.
    pub(crate) fn open(
        dir: &Path,
        rules: &[ReplicationRule],
        config: QueueConfig,
        delivery: Delivery,
        metrics: QueueMetrics,
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
        let queue =
            Queue::open("replication", dir, delivery, config, metrics).map_err(|source| {
                OpenError::Io {
                    path: dir.to_owned(),
                    source,
                }
            })?;
        Ok(Self {
            rules: compiled.into(),
            queue,
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
        let mut tasks: Vec<Task> = Vec::new();
        for rule in self.rules.iter() {
            if rule.pattern.is_match(repo.as_str())
                && !tasks.iter().any(|t| t.build_index == rule.build_index)
            {
                tasks.push(Task {
                    build_index: rule.build_index.clone(),
                    origins: rule.origins.clone(),
                    repository: repo.clone(),
                    tag: tag.clone(),
                    record,
                });
            }
        }
        if tasks.is_empty() {
            return Ok(());
        }
        let queue = self.queue.clone();
        tokio::task::spawn_blocking(move || queue.enqueue_now(&tasks))
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }

    /// Tasks not yet delivered.
    pub(crate) fn depth(&self) -> usize {
        self.queue.depth()
    }

    /// Delivers due tasks, at most `concurrency` at once, until `shutdown`. Deliveries still
    /// running at shutdown are abandoned; their tasks stay on disk and resume on the next start.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        self.queue.run(shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::fs;

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

    /// Never delivers.
    #[derive(Debug)]
    struct Unreachable;

    impl Executor for Unreachable {
        type Job = Task;
        async fn execute(&self, _: &Task) -> Attempt {
            Attempt::Retry("unreachable".into())
        }
    }

    /// Task files of earlier versions (same names and JSON) are resumed, the newest per tag.
    #[test]
    fn resumes_task_files_of_earlier_versions() {
        // sha256("http://b\ndemo/app\nv1\n"), as earlier versions named task files.
        let stem = "7976315a3207601f77232e4e33969a6e4c1b52acc7125bd288e6d9f2ab7ae7b2";
        let name = |generation: u64| format!("{stem}-{generation:020}.task");
        assert_eq!(format!("{}.task", task(9).file_stem()), name(9));
        let dir = tempfile::tempdir().unwrap();
        for generation in [5, 9, 7] {
            let json = serde_json::json!({
                "build_index": "http://b",
                "origins": ["http://o"],
                "repository": "demo/app",
                "tag": "v1",
                "record": task(generation).record,
            });
            fs::write(dir.path().join(name(generation)), json.to_string()).unwrap();
        }
        let queue = Queue::open(
            "replication",
            dir.path(),
            Unreachable,
            QueueConfig::default(),
            QueueMetrics::default(),
        )
        .unwrap();
        assert_eq!(queue.depth(), 1);
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![name(9)]);
    }
}
