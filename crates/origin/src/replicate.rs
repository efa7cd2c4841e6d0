//! Replication to sibling origins through a durable [`Queue`] (`shoal_runtime::queue`): a blob
//! committed here is copied to its other healthy owners, and repair hands blobs it is about to
//! drop to owners that lack them.
//!
//! A task is `(namespace, digest, target member)`, one file under `<data_dir>/replication/`,
//! written after the blob is published here (the upload is acknowledged after the first
//! durable copy; replicas follow). Running it: if the target is no longer a member, the task is
//! dropped (repair covers the new owners); if the target already holds the blob under that
//! namespace (`HEAD` with `Shoal-Replica: 1`), it is done; otherwise the blob is streamed to it
//! with `PUT` and `Shoal-Replica: 1`, so the target stores it and writes it back to its own
//! backend but does not replicate it further. Connection failures and 5xx answers are reported
//! to the cluster's health tracking and retried with backoff; a refusal (4xx) is logged and
//! dropped.

use std::io;
use std::path::Path;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use shoal_cluster::Node;
use shoal_core::{Digest, RepoName};
use shoal_origin_client::{ByteStream, OriginClientError};
use shoal_runtime::CancellationToken;
use shoal_runtime::queue::{self, Attempt, Executor, Job, Queue, QueueConfig, QueueMetrics};
use shoal_store::{BlobStore, StoreError};

use crate::peers::Peers;

/// The replication queue. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Replication {
    queue: Queue<Pusher>,
}

/// Copy a blob, as a blob of `namespace`, to the member `target`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ReplicaJob {
    namespace: RepoName,
    digest: Digest,
    /// The member id (`host:port`).
    target: String,
}

impl Job for ReplicaJob {
    type Key = Self;

    fn key(&self) -> Self {
        self.clone()
    }

    fn file_stem(&self) -> String {
        let digest = self.digest.to_string();
        queue::hashed_stem([self.namespace.as_str(), &digest, &self.target])
    }
}

/// Pushes blobs from the local store to sibling origins.
#[derive(Debug)]
pub(crate) struct Pusher {
    pub(crate) store: BlobStore,
    pub(crate) peers: Arc<Peers>,
    /// Bytes sent to siblings.
    pub(crate) bytes: Counter,
}

impl Replication {
    /// Opens the queue in `dir`, resuming the tasks left from before. Blocking.
    pub(crate) fn open(
        dir: &Path,
        pusher: Pusher,
        config: QueueConfig,
        metrics: QueueMetrics,
    ) -> io::Result<Self> {
        let queue = Queue::open("replication", dir, pusher, config, metrics)?;
        Ok(Self { queue })
    }

    /// The cluster view.
    pub(crate) fn peers(&self) -> &Arc<Peers> {
        &self.queue.executor().peers
    }

    /// Runs the queue until `shutdown` (see [`Queue::run`]).
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        self.queue.run(shutdown).await;
    }

    /// Durably queues copies of a blob just stored here under `namespace` to its other healthy
    /// owners. Blocking (file I/O and fsync). Returns how many tasks are new.
    pub(crate) fn replicate(&self, namespace: &RepoName, digest: &Digest) -> io::Result<usize> {
        let targets = self.peers().replica_targets(digest);
        self.push_to(namespace, digest, &targets)
    }

    /// Durably queues copies of a blob to `targets`. Blocking.
    pub(crate) fn push_to(
        &self,
        namespace: &RepoName,
        digest: &Digest,
        targets: &[Node],
    ) -> io::Result<usize> {
        let jobs: Vec<ReplicaJob> = targets
            .iter()
            .map(|t| ReplicaJob {
                namespace: namespace.clone(),
                digest: *digest,
                target: t.id.clone(),
            })
            .collect();
        self.queue.enqueue_now(&jobs)
    }
}

impl Executor for Pusher {
    type Job = ReplicaJob;

    async fn execute(&self, job: &ReplicaJob) -> Attempt {
        let (ns, d) = (&job.namespace, &job.digest);
        let Some(node) = self.peers.member(&job.target) else {
            tracing::debug!(namespace = %ns, digest = %d, target = %job.target, "replica target left the cluster; dropping the task");
            return Attempt::Done;
        };
        if node.id == self.peers.self_id() {
            return Attempt::Done;
        }
        let store = self.store.clone();
        let digest = *d;
        let reader = match tokio::task::spawn_blocking(move || store.open_blob(&digest)).await {
            Ok(Ok(r)) => r,
            Ok(Err(StoreError::NotFound(_))) => {
                tracing::debug!(namespace = %ns, digest = %d, "blob to replicate is gone; dropping the task");
                return Attempt::Done;
            }
            Ok(Err(e)) => return Attempt::Retry(format!("opening blob: {e}")),
            Err(e) => return Attempt::Retry(format!("opening blob: {e}")),
        };
        let client = match self.peers.client(&node) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(target = %node.id, "cannot replicate: {e}");
                return Attempt::Done;
            }
        };
        let size = reader.size();
        let present = client.stat(ns, d).await;
        self.peers.report(&node, &present);
        match present {
            Ok(Some(s)) if s == size => return Attempt::Done,
            Ok(_) => {}
            Err(e) => return failed(&node, job, e),
        }
        let body: ByteStream = Box::pin(reader.into_chunks(0..size));
        let put = client.put(ns, d, body, Some(size)).await;
        self.peers.report(&node, &put);
        match put {
            Ok(_) => {
                self.bytes.inc_by(size);
                tracing::debug!(namespace = %ns, digest = %d, target = %node.id, size, "replicated");
                Attempt::Done
            }
            Err(e) => failed(&node, job, e),
        }
    }

    /// The blob stays in the local store while its task exists.
    fn recorded(&self, job: &ReplicaJob) {
        self.store.pin(&job.digest);
    }

    fn removed(&self, job: &ReplicaJob) {
        self.store.unpin(&job.digest);
    }
}

fn failed(node: &Node, job: &ReplicaJob, e: OriginClientError) -> Attempt {
    match e {
        OriginClientError::Unavailable { .. } => Attempt::Retry(e.to_string()),
        e => {
            tracing::error!(namespace = %job.namespace, digest = %job.digest, target = %node.id, "replica refused, dropping the task: {e}");
            Attempt::Done
        }
    }
}
