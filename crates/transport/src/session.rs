//! Torrent sessions: a control stream per (connection, torrent) plus its request streams.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use quinn::{Connection, SendStream};
use shoal_core::InfoHash;
use shoal_wire::{ErrorCode, FrameDecoder, Handshake, Message, PROTOCOL_VERSION, encode};
use tokio::sync::mpsc;

use crate::endpoint::{Inner, RegistrationGuard};
use crate::error::{RequestError, SessionError};
use crate::io::{FrameReadError, FrameReader};
use crate::request::{self, IncomingRequest};

/// Control frames queued for the writer task of a session.
const CONTROL_QUEUE: usize = 64;

impl From<FrameReadError> for SessionError {
    fn from(e: FrameReadError) -> Self {
        match e {
            FrameReadError::Read(e) => Self::Read(e),
            FrameReadError::Wire(e) => Self::Wire(e),
            FrameReadError::Truncated => Self::Truncated,
        }
    }
}

/// An established session: one torrent with one peer, over the connection shared with every
/// other torrent of that peer.
///
/// Use it directly, or [`Session::split`] it to send, receive control frames and serve requests
/// from different tasks. Dropping every part closes the control stream (the peer's
/// [`ControlReceiver::recv`] returns `Ok(None)`) and stops routing requests to it (the peer's
/// requests then fail with `UNKNOWN_TORRENT`).
#[derive(Debug)]
pub struct Session {
    sender: SessionSender,
    control: ControlReceiver,
    requests: RequestReceiver,
}

impl Session {
    /// The peer's handshake.
    pub fn theirs(&self) -> &Handshake {
        self.sender.theirs()
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.sender.remote_addr()
    }

    /// Sends a control frame; see [`SessionSender::send`].
    pub async fn send(&self, msg: Message) -> Result<(), SessionError> {
        self.sender.send(msg).await
    }

    /// The next control frame from the peer; see [`ControlReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Option<Message>, SessionError> {
        self.control.recv().await
    }

    /// Requests a piece from the peer; see [`SessionSender::request`].
    pub async fn request(&self, piece: u32, expected_len: u32) -> Result<Bytes, RequestError> {
        self.sender.request(piece, expected_len).await
    }

    /// The next piece request from the peer; see [`RequestReceiver::next`].
    pub async fn next_request(&mut self) -> Option<IncomingRequest> {
        self.requests.next().await
    }

    /// Splits the session into its sending half (cheap to clone), its control receiver and its
    /// request receiver.
    pub fn split(self) -> (SessionSender, ControlReceiver, RequestReceiver) {
        (self.sender, self.control, self.requests)
    }
}

/// The sending half of a [`Session`]: control frames and piece requests. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionSender {
    shared: Arc<SenderShared>,
}

#[derive(Debug)]
struct SenderShared {
    inner: Arc<Inner>,
    conn: Connection,
    theirs: Handshake,
    frames: mpsc::Sender<Bytes>,
}

impl SessionSender {
    /// The peer's handshake.
    pub fn theirs(&self) -> &Handshake {
        &self.shared.theirs
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.shared.conn.remote_address()
    }

    /// The torrent.
    pub fn info_hash(&self) -> InfoHash {
        self.shared.theirs.info_hash
    }

    /// Queues a control frame (`Have`, `Cancel`, `Complete` or `Error`) for the peer; frames
    /// arrive in the order they were sent. Waits while the queue is full. Other messages are
    /// refused with [`SessionError::Unexpected`].
    pub async fn send(&self, msg: Message) -> Result<(), SessionError> {
        match msg {
            Message::Have(_) | Message::Cancel(_) | Message::Complete | Message::Error { .. } => {}
            other => return Err(SessionError::Unexpected(other.kind())),
        }
        let mut buf = BytesMut::new();
        encode(&msg, &mut buf)?;
        self.send_raw(buf.freeze()).await
    }

    pub(crate) async fn send_raw(&self, frame: Bytes) -> Result<(), SessionError> {
        self.shared
            .frames
            .send(frame)
            .await
            .map_err(|_| SessionError::Closed)
    }

    /// Requests `piece` on a new stream and returns its data.
    ///
    /// The peer's announced length must equal `expected_len` and be at most the transport's
    /// `max_piece_len`, else the request fails before any data is read. Data is read into one
    /// buffer of exactly that size, through the ingress limiter if one is configured. Dropping
    /// the future cancels the request: the stream is stopped and the peer stops sending.
    pub async fn request(&self, piece: u32, expected_len: u32) -> Result<Bytes, RequestError> {
        let s = &self.shared;
        request::request(&s.inner, &s.conn, s.theirs.info_hash, piece, expected_len).await
    }
}

/// Receives a session's control frames, in order.
#[derive(Debug)]
pub struct ControlReceiver {
    reader: FrameReader,
}

impl ControlReceiver {
    /// The next control frame: `Have`, `Cancel`, `Complete` or `Error`. `Ok(None)` when the
    /// peer closed the session cleanly. Any other frame, a malformed frame or a reset stream is
    /// an error, after which the session is over. Cancel-safe (usable in `select!`).
    pub async fn recv(&mut self) -> Result<Option<Message>, SessionError> {
        match self.reader.next().await? {
            None => Ok(None),
            Some(
                m @ (Message::Have(_)
                | Message::Cancel(_)
                | Message::Complete
                | Message::Error { .. }),
            ) => Ok(Some(m)),
            Some(other) => Err(SessionError::Unexpected(other.kind())),
        }
    }
}

/// Receives the peer's piece requests for this session's torrent.
#[derive(Debug)]
pub struct RequestReceiver {
    rx: mpsc::Receiver<IncomingRequest>,
    _registration: RegistrationGuard,
}

impl RequestReceiver {
    /// The next request; `None` once the connection or transport is closed. Cancel-safe.
    pub async fn next(&mut self) -> Option<IncomingRequest> {
        self.rx.recv().await
    }
}

/// A peer opened a control stream: answer with [`Self::accept`] or [`Self::reject`]. Dropping
/// it closes the stream without an answer.
#[derive(Debug)]
pub struct IncomingSession {
    inner: Arc<Inner>,
    conn: Connection,
    theirs: Handshake,
    send: SendStream,
    reader: FrameReader,
}

impl IncomingSession {
    pub(crate) fn new(
        inner: Arc<Inner>,
        conn: Connection,
        theirs: Handshake,
        send: SendStream,
        reader: FrameReader,
    ) -> Self {
        Self {
            inner,
            conn,
            theirs,
            send,
            reader,
        }
    }

    /// The peer's handshake (its protocol version is already checked).
    pub fn theirs(&self) -> &Handshake {
        &self.theirs
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Answers with our handshake and starts the session. `ours` must name the same torrent.
    /// Fails with [`SessionError::Duplicate`] (and rejects the peer) if this connection already
    /// has a session for the torrent.
    pub async fn accept(mut self, ours: Handshake) -> Result<Session, SessionError> {
        if ours.info_hash != self.theirs.info_hash {
            let err = SessionError::InfoHashMismatch {
                ours: ours.info_hash,
                theirs: self.theirs.info_hash,
            };
            self.reject(ErrorCode::UnknownTorrent, err.to_string())
                .await?;
            return Err(err);
        }
        // Register before answering: the peer may send requests as soon as it has our answer.
        let Some(registration) = self.inner.register(&self.conn, ours.info_hash) else {
            self.reject(ErrorCode::TooManyConnections, "duplicate session")
                .await?;
            return Err(SessionError::Duplicate);
        };
        write_frame(&mut self.send, &Message::Handshake(ours)).await?;
        Ok(establish(
            self.inner,
            self.conn,
            self.theirs,
            self.send,
            self.reader,
            registration,
        ))
    }

    /// Refuses the session with an `Error` frame and closes the stream.
    pub async fn reject(
        mut self,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), SessionError> {
        write_frame(&mut self.send, &Message::error(code, message)).await?;
        // Already finished or reset by the peer: nothing left to close.
        let _ = self.send.finish();
        Ok(())
    }
}

async fn write_frame(send: &mut SendStream, msg: &Message) -> Result<(), SessionError> {
    let mut buf = BytesMut::new();
    encode(msg, &mut buf)?;
    send.write_chunk(buf.freeze()).await?;
    Ok(())
}

/// Opens a session on `conn`: sends our handshake on a new control stream and waits for the
/// answer.
pub(crate) async fn open(
    inner: Arc<Inner>,
    conn: Connection,
    ours: Handshake,
) -> Result<Session, SessionError> {
    let info_hash = ours.info_hash;
    // Register first: the peer may send requests as soon as it has answered.
    let registration = inner
        .register(&conn, info_hash)
        .ok_or(SessionError::Duplicate)?;
    let (mut send, recv) = conn.open_bi().await?;
    write_frame(&mut send, &Message::Handshake(ours)).await?;
    let mut reader = FrameReader::new(recv, FrameDecoder::default());
    let answer = tokio::time::timeout(inner.limits.handshake_timeout, reader.next())
        .await
        .map_err(|_| SessionError::HandshakeTimeout)??;
    let theirs = match answer {
        Some(Message::Handshake(theirs)) => theirs,
        Some(Message::Error { code, message }) => {
            return Err(SessionError::Rejected { code, message });
        }
        Some(other) => return Err(SessionError::Unexpected(other.kind())),
        None => {
            return Err(SessionError::Rejected {
                code: ErrorCode::Unspecified,
                message: "stream closed without an answer".to_owned(),
            });
        }
    };
    if theirs.version != PROTOCOL_VERSION {
        return Err(SessionError::UnsupportedVersion(theirs.version));
    }
    if theirs.info_hash != info_hash {
        return Err(SessionError::InfoHashMismatch {
            ours: info_hash,
            theirs: theirs.info_hash,
        });
    }
    Ok(establish(inner, conn, theirs, send, reader, registration))
}

fn establish(
    inner: Arc<Inner>,
    conn: Connection,
    theirs: Handshake,
    send: SendStream,
    reader: FrameReader,
    (rx, guard): crate::endpoint::Registration,
) -> Session {
    let (frames, frames_rx) = mpsc::channel(CONTROL_QUEUE);
    tokio::spawn(write_control(send, frames_rx));
    Session {
        sender: SessionSender {
            shared: Arc::new(SenderShared {
                inner,
                conn,
                theirs,
                frames,
            }),
        },
        control: ControlReceiver { reader },
        requests: RequestReceiver {
            rx,
            _registration: guard,
        },
    }
}

/// Writes queued control frames in order; finishes the stream once every sender is gone.
async fn write_control(mut send: SendStream, mut frames: mpsc::Receiver<Bytes>) {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = send.write_chunk(frame).await {
            tracing::debug!(error = %e, "control stream write failed");
            return;
        }
    }
    // Already reset by the peer: nothing left to finish.
    let _ = send.finish();
}
