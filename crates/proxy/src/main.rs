//! `shoal-proxy`: parse flags, load config, run [`shoal_proxy::Proxy`] until signalled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shoal_proxy::{Proxy, ProxyConfig};
use shoal_runtime::{config, shutdown, telemetry};

/// Shoal proxy: the registry that `docker push` talks to.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML config file; without one, every setting has its documented default.
    #[arg(long, env = "SHOAL_PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address of the registry API (overrides `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Origin `host:port` (or `http://host:port`); repeat for several (replaces
    /// `origins.members`).
    #[arg(long = "origin")]
    origins: Vec<String>,
    /// Build-index base URL (overrides `build_index`).
    #[arg(long)]
    build_index: Option<String>,
}

/// `http://host:port/` → `host:port`.
fn host_port(raw: &str) -> String {
    let s = raw.strip_prefix("http://").unwrap_or(raw);
    s.trim_end_matches('/').to_owned()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config: ProxyConfig = match config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return shutdown::usage_error(e),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if !args.origins.is_empty() {
        config.origins.members = args.origins.iter().map(|o| host_port(o)).collect();
    }
    if args.build_index.is_some() {
        config.build_index = args.build_index;
    }
    telemetry::init(&config.log);
    shutdown::run_until_signal(config.shutdown_grace, |token| async move {
        Proxy::bind(config).await?.run(token).await
    })
}
