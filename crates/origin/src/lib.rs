//! The Shoal origin: a content-addressed blob service over pluggable storage.
//!
//! An origin accepts blob uploads (chunked and resumable, or in one request), verifies their
//! digest, keeps them in a local disk cache ([`shoal_store`]) and writes them back durably to
//! a storage backend ([`shoal_backend`]) through a persistent retry queue. It serves blobs with
//! byte ranges, fetches missing blobs from the backend once however many clients ask, and
//! generates the metainfo (piece hashes) that peers need to swarm a blob.
//!
//! Start with [`Origin::bind`] and [`Origin::run`]; the HTTP API is in `docs/PROTOCOL.md`.
//! This crate is **not** a peer: seeding over the swarm protocol and the hash ring come from
//! other crates.

mod api;
mod blobs;
pub mod config;
mod error;
mod seed;
mod sink;
mod uploads;
mod writeback;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use shoal_backend::{BackendRouter, FilesystemBackend};
use shoal_runtime::admin::{self, Readiness};
use shoal_runtime::metrics::Metrics;
use shoal_store::BlobStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use api::{METAINFO_CONTENT_TYPE, PEER_ADDR_HEADER, PEER_ID_HEADER};
pub use config::OriginConfig;

/// Why an origin could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] admin::BindError),
    /// The local blob store could not be opened.
    #[error("cannot open blob store: {0}")]
    Store(#[from] shoal_store::StoreError),
    /// A backend could not be built from its configuration.
    #[error("cannot set up backends: {0}")]
    Backend(#[from] shoal_backend::RouterError),
    /// The write-back queue could not be opened.
    #[error("cannot open write-back queue: {0}")]
    Writeback(std::io::Error),
    /// The peer transport could not start.
    #[error("cannot start the peer transport: {0}")]
    Transport(#[from] shoal_transport::TransportError),
    /// The peer id could not be read or created.
    #[error("cannot read or create the peer id: {0}")]
    PeerId(std::io::Error),
}

/// A bound origin, ready to [`run`](Origin::run).
#[derive(Debug)]
pub struct Origin {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<api::AppState>,
    writeback: writeback::Writeback,
    metrics: Metrics,
    readiness: Readiness,
    p2p: Option<P2p>,
}

/// The bound peer transport, started in `run`.
#[derive(Debug)]
struct P2p {
    transport: shoal_transport::Transport,
    acceptor: shoal_transport::Acceptor,
    config: shoal_p2p::SwarmConfig,
}

impl Origin {
    /// Opens the store and write-back queue, builds the backends from `config.backends` and
    /// binds the listener (port 0 picks a free port). Spawns nothing.
    pub async fn bind(config: OriginConfig) -> Result<Self, StartError> {
        let backends = if config.backends.is_empty() {
            let root = config.data_dir.join("backend");
            BackendRouter::single(Arc::new(FilesystemBackend::new(root)))
        } else {
            BackendRouter::from_config(&config.backends)?
        };
        Self::bind_with_backends(config, backends).await
    }

    /// Like [`Origin::bind`], with backends built by the caller (`config.backends` is ignored).
    pub async fn bind_with_backends(
        config: OriginConfig,
        backends: BackendRouter,
    ) -> Result<Self, StartError> {
        if config.writeback.concurrency == 0 {
            return Err(StartError::Config(
                "writeback.concurrency must be at least 1".into(),
            ));
        }
        shoal_core::PieceLayout::new(0, config.piece_length)
            .map_err(|e| StartError::Config(format!("piece_length: {e}")))?;
        let backends = Arc::new(backends);

        let metrics = Metrics::new("shoal_origin");
        let wb_metrics = writeback::WritebackMetrics {
            depth: metrics.register(
                "writeback_queue_depth",
                "Committed blobs not yet written back to their backend",
                Gauge::default(),
            ),
            completed: metrics.register(
                "writeback_completed",
                "Write-back tasks completed",
                Counter::default(),
            ),
            failures: metrics.register(
                "writeback_failures",
                "Write-back attempts that failed and will be retried",
                Counter::default(),
            ),
        };
        let blob_metrics = blobs::BlobMetrics {
            backend_fetches: metrics.register(
                "backend_fetches",
                "Blobs fetched from a backend on a cache miss",
                Counter::default(),
            ),
            backend_fetch_failures: metrics.register(
                "backend_fetch_failures",
                "Backend fetches that failed",
                Counter::default(),
            ),
            commits: metrics.register("uploads_committed", "Uploads committed", Counter::default()),
            store_bytes: metrics.register(
                "store_bytes",
                "Bytes in the local blob cache",
                Gauge::default(),
            ),
            store_blobs: metrics.register(
                "store_blobs",
                "Blobs in the local blob cache",
                Gauge::default(),
            ),
            evictions: metrics.register(
                "store_evictions",
                "Blobs evicted from the local cache since start",
                Gauge::default(),
            ),
        };

        let data_dir = config.data_dir.clone();
        let store_config = config.store.into();
        let store = tokio::task::spawn_blocking(move || {
            BlobStore::open(&data_dir.join("cache"), store_config)
        })
        .await
        .map_err(|e| StartError::Config(format!("store open task: {e}")))??;
        let writeback = writeback::Writeback::open(
            &config.data_dir.join("writeback"),
            store.clone(),
            Arc::clone(&backends),
            config.writeback,
            wb_metrics,
        )
        .map_err(StartError::Writeback)?;
        {
            let (store, m) = (store.clone(), blob_metrics.clone());
            metrics.on_scrape(move || blobs::Blobs::refresh_store_metrics(&store, &m));
        }
        let blobs = blobs::Blobs::new(
            store,
            backends,
            writeback.clone(),
            config.piece_length,
            blob_metrics,
        );
        let (p2p, peer) = if config.p2p.enabled {
            let peer_id =
                shoal_p2p::load_or_create_peer_id(&config.data_dir).map_err(StartError::PeerId)?;
            let (transport, acceptor) =
                shoal_transport::Transport::bind(config.p2p.transport.clone())?;
            let bound = transport.local_addr();
            let advertised = config
                .p2p
                .advertise_addr
                .or_else(|| (!bound.ip().is_unspecified()).then_some(bound));
            let swarm_config = shoal_p2p::SwarmConfig {
                peer_id,
                role: shoal_engine::Role::Origin,
                engine: shoal_engine::EngineConfig::default(),
                seed_idle: config.p2p.seed_idle,
            };
            (
                Some(P2p {
                    transport,
                    acceptor,
                    config: swarm_config,
                }),
                advertised.map(|addr| api::PeerAdvert { peer_id, addr }),
            )
        } else {
            (None, None)
        };
        let state = Arc::new(api::AppState {
            blobs,
            uploads: uploads::Uploads::new(config.uploads.idle_timeout),
            peer,
        });

        let (listener, local_addr) = admin::bind(config.listen).await?;
        Ok(Self {
            listener,
            local_addr,
            state,
            writeback,
            metrics,
            readiness: Readiness::default(),
            p2p,
        })
    }

    /// The bound address of the HTTP API.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound address of the peer transport, if seeding is enabled.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.p2p.as_ref().map(|p| p.transport.local_addr())
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests
    /// finish and stops the background workers. Pending write-backs stay queued on disk.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tasks = TaskTracker::new();
        let workers = shutdown.child_token();
        tasks.spawn(self.writeback.clone().run(workers.clone()));
        tasks.spawn(reap_uploads(Arc::clone(&self.state), workers.clone()));
        let swarm = self.p2p.map(|p| {
            let resolver = Arc::new(seed::OriginResolver(Arc::clone(&self.state.blobs)));
            shoal_p2p::Swarm::start(
                p.transport,
                p.acceptor,
                p.config,
                Some(resolver),
                workers.clone(),
            )
        });
        if let Some(swarm) = &swarm {
            tracing::info!(peer_addr = %swarm.local_addr(), "origin seeding over the peer protocol");
            let up = self.metrics.register(
                "p2p_uploaded_bytes",
                "Piece bytes sent to peers",
                Gauge::<u64, AtomicU64>::default(),
            );
            let swarm = swarm.clone();
            self.metrics.on_scrape(move || {
                up.set(swarm.stats().uploaded.load(Ordering::Relaxed));
            });
        }

        let router = api::router(Arc::clone(&self.state))
            .merge(admin::routes(self.metrics.clone(), self.readiness.clone()));
        self.readiness.set(true);
        tracing::info!(addr = %self.local_addr, "origin listening");
        let served = admin::serve(self.listener, router, shutdown.clone()).await;
        self.readiness.set(false);
        workers.cancel();
        if let Some(swarm) = swarm {
            swarm.closed().await;
        }
        tasks.close();
        tasks.wait().await;
        tracing::info!(
            pending_writebacks = self.writeback.depth(),
            "origin stopped"
        );
        served.map_err(Into::into)
    }
}

async fn reap_uploads(state: Arc<api::AppState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let n = state.uploads.reap(tokio::time::Instant::now());
                if n > 0 {
                    tracing::info!(reaped = n, remaining = state.uploads.len(), "abandoned uploads deleted");
                }
            }
        }
    }
}
