//! Error types, by scope: [`TransportError`] (the transport cannot start), [`SessionError`]
//! (a session is over or could not be set up), [`RequestError`] (one piece request failed; the
//! session goes on) and [`RespondError`] (one answer could not be delivered).

use std::net::SocketAddr;

use shoal_core::InfoHash;
use shoal_wire::{ErrorCode, WireError};

use crate::tls::TlsError;

/// The transport cannot start. Fatal.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid transport config: {0}")]
    InvalidConfig(&'static str),
}

/// A session could not be set up, or is over. The session (not the connection or the other
/// sessions on it) must be dropped; the peer may be retried later.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Dialing the peer did not finish within `connect_timeout`.
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    /// Dialing the peer could not start (bad address, endpoint closed).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        source: quinn::ConnectError,
    },
    /// The QUIC connection failed or was closed (also: TLS handshake failures).
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The control stream could not be read.
    #[error("control stream read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The control stream could not be written.
    #[error("control stream write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The peer sent bytes that are not a valid frame.
    #[error("peer sent a bad frame: {0}")]
    Wire(#[from] WireError),
    /// The control stream ended in the middle of a frame.
    #[error("control stream ended mid-frame")]
    Truncated,
    /// A message that does not belong at this point of the control stream.
    #[error("unexpected {0} frame on the control stream")]
    Unexpected(&'static str),
    /// The peer did not answer the handshake within `handshake_timeout`.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The peer refused the session with an `Error` frame.
    #[error("peer refused the session: {code}: {message}")]
    Rejected {
        /// Its reason.
        code: ErrorCode,
        /// Its detail.
        message: String,
    },
    /// The two handshakes name different torrents.
    #[error("handshake is for torrent {theirs}, expected {ours}")]
    InfoHashMismatch {
        /// Ours.
        ours: InfoHash,
        /// Theirs.
        theirs: InfoHash,
    },
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {0}")]
    UnsupportedVersion(u32),
    /// There already is a session for this torrent on this connection.
    #[error("a session for this torrent already exists on this connection")]
    Duplicate,
    /// The session or the transport was closed locally.
    #[error("session closed")]
    Closed,
}

/// One piece request failed. Recoverable: the session and other requests go on (unless the
/// connection itself is gone, see [`RequestError::Connection`]).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The announced (or expected) piece length exceeds `max_piece_len`.
    #[error("piece of {length} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The length.
        length: u32,
        /// `max_piece_len`.
        max: u32,
    },
    /// The peer announced a length other than the one expected.
    #[error("peer announced {announced} bytes, expected {expected}")]
    LengthMismatch {
        /// What the caller expected.
        expected: u32,
        /// What the peer announced.
        announced: u32,
    },
    /// The peer answered with another piece.
    #[error("peer sent piece {got}, requested {requested}")]
    WrongPiece {
        /// Requested.
        requested: u32,
        /// Received.
        got: u32,
    },
    /// The peer refused with an `Error` frame (e.g. piece unavailable, unknown torrent).
    #[error("peer refused: {code}: {message}")]
    Rejected {
        /// Its reason.
        code: ErrorCode,
        /// Its detail.
        message: String,
    },
    /// The peer sent something other than a piece header or an error.
    #[error("unexpected {0} frame on a request stream")]
    Unexpected(&'static str),
    /// The peer sent bytes that are not a valid frame.
    #[error("peer sent a bad frame: {0}")]
    Wire(#[from] WireError),
    /// The stream ended before the announced data was complete.
    #[error("stream ended after {received} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        received: usize,
        /// Bytes announced.
        expected: u32,
    },
    /// The peer sent more bytes than it announced.
    #[error("peer sent data beyond the announced length")]
    TrailingData,
    /// The connection is gone: every request and session on it fails.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The request stream failed (reset by the peer, connection lost).
    #[error("request stream read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The request could not be sent.
    #[error("request stream write: {0}")]
    Write(#[from] quinn::WriteError),
}

/// An answer to an incoming request could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    /// The requester cancelled (stopped the stream); normal in endgame.
    #[error("requester cancelled")]
    Cancelled,
    /// The data is longer than a piece can be (4 GiB).
    #[error("piece data of {0} bytes is too long")]
    TooLong(usize),
    /// Writing failed (connection lost).
    #[error("request stream write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The answer frame could not be encoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The stream was already finished or reset.
    #[error("stream closed")]
    Closed,
}

impl RespondError {
    pub(crate) fn from_write(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::Stopped(_) => Self::Cancelled,
            other => Self::Write(other),
        }
    }
}
