//! The pull side as Kubernetes nodes use it: a real containerd (Debian's, started privately for
//! this test with its own root, state and socket) pulls an image from the agent with `ctr`,
//! unpacks it and runs it with runc. The image goes in through the proxy over the OCI API: one
//! layer made with `tar`, holding busybox and a file of random bytes that spans several pieces;
//! the container computes that file's SHA-256 from the inside.
//!
//! Without containerd, `ctr`, runc or `/bin/busybox` (CI installs them with Debian's
//! `docker.io` and `busybox-static`) this test fails, unless `SHOAL_SKIP_DOCKER=1` says to skip
//! it.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, OCI_MANIFEST, push_blob, push_manifest};
use serde_json::json;
use shoal_core::{Algorithm, Digest};
use shoal_dev::DevConfig;

const REPO: &str = "e2e/containerd";
/// The containerd namespace the test's images and containers live in.
const NAMESPACE: &str = "shoal-e2e";
/// Size of the random file in the layer: several 256 KiB pieces at any piece length.
const DATA_BYTES: usize = 12 << 20;

/// A private containerd, stopped (and its directories removed) on drop.
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).display().to_string();
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n",
            p("root"),
            p("state"),
            p("c.sock"),
            p("c.sock.ttrpc"),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let me = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !me.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 30 s:\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// Runs `ctr` against this containerd, in the test's namespace.
    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running ctr")
    }

    /// Runs `ctr`, failing the test with its output and containerd's log if it fails.
    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {} failed:\n{}{}\ncontainerd's log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether every tool the test needs is installed.
fn tools_available() -> bool {
    let runs = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    runs("containerd", "--version")
        && runs("ctr", "--version")
        && runs("runc", "--version")
        && Path::new("/bin/busybox").is_file()
}

/// Deterministic bytes that do not compress (splitmix64).
fn random_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x5EED;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A layer tarball of `/bin/busybox` and `/data/blob`.
fn layer(dir: &Path, data: &[u8]) -> Vec<u8> {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("data/blob"), data).unwrap();
    let tar = dir.join("layer.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .args(["bin", "data"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::read(tar).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_from_the_agent_and_runs_the_image() {
    if !tools_available() {
        if std::env::var_os("SHOAL_SKIP_DOCKER").is_some() {
            eprintln!("SHOAL_SKIP_DOCKER set and containerd/ctr/runc/busybox missing: skipping");
            return;
        }
        panic!(
            "containerd, ctr, runc or /bin/busybox is missing; .ci/harness/start-dockerd.sh \
             installs them (or set SHOAL_SKIP_DOCKER=1 to skip this test)"
        );
    }
    let work = tempfile::tempdir().unwrap();
    let data = random_bytes(DATA_BYTES);
    let want = Digest::compute(Algorithm::Sha256, &data);
    let layer = layer(work.path(), &data);
    let diff_id = Digest::compute(Algorithm::Sha256, &layer);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };

    let c = Cluster::start(DevConfig::new("unused")).await;
    let http = reqwest::Client::new();
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    })
    .to_string();
    let config_digest = push_blob(&http, &c, REPO, config.as_bytes()).await;
    let layer_digest = push_blob(&http, &c, REPO, &layer).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest.to_string(),
            "size": layer.len(),
        }],
    })
    .to_string();
    push_manifest(&http, &c, REPO, "1", OCI_MANIFEST, &manifest).await;

    let image = format!("{}/{REPO}:1", c.addrs.agent);
    let container = format!("shoal-e2e-{}", std::process::id());
    let out = tokio::task::spawn_blocking(move || {
        let containerd = Containerd::start();
        containerd.ctr_ok(&["images", "pull", "--plain-http", &image]);
        let listed = containerd.ctr_ok(&["images", "list", "--quiet"]);
        assert!(listed.lines().any(|l| l == image), "{listed}");
        let out = containerd.ctr_ok(&[
            "run",
            "--rm",
            &image,
            &container,
            "/bin/busybox",
            "sha256sum",
            "/data/blob",
        ]);
        containerd.ctr_ok(&["images", "remove", &image]);
        out
    })
    .await
    .unwrap();
    assert_eq!(
        out.split_whitespace().next(),
        Some(want.hex().as_str()),
        "the file inside the container differs from the one pushed: {out}"
    );
    c.stop().await;
}
