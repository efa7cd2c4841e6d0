//! The Shoal proxy: the push side of the registry. `docker push` talks to it; it serves the
//! whole OCI Distribution API (push, pull, discovery, deletion) through
//! [`shoal_registry::router`], with blob bytes streamed to and from the origins and tags and
//! manifest records kept by the build-index.
//!
//! This crate is **not** a cache or a peer: it holds no blob data and no state of its own, so
//! any number of proxies can run side by side (upload session ids name their origin).

pub mod config;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use shoal_build_index_api::BuildIndexClient;
use shoal_cluster::Cluster;
use shoal_origin_client::OriginPool;
use shoal_runtime::admin::{self, Readiness};
use shoal_runtime::metrics::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ProxyConfig;
pub use store::ProxyStore;

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is incomplete or inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] admin::BindError),
}

/// A bound proxy, ready to [`run`](Proxy::run).
#[derive(Debug)]
pub struct Proxy {
    listener: TcpListener,
    local_addr: SocketAddr,
    store: Arc<ProxyStore>,
    metrics: Metrics,
    readiness: Readiness,
    ring_token: CancellationToken,
}

impl Proxy {
    /// Validates the config, binds the listener (port 0 works) and starts watching the
    /// origins' ring (membership refresh and health checks run until [`run`](Self::run)
    /// ends).
    pub async fn bind(config: ProxyConfig) -> Result<Self, StartError> {
        if config.origins.members.is_empty() && config.origins.dns.is_none() {
            return Err(StartError::Config(
                "no origins: set `origins.members` (or `origins.dns`) or pass --origin".into(),
            ));
        }
        let ring_token = CancellationToken::new();
        let cluster = Cluster::start(config.origins.clone(), ring_token.clone())
            .map_err(|e| StartError::Config(format!("origins: {e}")))?;
        let build_index = config.build_index.as_deref().ok_or_else(|| {
            StartError::Config("no build-index: set `build_index` or pass --build-index".into())
        })?;
        let build_index = BuildIndexClient::new(build_index)
            .map_err(|e| StartError::Config(format!("build_index: {e}")))?;
        let (listener, local_addr) = admin::bind(config.listen).await?;
        Ok(Self {
            listener,
            local_addr,
            store: Arc::new(ProxyStore::new(OriginPool::new(cluster), build_index)),
            ring_token,
            metrics: Metrics::new("shoal_proxy"),
            readiness: Readiness::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the registry until `shutdown` is cancelled, then lets in-flight requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stats = Arc::new(shoal_registry::RegistryStats::default());
        stats.register(&self.metrics);
        let router = shoal_registry::router_with_stats(self.store, stats)
            .merge(admin::routes(self.metrics, self.readiness.clone()));
        self.readiness.set(true);
        tracing::info!(addr = %self.local_addr, "proxy listening");
        let served = admin::serve(self.listener, router, shutdown).await;
        self.readiness.set(false);
        self.ring_token.cancel();
        tracing::info!("proxy stopped");
        served.map_err(Into::into)
    }
}
