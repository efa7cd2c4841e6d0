//! `shoal-tracker`: parse flags, load config, run [`shoal_tracker::Tracker`] until signalled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shoal_runtime::{config, shutdown, telemetry};
use shoal_tracker::{Tracker, TrackerConfig};

/// Shoal tracker: peer discovery and metainfo lookup over gRPC.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML config file; without one, every setting has its documented default.
    #[arg(long, env = "SHOAL_TRACKER_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address for gRPC, /health and /metrics (overrides `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Origin `host:port` or base URL such as http://10.0.0.1:7100; repeat for several
    /// (replaces `origins.members`).
    #[arg(long = "origin")]
    origins: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config: TrackerConfig = match config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return shutdown::usage_error(e),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if !args.origins.is_empty() {
        config.origins = shoal_cluster::ClusterConfig {
            members: shoal_cluster::ClusterConfig::with_members(args.origins).members,
            ..config.origins
        };
    }
    telemetry::init(&config.log);
    shutdown::run_until_signal(config.shutdown_grace, |token| async move {
        Tracker::bind(config).await?.run(token).await
    })
}
