//! The rings under failure, end to end: 3 origins (R = 2), 3 trackers, a build-index, a proxy
//! and 20 agents. A 64 MiB layer pushed through the proxy is fetched by every agent; one of
//! its owning origins and the tracker of its torrent are killed mid-transfer. Every agent
//! completes with the right bytes, and afterwards a real `docker push` / `docker pull` through
//! the proxy and an agent still works.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use shoal_agent::{Agent, AgentConfig};
use shoal_build_index::{BuildIndex, BuildIndexConfig};
use shoal_cluster::{Cluster, ClusterConfig, HealthConfig};
use shoal_core::{Algorithm, Digest, MetaInfo};
use shoal_origin::{Origin, OriginConfig};
use shoal_proxy::{Proxy, ProxyConfig};
use shoal_testkit::{metric, pseudo_random_bytes};
use shoal_tracker::{Tracker, TrackerConfig};
use shoal_transport::{BandwidthConfig, TransportConfig};
use tokio_util::sync::CancellationToken;

const AGENTS: usize = 20;
const R: usize = 2;

fn fast_health() -> HealthConfig {
    HealthConfig {
        interval: Duration::from_millis(250),
        timeout: Duration::from_millis(250),
        fall: 2,
        rise: 2,
        ..HealthConfig::default()
    }
}

fn ring(members: &[String]) -> ClusterConfig {
    ClusterConfig {
        replicas: R,
        health: fast_health(),
        ..ClusterConfig::with_members(members)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn origins_and_trackers_fail_mid_transfer_and_every_agent_completes() {
    let dir = tempfile::tempdir().unwrap();
    let root = CancellationToken::new();
    let loopback = "127.0.0.1:0".parse().unwrap();

    // Three origins on one ring, each seeding with a capped uplink.
    let mut origins = Vec::new();
    for i in 0..3 {
        let mut config = OriginConfig {
            listen: loopback,
            data_dir: dir.path().join(format!("origin{i}")),
            piece_length: 1 << 20,
            ..OriginConfig::default()
        };
        config.p2p.transport = TransportConfig::localhost();
        config.p2p.transport.bandwidth.egress_bytes_per_sec = Some(24 << 20);
        config.replication.initial_backoff = Duration::from_millis(100);
        config.replication.max_backoff = Duration::from_millis(500);
        let cluster = Cluster::fixed(Vec::new(), R).unwrap();
        let origin = Origin::bind_with_cluster(config, cluster.clone())
            .await
            .unwrap();
        origins.push((origin, cluster));
    }
    let origin_ids: Vec<String> = origins
        .iter()
        .map(|(o, _)| o.local_addr().to_string())
        .collect();
    let mut origin_tokens = Vec::new();
    for (origin, cluster) in origins {
        cluster.set_static_members(&origin_ids).unwrap();
        let token = root.child_token();
        tokio::spawn(origin.run(token.clone()));
        origin_tokens.push(token);
    }

    // Three trackers, a build-index and the proxy.
    let mut tracker_ids = Vec::new();
    let mut tracker_tokens = Vec::new();
    for _ in 0..3 {
        let t = Tracker::bind(TrackerConfig {
            listen: loopback,
            origins: ring(&origin_ids),
            announce_interval: Duration::from_millis(500),
            ..TrackerConfig::default()
        })
        .await
        .unwrap();
        tracker_ids.push(t.local_addr().to_string());
        let token = root.child_token();
        tokio::spawn(t.run(token.clone()));
        tracker_tokens.push(token);
    }
    let build_index = BuildIndex::bind(BuildIndexConfig {
        listen: loopback,
        data_dir: dir.path().join("build-index"),
        origins: ring(&origin_ids),
        ..BuildIndexConfig::default()
    })
    .await
    .unwrap();
    let build_index_url = format!("http://{}", build_index.local_addr());
    tokio::spawn(build_index.run(root.child_token()));
    let proxy = Proxy::bind(ProxyConfig {
        listen: loopback,
        origins: ring(&origin_ids),
        build_index: Some(build_index_url.clone()),
        ..ProxyConfig::default()
    })
    .await
    .unwrap();
    let proxy_addr = proxy.local_addr();
    tokio::spawn(proxy.run(root.child_token()));

    // The layer, pushed through the proxy (monolithic OCI upload).
    let data = pseudo_random_bytes(64 << 20, 99);
    let d = Digest::compute(Algorithm::Sha256, &data);
    let http = reqwest::Client::new();
    let resp = http
        .post(format!(
            "http://{proxy_addr}/v2/ring/app/blobs/uploads/?digest={d}"
        ))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);

    // Both owners hold it before the agents start (replication from the first owner).
    let owners = Cluster::fixed(origin_ids.clone(), R)
        .unwrap()
        .owners(d.raw());
    for owner in &owners {
        let url = format!("{}/v1/namespace/ring%2Fapp/blobs/{d}", owner.base_url);
        let (http, url) = (http.clone(), url.clone());
        shoal_runtime::wait::wait_until(Duration::from_secs(30), "replicated to owners", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.head(url)
                    .header("shoal-replica", "1")
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .await
        .unwrap();
    }

    // Twenty agents, capped like hosts with a NIC.
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let agent = Agent::bind(AgentConfig {
            listen: loopback,
            data_dir: dir.path().join(format!("agent{i}")),
            trackers: ring(&tracker_ids),
            build_index: Some(build_index_url.clone()),
            transport: TransportConfig {
                bandwidth: BandwidthConfig {
                    ingress_bytes_per_sec: Some(32 << 20),
                    egress_bytes_per_sec: Some(32 << 20),
                },
                ..TransportConfig::localhost()
            },
            ..AgentConfig::default()
        })
        .await
        .unwrap();
        agents.push(agent.local_addr());
        tokio::spawn(agent.run(root.child_token()));
    }
    let fetches: Vec<_> = agents
        .iter()
        .map(|addr| {
            let url = format!("http://{addr}/v1/namespaces/ring%2Fapp/blobs/{d}");
            tokio::spawn(async move {
                let resp = reqwest::get(url).await.map_err(|e| e.to_string())?;
                if resp.status() != 200 {
                    return Err(format!("status {}", resp.status()));
                }
                resp.bytes().await.map_err(|e| e.to_string())
            })
        })
        .collect();

    // Mid-transfer: a quarter of all bytes have arrived somewhere.
    let agent_bases: Vec<String> = agents.iter().map(|a| format!("http://{a}")).collect();
    let quarter = (AGENTS as f64) * (data.len() as f64) / 4.0;
    shoal_runtime::wait::wait_until(Duration::from_secs(120), "a quarter transferred", || {
        let bases = agent_bases.clone();
        async move {
            let mut total = 0.0;
            for b in &bases {
                total += metric(b, "shoal_agent_p2p_downloaded_bytes").await;
            }
            total >= quarter
        }
    })
    .await
    .unwrap();
    // Kill the blob's first owner and its torrent's tracker.
    let meta = http
        .get(format!(
            "{}/v1/namespace/ring%2Fapp/blobs/{d}/metainfo",
            owners[1].base_url
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let info_hash = MetaInfo::decode(&meta).unwrap().info_hash();
    let tracker_owner = Cluster::fixed(tracker_ids.clone(), R)
        .unwrap()
        .route(info_hash.as_bytes())[0]
        .id
        .clone();
    let dead_origin = origin_ids
        .iter()
        .position(|id| *id == owners[0].id)
        .unwrap();
    let dead_tracker = tracker_ids
        .iter()
        .position(|id| *id == tracker_owner)
        .unwrap();
    origin_tokens[dead_origin].cancel();
    tracker_tokens[dead_tracker].cancel();
    eprintln!(
        "killed origin {} and tracker {}",
        owners[0].id, tracker_owner
    );

    for f in fetches {
        let got = tokio::time::timeout(Duration::from_secs(240), f)
            .await
            .expect("every agent completes")
            .unwrap()
            .expect("fetch succeeds");
        assert!(got == data[..], "an agent got different bytes");
    }

    // Docker still pushes through the proxy and pulls through an agent, with one origin and
    // one tracker down.
    let docker_ok = std::process::Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if docker_ok {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../.ci/harness/docker-e2e.sh"
        );
        let push = format!("localhost:{}", proxy_addr.port());
        let pull = format!("localhost:{}", agents[3].port());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("bash")
                .args([script, &push, &pull, "16"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            stdout.contains("docker-e2e: 1 passed, 0 failed"),
            "{stdout}"
        );
    } else {
        assert!(
            std::env::var_os("SHOAL_SKIP_DOCKER").is_some(),
            "no Docker daemon (start one with .ci/harness/start-dockerd.sh, or set SHOAL_SKIP_DOCKER=1)"
        );
    }
    root.cancel();
}
