//! The agent's configuration file (`shoal-agent --config agent.toml`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shoal_cluster::ClusterConfig;
use shoal_engine::{EngineConfig, PiecePolicy};
use shoal_runtime::telemetry::LogConfig;
use shoal_transport::TransportConfig;

/// Everything an agent needs. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Address of the local HTTP API, health and metrics. Default `127.0.0.1:7300`: the API is
    /// for the host's own container runtime.
    pub listen: SocketAddr,
    /// Blob cache, partial downloads and the peer id. Default `/var/lib/shoal/agent`.
    pub data_dir: PathBuf,
    /// The trackers' ring: one `host:port` (or `http://host:port`), a list, or a table
    /// (`[trackers]` with `members`, `dns`, `replicas`, `health`). Each torrent announces to
    /// the first healthy tracker of its info hash and fails over to the next. Also accepted
    /// as `tracker`. Default `127.0.0.1:7200`.
    #[serde(alias = "tracker", deserialize_with = "ClusterConfig::list_or_table")]
    pub trackers: ClusterConfig,
    /// The build-index's base URL (`http://host:port`), for resolving tags on pulls. Default:
    /// none, and pulls by tag answer `UNAVAILABLE` (pulls by digest work).
    pub build_index: Option<String>,
    /// How long a tag resolution is cached: a re-pushed tag reaches this agent's pulls within
    /// this time. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub tag_ttl: Duration,
    /// While the build-index cannot be reached (or answers 5xx), a tag resolved within this
    /// long is still served from the cache (stale-if-error), so a build-index outage does not
    /// break pulls of tags this node already knows. `0s` turns it off. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub tag_stale_if_error: Duration,
    /// The IP address peers should dial, sent with announces. Default: none, and the tracker
    /// uses the address the announce came from.
    pub advertise_ip: Option<IpAddr>,
    /// The QUIC peer transport (listen address default `0.0.0.0:7602`, TLS, bandwidth caps).
    pub transport: TransportConfig,
    /// Swarm engine policy.
    pub engine: EngineSection,
    /// Keep seeding a blob for this long after it completes. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub seed_time: Duration,
    /// Bytes of blobs the cache may hold (evicted LRU above 90%, down to 80%). Default 50 GiB.
    pub cache_capacity_bytes: u64,
    /// Logging.
    pub log: LogConfig,
    /// How long in-flight requests get after a shutdown signal. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Upstream registries this agent mirrors (`[[mirrors]]`): a pull that names one of them
    /// with containerd's `?ns=<registry>` (or, for the `default` one, names none) and that
    /// Shoal cannot answer (404 or 503) is streamed from the upstream, digest verified. Only
    /// these hosts are ever contacted. Default: none.
    pub mirrors: Vec<MirrorConfig>,
}

/// One `[[mirrors]]` entry: an allow-listed upstream registry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The registry host as image references and containerd's `?ns=` name it: `docker.io`,
    /// `ghcr.io`, `registry.example.com:5000`. Required.
    pub registry: String,
    /// The base URL pulled from. Default `https://<registry>` (`https://registry-1.docker.io`
    /// for `docker.io`).
    #[serde(default)]
    pub url: Option<String>,
    /// Also serve pulls that carry no `?ns=` from this upstream (Docker's `registry-mirrors`
    /// sends none; it mirrors only Docker Hub). At most one mirror. Default `false`.
    #[serde(default)]
    pub default: bool,
    /// User name for the upstream's token or basic auth. Default: anonymous.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password or access token for `username` (e.g. a mounted Secret),
    /// read at start. Default: none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connect timeout and the longest wait for any single read from the upstream.
    /// Default `30s`.
    #[serde(default = "default_mirror_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_mirror_timeout() -> Duration {
    Duration::from_secs(30)
}

impl MirrorConfig {
    /// The base URL pulled from (`url`, or the registry's own).
    pub fn base_url(&self) -> String {
        match (&self.url, self.registry.as_str()) {
            (Some(url), _) => url.clone(),
            (None, "docker.io") => "https://registry-1.docker.io".to_owned(),
            (None, host) => format!("https://{host}"),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7300)),
            data_dir: PathBuf::from("/var/lib/shoal/agent"),
            trackers: ClusterConfig::with_members(["127.0.0.1:7200"]),
            build_index: None,
            tag_ttl: Duration::from_secs(5),
            tag_stale_if_error: Duration::from_secs(3600),
            advertise_ip: None,
            transport: TransportConfig::default(),
            engine: EngineSection::default(),
            seed_time: Duration::from_secs(600),
            cache_capacity_bytes: 50 << 30,
            log: LogConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            mirrors: Vec::new(),
        }
    }
}

/// The `[engine]` section; see `shoal_engine::EngineConfig` for what each knob does.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    /// Peers per torrent. Default 10.
    pub max_connections: usize,
    /// Of those, most that this agent dials on the swarm's first tracker answer; the rest wait
    /// for peers that dial it, so agents that start together do not fill each other's slots.
    /// Default 5.
    pub max_outbound: usize,
    /// Once the swarm has started (the second tracker answer), this agent also dials past
    /// `max_outbound` until only this many slots are left for peers that dial it. Default 2.
    pub inbound_reserve: usize,
    /// Most outstanding piece requests per agent connection. Unset (default): 2, or 4 for
    /// pieces over 16 MiB (`shoal_engine::EngineConfig::pipeline_depth_for`).
    pub pipeline_depth: Option<usize>,
    /// Outstanding piece requests per origin connection. Default 16.
    pub origin_pipeline_depth: usize,
    /// The depth adapts to each peer's rate: pieces it delivers in this window, plus one.
    /// Default `1s`.
    #[serde(with = "humantime_serde")]
    pub pipeline_window: Duration,
    /// While a client streams a blob, this many missing pieces from its position on are
    /// requested first, in order. Default 1 (more costs the swarm piece diversity; 0: none).
    pub stream_window: u32,
    /// Missing pieces at which endgame starts. Default 8.
    pub endgame_threshold: u32,
    /// `rarest-first` (default) or `random`.
    pub piece_policy: PiecePolicyName,
    /// Shortest piece request timeout. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout_min: Duration,
    /// Connections with no piece traffic for this long close. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a peer that failed a handshake or sent a bad piece is avoided. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub blacklist_duration: Duration,
}

/// Piece policy names in config files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PiecePolicyName {
    /// Rarest first.
    #[default]
    RarestFirst,
    /// Uniformly random.
    Random,
}

impl Default for EngineSection {
    fn default() -> Self {
        let d = EngineConfig::default();
        Self {
            max_connections: d.max_connections,
            max_outbound: d.max_outbound,
            inbound_reserve: d.inbound_reserve,
            pipeline_depth: d.pipeline_depth,
            origin_pipeline_depth: d.origin_pipeline_depth,
            pipeline_window: d.pipeline_window,
            stream_window: d.stream_window,
            endgame_threshold: d.endgame_threshold,
            piece_policy: PiecePolicyName::RarestFirst,
            request_timeout_min: d.request_timeout_min,
            idle_timeout: d.idle_timeout,
            blacklist_duration: d.blacklist_duration,
        }
    }
}

impl EngineSection {
    /// The engine settings these stand for.
    pub fn to_engine(&self, seed: u64) -> EngineConfig {
        EngineConfig {
            max_connections: self.max_connections,
            max_outbound: self.max_outbound,
            inbound_reserve: self.inbound_reserve,
            pipeline_depth: self.pipeline_depth,
            origin_pipeline_depth: self.origin_pipeline_depth,
            pipeline_window: self.pipeline_window,
            stream_window: self.stream_window,
            endgame_threshold: self.endgame_threshold,
            piece_policy: match self.piece_policy {
                PiecePolicyName::RarestFirst => PiecePolicy::RarestFirst,
                PiecePolicyName::Random => PiecePolicy::Random,
            },
            request_timeout_min: self.request_timeout_min,
            idle_timeout: self.idle_timeout,
            blacklist_duration: self.blacklist_duration,
            seed,
            ..EngineConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: AgentConfig = shoal_runtime::config::parse("").unwrap();
        assert_eq!(c.listen.port(), 7300);
        assert_eq!(c.engine.max_connections, 10);
        let c: AgentConfig = shoal_runtime::config::parse(
            "tracker = \"http://t:1\"\nseed_time = \"1m\"\n[engine]\npiece_policy = \"random\"\n[transport.bandwidth]\ningress_bytes_per_sec = 1000\n",
        )
        .unwrap();
        assert_eq!(c.engine.to_engine(1).piece_policy, PiecePolicy::Random);
        assert_eq!(c.transport.bandwidth.ingress_bytes_per_sec, Some(1000));
        assert!(shoal_runtime::config::parse::<AgentConfig>("[engine]\ndepth = 3\n").is_err());
    }

    #[test]
    fn shipped_example_config_parses() {
        let text = include_str!("../../../deploy/config/agent.toml");
        let c: AgentConfig = shoal_runtime::config::parse(text).unwrap();
        assert_eq!(c.engine.pipeline_depth, None);
        assert_eq!(c.engine.origin_pipeline_depth, 16);
        assert_eq!(c.engine.inbound_reserve, 2);
        assert_eq!(c.tag_stale_if_error, Duration::from_secs(3600));
        assert_eq!(c.mirrors[0].registry, "docker.io");
        assert_eq!(c.mirrors[0].base_url(), "https://registry-1.docker.io");
        assert!(c.mirrors[0].default);
        assert_eq!(c.mirrors[1].base_url(), "https://ghcr.io");
        assert_eq!(c.mirrors[1].timeout, Duration::from_secs(30));
    }
}
