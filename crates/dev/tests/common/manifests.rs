//! The rendered Kubernetes manifests in `deploy/kubernetes/` (YAML), and lookups into them.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// `deploy/kubernetes/`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// Every object of every `*.yaml` file there but the kustomization.
pub fn objects() -> Vec<Yaml> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| YamlLoader::load_from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

/// The object of `kind` named `name`; panics if there is not exactly one.
pub fn find<'a>(objects: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = objects
        .iter()
        .filter(|o| {
            o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name)
        })
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind}/{name}");
    found[0]
}

/// A string field, or a panic naming it.
pub fn str<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

/// A list field (empty if absent).
pub fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map_or(&[], |v| v.as_slice())
}

/// The one container of a workload's pod template.
pub fn container(workload: &Yaml) -> &Yaml {
    let containers = list(&workload["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

/// A container port by name: (containerPort, protocol, hostPort).
pub fn port(container: &Yaml, name: &str) -> (u16, String, Option<u16>) {
    let p = list(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("port {name}"));
    let num = |y: &Yaml| y.as_i64().map(|n| u16::try_from(n).unwrap());
    (
        num(&p["containerPort"]).unwrap(),
        p["protocol"].as_str().unwrap_or("TCP").to_owned(),
        num(&p["hostPort"]),
    )
}

/// A ConfigMap's value for `key`.
pub fn config_text(objects: &[Yaml], configmap: &str, key: &str) -> String {
    str(&find(objects, "ConfigMap", configmap)["data"][key], key).to_owned()
}

/// The container's command followed by its args.
pub fn command_line(container: &Yaml) -> Vec<String> {
    list(&container["command"])
        .iter()
        .chain(list(&container["args"]))
        .map(|a| str(a, "command").to_owned())
        .collect()
}
