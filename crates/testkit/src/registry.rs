//! The reference registry: Debian's `docker-registry` (CNCF distribution 2.8).

use std::process::Command;
use std::time::Duration;

use crate::process::{KillOnDrop, Server};

/// A running `docker-registry` (`apt-get install docker-registry`) on a free loopback port,
/// storing into a temporary directory (removed with it), with deletes enabled and no
/// authentication. Killed when dropped.
#[derive(Debug)]
pub struct ReferenceRegistry {
    // Declared first: the process dies before its directory is removed.
    _process: KillOnDrop,
    _dir: tempfile::TempDir,
    port: u16,
}

impl ReferenceRegistry {
    /// Starts the registry and waits until `/v2/` answers. Returns `None` (and the test
    /// should return early) only if `docker-registry` cannot be run and
    /// `SHOAL_SKIP_REGISTRY=1` is set; otherwise a missing registry fails the test with an
    /// install hint.
    pub async fn start() -> Option<Self> {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
                dir.path().join("data").display()
            ),
        )
        .expect("writing the registry config");
        let port = crate::free_port();
        let server = Server {
            program: "docker-registry",
            skip_var: "SHOAL_SKIP_REGISTRY",
            install: "`apt-get install docker-registry`",
            probe: format!("http://127.0.0.1:{port}/v2/"),
            probe_success: true,
            timeout: Duration::from_secs(30),
        };
        let process = server
            .start(
                Command::new("docker-registry")
                    .arg("serve")
                    .arg(&config)
                    .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}")),
            )
            .await?;
        Some(Self {
            _process: process,
            _dir: dir,
            port,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
