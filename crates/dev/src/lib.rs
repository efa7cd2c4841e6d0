//! A whole Shoal cluster in one process on loopback: one origin (filesystem storage), one
//! tracker, one build-index, one proxy and one agent, wired to each other. `shoal dev` runs it
//! so that a new user can `docker push` to the proxy and `docker pull` from the agent right
//! away; end-to-end tests run it too.
//!
//! This crate is **not** a deployment: everything shares one data directory and one process,
//! peer TLS is in dev mode, and there is no ring. See `deploy/` for real clusters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shoal_agent::config::MirrorConfig;
use shoal_agent::{Agent, AgentConfig};
use shoal_build_index::config::ReplicationRule;
use shoal_build_index::{BuildIndex, BuildIndexConfig};
use shoal_cluster::ClusterConfig;
use shoal_origin::{Origin, OriginConfig};
use shoal_proxy::{Proxy, ProxyConfig};
use shoal_tracker::{Tracker, TrackerConfig};
use shoal_transport::{BandwidthConfig, TransportConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where the dev cluster keeps its data and which ports the services take.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// Data directory: `origin/`, `build-index/` and `agent/` go under it.
    pub data_dir: PathBuf,
    /// The proxy's (push registry's) address. Port 0 picks a free port.
    pub proxy_listen: SocketAddr,
    /// The agent's (pull registry's) address. Port 0 picks a free port.
    pub agent_listen: SocketAddr,
    /// The agent's peer bandwidth caps (default: none).
    pub agent_bandwidth: BandwidthConfig,
    /// The origin's HTTP address. Port 0 picks a free port.
    pub origin_listen: SocketAddr,
    /// The build-index's HTTP address. Port 0 picks a free port.
    pub build_index_listen: SocketAddr,
    /// Tag replication rules of the build-index (another zone's build-index and origins).
    pub replication: Vec<ReplicationRule>,
    /// First retry delay of the build-index's replication queue (doubles per failure).
    pub replication_backoff: Duration,
    /// Upstream registries the agent mirrors (`?ns=` pull-through; default: none).
    pub agent_mirrors: Vec<MirrorConfig>,
}

impl DevConfig {
    /// Everything on `127.0.0.1` port 0 (free ports), data under `data_dir`, no bandwidth caps,
    /// no replication.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            data_dir: data_dir.into(),
            proxy_listen: loopback,
            agent_listen: loopback,
            agent_bandwidth: BandwidthConfig::default(),
            origin_listen: loopback,
            build_index_listen: loopback,
            replication: Vec::new(),
            replication_backoff: Duration::from_secs(1),
            agent_mirrors: Vec::new(),
        }
    }
}

/// Why the dev cluster could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the {service}: {message}")]
pub struct DevError {
    /// Which service.
    pub service: &'static str,
    /// Why.
    pub message: String,
}

fn fail(service: &'static str) -> impl FnOnce(&dyn std::fmt::Display) -> DevError {
    move |e| DevError {
        service,
        message: e.to_string(),
    }
}

/// The addresses of a bound dev cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevAddrs {
    /// Push registry (`docker push localhost:<port>/…`).
    pub proxy: SocketAddr,
    /// Pull registry (`docker pull localhost:<port>/…`).
    pub agent: SocketAddr,
    /// Origin HTTP API.
    pub origin: SocketAddr,
    /// Tracker gRPC API.
    pub tracker: SocketAddr,
    /// Build-index HTTP API.
    pub build_index: SocketAddr,
}

/// A bound dev cluster, ready to [`run`](DevCluster::run).
#[derive(Debug)]
pub struct DevCluster {
    addrs: DevAddrs,
    origin: Origin,
    tracker: Tracker,
    build_index: BuildIndex,
    proxy: Proxy,
    agent: Agent,
}

impl DevCluster {
    /// Binds every service (origin first: the others need its address). Only the services'
    /// ring watchers start before [`run`](Self::run).
    pub async fn bind(config: DevConfig) -> Result<Self, DevError> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut origin_config = OriginConfig {
            listen: config.origin_listen,
            data_dir: config.data_dir.join("origin"),
            ..OriginConfig::default()
        };
        origin_config.p2p.transport = TransportConfig::localhost();
        let origin = Origin::bind(origin_config)
            .await
            .map_err(|e| fail("origin")(&e))?;
        let origin_url = format!("http://{}", origin.local_addr());

        let tracker = Tracker::bind(TrackerConfig {
            listen: loopback,
            origins: ClusterConfig::with_members([origin_url.clone()]),
            ..TrackerConfig::default()
        })
        .await
        .map_err(|e| fail("tracker")(&e))?;

        let mut build_index_config = BuildIndexConfig {
            listen: config.build_index_listen,
            data_dir: config.data_dir.join("build-index"),
            origins: ClusterConfig::with_members([origin_url.clone()]),
            replication: config.replication.clone(),
            ..BuildIndexConfig::default()
        };
        build_index_config.replication_queue.initial_backoff = config.replication_backoff;
        build_index_config.replication_queue.max_backoff = config.replication_backoff * 8;
        let build_index = BuildIndex::bind(build_index_config)
            .await
            .map_err(|e| fail("build-index")(&e))?;
        let build_index_url = format!("http://{}", build_index.local_addr());

        let proxy = Proxy::bind(ProxyConfig {
            listen: config.proxy_listen,
            origins: ClusterConfig {
                members: vec![origin.local_addr().to_string()],
                ..ClusterConfig::default()
            },
            build_index: Some(build_index_url.clone()),
            ..ProxyConfig::default()
        })
        .await
        .map_err(|e| fail("proxy")(&e))?;

        let agent = Agent::bind(AgentConfig {
            listen: config.agent_listen,
            data_dir: config.data_dir.join("agent"),
            trackers: ClusterConfig::with_members([tracker.local_addr().to_string()]),
            build_index: Some(build_index_url),
            transport: TransportConfig {
                bandwidth: config.agent_bandwidth,
                ..TransportConfig::localhost()
            },
            mirrors: config.agent_mirrors.clone(),
            ..AgentConfig::default()
        })
        .await
        .map_err(|e| fail("agent")(&e))?;

        let addrs = DevAddrs {
            proxy: proxy.local_addr(),
            agent: agent.local_addr(),
            origin: origin.local_addr(),
            tracker: tracker.local_addr(),
            build_index: build_index.local_addr(),
        };
        Ok(Self {
            addrs,
            origin,
            tracker,
            build_index,
            proxy,
            agent,
        })
    }

    /// The services' addresses.
    pub fn addrs(&self) -> DevAddrs {
        self.addrs
    }

    /// Runs every service until `shutdown` is cancelled or one of them fails (which stops the
    /// others). Tiers stop in order: proxy and agent first, then build-index and tracker, the
    /// origin last, so that no service loses the one it calls while draining.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stop = shutdown.child_token();
        let mut front = JoinSet::new();
        let mut middle = JoinSet::new();
        let mut back = JoinSet::new();
        let (t_front, t_middle, t_back) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        front.spawn(self.proxy.run(t_front.clone()));
        front.spawn(self.agent.run(t_front.clone()));
        middle.spawn(self.build_index.run(t_middle.clone()));
        middle.spawn(self.tracker.run(t_middle.clone()));
        back.spawn(self.origin.run(t_back.clone()));
        // Any service ending early (an error) stops the cluster.
        let mut first_error = None;
        tokio::select! {
            () = stop.cancelled() => {}
            Some(r) = front.join_next() => note(&mut first_error, r),
            Some(r) = middle.join_next() => note(&mut first_error, r),
            Some(r) = back.join_next() => note(&mut first_error, r),
        }
        for (token, tier) in [
            (t_front, &mut front),
            (t_middle, &mut middle),
            (t_back, &mut back),
        ] {
            token.cancel();
            while let Some(r) = tier.join_next().await {
                note(&mut first_error, r);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn note(first: &mut Option<anyhow::Error>, r: Result<anyhow::Result<()>, tokio::task::JoinError>) {
    if let Err(e) = r.map_err(anyhow::Error::from).and_then(|r| r) {
        tracing::error!("a dev cluster service failed: {e:#}");
        first.get_or_insert(e);
    }
}
