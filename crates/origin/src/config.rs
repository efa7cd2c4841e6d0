//! The origin's configuration file (`shoal-origin --config origin.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shoal_backend::RouteConfig;
use shoal_cluster::ClusterConfig;
/// A durable task queue's section: `[writeback]` and `[replication]` (`concurrency`,
/// `initial_backoff`, `max_backoff`).
pub use shoal_runtime::queue::QueueConfig;
use shoal_runtime::telemetry::LogConfig;

/// Everything an origin needs to run. Every field has a default, so an empty file (or no file)
/// is a valid configuration: one origin on `0.0.0.0:7100` with a filesystem backend.
///
/// With a `[cluster]` of origins, each blob's R owners (a hash ring over the members) hold a
/// copy: uploads are replicated to the other owners (`[replication]`) and membership changes
/// are repaired by copying blobs between origins (`[repair]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// Address of the HTTP API, health and metrics. Default `0.0.0.0:7100`; port 0 picks a
    /// free port.
    pub listen: SocketAddr,
    /// Where the origin keeps its blob cache, uploads in progress and write-back queue.
    /// Default `/var/lib/shoal/origin`.
    pub data_dir: PathBuf,
    /// Largest piece length of the metainfo generated for blobs, in bytes. Default 4 MiB.
    /// Each blob gets the largest power of two that still cuts it into at least 512 pieces,
    /// within `min_piece_length..=piece_length` (`shoal_core::piece_length_for`): a 128 MiB
    /// layer gets 256 KiB pieces, a 1.5 GB one 2 MiB, 2 GiB and up 4 MiB. Every origin of a
    /// cluster must use the same two values (the piece length is part of the info hash).
    pub piece_length: u32,
    /// Smallest piece length, in bytes. Default 256 KiB. Equal to `piece_length` for one
    /// fixed length, e.g. while upgrading a cluster whose origins generated 4 MiB metainfo
    /// before the size rule existed (metainfo already stored is kept, so replicas must agree).
    pub min_piece_length: u32,
    /// The local blob cache.
    pub store: StoreSection,
    /// Namespace → backend routes, first match wins. Default (empty list): every namespace
    /// goes to a filesystem backend under `<data_dir>/backend`.
    pub backends: Vec<RouteConfig>,
    /// This origin's id in the cluster: its `host:port` exactly as in the members list (or as
    /// DNS yields it, `ip:port`). Default: the listen address, once bound, unless its IP is
    /// unspecified (`0.0.0.0`), in which case it must be set whenever a cluster is configured.
    pub cluster_id: Option<String>,
    /// The ring of origins this one belongs to (`members`, `dns`, `replicas`, `health`; see
    /// `shoal_cluster::ClusterConfig`). Absent, or without members and DNS: a single origin,
    /// no replication and no repair.
    pub cluster: Option<ClusterConfig>,
    /// Write-back of committed uploads to the backends.
    pub writeback: QueueConfig,
    /// Replication of uploads to the blob's other owners (with a cluster).
    pub replication: QueueConfig,
    /// Anti-entropy between origins after membership changes (with a cluster).
    pub repair: RepairConfig,
    /// Uploads in progress.
    pub uploads: UploadsConfig,
    /// Seeding blobs to agents over the peer protocol.
    pub p2p: P2pConfig,
    /// Logging.
    pub log: LogConfig,
    /// How long in-flight requests get to finish after a shutdown signal. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7100)),
            data_dir: PathBuf::from("/var/lib/shoal/origin"),
            piece_length: shoal_core::DEFAULT_PIECE_LENGTH,
            min_piece_length: shoal_core::DEFAULT_MIN_PIECE_LENGTH,
            store: StoreSection::default(),
            backends: Vec::new(),
            cluster_id: None,
            cluster: None,
            writeback: QueueConfig::default(),
            replication: QueueConfig::default(),
            repair: RepairConfig::default(),
            uploads: UploadsConfig::default(),
            p2p: P2pConfig::default(),
            log: LogConfig::default(),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The `[store]` section: capacity of the local blob cache.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Bytes of blobs the cache may hold. Default 100 GiB.
    pub capacity_bytes: u64,
    /// Eviction starts above this fraction of capacity. Default 0.9.
    pub high_watermark: f64,
    /// Eviction stops at this fraction of capacity. Default 0.8.
    pub low_watermark: f64,
}

impl Default for StoreSection {
    fn default() -> Self {
        let d = shoal_store::StoreConfig::default();
        Self {
            capacity_bytes: d.capacity_bytes,
            high_watermark: d.high_watermark,
            low_watermark: d.low_watermark,
        }
    }
}

impl From<StoreSection> for shoal_store::StoreConfig {
    fn from(s: StoreSection) -> Self {
        Self {
            capacity_bytes: s.capacity_bytes,
            high_watermark: s.high_watermark,
            low_watermark: s.low_watermark,
        }
    }
}

impl OriginConfig {
    /// The cluster section if it configures a cluster (members or DNS), else `None`.
    pub fn cluster(&self) -> Option<&ClusterConfig> {
        self.cluster
            .as_ref()
            .filter(|c| !c.members.is_empty() || c.dns.is_some())
    }
}

/// The `[repair]` section: how an origin of a cluster converges on holding exactly the blobs
/// it owns. A pass copies the blobs this origin owns but lacks from sibling origins (falling
/// back to the backend) and drops blobs it no longer owns once their owners hold them.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepairConfig {
    /// A full pass runs this often, besides after every membership change. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// After a membership change, wait this long for further changes before a pass, so a burst
    /// of changes causes one pass. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// Blobs copied (or owners checked) concurrently. Default 4.
    pub concurrency: usize,
    /// Bytes per second copied by repair, all copies together; 0 = unlimited. Default
    /// 100 MiB/s.
    pub bandwidth_bytes_per_sec: u64,
    /// A blob this origin no longer owns is dropped from its cache (never from the backend)
    /// only after it has been a non-owner this long, continuously, and every owner holds it.
    /// Keep it above `interval` so owners get a pass while this copy still exists.
    /// Default `10m`.
    #[serde(with = "humantime_serde")]
    pub drop_grace: Duration,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            debounce: Duration::from_secs(2),
            concurrency: 4,
            bandwidth_bytes_per_sec: 100 << 20,
            drop_grace: Duration::from_secs(600),
        }
    }
}

/// The `[p2p]` section: the origin seeds its blobs through the same swarm engine as agents
/// (always complete, never dialling out).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pConfig {
    /// Seed over the peer protocol. Default true.
    pub enabled: bool,
    /// The QUIC peer transport (listen address default `0.0.0.0:7601`, TLS, bandwidth caps).
    pub transport: shoal_transport::TransportConfig,
    /// The address agents should dial, sent to trackers with every metainfo
    /// (`Shoal-Peer-Addr`). Default: the transport's bound address when it is a specific IP;
    /// with an unspecified listen IP (`0.0.0.0`) and no `advertise_addr`, trackers do not hand
    /// this origin out.
    pub advertise_addr: Option<SocketAddr>,
    /// A seeding torrent with no peer for this long is dropped. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub seed_idle: Duration,
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            transport: shoal_transport::TransportConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], 7601)),
                ..shoal_transport::TransportConfig::default()
            },
            advertise_addr: None,
            seed_idle: Duration::from_secs(300),
        }
    }
}

/// The `[uploads]` section.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    /// An upload with no request for this long is abandoned and its data deleted. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults_and_unknown_keys_fail() {
        let c: OriginConfig = shoal_runtime::config::parse("").unwrap();
        assert_eq!(c.listen.port(), 7100);
        assert!(c.cluster().is_none());
        assert_eq!(c.repair.interval, Duration::from_secs(300));
        assert_eq!(c.repair.bandwidth_bytes_per_sec, 100 << 20);
        let c: OriginConfig = shoal_runtime::config::parse("[cluster]\nreplicas = 2\n").unwrap();
        assert!(
            c.cluster().is_none(),
            "a cluster without members is a single origin"
        );
        assert_eq!(c.piece_length, 4 << 20);
        assert!(c.backends.is_empty());
        let err = shoal_runtime::config::parse::<OriginConfig>("[store]\ncapacity = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("capacity"), "{err}");
    }

    #[test]
    fn shipped_example_config_parses_and_builds() {
        let text = include_str!("../../../deploy/config/origin.toml");
        let c: OriginConfig = shoal_runtime::config::parse(text).unwrap();
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.store.capacity_bytes, 100 << 30);
        shoal_backend::BackendRouter::from_config(&c.backends).unwrap();
    }

    #[test]
    fn full_example_parses() {
        let c: OriginConfig = shoal_runtime::config::parse(
            r#"
listen = "127.0.0.1:0"
data_dir = "/tmp/x"
piece_length = 1048576
shutdown_grace = "5s"
cluster_id = "origin-0.origin:7100"
[cluster]
members = ["origin-0.origin:7100", "origin-1.origin:7100"]
replicas = 2
health = { interval = "1s" }
[replication]
concurrency = 8
[repair]
interval = "1m"
debounce = "500ms"
concurrency = 2
bandwidth_bytes_per_sec = 0
drop_grace = "2m"
[store]
capacity_bytes = 1000
high_watermark = 0.95
low_watermark = 0.7
[writeback]
concurrency = 2
initial_backoff = "100ms"
max_backoff = "10s"
[uploads]
idle_timeout = "10m"
[log]
format = "json"
filter = "debug"
[[backends]]
namespace = "library/.*"
kind = "filesystem"
root = "/tmp/backend"
"#,
        )
        .unwrap();
        assert_eq!(c.writeback.initial_backoff, Duration::from_millis(100));
        assert_eq!(c.cluster().unwrap().replicas, 2);
        assert_eq!(c.cluster_id.as_deref(), Some("origin-0.origin:7100"));
        assert_eq!(c.replication.concurrency, 8);
        assert_eq!(c.repair.drop_grace, Duration::from_secs(120));
        assert_eq!(c.repair.bandwidth_bytes_per_sec, 0);
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.store.capacity_bytes, 1000);
    }
}
