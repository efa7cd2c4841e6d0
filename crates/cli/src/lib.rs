//! `shoal`, the user's command line for a Shoal cluster.
//!
//! * `shoal push --origin URL --namespace NS FILE` uploads a file to an origin with the chunked
//!   upload API (16 MiB chunks by default), hashing it on the way, and prints its digest.
//! * `shoal fetch --agent URL --namespace NS DIGEST -o OUT` downloads a blob through an agent,
//!   verifies it against the digest and only then writes `OUT` (`-o -`: stdout).
//! * `shoal digest FILE` prints a file's `sha256:` digest.
//! * `shoal host-config containerd --registry docker.io --agent localhost:5001 --out DIR`
//!   writes containerd `hosts.toml` files that make the agent a mirror of those registries.
//! * `shoal dev` runs a whole cluster on loopback: `docker push localhost:5000/demo:1`, then
//!   `docker pull localhost:5001/demo:1`.
//!
//! Progress goes to stderr (a bar on a terminal, one summary line otherwise); stdout carries
//! only results, so `d=$(shoal push …)` works. Failures print `error: …` on stderr and exit 1;
//! bad flags exit 2.
//!
//! The binary (`src/main.rs`) only parses [`Cli`] and calls [`run`].

mod dev;
mod digest;
mod error;
mod fetch;
mod host_config;
mod http;
mod progress;
mod push;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use dev::{DevArgs, run_dev};
pub use digest::file_digest;
pub use error::CliError;
pub use fetch::{FetchRequest, fetch};
pub use host_config::{DEFAULT_HOST_DIR, containerd_hosts_toml, write_containerd};
pub use push::{DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, PushRequest, push};

/// Shoal: P2P distribution of container-image blobs.
#[derive(Debug, Parser)]
#[command(name = "shoal", version)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The `shoal` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload a file to an origin as a blob; prints its digest.
    Push {
        /// Origin base URL.
        #[arg(long, env = "SHOAL_ORIGIN", default_value = "http://127.0.0.1:7100")]
        origin: String,
        /// Namespace (repository name) to push into, e.g. `library/app`.
        #[arg(long, short = 'n')]
        namespace: String,
        /// Bytes per upload request, e.g. `16MiB`, `512KiB` or `1048576` (at most 1 GiB).
        #[arg(long, default_value = "16MiB", value_parser = parse_size)]
        chunk_size: u64,
        /// The file to upload.
        file: PathBuf,
    },
    /// Download a blob through an agent and verify it.
    Fetch {
        /// Agent base URL.
        #[arg(long, env = "SHOAL_AGENT", default_value = "http://127.0.0.1:7300")]
        agent: String,
        /// The blob's namespace (repository name).
        #[arg(long, short = 'n')]
        namespace: String,
        /// The blob's digest, `sha256:<64 hex>`.
        digest: String,
        /// Where to write the blob (`-` for stdout). Written only once verified.
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Print the sha256 digest of a file (`-` for stdin).
    Digest {
        /// The file.
        file: PathBuf,
    },
    /// Run a whole cluster on loopback (origin, tracker, build-index, proxy, agent) until
    /// Ctrl-C: push to the proxy, pull from the agent.
    Dev(DevArgs),
    /// Write a container runtime's registry configuration that makes the agent a mirror.
    #[command(subcommand)]
    HostConfig(HostConfig),
}

/// `shoal host-config` runtimes.
#[derive(Debug, Subcommand)]
pub enum HostConfig {
    /// Write `<out>/<registry>/hosts.toml` for containerd (`config_path` of its CRI registry
    /// section, usually `/etc/containerd/certs.d`).
    Containerd {
        /// A registry host to mirror (repeat for several), or `_default` for every registry
        /// without its own file.
        #[arg(long = "registry", default_value = "docker.io")]
        registries: Vec<String>,
        /// The agent's registry address as the node reaches it.
        #[arg(long, default_value = "localhost:5001")]
        agent: String,
        /// containerd's registry config directory.
        #[arg(long, default_value = "/etc/containerd/certs.d")]
        out: PathBuf,
    },
}

/// Runs one command, writing its result to stdout.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Push {
            origin,
            namespace,
            chunk_size,
            file,
        } => {
            let digest = push(&PushRequest {
                origin,
                namespace,
                chunk_size,
                file,
            })
            .await?;
            print_line(&digest.to_string())
        }
        Command::Fetch {
            agent,
            namespace,
            digest,
            output,
        } => fetch(&FetchRequest {
            agent,
            namespace,
            digest,
            output,
        })
        .await
        .map(drop),
        Command::Digest { file } => {
            let digest = file_digest(&file).await?;
            print_line(&digest.to_string())
        }
        Command::HostConfig(HostConfig::Containerd {
            registries,
            agent,
            out,
        }) => {
            for path in write_containerd(&registries, &agent, &out)? {
                print_line(&path.display().to_string())?;
            }
            Ok(())
        }
        Command::Dev(_) => Err(CliError::Usage(
            "`shoal dev` runs its own runtime: call run_dev".into(),
        )),
    }
}

fn print_line(line: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("-", e))
}

/// Parses a byte size: a number with an optional binary suffix (`K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB`; case-insensitive), between 1 byte and [`MAX_CHUNK_SIZE`].
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a size such as 16MiB"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|b| (1..=MAX_CHUNK_SIZE).contains(b))
        .ok_or_else(|| format!("{raw:?} is not between 1 byte and 1 GiB"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in ["", "0", "2GiB", "MiB", "1.5MiB", "16MB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_parse() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["shoal", "push", "--origin", "http://o:1", "-n", "demo", "f"])
                .unwrap();
        assert!(matches!(
            cli.command,
            Command::Push { chunk_size, .. } if chunk_size == DEFAULT_CHUNK_SIZE
        ));
        assert!(Cli::try_parse_from(["shoal", "fetch", "-n", "demo", "sha256:x"]).is_err());
    }
}
