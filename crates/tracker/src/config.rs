//! The tracker's configuration file (`shoal-tracker --config tracker.toml`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shoal_cluster::ClusterConfig;
use shoal_runtime::telemetry::LogConfig;

/// Everything a tracker needs to run. Every field has a default, so an empty file (or no file)
/// is a valid configuration: a tracker on `0.0.0.0:7200` with no origins (announces work,
/// metainfo lookups answer UNAVAILABLE until origins are configured).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// Address of the gRPC API and of `/health`, `/readiness` and `/metrics` (one port, HTTP/1
    /// and HTTP/2). Default `0.0.0.0:7200`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The origins' ring: a list of members (`"10.0.0.1:7100"`, base URLs work too) or a
    /// table (`[origins]` with `members`, `dns`, `replicas`, `health`). Metainfo lookups try
    /// the blob's owners first (healthy ones first) and fail over to the next origin on an
    /// error or a 404. Default: none.
    #[serde(deserialize_with = "ClusterConfig::list_or_table")]
    pub origins: ClusterConfig,
    /// How often peers are asked to announce. Default `3s`.
    #[serde(with = "humantime_serde")]
    pub announce_interval: Duration,
    /// A peer that has not announced for this long is forgotten. Default: three announce
    /// intervals (`9s` with the default interval).
    #[serde(with = "humantime_serde::option")]
    pub peer_ttl: Option<Duration>,
    /// Most peers returned by one announce. Default 50.
    pub max_peers: usize,
    /// Encoded metainfos kept in memory (least recently used are dropped). Default 10 000.
    pub metainfo_cache_size: usize,
    /// Timeout of one metainfo request to one origin, connection included. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub origin_timeout: Duration,
    /// Logging.
    pub log: LogConfig,
    /// How long in-flight requests get to finish after a shutdown signal. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7200)),
            origins: ClusterConfig::default(),
            announce_interval: Duration::from_secs(3),
            peer_ttl: None,
            max_peers: 50,
            metainfo_cache_size: 10_000,
            origin_timeout: Duration::from_secs(10),
            log: LogConfig::default(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl TrackerConfig {
    /// The effective peer TTL: `peer_ttl`, or three announce intervals when unset.
    pub fn effective_peer_ttl(&self) -> Duration {
        self.peer_ttl.unwrap_or(self.announce_interval * 3)
    }

    /// Checks the settings that have no meaningful value at zero, and the origins' ring.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.announce_interval.is_zero() {
            return Err("announce_interval must be positive".into());
        }
        if self.effective_peer_ttl() < self.announce_interval {
            return Err("peer_ttl must be at least announce_interval".into());
        }
        if self.metainfo_cache_size == 0 {
            return Err("metainfo_cache_size must be at least 1".into());
        }
        if self.origins.is_configured() {
            self.origins
                .validate()
                .map_err(|e| format!("origins: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults_and_unknown_keys_fail() {
        let c: TrackerConfig = shoal_runtime::config::parse("").unwrap();
        assert_eq!(c.listen.port(), 7200);
        assert_eq!(c.announce_interval, Duration::from_secs(3));
        assert_eq!(c.effective_peer_ttl(), Duration::from_secs(9));
        assert_eq!(c.max_peers, 50);
        assert_eq!(c.metainfo_cache_size, 10_000);
        assert!(!c.origins.is_configured());
        c.validate().unwrap();
        let err = shoal_runtime::config::parse::<TrackerConfig>("max_peer = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_peer"), "{err}");
    }

    #[test]
    fn shipped_example_config_parses() {
        let text = include_str!("../../../deploy/config/tracker.toml");
        let c: TrackerConfig = shoal_runtime::config::parse(text).unwrap();
        assert_eq!(c.origins.members.len(), 2);
        assert_eq!(c.effective_peer_ttl(), Duration::from_secs(9));
        c.validate().unwrap();
    }

    #[test]
    fn full_example_parses() {
        let c: TrackerConfig = shoal_runtime::config::parse(
            r#"
listen = "127.0.0.1:0"
origins = ["http://10.0.0.1:7100", "http://10.0.0.2:7100"]
announce_interval = "1s"
peer_ttl = "5s"
max_peers = 10
metainfo_cache_size = 100
origin_timeout = "2s"
shutdown_grace = "3s"
[log]
format = "json"
filter = "debug"
"#,
        )
        .unwrap();
        assert_eq!(c.origins.members.len(), 2);
        assert_eq!(c.effective_peer_ttl(), Duration::from_secs(5));
        assert_eq!(c.origin_timeout, Duration::from_secs(2));
        c.validate().unwrap();
    }

    #[test]
    fn validation_rejects_nonsense() {
        let bad = [
            TrackerConfig {
                announce_interval: Duration::ZERO,
                ..TrackerConfig::default()
            },
            TrackerConfig {
                peer_ttl: Some(Duration::from_millis(1)),
                ..TrackerConfig::default()
            },
            TrackerConfig {
                metainfo_cache_size: 0,
                ..TrackerConfig::default()
            },
            TrackerConfig {
                origins: ClusterConfig::with_members(["https://10.0.0.1:7100"]),
                ..TrackerConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
