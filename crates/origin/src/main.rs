//! `shoal-origin`: parse flags, load config, run [`shoal_origin::Origin`] until signalled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shoal_origin::{Origin, OriginConfig};
use shoal_runtime::{config, shutdown, telemetry};

/// Shoal origin: content-addressed blob storage with durable write-back.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML config file; without one, every setting has its documented default.
    #[arg(long, env = "SHOAL_ORIGIN_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address for the API, /health and /metrics (overrides `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Listen address of the peer (QUIC) transport (overrides `p2p.transport.listen`).
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// This origin's id in its cluster, e.g. `$(POD_IP):7100` (overrides `cluster_id`).
    #[arg(long)]
    cluster_id: Option<String>,
    /// The peer address agents should dial (overrides `p2p.advertise_addr`).
    #[arg(long)]
    advertise_addr: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config: OriginConfig = match config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return shutdown::usage_error(e),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(addr) = args.peer_listen {
        config.p2p.transport.listen = addr;
    }
    config.cluster_id = args.cluster_id.or(config.cluster_id);
    config.p2p.advertise_addr = args.advertise_addr.or(config.p2p.advertise_addr);
    telemetry::init(&config.log);
    shutdown::run_until_signal(config.shutdown_grace, |token| async move {
        Origin::bind(config).await?.run(token).await
    })
}
