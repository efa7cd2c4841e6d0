//! The benchmark's child processes: spawning, finding their listen addresses in their logs,
//! CPU accounting from `/proc`, and cleanup.
//!
//! Every child's stderr (and stdout) goes to a log file in the run directory, so no pipe can
//! fill up and the logs survive for inspection (`--keep`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Logged by every process in the insecure dev TLS mode the benchmark uses; not an anomaly.
const BENIGN_WARNING: &str = "peer TLS is in dev mode";

/// Longest wait for a child to log its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What a child process is, for CPU accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Tracker,
    Origin,
    Agent,
}

/// One running child process.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) log: PathBuf,
    child: Child,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The run directory and every child; on drop the children are killed and, unless kept, the
/// directory removed.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    pub(crate) procs: Vec<Proc>,
    keep: bool,
    rust_log: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if self.keep {
            eprintln!("kept run directory {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Cluster {
    /// Creates a fresh run directory under the system temp dir.
    pub(crate) fn new(keep: bool, rust_log: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "shoal-swarm-bench-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir,
            procs: Vec::new(),
            keep,
            rust_log: rust_log.to_owned(),
        })
    }

    /// Writes `text` to `name` in the run directory and returns its path.
    pub(crate) fn write_file(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Starts `bin args...` with its output in `<dir>/<name>.log`; returns the index of the
    /// new process. Does not wait for it to listen (see [`Self::wait_listening`]).
    pub(crate) fn spawn(
        &mut self,
        name: &str,
        role: Role,
        bin: &Path,
        args: &[String],
    ) -> anyhow::Result<usize> {
        let log = self.dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", &self.rust_log)
            .env("NO_COLOR", "1") // plain `addr=…` in the log
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.procs.push(Proc {
            name: name.to_owned(),
            role,
            log,
            child,
        });
        Ok(self.procs.len() - 1)
    }

    /// Waits until process `i` logs a line containing `marker` and returns that line's
    /// `addr=` value. Fails, quoting the log, if the process exits or takes too long.
    pub(crate) fn wait_listening(&mut self, i: usize, marker: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let p = &mut self.procs[i];
        loop {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let addr = text
                .lines()
                .filter(|l| l.contains(marker))
                .flat_map(str::split_whitespace)
                .find_map(|w| w.strip_prefix("addr="));
            if let Some(addr) = addr {
                return Ok(addr.to_owned());
            }
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening; log:\n{}",
                    p.name,
                    tail(&text, 30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not log `{marker}` within {START_TIMEOUT:?}; log:\n{}",
                    p.name,
                    tail(&text, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Children that have exited, with their exit status.
    pub(crate) fn exited(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|p| match p.child.try_wait() {
                Ok(Some(status)) => Some(format!("{} exited: {status}", p.name)),
                _ => None,
            })
            .collect()
    }

    /// CPU clock ticks (user + system) used so far by each child, in `procs` order.
    pub(crate) fn cpu_ticks(&self) -> Vec<u64> {
        self.procs
            .iter()
            .map(|p| crate::cpu::proc_ticks(&p.pid().to_string()).unwrap_or(0))
            .collect()
    }

    /// The last `n` lines of process `i`'s log.
    pub(crate) fn log_tail(&self, i: usize, n: usize) -> String {
        let text = std::fs::read_to_string(&self.procs[i].log).unwrap_or_default();
        tail(&text, n)
    }

    /// WARN and ERROR lines of every log: `(process name, count, first few lines)`.
    pub(crate) fn warnings(&self, first: usize) -> Vec<(String, usize, Vec<String>)> {
        self.procs
            .iter()
            .filter_map(|p| {
                let text = std::fs::read_to_string(&p.log).ok()?;
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                    .filter(|l| !l.contains(BENIGN_WARNING))
                    .collect();
                (!lines.is_empty()).then(|| {
                    let shown = lines.iter().take(first).map(|l| (*l).to_owned()).collect();
                    (p.name.clone(), lines.len(), shown)
                })
            })
            .collect()
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
