//! The proxy's configuration file (`shoal-proxy --config proxy.toml`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shoal_cluster::ClusterConfig;
use shoal_runtime::telemetry::LogConfig;

/// Everything a proxy needs. Every field has a default; a proxy also needs at least one origin
/// and a build-index, given here or by flags.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address of the registry API (`/v2/…`) and of `/health`, `/readiness`, `/metrics`.
    /// Default `0.0.0.0:5000`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The origins' ring (`[origins]`: `members = ["10.0.0.1:7100", …]` and/or `dns`,
    /// `replicas`, `health`). Blobs go to the first healthy owner of their digest (which
    /// replicates them to the other owners); reads try owners first and fail over. Default:
    /// none (required).
    pub origins: ClusterConfig,
    /// Build-index base URL such as `http://10.0.0.1:7300`. Default: none (required).
    pub build_index: Option<String>,
    /// Logging.
    pub log: LogConfig,
    /// How long in-flight requests get to finish after a shutdown signal. Default `30s`
    /// (pushes of large layers).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            origins: ClusterConfig::default(),
            build_index: None,
            log: LogConfig::default(),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: ProxyConfig = shoal_runtime::config::parse("").unwrap();
        assert_eq!(c.listen.port(), 5000);
        assert!(c.origins.members.is_empty() && c.build_index.is_none());
        assert!(shoal_runtime::config::parse::<ProxyConfig>("bogus = 1").is_err());
    }

    #[test]
    fn shipped_example_config_parses() {
        let text = include_str!("../../../deploy/config/proxy.toml");
        let c: ProxyConfig = shoal_runtime::config::parse(text).unwrap();
        assert_eq!(c.origins.members, ["127.0.0.1:7100"]);
        assert_eq!(c.origins.replicas, 3);
        assert_eq!(c.build_index.as_deref(), Some("http://127.0.0.1:7400"));
    }
}
