//! One torrent's task: owns the engine, turns its actions into I/O tasks and their results
//! back into engine inputs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use shoal_core::{Bitfield, InfoHash, MetaInfo, PeerId, PieceIndex};
use shoal_engine::{Action, ConnectFailure, PeerInfo, PieceOutcome, Role, Torrent};
use shoal_store::PieceWrite;
use shoal_transport::{IncomingSession, RequestError, SessionError, SessionSender};
use shoal_wire::{ErrorCode, Handshake, Message};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::background;
use crate::peer;
use crate::source::Source;
use crate::swarm::{Inner, Swarm, reject};

/// Events queued for a torrent task.
const EVENT_QUEUE: usize = 1024;
/// Control frames queued per peer before the peer counts as hopelessly behind.
const PEER_QUEUE: usize = 512;

/// Where a torrent stands, as seen by readers of the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// Downloading: pieces present and the bytes from the start that can be read.
    Downloading {
        /// Pieces verified so far.
        pieces: u32,
        /// Bytes from offset 0 covered by verified pieces.
        contiguous: u64,
    },
    /// Every piece is here and the whole blob is verified and published.
    Complete {
        /// Blob size.
        size: u64,
    },
    /// The download failed for good (e.g. the assembled blob did not match its digest).
    Failed(String),
    /// The torrent was stopped.
    Stopped,
}

/// Why waiting for a download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// The download failed.
    #[error("download failed: {0}")]
    Failed(String),
    /// The torrent stopped before completing.
    #[error("torrent stopped")]
    Stopped,
}

pub(crate) enum Event {
    Peers(Vec<PeerInfo>),
    Incoming(Box<IncomingSession>),
    Dialed {
        peer: PeerId,
        snapshot: Bitfield,
        result: Result<shoal_transport::Session, SessionError>,
    },
    /// A control frame from connection `conn` of `peer`.
    Control {
        peer: PeerId,
        conn: u64,
        msg: Message,
    },
    /// Connection `conn` of `peer` ended. Events of an older connection to the same peer are
    /// ignored, so a late one never tears down its replacement.
    Closed {
        peer: PeerId,
        conn: u64,
    },
    Piece {
        peer: PeerId,
        piece: PieceIndex,
        result: Result<PieceWrite, PieceFailure>,
    },
    Served {
        peer: PeerId,
    },
    Finished(Result<u64, String>),
    /// A reader streams the blob and waits for this piece.
    StreamPosition(Option<u32>),
    Stop,
}

pub(crate) enum PieceFailure {
    /// The request failed (peer refused, stream broke): ask someone else.
    Request(RequestError),
    /// Our storage failed: fatal for the torrent.
    Storage(String),
}

/// A running torrent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TorrentHandle {
    events: mpsc::Sender<Event>,
    state: watch::Receiver<TorrentState>,
    info_hash: InfoHash,
    meta: Arc<MetaInfo>,
}

impl TorrentHandle {
    /// The torrent's metainfo.
    pub fn meta(&self) -> &MetaInfo {
        &self.meta
    }

    /// The torrent's info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Hands peers (from the tracker) to the engine.
    pub async fn add_peers(&self, peers: Vec<PeerInfo>) {
        let _ = self.events.send(Event::Peers(peers)).await;
    }

    /// The current state.
    pub fn state(&self) -> TorrentState {
        self.state.borrow().clone()
    }

    /// A receiver of state changes (for streaming the blob while it downloads).
    pub fn watch(&self) -> watch::Receiver<TorrentState> {
        self.state.clone()
    }

    /// Waits until the blob is complete and published; its size.
    pub async fn wait_complete(&self) -> Result<u64, DownloadError> {
        let mut rx = self.state.clone();
        let state = rx
            .wait_for(|s| !matches!(s, TorrentState::Downloading { .. }))
            .await
            .map(|s| s.clone())
            .unwrap_or(TorrentState::Stopped);
        match state {
            TorrentState::Complete { size } => Ok(size),
            TorrentState::Failed(e) => Err(DownloadError::Failed(e)),
            TorrentState::Downloading { .. } | TorrentState::Stopped => Err(DownloadError::Stopped),
        }
    }

    /// A reader streaming the blob waits for `piece`: its next pieces are fetched first
    /// (`None` when no reader waits any more). Best effort: dropped if the torrent is busy.
    pub fn stream_position(&self, piece: Option<PieceIndex>) {
        let _ = self
            .events
            .try_send(Event::StreamPosition(piece.map(PieceIndex::get)));
    }

    /// Stops the torrent: connections close, the task ends.
    pub fn stop(&self) {
        let _ = self.events.try_send(Event::Stop);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.events.is_closed()
    }

    pub(crate) fn same(&self, other: &Self) -> bool {
        self.events.same_channel(&other.events)
    }

    pub(crate) fn deliver(&self, ev: Event) -> Result<(), Box<IncomingSession>> {
        match self.events.try_send(ev) {
            Ok(()) => Ok(()),
            Err(
                mpsc::error::TrySendError::Full(Event::Incoming(i))
                | mpsc::error::TrySendError::Closed(Event::Incoming(i)),
            ) => Err(i),
            Err(_) => Ok(()),
        }
    }
}

struct PeerConn {
    conn: u64,
    sender: SessionSender,
    out: mpsc::Sender<Message>,
    tasks: Vec<AbortHandle>,
    requests: HashMap<u32, AbortHandle>,
}

impl Drop for PeerConn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for r in self.requests.values() {
            r.abort();
        }
    }
}

/// An origin's per-torrent ledger of pieces handed out (see `shoal_engine::seeding`).
pub(crate) type Ledger = Option<Arc<parking_lot::Mutex<shoal_engine::seeding::SeedLedger>>>;

struct Task {
    ledger: Ledger,
    swarm: Arc<Inner>,
    meta: Arc<MetaInfo>,
    source: Source,
    engine: Torrent,
    peers: HashMap<PeerId, PeerConn>,
    events_tx: mpsc::Sender<Event>,
    state: watch::Sender<TorrentState>,
    handle: TorrentHandle,
    last_peer_seen: Instant,
    /// Numbers the connections installed, to tell a peer's current one from older ones.
    next_conn: u64,
}

pub(crate) fn spawn(swarm: Arc<Inner>, meta: MetaInfo, source: Source) -> TorrentHandle {
    let meta = Arc::new(meta);
    let have = source.have(&meta);
    let initial = if have.is_complete() {
        TorrentState::Complete {
            size: meta.layout().blob_len(),
        }
    } else {
        TorrentState::Downloading {
            pieces: have.count_ones(),
            contiguous: source.contiguous_prefix_len(),
        }
    };
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (state, state_rx) = watch::channel(initial);
    let handle = TorrentHandle {
        events: events_tx.clone(),
        state: state_rx,
        info_hash: meta.info_hash(),
        meta: Arc::clone(&meta),
    };
    let mut config = swarm.config.engine.clone();
    // Each torrent gets its own random stream, still reproducible from the configured seed.
    config.seed ^= u64::from_be_bytes(
        meta.info_hash().as_bytes()[..8]
            .try_into()
            .expect("32-byte hash"),
    );
    let engine = Torrent::new(
        meta.layout(),
        have,
        swarm.config.peer_id,
        swarm.config.role,
        config,
    );
    let ledger = (swarm.config.role == Role::Origin).then(|| {
        Arc::new(parking_lot::Mutex::new(
            shoal_engine::seeding::SeedLedger::new(
                meta.layout().piece_count(),
                shoal_engine::seeding::DEFAULT_WINDOW,
            ),
        ))
    });
    let task = Task {
        ledger,
        swarm: Arc::clone(&swarm),
        meta,
        source,
        engine,
        peers: HashMap::new(),
        events_tx,
        state,
        handle: handle.clone(),
        last_peer_seen: Instant::now(),
        next_conn: 0,
    };
    swarm.tasks.spawn(task.run(events_rx));
    handle
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Task {
    async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let info_hash = self.meta.info_hash();
        tracing::debug!(%info_hash, "torrent started");
        loop {
            self.apply_actions();
            let timer = self.engine.poll_timeout().map(Instant::from_std);
            let idle_deadline = self.idle_deadline();
            let wake = match (timer, idle_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let ev = tokio::select! {
                () = self.swarm.shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
                () = sleep_until(wake) => {
                    if idle_deadline.is_some_and(|d| d <= Instant::now()) && self.peers.is_empty() {
                        tracing::debug!(%info_hash, "seeding torrent idle, stopping");
                        break;
                    }
                    self.engine.handle_timeout(now());
                    continue;
                }
            };
            if matches!(ev, Event::Stop) {
                break;
            }
            self.handle(ev).await;
        }
        self.peers.clear();
        self.state.send_if_modified(|s| {
            if matches!(s, TorrentState::Downloading { .. }) {
                *s = TorrentState::Stopped;
                true
            } else {
                false
            }
        });
        Swarm::forget(&self.swarm, &info_hash, &self.handle);
        tracing::debug!(%info_hash, "torrent stopped");
    }

    /// Seeding-only torrents end after a while without peers.
    fn idle_deadline(&self) -> Option<Instant> {
        (self.engine.is_complete()
            && self.peers.is_empty()
            && self.swarm.config.role == Role::Origin)
            .then(|| self.last_peer_seen + self.swarm.config.seed_idle)
    }

    fn our_handshake(&self, have: &Bitfield) -> Handshake {
        Handshake::new(
            self.swarm.config.peer_id,
            self.meta.info_hash(),
            Bytes::from(have.to_bytes()),
            self.swarm.config.role == Role::Origin,
        )
    }

    async fn handle(&mut self, ev: Event) {
        let now = now();
        match ev {
            Event::Peers(peers) => {
                tracing::debug!(count = peers.len(), "peers from the tracker");
                self.engine.handle_peers(peers, now);
            }
            Event::StreamPosition(piece) => self.engine.handle_stream_position(piece, now),
            Event::Incoming(incoming) => self.incoming(incoming).await,
            Event::Dialed {
                peer,
                snapshot,
                result,
            } => self.dialed(peer, snapshot, result),
            Event::Control { peer, conn, .. } if !self.is_current(&peer, conn) => {}
            Event::Closed { peer, conn } if !self.is_current(&peer, conn) => {}
            Event::Control { peer, msg, .. } => match msg {
                Message::Have(i) => self.engine.handle_have(peer, i, now),
                Message::Complete => self.engine.handle_complete(peer, now),
                Message::Error { code, message } => {
                    tracing::debug!(%peer, ?code, message, "peer error");
                }
                _ => {}
            },
            Event::Closed { peer, .. } => {
                if self.peers.remove(&peer).is_some() {
                    self.engine.handle_disconnected(peer, now);
                    self.last_peer_seen = Instant::now();
                }
            }
            Event::Piece {
                peer,
                piece,
                result,
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.requests.remove(&piece.get());
                }
                match result {
                    Ok(PieceWrite::Stored) => {
                        tracing::trace!(%peer, piece = piece.get(), "piece stored");
                        let len = u64::from(self.meta.layout().len_of(piece));
                        self.swarm
                            .stats
                            .downloaded
                            .fetch_add(len, Ordering::Relaxed);
                        self.engine
                            .handle_piece(peer, piece, PieceOutcome::Valid, now);
                        self.publish_progress();
                    }
                    Ok(PieceWrite::Duplicate) if self.engine.have().has(piece) => {
                        self.engine
                            .handle_piece(peer, piece, PieceOutcome::Valid, now);
                    }
                    Ok(PieceWrite::Duplicate) => {
                        // Another copy of this piece is being written right now; its own
                        // result will mark it. This copy is simply not needed.
                        self.engine.handle_request_failed(peer, piece, now);
                    }
                    Ok(PieceWrite::Corrupt) => {
                        tracing::warn!(%peer, piece = piece.get(), "corrupt piece; dropping peer");
                        self.engine
                            .handle_piece(peer, piece, PieceOutcome::Corrupt, now);
                    }
                    Err(PieceFailure::Request(e)) => {
                        tracing::debug!(%peer, piece = piece.get(), "request failed: {e}");
                        self.engine.handle_request_failed(peer, piece, now);
                    }
                    Err(PieceFailure::Storage(e)) => {
                        tracing::error!("storage failed: {e}");
                        self.state.send_replace(TorrentState::Failed(e));
                        let _ = self.events_tx.try_send(Event::Stop);
                    }
                }
            }
            Event::Served { peer } => self.engine.handle_served(peer, now),
            Event::Finished(result) => match result {
                Ok(size) => {
                    tracing::info!(info_hash = %self.meta.info_hash(), size, "download complete and verified");
                    self.state.send_replace(TorrentState::Complete { size });
                }
                Err(e) => {
                    tracing::error!(info_hash = %self.meta.info_hash(), "download failed: {e}");
                    self.state.send_replace(TorrentState::Failed(e));
                    let _ = self.events_tx.try_send(Event::Stop);
                }
            },
            Event::Stop => {}
        }
    }

    /// Tells watchers (streaming readers) about a stored piece. Also after the last one: the
    /// whole-blob check that follows (an fsync, and a second hash pass unless the metainfo is a
    /// SHA-256 chain) takes a while, and a
    /// reader waiting for the last bytes must not wait for it too.
    fn publish_progress(&mut self) {
        let update = TorrentState::Downloading {
            pieces: self.engine.have().count_ones(),
            contiguous: self.source.contiguous_prefix_len(),
        };
        self.state.send_if_modified(|s| {
            let downloading = matches!(s, TorrentState::Downloading { .. });
            if downloading {
                *s = update;
            }
            downloading
        });
    }

    async fn incoming(&mut self, incoming: Box<IncomingSession>) {
        let theirs = incoming.theirs().clone();
        let peer = theirs.peer_id;
        let count = self.meta.layout().piece_count();
        let Ok(bitfield) = Bitfield::from_bytes(&theirs.bitfield, count) else {
            reject(
                incoming,
                ErrorCode::Protocol,
                "bitfield does not match the torrent",
            );
            return;
        };
        if let Err(refusal) = self
            .engine
            .handle_connected(peer, bitfield, theirs.is_origin, now())
        {
            // Only a malformed handshake is a protocol error (which makes the dialler
            // blacklist us); every other refusal just means "not now".
            let code = match refusal {
                shoal_engine::Refusal::BadBitfield => ErrorCode::Protocol,
                _ => ErrorCode::TooManyConnections,
            };
            reject(incoming, code, "refused");
            return;
        }
        let ours = self.our_handshake(&self.engine.have().clone());
        match tokio::time::timeout(Duration::from_secs(5), incoming.accept(ours)).await {
            Ok(Ok(session)) => {
                tracing::debug!(%peer, origin = theirs.is_origin, "peer connected (inbound)");
                self.install(peer, session);
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, "accepting session failed: {e}");
                self.engine.handle_disconnected(peer, now());
            }
            Err(_) => self.engine.handle_disconnected(peer, now()),
        }
    }

    fn dialed(
        &mut self,
        peer: PeerId,
        snapshot: Bitfield,
        result: Result<shoal_transport::Session, SessionError>,
    ) {
        let now = now();
        let session = match result {
            Ok(s) => s,
            Err(e) => {
                let failure = match &e {
                    SessionError::Rejected {
                        code:
                            ErrorCode::TooManyConnections
                            | ErrorCode::GoingAway
                            | ErrorCode::UnknownTorrent,
                        ..
                    }
                    | SessionError::Duplicate => ConnectFailure::Busy,
                    SessionError::ConnectTimeout(_)
                    | SessionError::Connect { .. }
                    | SessionError::Connection(_)
                    | SessionError::HandshakeTimeout
                    | SessionError::Closed => ConnectFailure::Unreachable,
                    _ => ConnectFailure::Handshake,
                };
                tracing::debug!(%peer, ?failure, "dial failed: {e}");
                self.engine.handle_connect_failed(peer, failure, now);
                return;
            }
        };
        let theirs = session.theirs().clone();
        let count = self.meta.layout().piece_count();
        let bitfield = match Bitfield::from_bytes(&theirs.bitfield, count) {
            Ok(b) if theirs.peer_id == peer => b,
            _ => {
                self.engine
                    .handle_connect_failed(peer, ConnectFailure::Handshake, now);
                return;
            }
        };
        if self
            .engine
            .handle_connected(peer, bitfield, theirs.is_origin, now)
            .is_err()
        {
            return; // dropping the session closes it
        }
        tracing::debug!(%peer, origin = theirs.is_origin, "peer connected (outbound)");
        self.install(peer, session);
        // Pieces we got while the dial was in flight were not in our handshake.
        let have = self.engine.have().clone();
        if let Some(p) = self.peers.get(&peer) {
            for i in have.ones().filter(|i| !snapshot.has_index(*i)) {
                let _ = p.out.try_send(Message::Have(i));
            }
        }
    }

    fn is_current(&self, peer: &PeerId, conn: u64) -> bool {
        self.peers.get(peer).is_some_and(|p| p.conn == conn)
    }

    /// Starts the tasks of an established session.
    fn install(&mut self, peer: PeerId, session: shoal_transport::Session) {
        let (sender, control, requests) = session.split();
        self.next_conn += 1;
        let conn = self.next_conn;
        let (out, out_rx) = mpsc::channel(PEER_QUEUE);
        let tasks = vec![
            self.swarm
                .tasks
                .spawn(peer::control_reader(
                    peer,
                    conn,
                    control,
                    self.events_tx.clone(),
                ))
                .abort_handle(),
            self.swarm
                .tasks
                .spawn(peer::control_writer(
                    peer,
                    conn,
                    sender.clone(),
                    out_rx,
                    self.events_tx.clone(),
                ))
                .abort_handle(),
            self.swarm
                .tasks
                .spawn(peer::serve(
                    peer,
                    requests,
                    Arc::clone(&self.meta),
                    self.source.clone(),
                    self.events_tx.clone(),
                    Arc::clone(&self.swarm),
                    self.ledger.clone(),
                ))
                .abort_handle(),
        ];
        self.last_peer_seen = Instant::now();
        self.peers.insert(
            peer,
            PeerConn {
                conn,
                sender,
                out,
                tasks,
                requests: HashMap::new(),
            },
        );
    }

    fn apply_actions(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Connect { peer, addr } => {
                    let snapshot = self.engine.have().clone();
                    let ours = self.our_handshake(&snapshot);
                    let transport = self.swarm.transport.clone();
                    let events = self.events_tx.clone();
                    self.swarm.tasks.spawn(async move {
                        let result = transport.connect(addr, ours).await;
                        let _ = events
                            .send(Event::Dialed {
                                peer,
                                snapshot,
                                result,
                            })
                            .await;
                    });
                }
                Action::Disconnect { peer, reason } => {
                    tracing::debug!(%peer, ?reason, "disconnecting");
                    self.peers.remove(&peer);
                }
                Action::Request { peer, piece } => self.request(peer, piece),
                Action::Cancel { peer, piece } => {
                    if let Some(p) = self.peers.get_mut(&peer)
                        && let Some(r) = p.requests.remove(&piece.get())
                    {
                        r.abort();
                    }
                }
                Action::Have { peer, piece } => self.send(peer, Message::Have(piece.get())),
                Action::Complete { peer } => self.send(peer, Message::Complete),
                Action::Finished => {
                    // The swarm's part is done; the whole-blob check follows. (The swarm
                    // benchmark reads this line's time.)
                    tracing::info!(info_hash = %self.meta.info_hash(), "all pieces verified");
                    let source = self.source.clone();
                    let events = self.events_tx.clone();
                    self.swarm.tasks.spawn(async move {
                        let result = background::run("shoal-verify", move || source.finish())
                            .await
                            .and_then(|r| r.map_err(|e| e.to_string()));
                        let _ = events.send(Event::Finished(result)).await;
                    });
                }
            }
        }
    }

    fn send(&mut self, peer: PeerId, msg: Message) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.out.try_send(msg).is_err() {
            tracing::debug!(%peer, "peer's control queue is full; dropping it");
            self.peers.remove(&peer);
            self.engine.handle_disconnected(peer, now());
        }
    }

    fn request(&mut self, peer: PeerId, piece: PieceIndex) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let sender = p.sender.clone();
        let source = self.source.clone();
        let events = self.events_tx.clone();
        let len = self.meta.layout().len_of(piece);
        let tasks = self.swarm.tasks.clone();
        // Only the network wait is abortable (a Cancel): once the data is here, the write and
        // its report always complete, so the engine hears about every stored piece.
        let handle = self.swarm.tasks.spawn(async move {
            let data = match sender.request(piece.get(), len).await {
                Ok(data) => data,
                Err(e) => {
                    let result = Err(PieceFailure::Request(e));
                    let _ = events
                        .send(Event::Piece {
                            peer,
                            piece,
                            result,
                        })
                        .await;
                    return;
                }
            };
            tasks.spawn(async move {
                let result = tokio::task::spawn_blocking(move || source.write_piece(piece, &data))
                    .await
                    .map_err(|e| PieceFailure::Storage(e.to_string()))
                    .and_then(|r| r.map_err(|e| PieceFailure::Storage(e.to_string())));
                let _ = events
                    .send(Event::Piece {
                        peer,
                        piece,
                        result,
                    })
                    .await;
            });
        });
        p.requests.insert(piece.get(), handle.abort_handle());
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
