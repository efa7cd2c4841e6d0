//! The Shoal tracker: peer discovery and metainfo lookup over gRPC (`proto/tracker.proto`).
//!
//! * **Announce**: a peer reports its state in one torrent and gets back up to `max_peers`
//!   other peers of it, chosen by the engine's handout policy
//!   ([`shoal_engine::handout`]: seeders, then origins, then peers still downloading, shuffled
//!   within each class). Peers that stop announcing expire after `peer_ttl`; a background
//!   sweeper drops them. The tables live in memory, sharded by info hash; a restarted tracker
//!   relearns the swarm within one announce interval.
//! * **GetMetaInfo**: the encoded [`shoal_core::MetaInfo`] of a blob, from a bounded LRU cache
//!   or else from the configured origins (tried in order, failing over on errors and 404s).
//!   Fetched metainfo is decoded and its digest checked before it is cached, and concurrent
//!   lookups of one digest share a single origin request.
//! * **Origin peers**: an origin that seeds over the peer protocol answers the metainfo request
//!   with [`ORIGIN_PEER_ID_HEADER`] and [`ORIGIN_PEER_ADDR_HEADER`]. The tracker then records
//!   that origin as a peer of the torrent (`is_origin`, `complete`) and includes it in every
//!   announce handout for that info hash, in the origins class and within `max_peers`, for as
//!   long as the metainfo stays cached: it never expires on a TTL and goes when the cache
//!   entry is evicted. Agents look metainfo up before announcing, so by their first announce
//!   the tracker knows the origin. Missing or invalid headers only mean no origin peer (logged
//!   at debug); the metainfo is served all the same. An origin that also announces itself is
//!   handed out once, as announced.
//!
//! Announces from one agent for many torrents are independent unary RPCs: nothing serialises
//! them on the server (no global lock, and no lock is held across an `.await`), so an agent
//! can announce all its torrents concurrently.
//!
//! gRPC and the admin routes (`/health`, `/readiness`, `/metrics`) share one port. Start with
//! [`Tracker::bind`] and [`Tracker::run`]; agents talk to it with the generated client in
//! [`proto`].
//!
//! This crate is **not** a peer and never touches blob data; it does not persist its tables,
//! Metainfo lookups route by the origins' ring (`shoal-cluster`): the blob's owners first,
//! healthy ones first, failing over on errors and 404s.

mod cache;
pub mod config;
mod metainfo;
mod peers;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use shoal_cluster::Cluster;
use shoal_runtime::admin::{self, Readiness};
use shoal_runtime::metrics::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::TrackerConfig;

/// The tracker's gRPC messages, server and client (re-exported from `shoal-tracker-api`).
pub use shoal_tracker_api as proto;
pub use shoal_tracker_api::{ORIGIN_PEER_ADDR_HEADER, ORIGIN_PEER_ID_HEADER};

/// Why a tracker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
    /// The HTTP client for the origins could not be built.
    #[error("cannot build the origin HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] admin::BindError),
}

/// A bound tracker, ready to [`run`](Tracker::run).
#[derive(Debug)]
pub struct Tracker {
    listener: TcpListener,
    local_addr: SocketAddr,
    service: Arc<service::TrackerService>,
    expired: Counter,
    metrics: Metrics,
    readiness: Readiness,
    /// Stops the origins' ring tasks (membership, health checks) when the tracker stops.
    ring_token: CancellationToken,
}

impl Tracker {
    /// Validates `config`, sets up the tables, cache and metrics and binds the listener (port
    /// 0 picks a free port). Spawns only the origins' ring watcher (membership and health
    /// checks), which stops when [`run`](Self::run) ends.
    pub async fn bind(config: TrackerConfig) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let ring_token = CancellationToken::new();
        let metrics = Metrics::new("shoal_tracker");
        let announce_metrics = service::AnnounceMetrics {
            announces: metrics.register("announces", "Announces accepted", Counter::default()),
            invalid: metrics.register(
                "announces_invalid",
                "Announces rejected as invalid",
                Counter::default(),
            ),
        };
        let lookup_metrics = metainfo::LookupMetrics {
            cache_hits: metrics.register(
                "metainfo_cache_hits",
                "Metainfo lookups served from the cache",
                Counter::default(),
            ),
            cache_misses: metrics.register(
                "metainfo_cache_misses",
                "Metainfo lookups that missed the cache",
                Counter::default(),
            ),
            origin_requests: metrics.register(
                "metainfo_origin_requests",
                "Metainfo requests sent to origins",
                Counter::default(),
            ),
            origin_failures: metrics.register(
                "metainfo_origin_failures",
                "Metainfo requests to origins that failed (not counting 404s)",
                Counter::default(),
            ),
        };
        let expired = metrics.register(
            "peers_expired",
            "Peers dropped for not announcing within the TTL",
            Counter::default(),
        );
        let torrents: Gauge = metrics.register(
            "torrents",
            "Torrents with at least one peer",
            Gauge::default(),
        );
        let peers_gauge: Gauge =
            metrics.register("peers", "Peers across all torrents", Gauge::default());
        let cached: Gauge = metrics.register(
            "metainfo_cached",
            "Metainfo entries in the cache",
            Gauge::default(),
        );

        let service = Arc::new(service::TrackerService {
            peers: Arc::default(),
            metainfo: metainfo::MetaInfoSource::new(
                Cluster::start_or_empty(config.origins.clone(), ring_token.clone())
                    .map_err(|e| StartError::Config(format!("origins: {e}")))?,
                config.origin_timeout,
                config.metainfo_cache_size,
                lookup_metrics,
            )?,
            interval: config.announce_interval,
            ttl: config.effective_peer_ttl(),
            max_peers: config.max_peers,
            metrics: announce_metrics,
        });
        {
            let service = Arc::clone(&service);
            metrics.on_scrape(move || {
                torrents.set(gauge_value(service.peers.torrent_count()));
                peers_gauge.set(gauge_value(service.peers.peer_count()));
                cached.set(gauge_value(service.metainfo.cached()));
            });
        }

        let (listener, local_addr) = admin::bind(config.listen).await?;
        Ok(Self {
            listener,
            local_addr,
            service,
            expired,
            metrics,
            readiness: Readiness::default(),
            ring_token,
        })
    }

    /// The bound address of the gRPC API and admin routes.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves gRPC and the admin routes until `shutdown` is cancelled, then stops accepting,
    /// lets in-flight calls finish and stops the sweeper.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let sweeper = tokio::spawn(sweep(
            Arc::clone(&self.service),
            self.expired.clone(),
            shutdown.child_token(),
        ));
        let grpc = tonic::service::Routes::new(proto::tracker_server::TrackerServer::from_arc(
            Arc::clone(&self.service),
        ))
        .prepare()
        .into_axum_router();
        let router = grpc.merge(admin::routes(self.metrics.clone(), self.readiness.clone()));
        self.readiness.set(true);
        tracing::info!(addr = %self.local_addr, "tracker listening");
        let served = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
        self.readiness.set(false);
        shutdown.cancel();
        self.ring_token.cancel();
        if let Err(e) = sweeper.await {
            tracing::error!("sweeper task failed: {e}");
        }
        tracing::info!("tracker stopped");
        served.map_err(Into::into)
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Drops expired peers every quarter TTL (between 10 ms and 5 s). Each pass locks one shard
/// at a time and never across an `.await`.
async fn sweep(service: Arc<service::TrackerService>, expired: Counter, stop: CancellationToken) {
    let period = (service.ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                let n = service.peers.sweep(tokio::time::Instant::now());
                if n > 0 {
                    expired.inc_by(n as u64);
                    tracing::debug!(expired = n, "expired peers dropped");
                }
            }
        }
    }
}
