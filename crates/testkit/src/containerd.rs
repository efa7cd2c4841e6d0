//! A real containerd for a test, and a small runnable image to pull with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::process::KillOnDrop;

/// The variable that skips the test where containerd and its tools cannot be installed (they
/// come with Debian's `docker.io`, as Docker's do).
const SKIP_VAR: &str = "SHOAL_SKIP_DOCKER";
/// The containerd namespace the test's images and containers live in.
const NAMESPACE: &str = "shoal-test";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Debian's containerd, started privately for one test: its own root, state directory and
/// socket in a temporary directory, the CRI plugin off. Killed (and the directory removed)
/// when dropped. Runs containers with runc, as a Kubernetes node does.
#[derive(Debug)]
pub struct Containerd {
    // Declared first: the process dies before its directory is removed.
    _process: KillOnDrop,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd and waits (up to 30 s) until `ctr version` answers. Blocking.
    /// Returns `None` (the test should return early) only if `containerd`, `ctr`, `runc` or
    /// `/bin/busybox` is missing and `SHOAL_SKIP_DOCKER=1` is set; otherwise a missing tool
    /// fails the test with an install hint.
    pub fn start() -> Option<Self> {
        if let Some(missing) = missing_tool() {
            if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
                eprintln!("skipping: {missing} is missing and {SKIP_VAR}=1");
                return None;
            }
            panic!(
                "{missing} is missing: install Debian's docker.io and busybox-static \
                 (.ci/harness/start-dockerd.sh does) or set {SKIP_VAR}=1 to skip this test"
            );
        }
        let dir = tempfile::tempdir().expect("creating a temp dir");
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
        std::fs::write(dir.path().join("config.toml"), config).expect("writing the config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log file");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let me = Self {
            _process: KillOnDrop(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !me.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 30 s:\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(me)
    }

    /// Its socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// Runs `ctr <args>` against this containerd, in the test's namespace. Blocking.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running ctr")
    }

    /// Runs `ctr <args>` and returns its stdout; fails the test with its output and
    /// containerd's log if it fails. Blocking.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
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

    /// Pulls `image` (with `extra` flags, e.g. `--plain-http` or `--hosts-dir <dir>`), runs
    /// `/bin/busybox sha256sum /data/blob` in a container of it and removes both; returns
    /// the hex digest the container printed. Blocking.
    pub fn pull_and_hash(&self, image: &str, extra: &[&str]) -> String {
        let mut pull = vec!["images", "pull"];
        pull.extend_from_slice(extra);
        pull.push(image);
        self.ctr_ok(&pull);
        let listed = self.ctr_ok(&["images", "list", "--quiet"]);
        assert!(
            listed.lines().any(|l| l == image),
            "{image} not listed after the pull: {listed}"
        );
        let container = format!("shoal-test-{}", std::process::id());
        let out = self.ctr_ok(&[
            "run",
            "--rm",
            image,
            &container,
            "/bin/busybox",
            "sha256sum",
            "/data/blob",
        ]);
        self.ctr_ok(&["images", "remove", image]);
        out.split_whitespace().next().unwrap_or_default().to_owned()
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

/// The first tool the containerd tests need that cannot be run, if any.
fn missing_tool() -> Option<&'static str> {
    let runs = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ["containerd", "ctr", "runc"]
        .into_iter()
        .find(|c| !runs(c))
        .or_else(|| (!Path::new("/bin/busybox").is_file()).then_some("/bin/busybox"))
}

/// A runnable single-layer OCI image for this machine: `/bin/busybox` (a static busybox) and
/// `/data/blob`, `data_len` bytes that do not compress, in an uncompressed tar layer.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The image config (JSON).
    pub config: Vec<u8>,
    /// The layer (a tar).
    pub layer: Vec<u8>,
    /// The OCI image manifest (JSON).
    pub manifest: Vec<u8>,
    /// Hex SHA-256 of `/data/blob`.
    pub blob_sha256: String,
}

impl TestImage {
    /// Builds the image (with `tar`, in a temp dir). Blocking.
    pub fn build(data_len: usize) -> Self {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::create_dir_all(root.join("data")).expect("mkdir");
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copying busybox");
        let data = crate::pseudo_random_bytes(data_len, 0x5EED);
        std::fs::write(root.join("data/blob"), &data).expect("writing the data");
        let tar = dir.path().join("layer.tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .args(["bin", "data"])
            .output()
            .expect("running tar");
        assert!(out.status.success(), "tar failed: {out:?}");
        let layer = std::fs::read(&tar).expect("reading the layer");
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let config = format!(
            "{{\"architecture\":\"{arch}\",\"os\":\"linux\",\
             \"config\":{{\"Cmd\":[\"/bin/busybox\",\"sh\"]}},\
             \"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{}\"]}}}}",
            sha256(&layer)
        );
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\
             \"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\
             \"digest\":\"{}\",\"size\":{}}},\
             \"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\
             \"digest\":\"{}\",\"size\":{}}}]}}",
            sha256(config.as_bytes()),
            config.len(),
            sha256(&layer),
            layer.len()
        );
        Self {
            config: config.into_bytes(),
            layer,
            manifest: manifest.into_bytes(),
            blob_sha256: hex::encode(Sha256::digest(&data)),
        }
    }

    /// Pushes the image to the registry at `host` (`host:port`, plain HTTP) as `repo:tag`:
    /// each blob in one `POST …/blobs/uploads/?digest=`, then the manifest.
    pub async fn push(&self, http: &reqwest::Client, host: &str, repo: &str, tag: &str) {
        for blob in [&self.config, &self.layer] {
            let resp = http
                .post(format!(
                    "http://{host}/v2/{repo}/blobs/uploads/?digest={}",
                    sha256(blob)
                ))
                .header("content-type", "application/octet-stream")
                .body(blob.clone())
                .send()
                .await
                .expect("pushing a blob");
            assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
        }
        let resp = http
            .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(self.manifest.clone())
            .send()
            .await
            .expect("pushing the manifest");
        assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}
