//! What a run measured, and the figures derived from it: completion times as a ratio of the
//! theoretical minimum, origin egress, piece duplication, link utilisation; as text, CSV and
//! SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::scenario::Scenario;
use crate::svg::{self, Series};
use crate::world::Nanos;

/// Points of a curve, (x, y).
type Curve = Vec<(f64, f64)>;

/// Width of a progress bucket.
const BUCKET: Nanos = 10_000_000;

/// New bytes received (duplicates not counted) and hosts finished over time, in 10 ms buckets.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    bytes: Vec<u64>,
    completions: Vec<u32>,
}

impl Progress {
    fn slot<T: Default + Clone>(v: &mut Vec<T>, at: Nanos) -> &mut T {
        let i = (at / BUCKET) as usize;
        if v.len() <= i {
            v.resize(i + 1, T::default());
        }
        &mut v[i]
    }

    pub(crate) fn bytes(&mut self, at: Nanos, n: u64) {
        *Self::slot(&mut self.bytes, at) += n;
    }

    pub(crate) fn completion(&mut self, at: Nanos) {
        *Self::slot(&mut self.completions, at) += 1;
    }
}

/// One host's result.
#[derive(Debug, Clone)]
pub struct HostResult {
    /// An origin.
    pub origin: bool,
    /// Upload cap, bytes/s.
    pub up: f64,
    /// Download cap, bytes/s.
    pub down: f64,
    /// When it started.
    pub join_at: Nanos,
    /// When it had every blob.
    pub done_at: Option<Nanos>,
    /// It failed before finishing.
    pub failed: bool,
    /// Bytes sent.
    pub uploaded: u64,
    /// Bytes received, duplicates included.
    pub received: u64,
    /// Bytes received that it already had (endgame duplicates).
    pub duplicates: u64,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario run.
    pub scenario: Scenario,
    /// Bytes of all blobs together (what each agent needs).
    pub blob_bytes: u64,
    /// Per blob, the upload capacity of the origins holding it.
    pub owner_upload: Vec<f64>,
    /// Per blob, its size.
    pub blob_sizes: Vec<u64>,
    /// Per blob, its piece length.
    pub piece_lengths: Vec<u32>,
    /// Every host, origins first.
    pub hosts: Vec<HostResult>,
    /// Simulated time at the end.
    pub end: Nanos,
    /// Events processed.
    pub events: u64,
    /// Progress over time.
    pub progress: Progress,
    /// The engines' counters, summed over every host and blob.
    pub engine: shoal_engine::TorrentStats,
    /// Requests refused (busy uplink or an origin's refusal window).
    pub refusals: u64,
}

/// The figures of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Agents expected to finish (not failed).
    pub expected: usize,
    /// Agents that finished.
    pub finished: usize,
    /// Agents that failed before finishing.
    pub failed: usize,
    /// Completion time ÷ theoretical minimum, per finished agent, sorted.
    pub ratios: Vec<f64>,
    /// Completion times in seconds, sorted.
    pub times: Vec<f64>,
    /// The theoretical minimum of the fastest-capped agent, seconds.
    pub t_min: f64,
    /// The swarm-wide bound on the last completion: all agents' bytes over all upload
    /// capacity, seconds.
    pub swarm_bound: f64,
    /// Bytes the origins sent.
    pub origin_egress: u64,
    /// Bytes received by agents ÷ bytes they needed.
    pub duplication: f64,
    /// Per finished agent: bytes needed ÷ (time × download cap), sorted.
    pub download_utilisation: Vec<f64>,
    /// Per agent: bytes sent ÷ (upload cap × time from its join to the last completion).
    pub upload_utilisation_mean: f64,
}

/// The `p`-quantile (0–1) of sorted values, nearest rank; NaN when empty.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

impl Outcome {
    /// An agent's theoretical minimum completion time in seconds: it must receive every byte
    /// through its downlink, and every byte must first leave an origin holding it.
    pub fn t_min(&self, h: &HostResult) -> f64 {
        let download = self.blob_bytes as f64 / h.down;
        let origins = self
            .blob_sizes
            .iter()
            .zip(&self.owner_upload)
            .map(|(size, up)| *size as f64 / up)
            .fold(0.0, f64::max);
        download.max(origins)
    }

    fn agents(&self) -> impl Iterator<Item = &HostResult> {
        self.hosts.iter().filter(|h| !h.origin)
    }

    /// Computes the figures.
    pub fn summary(&self) -> Summary {
        let secs = |n: Nanos| n as f64 / 1e9;
        let mut ratios = Vec::new();
        let mut times = Vec::new();
        let mut utilisation = Vec::new();
        let (mut finished, mut failed, mut received) = (0, 0, 0u64);
        let last_done = self
            .agents()
            .filter_map(|h| h.done_at)
            .max()
            .unwrap_or(self.end);
        let mut up_util = Vec::new();
        for h in self.agents() {
            received += h.received;
            if h.failed {
                failed += 1;
            }
            let span = secs(last_done.saturating_sub(h.join_at));
            if span > 0.0 {
                up_util.push(h.uploaded as f64 / (h.up * span));
            }
            if let Some(done) = h.done_at {
                finished += 1;
                let t = secs(done - h.join_at);
                times.push(t);
                ratios.push(t / self.t_min(h));
                utilisation.push(self.blob_bytes as f64 / (t * h.down));
            }
        }
        let agents = self.agents().count();
        let upload: f64 = self.hosts.iter().map(|h| h.up).sum();
        let needed = (finished as u64).max(1) * self.blob_bytes;
        Summary {
            expected: agents - failed,
            finished,
            failed,
            ratios: sorted(ratios),
            times: sorted(times),
            t_min: self
                .agents()
                .map(|h| self.t_min(h))
                .fold(f64::INFINITY, f64::min),
            swarm_bound: agents as f64 * self.blob_bytes as f64 / upload,
            origin_egress: self
                .hosts
                .iter()
                .filter(|h| h.origin)
                .map(|h| h.uploaded)
                .sum(),
            duplication: received as f64 / needed as f64,
            download_utilisation: sorted(utilisation),
            upload_utilisation_mean: up_util.iter().sum::<f64>() / up_util.len().max(1) as f64,
        }
    }

    /// The report printed after a run; its last line is the `ratio p50=… p99=… p999=… max=…`
    /// line scripts read.
    pub fn text(&self, wall: std::time::Duration) -> String {
        let s = self.summary();
        let sc = &self.scenario;
        let mut out = String::new();
        let q = |v: &[f64], p| quantile(v, p);
        let _ = writeln!(
            out,
            "scenario {}: {} agents, {} origins, {} blob(s) of {:.2} GB together, pieces {}",
            sc.name,
            sc.hosts.count,
            sc.origins.count,
            self.blob_sizes.len(),
            self.blob_bytes as f64 / 1e9,
            self.piece_lengths
                .iter()
                .map(|p| format!("{} KiB", p / 1024))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let _ = writeln!(
            out,
            "finished {}/{} agents ({} failed by design) at {:.2} s simulated; {:.1} s wall, {:.1} M events",
            s.finished,
            s.expected,
            s.failed,
            self.end as f64 / 1e9,
            wall.as_secs_f64(),
            self.events as f64 / 1e6,
        );
        let _ = writeln!(
            out,
            "theoretical minimum {:.2} s (fastest agent); swarm bound on the last completion {:.2} s",
            s.t_min, s.swarm_bound
        );
        let _ = writeln!(
            out,
            "completion time  p50 {:.2} s  p90 {:.2} s  p99 {:.2} s  p99.9 {:.2} s  max {:.2} s",
            q(&s.times, 0.5),
            q(&s.times, 0.9),
            q(&s.times, 0.99),
            q(&s.times, 0.999),
            q(&s.times, 1.0),
        );
        let _ = writeln!(
            out,
            "origin egress {:.2} GB = {:.2} copies of the blobs; duplication {:.4} (received ÷ needed)",
            s.origin_egress as f64 / 1e9,
            s.origin_egress as f64 / self.blob_bytes as f64,
            s.duplication,
        );
        let _ = writeln!(
            out,
            "download utilisation p50 {:.3} p1 {:.3}; upload utilisation mean {:.3}",
            q(&s.download_utilisation, 0.5),
            q(&s.download_utilisation, 0.01),
            s.upload_utilisation_mean,
        );
        let _ = writeln!(
            out,
            "pieces received {} ({} duplicates), request timeouts {}, requests refused {}",
            self.engine.pieces_received,
            self.engine.duplicate_pieces,
            self.engine.timeouts,
            self.refusals,
        );
        let _ = writeln!(
            out,
            "ratio p50={:.3} p99={:.3} p999={:.3} max={:.3}",
            q(&s.ratios, 0.5),
            q(&s.ratios, 0.99),
            q(&s.ratios, 0.999),
            q(&s.ratios, 1.0),
        );
        out
    }

    /// Writes `<name>-hosts.csv`, `<name>-progress.csv`, `<name>-cdf.svg` and
    /// `<name>-progress.svg` into `dir`; returns the paths.
    pub fn write_files(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let name = &self.scenario.name;
        let mut hosts = String::from(
            "host,kind,up_bytes_per_s,down_bytes_per_s,join_s,done_s,time_s,t_min_s,ratio,received_bytes,duplicate_bytes,uploaded_bytes,failed\n",
        );
        for (i, h) in self.hosts.iter().enumerate() {
            let join = h.join_at as f64 / 1e9;
            let (done, time, t_min, ratio) = match (h.origin, h.done_at) {
                (false, Some(d)) => {
                    let t = (d - h.join_at) as f64 / 1e9;
                    let m = self.t_min(h);
                    (
                        format!("{:.6}", d as f64 / 1e9),
                        format!("{t:.6}"),
                        format!("{m:.6}"),
                        format!("{:.6}", t / m),
                    )
                }
                _ => Default::default(),
            };
            let _ = writeln!(
                hosts,
                "{i},{},{:.0},{:.0},{join:.6},{done},{time},{t_min},{ratio},{},{},{},{}",
                if h.origin { "origin" } else { "agent" },
                h.up,
                if h.down.is_finite() { h.down } else { 0.0 },
                h.received,
                h.duplicates,
                h.uploaded,
                h.failed,
            );
        }
        let (bytes, done) = self.progress_series();
        let mut progress = String::from("time_s,bytes_fraction,agents_done_fraction\n");
        for ((t, b), (_, d)) in bytes.iter().zip(&done) {
            let _ = writeln!(progress, "{t:.3},{b:.6},{d:.6}");
        }
        let s = self.summary();
        let cdf: Vec<(f64, f64)> = s
            .ratios
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, (i + 1) as f64 / s.ratios.len() as f64))
            .collect();
        let cdf_svg = svg::line_chart(
            &format!("{name}: completion time ÷ theoretical minimum"),
            "completion time ÷ theoretical minimum",
            "fraction of agents done",
            &[Series {
                name: "agents",
                points: cdf,
            }],
        );
        let progress_svg = svg::line_chart(
            &format!("{name}: swarm progress"),
            "simulated time (s)",
            "fraction",
            &[
                Series {
                    name: "new bytes received",
                    points: bytes,
                },
                Series {
                    name: "agents done",
                    points: done,
                },
            ],
        );
        let files = [
            (format!("{name}-hosts.csv"), hosts),
            (format!("{name}-progress.csv"), progress),
            (format!("{name}-cdf.svg"), cdf_svg),
            (format!("{name}-progress.svg"), progress_svg),
        ];
        let mut paths = Vec::new();
        for (file, body) in files {
            let path = dir.join(file);
            std::fs::write(&path, body)?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Cumulative fractions over time: (bytes received ÷ all agents' needs, agents done ÷
    /// agents), one point per 10 ms bucket.
    fn progress_series(&self) -> (Curve, Curve) {
        let agents = self.agents().count().max(1) as f64;
        let need = agents * self.blob_bytes as f64;
        let n = self
            .progress
            .bytes
            .len()
            .max(self.progress.completions.len());
        let (mut b, mut d) = (0u64, 0u64);
        let mut bytes = Vec::with_capacity(n);
        let mut done = Vec::with_capacity(n);
        for i in 0..n {
            b += self.progress.bytes.get(i).copied().unwrap_or(0);
            d += u64::from(self.progress.completions.get(i).copied().unwrap_or(0));
            let t = ((i + 1) as u64 * BUCKET) as f64 / 1e9;
            bytes.push((t, (b as f64 / need).min(1.0)));
            done.push((t, d as f64 / agents));
        }
        (bytes, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 500.0);
        assert_eq!(quantile(&v, 0.99), 990.0);
        assert_eq!(quantile(&v, 0.999), 999.0);
        assert_eq!(quantile(&v, 1.0), 1000.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
