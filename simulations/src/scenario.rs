//! Scenario files: what to simulate (TOML, unknown keys rejected), plus `--set key=value`
//! overrides for sweeps.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use shoal_engine::{EngineConfig, PiecePolicy};

use crate::units::{Bytes, Rate};

/// A scenario that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("parsing the scenario: {0}")]
    Parse(String),
    /// A `--set` override is malformed.
    #[error("override {0:?}: expected key.path=value")]
    Override(String),
    /// The values do not make a runnable scenario.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// One simulation run's setup. See `simulations/README.md` for every key and its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name, used for output file names.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed for every random choice (placement, joins, churn, engines, tracker). Default 1.
    #[serde(default = "one")]
    pub seed: u64,
    /// Simulated time after which the run stops, finished or not. Default 1 h.
    #[serde(default = "hour", with = "humantime_serde")]
    pub time_limit: Duration,
    /// Piece length of every blob: `"auto"` (default) picks it by blob size as the origin
    /// does (`shoal_core::piece_length_for`, 256 KiB to 4 MiB), or a fixed size.
    #[serde(default)]
    pub piece_length: PieceLength,
    /// The agents.
    pub hosts: Hosts,
    /// The origins.
    pub origins: Origins,
    /// The blobs every agent downloads, all at once (e.g. the layers of one image).
    pub blobs: Vec<BlobSpec>,
    /// When agents start.
    #[serde(default)]
    pub join: Join,
    /// Agents that fail mid-run.
    #[serde(default)]
    pub churn: Churn,
    /// Racks, zones and latencies.
    #[serde(default)]
    pub topology: Topology,
    /// Engine settings (the real agent's `[engine]` section; unset keys keep its defaults).
    #[serde(default)]
    pub engine: EngineSettings,
    /// Tracker settings.
    #[serde(default)]
    pub tracker: TrackerSettings,
}

fn one() -> u64 {
    1
}
fn hour() -> Duration {
    Duration::from_secs(3600)
}
/// How blobs are cut into pieces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PieceLength {
    /// By blob size, as the origin does by default.
    #[default]
    Auto,
    /// One fixed length.
    Fixed(Bytes),
}

impl<'de> Deserialize<'de> for PieceLength {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self::Fixed(Bytes(n))),
            Raw::Text(t) if t == "auto" => Ok(Self::Auto),
            Raw::Text(t) => t.parse().map(Self::Fixed).map_err(serde::de::Error::custom),
        }
    }
}

impl PieceLength {
    /// The piece length of a blob of `size` bytes.
    pub fn for_blob(self, size: u64) -> u32 {
        match self {
            Self::Auto => shoal_core::piece_length_for(
                size,
                shoal_core::DEFAULT_MIN_PIECE_LENGTH,
                shoal_core::DEFAULT_PIECE_LENGTH,
            ),
            Self::Fixed(b) => u32::try_from(b.0).unwrap_or(u32::MAX),
        }
    }
}

/// The agents and their link caps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hosts {
    /// Number of agents.
    pub count: usize,
    /// Upload cap of each agent.
    pub upload: Rate,
    /// Download cap of each agent.
    pub download: Rate,
    /// Hosts with other caps, each a fraction of `count` (chosen at random).
    #[serde(default)]
    pub classes: Vec<HostClass>,
    /// Every agent has a client reading each blob in order as it downloads (a `docker pull`,
    /// or the swarm benchmark's readers), which tells its engine where it waits
    /// (`handle_stream_position`). Default false. The reader is taken to be instant, so a host
    /// still finishes with its last piece.
    #[serde(default)]
    pub streaming: bool,
}

/// A share of the agents with different caps (e.g. older NICs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostClass {
    /// Share of the agents, 0–1.
    pub fraction: f64,
    /// Their upload cap.
    pub upload: Rate,
    /// Their download cap.
    pub download: Rate,
}

/// The origins: dedicated seeders on a ring.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origins {
    /// Number of origins.
    pub count: usize,
    /// Upload cap of each origin.
    pub upload: Rate,
    /// Origins that hold each blob (ring replicas). Default 3.
    #[serde(default = "three")]
    pub replicas: usize,
}

fn three() -> usize {
    3
}

/// Blobs of one size.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSpec {
    /// Size of each.
    pub size: Bytes,
    /// How many. Default 1.
    #[serde(default = "one_u32")]
    pub count: u32,
}

fn one_u32() -> u32 {
    1
}

/// When agents start their downloads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// Start times spread uniformly over this window. Default 0: all at once.
    #[serde(default, with = "humantime_serde")]
    pub spread: Duration,
    /// A share of the agents (0–1) that joins late instead.
    #[serde(default)]
    pub late_fraction: f64,
    /// When the late joiners start. Default 0.
    #[serde(default, with = "humantime_serde")]
    pub late_at: Duration,
}

/// Agents that fail: they stop answering without closing connections (a crashed host).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Share of the agents (0–1) that fail. Default 0.
    #[serde(default)]
    pub fraction: f64,
    /// Failures happen uniformly between `from` and `until`.
    #[serde(default, with = "humantime_serde")]
    pub from: Duration,
    /// See `from`.
    #[serde(default, with = "humantime_serde")]
    pub until: Duration,
    /// How long until peers see the connection to a failed host close (QUIC idle timeout).
    /// Default 30 s, the transport's default.
    #[serde(default = "thirty_s", with = "humantime_serde")]
    pub detect_after: Duration,
}

fn thirty_s() -> Duration {
    Duration::from_secs(30)
}

/// Where hosts sit and how far apart they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Zones (hosts are spread round-robin). Default 1.
    #[serde(default = "one_usize")]
    pub zones: usize,
    /// Racks per zone. Default 1.
    #[serde(default = "one_usize")]
    pub racks_per_zone: usize,
    /// One-way latency within a rack. Default 100 µs.
    #[serde(default = "rack_latency", with = "humantime_serde")]
    pub rack_latency: Duration,
    /// One-way latency between racks of a zone. Default 250 µs.
    #[serde(default = "zone_latency", with = "humantime_serde")]
    pub zone_latency: Duration,
    /// One-way latency between zones. Default 5 ms.
    #[serde(default = "cross_zone_latency", with = "humantime_serde")]
    pub cross_zone_latency: Duration,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            zones: 1,
            racks_per_zone: 1,
            rack_latency: rack_latency(),
            zone_latency: zone_latency(),
            cross_zone_latency: cross_zone_latency(),
        }
    }
}

fn one_usize() -> usize {
    1
}
fn rack_latency() -> Duration {
    Duration::from_micros(100)
}
fn zone_latency() -> Duration {
    Duration::from_micros(250)
}
fn cross_zone_latency() -> Duration {
    Duration::from_millis(5)
}

/// Overrides of the engine's settings; unset keys keep [`EngineConfig::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// `max_connections`.
    pub max_connections: Option<usize>,
    /// `max_outbound`.
    pub max_outbound: Option<usize>,
    /// `inbound_reserve`.
    pub inbound_reserve: Option<usize>,
    /// `pipeline_depth`.
    pub pipeline_depth: Option<usize>,
    /// `origin_pipeline_depth`.
    pub origin_pipeline_depth: Option<usize>,
    /// `pipeline_window`.
    #[serde(default, with = "humantime_serde::option")]
    pub pipeline_window: Option<Duration>,
    /// `stream_window` (only matters with `hosts.streaming`).
    pub stream_window: Option<u32>,
    /// `endgame_threshold`.
    pub endgame_threshold: Option<u32>,
    /// `piece_policy`: `"rarest-first"` or `"random"`.
    pub piece_policy: Option<Policy>,
    /// `request_timeout_min`.
    #[serde(default, with = "humantime_serde::option")]
    pub request_timeout_min: Option<Duration>,
    /// `refusal_backoff`.
    #[serde(default, with = "humantime_serde::option")]
    pub refusal_backoff: Option<Duration>,
    /// `max_timeouts`.
    pub max_timeouts: Option<u32>,
    /// `busy_retry`.
    #[serde(default, with = "humantime_serde::option")]
    pub busy_retry: Option<Duration>,
    /// Uploads a host lets wait beyond the one being sent; more are refused
    /// (`shoal_engine::seeding::admit_upload`). Default 4.
    pub upload_queue: Option<usize>,
    /// Requests of one peer a host takes on at a time; the rest wait in order
    /// (`shoal_engine::seeding::SERVE_PER_PEER`). Default 2.
    pub serve_per_peer: Option<usize>,
    /// The origin's refusal window (`shoal_engine::seeding`). Default 2 s.
    #[serde(default, with = "humantime_serde::option")]
    pub origin_refusal_window: Option<Duration>,
}

/// A piece policy by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Rarest first.
    RarestFirst,
    /// Random.
    Random,
}

impl EngineSettings {
    /// The engine config these settings give, with `seed`.
    pub fn config(&self, seed: u64) -> EngineConfig {
        let d = EngineConfig::default();
        EngineConfig {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_outbound: self.max_outbound.unwrap_or(d.max_outbound),
            inbound_reserve: self.inbound_reserve.unwrap_or(d.inbound_reserve),
            pipeline_depth: self.pipeline_depth.or(d.pipeline_depth),
            origin_pipeline_depth: self
                .origin_pipeline_depth
                .unwrap_or(d.origin_pipeline_depth),
            pipeline_window: self.pipeline_window.unwrap_or(d.pipeline_window),
            stream_window: self.stream_window.unwrap_or(d.stream_window),
            endgame_threshold: self.endgame_threshold.unwrap_or(d.endgame_threshold),
            piece_policy: match self.piece_policy {
                Some(Policy::Random) => PiecePolicy::Random,
                Some(Policy::RarestFirst) => PiecePolicy::RarestFirst,
                None => d.piece_policy,
            },
            request_timeout_min: self.request_timeout_min.unwrap_or(d.request_timeout_min),
            refusal_backoff: self.refusal_backoff.unwrap_or(d.refusal_backoff),
            max_timeouts: self.max_timeouts.unwrap_or(d.max_timeouts),
            busy_retry: self.busy_retry.unwrap_or(d.busy_retry),
            seed,
            ..d
        }
    }
}

/// The tracker's settings (the real tracker's defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerSettings {
    /// How often agents announce. Default 3 s.
    #[serde(default = "three_s", with = "humantime_serde")]
    pub announce_interval: Duration,
    /// Most peers per answer. Default 50.
    #[serde(default = "fifty")]
    pub max_peers: usize,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self {
            announce_interval: three_s(),
            max_peers: fifty(),
        }
    }
}

fn three_s() -> Duration {
    Duration::from_secs(3)
}
fn fifty() -> usize {
    50
}

impl Scenario {
    /// Reads a scenario file, applying `overrides` (`key.path=value`, value in TOML syntax or
    /// a bare string) before it is checked.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, overrides)
    }

    /// Parses a scenario from TOML text, applying `overrides`.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self, ScenarioError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let scenario: Self = table
            .try_into()
            .map_err(|e: toml::de::Error| ScenarioError::Parse(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(m.to_owned()));
        if self.hosts.count == 0 {
            return bad("hosts.count must be at least 1");
        }
        if self.origins.count == 0 || self.origins.replicas == 0 {
            return bad("origins.count and origins.replicas must be at least 1");
        }
        if self.blobs.is_empty() || self.blobs.iter().any(|b| b.size.0 == 0 || b.count == 0) {
            return bad("at least one blob, each with a size and count above 0");
        }
        if let PieceLength::Fixed(Bytes(piece)) = self.piece_length
            && (piece == 0 || piece > 256 << 20)
        {
            return bad("piece_length must be \"auto\" or 1 B ..= 256 MiB");
        }
        if self.engine.upload_queue == Some(0) {
            return bad("engine.upload_queue must be at least 1");
        }
        let shares = self.hosts.classes.iter().map(|c| c.fraction).sum::<f64>();
        let fractions = [self.join.late_fraction, self.churn.fraction, shares];
        if fractions.iter().any(|f| !(0.0..=1.0).contains(f)) {
            return bad("fractions must be within 0..=1 (host classes together too)");
        }
        if self.churn.until < self.churn.from {
            return bad("churn.until must not be before churn.from");
        }
        if self.topology.zones == 0 || self.topology.racks_per_zone == 0 {
            return bad("topology.zones and topology.racks_per_zone must be at least 1");
        }
        if self.tracker.announce_interval.is_zero() || self.tracker.max_peers == 0 {
            return bad("tracker.announce_interval and tracker.max_peers must be positive");
        }
        Ok(())
    }
}

/// Sets `a.b.c = value` in `table`; the value is parsed as TOML (`8`, `"random"`, `1.5`)
/// and taken as a plain string when it does not parse (`16MiB`, `2s`).
fn apply_override(table: &mut toml::Table, o: &str) -> Result<(), ScenarioError> {
    let (path, raw) = o
        .split_once('=')
        .ok_or_else(|| ScenarioError::Override(o.to_owned()))?;
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_owned()));
    let keys: Vec<&str> = path.trim().split('.').collect();
    let (last, parents) = keys
        .split_last()
        .ok_or_else(|| ScenarioError::Override(o.to_owned()))?;
    let mut at = table;
    for k in parents {
        at = at
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| ScenarioError::Override(o.to_owned()))?;
    }
    at.insert((*last).to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
name = "small"
[hosts]
count = 10
upload = "100MB/s"
download = "100MB/s"
[origins]
count = 1
upload = "100MB/s"
[[blobs]]
size = "64MiB"
"#;

    #[test]
    fn defaults_and_overrides() {
        let s = Scenario::parse(SMALL, &[]).unwrap();
        assert_eq!(s.piece_length, PieceLength::Auto);
        assert_eq!(s.piece_length.for_blob(64 << 20), 256 << 10);
        assert_eq!(s.origins.replicas, 3);
        assert_eq!(s.tracker.max_peers, 50);
        assert_eq!(
            s.engine.config(7),
            EngineConfig {
                seed: 7,
                ..EngineConfig::default()
            }
        );
        let s = Scenario::parse(
            SMALL,
            &[
                "engine.pipeline_depth=8".into(),
                "piece_length=16MiB".into(),
                "engine.piece_policy=random".into(),
                "join.spread=5s".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.engine.config(0).pipeline_depth, Some(8));
        assert_eq!(s.engine.config(0).piece_policy, PiecePolicy::Random);
        assert_eq!(s.piece_length.for_blob(64 << 20), 16 << 20);
        assert_eq!(s.join.spread, Duration::from_secs(5));
    }

    #[test]
    fn bad_scenarios_are_rejected() {
        for o in [
            "hosts.count=0",
            "hosts.bandwidth=1",
            "churn.fraction=1.5",
            "piece_length=1GiB",
            "engine.piece_policy=sequential",
            "engine.upload_queue=0",
            "piece_length=big",
        ] {
            assert!(Scenario::parse(SMALL, &[o.into()]).is_err(), "{o}");
        }
        assert!(Scenario::parse(SMALL, &["no-equals".into()]).is_err());
    }
}
