//! An in-process cluster on loopback, port 0 everywhere: a tracker, an origin and 20 agents
//! fetch the same 64 MiB blob concurrently over real QUIC. Also: an agent killed mid-transfer,
//! a malicious peer serving corrupt data, an agent restarted mid-download.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shoal_agent::{Agent, AgentConfig};
use shoal_core::{Algorithm, Digest, InfoHash, MetaInfo, PeerId};
use shoal_origin::{Origin, OriginConfig};
use shoal_p2p::{Resolver, Source, Swarm, SwarmConfig};
use shoal_testkit::{metric, pseudo_random_bytes as blob};
use shoal_tracker::{Tracker, TrackerConfig};
use shoal_transport::{Transport, TransportConfig};
use tokio_util::sync::CancellationToken;

struct Cluster {
    token: CancellationToken,
    tracker_url: String,
    origin_url: String,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Cluster {
    async fn start(dir: &Path) -> Self {
        let token = CancellationToken::new();
        let mut origin_config = OriginConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.join("origin"),
            piece_length: 1 << 20,
            ..OriginConfig::default()
        };
        origin_config.p2p.transport = TransportConfig::localhost();
        // Origins serve many hosts: a capped uplink (32 MiB/s) makes the swarm, not the
        // origin, carry most of the data, as in production.
        origin_config.p2p.transport.bandwidth.egress_bytes_per_sec = Some(32 << 20);
        let origin = Origin::bind(origin_config).await.unwrap();
        let origin_url = format!("http://{}", origin.local_addr());
        let tracker = Tracker::bind(TrackerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            origins: shoal_cluster::ClusterConfig::with_members([origin_url.clone()]),
            announce_interval: Duration::from_millis(500),
            ..TrackerConfig::default()
        })
        .await
        .unwrap();
        let tracker_url = format!("http://{}", tracker.local_addr());
        let tasks = vec![
            tokio::spawn(origin.run(token.child_token())),
            tokio::spawn(tracker.run(token.child_token())),
        ];
        Self {
            token,
            tracker_url,
            origin_url,
            tasks,
        }
    }

    fn agent_config(&self, dir: &Path) -> AgentConfig {
        AgentConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.to_owned(),
            trackers: shoal_cluster::ClusterConfig::with_members([self.tracker_url.clone()]),
            transport: TransportConfig::localhost(),
            ..AgentConfig::default()
        }
    }

    async fn agent(&mut self, config: AgentConfig) -> (String, CancellationToken) {
        let agent = Agent::bind(config).await.unwrap();
        let url = format!("http://{}", agent.local_addr());
        let token = self.token.child_token();
        self.tasks.push(tokio::spawn(agent.run(token.clone())));
        (url, token)
    }

    async fn push(&self, ns: &str, data: &[u8]) -> Digest {
        let d = Digest::compute(Algorithm::Sha256, data);
        let resp = reqwest::Client::new()
            .put(format!(
                "{}/v1/namespace/{}/blobs/{d}",
                self.origin_url,
                ns.replace('/', "%2F")
            ))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        d
    }

    async fn stop(self) {
        self.token.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

/// Shows the services' warnings and errors (a failed download says why there), unless
/// `RUST_LOG` asks for more.
fn warnings_to_stderr() {
    shoal_runtime::telemetry::init(&shoal_runtime::telemetry::LogConfig {
        filter: "warn".into(),
        ..Default::default()
    });
}

async fn wait_metric(base: &str, name: &str, what: &str, pred: impl Fn(f64) -> bool) {
    let pred = &pred;
    shoal_runtime::wait::wait_until(Duration::from_secs(120), what, || async move {
        pred(metric(base, name).await)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_agents_fetch_one_blob_one_is_killed() {
    warnings_to_stderr();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path()).await;
    let data = blob(64 << 20, 7);
    let d = cluster.push("library/big", &data).await;

    let mut agents = Vec::new();
    for i in 0..20 {
        let config = cluster.agent_config(&dir.path().join(format!("agent{i}")));
        agents.push(cluster.agent(config).await);
    }
    let mut fetches = Vec::new();
    for (url, _) in &agents {
        let url = url.clone();
        fetches.push(tokio::spawn(async move {
            fetch_raw(&url, "library/big", &d).await
        }));
    }
    // Kill one agent once it is part-way through; the others must not notice.
    let (victim_url, victim_token) = &agents[0];
    wait_metric(
        victim_url,
        "shoal_agent_p2p_downloaded_bytes",
        "victim started",
        |v| v > 0.0,
    )
    .await;
    victim_token.cancel();
    let mut fetches = fetches.into_iter();
    let _ = fetches.next(); // the victim's own request may fail
    for (i, f) in fetches.enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(300), f)
            .await
            .unwrap()
            .unwrap();
        let got = got.unwrap_or_else(|e| panic!("agent {} ({}): {e}", i + 1, agents[i + 1].0));
        assert_eq!(Digest::compute(Algorithm::Sha256, &got), d);
    }
    let origin_up = metric(&cluster.origin_url, "shoal_origin_p2p_uploaded_bytes").await;
    let blob_len = data.len() as f64;
    eprintln!(
        "origin uploaded {:.2} copies for 20 agents",
        origin_up / blob_len
    );
    assert!(
        origin_up <= 6.0 * blob_len,
        "origin uploaded {:.1} copies for 20 agents",
        origin_up / blob_len
    );
    cluster.stop().await;
}

async fn fetch_raw(agent: &str, ns: &str, d: &Digest) -> Result<Vec<u8>, String> {
    let resp = reqwest::get(format!(
        "{agent}/v1/namespaces/{}/blobs/{d}",
        ns.replace('/', "%2F")
    ))
    .await
    .map_err(|e| shoal_core::error_chain(&e))?;
    if resp.status() != 200 {
        return Err(format!(
            "{}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        ));
    }
    Ok(resp
        .bytes()
        .await
        .map_err(|e| shoal_core::error_chain(&e))?
        .to_vec())
}

/// Serves a tampered copy of the blob.
struct Liar {
    meta: MetaInfo,
    file: std::path::PathBuf,
    size: u64,
}

impl Resolver for Liar {
    fn resolve(&self, info_hash: &InfoHash) -> Option<(MetaInfo, Source)> {
        if *info_hash != self.meta.info_hash() {
            return None;
        }
        let store_dir = self.file.parent().unwrap().join("liar-store");
        let store =
            shoal_store::BlobStore::open(&store_dir, shoal_store::StoreConfig::default()).unwrap();
        let digest = self.meta.digest();
        if store.stat(&digest).is_none() {
            // Commit the real content, then tamper with the file behind the store's back.
            let real = std::fs::read(&self.file).unwrap();
            let mut t = store.create_temp().unwrap();
            t.write(&real).unwrap();
            store.commit(t, &digest).unwrap();
            let hex = digest.hex();
            let path = store_dir
                .join("blobs/sha256")
                .join(&hex[..2])
                .join(&hex[2..4])
                .join(&hex);
            let mut bad = real;
            for b in bad.iter_mut().step_by(4096) {
                *b ^= 0x5a;
            }
            std::fs::write(path, bad).unwrap();
        }
        let reader = store.open_blob(&digest).unwrap();
        assert_eq!(reader.size(), self.size);
        Some((self.meta.clone(), Source::Complete(Arc::new(reader))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_peer_is_detected_and_excluded() {
    warnings_to_stderr();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path()).await;
    let data = blob(16 << 20, 8);
    let d = cluster.push("team/app", &data).await;
    let meta_bytes = reqwest::get(format!(
        "{}/v1/namespace/team%2Fapp/blobs/{d}/metainfo",
        cluster.origin_url
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let meta = MetaInfo::decode(&meta_bytes).unwrap();
    let real = dir.path().join("real.bin");
    std::fs::write(&real, &data).unwrap();

    // The liar announces itself as a complete agent: the tracker hands it out first.
    let (transport, acceptor) = Transport::bind(TransportConfig::localhost()).unwrap();
    let liar_id = PeerId::from_bytes([0xee; 32]);
    let liar = Swarm::start(
        transport,
        acceptor,
        SwarmConfig {
            peer_id: liar_id,
            role: shoal_engine::Role::Agent,
            engine: shoal_engine::EngineConfig::default(),
            seed_idle: Duration::from_secs(60),
        },
        Some(Arc::new(Liar {
            meta: meta.clone(),
            file: real,
            size: data.len() as u64,
        })),
        cluster.token.child_token(),
    );
    let channel = tonic::transport::Endpoint::from_shared(cluster.tracker_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut tracker = shoal_tracker::proto::tracker_client::TrackerClient::new(channel);
    tracker
        .announce(shoal_tracker::proto::AnnounceRequest {
            info_hash: meta.info_hash().as_bytes().to_vec(),
            peer_id: liar_id.as_bytes().to_vec(),
            ip: "127.0.0.1".into(),
            port: u32::from(liar.local_addr().port()),
            bytes_done: data.len() as u64,
            complete: true,
            is_origin: false,
            event: 1,
            namespace: "team/app".into(),
            digest: d.to_string(),
        })
        .await
        .unwrap();

    let mut urls = Vec::new();
    for i in 0..4 {
        let config = cluster.agent_config(&dir.path().join(format!("agent{i}")));
        urls.push(cluster.agent(config).await.0);
    }
    let mut fetches = Vec::new();
    for url in &urls {
        let url = url.clone();
        fetches.push(tokio::spawn(async move {
            fetch_raw(&url, "team/app", &d).await
        }));
    }
    for f in fetches {
        let got = tokio::time::timeout(Duration::from_secs(120), f)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(Digest::compute(Algorithm::Sha256, &got), d);
    }
    assert!(
        liar.stats()
            .uploaded
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the liar was asked for pieces (and its corrupt pieces were rejected)"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_agent_resumes_its_download() {
    warnings_to_stderr();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path()).await;
    let data = blob(32 << 20, 9);
    let d = cluster.push("a", &data).await;
    let agent_dir = dir.path().join("agent");
    let mut config = cluster.agent_config(&agent_dir);
    // Slow enough (4 MiB/s) to stop it half-way.
    config.transport.bandwidth.ingress_bytes_per_sec = Some(4 << 20);
    let (url, token) = cluster.agent(config.clone()).await;
    let first = {
        let url = url.clone();
        tokio::spawn(async move { fetch_raw(&url, "a", &d).await })
    };
    wait_metric(
        &url,
        "shoal_agent_p2p_downloaded_bytes",
        "a third downloaded",
        |v| v >= (10 << 20) as f64,
    )
    .await;
    token.cancel();
    let _ = first.await;
    // Same data dir, fresh process state, no cap.
    config.transport.bandwidth.ingress_bytes_per_sec = None;
    let (url, _) = cluster.agent(config).await;
    let got = fetch_raw(&url, "a", &d).await.unwrap();
    assert_eq!(Digest::compute(Algorithm::Sha256, &got), d);
    let fetched_again = metric(&url, "shoal_agent_p2p_downloaded_bytes").await;
    assert!(
        fetched_again <= (data.len() - (8 << 20)) as f64,
        "resumed: fetched {fetched_again} of {} bytes after the restart",
        data.len()
    );
    cluster.stop().await;
}
