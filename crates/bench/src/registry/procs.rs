//! The servers under test as child processes: `shoal dev` (the whole Shoal cluster in one
//! process) and Debian's `docker-registry` (CNCF distribution), each on free loopback ports
//! with its data in a fresh directory; plus the run directory and CPU accounting.
//!
//! Everything is released on drop, so an early return or a panic leaves nothing behind: the
//! child is killed and waited for, then its data directory removed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// Longest wait for a server to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A directory removed (recursively) on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl TempDir {
    /// Creates `<base>/<prefix>-<pid>-<nanos>`.
    pub(crate) fn new(base: &Path, prefix: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let path = base.join(format!("{prefix}-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// Creates the subdirectory `name` (removed with this one).
    pub(crate) fn sub(&self, name: &str) -> anyhow::Result<Self> {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process with its output in a log file; killed and reaped on drop.
#[derive(Debug)]
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> anyhow::Result<Self> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Self { name, child, log })
    }

    /// Fails, quoting the log, if the process has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); last log lines:\n{}",
                self.name,
                self.log_tail(30)
            );
        }
        Ok(())
    }

    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls `GET {base}/v2/` until it answers 200.
    async fn wait_v2(&mut self, http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_running()?;
            if let Ok(r) = http.get(format!("{base}/v2/")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not answer {base}/v2/ within {START_TIMEOUT:?}; last log lines:\n{}",
                self.name,
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn cpu_ticks(&self) -> u64 {
        crate::cpu::proc_ticks(&self.child.id().to_string()).unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `shoal dev` running in its own process.
#[derive(Debug)]
pub(crate) struct ShoalDev {
    // Field order is drop order: the process dies before its directory is removed.
    proc: Proc,
    /// Push registry (proxy), `host:port`.
    pub(crate) proxy: String,
    /// Pull registry (agent), `host:port`.
    pub(crate) agent: String,
    _dir: TempDir,
}

impl ShoalDev {
    /// Starts `<shoal> dev` with its data under `dir` and waits until the proxy and the agent
    /// answer `/v2/`.
    pub(crate) async fn start(
        shoal: &Path,
        dir: TempDir,
        rust_log: &str,
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let data = dir.path.join("data");
        std::fs::create_dir_all(&data)?;
        let mut cmd = Command::new(shoal);
        cmd.arg("dev")
            .arg("--data-dir")
            .arg(&data)
            .args(["--proxy-listen", "127.0.0.1:0"])
            .args(["--agent-listen", "127.0.0.1:0"])
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1");
        let mut proc = Proc::spawn("shoal dev", cmd, dir.path.join("shoal-dev.log"))?;
        // `endpoints.json` appears (atomically) once every service is bound.
        let endpoints = data.join("endpoints.json");
        let deadline = Instant::now() + START_TIMEOUT;
        let json = loop {
            proc.check_running()?;
            if let Ok(text) = std::fs::read_to_string(&endpoints) {
                break text;
            }
            ensure!(
                Instant::now() < deadline,
                "shoal dev wrote no {} within {START_TIMEOUT:?}; last log lines:\n{}",
                endpoints.display(),
                proc.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let v: serde_json::Value = serde_json::from_str(&json)
            .with_context(|| format!("parsing {}: {json}", endpoints.display()))?;
        let field = |k: &str| -> anyhow::Result<String> {
            v[k].as_str()
                .map(str::to_owned)
                .with_context(|| format!("{} has no `{k}`: {json}", endpoints.display()))
        };
        let (proxy, agent) = (field("proxy")?, field("agent")?);
        proc.wait_v2(http, &format!("http://{proxy}")).await?;
        proc.wait_v2(http, &format!("http://{agent}")).await?;
        Ok(Self {
            proc,
            proxy,
            agent,
            _dir: dir,
        })
    }

    /// CPU clock ticks the whole cluster (one process) has used so far.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        self.proc.cpu_ticks()
    }

    /// Fails, quoting the log, if the cluster has exited.
    pub(crate) fn check_running(&mut self) -> anyhow::Result<()> {
        self.proc.check_running()
    }

    /// WARN and ERROR lines of the cluster's log: how many, and the first `first`.
    pub(crate) fn warnings(&self, first: usize) -> (usize, Vec<String>) {
        let text = std::fs::read_to_string(&self.proc.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .filter(|l| !l.contains("peer TLS is in dev mode"))
            .collect();
        (
            lines.len(),
            lines.iter().take(first).map(|l| (*l).to_owned()).collect(),
        )
    }
}

/// Debian's `docker-registry` (distribution 2.8) with filesystem storage, no auth.
#[derive(Debug)]
pub(crate) struct Distribution {
    proc: Proc,
    /// `host:port`.
    pub(crate) addr: String,
    _dir: TempDir,
}

impl Distribution {
    /// Starts `docker-registry serve` on a free port with its storage under `dir` and waits
    /// until `/v2/` answers. Access logging is off, as Shoal has none per request.
    pub(crate) async fn start(dir: TempDir, http: &reqwest::Client) -> anyhow::Result<Self> {
        let config = dir.path.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    \
                 uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:0\n",
                dir.path.join("data").display()
            ),
        )?;
        // distribution cannot report a port it picked, so ask the OS for a free one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .env("REGISTRY_HTTP_ADDR", &addr);
        let mut proc = Proc::spawn("docker-registry", cmd, dir.path.join("registry.log"))
            .context("is Debian's docker-registry installed? (apt-get install docker-registry)")?;
        proc.wait_v2(http, &format!("http://{addr}")).await?;
        Ok(Self {
            proc,
            addr,
            _dir: dir,
        })
    }

    /// CPU clock ticks the registry has used so far.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        self.proc.cpu_ticks()
    }

    /// Fails, quoting the log, if the registry has exited.
    pub(crate) fn check_running(&mut self) -> anyhow::Result<()> {
        self.proc.check_running()
    }
}

/// The 1-minute load average (`/proc/loadavg`).
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bytes available to unprivileged users on the filesystem holding `path`, and that
/// filesystem's mount point (`df`).
pub(crate) fn free_space(path: &Path) -> anyhow::Result<(u64, String)> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail,target"])
        .arg(path)
        .output()
        .context("running df")?;
    ensure!(
        out.status.success(),
        "df {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).context("df printed no data line")?;
    let (avail, target) = line
        .trim()
        .split_once(char::is_whitespace)
        .context("unexpected df output")?;
    Ok((avail.parse()?, target.trim().to_owned()))
}
