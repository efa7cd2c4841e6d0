//! `shoal-build-index`: parse flags, load config, run [`shoal_build_index::BuildIndex`] until
//! signalled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shoal_build_index::{BuildIndex, BuildIndexConfig};
use shoal_runtime::{config, shutdown, telemetry};

/// Shoal build-index: tag → digest over pluggable storage, replicated between zones.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML config file; without one, every setting has its documented default.
    #[arg(long, env = "SHOAL_BUILD_INDEX_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address for the API, /health and /metrics (overrides `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This zone's origin base URL, such as http://127.0.0.1:7100 (overrides `origin`).
    #[arg(long)]
    origin: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config: BuildIndexConfig = match config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return shutdown::usage_error(e),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(origin) = args.origin {
        config.origins.members = shoal_cluster::ClusterConfig::with_members([origin]).members;
    }
    telemetry::init(&config.log);
    shutdown::run_until_signal(config.shutdown_grace, |token| async move {
        BuildIndex::bind(config).await?.run(token).await
    })
}
