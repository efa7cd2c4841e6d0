//! Real swarms over real QUIC on loopback: an origin seeds, agents download from it and from
//! each other; a seeder serving corrupt data is detected and excluded.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_core::{Algorithm, Digest, InfoHash, MetaInfo, MetaInfoBuilder, PeerId};
use shoal_engine::{EngineConfig, PeerInfo, Role};
use shoal_p2p::{Resolver, Source, Swarm, SwarmConfig};
use shoal_store::{BlobStore, StoreConfig};
use shoal_testkit::pseudo_random_bytes as blob;
use shoal_transport::{Transport, TransportConfig};
use tokio_util::sync::CancellationToken;

const PIECE: u32 = 256 * 1024;

fn meta_of(data: &[u8]) -> MetaInfo {
    let mut b = MetaInfoBuilder::new(Algorithm::Sha256, PIECE).unwrap();
    b.update(data);
    b.finish(Digest::compute(Algorithm::Sha256, data)).unwrap()
}

/// Seeds whatever blob its store holds (as an origin does).
struct StoreResolver {
    store: BlobStore,
    meta: MetaInfo,
}

impl Resolver for StoreResolver {
    fn resolve(&self, info_hash: &InfoHash) -> Option<(MetaInfo, Source)> {
        (*info_hash == self.meta.info_hash()).then(|| {
            let reader = self.store.open_blob(&self.meta.digest()).unwrap();
            (self.meta.clone(), Source::Complete(Arc::new(reader)))
        })
    }
}

fn peer_id(i: u8) -> PeerId {
    PeerId::from_bytes([i; 32])
}

fn engine() -> EngineConfig {
    EngineConfig {
        request_timeout_min: Duration::from_secs(5),
        busy_retry: Duration::from_millis(200),
        ..EngineConfig::default()
    }
}

fn swarm(
    id: u8,
    role: Role,
    resolver: Option<Arc<dyn Resolver>>,
    token: &CancellationToken,
) -> Swarm {
    swarm_with(id, role, resolver, token, TransportConfig::localhost())
}

fn swarm_with(
    id: u8,
    role: Role,
    resolver: Option<Arc<dyn Resolver>>,
    token: &CancellationToken,
    transport: TransportConfig,
) -> Swarm {
    let (transport, acceptor) = Transport::bind(transport).unwrap();
    Swarm::start(
        transport,
        acceptor,
        SwarmConfig {
            peer_id: peer_id(id),
            role,
            engine: engine(),
            seed_idle: Duration::from_secs(60),
        },
        resolver,
        token.child_token(),
    )
}

fn store_with(dir: &Path, data: &[u8], meta: &MetaInfo) -> BlobStore {
    let store = BlobStore::open(dir, StoreConfig::default()).unwrap();
    let mut t = store.create_temp().unwrap();
    t.write(data).unwrap();
    store.commit(t, &meta.digest()).unwrap();
    store
}

fn origin_info(s: &Swarm) -> PeerInfo {
    PeerInfo {
        peer_id: s.peer_id(),
        addr: s.local_addr(),
        is_origin: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_download_from_an_origin_and_each_other() {
    let token = CancellationToken::new();
    let data = blob(8 << 20, 1);
    let meta = meta_of(&data);
    let dir = tempfile::tempdir().unwrap();
    let origin_store = store_with(&dir.path().join("origin"), &data, &meta);
    // The origin's uplink is capped (8 MiB/s) while agents are not, as origins are shared by
    // many hosts: agents must get most pieces from each other.
    let mut origin_transport = TransportConfig::localhost();
    origin_transport.bandwidth.egress_bytes_per_sec = Some(8 << 20);
    let origin = swarm_with(
        100,
        Role::Origin,
        Some(Arc::new(StoreResolver {
            store: origin_store,
            meta: meta.clone(),
        })),
        &token,
        origin_transport,
    );

    let n = 6u8;
    let mut agents = Vec::new();
    for i in 0..n {
        let store = BlobStore::open(
            &dir.path().join(format!("agent{i}")),
            StoreConfig::default(),
        )
        .unwrap();
        let s = swarm(i, Role::Agent, None, &token);
        agents.push((s, store));
    }
    let mut everyone: Vec<PeerInfo> = agents
        .iter()
        .map(|(s, _)| PeerInfo {
            peer_id: s.peer_id(),
            addr: s.local_addr(),
            is_origin: false,
        })
        .collect();
    // The origin first, as the tracker hands it out before peers still downloading: every
    // agent dials it at once.
    everyone.insert(0, origin_info(&origin));
    let mut handles = Vec::new();
    for (s, store) in &agents {
        let partial = store.partial(&meta).unwrap();
        let h = s.start_torrent(meta.clone(), Source::Partial(partial));
        h.add_peers(everyone.clone()).await;
        handles.push(h);
    }
    for h in &handles {
        let size = tokio::time::timeout(Duration::from_secs(60), h.wait_complete())
            .await
            .expect("completes in time")
            .unwrap();
        assert_eq!(size, data.len() as u64);
    }
    for (_, store) in &agents {
        let r = store.open_blob(&meta.digest()).unwrap();
        let mut got = vec![0u8; data.len()];
        r.read_at(0, &mut got).unwrap();
        assert!(got == data, "content matches");
    }
    let origin_up = origin.stats().uploaded.load(Ordering::Relaxed);
    let total_down: u64 = agents
        .iter()
        .map(|(s, _)| s.stats().downloaded.load(Ordering::Relaxed))
        .sum();
    assert_eq!(total_down, u64::from(n) * data.len() as u64);
    // Agents served part of the data to each other: the capped origin did not send every copy.
    assert!(
        origin_up < u64::from(n) * data.len() as u64,
        "origin uploaded {origin_up} of {total_down}"
    );
    // Six agents asking at once (two requests each) overflow the capped origin's upload
    // queue (one piece sending, four waiting): some requests were refused as busy, and every
    // agent still completed.
    let busy = origin.stats().busy_refusals.load(Ordering::Relaxed);
    assert!(busy > 0, "the origin refused nothing as busy");
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_seeder_is_excluded_and_download_completes() {
    let token = CancellationToken::new();
    let data = blob(4 << 20, 2);
    let meta = meta_of(&data);
    let dir = tempfile::tempdir().unwrap();
    let good = swarm(
        100,
        Role::Origin,
        Some(Arc::new(StoreResolver {
            store: store_with(&dir.path().join("good"), &data, &meta),
            meta: meta.clone(),
        })),
        &token,
    );
    // A seeder whose file was tampered with after it was verified: it serves bad bytes.
    let bad_store = store_with(&dir.path().join("bad"), &data, &meta);
    let hex = meta.digest().hex();
    let path = dir
        .path()
        .join("bad/blobs/sha256")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex);
    let mut tampered = data.clone();
    for b in tampered.iter_mut().step_by(1000) {
        *b ^= 0xff;
    }
    std::fs::write(&path, &tampered).unwrap();
    let bad = swarm(
        101,
        Role::Origin,
        Some(Arc::new(StoreResolver {
            store: bad_store,
            meta: meta.clone(),
        })),
        &token,
    );
    let store = BlobStore::open(&dir.path().join("agent"), StoreConfig::default()).unwrap();
    let agent = swarm(1, Role::Agent, None, &token);
    let h = agent.start_torrent(meta.clone(), Source::Partial(store.partial(&meta).unwrap()));
    // The bad seeder first, so it gets requests.
    h.add_peers(vec![origin_info(&bad), origin_info(&good)])
        .await;
    tokio::time::timeout(Duration::from_secs(60), h.wait_complete())
        .await
        .expect("completes in time")
        .unwrap();
    let r = store.open_blob(&meta.digest()).unwrap();
    let mut got = vec![0u8; data.len()];
    r.read_at(0, &mut got).unwrap();
    assert!(got == data);
    token.cancel();
}
