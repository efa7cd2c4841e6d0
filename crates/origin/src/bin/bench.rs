//! `shoal-origin-bench`: measures a real `shoal-origin` process over loopback HTTP.
//!
//! Starts the origin as a child process on a fresh data directory, then times monolithic and
//! chunked uploads, full and ranged downloads, metainfo generation and write-back, and samples
//! the origin's memory. Blob content is streamed from a small pool of pseudo-random blocks, so
//! the client never holds a whole blob. Prints a table (MB = 10^6 bytes); this is a speed
//! report, not a test, but any HTTP error or size mismatch exits non-zero.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, header, http};
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};

const MIB: u64 = 1 << 20;
/// Size of one pattern block.
const BLOCK: u64 = 4 << 20;
/// Distinct pattern blocks cycled through after a blob's own first block.
const POOL: usize = 16;
const NS: &str = "bench";
/// Longest wait for the origin to start or for background work to finish.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Benchmarks a `shoal-origin` process: uploads, downloads, metainfo, write-back and memory.
#[derive(Debug, Parser)]
#[command(name = "shoal-origin-bench")]
struct Args {
    /// Blob size in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    size_mib: u64,
    /// The origin binary (default: `shoal-origin` next to this executable).
    #[arg(long)]
    origin_bin: Option<PathBuf>,
    /// Runs of every phase.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Chunk size of the chunked upload, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_mib: u64,
}

/// A blob defined by a first block of its own followed by the shared pool, cycled.
#[derive(Debug, Clone)]
struct Blob {
    first: Bytes,
    pool: Arc<[Bytes]>,
    size: u64,
}

impl Blob {
    fn block(&self, i: u64) -> &Bytes {
        if i == 0 {
            &self.first
        } else {
            &self.pool[(i % POOL as u64) as usize]
        }
    }

    /// The bytes `start..end` as cheap slices of the pattern blocks.
    fn slices(&self, start: u64, end: u64) -> impl Iterator<Item = Bytes> + Send + Sync + 'static {
        let this = self.clone();
        let mut off = start;
        std::iter::from_fn(move || {
            if off >= end {
                return None;
            }
            let i = off / BLOCK;
            let (lo, hi) = (off % BLOCK, (end - i * BLOCK).min(BLOCK));
            off = i * BLOCK + hi;
            Some(this.block(i).slice(lo as usize..hi as usize))
        })
    }

    fn digest(&self) -> String {
        let mut h = Sha256::new();
        self.slices(0, self.size).for_each(|s| h.update(&s));
        format!("sha256:{}", hex::encode(h.finalize()))
    }
}

/// 4 MiB of splitmix64 output.
fn pattern(seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut v = Vec::with_capacity(BLOCK as usize);
    while (v.len() as u64) < BLOCK {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    Bytes::from(v)
}

type Body = BoxBody<Bytes, Infallible>;

fn empty() -> Body {
    Empty::new().boxed()
}

fn stream_body(chunks: impl Iterator<Item = Bytes> + Send + Sync + 'static) -> Body {
    StreamBody::new(futures_util::stream::iter(
        chunks.map(|b| Ok(Frame::data(b))),
    ))
    .boxed()
}

/// The origin child process and its data directory, both cleaned up on drop.
struct OriginProc {
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for OriginProc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the origin on 127.0.0.1:0; returns the guard and the bound address.
fn start_origin(bin: &Path) -> anyhow::Result<(OriginProc, String)> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "shoal-origin-bench-{}-{nanos:x}",
        std::process::id()
    ));
    let mut guard = OriginProc { child: None, dir };
    std::fs::create_dir_all(&guard.dir).context("creating the data directory")?;
    let child = guard.child.insert(
        Command::new(bin)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--peer-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&guard.dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1") // plain `addr=…` in the log
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?,
    );
    let stderr = child.stderr.take().context("origin stderr")?;
    let (tx, rx) = mpsc::channel();
    // Keep draining the origin's log so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("origin listening")
                && let Some(rest) = line.split_once("addr=").map(|(_, r)| r)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            } else if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("origin: {line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .context("the origin did not log `origin listening` (exited or timed out)")?;
    Ok((guard, addr))
}

fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Peak VmRSS (KiB) of the origin seen by the sampler since the last `take_peak`.
static PEAK_KIB: AtomicU64 = AtomicU64::new(0);

/// Samples the origin's VmRSS every 50 ms into `PEAK_KIB`, until this process exits.
fn sample_rss(pid: u32) {
    std::thread::spawn(move || {
        loop {
            if let Some(kib) = proc_kib(pid, "VmRSS:") {
                PEAK_KIB.fetch_max(kib, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// Peak VmRSS (KiB) since the previous call, including the current value.
fn take_peak(pid: u32) -> u64 {
    let now = proc_kib(pid, "VmRSS:").unwrap_or(0);
    PEAK_KIB.swap(0, Ordering::Relaxed).max(now)
}

/// One HTTP/1.1 connection to the origin.
struct Client {
    tx: SendRequest<Body>,
    host: String,
}

impl Client {
    async fn connect(addr: &str) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("connection to the origin failed: {e}");
            }
        });
        let host = addr.to_owned();
        Ok(Self { tx, host })
    }

    /// A request builder with the `Host` header set.
    fn req(&self, method: Method, path: &str) -> http::request::Builder {
        let req = Request::builder().method(method).uri(path);
        req.header(header::HOST, &self.host)
    }

    async fn send(&mut self, req: Request<Body>) -> anyhow::Result<Response<Incoming>> {
        let what = format!("{} {}", req.method(), req.uri());
        self.tx
            .ready()
            .await
            .context("the origin closed the connection")?;
        self.tx.send_request(req).await.context(what)
    }

    /// Sends, reads the whole (small) response body and returns status, headers and body.
    async fn call(&mut self, req: Request<Body>) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let (parts, body) = self.send(req).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// Like `call`, failing unless the status is `want`; returns the headers.
    async fn expect(&mut self, req: Request<Body>, want: StatusCode) -> anyhow::Result<HeaderMap> {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, headers, body) = self.call(req).await?;
        let body = String::from_utf8_lossy(&body);
        ensure!(status == want, "{what}: {status}, expected {want}: {body}");
        Ok(headers)
    }
}

fn location(h: &HeaderMap) -> anyhow::Result<String> {
    let loc: Uri = h
        .get(header::LOCATION)
        .context("no Location")?
        .to_str()?
        .parse()?;
    Ok(loc.path_and_query().context("empty Location")?.to_string())
}

fn blob_path(digest: &str) -> String {
    format!("/v1/namespace/{NS}/blobs/{digest}")
}

async fn upload_monolithic(c: &mut Client, blob: &Blob, digest: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let req = c
        .req(Method::PUT, &blob_path(digest))
        .header(header::CONTENT_LENGTH, blob.size);
    let req = req.body(stream_body(blob.slices(0, blob.size)))?;
    c.expect(req, StatusCode::CREATED).await?;
    Ok(t.elapsed())
}

async fn upload_chunked(
    c: &mut Client,
    blob: &Blob,
    digest: &str,
    chunk: u64,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let req = c.req(Method::POST, &format!("/v1/namespace/{NS}/uploads"));
    let h = c
        .expect(
            req.header(header::CONTENT_LENGTH, 0).body(empty())?,
            StatusCode::ACCEPTED,
        )
        .await?;
    let mut loc = location(&h)?;
    let mut off = 0;
    while off < blob.size {
        let end = (off + chunk).min(blob.size);
        let req = c
            .req(Method::PATCH, &loc)
            .header(header::CONTENT_LENGTH, end - off);
        let req = req.header(header::CONTENT_RANGE, format!("{off}-{}", end - 1));
        let h = c
            .expect(
                req.body(stream_body(blob.slices(off, end)))?,
                StatusCode::ACCEPTED,
            )
            .await?;
        loc = location(&h)?;
        off = end;
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let req = c.req(Method::PUT, &format!("{loc}{sep}digest={digest}"));
    c.expect(
        req.header(header::CONTENT_LENGTH, 0).body(empty())?,
        StatusCode::CREATED,
    )
    .await?;
    Ok(t.elapsed())
}

/// Downloads the blob (or `range` of it), counting bytes and hashing only if `hasher` is given.
async fn download(
    c: &mut Client,
    (blob, digest): &(Blob, String),
    range: Option<(u64, u64)>,
    mut hasher: Option<&mut Sha256>,
) -> anyhow::Result<Duration> {
    let mut req = c.req(Method::GET, &blob_path(digest));
    let (want, want_len) = match range {
        None => (StatusCode::OK, blob.size),
        Some((a, b)) => {
            req = req.header(header::RANGE, format!("bytes={a}-{}", b - 1));
            (StatusCode::PARTIAL_CONTENT, b - a)
        }
    };
    let t = Instant::now();
    let resp = c.send(req.body(empty())?).await?;
    ensure!(
        resp.status() == want,
        "GET {digest}: {}, expected {want}",
        resp.status()
    );
    let (mut body, mut n) = (resp.into_body(), 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.context("reading the download")?.into_data() {
            n += data.len() as u64;
            if let Some(h) = hasher.as_deref_mut() {
                h.update(&data);
            }
        }
    }
    let elapsed = t.elapsed();
    ensure!(
        n == want_len,
        "GET {digest}: got {n} bytes, expected {want_len}"
    );
    Ok(elapsed)
}

fn writeback_depth(metrics: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix("shoal_origin_writeback_queue_depth")?;
        let labelled_or_bare = rest.starts_with(' ') || rest.starts_with('{');
        labelled_or_bare.then(|| rest.split_whitespace().last()?.parse().ok())?
    })
}

/// Waits for the blob's metainfo, then for an empty write-back queue; returns the time until
/// each was done.
async fn settle(c: &mut Client, digest: &str) -> anyhow::Result<(Duration, Duration)> {
    let t = Instant::now();
    let metainfo = format!("{}/metainfo", blob_path(digest));
    loop {
        let (status, _, body) = c.call(c.req(Method::GET, &metainfo).body(empty())?).await?;
        if status == StatusCode::OK {
            break;
        }
        let body = String::from_utf8_lossy(&body);
        ensure!(
            t.elapsed() < SETTLE_TIMEOUT,
            "metainfo still {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let meta_done = t.elapsed();
    loop {
        let req = c.req(Method::GET, "/metrics").body(empty())?;
        let text = String::from_utf8(c.call(req).await?.2.to_vec())?;
        let depth = writeback_depth(&text).context("no writeback_queue_depth in /metrics")?;
        if depth == 0.0 {
            return Ok((meta_done, t.elapsed()));
        }
        ensure!(
            t.elapsed() < SETTLE_TIMEOUT,
            "write-back queue still at {depth}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One row of the table.
struct Phase {
    name: String,
    bytes: u64,
    secs: Vec<f64>,
    rss_kib: u64,
}

impl Phase {
    fn new(name: impl Into<String>, bytes: u64) -> Self {
        let name = name.into();
        Self {
            name,
            bytes,
            secs: vec![],
            rss_kib: 0,
        }
    }

    fn record(&mut self, d: Duration, rss_kib: u64) {
        self.secs.push(d.as_secs_f64());
        self.rss_kib = self.rss_kib.max(rss_kib);
    }

    fn print(&self) {
        let mut s = self.secs.clone();
        s.sort_by(f64::total_cmp);
        let mid = s.len() / 2;
        let median = if s.len() % 2 == 1 {
            s[mid]
        } else {
            (s[mid - 1] + s[mid]) / 2.0
        };
        let mbps = |secs: f64| self.bytes as f64 / secs / 1e6;
        let (name, rss) = (&self.name, self.rss_kib / 1024);
        println!(
            "{name:<22}{:>13.1}{:>14.1}{median:>19.3}{rss:>15}",
            mbps(median),
            mbps(s[0])
        );
    }
}

async fn run(
    args: &Args,
    blobs: &[(Blob, String)],
    addr: &str,
    pid: u32,
) -> anyhow::Result<Vec<Phase>> {
    let size = args.size_mib * MIB;
    let range_len = size.min(256 * MIB);
    let range = ((size - range_len) / 2, (size - range_len) / 2 + range_len);
    let mut p = [
        Phase::new("upload monolithic", size),
        Phase::new(format!("upload chunked {}MiB", args.chunk_mib), size),
        Phase::new("download full", size),
        Phase::new(format!("download range {}MiB", range_len / MIB), range_len),
        Phase::new("metainfo generation", size),
        Phase::new("write-back drain", size),
    ];
    let mut c = Client::connect(addr).await?;
    c.expect(c.req(Method::GET, "/health").body(empty())?, StatusCode::OK)
        .await?;
    for (r, pair) in blobs.chunks(2).enumerate() {
        let [mono, chunked] = pair else {
            bail!("blobs come in pairs")
        };
        take_peak(pid);
        p[0].record(
            upload_monolithic(&mut c, &mono.0, &mono.1).await?,
            take_peak(pid),
        );
        // Metainfo generation and write-back run concurrently: both get this interval's peak.
        let (meta, wb) = settle(&mut c, &mono.1).await?;
        let kib = take_peak(pid);
        p[4].record(meta, kib);
        p[5].record(wb, kib);
        let chunk = args.chunk_mib * MIB;
        p[1].record(
            upload_chunked(&mut c, &chunked.0, &chunked.1, chunk).await?,
            take_peak(pid),
        );
        settle(&mut c, &chunked.1).await?;
        take_peak(pid);
        p[2].record(download(&mut c, mono, None, None).await?, take_peak(pid));
        p[3].record(
            download(&mut c, mono, Some(range), None).await?,
            take_peak(pid),
        );
        let secs: Vec<_> = p.iter().map(|p| format!("{:.3}", p.secs[r])).collect();
        eprintln!("run {}/{} seconds: {}", r + 1, args.runs, secs.join(" "));
    }
    // Untimed: the first chunked upload reads back with the right content.
    let mut h = Sha256::new();
    download(&mut c, &blobs[1], None, Some(&mut h)).await?;
    let got = format!("sha256:{}", hex::encode(h.finalize()));
    ensure!(
        got == blobs[1].1,
        "downloaded content is {got}, expected {}",
        blobs[1].1
    );
    Ok(p.into())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match &args.origin_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("shoal-origin"),
    };
    let size = args.size_mib * MIB;
    eprintln!(
        "preparing {} blobs of {} MiB and their digests",
        2 * args.runs,
        args.size_mib
    );
    let pool: Arc<[Bytes]> = (0..POOL as u64).map(pattern).collect();
    let pool = &pool;
    // Per run: a monolithic and a chunked blob, each with a first block of its own.
    let blobs: Vec<(Blob, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2 * args.runs)
            .map(|i| {
                s.spawn(move || {
                    let blob = Blob {
                        first: pattern(1000 + i),
                        pool: Arc::clone(pool),
                        size,
                    };
                    let digest = blob.digest();
                    (blob, digest)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("digest thread panicked"))
            .collect()
    });

    let (origin, addr) = start_origin(&bin)?;
    let pid = origin.child.as_ref().map_or(0, Child::id);
    eprintln!("origin pid {pid} listening on {addr}");
    sample_rss(pid);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let phases = rt.block_on(run(&args, &blobs, &addr, pid))?;
    let hwm = proc_kib(pid, "VmHWM:").context("reading the origin's VmHWM")? / 1024;
    let rss_end = proc_kib(pid, "VmRSS:").unwrap_or(0) / 1024;

    let (mib, runs) = (args.size_mib, args.runs);
    println!("shoal-origin bench: {mib} MiB blob, {runs} runs, origin pid {pid} (MB = 10^6 bytes)");
    let heads = [
        "phase",
        "MB/s (median)",
        "MB/s (best)",
        "seconds (median)",
        "peak RSS MiB",
    ];
    let [a, b, c, d, e] = heads;
    println!("{a:<22}{b:>13}{c:>14}{d:>19}{e:>15}");
    phases.iter().for_each(Phase::print);
    println!("origin peak RSS: {hwm} MiB (VmHWM), {rss_end} MiB at the end (VmRSS)");
    Ok(())
}
