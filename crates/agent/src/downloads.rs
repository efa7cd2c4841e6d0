//! Blob downloads: metainfo from the tracker, the torrent in the swarm, one announce task per
//! torrent, seeding for a while after completion.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use shoal_core::{Digest, MetaInfo, PeerId, RepoName};
use shoal_engine::PeerInfo;
use shoal_p2p::{Source, Swarm, TorrentHandle, TorrentState};
use shoal_runtime::flight::SingleFlight;
use shoal_store::BlobStore;
use shoal_tracker_api::tracker_client::TrackerClient;
use shoal_tracker_api::{AnnounceEvent, AnnounceRequest, MetaInfoRequest};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::error::AgentError;

/// Retry delay after a failed announce.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(1);

/// Downloads in progress and blobs being seeded.
pub(crate) struct Downloads {
    pub(crate) store: BlobStore,
    swarm: Swarm,
    tracker: TrackerClient<Channel>,
    advertise_ip: Option<IpAddr>,
    seed_time: Duration,
    starting: SingleFlight<Digest, Result<TorrentHandle, AgentError>>,
    active: Mutex<HashMap<Digest, TorrentHandle>>,
    shutdown: CancellationToken,
}

impl Downloads {
    pub(crate) fn new(
        store: BlobStore,
        swarm: Swarm,
        tracker: TrackerClient<Channel>,
        advertise_ip: Option<IpAddr>,
        seed_time: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            swarm,
            tracker,
            advertise_ip,
            seed_time,
            starting: SingleFlight::default(),
            active: Mutex::default(),
            shutdown,
        })
    }

    /// The blob's size without downloading it: from the cache, or its metainfo.
    pub(crate) async fn stat(&self, ns: &RepoName, digest: &Digest) -> Result<u64, AgentError> {
        if let Some(size) = self.store.stat(digest) {
            return Ok(size);
        }
        if let Some(h) = self.active.lock().get(digest) {
            return Ok(h.meta().layout().blob_len());
        }
        Ok(self.metainfo(ns, digest).await?.layout().blob_len())
    }

    /// Makes sure the blob is in the local store, downloading it from the swarm if needed.
    /// Concurrent calls for one blob share one download.
    pub(crate) async fn fetch(
        self: &Arc<Self>,
        ns: &RepoName,
        digest: &Digest,
    ) -> Result<u64, AgentError> {
        if let Some(size) = self.store.stat(digest) {
            return Ok(size);
        }
        let handle = self.torrent(ns, digest).await?;
        handle
            .wait_complete()
            .await
            .map_err(|e| AgentError::Download(e.to_string()))
    }

    /// The running torrent for the blob, starting it if needed.
    async fn torrent(
        self: &Arc<Self>,
        ns: &RepoName,
        digest: &Digest,
    ) -> Result<TorrentHandle, AgentError> {
        if let Some(h) = self.running(digest) {
            return Ok(h);
        }
        let this = Arc::clone(self);
        let (ns, d) = (ns.clone(), *digest);
        self.starting
            .run(*digest, move || async move { this.start(ns, d).await })
            .await
            .unwrap_or_else(|| Err(AgentError::Internal("download start task died".into())))
    }

    async fn metainfo(&self, ns: &RepoName, digest: &Digest) -> Result<MetaInfo, AgentError> {
        let reply = self
            .tracker
            .clone()
            .get_meta_info(MetaInfoRequest {
                namespace: ns.to_string(),
                digest: digest.to_string(),
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => AgentError::BlobUnknown,
                tonic::Code::InvalidArgument => AgentError::BadRequest(s.message().to_owned()),
                _ => AgentError::Unavailable(format!("tracker: {}", s.message())),
            })?;
        let meta = MetaInfo::decode(&reply.into_inner().metainfo)
            .map_err(|e| AgentError::Unavailable(format!("tracker sent bad metainfo: {e}")))?;
        if meta.digest() != *digest {
            return Err(AgentError::Unavailable(
                "tracker sent metainfo of another blob".into(),
            ));
        }
        Ok(meta)
    }

    /// The live torrent for the blob, if one is downloading or seeding.
    fn running(&self, digest: &Digest) -> Option<TorrentHandle> {
        self.active
            .lock()
            .get(digest)
            .filter(|h| !matches!(h.state(), TorrentState::Stopped | TorrentState::Failed(_)))
            .cloned()
    }

    async fn start(
        self: Arc<Self>,
        ns: RepoName,
        digest: Digest,
    ) -> Result<TorrentHandle, AgentError> {
        // A start that finished just before this one began already runs the torrent (and its
        // announce and seeding tasks).
        if let Some(h) = self.running(&digest) {
            return Ok(h);
        }
        let meta = self.metainfo(&ns, &digest).await?;
        let store = self.store.clone();
        let m = meta.clone();
        // Opening a partial download re-verifies what an earlier run left (resume).
        let partial = tokio::task::spawn_blocking(move || store.partial(&m))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?
            .map_err(|e| AgentError::Internal(format!("opening download: {e}")))?;
        let handle = self.swarm.start_torrent(meta, Source::Partial(partial));
        self.active.lock().insert(digest, handle.clone());
        let token = self.shutdown.child_token();
        tokio::spawn(announce_loop(
            Arc::clone(&self),
            handle.clone(),
            ns,
            digest,
            token.clone(),
        ));
        tokio::spawn(seed_then_stop(
            Arc::clone(&self),
            handle.clone(),
            digest,
            token,
        ));
        Ok(handle)
    }

    fn announce_request(
        &self,
        handle: &TorrentHandle,
        ns: &RepoName,
        digest: &Digest,
        event: AnnounceEvent,
    ) -> AnnounceRequest {
        let layout = handle.meta().layout();
        let (complete, done) = match handle.state() {
            TorrentState::Complete { .. } => (true, layout.blob_len()),
            TorrentState::Downloading { pieces, .. } => {
                (false, u64::from(pieces) * u64::from(layout.piece_len()))
            }
            _ => (false, 0),
        };
        AnnounceRequest {
            info_hash: handle.info_hash().as_bytes().to_vec(),
            peer_id: self.swarm.peer_id().as_bytes().to_vec(),
            ip: self
                .advertise_ip
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            port: u32::from(self.swarm.local_addr().port()),
            bytes_done: done.min(layout.blob_len()),
            complete,
            is_origin: false,
            event: event as i32,
            namespace: ns.to_string(),
            digest: digest.to_string(),
        }
    }
}

/// Announces the torrent periodically (each torrent on its own task, so torrents never wait
/// behind each other), right away when it completes, and `STOPPED` at the end.
async fn announce_loop(
    downloads: Arc<Downloads>,
    handle: TorrentHandle,
    ns: RepoName,
    digest: Digest,
    token: CancellationToken,
) {
    let mut event = AnnounceEvent::Started;
    let mut state = handle.watch();
    let mut announced_complete = false;
    loop {
        let req = downloads.announce_request(&handle, &ns, &digest, event);
        announced_complete |= req.complete;
        let wait = match downloads.tracker.clone().announce(req).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                let me = downloads.swarm.peer_id();
                let peers: Vec<PeerInfo> = reply
                    .peers
                    .iter()
                    .filter_map(|p| {
                        let peer_id = PeerId::from_slice(&p.peer_id)?;
                        let ip: IpAddr = p.ip.parse().ok()?;
                        let port = u16::try_from(p.port).ok()?;
                        (peer_id != me).then_some(PeerInfo {
                            peer_id,
                            addr: SocketAddr::new(ip, port),
                            is_origin: p.is_origin,
                        })
                    })
                    .collect();
                if !peers.is_empty() {
                    handle.add_peers(peers).await;
                }
                Duration::from_millis(reply.interval_ms.clamp(100, 60_000))
            }
            Err(status) => {
                tracing::warn!(%digest, "announce failed: {}", status.message());
                ANNOUNCE_RETRY
            }
        };
        event = AnnounceEvent::Unspecified;
        tokio::select! {
            () = token.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
            changed = state.wait_for(|s| matches!(s, TorrentState::Complete { .. })), if !announced_complete => {
                if changed.is_ok() {
                    event = AnnounceEvent::Completed;
                } else {
                    break;
                }
            }
        }
    }
    let bye = downloads.announce_request(&handle, &ns, &digest, AnnounceEvent::Stopped);
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        downloads.tracker.clone().announce(bye),
    )
    .await;
}

/// Once the blob is complete, seeds it for `seed_time`, then stops the torrent.
async fn seed_then_stop(
    downloads: Arc<Downloads>,
    handle: TorrentHandle,
    digest: Digest,
    token: CancellationToken,
) {
    let outcome = tokio::select! {
        () = token.cancelled() => None,
        r = handle.wait_complete() => Some(r),
    };
    if let Some(Ok(_)) = outcome {
        tokio::select! {
            () = token.cancelled() => {}
            () = tokio::time::sleep(downloads.seed_time) => {}
        }
    }
    handle.stop();
    token.cancel();
    let mut active = downloads.active.lock();
    if active
        .get(&digest)
        .is_some_and(|h| h.info_hash() == handle.info_hash())
    {
        active.remove(&digest);
    }
}
