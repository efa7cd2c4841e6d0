//! Running an external server for a test: spawn it (or skip when allowed), wait until it
//! answers, kill it when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
#[derive(Debug)]
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What to start and how to tell that it is up.
pub(crate) struct Server<'a> {
    /// The program, for messages too (e.g. `moto_server`).
    pub(crate) program: &'a str,
    /// Set to `1` to skip the test when the program cannot be run.
    pub(crate) skip_var: &'a str,
    /// How to install the program.
    pub(crate) install: &'a str,
    /// A URL that answers once the server is up.
    pub(crate) probe: String,
    /// Whether the probe must answer with a success status (else any answer will do).
    pub(crate) probe_success: bool,
    /// How long it may take to answer.
    pub(crate) timeout: Duration,
}

impl Server<'_> {
    /// Runs `command` (its standard streams discarded) and waits until the probe URL answers.
    /// `None` (the test should return early) only if the program cannot be run and
    /// `<skip_var>=1`; otherwise a missing program fails the test with an install hint, as
    /// does a server that exits early or never answers.
    pub(crate) async fn start(&self, command: &mut Command) -> Option<KillOnDrop> {
        let child = match command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if std::env::var_os(self.skip_var).is_some_and(|v| v == "1") => {
                let (program, var) = (self.program, self.skip_var);
                eprintln!("skipping: cannot run {program} ({e}) and {var}=1");
                return None;
            }
            Err(e) => panic!(
                "cannot run {} ({e}): install it with {} or set {}=1 to skip this test",
                self.program, self.install, self.skip_var
            ),
        };
        let mut process = KillOnDrop(child);
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("building an HTTP client");
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Ok(Some(status)) = process.0.try_wait() {
                panic!("{} exited early with {status}", self.program);
            }
            let probe = client
                .get(&self.probe)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if probe.is_ok_and(|r| !self.probe_success || r.status().is_success()) {
                return Some(process);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within {:?}",
                self.program,
                self.timeout
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
