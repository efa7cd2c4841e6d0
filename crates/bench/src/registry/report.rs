//! The report: markdown tables on stdout and the one-line summary.

use std::time::Duration;

use crate::manifests::{Latency, Results};

const MIB: u64 = 1 << 20;

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median (mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn ms(samples: &[Duration]) -> Vec<f64> {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// p99 of a latency row in ms.
pub(crate) fn p99_ms(row: &Latency) -> f64 {
    percentile(&ms(&row.samples), 0.99)
}

/// Prints the manifest latency table.
pub(crate) fn print_manifests(r: &Results) {
    println!("### Manifest GET latency (sequential, keep-alive HTTP/1.1, Docker `Accept` headers)");
    println!();
    println!("| request | n | mean ms | p50 ms | p90 ms | p99 ms | max ms | target |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for row in r.rows() {
        let v = ms(&row.samples);
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let p99 = percentile(&v, 0.99);
        let target = match row.target_p99_ms {
            Some(t) => format!(
                "p99 < {t} ms: {}",
                if p99 < t { "**met**" } else { "**missed**" }
            ),
            None => "-".to_owned(),
        };
        println!(
            "| {} | {} | {mean:.3} | {:.3} | {:.3} | {p99:.3} | {:.3} | {target} |",
            row.label,
            v.len(),
            percentile(&v, 0.50),
            percentile(&v, 0.90),
            v.last().copied().unwrap_or(f64::NAN),
        );
    }
    println!();
}

/// One docker leg: push, then pull twice through one registry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leg {
    pub(crate) push: Duration,
    pub(crate) pull: Duration,
    /// The second pull (after removing the image again): Shoal's agent has the layer cached.
    pub(crate) pull_again: Duration,
    /// CPU seconds of the registry process(es) during the push and the pull.
    pub(crate) server_cpu: (f64, f64),
    /// CPU seconds of dockerd during the push and the pull (NaN if not visible).
    pub(crate) dockerd_cpu: (f64, f64),
}

/// Every docker run: (Shoal leg, distribution leg, which went first).
#[derive(Debug, Default)]
pub(crate) struct DockerRuns {
    pub(crate) size_mib: u64,
    pub(crate) runs: Vec<(Leg, Leg, &'static str)>,
}

impl DockerRuns {
    fn mbps(&self, secs: f64) -> f64 {
        (self.size_mib * MIB) as f64 / 1e6 / secs
    }

    fn medians(&self, pick: impl Fn(&(Leg, Leg, &'static str)) -> Duration) -> f64 {
        median(
            &self
                .runs
                .iter()
                .map(|r| pick(r).as_secs_f64())
                .collect::<Vec<_>>(),
        )
    }

    /// (push, pull) throughput ratios Shoal ÷ distribution, from the median times.
    pub(crate) fn ratios(&self) -> (f64, f64) {
        (
            self.medians(|r| r.1.push) / self.medians(|r| r.0.push),
            self.medians(|r| r.1.pull) / self.medians(|r| r.0.pull),
        )
    }

    /// Prints the docker tables: medians, then every run.
    pub(crate) fn print(&self) {
        let n = self.runs.len();
        println!(
            "### `docker push` / `docker pull`, one {} MiB layer (+ busybox), median of {n} run{}",
            self.size_mib,
            if n == 1 { "" } else { "s" }
        );
        println!();
        println!(
            "| operation | Shoal s | Shoal MB/s | distribution s | distribution MB/s | Shoal ÷ distribution throughput |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let (push_ratio, pull_ratio) = self.ratios();
        for (name, shoal, dist, ratio) in [
            (
                "push (Shoal: proxy)",
                self.medians(|r| r.0.push),
                self.medians(|r| r.1.push),
                push_ratio,
            ),
            (
                "pull (Shoal: agent)",
                self.medians(|r| r.0.pull),
                self.medians(|r| r.1.pull),
                pull_ratio,
            ),
            (
                "pull again (Shoal: agent cache warm)",
                self.medians(|r| r.0.pull_again),
                self.medians(|r| r.1.pull_again),
                self.medians(|r| r.1.pull_again) / self.medians(|r| r.0.pull_again),
            ),
        ] {
            println!(
                "| {name} | {shoal:.2} | {:.1} | {dist:.2} | {:.1} | {ratio:.2} |",
                self.mbps(shoal),
                self.mbps(dist)
            );
        }
        println!();
        println!(
            "MB/s = {} MiB ÷ time (10^6 bytes/s). CPU seconds are for the first pull.",
            self.size_mib
        );
        println!();
        println!(
            "| run | registry | push s | pull s | pull again s | registry CPU s push / pull | dockerd CPU s push / pull |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|");
        for (i, (shoal, dist, first)) in self.runs.iter().enumerate() {
            for (name, leg) in [("Shoal", shoal), ("distribution", dist)] {
                let first_mark = if *first == name { " (first)" } else { "" };
                println!(
                    "| {} | {name}{first_mark} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |",
                    i + 1,
                    leg.push.as_secs_f64(),
                    leg.pull.as_secs_f64(),
                    leg.pull_again.as_secs_f64(),
                    leg.server_cpu.0,
                    leg.server_cpu.1,
                    leg.dockerd_cpu.0,
                    leg.dockerd_cpu.1,
                );
            }
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 0.50), 50.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
