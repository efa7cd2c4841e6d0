//! Why bytes are not a valid peer-protocol frame.

/// A frame could not be decoded (or a message could not be encoded) because it breaks the
/// protocol.
///
/// Every variant is a protocol violation by whoever produced the bytes; the stream they came
/// from cannot be trusted any more and should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix announces a frame longer than the decoder's maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLong {
        /// The announced length.
        len: u32,
        /// The decoder's maximum.
        max: u32,
    },
    /// The frame body is not valid protobuf for `Frame`.
    #[error("malformed frame: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The output buffer could not take the frame (cannot happen with a growable `BytesMut`).
    #[error("cannot encode frame: {0}")]
    Encode(#[from] prost::EncodeError),
    /// The frame has no message in its `kind` oneof (or one this build does not know).
    #[error("frame has no message")]
    MissingKind,
    /// A peer id or info hash is not exactly 32 bytes.
    #[error("{field} must be 32 bytes, got {len}")]
    IdLength {
        /// Which field: `peer_id` or `info_hash`.
        field: &'static str,
        /// Its actual length.
        len: usize,
    },
    /// An `Error` frame carries an error code this build does not know.
    #[error("unknown error code {0}")]
    UnknownErrorCode(i32),
    /// A string field is longer than [`crate::MAX_STRING_LEN`] bytes.
    #[error("string of {len} bytes exceeds the maximum of {max}")]
    StringTooLong {
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A handshake bitfield is longer than [`crate::MAX_BITFIELD_LEN`] bytes.
    #[error("bitfield of {len} bytes exceeds the maximum of {max}")]
    BitfieldTooLong {
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
}
