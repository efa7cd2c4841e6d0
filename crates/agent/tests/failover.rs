//! The trackers' ring from the agents' side: agents spread over two trackers by info hash;
//! the tracker that owns a torrent dies mid-transfer; every agent fails over to the other
//! tracker, which rebuilds the torrent's peer list from their announces within seconds, and
//! every download completes.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use shoal_agent::{Agent, AgentConfig};
use shoal_cluster::{Cluster, ClusterConfig, HealthConfig};
use shoal_core::{Algorithm, Digest, MetaInfo};
use shoal_origin::{Origin, OriginConfig};
use shoal_testkit::{metric, pseudo_random_bytes};
use shoal_tracker::{Tracker, TrackerConfig};
use shoal_transport::TransportConfig;
use tokio_util::sync::CancellationToken;

const AGENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_fail_over_to_the_next_tracker_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let root = CancellationToken::new();

    // One origin, capped so that the transfer lasts long enough to kill a tracker mid-way.
    let mut origin_config = OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("origin"),
        piece_length: 1 << 20,
        ..OriginConfig::default()
    };
    origin_config.p2p.transport = TransportConfig::localhost();
    origin_config.p2p.transport.bandwidth.egress_bytes_per_sec = Some(8 << 20);
    let origin = Origin::bind(origin_config).await.unwrap();
    let origin_url = format!("http://{}", origin.local_addr());
    tokio::spawn(origin.run(root.child_token()));

    // Two trackers, each with its own token so one can die.
    let mut trackers = Vec::new();
    for _ in 0..2 {
        let t = Tracker::bind(TrackerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            origins: ClusterConfig::with_members([origin_url.clone()]),
            announce_interval: Duration::from_millis(500),
            ..TrackerConfig::default()
        })
        .await
        .unwrap();
        let addr = t.local_addr().to_string();
        let token = root.child_token();
        tokio::spawn(t.run(token.clone()));
        trackers.push((addr, token));
    }
    let tracker_ids: Vec<String> = trackers.iter().map(|(a, _)| a.clone()).collect();

    let data = pseudo_random_bytes(24 << 20, 5);
    let d = Digest::compute(Algorithm::Sha256, &data);
    let http = reqwest::Client::new();
    let resp = http
        .put(format!("{origin_url}/v1/namespace/ring/blobs/{d}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // Which tracker owns the torrent (the agents compute the same ring).
    let meta = http
        .get(format!("{origin_url}/v1/namespace/ring/blobs/{d}/metainfo"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let info_hash = MetaInfo::decode(&meta).unwrap().info_hash();
    let ring = Cluster::fixed(tracker_ids.clone(), 3).unwrap();
    let owner = ring.route(info_hash.as_bytes())[0].id.clone();
    let (owner_idx, survivor_idx) = if owner == tracker_ids[0] {
        (0, 1)
    } else {
        (1, 0)
    };

    let health = HealthConfig {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        fall: 2,
        rise: 2,
        ..HealthConfig::default()
    };
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let config = AgentConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join(format!("agent{i}")),
            trackers: ClusterConfig {
                health: health.clone(),
                ..ClusterConfig::with_members(tracker_ids.clone())
            },
            transport: TransportConfig {
                bandwidth: shoal_transport::BandwidthConfig {
                    ingress_bytes_per_sec: Some(8 << 20),
                    egress_bytes_per_sec: Some(8 << 20),
                },
                ..TransportConfig::localhost()
            },
            ..AgentConfig::default()
        };
        let agent = Agent::bind(config).await.unwrap();
        let url = format!("http://{}", agent.local_addr());
        tokio::spawn(agent.run(root.child_token()));
        agents.push(url);
    }
    let fetches: Vec<_> = agents
        .iter()
        .map(|url| {
            let url = format!("{url}/v1/namespaces/ring/blobs/{d}");
            tokio::spawn(async move {
                let resp = reqwest::get(url).await.map_err(|e| e.to_string())?;
                if resp.status() != 200 {
                    return Err(format!("status {}", resp.status()));
                }
                resp.bytes().await.map_err(|e| e.to_string())
            })
        })
        .collect();

    // All agents announce to the owner first.
    let owner_base = format!("http://{}", tracker_ids[owner_idx]);
    let survivor_base = format!("http://{}", tracker_ids[survivor_idx]);
    shoal_runtime::wait::wait_until(Duration::from_secs(60), "agents on the owner", || {
        let owner_base = owner_base.clone();
        async move { metric(&owner_base, "shoal_tracker_peers").await >= AGENTS as f64 }
    })
    .await
    .unwrap();
    assert_eq!(metric(&survivor_base, "shoal_tracker_peers").await, 0.0);

    // Kill the owner mid-transfer; the survivor must learn every agent from announces.
    trackers[owner_idx].1.cancel();
    let killed = Instant::now();
    shoal_runtime::wait::wait_until(Duration::from_secs(30), "agents on the survivor", || {
        let survivor_base = survivor_base.clone();
        async move { metric(&survivor_base, "shoal_tracker_peers").await >= AGENTS as f64 }
    })
    .await
    .unwrap();
    let recovery = killed.elapsed();
    eprintln!("the surviving tracker knew all {AGENTS} agents {recovery:?} after the kill");

    for f in fetches {
        let got = tokio::time::timeout(Duration::from_secs(120), f)
            .await
            .unwrap()
            .unwrap()
            .expect("fetch succeeds after the tracker failover");
        assert_eq!(Digest::compute(Algorithm::Sha256, &got), d);
    }
    root.cancel();
}
