//! The QUIC endpoint: binding, the connection pool, and routing inbound streams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use shoal_core::{BufferPool, InfoHash};
use shoal_wire::{ErrorCode, FrameDecoder, Handshake, Message, PROTOCOL_VERSION, encode};
use tokio::sync::{OnceCell, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::bandwidth::TokenBucket;
use crate::config::TransportConfig;
use crate::error::{SessionError, TransportError};
use crate::io::{FrameReadError, FrameReader};
use crate::request::IncomingRequest;
use crate::session::{self, IncomingSession, Session};
use crate::tls::{self, SERVER_NAME};

/// Streams a peer may have open on one connection at once (control and request streams).
const MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Per-stream receive window: a whole 4 MiB piece and then some can be in flight.
const STREAM_RECEIVE_WINDOW: u32 = 8 << 20;
/// Per-connection receive and send windows: several pieces in flight at once (16 ms at
/// 2 GB/s, far above a LAN's bandwidth-delay product), while bounding what a peer that reads
/// slowly (ingress-capped) holds in memory per connection.
const CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest UDP payload MTU discovery tries (jumbo frames).
const MTU_UPPER_BOUND: u16 = 8952;
/// Ack-eliciting packets a peer may receive before it must acknowledge (QUIC ACK frequency
/// extension; the default 1 acknowledges every other packet). Fewer ACKs mean fewer packets,
/// syscalls and wake-ups on both sides; loss is still detected by the reordering threshold
/// and by `max_ack_delay`.
const ACK_ELICITING_THRESHOLD: u32 = 8;
/// Idle capacity kept for receiving pieces: 16 pieces of 2 MiB, 8 of 4 MiB.
const IDLE_RECV_BUFFERS: usize = 32 << 20;
/// Incoming sessions waiting for [`Acceptor::accept`]; beyond this they are rejected.
const ACCEPT_QUEUE: usize = 256;
/// Incoming requests waiting for [`crate::RequestReceiver::next`], per session.
const REQUEST_QUEUE: usize = 256;
/// QUIC application close code for "going away".
const CLOSE_GOING_AWAY: u32 = 5;

/// Limits every part of the transport needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_piece_len: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
}

/// What a session gets from registering: its request queue and the guard that unregisters it.
pub(crate) type Registration = (mpsc::Receiver<IncomingRequest>, RegistrationGuard);

type SessionKey = (usize, InfoHash);

#[derive(Debug)]
struct Route {
    id: u64,
    tx: mpsc::Sender<IncomingRequest>,
}

/// State shared by the transport handles, its tasks and its sessions.
#[derive(Debug)]
pub(crate) struct Inner {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    pub(crate) limits: Limits,
    /// One connection per peer address, dialed or accepted; the cell is empty while dialing.
    pool: Mutex<HashMap<SocketAddr, Arc<OnceCell<Connection>>>>,
    /// Where request streams go: (connection, torrent) to the session's request queue.
    routes: Mutex<HashMap<SessionKey, Route>>,
    pub(crate) ingress: Option<Arc<TokenBucket>>,
    pub(crate) egress: Option<Arc<TokenBucket>>,
    /// Buffers received pieces land in; they return when the piece's last `Bytes` drops.
    pub(crate) recv_buffers: BufferPool,
    live_connections: AtomicUsize,
    next_route_id: AtomicU64,
    incoming: mpsc::Sender<IncomingSession>,
    cancel: CancellationToken,
}

/// A QUIC peer transport: one UDP socket, one connection per peer, torrents multiplexed as
/// sessions over it. Cheap to clone; dropping the last clone shuts it down (prefer
/// [`Transport::shutdown`], which waits for peers to be told).
#[derive(Debug, Clone)]
pub struct Transport {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    _guard: Arc<DropGuard>,
}

/// Yields the sessions peers open to this transport.
#[derive(Debug)]
pub struct Acceptor {
    rx: mpsc::Receiver<IncomingSession>,
    cancel: CancellationToken,
}

impl Acceptor {
    /// The next session a peer opened (over any connection); `None` once the transport is
    /// shut down. Cancel-safe.
    pub async fn accept(&mut self) -> Option<IncomingSession> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => None,
            s = self.rx.recv() => s,
        }
    }
}

fn quic_transport_config(cfg: &TransportConfig) -> Result<quinn::TransportConfig, TransportError> {
    let idle = quinn::IdleTimeout::try_from(cfg.idle_timeout)
        .map_err(|_| TransportError::InvalidConfig("idle_timeout is too long"))?;
    if cfg.keep_alive >= cfg.idle_timeout {
        return Err(TransportError::InvalidConfig(
            "keep_alive must be shorter than idle_timeout",
        ));
    }
    // Probe up to jumbo-frame sizes: far fewer packets (and per-packet crypto and syscalls) on
    // loopback and jumbo-frame networks; elsewhere discovery settles at the path MTU.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(VarInt::from_u32(ACK_ELICITING_THRESHOLD));
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(cfg.keep_alive))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS_PER_CONNECTION))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(u64::from(CONNECTION_WINDOW))
        .mtu_discovery_config(Some(mtu))
        .ack_frequency_config(Some(acks));
    Ok(t)
}

fn bucket(rate: Option<u64>) -> Result<Option<Arc<TokenBucket>>, TransportError> {
    match rate {
        None => Ok(None),
        Some(0) => Err(TransportError::InvalidConfig(
            "bandwidth limits must be positive (omit them for no limit)",
        )),
        Some(r) => Ok(Some(Arc::new(TokenBucket::with_rate(r)))),
    }
}

impl Transport {
    /// Binds the UDP socket and starts accepting connections. Must be called within a tokio
    /// runtime.
    pub fn bind(cfg: TransportConfig) -> Result<(Self, Acceptor), TransportError> {
        let crypto = tls::build(&cfg.tls)?;
        let transport_config = Arc::new(quic_transport_config(&cfg)?);
        let mut server_config = quinn::ServerConfig::with_crypto(crypto.server);
        server_config.transport_config(transport_config.clone());
        let mut client_config = quinn::ClientConfig::new(crypto.client);
        client_config.transport_config(transport_config);

        let endpoint = quinn::Endpoint::server(server_config, cfg.listen).map_err(|source| {
            TransportError::Bind {
                addr: cfg.listen,
                source,
            }
        })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let cancel = CancellationToken::new();
        let (incoming, rx) = mpsc::channel(ACCEPT_QUEUE);
        let inner = Arc::new(Inner {
            endpoint,
            client_config,
            limits: Limits {
                max_piece_len: cfg.max_piece_len,
                connect_timeout: cfg.connect_timeout,
                handshake_timeout: cfg.handshake_timeout,
            },
            pool: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            ingress: bucket(cfg.bandwidth.ingress_bytes_per_sec)?,
            egress: bucket(cfg.bandwidth.egress_bytes_per_sec)?,
            recv_buffers: BufferPool::new(IDLE_RECV_BUFFERS),
            live_connections: AtomicUsize::new(0),
            next_route_id: AtomicU64::new(0),
            incoming,
            cancel: cancel.clone(),
        });
        tokio::spawn(accept_loop(inner.clone()));
        tracing::info!(%local_addr, "peer transport listening");
        Ok((
            Self {
                inner,
                local_addr,
                _guard: Arc::new(cancel.clone().drop_guard()),
            },
            Acceptor { rx, cancel },
        ))
    }

    /// The bound address (with the actual port if the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Opens a session for `ours.info_hash` with the peer at `addr`: reuses the pooled
    /// connection to `addr` (dialed or accepted) or dials one, opens a control stream, sends
    /// `ours` and waits for the peer's handshake.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        ours: Handshake,
    ) -> Result<Session, SessionError> {
        let conn = self.inner.connection(addr).await?;
        session::open(self.inner.clone(), conn, ours).await
    }

    /// Whether sending is capped by an egress bucket.
    pub fn egress_limited(&self) -> bool {
        self.inner.egress.is_some()
    }

    /// Number of open QUIC connections (dialed and accepted).
    pub fn connection_count(&self) -> usize {
        self.inner.live_connections.load(Ordering::Relaxed)
    }

    /// Closes every connection (peers see `GOING_AWAY`), stops accepting and waits up to one
    /// second for the peers to be told. Sessions and requests in progress fail.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner
            .endpoint
            .close(VarInt::from_u32(CLOSE_GOING_AWAY), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }

    /// Opens a raw bidirectional stream to `addr`, for tests that misbehave on purpose.
    #[cfg(test)]
    pub(crate) async fn raw_stream(
        &self,
        addr: SocketAddr,
    ) -> Result<(SendStream, RecvStream), SessionError> {
        let conn = self.inner.connection(addr).await?;
        Ok(conn.open_bi().await?)
    }
}

impl Inner {
    /// The pooled connection to `addr`, dialing it if needed (concurrent callers share a dial).
    async fn connection(self: &Arc<Self>, addr: SocketAddr) -> Result<Connection, SessionError> {
        if self.cancel.is_cancelled() {
            return Err(SessionError::Closed);
        }
        // A pooled connection may turn out dead: then dial once more, afresh.
        let mut last = None;
        for _ in 0..2 {
            let cell = self.pool.lock().entry(addr).or_default().clone();
            let result = cell.get_or_try_init(|| self.dial(addr)).await;
            let dead = match &result {
                Ok(conn) => conn.close_reason(),
                Err(_) => None,
            };
            if result.is_err() || dead.is_some() {
                let mut pool = self.pool.lock();
                if pool.get(&addr).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                    pool.remove(&addr);
                }
            }
            match (result, dead) {
                (Ok(conn), None) => return Ok(conn.clone()),
                (Ok(_), Some(reason)) => last = Some(reason),
                (Err(e), _) => return Err(e),
            }
        }
        Err(last.map_or(SessionError::Closed, SessionError::Connection))
    }

    async fn dial(self: &Arc<Self>, addr: SocketAddr) -> Result<Connection, SessionError> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, SERVER_NAME)
            .map_err(|source| SessionError::Connect { addr, source })?;
        let conn = tokio::time::timeout(self.limits.connect_timeout, connecting)
            .await
            .map_err(|_| SessionError::ConnectTimeout(addr))??;
        tracing::debug!(%addr, "dialed peer");
        self.clone().spawn_connection(conn.clone());
        Ok(conn)
    }

    /// Pools an accepted connection unless one to that address exists or is being dialed.
    fn adopt(self: Arc<Self>, conn: Connection) {
        {
            let mut pool = self.pool.lock();
            let addr = conn.remote_address();
            let replace = match pool.get(&addr) {
                None => true,
                Some(cell) => cell.get().is_some_and(|c| c.close_reason().is_some()),
            };
            if replace {
                pool.insert(addr, Arc::new(OnceCell::new_with(Some(conn.clone()))));
            }
        }
        self.spawn_connection(conn);
    }

    fn spawn_connection(self: Arc<Self>, conn: Connection) {
        self.live_connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection_task(self, conn));
    }

    /// Routes request streams for `info_hash` on `conn` to a new queue; `None` if a live
    /// session already has that route.
    pub(crate) fn register(
        self: &Arc<Self>,
        conn: &Connection,
        info_hash: InfoHash,
    ) -> Option<Registration> {
        let key = (conn.stable_id(), info_hash);
        let id = self.next_route_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let mut routes = self.routes.lock();
        if routes.get(&key).is_some_and(|r| !r.tx.is_closed()) {
            return None;
        }
        routes.insert(key, Route { id, tx });
        Some((
            rx,
            RegistrationGuard {
                inner: self.clone(),
                key,
                id,
            },
        ))
    }

    fn route(
        &self,
        conn: &Connection,
        info_hash: InfoHash,
    ) -> Option<mpsc::Sender<IncomingRequest>> {
        self.routes
            .lock()
            .get(&(conn.stable_id(), info_hash))
            .map(|r| r.tx.clone())
    }
}

/// Removes a session's route when its request receiver is dropped.
#[derive(Debug)]
pub(crate) struct RegistrationGuard {
    inner: Arc<Inner>,
    key: SessionKey,
    id: u64,
}

impl Drop for RegistrationGuard {
    fn drop(&mut self) {
        let mut routes = self.inner.routes.lock();
        if routes.get(&self.key).is_some_and(|r| r.id == self.id) {
            routes.remove(&self.key);
        }
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    loop {
        let incoming = tokio::select! {
            () = inner.cancel.cancelled() => break,
            i = inner.endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match tokio::time::timeout(inner.limits.connect_timeout, incoming).await {
                Ok(Ok(conn)) => {
                    tracing::debug!(%remote, "accepted peer connection");
                    inner.adopt(conn);
                }
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "inbound connection failed"),
                Err(_) => tracing::debug!(%remote, "inbound connection handshake timed out"),
            }
        });
    }
    inner
        .endpoint
        .close(VarInt::from_u32(CLOSE_GOING_AWAY), b"shutting down");
}

/// Accepts the streams a peer opens on one connection until it closes.
async fn connection_task(inner: Arc<Inner>, conn: Connection) {
    loop {
        let (send, recv) = tokio::select! {
            () = inner.cancel.cancelled() => break,
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(remote = %conn.remote_address(), error = %e, "connection closed");
                    break;
                }
            },
        };
        tokio::spawn(route_stream(inner.clone(), conn.clone(), send, recv));
    }
    let id = conn.stable_id();
    {
        let mut pool = inner.pool.lock();
        let addr = conn.remote_address();
        if pool
            .get(&addr)
            .and_then(|c| c.get())
            .is_some_and(|c| c.stable_id() == id)
        {
            pool.remove(&addr);
        }
    }
    inner.routes.lock().retain(|(conn_id, _), _| *conn_id != id);
    inner.live_connections.fetch_sub(1, Ordering::Relaxed);
}

/// Reads the first frame of a stream the peer opened and hands the stream to its owner.
async fn route_stream(inner: Arc<Inner>, conn: Connection, mut send: SendStream, recv: RecvStream) {
    let mut reader = FrameReader::new(recv, FrameDecoder::default());
    let first = match tokio::time::timeout(inner.limits.handshake_timeout, reader.next()).await {
        Ok(Ok(Some(msg))) => msg,
        Ok(Ok(None)) => return,
        Ok(Err(FrameReadError::Read(e))) => {
            tracing::debug!(error = %e, "inbound stream failed");
            return;
        }
        Ok(Err(e)) => {
            let detail = match e {
                FrameReadError::Wire(e) => e.to_string(),
                _ => "stream ended mid-frame".to_owned(),
            };
            reject_stream(&mut send, ErrorCode::Protocol, detail).await;
            return;
        }
        Err(_) => {
            reject_stream(&mut send, ErrorCode::Protocol, "no frame in time").await;
            return;
        }
    };
    match first {
        Message::Handshake(theirs) => {
            if theirs.version != PROTOCOL_VERSION {
                let detail = format!(
                    "unsupported protocol version {} (this peer speaks {PROTOCOL_VERSION})",
                    theirs.version
                );
                reject_stream(&mut send, ErrorCode::Protocol, detail).await;
                return;
            }
            let session = IncomingSession::new(inner.clone(), conn, theirs, send, reader);
            if let Err(e) = inner.incoming.try_send(session) {
                let (session, code) = match e {
                    mpsc::error::TrySendError::Full(s) => (s, ErrorCode::TooManyConnections),
                    mpsc::error::TrySendError::Closed(s) => (s, ErrorCode::GoingAway),
                };
                let _ = session.reject(code, "not accepting sessions").await;
            }
        }
        Message::Request { piece, info_hash } => {
            let request = IncomingRequest::new(inner.clone(), piece, send, reader.into_inner());
            let request = match inner.route(&conn, info_hash) {
                Some(tx) => match tx.send(request).await {
                    Ok(()) => return,
                    Err(mpsc::error::SendError(request)) => request,
                },
                None => request,
            };
            let _ = request
                .reject(ErrorCode::UnknownTorrent, "no session for this torrent")
                .await;
        }
        other => {
            let detail = format!("unexpected {} frame opening a stream", other.kind());
            reject_stream(&mut send, ErrorCode::Protocol, detail).await;
        }
    }
}

/// Best effort: tells the peer why its stream is refused and closes our side.
async fn reject_stream(send: &mut SendStream, code: ErrorCode, detail: impl Into<String>) {
    let mut frame = BytesMut::new();
    if encode(&Message::error(code, detail), &mut frame).is_ok() {
        let _ = send.write_chunk(frame.freeze()).await;
    }
    let _ = send.finish();
}
