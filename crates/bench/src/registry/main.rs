//! `shoal-registry-bench`: Shoal's registry front ends against Debian's `docker-registry`
//! (CNCF distribution 2.8), in the same run, on loopback.
//!
//! Needs `cargo build --release --bins` first (it runs `target/release/shoal dev`, found next
//! to its own executable or in `--bin-dir`), a Docker daemon and `docker-registry`
//! (`--skip-docker` drops the Docker part; distribution is still the latency reference).
//!
//! **Manifest GET latency at the agent** (see `manifests.rs`): a `shoal dev` process (origin,
//! tracker, build-index, proxy and agent) and a `docker-registry` process, both on free
//! ports with fresh data directories. A small image is pushed to the proxy with the OCI API;
//! then sequential GETs on one keep-alive HTTP/1.1 connection with Docker's `Accept` headers
//! measure: **warm** (tag cached within its 5 s TTL, manifest in the agent's store; by tag and
//! by digest), **cold tag** (distinct tags pushed beforehand, all naming the cached manifest:
//! each GET resolves at the build-index), **cold manifest by digest** (distinct manifests
//! never fetched: each comes through the swarm) and **cold tag + cold manifest** (both, as
//! on the first pull of a new image); and distribution's warm GET by tag as a reference.
//! Targets from the issue: warm p99 < 2 ms, cold (tag) p99 < 20 ms.
//!
//! **`docker push` / `docker pull`** (see `docker.rs`): a single-layer image (`docker import`
//! of a generated tarball: busybox plus `--size-mib` of random bytes) is pushed to a fresh
//! registry, removed (`docker rmi -f`, checked gone, so the pull transfers everything) and
//! pulled back (the pulled image must have the same ID), then removed and pulled once more;
//! once through Shoal (push to the proxy, pull from the agent: the first pull crosses the
//! swarm, the second is served from the agent's cache) and once through distribution. Which
//! registry goes first alternates between runs, and each registry is stopped and its data
//! deleted after its leg: the disks need about 3 × the layer in `--work-dir` (Shoal's origin
//! cache, its storage write-back and the agent's cache) and 2 × in Docker's root (the pulled
//! layer and its download), which is checked first. Between push and pull the registry is left
//! to finish background work (Shoal's write-back and metainfo) until it is idle. The table
//! gives the median of `--runs` runs in seconds and MB/s (layer size ÷ time, 10^6 bytes/s),
//! the Shoal ÷ distribution throughput ratio, and per run the CPU seconds of the registry
//! process and of `dockerd`. `dockerd` (20.10) gzips the layer on push and, on pull,
//! downloads it to a temporary file before it gunzips and extracts it, with both registries
//! alike: push times are mostly `dockerd`'s gzip, and a pull is the transfer plus a fixed
//! extraction time.
//!
//! The report ends with one line:
//! `registry manifest_warm_p99_ms=… manifest_cold_p99_ms=… push_ratio=… pull_ratio=…`
//! (warm = by tag; cold = cold tag through the build-index; ratios = Shoal ÷ distribution
//! throughput of the first push and pull, `NaN` with `--skip-docker`). Processes, temporary
//! directories and the image are removed on exit, also on errors and on Ctrl-C/SIGTERM.
//! Numbers taken while other heavy work runs are noisy: `uptime` at the start and at the end
//! is printed.

#[path = "../cpu.rs"]
mod cpu;
mod docker;
mod manifests;
mod oci;
mod procs;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;

use crate::docker::Image;
use crate::procs::{Distribution, ShoalDev, TempDir};
use crate::report::{DockerRuns, Leg};

const MIB: u64 = 1 << 20;

/// Benchmarks Shoal's registry (manifest latency at the agent, docker push/pull) against
/// Debian's docker-registry (distribution), on loopback.
#[derive(Debug, Parser)]
#[command(name = "shoal-registry-bench")]
struct Args {
    /// Size of the image's random layer in MiB (below 8 GiB).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..8192))]
    size_mib: u64,
    /// Docker push/pull runs per registry (the report shows the median).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Requests per warm latency row.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    manifest_requests: u64,
    /// Requests per cold latency row, each needing its own tag or manifest pushed beforehand
    /// (default: `--manifest-requests`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    cold_requests: Option<u64>,
    /// Only measure manifest latency.
    #[arg(long)]
    skip_docker: bool,
    /// Where the `shoal` binary is (default: the directory of this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the registries keep their data (default: the system temp dir, `$TMPDIR`). The
    /// Docker legs need about 3 × `--size-mib` free there, and 2 × in Docker's root.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// `RUST_LOG` of `shoal dev`.
    #[arg(long, default_value = "info")]
    rust_log: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            // Dropping `run` on a signal drops its guards: processes, directories, image.
            tokio::select! {
                r = run(args) => r,
                _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
                _ = term.recv() => bail!("terminated; cleaned up"),
            }
        })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the executable has no parent directory")?
            .to_owned(),
    };
    let shoal = bin_dir.join("shoal");
    ensure!(
        shoal.is_file(),
        "{} not found: build every binary first with `cargo build --release --bins` (or pass \
         --bin-dir)",
        shoal.display()
    );
    let load_start = procs::load_average();
    let uptime_start = uptime();
    let started = Instant::now();
    let cold = args.cold_requests.unwrap_or(args.manifest_requests);
    let size = args.size_mib * MIB;
    let http = oci::client()?;
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = TempDir::new(&work_dir, "shoal-registry-bench")?;
    eprintln!("run directory {}", dir.path.display());

    // Fail fast on Docker problems, before the manifest phase.
    let mut docker_info = None;
    if !args.skip_docker {
        let info = docker::check_daemon().await?;
        let root = PathBuf::from(info.split_whitespace().nth(2).unwrap_or("/var/lib/docker"));
        check_space(&dir.path, &root, size)?;
        docker_info = Some(info);
    }

    // Manifest latency.
    let mut shoal_dev =
        ShoalDev::start(&shoal, dir.sub("manifests-shoal")?, &args.rust_log, &http).await?;
    let mut dist = Distribution::start(dir.sub("manifests-distribution")?, &http).await?;
    eprintln!(
        "manifest phase: shoal dev proxy {} agent {}, distribution {}",
        shoal_dev.proxy, shoal_dev.agent, dist.addr
    );
    let latencies = manifests::run(
        &http,
        &mut shoal_dev,
        &mut dist,
        args.manifest_requests,
        cold,
    )
    .await?;
    let mut anomalies = warnings("manifest phase", &shoal_dev);
    drop((shoal_dev, dist));

    // docker push / pull.
    let mut docker_runs = DockerRuns {
        size_mib: args.size_mib,
        runs: Vec::new(),
    };
    if !args.skip_docker {
        let dockerd = docker::dockerd_pid();
        if dockerd.is_none() {
            eprintln!("dockerd's pid is not visible: no dockerd CPU figures");
        }
        eprintln!("building a {} MiB single-layer image", args.size_mib);
        let t = Instant::now();
        let image = Image::build(
            &format!("shoal-registry-bench/big:{}", std::process::id()),
            size,
        )
        .await?;
        eprintln!(
            "built image {} in {:.1}s",
            image.id,
            t.elapsed().as_secs_f64()
        );
        let ctx = LegContext {
            shoal: &shoal,
            dir: &dir,
            rust_log: &args.rust_log,
            http: &http,
            image: &image,
            dockerd: dockerd.as_deref(),
        };
        for run in 0..args.runs {
            let shoal_first = run % 2 == 0;
            let mut shoal_leg = None;
            let mut dist_leg = None;
            for is_shoal in [shoal_first, !shoal_first] {
                let leg = ctx.leg(run, is_shoal, &mut anomalies).await?;
                eprintln!(
                    "run {}: {}: push {:.2}s, pull {:.2}s, pull again {:.2}s",
                    run + 1,
                    if is_shoal { "Shoal" } else { "distribution" },
                    leg.push.as_secs_f64(),
                    leg.pull.as_secs_f64(),
                    leg.pull_again.as_secs_f64()
                );
                if is_shoal {
                    shoal_leg = Some(leg);
                } else {
                    dist_leg = Some(leg);
                }
            }
            docker_runs.runs.push((
                shoal_leg.context("no Shoal leg")?,
                dist_leg.context("no distribution leg")?,
                if shoal_first { "Shoal" } else { "distribution" },
            ));
        }
        drop(image);
    }

    // Report.
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fmt_load = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
    println!();
    println!("## shoal-registry-bench");
    println!();
    let data_fs = procs::free_space(&work_dir).map_or_else(|_| "?".to_owned(), |f| f.1);
    println!(
        "{cores} cores; 1-min load average {} at the start, {} at the end; {:.0}s in all; \
         {} warm / {cold} cold requests per row; cold-set pushes took {:.1}s; registry data \
         in {} (on {data_fs}){}",
        fmt_load(load_start),
        fmt_load(procs::load_average()),
        started.elapsed().as_secs_f64(),
        args.manifest_requests,
        latencies.push_secs,
        work_dir.display(),
        docker_info.map_or(String::new(), |i| format!("; docker daemon {i}")),
    );
    println!();
    println!("uptime at the start: {uptime_start}");
    println!("uptime at the end:   {}", uptime());
    println!();
    report::print_manifests(&latencies);
    let (push_ratio, pull_ratio) = if args.skip_docker {
        println!("docker push/pull: skipped (--skip-docker)");
        println!();
        (f64::NAN, f64::NAN)
    } else {
        docker_runs.print();
        docker_runs.ratios()
    };
    for a in &anomalies {
        println!("anomaly: {a}");
    }
    println!(
        "registry manifest_warm_p99_ms={:.3} manifest_cold_p99_ms={:.3} push_ratio={push_ratio:.3} pull_ratio={pull_ratio:.3}",
        report::p99_ms(&latencies.warm_tag),
        report::p99_ms(&latencies.cold_tag),
    );
    Ok(())
}

/// What every docker leg needs.
struct LegContext<'a> {
    shoal: &'a std::path::Path,
    dir: &'a TempDir,
    rust_log: &'a str,
    http: &'a reqwest::Client,
    image: &'a Image,
    dockerd: Option<&'a str>,
}

/// One of the two registries, running for one leg.
enum Server {
    Shoal(ShoalDev),
    Distribution(Distribution),
}

impl Server {
    fn cpu_ticks(&self) -> u64 {
        match self {
            Self::Shoal(s) => s.cpu_ticks(),
            Self::Distribution(d) => d.cpu_ticks(),
        }
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Shoal(s) => s.check_running(),
            Self::Distribution(d) => d.check_running(),
        }
    }
}

impl LegContext<'_> {
    /// Starts a fresh registry, pushes the image to it, removes the image locally, pulls it
    /// back, does that last step once more, and stops the registry (deleting its data).
    async fn leg(
        &self,
        run: u64,
        is_shoal: bool,
        anomalies: &mut Vec<String>,
    ) -> anyhow::Result<Leg> {
        let name = if is_shoal { "shoal" } else { "distribution" };
        let sub = self.dir.sub(&format!("run{}-{name}", run + 1))?;
        let (mut server, push_ref, pull_ref) = if is_shoal {
            let s = ShoalDev::start(self.shoal, sub, self.rust_log, self.http).await?;
            let refs = (
                format!("{}/bench/big:run{}", s.proxy, run + 1),
                format!("{}/bench/big:run{}", s.agent, run + 1),
            );
            (Server::Shoal(s), refs.0, refs.1)
        } else {
            let d = Distribution::start(sub, self.http).await?;
            let r = format!("{}/bench/big:run{}", d.addr, run + 1);
            (Server::Distribution(d), r.clone(), r)
        };
        let tick = cpu::clock_ticks_per_sec();
        let dockerd = || {
            self.dockerd
                .and_then(cpu::proc_ticks)
                .map_or(f64::NAN, |t| t as f64 / tick)
        };

        self.image.tag(&push_ref).await?;
        let (s0, d0) = (server.cpu_ticks(), dockerd());
        let push = docker::push(&push_ref)
            .await
            .with_context(|| format!("docker push to {name}"))?;
        let (s1, d1) = (server.cpu_ticks(), dockerd());
        server.check_running()?;
        self.image.remove().await?;
        settle(&server, tick).await;

        let (s2, d2) = (server.cpu_ticks(), dockerd());
        let pull = docker::pull(&pull_ref, &self.image.id)
            .await
            .with_context(|| format!("docker pull from {name}"))?;
        let (s3, d3) = (server.cpu_ticks(), dockerd());
        server.check_running()?;
        // Again: Shoal's agent now serves the layer from its cache.
        self.image.remove().await?;
        let pull_again = docker::pull(&pull_ref, &self.image.id)
            .await
            .with_context(|| format!("second docker pull from {name}"))?;
        server.check_running()?;
        if let Server::Shoal(s) = &server {
            anomalies.extend(warnings(&format!("run {} Shoal leg", run + 1), s));
        }
        drop(server);
        let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / tick;
        Ok(Leg {
            push,
            pull,
            pull_again,
            server_cpu: (secs(s0, s1), secs(s2, s3)),
            dockerd_cpu: (d1 - d0, d3 - d2),
        })
    }
}

/// Waits (up to 2 minutes) until the registry uses under 5% of a core over half a second:
/// work a push starts in the background (Shoal's write-back to storage, metainfo) is not
/// charged to the pull.
async fn settle(server: &Server, tick: f64) {
    let started = Instant::now();
    loop {
        let before = server.cpu_ticks();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy = server.cpu_ticks().saturating_sub(before) as f64 / tick / 0.5;
        if busy < 0.05 || started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    eprintln!(
        "registry idle {:.1}s after the push",
        started.elapsed().as_secs_f64()
    );
}

/// `uptime`'s output, trimmed.
fn uptime() -> String {
    std::process::Command::new("uptime")
        .output()
        .ok()
        .map_or_else(
            || "?".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// Shoal's WARN/ERROR log lines, as anomaly lines.
fn warnings(phase: &str, shoal: &ShoalDev) -> Vec<String> {
    let (count, first) = shoal.warnings(5);
    if count == 0 {
        return Vec::new();
    }
    let mut out = vec![format!(
        "{phase}: shoal dev logged {count} WARN/ERROR lines, first:"
    )];
    out.extend(first.into_iter().map(|l| format!("  {l}")));
    out
}

/// Fails unless the disks have room for a leg: up to 3 × the layer in the run directory
/// (Shoal's origin cache and its storage write-back, the agent's cache) and 2 × in Docker's
/// root (the pulled layer and its download), plus 1 GiB of slack each.
fn check_space(
    run_dir: &std::path::Path,
    docker_root: &std::path::Path,
    size: u64,
) -> anyhow::Result<()> {
    let slack = 1 << 30;
    let (run_free, run_fs) = procs::free_space(run_dir)?;
    let docker = procs::free_space(docker_root);
    let needs = match &docker {
        Ok((_, fs)) if *fs == run_fs => vec![(run_free, run_fs.clone(), 5 * size + slack)],
        Ok((free, fs)) => vec![
            (run_free, run_fs.clone(), 3 * size + slack),
            (*free, fs.clone(), 2 * size + slack),
        ],
        // Docker's root is not visible here: check the run directory alone.
        Err(_) => vec![(run_free, run_fs.clone(), 3 * size + slack)],
    };
    for (free, fs, need) in needs {
        ensure!(
            free >= need,
            "{fs} has {:.1} GiB free; the docker legs need about {:.1} GiB there (use a smaller \
             --size-mib, or --skip-docker)",
            free as f64 / (1u64 << 30) as f64,
            need as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}
