//! The benchmark's report: a per-agent table and summary lines on stdout.

use std::time::Duration;

const MIB: f64 = (1u64 << 20) as f64;

/// One agent's outcome.
#[derive(Debug)]
pub(crate) struct AgentResult {
    pub(crate) name: String,
    /// When the last byte of its streamed `GET` arrived (the client's view).
    pub(crate) ready: Option<Duration>,
    /// When the agent had every piece verified (its log's `all pieces verified`): the
    /// swarm's part, before the whole-blob check and the client's read of the rest.
    pub(crate) pieces: Option<Duration>,
    pub(crate) error: Option<String>,
    /// The body was read in full and matched the digest.
    pub(crate) verified: bool,
    /// `shoal_agent_p2p_downloaded_bytes` after the run.
    pub(crate) downloaded: f64,
    /// `shoal_agent_p2p_uploaded_bytes` after the run.
    pub(crate) uploaded: f64,
}

/// Everything measured in one run.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) agents: u64,
    /// Blob size in bytes.
    pub(crate) size: u64,
    /// The piece length the origin used.
    pub(crate) piece: u32,
    /// Agent cap in MiB/s (0: uncapped).
    pub(crate) cap: f64,
    /// Origin egress cap in MiB/s (0: uncapped).
    pub(crate) origin_cap: f64,
    /// Blob size ÷ agent cap, when capped.
    pub(crate) min_secs: Option<f64>,
    /// Extra agent configuration (`--agent-toml`), as given.
    pub(crate) agent_toml: String,
    pub(crate) results: Vec<AgentResult>,
    /// `shoal_origin_p2p_uploaded_bytes` after the run.
    pub(crate) origin_egress: f64,
    /// From time 0 until the last agent answered or failed.
    pub(crate) wall: Duration,
    /// CPU seconds during `wall`, per role.
    pub(crate) cpu_tracker: f64,
    pub(crate) cpu_origin: f64,
    pub(crate) cpu_agents: f64,
    pub(crate) cpu_bench: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn cap_text(mib: f64) -> String {
    if mib > 0.0 {
        format!("{mib} MiB/s")
    } else {
        "uncapped".to_owned()
    }
}

impl Run {
    /// Prints the report; the last line is the machine-readable summary.
    pub(crate) fn print(&self) {
        let size_mib = self.size as f64 / MIB;
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!();
        println!(
            "swarm: {} agents, blob {size_mib} MiB, piece {} KiB, agent caps {} in+out, origin egress {}",
            self.agents,
            self.piece / 1024,
            cap_text(self.cap),
            cap_text(self.origin_cap)
        );
        if !self.agent_toml.is_empty() {
            println!("extra agent config: {}", self.agent_toml);
        }
        if let Some(min) = self.min_secs {
            println!("theoretical minimum per agent: {min:.2}s");
        }
        println!();
        println!(
            "{:<8} {:>9} {:>7} {:>9} {:>11} {:>11} {:>8}  body",
            "agent", "complete", "ratio", "MB/s", "down MiB", "up MiB", "pieces"
        );
        let mut ratios = Vec::new();
        let mut piece_ratios = Vec::new();
        let mut rates = Vec::new();
        for r in &self.results {
            let (secs, ratio, rate) = match r.ready {
                Some(t) => {
                    let s = t.as_secs_f64();
                    let ratio = self.min_secs.map_or(f64::NAN, |m| s / m);
                    (format!("{s:.2}s"), ratio, self.size as f64 / 1e6 / s)
                }
                None => ("-".to_owned(), f64::INFINITY, 0.0),
            };
            ratios.push(ratio);
            rates.push(rate);
            let pieces = match (r.pieces, self.min_secs) {
                (Some(t), Some(m)) => {
                    piece_ratios.push(t.as_secs_f64() / m);
                    format!("{:.2}s", t.as_secs_f64())
                }
                (Some(t), None) => format!("{:.2}s", t.as_secs_f64()),
                (None, _) => "-".to_owned(),
            };
            let body = match (&r.error, r.verified) {
                (Some(e), _) => format!("FAILED: {e}"),
                (None, true) => "sha256 ok".to_owned(),
                (None, false) => "not verified".to_owned(),
            };
            println!(
                "{:<8} {:>9} {:>7.2} {:>9.1} {:>11.1} {:>11.1} {pieces:>8}  {body}",
                r.name,
                secs,
                ratio,
                rate,
                r.downloaded / MIB,
                r.uploaded / MIB
            );
        }
        ratios.sort_by(f64::total_cmp);
        piece_ratios.sort_by(f64::total_cmp);
        rates.sort_by(f64::total_cmp);

        let wall = self.wall.as_secs_f64();
        let down: f64 = self.results.iter().map(|r| r.downloaded).sum();
        let up: f64 = self.results.iter().map(|r| r.uploaded).sum();
        let total = self.agents as f64 * self.size as f64;
        let egress = self.origin_egress / self.size as f64;
        let cpu_children = self.cpu_tracker + self.cpu_origin + self.cpu_agents;
        println!();
        println!(
            "completion: first {:.2}s, last {:.2}s (wall {wall:.2}s)",
            self.results
                .iter()
                .filter_map(|r| r.ready)
                .min()
                .map_or(f64::NAN, |t| t.as_secs_f64()),
            self.results
                .iter()
                .filter_map(|r| r.ready)
                .max()
                .map_or(f64::NAN, |t| t.as_secs_f64()),
        );
        println!(
            "origin egress: {:.1} MiB = {egress:.2} × blob",
            self.origin_egress / MIB
        );
        println!(
            "agents downloaded {:.1} MiB = {:.3} × (N × blob) (duplication); uploaded {:.1} MiB peer to peer",
            down / MIB,
            down / total,
            up / MIB
        );
        println!(
            "aggregate delivery: {:.1} MB/s to agents over {wall:.2}s",
            total / 1e6 / wall
        );
        println!(
            "cpu during the fetch ({wall:.2}s): tracker {:.2}s, origin {:.2}s, agents {:.2}s ({:.2}s each), bench {:.2}s",
            self.cpu_tracker,
            self.cpu_origin,
            self.cpu_agents,
            self.cpu_agents / self.agents as f64,
            self.cpu_bench
        );
        println!(
            "cores busy: children {:.2}, children + bench {:.2} (of {cores} cores)",
            cpu_children / wall,
            (cpu_children + self.cpu_bench) / wall
        );
        if cores > 0 && (cpu_children + self.cpu_bench) / wall > 0.9 * cores as f64 {
            println!(
                "note: CPU near saturation; completion times include CPU contention (fewer \
                 agents, e.g. --agents {}, measure the swarm rather than the CPU)",
                (self.agents / 2).max(1)
            );
        }
        println!(
            "integrity: {}/{} bodies byte-for-byte equal to the blob, checked as they streamed \
             (each agent's time is its last byte)",
            self.results.iter().filter(|r| r.verified).count(),
            self.agents,
        );
        if piece_ratios.len() == self.results.len() && !piece_ratios.is_empty() {
            println!(
                "swarm only (every piece verified at the agent, from its log; the client then \
                 reads what the random piece order left unread): ratio p50={:.2} p99={:.2} \
                 max={:.2}",
                percentile(&piece_ratios, 0.50),
                percentile(&piece_ratios, 0.99),
                piece_ratios.last().copied().unwrap_or(f64::NAN),
            );
        }
        println!();
        if self.min_secs.is_some() {
            println!(
                "ratio p50={:.2} p99={:.2} max={:.2} origin_egress={egress:.2}",
                percentile(&ratios, 0.50),
                percentile(&ratios, 0.99),
                ratios.last().copied().unwrap_or(f64::NAN),
            );
        } else {
            println!(
                "throughput MB/s p50={:.2} min={:.2} origin_egress={egress:.2}",
                percentile(&rates, 0.50),
                rates.first().copied().unwrap_or(f64::NAN),
            );
        }
    }
}
