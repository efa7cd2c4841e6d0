//! `shoal host-config containerd`: writes containerd `hosts.toml` files that make the node's
//! Shoal agent a mirror of registries, so image references need no rewriting.
//!
//! containerd (with `config_path = "/etc/containerd/certs.d"` in its CRI registry section)
//! reads `<dir>/<registry>/hosts.toml`; for `docker.io` it then sends
//! `GET http://localhost:5001/v2/library/busybox/manifests/latest?ns=docker.io` to the agent
//! first and falls back to `server` (the registry itself) if the agent fails. The agent
//! answers from Shoal or, for registries in its `[[mirrors]]`, from the upstream.

use std::path::{Path, PathBuf};

use crate::error::CliError;

/// The directory name containerd reads for every registry without its own directory
/// (containerd 1.7+).
pub const DEFAULT_HOST_DIR: &str = "_default";

/// The `hosts.toml` text for `registry` (a host such as `docker.io`, `ghcr.io:443`, or
/// [`DEFAULT_HOST_DIR`]) with the agent at `agent` (`localhost:5001` or a URL).
pub fn containerd_hosts_toml(registry: &str, agent: &str) -> Result<String, CliError> {
    check_registry(registry)?;
    let agent = agent_url(agent)?;
    let server = match registry {
        DEFAULT_HOST_DIR => String::new(),
        "docker.io" => "server = \"https://registry-1.docker.io\"\n\n".to_owned(),
        host => format!("server = \"https://{host}\"\n\n"),
    };
    Ok(format!(
        "# Written by `shoal host-config containerd`. Pulls of {what} go to the node's Shoal\n\
         # agent first (it answers from the swarm, or from the registry when Shoal has no such\n\
         # image and the agent mirrors it); containerd falls back to the registry itself if the\n\
         # agent is unreachable.\n\
         {server}[host.\"{agent}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        what = if registry == DEFAULT_HOST_DIR {
            "any registry without its own hosts.toml".to_owned()
        } else {
            format!("{registry} images")
        },
    ))
}

/// Writes `<out>/<registry>/hosts.toml` for each registry (atomically: a temp file renamed
/// into place); returns the files written.
pub fn write_containerd(
    registries: &[String],
    agent: &str,
    out: &Path,
) -> Result<Vec<PathBuf>, CliError> {
    let mut written = Vec::new();
    for registry in registries {
        let text = containerd_hosts_toml(registry, agent)?;
        let dir = out.join(registry);
        std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
        let path = dir.join("hosts.toml");
        let tmp = dir.join(".hosts.toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| CliError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| CliError::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// A registry host (`name[:port]`, letters, digits, `.`, `-`) or `_default`: nothing that
/// could leave `--out` or break the TOML.
fn check_registry(registry: &str) -> Result<(), CliError> {
    if registry == DEFAULT_HOST_DIR {
        return Ok(());
    }
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && !host.starts_with(['.', '-'])
        && !host.contains("..")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--registry {registry:?}: expected a registry host such as docker.io or \
             registry.example.com:5000, or {DEFAULT_HOST_DIR}"
        )))
    }
}

/// `localhost:5001` → `http://localhost:5001`; `http(s)://host:port` unchanged.
fn agent_url(agent: &str) -> Result<String, CliError> {
    let url = if agent.contains("://") {
        agent.trim_end_matches('/').to_owned()
    } else {
        format!("http://{agent}")
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let valid = rest.is_some_and(|r| {
        r.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty()
                && p.parse::<u16>().is_ok_and(|p| p != 0)
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        })
    });
    if valid {
        Ok(url)
    } else {
        Err(CliError::Usage(format!(
            "--agent {agent:?}: expected host:port (localhost:5001) or http://host:port"
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn docker_io_points_at_the_agent_and_falls_back_to_docker_hub() {
        let text = containerd_hosts_toml("docker.io", "localhost:5001").unwrap();
        assert!(text.contains("server = \"https://registry-1.docker.io\""));
        assert!(text.contains("[host.\"http://localhost:5001\"]"));
        assert!(text.contains("capabilities = [\"pull\", \"resolve\"]"));
        let other = containerd_hosts_toml("ghcr.io", "http://127.0.0.1:5001/").unwrap();
        assert!(other.contains("server = \"https://ghcr.io\""));
        assert!(other.contains("[host.\"http://127.0.0.1:5001\"]"));
        let default = containerd_hosts_toml(DEFAULT_HOST_DIR, "localhost:5001").unwrap();
        assert!(!default.contains("server ="));
    }

    #[test]
    fn bad_registries_and_agents_are_usage_errors() {
        for bad in ["", "../etc", "a/b", "x:0", "x:y", ".hidden", "a\"b", "a..b"] {
            assert!(
                matches!(
                    containerd_hosts_toml(bad, "localhost:5001"),
                    Err(CliError::Usage(_))
                ),
                "{bad:?}"
            );
        }
        for bad in [
            "localhost",
            "ftp://x:1",
            "http://:5001",
            "a\"b:1",
            "localhost:0",
        ] {
            assert!(
                matches!(
                    containerd_hosts_toml("docker.io", bad),
                    Err(CliError::Usage(_))
                ),
                "{bad:?}"
            );
        }
        assert!(containerd_hosts_toml("registry.example.com:5000", "[::1]:5001").is_ok());
    }
}
