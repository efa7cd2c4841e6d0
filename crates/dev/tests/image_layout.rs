//! The container image's runtime layout without building the image (no base-image registry
//! here): the binaries in a `usr/local/bin` as `deploy/docker/Dockerfile` installs them, each
//! service's config from the rendered ConfigMap at `etc/shoal/<service>.toml`, and every
//! service started with the command line of its manifest (paths under the temp root, pod
//! fields filled in), plus free loopback ports and a temp data dir. Each must come up and
//! answer `/health` and `/readiness`.
//!
//! The binaries come from this build's target directory (`cargo test --workspace` builds them
//! all; a focused run needs `cargo build --bins` first).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::manifests::{command_line, config_text, container, find, objects};
use shoal_testkit::ServiceProcess;

const BINARIES: [&str; 6] = [
    "shoal-origin",
    "shoal-tracker",
    "shoal-agent",
    "shoal-proxy",
    "shoal-build-index",
    "shoal",
];

/// `target/<profile>/`, where cargo puts the binaries (this test runs from `deps/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_owned()
}

/// Lays out `<root>/usr/local/bin/*` (links to the built binaries) and `<root>/etc/shoal/`.
fn lay_out(root: &Path) {
    let bin = root.join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in BINARIES {
        let built = target_dir().join(name);
        assert!(
            built.is_file(),
            "{} is missing: run `cargo build --bins` (or `cargo test --workspace`)",
            built.display()
        );
        std::os::unix::fs::symlink(&built, bin.join(name)).unwrap();
    }
    let etc = root.join("etc/shoal");
    std::fs::create_dir_all(&etc).unwrap();
    let all = objects();
    for (configmap, key) in [
        ("shoal-origin", "origin.toml"),
        ("shoal-tracker", "tracker.toml"),
        ("shoal-agent", "agent.toml"),
        ("shoal-proxy", "proxy.toml"),
        ("shoal-build-index", "build-index.toml"),
    ] {
        std::fs::write(etc.join(key), config_text(&all, configmap, key)).unwrap();
    }
}

/// The manifest's command line for `kind/name`, rooted at `root`, pod fields filled in.
fn command(root: &Path, kind: &str, name: &str) -> Vec<String> {
    let all = objects();
    let root = root.to_str().unwrap();
    command_line(container(find(&all, kind, name)))
        .into_iter()
        .map(|a| {
            a.replace("/usr/local/bin/", &format!("{root}/usr/local/bin/"))
                .replace("/etc/shoal/", &format!("{root}/etc/shoal/"))
                .replace("$(POD_NAME)", &format!("{name}-0"))
                .replace("$(POD_IP)", "127.0.0.1")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_starts_from_the_image_layout_with_its_chart_config() {
    let root = tempfile::tempdir().unwrap();
    lay_out(root.path());
    let data = |svc: &str| root.path().join("var/lib/shoal").join(svc);
    let loopback = "127.0.0.1:0".to_owned();
    let services = [
        ("StatefulSet", "shoal-origin", "origin", true, true),
        ("StatefulSet", "shoal-tracker", "tracker", false, false),
        (
            "StatefulSet",
            "shoal-build-index",
            "build-index",
            true,
            false,
        ),
        ("Deployment", "shoal-proxy", "proxy", false, false),
        ("DaemonSet", "shoal-agent", "agent", true, true),
    ];
    let mut running = Vec::new();
    for (kind, name, svc, has_data, has_peer) in services {
        let mut line = command(root.path(), kind, name);
        let program = line.remove(0);
        line.extend(["--listen".into(), loopback.clone()]);
        if has_data {
            line.extend(["--data-dir".into(), data(svc).to_str().unwrap().to_owned()]);
        }
        if has_peer {
            line.extend(["--peer-listen".into(), loopback.clone()]);
        }
        let marker: &'static str = match svc {
            "origin" => "origin listening",
            "tracker" => "tracker listening",
            "build-index" => "build-index listening",
            "proxy" => "proxy listening",
            _ => "agent listening",
        };
        let process = ServiceProcess::start(&program, &line, marker);
        for path in ["/health", "/readiness"] {
            let resp = reqwest::get(format!("{}{path}", process.base_url()))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{svc} {path}");
        }
        running.push((svc, process));
    }
    // The agent's data went where --data-dir said, not to /var/lib/shoal.
    assert!(data("agent").join("peer_id").is_file());
    // The CLI from the same layout (the agent's containerd init container runs it).
    let out = std::process::Command::new(root.path().join("usr/local/bin/shoal"))
        .args(["host-config", "containerd", "--out"])
        .arg(root.path().join("certs.d"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(root.path().join("certs.d/docker.io/hosts.toml").is_file());
    for (svc, process) in running {
        let exit = tokio::task::spawn_blocking(move || process.terminate())
            .await
            .unwrap();
        assert!(exit.success(), "{svc} exits cleanly on SIGTERM: {exit}");
    }
}
