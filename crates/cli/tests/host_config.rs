//! `shoal host-config containerd` as a node's init step runs it, and a real containerd pulling
//! through the files it writes.

#![allow(clippy::unwrap_used)]

const BIN: &str = env!("CARGO_BIN_EXE_shoal");

#[test]
fn writes_hosts_toml_per_registry() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["host-config", "containerd", "--registry", "docker.io"])
        .args([
            "--registry",
            "ghcr.io",
            "--agent",
            "localhost:5001",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let docker: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.path().join("docker.io/hosts.toml")).unwrap())
            .unwrap();
    assert_eq!(
        docker["server"].as_str(),
        Some("https://registry-1.docker.io")
    );
    let host = &docker["host"]["http://localhost:5001"];
    assert_eq!(host["capabilities"].as_array().unwrap().len(), 2);
    let ghcr = std::fs::read_to_string(dir.path().join("ghcr.io/hosts.toml")).unwrap();
    assert!(ghcr.contains("server = \"https://ghcr.io\""));
    // No leftover temp files.
    assert_eq!(
        std::fs::read_dir(dir.path().join("ghcr.io"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn a_registry_that_would_escape_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "host-config",
            "containerd",
            "--registry",
            "../../etc",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--registry"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The mirror path of a Kubernetes node: `shoal host-config containerd` writes the hosts
/// directory, and a real containerd (Debian's, started privately) pulls
/// `registry.test/e2e/mirror:1` through it. containerd asks the agent (with
/// `?ns=registry.test`), the agent answers from Shoal, and the image runs: the container hashes
/// its multi-piece file. `registry.test` itself does not exist, so the image can only have
/// come through the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_through_the_written_mirror_config() {
    let Some(containerd) = tokio::task::spawn_blocking(shoal_testkit::Containerd::start)
        .await
        .unwrap()
    else {
        return;
    };
    let image = tokio::task::spawn_blocking(|| shoal_testkit::TestImage::build(3 << 20))
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let cluster = shoal_dev::DevCluster::bind(shoal_dev::DevConfig::new(data.path()))
        .await
        .unwrap();
    let addrs = cluster.addrs();
    let token = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(cluster.run(token.clone()));
    image
        .push(
            &reqwest::Client::new(),
            &addrs.proxy.to_string(),
            "e2e/mirror",
            "1",
        )
        .await;

    let hosts = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["host-config", "containerd", "--registry", "registry.test"])
        .args(["--agent", &addrs.agent.to_string(), "--out"])
        .arg(hosts.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let hosts_dir = hosts.path().display().to_string();
    let hashed = tokio::task::spawn_blocking(move || {
        containerd.pull_and_hash("registry.test/e2e/mirror:1", &["--hosts-dir", &hosts_dir])
    })
    .await
    .unwrap();
    assert_eq!(hashed, image.blob_sha256);
    token.cancel();
    running.await.unwrap().unwrap();
}
