//! `shoal dev`: a whole cluster on loopback, for trying Shoal out with a real Docker daemon.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use shoal_dev::{DevAddrs, DevCluster, DevConfig};
use shoal_runtime::telemetry::{self, LogConfig};

/// Flags of `shoal dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Data directory for the origin's blobs, the build-index's tags and the agent's cache.
    #[arg(long, default_value = "shoal-dev")]
    pub data_dir: PathBuf,
    /// Push registry address (`docker push localhost:5000/demo:1`); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub proxy_listen: SocketAddr,
    /// Pull registry address (`docker pull localhost:5001/demo:1`); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:5001")]
    pub agent_listen: SocketAddr,
}

/// Runs the dev cluster until Ctrl-C or SIGTERM. Once every service is bound it writes
/// `<data-dir>/endpoints.json` and prints the addresses, ending with one line
/// `ready proxy=<addr> agent=<addr>` on stdout for scripts.
pub fn run_dev(args: DevArgs) -> ExitCode {
    telemetry::init(&LogConfig::default());
    let grace = std::time::Duration::from_secs(10);
    shoal_runtime::shutdown::run_until_signal(grace, move |token| async move {
        let cluster = DevCluster::bind(DevConfig {
            proxy_listen: args.proxy_listen,
            agent_listen: args.agent_listen,
            ..DevConfig::new(&args.data_dir)
        })
        .await?;
        let a = cluster.addrs();
        let proxy = format!("localhost:{}", a.proxy.port());
        let agent = format!("localhost:{}", a.agent.port());
        let banner = format!(
            "Shoal dev cluster (data in {}):\n  \
             push registry (proxy): {proxy}   docker push {proxy}/demo:1\n  \
             pull registry (agent): {agent}   docker pull {agent}/demo:1\n  \
             origin http://{}  tracker http://{}  build-index http://{}\n\
             ready proxy={} agent={}",
            args.data_dir.display(),
            a.origin,
            a.tracker,
            a.build_index,
            a.proxy,
            a.agent,
        );
        write_endpoints(&args.data_dir, &cluster.addrs())?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{banner}")?;
            out.flush()?;
        }
        cluster.run(token).await
    })
}

/// Writes `<data_dir>/endpoints.json` (`host:port` of every service) atomically, for scripts
/// that wait for the cluster: it appears once every service is bound.
fn write_endpoints(data_dir: &Path, a: &DevAddrs) -> std::io::Result<()> {
    let json = serde_json::json!({
        "proxy": a.proxy.to_string(),
        "agent": a.agent.to_string(),
        "origin": a.origin.to_string(),
        "tracker": a.tracker.to_string(),
        "build_index": a.build_index.to_string(),
    });
    let tmp = data_dir.join(".endpoints.json.tmp");
    std::fs::write(&tmp, format!("{json:#}\n"))?;
    std::fs::rename(&tmp, data_dir.join("endpoints.json"))
}
