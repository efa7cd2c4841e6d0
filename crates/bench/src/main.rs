//! `shoal-swarm-bench`: distribution of one blob to N agents through a real swarm.
//!
//! Starts one `shoal-tracker`, one `shoal-origin` and N `shoal-agent` processes on loopback
//! (port 0 everywhere, fresh data directories, bandwidth caps from config files emulating
//! NICs), uploads a random blob to the origin, then has every agent fetch it at once and
//! reports each agent's completion time against the theoretical minimum (blob size ÷ agent
//! ingress cap), the origin's egress, duplicated downloads and the CPU the cluster burned.
//!
//! Each agent is asked for the blob through its HTTP API, which streams the blob while it
//! downloads (in piece order as far as pieces are there). An agent's completion time is when
//! its client has the last byte; the report also gives, from each agent's log, when the agent
//! had every piece verified (the swarm's part). The client checks every body byte for byte
//! against the blob it uploaded, as the bytes arrive: as strict as a digest check, but about
//! ten times cheaper than SHA-256, so that 32 clients on two cores measure the agents rather
//! than their own hashing (each agent verifies SHA-256 per piece and over the whole blob).
//!
//! With `--single` (or `--cap-mib-per-sec 0`) nothing is capped and the report is in MB/s
//! (10^6 bytes per second). This is a measurement, not a test, but a failed or corrupt fetch
//! exits non-zero after the report.
//!
//! The package's other binary, `shoal-registry-bench` (`src/registry/`), benchmarks the
//! registry front ends: manifest GET latency at the agent (warm, cold through the build-index,
//! cold through the swarm) and `docker push` / `docker pull` of a 1 GiB single-layer image
//! through `shoal dev` against Debian's `docker-registry` (distribution) in the same run; its
//! crate docs describe the method.

mod cluster;
mod cpu;
mod report;

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use sha2::{Digest as _, Sha256};

use crate::cluster::{Cluster, Role};
use crate::report::{AgentResult, Run};

const MIB: u64 = 1 << 20;
const NS: &str = "bench";
/// What an agent logs when it has every piece (`shoal-p2p`), before the whole-blob check.
const PIECES_DONE: &str = "all pieces verified";

/// Benchmarks blob distribution to N agents through a tracker and an origin, on loopback.
#[derive(Debug, Parser)]
#[command(name = "shoal-swarm-bench")]
struct Args {
    /// Number of agents.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    agents: u64,
    /// Blob size in MiB.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    size_mib: u64,
    /// Every agent's ingress and egress cap in MiB/s; 0 means uncapped.
    #[arg(long, default_value_t = 8.0)]
    cap_mib_per_sec: f64,
    /// The origin's egress cap in MiB/s (default: the agents' cap); 0 means uncapped.
    #[arg(long)]
    origin_cap_mib_per_sec: Option<f64>,
    /// The agents' ingress cap in MiB/s (default: the agents' cap); 0 means uncapped. The
    /// ingress cap paces reads after QUIC has received the data, so it slows pieces down
    /// rather than the network; egress caps alone model upload-bound NICs.
    #[arg(long)]
    agent_ingress_mib_per_sec: Option<f64>,
    /// A fixed piece length in KiB (default: the origin's choice by blob size, 256 KiB to
    /// 4 MiB; see `shoal_core::piece_length_for`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16384))]
    piece_kib: Option<u32>,
    /// Where `shoal-tracker`, `shoal-origin` and `shoal-agent` are (default: the directory of
    /// this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// One uncapped agent pulling from one uncapped origin (implies `--agents 1
    /// --cap-mib-per-sec 0`).
    #[arg(long)]
    single: bool,
    /// Longest wait for one agent's fetch, in seconds (default: max(120, 10 × theoretical
    /// minimum)).
    #[arg(long)]
    timeout_secs: Option<u64>,
    /// `RUST_LOG` of the child processes.
    #[arg(long, default_value = "info")]
    rust_log: String,
    /// Extra TOML at the top of every agent's config file (before its `[transport.bandwidth]`
    /// table): top-level keys, or tables such as `[engine]`; `\n` stands for a newline.
    #[arg(long, default_value = "")]
    agent_toml: String,
    /// Keep the run directory (configs, logs, data) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.single {
        args.agents = 1;
        args.cap_mib_per_sec = 0.0;
        args.origin_cap_mib_per_sec = Some(0.0);
    }
    ensure!(
        args.cap_mib_per_sec >= 0.0 && args.origin_cap_mib_per_sec.unwrap_or(0.0) >= 0.0,
        "caps must not be negative"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// A cap in MiB/s as a TOML table body, or nothing when uncapped.
fn bandwidth_toml(ingress_mib: f64, egress_mib: f64) -> String {
    let mut s = String::new();
    for (key, mib) in [("ingress", ingress_mib), ("egress", egress_mib)] {
        if mib > 0.0 {
            s.push_str(&format!(
                "{key}_bytes_per_sec = {}\n",
                (mib * MIB as f64).round() as u64
            ));
        }
    }
    s
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the executable has no parent directory")?
            .to_owned(),
    };
    let bin = |name: &str| -> anyhow::Result<PathBuf> {
        let p = bin_dir.join(name);
        ensure!(
            p.is_file(),
            "{} not found (build it, or pass --bin-dir)",
            p.display()
        );
        Ok(p)
    };
    let (tracker_bin, origin_bin, agent_bin) = (
        bin("shoal-tracker")?,
        bin("shoal-origin")?,
        bin("shoal-agent")?,
    );
    let size = args.size_mib * MIB;
    let cap = args.cap_mib_per_sec;
    let origin_cap = args.origin_cap_mib_per_sec.unwrap_or(cap);
    let min_secs = (cap > 0.0).then(|| args.size_mib as f64 / cap);
    let timeout = Duration::from_secs(
        args.timeout_secs
            .unwrap_or_else(|| 120.max((min_secs.unwrap_or(0.0) * 10.0).ceil() as u64)),
    );

    let mut cluster = Cluster::new(args.keep, &args.rust_log)?;
    let dir = cluster.dir.clone();
    eprintln!("run directory {}", dir.display());

    // The blob, generated while the services start.
    let blob_path = dir.join("blob");
    let blob = {
        let p = blob_path.clone();
        let mib = args.size_mib;
        tokio::task::spawn_blocking(move || make_blob(&p, mib))
    };

    // Origin, then the tracker (which needs the origin's URL), then the agents.
    let origin_cfg = cluster.write_file(
        "origin.toml",
        &format!(
            "{}[p2p.transport.bandwidth]\n{}",
            args.piece_kib.map_or(String::new(), |k| format!(
                "piece_length = {0}\nmin_piece_length = {0}\n",
                u64::from(k) * 1024
            )),
            bandwidth_toml(0.0, origin_cap)
        ),
    )?;
    let origin_i = cluster.spawn(
        "origin",
        Role::Origin,
        &origin_bin,
        &[
            "--config".into(),
            origin_cfg.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--peer-listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.join("origin").display().to_string(),
        ],
    )?;
    let origin = format!(
        "http://{}",
        cluster.wait_listening(origin_i, "origin listening")?
    );
    let tracker_cfg = cluster.write_file("tracker.toml", "announce_interval = \"1s\"\n")?;
    let tracker_i = cluster.spawn(
        "tracker",
        Role::Tracker,
        &tracker_bin,
        &[
            "--config".into(),
            tracker_cfg.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--origin".into(),
            origin.clone(),
        ],
    )?;
    let tracker = format!(
        "http://{}",
        cluster.wait_listening(tracker_i, "tracker listening")?
    );
    let agent_cfg = cluster.write_file(
        "agent.toml",
        &format!(
            "{}\n[transport.bandwidth]\n{}\n",
            args.agent_toml.replace("\\n", "\n"),
            bandwidth_toml(args.agent_ingress_mib_per_sec.unwrap_or(cap), cap)
        ),
    )?;
    let mut agent_is = Vec::new();
    for i in 0..args.agents {
        agent_is.push(cluster.spawn(
            &format!("agent{i:02}"),
            Role::Agent,
            &agent_bin,
            &[
                "--config".into(),
                agent_cfg.display().to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--peer-listen".into(),
                "127.0.0.1:0".into(),
                "--data-dir".into(),
                dir.join(format!("agent{i:02}")).display().to_string(),
                "--tracker".into(),
                tracker.clone(),
            ],
        )?);
    }
    let mut agents = Vec::new();
    for &i in &agent_is {
        agents.push(format!(
            "http://{}",
            cluster.wait_listening(i, "agent listening")?
        ));
    }
    eprintln!(
        "started tracker {tracker}, origin {origin}, {} agents",
        agents.len()
    );

    let (digest, expected) = blob.await??;
    let http = reqwest::Client::new();
    let started = Instant::now();
    upload(&http, &origin, &digest, &blob_path).await?;
    let uploaded = started.elapsed();
    wait_metainfo(&http, &origin, &digest).await?;
    let metainfo = started.elapsed();
    // The origin writes the upload back to its storage in the background (a copy of the
    // blob): let it finish, so that it does not take CPU from the fetch being measured.
    wait_writeback(&http, &origin).await?;
    eprintln!(
        "uploaded {} MiB in {:.2}s, metainfo after {:.2}s, written back after {:.2}s",
        args.size_mib,
        uploaded.as_secs_f64(),
        metainfo.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // The blob file is no longer needed: free the disk before the agents write theirs.
    std::fs::remove_file(&blob_path)?;

    // Time 0: every agent asks for the blob at once.
    let clients: Vec<reqwest::Client> = agents.iter().map(|_| reqwest::Client::new()).collect();
    let cpu_before = cluster.cpu_ticks();
    let self_before = cpu::proc_ticks("self").unwrap_or(0);
    let t0 = Instant::now();
    // The agents' logs have wall-clock times: this lines them up with `t0`.
    let t0_wall = SystemTime::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (agent, client)) in agents.iter().zip(clients).enumerate() {
        let url = format!("{agent}/v1/namespaces/{NS}/blobs/{digest}");
        let expected = Arc::clone(&expected);
        tasks.spawn(async move {
            let r = tokio::time::timeout(timeout, async {
                let resp = client.get(&url).send().await?;
                let status = resp.status();
                if !status.is_success() {
                    let body = resp.text().await.unwrap_or_default();
                    bail!("HTTP {status}: {body}");
                }
                // The agent streams the blob while it downloads: an agent is done when the
                // last byte has arrived (every byte checked against the blob on the way).
                let verified = verify(resp, &expected).await;
                Ok((t0.elapsed(), verified))
            })
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {timeout:?}")));
            (i, r)
        });
    }
    let mut ready: Vec<Option<anyhow::Result<Finished>>> =
        (0..agents.len()).map(|_| None).collect();
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, r) = joined?;
        done += 1;
        match &r {
            Ok((t, _)) => eprintln!(
                "[{done}/{}] agent{i:02} complete at {:.2}s",
                agents.len(),
                t.as_secs_f64()
            ),
            Err(e) => eprintln!("[{done}/{}] agent{i:02} FAILED: {e:#}", agents.len()),
        }
        ready[i] = Some(r);
    }
    let wall = t0.elapsed();
    let cpu_after = cluster.cpu_ticks();
    let self_after = cpu::proc_ticks("self").unwrap_or(0);

    // Integrity: every body was read to its end and checked against the digest as it arrived.
    let mut results: Vec<AgentResult> = Vec::new();
    for (i, r) in ready.into_iter().enumerate() {
        let r = r.context("agent result missing")?;
        let (ready, error, verified) = match r {
            Ok((t, Ok(()))) => (Some(t), None, true),
            Ok((t, Err(e))) => (Some(t), Some(format!("verification: {e:#}")), false),
            Err(e) => (None, Some(format!("{e:#}")), false),
        };
        results.push(AgentResult {
            name: cluster.procs[agent_is[i]].name.clone(),
            ready,
            pieces: logged_at(&cluster.procs[agent_is[i]].log, PIECES_DONE, t0_wall),
            error,
            verified,
            downloaded: 0.0,
            uploaded: 0.0,
        });
    }

    for (r, agent) in results.iter_mut().zip(&agents) {
        r.downloaded = metric(&http, agent, "shoal_agent_p2p_downloaded_bytes")
            .await
            .unwrap_or(f64::NAN);
        r.uploaded = metric(&http, agent, "shoal_agent_p2p_uploaded_bytes")
            .await
            .unwrap_or(f64::NAN);
    }
    let origin_egress = metric(&http, &origin, "shoal_origin_p2p_uploaded_bytes").await?;

    let tick = cpu::clock_ticks_per_sec();
    let cpu_secs = |role: Role| -> f64 {
        cluster
            .procs
            .iter()
            .zip(cpu_before.iter().zip(&cpu_after))
            .filter(|(p, _)| p.role == role)
            .map(|(_, (b, a))| a.saturating_sub(*b) as f64 / tick)
            .sum()
    };
    let run = Run {
        agents: args.agents,
        size,
        piece: shoal_core::piece_length_for(
            size,
            args.piece_kib
                .map_or(shoal_core::DEFAULT_MIN_PIECE_LENGTH, |k| k * 1024),
            args.piece_kib
                .map_or(shoal_core::DEFAULT_PIECE_LENGTH, |k| k * 1024),
        ),
        cap,
        origin_cap,
        min_secs,
        agent_toml: args.agent_toml.clone(),
        results,
        origin_egress,
        wall,
        cpu_tracker: cpu_secs(Role::Tracker),
        cpu_origin: cpu_secs(Role::Origin),
        cpu_agents: cpu_secs(Role::Agent),
        cpu_bench: self_after.saturating_sub(self_before) as f64 / tick,
    };

    // Anomalies: exited children, failed agents' log tails, WARN/ERROR lines.
    for line in cluster.exited() {
        eprintln!("anomaly: {line}");
    }
    for (k, r) in run.results.iter().enumerate() {
        if r.error.is_some() {
            eprintln!(
                "--- last log lines of {} ---\n{}",
                r.name,
                cluster.log_tail(agent_is[k], 40)
            );
        }
    }
    for (name, count, lines) in cluster.warnings(3) {
        eprintln!("{name}: {count} WARN/ERROR log lines, first:");
        for l in lines {
            eprintln!("  {l}");
        }
    }
    let failed = run.results.iter().filter(|r| r.error.is_some()).count();
    run.print();
    if failed > 0 {
        bail!("{failed} of {} agents failed", args.agents);
    }
    Ok(())
}

/// Writes `mib` MiB of pseudo-random bytes (splitmix64, seeded from the clock) to `path` and
/// returns their digest and the bytes (kept to check the agents' bodies against).
fn make_blob(path: &Path, mib: u64) -> anyhow::Result<(String, Arc<[u8]>)> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(MIB as usize, file);
    let mut hash = Sha256::new();
    let mut x = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let mut block = vec![0u8; MIB as usize];
    let mut all = Vec::with_capacity(usize::try_from(mib * MIB)?);
    for _ in 0..mib {
        for word in block.chunks_exact_mut(8) {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        hash.update(&block);
        out.write_all(&block)?;
        all.extend_from_slice(&block);
    }
    out.flush()?;
    Ok((
        format!("sha256:{}", hex::encode(hash.finalize())),
        all.into(),
    ))
}

/// PUTs the file at `path` to the origin as blob `digest`, streaming it from disk.
async fn upload(
    http: &reqwest::Client,
    origin: &str,
    digest: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        MIB as usize,
    ));
    let resp = http
        .put(format!("{origin}/v1/namespace/{NS}/blobs/{digest}"))
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(body)
        .send()
        .await
        .context("uploading the blob")?;
    let status = resp.status();
    ensure!(
        status.as_u16() == 201,
        "upload answered {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    Ok(())
}

/// Polls the origin until it serves the blob's metainfo.
async fn wait_metainfo(http: &reqwest::Client, origin: &str, digest: &str) -> anyhow::Result<()> {
    let url = format!("{origin}/v1/namespace/{NS}/blobs/{digest}/metainfo");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = http.get(&url).send().await?.status();
        if status.as_u16() == 200 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "metainfo still answers {status} after 300s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the origin's write-back queue is empty.
async fn wait_writeback(http: &reqwest::Client, origin: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let depth = metric(http, origin, "shoal_origin_writeback_queue_depth").await?;
        if depth == 0.0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the origin's write-back queue still holds {depth} tasks after 300s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When an agent's body ended, and whether it matched the blob.
type Finished = (Duration, anyhow::Result<()>);

/// When the first log line of `log` containing `marker` was written, relative to `t0`: the
/// line starts with its RFC 3339 UTC time (`tracing`'s format). `None` if there is no such
/// line (or it is unreadable).
fn logged_at(log: &Path, marker: &str, t0: SystemTime) -> Option<Duration> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(marker))?;
    let at = humantime::parse_rfc3339_weak(line.split_whitespace().next()?).ok()?;
    at.duration_since(t0).ok()
}

/// Reads the body to its end, comparing it with `expected` as it arrives.
async fn verify(mut resp: reqwest::Response, expected: &[u8]) -> anyhow::Result<()> {
    let mut at = 0usize;
    while let Some(chunk) = resp.chunk().await? {
        let end = at + chunk.len();
        ensure!(
            end <= expected.len(),
            "body is longer than the blob's {} bytes",
            expected.len()
        );
        if expected[at..end] != chunk[..] {
            let first = (at..end)
                .find(|&i| expected[i] != chunk[i - at])
                .unwrap_or(at);
            bail!("body differs from the blob at byte {first}");
        }
        at = end;
    }
    ensure!(
        at == expected.len(),
        "body has {at} bytes, expected {}",
        expected.len()
    );
    Ok(())
}

/// The sum of the samples of metric `name` on `{base}/metrics`.
async fn metric(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut sum = 0.0;
    for (key, value) in text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
    {
        if key == name || key.strip_prefix(name).is_some_and(|r| r.starts_with('{')) {
            sum += value.trim().parse::<f64>()?;
        }
    }
    Ok(sum)
}
