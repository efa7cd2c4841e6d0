//! Test-only helpers shared by Shoal's integration tests.
//!
//! * [`Moto`]: a real S3-compatible server (moto's standalone server) on a free loopback port,
//!   killed when dropped.
//! * [`ReferenceRegistry`]: the reference OCI registry (Debian's `docker-registry`, CNCF
//!   distribution 2.8) on a free loopback port, killed when dropped.
//! * [`ServiceProcess`]: a Shoal service binary started for a test.
//! * [`Containerd`]: Debian's containerd started privately for a test (pull with `ctr`, run
//!   with runc), and [`TestImage`], a small runnable image to push and pull.
//!
//! This crate is for `[dev-dependencies]` only; no service depends on it.

mod containerd;
mod process;
mod registry;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use containerd::{Containerd, TestImage};
use process::{KillOnDrop, Server};
pub use registry::ReferenceRegistry;

/// A running `moto_server` (an S3-compatible server from PyPI: `pip install 'moto[server]'`).
/// It keeps everything in memory: a restart loses all buckets and objects.
#[derive(Debug)]
pub struct Moto {
    process: KillOnDrop,
    port: u16,
}

/// A port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

impl Moto {
    /// Starts moto on a free port and waits until it answers. Returns `None` (and the test
    /// should return early) only if `moto_server` cannot be run and `SHOAL_SKIP_S3=1` is set;
    /// otherwise a missing server fails the test with an install hint.
    pub async fn start() -> Option<Self> {
        Self::start_on(free_port()).await
    }

    /// Starts moto on `port` (e.g. to restart it where a client expects it).
    pub async fn start_on(port: u16) -> Option<Self> {
        let server = Server {
            program: "moto_server",
            skip_var: "SHOAL_SKIP_S3",
            install: "`pip install 'moto[server]'`",
            probe: format!("http://127.0.0.1:{port}"),
            probe_success: false,
            timeout: Duration::from_secs(60),
        };
        let process = server
            .start(Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]))
            .await?;
        Some(Self { process, port })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .expect("create bucket request");
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.status()
        );
    }

    /// Kills the server (as an outage would) and waits for the process to end.
    pub fn stop(self) -> u16 {
        let port = self.port;
        drop(self.process);
        port
    }
}

/// A service binary (`shoal-origin`, `shoal-tracker`, `shoal-agent`) started for a test; killed
/// if still running when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    addr: String,
}

impl ServiceProcess {
    /// Starts `bin` with `args` (logging at `info`, stderr piped) and waits up to 30 s for the
    /// log line containing `marker` (e.g. `"origin listening"`), whose `addr=HOST:PORT` field
    /// (or `"addr":"HOST:PORT"` in JSON logs) is the bound address. Panics if it never comes (the test fails with the reason).
    pub fn start<I, S>(bin: &str, args: I, marker: &'static str) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("service binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining stderr for the life of the process, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !line.contains(marker) {
                    continue;
                }
                let addr = if let Some(rest) = line.split("addr=").nth(1) {
                    rest.split_whitespace().next()
                } else {
                    line.split("\"addr\":\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                };
                if let Some(addr) = addr {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{bin} did not log {marker:?} within 30 s"));
        Self { child, addr }
    }

    /// The bound address from the log line (`HOST:PORT`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://HOST:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit; its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("waiting for the service")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64 seeded by `seed`): incompressible test
/// content that is the same on every run.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The value of metric `name` on `{base}/metrics`, summed over all its label sets (0 if absent).
pub async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v.trim().parse::<f64>().expect("metric value is a number"))
        .sum()
}

/// Asserts that `bin --help` exits 0 and lists every one of `flags`.
pub fn assert_help_lists(bin: &str, flags: &[&str]) {
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .expect("running --help");
    assert!(out.status.success(), "{bin} --help failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in flags {
        assert!(
            text.contains(flag),
            "{flag} missing from {bin} --help:\n{text}"
        );
    }
}

/// Asserts that `bin --config <file with config_text>` exits 64 (a usage error) and names
/// `culprit` (the bad key) on stderr.
pub fn assert_bad_config_is_usage_error(bin: &str, config_text: &str, culprit: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text).expect("writing the config");
    let out = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("running the binary");
    assert_eq!(out.status.code(), Some(64), "{bin}: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(culprit),
        "{bin} did not name {culprit:?}: {stderr}"
    );
}
