//! `shoal-agent`: parse flags, load config, run [`shoal_agent::Agent`] until signalled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shoal_agent::{Agent, AgentConfig};
use shoal_runtime::{config, shutdown, telemetry};

/// Shoal agent: fetches blobs peer to peer and serves them on a local HTTP API and registry.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML config file; without one, every setting has its documented default.
    #[arg(long, env = "SHOAL_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address of the HTTP API, /health and /metrics (overrides `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Listen address of the peer (QUIC) transport (overrides `transport.listen`).
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Tracker `host:port` or gRPC URL; repeat for several (replaces `trackers.members`).
    #[arg(long = "tracker")]
    trackers: Vec<String>,
    /// Build-index base URL for resolving tags on pulls (overrides `build_index`).
    #[arg(long)]
    build_index: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config: AgentConfig = match config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return shutdown::usage_error(e),
    };
    config.listen = args.listen.unwrap_or(config.listen);
    config.transport.listen = args.peer_listen.unwrap_or(config.transport.listen);
    config.data_dir = args.data_dir.unwrap_or(config.data_dir);
    if !args.trackers.is_empty() {
        let members = shoal_cluster::ClusterConfig::with_members(args.trackers).members;
        config.trackers.members = members;
    }
    config.build_index = args.build_index.or(config.build_index);
    telemetry::init(&config.log);
    shutdown::run_until_signal(config.shutdown_grace, |token| async move {
        Agent::bind(config).await?.run(token).await
    })
}
