//! The build-index's configuration file (`shoal-build-index --config build-index.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shoal_backend::BackendConfig;
use shoal_cluster::ClusterConfig;
use shoal_runtime::telemetry::LogConfig;

/// Everything a build-index needs to run. Every field has a default, so an empty file (or no
/// file) is a valid configuration: a build-index on `0.0.0.0:7400` storing its records on the
/// local filesystem, replicating nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildIndexConfig {
    /// Address of the HTTP API, health and metrics. Default `0.0.0.0:7400`; port 0 picks a
    /// free port.
    pub listen: SocketAddr,
    /// Where the build-index keeps its replication queue (and, by default, its records).
    /// Default `/var/lib/shoal/build-index`.
    pub data_dir: PathBuf,
    /// This zone's origins' ring: one `host:port` (or base URL), a list, or a table
    /// (`[origins]` with `members`, `dns`, `replicas`, `health`); also accepted as `origin`.
    /// Replication reads the manifests and blobs of a tag from it (owners first, failing
    /// over); required when `replication` rules exist. Default: none.
    #[serde(alias = "origin", deserialize_with = "ClusterConfig::list_or_table")]
    pub origins: ClusterConfig,
    /// Where tag and manifest records are stored (any writable backend `kind`: `filesystem`,
    /// `s3`, `gcs`, `azure`). Default: a filesystem backend under `<data_dir>/backend`.
    pub backend: Option<BackendConfig>,
    /// Replication rules: tags of repositories matching a rule are copied, with the manifests
    /// and blobs they need, to the rule's remote zone. Every matching rule gets its own copy.
    /// Default: none.
    pub replication: Vec<ReplicationRule>,
    /// How the replication queue delivers.
    pub replication_queue: QueueConfig,
    /// Logging.
    pub log: LogConfig,
    /// How long in-flight requests get to finish after a shutdown signal. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for BuildIndexConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7400)),
            data_dir: PathBuf::from("/var/lib/shoal/build-index"),
            origins: ClusterConfig::default(),
            backend: None,
            replication: Vec::new(),
            replication_queue: QueueConfig::default(),
            log: LogConfig::default(),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// One `[[replication]]` rule: where tags of matching repositories are copied.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationRule {
    /// Regular expression over the repository name, implicitly anchored (`^(?:…)$`), so
    /// `demo/.*` matches `demo/app` but not `x/demo/app`. Required.
    pub repository: String,
    /// Base URL of the remote zone's build-index. Required.
    pub build_index: String,
    /// Base URLs of the remote zone's origins. A blob counts as present if any of them has
    /// it; missing blobs are uploaded to the first one that accepts them. Required, non-empty.
    pub origins: Vec<String>,
}

/// The `[replication_queue]` section.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Tags delivered concurrently. Default 4.
    pub concurrency: usize,
    /// Blobs copied concurrently within one tag's delivery. Default 4.
    pub blob_concurrency: usize,
    /// Delay before the first retry of a failed delivery; doubles per failure, with ±20%
    /// jitter. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay between retries. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            blob_concurrency: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl QueueConfig {
    /// The settings of the queue itself (all but `blob_concurrency`).
    pub fn queue(&self) -> shoal_runtime::queue::QueueConfig {
        shoal_runtime::queue::QueueConfig {
            concurrency: self.concurrency,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
        }
    }
}

impl BuildIndexConfig {
    /// Checks what has no meaningful value: zero concurrency, rules without origins, a
    /// read-only backend, and rules without a local origin.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.replication_queue.concurrency == 0 || self.replication_queue.blob_concurrency == 0 {
            return Err("replication_queue concurrencies must be at least 1".into());
        }
        if self.replication_queue.initial_backoff.is_zero() {
            return Err("replication_queue.initial_backoff must be positive".into());
        }
        if let Some(b) = &self.backend
            && matches!(b, BackendConfig::Http(_) | BackendConfig::Registry(_))
        {
            return Err(format!("backend kind {:?} is read-only", b.kind()));
        }
        if !self.replication.is_empty() && !self.origins.is_configured() {
            return Err("replication rules need `origin` (this zone's origin URL)".into());
        }
        for (i, rule) in self.replication.iter().enumerate() {
            if rule.origins.is_empty() {
                return Err(format!("replication rule {i}: `origins` is empty"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn empty_file_is_all_defaults_and_unknown_keys_fail() {
        let c: BuildIndexConfig = shoal_runtime::config::parse("").unwrap();
        assert_eq!(c.listen.port(), 7400);
        assert!(c.replication.is_empty() && c.backend.is_none() && !c.origins.is_configured());
        assert_eq!(c.replication_queue.initial_backoff, Duration::from_secs(1));
        assert_eq!(c.replication_queue.max_backoff, Duration::from_secs(300));
        c.validate().unwrap();
        let err = shoal_runtime::config::parse::<BuildIndexConfig>(
            "[[replication]]\nrepository = \"a\"\nbuild_index = \"http://x\"\norigins = []\nzone = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("zone"), "{err}");
    }

    #[test]
    fn shipped_example_config_parses_and_validates() {
        let text = include_str!("../../../deploy/config/build-index.toml");
        let c: BuildIndexConfig = shoal_runtime::config::parse(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.replication.len(), 2);
        assert!(matches!(c.backend, Some(BackendConfig::Filesystem(_))));
    }

    #[test]
    fn validation_catches_inconsistent_settings() {
        let parse = |t: &str| shoal_runtime::config::parse::<BuildIndexConfig>(t).unwrap();
        let rule = "[[replication]]\nrepository = \"a\"\nbuild_index = \"http://b\"\n";
        assert!(
            parse(&format!("{rule}origins = [\"http://o\"]\n"))
                .validate()
                .unwrap_err()
                .contains("origin")
        );
        assert!(
            parse(&format!("origin = \"http://o\"\n{rule}origins = []\n"))
                .validate()
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            parse("[replication_queue]\nconcurrency = 0\n")
                .validate()
                .is_err()
        );
        assert!(
            parse("[backend]\nkind = \"http\"\nurl = \"http://x/\"\n")
                .validate()
                .unwrap_err()
                .contains("read-only")
        );
    }
}
