//! The typed view of a `Frame`.

use bytes::Bytes;
use shoal_core::{InfoHash, PeerId};

use crate::error::WireError;
use crate::pb;

/// The protocol version `proto/peer.proto` describes.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest string field (an `Error` message) a frame may carry, in bytes.
pub const MAX_STRING_LEN: usize = 1024;

/// The longest handshake bitfield, in bytes: 1 MiB covers 8 Mi pieces (32 TiB of 4 MiB pieces).
pub const MAX_BITFIELD_LEN: usize = 1 << 20;

/// First frame on a control stream, each way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Protocol version of the sender ([`PROTOCOL_VERSION`] for this build). Not checked here:
    /// the transport decides what to do with other versions.
    pub version: u32,
    /// The sender's peer id.
    pub peer_id: PeerId,
    /// The torrent this control stream is about.
    pub info_hash: InfoHash,
    /// The pieces the sender has, in wire form (most significant bit first). Only its size is
    /// checked here (at most [`MAX_BITFIELD_LEN`]); check it against the torrent's layout with
    /// [`shoal_core::Bitfield::from_bytes`].
    pub bitfield: Bytes,
    /// The sender is an origin (a dedicated seeder).
    pub is_origin: bool,
}

impl Handshake {
    /// A handshake for the current [`PROTOCOL_VERSION`].
    pub fn new(peer_id: PeerId, info_hash: InfoHash, bitfield: Bytes, is_origin: bool) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            peer_id,
            info_hash,
            bitfield,
            is_origin,
        }
    }
}

/// Why a peer refuses a request or closes a stream (`ErrorCode` in the proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No particular reason given.
    Unspecified,
    /// The sender does not have the requested piece.
    PieceUnavailable,
    /// The sender does not serve this torrent (unknown info hash).
    UnknownTorrent,
    /// The sender has too many connections (or sessions) for this torrent.
    TooManyConnections,
    /// A protocol violation: bad frame, wrong version, bad bitfield.
    Protocol,
    /// The sender is shutting down.
    GoingAway,
}

impl From<ErrorCode> for pb::ErrorCode {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::Unspecified => Self::Unspecified,
            ErrorCode::PieceUnavailable => Self::PieceUnavailable,
            ErrorCode::UnknownTorrent => Self::UnknownTorrent,
            ErrorCode::TooManyConnections => Self::TooManyConnections,
            ErrorCode::Protocol => Self::Protocol,
            ErrorCode::GoingAway => Self::GoingAway,
        }
    }
}

impl TryFrom<i32> for ErrorCode {
    type Error = WireError;

    fn try_from(value: i32) -> Result<Self, WireError> {
        Ok(
            match pb::ErrorCode::try_from(value).map_err(|_| WireError::UnknownErrorCode(value))? {
                pb::ErrorCode::Unspecified => Self::Unspecified,
                pb::ErrorCode::PieceUnavailable => Self::PieceUnavailable,
                pb::ErrorCode::UnknownTorrent => Self::UnknownTorrent,
                pb::ErrorCode::TooManyConnections => Self::TooManyConnections,
                pb::ErrorCode::Protocol => Self::Protocol,
                pb::ErrorCode::GoingAway => Self::GoingAway,
            },
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified",
            Self::PieceUnavailable => "piece unavailable",
            Self::UnknownTorrent => "unknown torrent",
            Self::TooManyConnections => "too many connections",
            Self::Protocol => "protocol violation",
            Self::GoingAway => "going away",
        })
    }
}

/// One peer-protocol message: the typed, validated content of a `Frame`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First frame of a control stream, each way.
    Handshake(Handshake),
    /// The sender now has this piece.
    Have(u32),
    /// Please send `piece` of `info_hash`: the first frame of a request stream.
    Request {
        /// The piece wanted.
        piece: u32,
        /// The torrent it belongs to.
        info_hash: InfoHash,
    },
    /// The answer to a request: exactly `length` raw bytes of piece data follow this frame on
    /// the stream (outside any frame).
    Piece {
        /// The piece sent.
        piece: u32,
        /// Number of raw data bytes that follow.
        length: u32,
    },
    /// The sender no longer wants this piece (endgame duplicate).
    Cancel(u32),
    /// The sender has every piece.
    Complete,
    /// The sender refuses a request or is closing the stream.
    Error {
        /// Why.
        code: ErrorCode,
        /// Human-readable detail, at most [`MAX_STRING_LEN`] bytes.
        message: String,
    },
}

impl Message {
    /// An `Error` message; `message` is cut to [`MAX_STRING_LEN`] bytes (at a character
    /// boundary) so it always encodes.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_STRING_LEN {
            let mut end = MAX_STRING_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self::Error { code, message }
    }

    /// The message kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Handshake(_) => "handshake",
            Self::Have(_) => "have",
            Self::Request { .. } => "request",
            Self::Piece { .. } => "piece",
            Self::Cancel(_) => "cancel",
            Self::Complete => "complete",
            Self::Error { .. } => "error",
        }
    }

    /// Checks the limits a receiver enforces, so we never send what a peer would reject.
    pub(crate) fn check_limits(&self) -> Result<(), WireError> {
        match self {
            Self::Handshake(h) => check_bitfield(h.bitfield.len()),
            Self::Error { message, .. } => check_string(message.len()),
            _ => Ok(()),
        }
    }
}

fn check_bitfield(len: usize) -> Result<(), WireError> {
    if len > MAX_BITFIELD_LEN {
        return Err(WireError::BitfieldTooLong {
            len,
            max: MAX_BITFIELD_LEN,
        });
    }
    Ok(())
}

fn check_string(len: usize) -> Result<(), WireError> {
    if len > MAX_STRING_LEN {
        return Err(WireError::StringTooLong {
            len,
            max: MAX_STRING_LEN,
        });
    }
    Ok(())
}

fn id32(field: &'static str, bytes: &[u8]) -> Result<[u8; 32], WireError> {
    bytes.try_into().map_err(|_| WireError::IdLength {
        field,
        len: bytes.len(),
    })
}

impl TryFrom<pb::Frame> for Message {
    type Error = WireError;

    fn try_from(frame: pb::Frame) -> Result<Self, WireError> {
        use pb::frame::Kind;
        Ok(match frame.kind.ok_or(WireError::MissingKind)? {
            Kind::Handshake(h) => {
                check_bitfield(h.bitfield.len())?;
                Self::Handshake(Handshake {
                    version: h.protocol_version,
                    peer_id: PeerId::from_bytes(id32("peer_id", &h.peer_id)?),
                    info_hash: InfoHash::from_bytes(id32("info_hash", &h.info_hash)?),
                    bitfield: h.bitfield,
                    is_origin: h.is_origin,
                })
            }
            Kind::Have(h) => Self::Have(h.piece),
            Kind::Request(r) => Self::Request {
                piece: r.piece,
                info_hash: InfoHash::from_bytes(id32("info_hash", &r.info_hash)?),
            },
            Kind::Piece(p) => Self::Piece {
                piece: p.piece,
                length: p.length,
            },
            Kind::Cancel(c) => Self::Cancel(c.piece),
            Kind::Complete(pb::Complete {}) => Self::Complete,
            Kind::Error(e) => {
                check_string(e.message.len())?;
                Self::Error {
                    code: ErrorCode::try_from(e.code)?,
                    message: e.message,
                }
            }
        })
    }
}

impl From<&Message> for pb::Frame {
    fn from(msg: &Message) -> Self {
        use pb::frame::Kind;
        let kind = match msg {
            Message::Handshake(h) => Kind::Handshake(pb::Handshake {
                protocol_version: h.version,
                peer_id: Bytes::copy_from_slice(h.peer_id.as_bytes()),
                info_hash: Bytes::copy_from_slice(h.info_hash.as_bytes()),
                bitfield: h.bitfield.clone(),
                is_origin: h.is_origin,
            }),
            Message::Have(piece) => Kind::Have(pb::Have { piece: *piece }),
            Message::Request { piece, info_hash } => Kind::Request(pb::Request {
                piece: *piece,
                info_hash: Bytes::copy_from_slice(info_hash.as_bytes()),
            }),
            Message::Piece { piece, length } => Kind::Piece(pb::PieceHeader {
                piece: *piece,
                length: *length,
            }),
            Message::Cancel(piece) => Kind::Cancel(pb::Cancel { piece: *piece }),
            Message::Complete => Kind::Complete(pb::Complete {}),
            Message::Error { code, message } => Kind::Error(pb::Error {
                code: pb::ErrorCode::from(*code).into(),
                message: message.clone(),
            }),
        };
        Self { kind: Some(kind) }
    }
}
