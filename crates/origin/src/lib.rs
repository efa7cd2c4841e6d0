//! The Shoal origin: a content-addressed blob service over pluggable storage.
//!
//! An origin accepts blob uploads (chunked and resumable, or in one request), verifies their
//! digest, keeps them in a local disk cache ([`shoal_store`]) and writes them back durably to
//! a storage backend ([`shoal_backend`]) through a persistent retry queue. It serves blobs with
//! byte ranges, fetches missing blobs from the backend once however many clients ask, and
//! keeps the metainfo (piece hashes) that peers need to swarm a blob: taken from the hash pass
//! that verified the blob as it arrived, or built from the cached content.
//!
//! Start with [`Origin::bind`] and [`Origin::run`]; the HTTP API is in `docs/PROTOCOL.md`.
//! With a cluster of origins (`[cluster]`, or [`Origin::bind_with_cluster`]), each blob's R
//! owners on a hash ring hold it: uploads are replicated to the other owners through a durable
//! queue, and a repair task copies blobs between origins when membership changes (see
//! `docs/ARCHITECTURE.md`). Seeding uses the swarm crates; membership, health and placement
//! come from `shoal-cluster`.

mod api;
mod bandwidth;
mod blobs;
pub mod config;
mod error;
mod metrics;
mod peers;
mod repair;
mod replicate;
mod seed;
mod sink;
mod uploads;
mod writeback;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use shoal_backend::{BackendRouter, FilesystemBackend};
use shoal_cluster::Cluster;
use shoal_runtime::admin::{self, Readiness};
use shoal_runtime::metrics::Metrics;
use shoal_runtime::queue::Queue;
use shoal_store::BlobStore;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
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
    /// The cluster configuration is invalid or its tasks could not start.
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] shoal_cluster::ClusterError),
    /// The replication queue could not be opened.
    #[error("cannot open replication queue: {0}")]
    Replication(std::io::Error),
}

/// A bound origin, ready to [`run`](Origin::run).
#[derive(Debug)]
pub struct Origin {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<api::AppState>,
    writeback: writeback::Writeback,
    replication: Option<replicate::Replication>,
    repair: Option<repair::Repair>,
    /// Stops the membership and health tasks of a cluster this origin started itself.
    cluster_tasks: Option<DropGuard>,
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
    /// Opens the store and task queues, builds the backends from `config.backends` and binds
    /// the listener (port 0 picks a free port). With a `[cluster]` configured, starts its
    /// membership and health tasks (they stop when the origin stops or is dropped); spawns
    /// nothing else.
    pub async fn bind(config: OriginConfig) -> Result<Self, StartError> {
        let backends = backends_of(&config)?;
        Self::bind_inner(config, backends, None).await
    }

    /// Like [`Origin::bind`], with backends built by the caller (`config.backends` is ignored).
    pub async fn bind_with_backends(
        config: OriginConfig,
        backends: BackendRouter,
    ) -> Result<Self, StartError> {
        Self::bind_inner(config, backends, None).await
    }

    /// Like [`Origin::bind`], as a member of `cluster` (`config.cluster` is ignored): e.g. a
    /// [`Cluster::fixed`] whose members a test changes with [`Cluster::set_static_members`].
    /// This origin's member id is `config.cluster_id`, or else its bound address.
    pub async fn bind_with_cluster(
        config: OriginConfig,
        cluster: Cluster,
    ) -> Result<Self, StartError> {
        let backends = backends_of(&config)?;
        Self::bind_inner(config, backends, Some(cluster)).await
    }

    async fn bind_inner(
        config: OriginConfig,
        backends: BackendRouter,
        cluster: Option<Cluster>,
    ) -> Result<Self, StartError> {
        validate(&config, cluster.is_some())?;
        let backends = Arc::new(backends);
        let metrics = Metrics::new("shoal_origin");
        let m = metrics::OriginMetrics::register(&metrics);

        let data_dir = config.data_dir.clone();
        let store_config = config.store.into();
        let store = tokio::task::spawn_blocking(move || {
            BlobStore::open(&data_dir.join("cache"), store_config)
        })
        .await
        .map_err(|e| StartError::Config(format!("store open task: {e}")))??;
        let writeback = Queue::open(
            "write-back",
            &config.data_dir.join("writeback"),
            writeback::BackendWriter {
                store: store.clone(),
                backends: Arc::clone(&backends),
            },
            config.writeback,
            m.writeback.clone(),
        )
        .map_err(StartError::Writeback)?;
        {
            let (store, m) = (store.clone(), m.blobs.clone());
            metrics.on_scrape(move || blobs::Blobs::refresh_store_metrics(&store, &m));
        }

        let (listener, local_addr) = admin::bind(config.listen).await?;
        let (cluster, cluster_tasks) = match cluster {
            Some(c) => (Some(c), None),
            None => match config.cluster() {
                Some(c) => {
                    let token = CancellationToken::new();
                    let cluster = Cluster::start(c.clone(), token.clone())?;
                    (Some(cluster), Some(token.drop_guard()))
                }
                None => (None, None),
            },
        };
        let replication = match cluster {
            Some(cluster) => {
                let self_id = member_id(config.cluster_id.as_deref(), local_addr)?;
                Some(open_replication(
                    &config, &store, cluster, self_id, &metrics, &m,
                )?)
            }
            None => None,
        };
        let blobs = blobs::Blobs::new(
            store,
            backends,
            writeback.clone(),
            replication.clone(),
            (config.min_piece_length, config.piece_length),
            m.blobs,
        );
        let repair = replication
            .as_ref()
            .map(|r| repair::Repair::new(Arc::clone(&blobs), r.clone(), config.repair, m.repair));
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
        Ok(Self {
            listener,
            local_addr,
            state,
            writeback,
            replication,
            repair,
            cluster_tasks,
            metrics,
            readiness: Readiness::default(),
            p2p,
        })
    }

    /// This origin's member id in its cluster, if it has one.
    pub fn cluster_id(&self) -> Option<&str> {
        self.replication.as_ref().map(|r| r.peers().self_id())
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
        let _cluster_tasks = self.cluster_tasks;
        let tasks = TaskTracker::new();
        let workers = shutdown.child_token();
        tasks.spawn(self.writeback.clone().run(workers.clone()));
        if let Some(replication) = &self.replication {
            tasks.spawn(replication.clone().run(workers.clone()));
        }
        if let Some(repair) = self.repair {
            tasks.spawn(repair.run(workers.clone()));
        }
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

fn backends_of(config: &OriginConfig) -> Result<BackendRouter, StartError> {
    Ok(if config.backends.is_empty() {
        let root = config.data_dir.join("backend");
        BackendRouter::single(Arc::new(FilesystemBackend::new(root)))
    } else {
        BackendRouter::from_config(&config.backends)?
    })
}

fn validate(config: &OriginConfig, given_cluster: bool) -> Result<(), StartError> {
    let bad = |m: &str| Err(StartError::Config(m.to_owned()));
    if config.writeback.concurrency == 0 {
        return bad("writeback.concurrency must be at least 1");
    }
    if config.replication.concurrency == 0 {
        return bad("replication.concurrency must be at least 1");
    }
    if config.repair.concurrency == 0 {
        return bad("repair.concurrency must be at least 1");
    }
    if config.repair.interval.is_zero() {
        return bad("repair.interval must be positive");
    }
    shoal_core::PieceLayout::new(0, config.piece_length)
        .map_err(|e| StartError::Config(format!("piece_length: {e}")))?;
    shoal_core::PieceLayout::new(0, config.min_piece_length)
        .map_err(|e| StartError::Config(format!("min_piece_length: {e}")))?;
    if let Some(c) = config.cluster().filter(|_| !given_cluster) {
        c.validate()?;
        if config.cluster_id.is_none() && config.listen.ip().is_unspecified() {
            return bad(
                "cluster_id is required with a cluster when listen has an unspecified IP \
                 (it must be this origin's host:port as the cluster members spell it)",
            );
        }
    }
    Ok(())
}

/// This origin's member id, spelled as the cluster spells ids.
fn member_id(configured: Option<&str>, bound: SocketAddr) -> Result<String, StartError> {
    let Some(id) = configured else {
        return Ok(bound.to_string());
    };
    // The cluster's own parser normalises it (lowercase host, canonical IP literal).
    Cluster::fixed(vec![id.to_owned()], 1)
        .ok()
        .and_then(|c| c.nodes().into_iter().next())
        .map(|n| n.id)
        .ok_or_else(|| StartError::Config(format!("cluster_id {id:?} is not a valid host:port")))
}

fn open_replication(
    config: &OriginConfig,
    store: &BlobStore,
    cluster: Cluster,
    self_id: String,
    metrics: &Metrics,
    m: &metrics::OriginMetrics,
) -> Result<replicate::Replication, StartError> {
    let members = cluster.nodes();
    if !members.is_empty() && !members.iter().any(|n| n.id == self_id) {
        tracing::warn!(
            cluster_id = %self_id,
            "this origin is not a member of its cluster: it owns no blobs and will hand over \
             the ones it has; set cluster_id to its id as the members list spells it"
        );
    }
    {
        let (cluster, members, healthy) = (
            cluster.clone(),
            m.cluster_members.clone(),
            m.cluster_healthy.clone(),
        );
        metrics.on_scrape(move || {
            let s = cluster.stats();
            members.set(s.members as i64);
            healthy.set(s.healthy as i64);
        });
    }
    let peers = Arc::new(peers::Peers::new(cluster, self_id));
    replicate::Replication::open(
        &config.data_dir.join("replication"),
        replicate::Pusher {
            store: store.clone(),
            peers,
            bytes: m.replication_bytes.clone(),
        },
        config.replication,
        m.replication.clone(),
    )
    .map_err(StartError::Replication)
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
