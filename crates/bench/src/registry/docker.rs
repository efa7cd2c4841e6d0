//! `docker push` / `docker pull` of a large single-layer image.
//!
//! The image is one layer made by `docker import` of a tar stream generated on the fly (no
//! temporary file): busybox (`/bin/busybox`, `/bin/sh`) and one file of random bytes. It is
//! removed (`docker rmi -f` by ID, which drops every tag and the layer) when the [`Image`]
//! guard drops, also on errors.

use std::io::{BufWriter, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

const MIB: usize = 1 << 20;
/// Longest wait for one docker command.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs `docker args…` and returns its stdout; fails with its output if it fails. The child
/// is killed if the future is dropped.
pub(crate) async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let child = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running docker")?;
    let out = tokio::time::timeout(DOCKER_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("docker {} took over {DOCKER_TIMEOUT:?}", args.join(" ")))??;
    if !out.status.success() {
        bail!(
            "docker {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails unless a Docker daemon answers.
pub(crate) async fn check_daemon() -> anyhow::Result<String> {
    docker(&[
        "info",
        "--format",
        "{{.ServerVersion}} {{.Driver}} {{.DockerRootDir}}",
    ])
    .await
    .map(|s| s.trim().to_owned())
    .context(
        "no Docker daemon answers `docker info` (start one with .ci/harness/start-dockerd.sh, \
             or pass --skip-docker)",
    )
}

/// The pid of `dockerd`, if it is visible (for CPU accounting).
pub(crate) fn dockerd_pid() -> Option<String> {
    let out = std::process::Command::new("pidof")
        .arg("dockerd")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut pids = text.split_whitespace();
    let pid = pids.next()?.to_owned();
    // Several daemons: no way to tell which one serves us.
    pids.next().is_none().then_some(pid)
}

/// A local image, removed with `docker rmi -f` on drop.
#[derive(Debug)]
pub(crate) struct Image {
    /// `sha256:…`.
    pub(crate) id: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Image {
    /// Builds a single-layer image named `reference` by piping a generated tarball into
    /// `docker import`: busybox plus `bench.bin`, `size` random bytes.
    pub(crate) async fn build(reference: &str, size: u64) -> anyhow::Result<Self> {
        let reference = reference.to_owned();
        let id = tokio::task::spawn_blocking(move || import(&reference, size)).await??;
        Ok(Self { id })
    }

    /// Removes the image (every tag and the layer) and checks that it is gone, so that the
    /// next pull transfers everything.
    pub(crate) async fn remove(&self) -> anyhow::Result<()> {
        docker(&["rmi", "-f", &self.id]).await?;
        ensure!(
            docker(&["image", "inspect", &self.id]).await.is_err(),
            "image {} is still present after docker rmi -f",
            self.id
        );
        Ok(())
    }

    /// Tags the image as `reference`.
    pub(crate) async fn tag(&self, reference: &str) -> anyhow::Result<()> {
        docker(&["tag", &self.id, reference]).await.map(drop)
    }
}

/// Times `docker push reference`.
pub(crate) async fn push(reference: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    docker(&["push", reference]).await?;
    Ok(started.elapsed())
}

/// Times `docker pull reference` and checks the pulled image is `want` (same ID: same config,
/// same layer diff ID).
pub(crate) async fn pull(reference: &str, want: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    docker(&["pull", reference]).await?;
    let took = started.elapsed();
    let got = docker(&["image", "inspect", "--format", "{{.Id}}", reference]).await?;
    ensure!(
        got.trim() == want,
        "pulled {reference} is image {}, not {want}",
        got.trim()
    );
    Ok(took)
}

/// `docker import - reference` fed with the generated tarball; returns the image ID.
fn import(reference: &str, size: u64) -> anyhow::Result<String> {
    let busybox = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (apt-get install busybox-static)")?;
    let mut child = std::process::Command::new("docker")
        .args(["import", "-", reference])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running docker import")?;
    let stdin = child.stdin.take().context("docker import has no stdin")?;
    let written = write_tar(BufWriter::with_capacity(MIB, stdin), &busybox, size);
    let out = child.wait_with_output()?;
    if !out.status.success() || written.is_err() {
        bail!(
            "docker import failed ({}; writing: {:?}):\n{}",
            out.status,
            written.err(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure!(
        id.starts_with("sha256:"),
        "docker import printed no image ID: {id}"
    );
    Ok(id)
}

/// Writes a ustar archive: `bin/`, `bin/busybox`, `bin/sh -> busybox`, and `bench.bin` with
/// `size` pseudo-random bytes (splitmix64 seeded from the clock: a new layer every run).
fn write_tar(mut out: impl Write, busybox: &[u8], size: u64) -> anyhow::Result<()> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    out.write_all(&tar_header("bin/", 0o755, 0, b'5', "", mtime)?)?;
    out.write_all(&tar_header(
        "bin/busybox",
        0o755,
        busybox.len() as u64,
        b'0',
        "",
        mtime,
    )?)?;
    out.write_all(busybox)?;
    out.write_all(&vec![0; padding(busybox.len() as u64)])?;
    out.write_all(&tar_header("bin/sh", 0o777, 0, b'2', "busybox", mtime)?)?;
    out.write_all(&tar_header("bench.bin", 0o644, size, b'0', "", mtime)?)?;
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let mut block = vec![0u8; MIB];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        let n = left.min(MIB as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.write_all(&vec![0; padding(size)])?;
    out.write_all(&[0; 1024])?; // end of archive
    out.flush()?;
    Ok(())
}

/// Zero bytes after `len` bytes of content, up to the next 512-byte block.
fn padding(len: u64) -> usize {
    ((512 - len % 512) % 512) as usize
}

/// A ustar header block (uid/gid 0). Sizes must be below 8 GiB (11 octal digits).
fn tar_header(
    name: &str,
    mode: u64,
    size: u64,
    kind: u8,
    link: &str,
    mtime: u64,
) -> anyhow::Result<[u8; 512]> {
    ensure!(name.len() <= 100 && link.len() <= 100, "tar name too long");
    ensure!(size < 1 << 33, "tar entries must be below 8 GiB");
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], mode);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[148..156].fill(b' ');
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

/// Zero-padded octal digits and a NUL, filling `field`.
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0width$o}\0", width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_header_checksum_and_fields() {
        let h = tar_header("bench.bin", 0o644, 1 << 30, b'0', "", 0).expect("header");
        assert_eq!(&h[124..136], b"10000000000\0");
        let mut copy = h;
        copy[148..156].fill(b' ');
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        let stored = std::str::from_utf8(&h[148..154]).expect("ascii");
        assert_eq!(u64::from_str_radix(stored, 8).expect("octal"), sum);
        assert!(tar_header("x", 0, 1 << 33, b'0', "", 0).is_err());
        assert_eq!(padding(512), 0);
        assert_eq!(padding(1), 511);
    }
}
