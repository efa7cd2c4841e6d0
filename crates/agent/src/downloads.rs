//! Blob downloads: metainfo from the tracker, the torrent in the swarm, one announce task per
//! torrent, seeding for a while after completion.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use parking_lot::Mutex;
use shoal_core::{BufferPool, Digest, MetaInfo, PeerId, RepoName};
use shoal_engine::PeerInfo;
use shoal_p2p::{Source, Swarm, TorrentHandle, TorrentState};
use shoal_registry::ByteStream;
use shoal_runtime::flight::SingleFlight;
use shoal_store::{BlobStore, PartialBlob, StoreError};
use shoal_tracker_api::{AnnounceEvent, AnnounceRequest, MetaInfoRequest};
use tokio_util::sync::CancellationToken;

use crate::error::AgentError;
use crate::trackers::{self, Trackers};

/// Retry delay after a failed announce.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(1);

/// A live torrent and a handle on its download file (for streaming while it downloads).
#[derive(Clone)]
struct Active {
    handle: TorrentHandle,
    partial: PartialBlob,
}

/// Streams a blob's byte range.
pub(crate) type ReadFn = Box<dyn FnOnce(Range<u64>) -> ByteStream + Send>;

/// Bytes read per chunk while streaming a download.
const STREAM_CHUNK: u64 = 1 << 20;
/// Idle capacity kept for streaming chunks (each client holds a few chunks in flight).
const IDLE_STREAM_BUFFERS: usize = 16 << 20;

/// Downloads in progress and blobs being seeded.
pub(crate) struct Downloads {
    pub(crate) store: BlobStore,
    swarm: Swarm,
    trackers: Trackers,
    advertise_ip: Option<IpAddr>,
    seed_time: Duration,
    starting: SingleFlight<Digest, Result<Active, AgentError>>,
    active: Mutex<HashMap<Digest, Active>>,
    /// Buffers chunks of downloads are streamed to clients in.
    stream_buffers: BufferPool,
    shutdown: CancellationToken,
}

impl Downloads {
    pub(crate) fn new(
        store: BlobStore,
        swarm: Swarm,
        trackers: Trackers,
        advertise_ip: Option<IpAddr>,
        seed_time: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            swarm,
            trackers,
            advertise_ip,
            seed_time,
            starting: SingleFlight::default(),
            active: Mutex::default(),
            stream_buffers: BufferPool::new(IDLE_STREAM_BUFFERS),
            shutdown,
        })
    }

    /// The blob's size without downloading it: from the cache, or its metainfo.
    pub(crate) async fn stat(&self, ns: &RepoName, digest: &Digest) -> Result<u64, AgentError> {
        if let Some(size) = self.store.stat(digest) {
            return Ok(size);
        }
        if let Some(a) = self.active.lock().get(digest) {
            return Ok(a.handle.meta().layout().blob_len());
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
        let active = self.torrent(ns, digest).await?;
        active
            .handle
            .wait_complete()
            .await
            .map_err(|e| AgentError::Download(e.to_string()))
    }

    /// Opens the blob for streaming: from the cache, or from its download as verified pieces
    /// land (starting the download if needed). Returns the size and a range reader.
    pub(crate) async fn open(
        self: &Arc<Self>,
        ns: &RepoName,
        digest: &Digest,
    ) -> Result<(u64, ReadFn), AgentError> {
        let store = self.store.clone();
        let d = *digest;
        let cached = tokio::task::spawn_blocking(move || store.open_blob(&d))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?;
        match cached {
            Ok(reader) => {
                let size = reader.size();
                let read: ReadFn = Box::new(move |range| Box::pin(reader.into_chunks(range)));
                return Ok((size, read));
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(AgentError::Internal(format!("opening blob: {e}"))),
        }
        let active = self.torrent(ns, digest).await?;
        let size = active.handle.meta().layout().blob_len();
        let buffers = self.stream_buffers.clone();
        let read: ReadFn = Box::new(move |range| stream_download(active, range, buffers));
        Ok((size, read))
    }

    /// The running torrent for the blob, starting it if needed.
    async fn torrent(
        self: &Arc<Self>,
        ns: &RepoName,
        digest: &Digest,
    ) -> Result<Active, AgentError> {
        if let Some(a) = self.running(digest) {
            return Ok(a);
        }
        let this = Arc::clone(self);
        let (ns, d) = (ns.clone(), *digest);
        self.starting
            .run(*digest, move || async move { this.start(ns, d).await })
            .await
            .unwrap_or_else(|| Err(AgentError::Internal("download start task died".into())))
    }

    /// The blob's metainfo from the trackers (routed by digest, failing over to the next
    /// tracker when one does not answer).
    async fn metainfo(&self, ns: &RepoName, digest: &Digest) -> Result<MetaInfo, AgentError> {
        let mut last = None;
        for (node, mut client) in self.trackers.route(digest.raw()) {
            let result = client
                .get_meta_info(MetaInfoRequest {
                    namespace: ns.to_string(),
                    digest: digest.to_string(),
                })
                .await;
            self.trackers.report(&node, result.as_ref().map(drop));
            let reply = match result {
                Ok(reply) => reply,
                Err(s) if trackers::is_unreachable(&s) => {
                    tracing::warn!(tracker = %node.id, %digest, "metainfo lookup failed, trying the next tracker: {}", s.message());
                    last = Some(s);
                    continue;
                }
                Err(s) => {
                    return Err(match s.code() {
                        tonic::Code::NotFound => AgentError::BlobUnknown,
                        tonic::Code::InvalidArgument => {
                            AgentError::BadRequest(s.message().to_owned())
                        }
                        _ => AgentError::Unavailable(format!("tracker: {}", s.message())),
                    });
                }
            };
            let meta = MetaInfo::decode(&reply.into_inner().metainfo)
                .map_err(|e| AgentError::Unavailable(format!("tracker sent bad metainfo: {e}")))?;
            if meta.digest() != *digest {
                return Err(AgentError::Unavailable(
                    "tracker sent metainfo of another blob".into(),
                ));
            }
            return Ok(meta);
        }
        Err(AgentError::Unavailable(last.map_or_else(
            || "no tracker is configured".to_owned(),
            |s| format!("no tracker answered: {}", s.message()),
        )))
    }

    /// Announces to the torrent's tracker (by the ring over its info hash), failing over at
    /// once to the next tracker when one does not answer: the new tracker learns this peer
    /// within one call. Returns the reply, or `None` if no tracker answered.
    async fn announce(&self, req: AnnounceRequest) -> Option<shoal_tracker_api::AnnounceResponse> {
        let key = req.info_hash.clone();
        for (node, mut client) in self.trackers.route(&key) {
            let result = client.announce(req.clone()).await;
            self.trackers.report(&node, result.as_ref().map(drop));
            match result {
                Ok(reply) => return Some(reply.into_inner()),
                Err(status) => {
                    tracing::warn!(tracker = %node.id, "announce failed, trying the next tracker: {}", status.message());
                }
            }
        }
        None
    }

    /// The live torrent for the blob, if one is downloading or seeding.
    fn running(&self, digest: &Digest) -> Option<Active> {
        self.active
            .lock()
            .get(digest)
            .filter(|a| {
                !matches!(
                    a.handle.state(),
                    TorrentState::Stopped | TorrentState::Failed(_)
                )
            })
            .cloned()
    }

    async fn start(self: Arc<Self>, ns: RepoName, digest: Digest) -> Result<Active, AgentError> {
        // A start that finished just before this one began already runs the torrent (and its
        // announce and seeding tasks).
        if let Some(a) = self.running(&digest) {
            return Ok(a);
        }
        let meta = self.metainfo(&ns, &digest).await?;
        let store = self.store.clone();
        let m = meta.clone();
        // Opening a partial download re-verifies what an earlier run left (resume).
        let partial = tokio::task::spawn_blocking(move || store.partial(&m))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?
            .map_err(|e| AgentError::Internal(format!("opening download: {e}")))?;
        let handle = self
            .swarm
            .start_torrent(meta, Source::Partial(partial.clone()));
        let active = Active {
            handle: handle.clone(),
            partial,
        };
        self.active.lock().insert(digest, active.clone());
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
        Ok(active)
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
        let wait = match downloads.announce(req).await {
            Some(reply) => {
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
            None => {
                tracing::warn!(%digest, "no tracker answered the announce");
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
    let _ = tokio::time::timeout(Duration::from_secs(2), downloads.announce(bye)).await;
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
        .is_some_and(|a| a.handle.info_hash() == handle.info_hash())
    {
        active.remove(&digest);
    }
}

/// Streams `range` of a blob that is downloading: each chunk as soon as the pieces under it
/// are verified, waiting for the torrent's progress in between. Fails if the download fails
/// or stops before the range is complete.
fn stream_download(active: Active, range: Range<u64>, buffers: BufferPool) -> ByteStream {
    let state = active.handle.watch();
    let digest = active.handle.meta().digest();
    let init = (active, state, range.start);
    let end = range.end;
    let chunks = futures_util::stream::try_unfold(init, move |(active, mut state, pos)| {
        let buffers = buffers.clone();
        async move {
            let partial = &active.partial;
            if pos >= end {
                return Ok(None);
            }
            loop {
                // Mark the state seen before looking at the pieces, so no progress is missed.
                let seen = state.borrow_and_update().clone();
                let layout = partial.meta().layout();
                let present = layout.piece_at(pos).is_some_and(|p| partial.have().has(p));
                if present {
                    let p = partial.clone();
                    let len = usize::try_from((end - pos).min(STREAM_CHUNK)).unwrap_or(0);
                    let buffers = buffers.clone();
                    let buf = tokio::task::spawn_blocking(move || {
                        let mut buf = buffers.take_len(len);
                        let n = p.read_at(pos, &mut buf).map_err(std::io::Error::other)?;
                        buf.truncate(n);
                        Ok::<_, std::io::Error>(buf)
                    })
                    .await
                    .map_err(std::io::Error::other)??;
                    if !buf.is_empty() {
                        let n = buf.len() as u64;
                        return Ok(Some((buf.freeze(), (active, state, pos + n))));
                    }
                }
                // Waiting: ask the swarm for the pieces from here first.
                active.handle.stream_position(layout.piece_at(pos));
                match seen {
                    TorrentState::Failed(e) => return Err(std::io::Error::other(e)),
                    TorrentState::Stopped => {
                        return Err(std::io::Error::other("download stopped"));
                    }
                    TorrentState::Downloading { .. } | TorrentState::Complete { .. } => {}
                }
                if state.changed().await.is_err() {
                    return Err(std::io::Error::other("download ended"));
                }
            }
        }
    });
    // A reader cut off mid-body sees only a truncated response; say why here.
    Box::pin(chunks.inspect_err(move |e| {
        tracing::warn!(%digest, "streaming a download failed: {e}");
    }))
}
