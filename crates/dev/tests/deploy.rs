//! The checked-in Kubernetes manifests (`deploy/kubernetes/`, rendered from the Helm chart
//! with its default values): the invariants a working deployment depends on, and every
//! ConfigMap's TOML parsed by the services' own config structs (`deny_unknown_fields`).
//! `.ci/run` checks separately that the files are up to date with the chart and valid
//! against the Kubernetes schemas.

#![allow(clippy::unwrap_used)]

mod common;

use common::manifests::{
    command_line, config_text, container, find, list, objects, port, str as string,
};
use shoal_agent::AgentConfig;
use shoal_build_index::BuildIndexConfig;
use shoal_origin::OriginConfig;
use shoal_proxy::ProxyConfig;
use shoal_runtime::config::parse;
use shoal_tracker::TrackerConfig;
use yaml_rust2::Yaml;

const NS: &str = "shoal";

/// `<sts>-<i>.<service>.<ns>.svc.cluster.local:<port>` for every replica of a StatefulSet.
fn stable_members(sts: &Yaml, port: u16) -> Vec<String> {
    let name = string(&sts["metadata"]["name"], "name");
    let service = string(&sts["spec"]["serviceName"], "serviceName");
    let replicas = sts["spec"]["replicas"].as_i64().unwrap();
    (0..replicas)
        .map(|i| format!("{name}-{i}.{service}.{NS}.svc.cluster.local:{port}"))
        .collect()
}

/// Asserts the pod serves `/readiness` and `/health` probes on its `http` port.
fn assert_probes(c: &Yaml) {
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readiness")
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/health")
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            c[probe]["httpGet"]["port"].as_str(),
            Some("http"),
            "{probe}"
        );
    }
    let requests = &c["resources"]["requests"];
    assert!(!requests["cpu"].is_badvalue() && !requests["memory"].is_badvalue());
}

/// The volume mounted at `path`, by name, from the pod's volumes.
fn volume_at<'a>(workload: &'a Yaml, path: &str) -> &'a Yaml {
    let mount = list(&container(workload)["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(path))
        .unwrap_or_else(|| panic!("a volume at {path}"));
    let name = mount["name"].as_str().unwrap();
    list(&workload["spec"]["template"]["spec"]["volumes"])
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or(&Yaml::BadValue)
}

#[test]
fn kustomization_lists_every_file() {
    let text =
        std::fs::read_to_string(common::manifests::dir().join("kustomization.yaml")).unwrap();
    let k = &yaml_rust2::YamlLoader::load_from_str(&text).unwrap()[0];
    let mut listed: Vec<&str> = list(&k["resources"])
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut files: Vec<String> = std::fs::read_dir(common::manifests::dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort_unstable();
    assert_eq!(listed, files);
    let all = objects();
    for o in &all {
        let kind = string(&o["kind"], "kind");
        if kind != "Namespace" {
            assert_eq!(o["metadata"]["namespace"].as_str(), Some(NS), "{kind}");
        }
    }
    find(&all, "Namespace", NS);
}

#[test]
fn agent_daemonset_serves_the_registry_on_the_host() {
    let all = objects();
    let ds = find(&all, "DaemonSet", "shoal-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert_eq!(pod["dnsPolicy"].as_str(), Some("ClusterFirstWithHostNet"));
    let c = container(ds);
    assert_probes(c);
    let config: AgentConfig = parse(&config_text(&all, "shoal-agent", "agent.toml")).unwrap();
    // The runtime pulls from localhost:<port>: the agent listens on every address of the host.
    let (http, proto, host) = port(c, "http");
    assert_eq!((proto.as_str(), host), ("TCP", Some(http)));
    assert_eq!(config.listen.port(), http);
    assert!(config.listen.ip().is_unspecified());
    let (peer, proto, host) = port(c, "peer");
    assert_eq!((proto.as_str(), host), ("UDP", Some(peer)));
    assert_eq!(config.transport.listen.port(), peer);
    // The cache lives on the node, capped by the agent's own capacity setting.
    let data = volume_at(ds, config.data_dir.to_str().unwrap());
    assert!(data["hostPath"]["path"].as_str().is_some(), "{data:?}");
    assert!(config.cache_capacity_bytes > 0);
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"].as_str(),
        Some(http.to_string().as_str())
    );
    // Trackers by their StatefulSet's stable names; the build-index by its Service.
    let trackers = find(&all, "StatefulSet", "shoal-tracker");
    let tracker_port = port(container(trackers), "http").0;
    assert_eq!(
        config.trackers.members,
        stable_members(trackers, tracker_port)
    );
    let bi = find(&all, "Service", "shoal-build-index");
    let bi_port = list(&bi["spec"]["ports"])[0]["port"].as_i64().unwrap();
    assert_eq!(
        config.build_index.as_deref(),
        Some(format!("http://shoal-build-index.{NS}.svc.cluster.local:{bi_port}").as_str())
    );
    assert!(config.mirrors.iter().any(|m| m.registry == "docker.io"));
}

#[test]
fn statefulsets_are_governed_by_headless_services_with_budgets() {
    let all = objects();
    let sets: Vec<&Yaml> = all
        .iter()
        .filter(|o| o["kind"].as_str() == Some("StatefulSet"))
        .collect();
    let names: Vec<&str> = sets
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["shoal-build-index", "shoal-origin", "shoal-tracker"]
    );
    for sts in sets {
        let name = string(&sts["metadata"]["name"], "name");
        let svc = find(
            &all,
            "Service",
            string(&sts["spec"]["serviceName"], "serviceName"),
        );
        assert_eq!(
            svc["spec"]["clusterIP"].as_str(),
            Some("None"),
            "{name}: headless"
        );
        let labels = &sts["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            &svc["spec"]["selector"],
            &sts["spec"]["selector"]["matchLabels"]
        );
        for (k, v) in sts["spec"]["selector"]["matchLabels"].as_hash().unwrap() {
            assert_eq!(&labels[k.as_str().unwrap()], v, "{name}: template labels");
        }
        let pdb = find(&all, "PodDisruptionBudget", name);
        assert_eq!(&pdb["spec"]["selector"], &sts["spec"]["selector"], "{name}");
        assert_probes(container(sts));
        if name != "shoal-tracker" {
            let claims = list(&sts["spec"]["volumeClaimTemplates"]);
            assert_eq!(claims.len(), 1, "{name}: a PVC per pod");
            let claim = claims[0]["metadata"]["name"].as_str().unwrap();
            assert!(
                list(&container(sts)["volumeMounts"])
                    .iter()
                    .any(|m| m["name"].as_str() == Some(claim)),
                "{name}: the PVC is mounted"
            );
        }
    }
    let proxy = find(&all, "Deployment", "shoal-proxy");
    assert_probes(container(proxy));
    find(&all, "PodDisruptionBudget", "shoal-proxy");
    assert_eq!(
        &find(&all, "Service", "shoal-proxy")["spec"]["selector"],
        &proxy["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn configmaps_parse_and_agree_with_the_workloads() {
    let all = objects();
    let origin_sts = find(&all, "StatefulSet", "shoal-origin");
    let origin_port = port(container(origin_sts), "http").0;
    let members = stable_members(origin_sts, origin_port);

    let origin: OriginConfig = parse(&config_text(&all, "shoal-origin", "origin.toml")).unwrap();
    assert_eq!(origin.listen.port(), origin_port);
    assert_eq!(
        origin.p2p.transport.listen.port(),
        port(container(origin_sts), "peer").0
    );
    let cluster = origin.cluster().expect("origins form a ring");
    assert_eq!(cluster.members, members);
    cluster.validate().unwrap();
    assert!(cluster.replicas <= members.len());
    volume_at(origin_sts, origin.data_dir.to_str().unwrap());
    // Each pod's --cluster-id, with its name filled in, is its own member id.
    let args = command_line(container(origin_sts));
    let id = args
        .iter()
        .find_map(|a| a.strip_prefix("--cluster-id="))
        .expect("--cluster-id");
    assert_eq!(id.replace("$(POD_NAME)", "shoal-origin-1"), members[1]);
    assert!(
        args.iter()
            .any(|a| a.starts_with("--advertise-addr=$(POD_IP):"))
    );

    let tracker: TrackerConfig =
        parse(&config_text(&all, "shoal-tracker", "tracker.toml")).unwrap();
    let tracker_sts = find(&all, "StatefulSet", "shoal-tracker");
    assert_eq!(
        tracker.listen.port(),
        port(container(tracker_sts), "http").0
    );
    assert_eq!(tracker.origins.members, members);

    let proxy: ProxyConfig = parse(&config_text(&all, "shoal-proxy", "proxy.toml")).unwrap();
    let proxy_deploy = find(&all, "Deployment", "shoal-proxy");
    assert_eq!(proxy.listen.port(), port(container(proxy_deploy), "http").0);
    assert_eq!(proxy.origins.members, members);

    let bi: BuildIndexConfig =
        parse(&config_text(&all, "shoal-build-index", "build-index.toml")).unwrap();
    let bi_sts = find(&all, "StatefulSet", "shoal-build-index");
    assert_eq!(bi.listen.port(), port(container(bi_sts), "http").0);
    assert_eq!(bi.origins.members, members);
    volume_at(bi_sts, bi.data_dir.to_str().unwrap());
    assert_eq!(
        proxy.build_index,
        parse::<AgentConfig>(&config_text(&all, "shoal-agent", "agent.toml"))
            .unwrap()
            .build_index
    );

    // Every workload mounts its config where its command line reads it.
    for (kind, name, key) in [
        ("StatefulSet", "shoal-origin", "origin.toml"),
        ("StatefulSet", "shoal-tracker", "tracker.toml"),
        ("StatefulSet", "shoal-build-index", "build-index.toml"),
        ("Deployment", "shoal-proxy", "proxy.toml"),
        ("DaemonSet", "shoal-agent", "agent.toml"),
    ] {
        let w = find(&all, kind, name);
        let path = format!("/etc/shoal/{key}");
        assert!(
            command_line(container(w)).contains(&format!("--config={path}")),
            "{name}"
        );
        let volume = volume_at(w, &path);
        assert_eq!(volume["configMap"]["name"].as_str(), Some(name), "{name}");
    }
}
