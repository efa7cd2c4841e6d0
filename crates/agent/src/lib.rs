//! The Shoal agent: one per host. It fetches blobs as torrents from peers and origins over
//! QUIC, seeds what it has for a while, and serves blobs on a local HTTP API and a local,
//! read-only OCI registry (the pull side that Docker and containerd use).
//!
//! On `GET /v1/namespaces/{ns}/blobs/{digest}` (or a registry blob or manifest request) it
//! gets the blob's metainfo from the tracker, opens (or resumes) a piece-wise download in its
//! store, starts the torrent in its [`shoal_p2p::Swarm`], announces it to the tracker on its
//! own task (torrents never wait for each other's announces), and streams the blob as its
//! verified pieces arrive; the blob enters the cache once all of it is verified. Concurrent
//! requests for one blob share one download. Tags resolve through the build-index
//! (`registry`), and a configured upstream registry can stand behind Shoal (`mirror`).
//!
//! This crate is **not** the push side of the registry (the proxy) nor a tracker: it only
//! talks to them, routing each torrent to a tracker by the trackers' ring over its info hash
//! and failing over to the next tracker when one does not answer.

mod api;
pub mod config;
mod downloads;
mod error;
mod mirror;
mod registry;
mod trackers;

use std::net::SocketAddr;
use std::sync::Arc;

use shoal_build_index_api::BuildIndexClient;
use shoal_cluster::Cluster;
use shoal_p2p::{Swarm, SwarmConfig};
use shoal_runtime::admin::{self, Readiness};
use shoal_runtime::metrics::Metrics;
use shoal_store::{BlobStore, StoreConfig};
use shoal_transport::{Acceptor, Transport};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::AgentConfig;

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] admin::BindError),
    /// The store could not be opened.
    #[error("cannot open the blob store: {0}")]
    Store(#[from] shoal_store::StoreError),
    /// The peer transport could not start.
    #[error("cannot start the peer transport: {0}")]
    Transport(#[from] shoal_transport::TransportError),
    /// The peer id could not be read or created.
    #[error("cannot read or create the peer id: {0}")]
    PeerId(std::io::Error),
}

/// A bound agent, ready to [`run`](Agent::run).
#[derive(Debug)]
pub struct Agent {
    listener: TcpListener,
    local_addr: SocketAddr,
    transport: Transport,
    acceptor: Acceptor,
    store: BlobStore,
    config: AgentConfig,
    peer_id: shoal_core::PeerId,
    trackers: Cluster,
    ring_token: CancellationToken,
    build_index: Option<BuildIndexClient>,
    metrics: Metrics,
    mirrors: Arc<mirror::Mirrors>,
}

impl Agent {
    /// Opens the store, binds the HTTP listener and the peer transport (port 0 works).
    /// Spawns only the trackers' ring watcher (membership and health checks), which stops when
    /// [`run`](Self::run) ends.
    pub async fn bind(config: AgentConfig) -> Result<Self, StartError> {
        let ring_token = CancellationToken::new();
        let trackers = Cluster::start(config.trackers.clone(), ring_token.clone())
            .map_err(|e| StartError::Config(format!("trackers: {e}")))?;
        let build_index = config
            .build_index
            .as_deref()
            .map(BuildIndexClient::new)
            .transpose()
            .map_err(|e| StartError::Config(format!("build_index: {e}")))?;
        let metrics = Metrics::new("shoal_agent");
        let mirrors =
            mirror::Mirrors::new(&config.mirrors, &metrics).map_err(StartError::Config)?;
        let peer_id =
            shoal_p2p::load_or_create_peer_id(&config.data_dir).map_err(StartError::PeerId)?;
        let store_dir = config.data_dir.join("cache");
        let store_config = StoreConfig {
            capacity_bytes: config.cache_capacity_bytes,
            ..StoreConfig::default()
        };
        let store = tokio::task::spawn_blocking(move || BlobStore::open(&store_dir, store_config))
            .await
            .map_err(|e| StartError::Config(e.to_string()))??;
        let (transport, acceptor) = Transport::bind(config.transport.clone())?;
        let (listener, local_addr) = admin::bind(config.listen).await?;
        Ok(Self {
            listener,
            local_addr,
            transport,
            acceptor,
            store,
            config,
            peer_id,
            trackers,
            ring_token,
            build_index,
            metrics,
            mirrors: Arc::new(mirrors),
        })
    }

    /// The HTTP API's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The peer transport's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Serves until `shutdown` is cancelled; then announces `STOPPED` for its torrents and
    /// closes its peer connections.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let workers = shutdown.child_token();
        let seed = u64::from_be_bytes(
            self.peer_id.as_bytes()[..8]
                .try_into()
                .expect("32-byte peer id"),
        );
        let swarm = Swarm::start(
            self.transport,
            self.acceptor,
            SwarmConfig {
                peer_id: self.peer_id,
                role: shoal_engine::Role::Agent,
                engine: self.config.engine.to_engine(seed),
                seed_idle: self.config.seed_time,
            },
            None,
            workers.clone(),
        );
        let trackers = trackers::Trackers::new(self.trackers);
        let downloads = downloads::Downloads::new(
            self.store,
            swarm.clone(),
            trackers,
            self.config.advertise_ip,
            self.config.seed_time,
            workers.clone(),
        );
        let metrics = self.metrics;
        register_swarm_metrics(&metrics, &swarm);
        let readiness = Readiness::default();
        let registry = registry::AgentStore::new(
            Arc::clone(&downloads),
            self.build_index,
            registry::TagCaching {
                ttl: self.config.tag_ttl,
                stale_if_error: self.config.tag_stale_if_error,
                stale_served: metrics.register(
                    "registry_stale_tags_served",
                    "Pulls by tag answered from an expired cache entry because the build-index \
                     was unavailable",
                    prometheus_client::metrics::counter::Counter::default(),
                ),
            },
        );
        let registry_stats = Arc::new(shoal_registry::RegistryStats::default());
        registry_stats.register(&metrics);
        let router = api::router(downloads)
            .merge(
                shoal_registry::router_with_stats(Arc::new(registry), registry_stats).layer(
                    axum::middleware::from_fn_with_state(self.mirrors, mirror::layer),
                ),
            )
            .merge(admin::routes(metrics, readiness.clone()));
        readiness.set(true);
        tracing::info!(addr = %self.local_addr, peer_addr = %swarm.local_addr(), peer_id = %self.peer_id, "agent listening");
        let served = admin::serve(self.listener, router, shutdown.clone()).await;
        readiness.set(false);
        workers.cancel();
        swarm.closed().await;
        self.ring_token.cancel();
        served.map_err(Into::into)
    }
}

/// Exposes the swarm's byte counters as `<prefix>_p2p_{downloaded,uploaded}_bytes`.
fn register_swarm_metrics(metrics: &Metrics, swarm: &Swarm) {
    use prometheus_client::metrics::gauge::Gauge;
    use std::sync::atomic::{AtomicU64, Ordering};
    let down = metrics.register(
        "p2p_downloaded_bytes",
        "Piece bytes received from peers and stored",
        Gauge::<u64, AtomicU64>::default(),
    );
    let up = metrics.register(
        "p2p_uploaded_bytes",
        "Piece bytes sent to peers",
        Gauge::<u64, AtomicU64>::default(),
    );
    let swarm = swarm.clone();
    metrics.on_scrape(move || {
        down.set(swarm.stats().downloaded.load(Ordering::Relaxed));
        up.set(swarm.stats().uploaded.load(Ordering::Relaxed));
    });
}
