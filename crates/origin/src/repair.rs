//! Repair (anti-entropy): each origin of a cluster converges on holding the blobs it owns, and
//! only those.
//!
//! A pass runs at start, after every membership change (debounced by `repair.debounce`; a
//! change of health alone triggers nothing: ownership ignores health, so a flapping member
//! moves no data) and every `repair.interval`:
//!
//! 1. **Pull.** Page through every healthy sibling's cache listing (`GET /v1/blobs`). Each blob
//!    this origin owns but lacks is copied from that sibling (`GET` with `Shoal-Replica`,
//!    streamed into a temporary blob, verified, committed, its namespaces recorded and written
//!    back to this origin's backend); if the sibling fails, it is fetched from the backend of
//!    one of its namespaces instead.
//! 2. **Drop.** Each cached blob this origin does not own, once it has been a non-owner for
//!    `repair.drop_grace` continuously (as far as passes saw), is checked on every owner
//!    (`HEAD` per namespace with `Shoal-Replica`). When all of them hold it, it is deleted from
//!    the local cache only (never from a backend; never while a write-back or replication task
//!    pins it). Owners that lack it get it pushed through the replication queue instead (a
//!    *handoff*): that is how an origin that left the cluster, which its former siblings no
//!    longer list, still hands its blobs over before dropping them.
//!
//! Copies run at most `repair.concurrency` at a time and share a `repair.bandwidth_bytes_per_sec`
//! byte budget; owner checks are bounded by the same concurrency.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use shoal_cluster::Node;
use shoal_core::{Digest, RepoName};
use shoal_origin_client::{BlobEntry, OriginClient};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::bandwidth::Bandwidth;
use crate::blobs::{Arrival, Blobs, blocking};
use crate::config::RepairConfig;
use crate::peers::Peers;
use crate::replicate::Replication;
use crate::sink;

/// Blobs per listing page, local or remote.
const PAGE: usize = 1000;

/// Repair metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct RepairMetrics {
    pub(crate) passes: Counter,
    pub(crate) blobs_copied: Counter,
    pub(crate) bytes_copied: Counter,
    pub(crate) copy_failures: Counter,
    pub(crate) blobs_dropped: Counter,
    pub(crate) handoffs: Counter,
}

/// The repair task's state.
#[derive(Debug)]
pub(crate) struct Repair {
    blobs: Arc<Blobs>,
    replication: Replication,
    config: RepairConfig,
    bandwidth: Bandwidth,
    metrics: RepairMetrics,
}

impl Repair {
    pub(crate) fn new(
        blobs: Arc<Blobs>,
        replication: Replication,
        config: RepairConfig,
        metrics: RepairMetrics,
    ) -> Self {
        Self {
            blobs,
            replication,
            bandwidth: Bandwidth::new(config.bandwidth_bytes_per_sec),
            config,
            metrics,
        }
    }

    fn peers(&self) -> &Arc<Peers> {
        self.replication.peers()
    }

    /// Runs passes until `shutdown`; a pass in progress is abandoned (copies in flight are
    /// discarded, nothing half-written becomes visible).
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let peers = Arc::clone(this.peers());
        let mut changes = peers.cluster().changes();
        let mut watching = true;
        // The first tick is immediate: a pass at start catches up with what changed while
        // this origin was down.
        let mut tick = tokio::time::interval(this.config.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut non_owner_since: HashMap<Digest, Instant> = HashMap::new();
        let mut last_members: Option<Vec<String>> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                changed = changes.changed(), if watching => {
                    if changed.is_err() {
                        watching = false;
                        continue;
                    }
                    if last_members.as_ref() == Some(&peers.member_ids()) {
                        continue; // health only
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(this.config.debounce) => {}
                    }
                    changes.borrow_and_update();
                    if last_members.as_ref() == Some(&peers.member_ids()) {
                        continue; // flapped back within the debounce window
                    }
                }
            }
            changes.borrow_and_update();
            let members = peers.member_ids();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = this.pass(&mut non_owner_since) => {}
            }
            last_members = Some(members);
            tick.reset();
        }
    }

    async fn pass(self: &Arc<Self>, non_owner_since: &mut HashMap<Digest, Instant>) {
        let start = Instant::now();
        let copied = self.metrics.blobs_copied.get();
        let dropped = self.metrics.blobs_dropped.get();
        self.pull().await;
        self.drop_unowned(non_owner_since).await;
        self.metrics.passes.inc();
        let copied = self.metrics.blobs_copied.get() - copied;
        let dropped = self.metrics.blobs_dropped.get() - dropped;
        let took = start.elapsed();
        if copied > 0 || dropped > 0 {
            tracing::info!(copied, dropped, ?took, "repair pass");
        } else {
            tracing::debug!(?took, "repair pass: nothing to do");
        }
    }

    /// Copies the blobs this origin owns but lacks from the siblings that list them, as long
    /// as the cache stays under its low watermark (repair must not make the cache evict what
    /// it just copied, and copy it again next pass).
    async fn pull(self: &Arc<Self>) {
        let peers = self.peers();
        let limit = Arc::new(Semaphore::new(self.config.concurrency));
        let mut copies: JoinSet<Digest> = JoinSet::new();
        let mut in_flight: HashSet<Digest> = HashSet::new();
        let store = self.blobs.store.config();
        let room = (store.capacity_bytes as f64 * store.low_watermark) as u64;
        let mut skipped = 0u64;
        for node in peers.siblings() {
            let client = match peers.client(&node) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(sibling = %node.id, "repair: {e}");
                    continue;
                }
            };
            let mut after = None;
            loop {
                let page = client.list_blobs(after.as_ref(), PAGE).await;
                peers.report(&node, &page);
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(sibling = %node.id, "repair: listing failed: {e}");
                        break;
                    }
                };
                for entry in page.blobs {
                    while let Some(done) = copies.try_join_next() {
                        if let Ok(d) = done {
                            in_flight.remove(&d);
                        }
                    }
                    let d = entry.digest;
                    if entry.namespaces.is_empty()
                        || in_flight.contains(&d)
                        || !peers.owns(&d)
                        || self.blobs.store.stat(&d).is_some()
                    {
                        continue;
                    }
                    if self.blobs.store.stats().bytes.saturating_add(entry.size) > room {
                        skipped += 1;
                        continue;
                    }
                    let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                        return;
                    };
                    in_flight.insert(d);
                    let (this, node, client) = (Arc::clone(self), node.clone(), client.clone());
                    copies.spawn(async move {
                        this.copy(&node, &client, entry).await;
                        drop(permit);
                        d
                    });
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
                // Ownership checks hash every member per blob: let other tasks run.
                tokio::task::yield_now().await;
            }
        }
        while copies.join_next().await.is_some() {}
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "repair: the cache is at its low watermark; blobs this origin owns were not copied"
            );
        }
    }

    async fn copy(&self, node: &Node, client: &OriginClient, entry: BlobEntry) {
        let d = entry.digest;
        let result = match self.copy_from_sibling(node, client, &entry).await {
            Ok(size) => Ok(size),
            Err(e) => {
                tracing::warn!(digest = %d, sibling = %node.id, "repair: copy from sibling failed, trying the backend: {e}");
                self.copy_from_backend(&entry).await
            }
        };
        match result {
            Ok(size) => {
                self.metrics.blobs_copied.inc();
                self.metrics.bytes_copied.inc_by(size);
                tracing::debug!(digest = %d, size, "repair: copied");
            }
            Err(e) => {
                self.metrics.copy_failures.inc();
                tracing::warn!(digest = %d, "repair: could not copy: {e}");
            }
        }
    }

    async fn copy_from_sibling(
        &self,
        node: &Node,
        client: &OriginClient,
        entry: &BlobEntry,
    ) -> Result<u64, String> {
        let ns = entry.namespaces.first().ok_or("no namespace")?;
        let got = client.get(ns, &entry.digest).await;
        self.peers().report(node, &got);
        let (_, stream) = got
            .map_err(|e| e.to_string())?
            .ok_or("the sibling no longer has it")?;
        let bandwidth = &self.bandwidth;
        let stream = stream.then(|chunk| async move {
            if let Ok(c) = &chunk {
                bandwidth.take(c.len()).await;
            }
            chunk
        });
        let temp = self.blobs.create_temp().await.map_err(|e| e.to_string())?;
        let (temp, result) = sink::append(temp, stream).await;
        result.map_err(|e| e.to_string())?;
        let temp = temp.ok_or("temp blob lost")?;
        self.blobs
            .commit(&entry.namespaces, temp, &entry.digest, Arrival::Repair)
            .await
            .map_err(|e| e.to_string())
    }

    async fn copy_from_backend(&self, entry: &BlobEntry) -> Result<u64, String> {
        let mut last = String::from("no namespace");
        for ns in &entry.namespaces {
            match self.blobs.fetch(ns, &entry.digest).await {
                Ok(size) => {
                    self.blobs
                        .adopt(&entry.namespaces, &entry.digest)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(size);
                }
                Err(e) => last = format!("backend of {ns}: {e}"),
            }
        }
        Err(last)
    }

    /// Drops the cached blobs this origin has not owned for `drop_grace` once their owners
    /// hold them, handing them to owners that do not.
    async fn drop_unowned(self: &Arc<Self>, non_owner_since: &mut HashMap<Digest, Instant>) {
        let peers = self.peers();
        if peers.member_ids().is_empty() {
            // No ring yet (e.g. DNS not answered): nobody owns anything, nothing is due.
            non_owner_since.clear();
            return;
        }
        let now = Instant::now();
        let mut still = HashMap::new();
        let mut due = Vec::new();
        let mut after = None;
        loop {
            let page = self.blobs.store.list(after.as_ref(), PAGE);
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            for (d, _) in page {
                if peers.owns(&d) {
                    continue;
                }
                let since = non_owner_since.get(&d).copied().unwrap_or(now);
                still.insert(d, since);
                if now.duration_since(since) >= self.config.drop_grace
                    && !self.blobs.store.is_pinned(&d)
                {
                    due.push(d);
                }
            }
            tokio::task::yield_now().await;
        }
        *non_owner_since = still;
        let limit = Arc::new(Semaphore::new(self.config.concurrency));
        let mut checks = JoinSet::new();
        for d in due {
            let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                return;
            };
            let this = Arc::clone(self);
            checks.spawn(async move {
                this.check_and_drop(d).await;
                drop(permit);
            });
        }
        while checks.join_next().await.is_some() {}
    }

    async fn check_and_drop(&self, d: Digest) {
        let peers = self.peers();
        let store = self.blobs.store.clone();
        let namespaces = match blocking(move || store.namespaces(&d)).await {
            Ok(Ok(n)) if !n.is_empty() => n,
            // Without a namespace, owners cannot be asked (nor the blob handed over): keep it.
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                tracing::warn!(digest = %d, "repair: reading namespaces: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!(digest = %d, "repair: {e}");
                return;
            }
        };
        let owners = peers.owners(&d);
        if owners.is_empty() || owners.iter().any(|o| o.id == peers.self_id()) {
            return;
        }
        let mut missing: Vec<(RepoName, Node)> = Vec::new();
        for owner in &owners {
            let client = match peers.client(owner) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(owner = %owner.id, "repair: {e}");
                    return;
                }
            };
            for ns in &namespaces {
                let held = client.stat(ns, &d).await;
                peers.report(owner, &held);
                match held {
                    Ok(Some(_)) => {}
                    Ok(None) => missing.push((ns.clone(), owner.clone())),
                    Err(e) => {
                        tracing::debug!(digest = %d, owner = %owner.id, "repair: cannot check owner: {e}");
                        return;
                    }
                }
            }
        }
        if !missing.is_empty() {
            self.hand_off(d, missing).await;
            return;
        }
        // Membership may have changed while owners were asked.
        if peers.owners(&d) != owners {
            return;
        }
        let store = self.blobs.store.clone();
        match blocking(move || store.delete_unpinned(&d)).await {
            Ok(Ok(true)) => {
                self.metrics.blobs_dropped.inc();
                tracing::debug!(digest = %d, "repair: dropped a blob this origin no longer owns");
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(digest = %d, "repair: dropping: {e}"),
            Err(e) => tracing::warn!(digest = %d, "repair: dropping: {e}"),
        }
    }

    /// Queues pushes of `d` to owners that lack it (pinning it until they are done).
    async fn hand_off(&self, d: Digest, missing: Vec<(RepoName, Node)>) {
        let replication = self.replication.clone();
        let queued = blocking(move || -> std::io::Result<usize> {
            let mut created = 0;
            for (ns, owner) in &missing {
                created += replication.push_to(ns, &d, std::slice::from_ref(owner))?;
            }
            Ok(created)
        })
        .await;
        match queued {
            Ok(Ok(created)) => {
                self.metrics.handoffs.inc_by(created as u64);
                if created > 0 {
                    tracing::debug!(digest = %d, created, "repair: handing a blob to owners that lack it");
                }
            }
            Ok(Err(e)) => tracing::warn!(digest = %d, "repair: queueing a handoff: {e}"),
            Err(e) => tracing::warn!(digest = %d, "repair: queueing a handoff: {e}"),
        }
    }
}
