//! The Shoal build-index: which manifest a tag points at, over pluggable storage, replicated
//! between zones.
//!
//! * **Tags**: `(repository, tag) → digest`, each with a `generation`. A local write assigns
//!   `max(now in µs, current + 1)` under a per-tag lock, so re-pushing a tag takes effect
//!   (last writer wins); a write replicated from another zone is applied only if it
//!   supersedes the stored state (higher generation, ties broken by digest string), so
//!   duplicates and late arrivals are harmless. A delete leaves a tombstone with its own
//!   generation, so an older replicated write cannot resurrect the tag.
//! * **Manifest records**: a manifest's descriptor and `subject`, for the registry's
//!   `Content-Type` and referrers API; deleting a manifest deletes the tags that point at it.
//! * **Listings**: tags of a repository and the catalog of repositories, lexical and paginated
//!   (`n`, `last`).
//! * **Replication**: tags of repositories matching a `[[replication]]` rule are copied to the
//!   rule's remote zone through a durable queue (`<data_dir>/replication/`): every manifest and
//!   blob the tag needs is streamed from this zone's origin to the remote zone's origins, then
//!   the manifest records and the tag (with its generation) go to the remote build-index.
//!
//! Records are small JSON objects in a [`shoal_backend::Backend`] (filesystem by default),
//! which is the source of truth: a restarted build-index sees everything. Start with
//! [`BuildIndex::bind`] and [`BuildIndex::run`]; clients use `shoal-build-index-api`, and the
//! HTTP API is in `docs/PROTOCOL.md`.
//!
//! This crate is **not** a registry (the proxy and agents serve `/v2/`) and never stores
//! manifest bytes or blobs: those live on origins. One build-index process owns a backend's
//! records; replicas within a zone do not share one backend.

mod api;
pub mod config;
mod error;
mod index;
mod keys;
mod replication;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use shoal_backend::{Backend, FilesystemBackend};
use shoal_runtime::admin::{self, Readiness};
use shoal_runtime::metrics::Metrics;
use shoal_runtime::queue::QueueMetrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::BuildIndexConfig;

/// Why a build-index could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
    /// The storage backend could not be built from its configuration.
    #[error("cannot set up the backend: {0}")]
    Backend(#[from] shoal_backend::RouterError),
    /// The replication queue could not be opened.
    #[error("cannot open the replication queue: {0}")]
    Queue(String),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] admin::BindError),
}

/// A bound build-index, ready to [`run`](BuildIndex::run).
#[derive(Debug)]
pub struct BuildIndex {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<api::AppState>,
    replicator: replication::Replicator,
    metrics: Metrics,
    readiness: Readiness,
    /// Stops the local origins' ring tasks (membership, health checks) when the service stops.
    ring_token: CancellationToken,
}

impl BuildIndex {
    /// Validates `config`, builds the backend (default: filesystem under
    /// `<data_dir>/backend`), opens the replication queue (resuming tasks left from before)
    /// and binds the listener (port 0 picks a free port). Spawns only the origins' ring watcher
    /// (membership and health checks), which stops when [`run`](Self::run) ends.
    pub async fn bind(config: BuildIndexConfig) -> Result<Self, StartError> {
        let backend = match &config.backend {
            Some(b) => shoal_backend::open(b)?,
            None => Arc::new(FilesystemBackend::new(config.data_dir.join("backend"))),
        };
        Self::bind_with_backend(config, backend).await
    }

    /// Like [`BuildIndex::bind`], with a backend built by the caller (`config.backend` is
    /// ignored).
    pub async fn bind_with_backend(
        config: BuildIndexConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let ring_token = CancellationToken::new();
        let metrics = Metrics::new("shoal_build_index");
        let repl_metrics = QueueMetrics {
            depth: metrics.register(
                "replication_queue_depth",
                "Tag replications not yet delivered to their remote zone",
                Gauge::default(),
            ),
            completed: metrics.register(
                "replication_delivered",
                "Tag replications delivered",
                Counter::default(),
            ),
            failures: metrics.register(
                "replication_failures",
                "Tag replication attempts that failed and will be retried",
                Counter::default(),
            ),
        };
        let blobs_copied = metrics.register(
            "replication_blobs_copied",
            "Blobs and manifests copied to a remote zone's origin",
            Counter::default(),
        );
        let api_metrics = api::ApiMetrics {
            tags_put: metrics.register("tags_put", "Local tag writes", Counter::default()),
            tags_replicated: metrics.register(
                "tags_replicated",
                "Replicated tag writes applied",
                Counter::default(),
            ),
            tags_replicated_ignored: metrics.register(
                "tags_replicated_ignored",
                "Replicated tag writes ignored as not newer than the stored state",
                Counter::default(),
            ),
        };

        let store = Arc::new(store::RecordStore::new(backend));
        let local_origins = if config.origins.is_configured() {
            let cluster = shoal_cluster::Cluster::start(config.origins.clone(), ring_token.clone())
                .map_err(|e| StartError::Config(format!("origins: {e}")))?;
            Some(shoal_origin_client::OriginPool::new(cluster))
        } else {
            None
        };
        let delivery = replication::Delivery::new(
            local_origins,
            Arc::clone(&store),
            config.replication_queue.blob_concurrency,
            blobs_copied,
        )
        .map_err(|e| StartError::Config(format!("origin: {e}")))?;
        let data_dir = config.data_dir.clone();
        let rules = config.replication.clone();
        let queue_config = config.replication_queue.queue();
        let replicator = tokio::task::spawn_blocking(move || {
            replication::Replicator::open(
                &data_dir.join("replication"),
                &rules,
                queue_config,
                delivery,
                repl_metrics,
            )
        })
        .await
        .map_err(|e| StartError::Queue(e.to_string()))?
        .map_err(|e| match e {
            replication::OpenError::Rule { .. } => StartError::Config(e.to_string()),
            replication::OpenError::Io { .. } => StartError::Queue(e.to_string()),
        })?;
        let state = Arc::new(api::AppState {
            index: index::Index::new(store, replicator.clone()),
            metrics: api_metrics,
        });
        let (listener, local_addr) = admin::bind(config.listen).await?;
        Ok(Self {
            listener,
            local_addr,
            state,
            replicator,
            metrics,
            readiness: Readiness::default(),
            ring_token,
        })
    }

    /// The bound address of the HTTP API.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests
    /// finish and stops the replication worker. Undelivered replications stay queued on disk.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tasks = TaskTracker::new();
        let workers = shutdown.child_token();
        tasks.spawn(self.replicator.clone().run(workers.clone()));

        let router = api::router(Arc::clone(&self.state))
            .merge(admin::routes(self.metrics.clone(), self.readiness.clone()));
        self.readiness.set(true);
        tracing::info!(addr = %self.local_addr, "build-index listening");
        let served = admin::serve(self.listener, router, shutdown.clone()).await;
        self.readiness.set(false);
        self.ring_token.cancel();
        workers.cancel();
        tasks.close();
        tasks.wait().await;
        tracing::info!(
            pending_replications = self.replicator.depth(),
            "build-index stopped"
        );
        served.map_err(Into::into)
    }
}
