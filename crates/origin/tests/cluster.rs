//! Origins in a cluster: uploads reach their R owners, repair moves blobs when members join
//! and leave (from siblings, not the backend), a flapping member causes no loss and no
//! unbounded traffic, an origin outside the ring hands over what only it holds, and
//! replication survives an outage and restarts.
//!
//! Every origin gets a `Cluster::fixed` the test controls with `set_static_members`; each has
//! its own filesystem backend, so a blob copied from the backend would show in its
//! `backend_fetches`. "Holds" means "answers `HEAD` with `Shoal-Replica: 1`": cached, under the
//! namespace.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestOrigin, config, data, sha256};
use shoal_cluster::Cluster;
use shoal_core::Digest;
use shoal_origin::OriginConfig;

const R: usize = 2;

struct Blob {
    ns: &'static str,
    data: Vec<u8>,
    digest: Digest,
}

struct Member {
    origin: TestOrigin,
    cluster: Cluster,
    id: String,
}

struct Fleet {
    members: Vec<Member>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn tuned(dir: &std::path::Path, drop_grace: Duration) -> OriginConfig {
    let mut c = config(dir);
    c.p2p.enabled = false;
    c.replication.initial_backoff = Duration::from_millis(50);
    c.replication.max_backoff = Duration::from_millis(200);
    c.repair.interval = Duration::from_millis(300);
    c.repair.debounce = Duration::from_millis(50);
    c.repair.drop_grace = drop_grace;
    c.repair.bandwidth_bytes_per_sec = 64 << 20;
    c
}

impl Fleet {
    /// `n` origins with empty rings (members are set by the test).
    async fn start(n: usize, drop_grace: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut members = Vec::new();
        for i in 0..n {
            let cluster = Cluster::fixed(Vec::new(), R).unwrap();
            let cfg = tuned(&dir.path().join(format!("o{i}")), drop_grace);
            let origin = TestOrigin::start_in(cfg, cluster.clone()).await;
            let id = origin.addr();
            members.push(Member {
                origin,
                cluster,
                id,
            });
        }
        Self {
            members,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Makes `ring` (indices) the membership, as every origin sees it.
    fn set_ring(&self, ring: &[usize]) {
        let ids: Vec<String> = ring.iter().map(|&i| self.members[i].id.clone()).collect();
        for m in &self.members {
            m.cluster.set_static_members(&ids).unwrap();
        }
    }

    /// The owners of `d` in a ring of `ring` (indices).
    fn owners(&self, ring: &[usize], d: &Digest) -> BTreeSet<usize> {
        let ids: Vec<String> = ring.iter().map(|&i| self.members[i].id.clone()).collect();
        let view = Cluster::fixed(ids, R).unwrap();
        view.owners(d.raw())
            .iter()
            .map(|n| self.members.iter().position(|m| m.id == n.id).unwrap())
            .collect()
    }

    async fn holds(&self, i: usize, b: &Blob) -> bool {
        let resp = self
            .http
            .head(self.members[i].origin.blob_url(b.ns, &b.digest))
            .header("shoal-replica", "1")
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => true,
            404 => false,
            s => panic!("HEAD answered {s}"),
        }
    }

    /// The origins holding `b`, asked in `order`.
    async fn holders(&self, b: &Blob, order: &[usize]) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        for &i in order {
            if self.holds(i, b).await {
                out.insert(i);
            }
        }
        out
    }

    /// Waits until every blob is held by exactly its owners in `ring`. With `min_copies`,
    /// asserts at every poll that no blob has fewer copies. Scanning `order` one origin after
    /// another is not atomic: put the origins that may drop copies before those that may gain
    /// them, so a copy that moves during a scan is counted (at its source).
    async fn converge(&self, blobs: &[Blob], ring: &[usize], order: &[usize], min_copies: usize) {
        let owners: Vec<BTreeSet<usize>> =
            blobs.iter().map(|b| self.owners(ring, &b.digest)).collect();
        shoal_runtime::wait::wait_until(
            Duration::from_secs(15),
            "blobs on exactly their owners",
            || {
                let owners = &owners;
                async move {
                    let mut done = true;
                    for (b, owners) in blobs.iter().zip(owners) {
                        let holders = self.holders(b, order).await;
                        assert!(
                            holders.len() >= min_copies,
                            "{} has {} copies ({holders:?}), fewer than {min_copies}",
                            b.digest,
                            holders.len()
                        );
                        done &= holders == *owners;
                    }
                    done
                }
            },
        )
        .await
        .unwrap();
    }

    /// A metric summed over the origins `which`.
    async fn sum(&self, which: &[usize], name: &str) -> f64 {
        let mut total = 0.0;
        for &i in which {
            total += self.members[i].origin.metric(name).await;
        }
        total
    }

    /// Every blob's content, read back from its first owner.
    async fn verify_contents(&self, blobs: &[Blob], ring: &[usize]) {
        for b in blobs {
            let owner = *self.owners(ring, &b.digest).first().unwrap();
            let resp = self.members[owner].origin.get_blob(b.ns, &b.digest).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.bytes().await.unwrap(), b.data, "{}", b.digest);
        }
    }

    async fn stop(self) {
        for m in self.members {
            m.origin.stop().await;
        }
    }
}

fn blobs(n: usize, seed: u64) -> Vec<Blob> {
    (0..n)
        .map(|i| {
            let data = data(1000 + (i * 7919) % 60_000, seed + i as u64);
            let digest = sha256(&data);
            Blob {
                ns: if i % 3 == 0 { "team/app" } else { "base" },
                data,
                digest,
            }
        })
        .collect()
}

const COPIED: &str = "shoal_origin_repair_blobs_copied_total";
const BYTES: &str = "shoal_origin_repair_bytes_copied_total";
const DROPPED: &str = "shoal_origin_repair_blobs_dropped_total";
const HANDOFFS: &str = "shoal_origin_repair_handoffs_total";
const FETCHES: &str = "shoal_origin_backend_fetches_total";

#[tokio::test]
async fn uploads_reach_owners_and_repair_follows_membership() {
    let fleet = Fleet::start(4, Duration::from_secs(1)).await;
    let (abc, abcd) = ([0, 1, 2], [0, 1, 2, 3]);
    let all = [0, 1, 2, 3];
    fleet.set_ring(&abc);

    // (i) Uploads to any origin end up on their R owners, and only there.
    let blobs = blobs(40, 100);
    for (i, b) in blobs.iter().enumerate() {
        fleet.members[i % 3].origin.put_blob(b.ns, &b.data).await;
    }
    fleet.converge(&blobs, &abc, &all, 0).await;
    assert_eq!(
        fleet.sum(&all, "shoal_origin_store_blobs").await,
        (40 * R) as f64
    );

    // (ii) A fourth origin joins: it copies the blobs it now owns from its siblings; each
    // origin it displaces drops its copy once the new owners hold it. Never fewer than R.
    let moved: Vec<&Blob> = blobs
        .iter()
        .filter(|b| fleet.owners(&abcd, &b.digest).contains(&3))
        .collect();
    let moved_bytes: usize = moved.iter().map(|b| b.data.len()).sum();
    assert!(
        (8..=32).contains(&moved.len()),
        "the newcomer owns {} of 40 blobs; R/N = 1/2",
        moved.len()
    );
    let before = (fleet.sum(&all, COPIED).await, fleet.sum(&all, BYTES).await);
    let handoffs = fleet.sum(&all, HANDOFFS).await;
    let dropped = fleet.sum(&abc, DROPPED).await;
    fleet.set_ring(&abcd);
    fleet.converge(&blobs, &abcd, &[0, 1, 2, 3], R).await;
    let copied_by_d = fleet.members[3].origin.metric(COPIED).await;
    let handed = fleet.sum(&all, HANDOFFS).await - handoffs;
    let copied = fleet.sum(&all, COPIED).await - before.0;
    let bytes = fleet.sum(&all, BYTES).await - before.1;
    println!(
        "join: newcomer owns {} blobs ({moved_bytes} bytes); repair copied {copied} blobs, \
         {bytes} bytes; handoffs {handed}",
        moved.len()
    );
    assert!(copied_by_d <= moved.len() as f64);
    assert!(copied_by_d + handed >= moved.len() as f64);
    assert_eq!(copied, copied_by_d, "only the newcomer gained blobs");
    assert!(bytes <= moved_bytes as f64);
    assert_eq!(
        fleet.sum(&abc, DROPPED).await - dropped,
        moved.len() as f64,
        "each moved blob displaced one owner"
    );
    assert_eq!(
        fleet.members[3].origin.metric(FETCHES).await,
        0.0,
        "the newcomer copied from siblings, not from its backend"
    );

    // (iii) It leaves again: its blobs get back to R copies among the others, then it drops
    // them (it hands them over if it must: the others no longer list it).
    let before = fleet.sum(&abc, COPIED).await;
    let handoffs = fleet.members[3].origin.metric(HANDOFFS).await;
    let dropped = fleet.members[3].origin.metric(DROPPED).await;
    fleet.set_ring(&abc);
    fleet.converge(&blobs, &abc, &[3, 0, 1, 2], R).await;
    let copied = fleet.sum(&abc, COPIED).await - before;
    let handed = fleet.members[3].origin.metric(HANDOFFS).await - handoffs;
    println!("leave: others copied {copied} blobs; the leaver handed off {handed}");
    assert!(copied <= moved.len() as f64 && copied + handed >= moved.len() as f64);
    assert_eq!(
        fleet.members[3].origin.metric(DROPPED).await - dropped,
        moved.len() as f64
    );
    assert_eq!(
        fleet.members[3]
            .origin
            .metric("shoal_origin_store_blobs")
            .await,
        0.0
    );
    assert_eq!(
        fleet.sum(&all, FETCHES).await,
        0.0,
        "no backend fetch anywhere"
    );
    fleet.verify_contents(&blobs, &abc).await;
    fleet.stop().await;
}

#[tokio::test]
async fn a_flapping_member_loses_nothing_and_moves_data_once() {
    // A drop grace longer than the flapping: nobody drops a copy while the member comes and
    // goes, so the newcomer's copies are made once and kept.
    let fleet = Fleet::start(4, Duration::from_secs(3)).await;
    let (abc, abcd) = ([0, 1, 2], [0, 1, 2, 3]);
    let all = [0, 1, 2, 3];
    fleet.set_ring(&abc);
    let blobs = blobs(30, 500);
    for b in &blobs {
        // Upload to the first owner: no non-owner copies to clean up.
        let first = *fleet.owners(&abc, &b.digest).first().unwrap();
        fleet.members[first].origin.put_blob(b.ns, &b.data).await;
    }
    fleet.converge(&blobs, &abc, &all, 0).await;

    let moved: Vec<&Blob> = blobs
        .iter()
        .filter(|b| fleet.owners(&abcd, &b.digest).contains(&3))
        .collect();
    let moved_bytes: usize = moved.iter().map(|b| b.data.len()).sum();
    let dropped = fleet.sum(&abc, DROPPED).await;
    let before = (
        fleet.sum(&all, COPIED).await,
        fleet.sum(&all, BYTES).await,
        fleet.sum(&all, HANDOFFS).await,
    );
    // In, out, in, … (9 changes, ending in): faster than the grace, slower than the debounce.
    for flip in 0..9 {
        fleet.set_ring(if flip % 2 == 0 { &abcd } else { &abc });
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    fleet.converge(&blobs, &abcd, &[0, 1, 2, 3], R).await;
    let copied = fleet.sum(&all, COPIED).await - before.0;
    let bytes = fleet.sum(&all, BYTES).await - before.1;
    let handed = fleet.sum(&all, HANDOFFS).await - before.2;
    println!(
        "flapping: newcomer owns {} blobs ({moved_bytes} bytes); repair copied {copied} blobs, \
         {bytes} bytes; handoffs {handed}; passes {}",
        moved.len(),
        fleet.sum(&all, "shoal_origin_repair_passes_total").await
    );
    assert!(copied + handed >= moved.len() as f64);
    assert!(
        bytes <= 2.0 * moved_bytes as f64,
        "repair traffic {bytes} B for {moved_bytes} B that moved"
    );
    assert_eq!(fleet.sum(&abc, DROPPED).await - dropped, moved.len() as f64);
    assert_eq!(fleet.sum(&all, FETCHES).await, 0.0);
    fleet.verify_contents(&blobs, &abcd).await;
    fleet.stop().await;
}

#[tokio::test]
async fn replication_waits_out_an_outage_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    // Repair runs once at start, then rarely: this test is about the replication queue.
    let cfg = |name: &str, listen: &str| {
        let mut c = tuned(&dir.path().join(name), Duration::from_secs(60));
        c.repair.interval = Duration::from_secs(3600);
        c.listen = listen.parse().unwrap();
        c
    };
    let start = |c: OriginConfig, ids: Vec<String>| async move {
        let cluster = Cluster::fixed(ids, R).unwrap();
        let o = TestOrigin::start_in(c, cluster.clone()).await;
        (o, cluster)
    };
    let (a, ca) = start(cfg("a", "127.0.0.1:0"), Vec::new()).await;
    let (b, cb) = start(cfg("b", "127.0.0.1:0"), Vec::new()).await;
    let ids = vec![a.addr(), b.addr()];
    ca.set_static_members(&ids).unwrap();
    cb.set_static_members(&ids).unwrap();
    let (a_addr, b_addr) = (a.addr(), b.addr());

    // B is down: the upload to A is acknowledged after A's durable copy; the copy to B waits.
    b.stop().await;
    let blob = data(200_000, 9);
    let d = a.put_blob("base", &blob).await;
    a.wait_metric("shoal_origin_replication_failures_total", "retries", |v| {
        v >= 2.0
    })
    .await;
    assert_eq!(a.metric("shoal_origin_replication_queue_depth").await, 1.0);
    a.stop().await;

    // B comes back (and finds nobody to repair from); then A, whose queue resumes.
    let (b, _cb) = start(cfg("b", &b_addr), ids.clone()).await;
    b.wait_metric("shoal_origin_repair_passes_total", "B's first pass", |v| {
        v >= 1.0
    })
    .await;
    let (a, _ca) = start(cfg("a", &a_addr), ids.clone()).await;
    a.wait_metric(
        "shoal_origin_replication_queue_depth",
        "queue drained",
        |v| v == 0.0,
    )
    .await;
    let resp = reqwest::Client::new()
        .get(b.blob_url("base", &d))
        .header("shoal-replica", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), blob);
    assert_eq!(b.metric(COPIED).await, 0.0, "replicated, not repaired");
    assert_eq!(
        b.metric("shoal_origin_replication_completed_total").await,
        0.0,
        "a replica is not replicated further"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_origin_outside_the_ring_hands_over_what_only_it_holds() {
    let fleet = Fleet::start(4, Duration::from_millis(300)).await;
    let (abc, all) = ([0, 1, 2], [0, 1, 2, 3]);
    // Origin 3 is not a member (as after it left): nobody lists it, so nobody pulls from it.
    fleet.set_ring(&abc);
    // Blobs only it holds (stored as replicas, so it does not replicate them itself).
    let blobs = blobs(6, 900);
    for b in &blobs {
        let resp = fleet
            .http
            .put(fleet.members[3].origin.blob_url(b.ns, &b.digest))
            .header("shoal-replica", "1")
            .body(b.data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    // It pushes each to its owners, then drops its copies; never fewer than one copy.
    fleet.converge(&blobs, &abc, &[3, 0, 1, 2], 1).await;
    let m = &fleet.members[3].origin;
    assert_eq!(m.metric(HANDOFFS).await, (blobs.len() * R) as f64);
    assert_eq!(m.metric(DROPPED).await, blobs.len() as f64);
    assert_eq!(fleet.sum(&all, FETCHES).await, 0.0);
    fleet.verify_contents(&blobs, &abc).await;
    fleet.stop().await;
}
