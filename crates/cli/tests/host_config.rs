//! `shoal host-config containerd` as a node's init step runs it.

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
