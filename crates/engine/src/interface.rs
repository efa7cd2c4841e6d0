//! The engine's inputs and outputs: what the driver reports and what it is asked to do.

use std::net::SocketAddr;

use shoal_core::{PeerId, PieceIndex};

/// A peer the tracker handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its id.
    pub peer_id: PeerId,
    /// Where to dial it.
    pub addr: SocketAddr,
    /// It is an origin.
    pub is_origin: bool,
}

/// What this side of the torrent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An agent: downloads, then seeds; dials peers while downloading.
    Agent,
    /// An origin: always complete, never dials, only serves.
    Origin,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Dial this peer and handshake; report with `handle_connected` or `handle_connect_failed`.
    Connect {
        /// Peer to dial.
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
    },
    /// Close the connection to this peer (no further events for it are expected).
    Disconnect {
        /// Peer.
        peer: PeerId,
        /// Why.
        reason: DisconnectReason,
    },
    /// Request a piece; report with `handle_piece` or `handle_request_failed`.
    Request {
        /// Peer to ask.
        peer: PeerId,
        /// Piece wanted.
        piece: PieceIndex,
    },
    /// Cancel an outstanding request (endgame duplicate, or a timed-out request).
    Cancel {
        /// Peer asked.
        peer: PeerId,
        /// Piece no longer wanted from it.
        piece: PieceIndex,
    },
    /// Tell a peer we now have a piece.
    Have {
        /// Peer to tell.
        peer: PeerId,
        /// Piece we have.
        piece: PieceIndex,
    },
    /// Tell a peer we have every piece.
    Complete {
        /// Peer to tell.
        peer: PeerId,
    },
    /// Every piece is verified: the driver checks the whole blob and publishes it.
    Finished,
}

/// Why the engine closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// It sent a piece that failed verification (the peer is blacklisted).
    BadPiece,
    /// It violated the protocol (bad piece index; blacklisted).
    Protocol,
    /// Too many of its requests in a row timed out (slow or gone).
    TooSlow,
    /// No piece traffic either way for the idle timeout.
    Idle,
    /// Both sides are complete: nothing to exchange.
    BothComplete,
}

/// Why a connection was refused by [`crate::Torrent::handle_connected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It is us.
    #[error("connection to self")]
    SelfConnection,
    /// We already have a connection to this peer for this torrent.
    #[error("already connected")]
    AlreadyConnected,
    /// The peer is blacklisted for this torrent.
    #[error("peer is blacklisted")]
    Blacklisted,
    /// The torrent has its maximum number of connections.
    #[error("too many connections")]
    TooManyConnections,
    /// The peer's bitfield does not fit the torrent.
    #[error("bitfield does not match the torrent")]
    BadBitfield,
    /// Both sides are complete.
    #[error("both peers are complete")]
    BothComplete,
}

/// Why a dial failed, as reported by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No answer: the peer is down or unreachable.
    Unreachable,
    /// The connection or handshake failed (TLS, protocol version, wrong torrent).
    Handshake,
    /// The peer refused because it has enough connections (or is complete like us).
    Busy,
}

/// The result of checking a received piece, as reported by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceOutcome {
    /// The piece matched its SHA-256 and is stored.
    Valid,
    /// The piece did not match its SHA-256; it was discarded.
    Corrupt,
}

/// Counters for reports and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TorrentStats {
    /// Valid pieces received, including endgame duplicates.
    pub pieces_received: u64,
    /// Valid pieces received that we already had (endgame waste).
    pub duplicate_pieces: u64,
    /// Corrupt pieces received.
    pub corrupt_pieces: u64,
    /// Requests that timed out.
    pub timeouts: u64,
}
