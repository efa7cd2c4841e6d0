//! Transfer progress on stderr: a live bar on a terminal, one summary line otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress of one transfer.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    /// A bar for `total` bytes (a spinner when unknown), drawn only when stderr is a terminal.
    pub(crate) fn new(message: &str, total: Option<u64>) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = match total {
                Some(n) => ProgressBar::new(n).with_style(
                    ProgressStyle::with_template(
                        "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(message.to_owned());
        Self {
            bar,
            started: Instant::now(),
        }
    }

    /// Counts `n` more bytes done.
    pub(crate) fn inc(&self, n: usize) {
        self.bar.inc(n as u64);
    }

    /// Removes the bar and prints `what` with the byte count, time and rate on stderr, e.g.
    /// `pushed 20.00 MiB in 0.4s (50.00 MiB/s)`.
    pub(crate) fn finish(&self, what: &str, bytes: u64) {
        self.bar.finish_and_clear();
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            HumanBytes((bytes as f64 / secs) as u64).to_string()
        } else {
            "-".to_owned()
        };
        eprintln!("{what} {} in {secs:.1}s ({rate}/s)", HumanBytes(bytes));
    }

    /// Removes the bar without a summary (the command failed; the error says why).
    pub(crate) fn abandon(&self) {
        self.bar.finish_and_clear();
    }
}
