//! Length-prefixed framing.

use bytes::{Buf, BufMut, BytesMut};
use prost::Message as _;

use crate::error::WireError;
use crate::message::{MAX_BITFIELD_LEN, Message};
use crate::pb;

/// Bytes of the big-endian length prefix in front of every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// The default maximum frame length: the largest handshake bitfield plus 4 KiB for the other
/// fields. Every other frame is far smaller.
pub const DEFAULT_MAX_FRAME_LEN: u32 = MAX_BITFIELD_LEN as u32 + 4096;

/// Appends `msg` as one frame (length prefix and encoded `Frame`) to `dst`.
///
/// Fails only if the message breaks a limit a receiver would enforce (an `Error` string longer
/// than [`crate::MAX_STRING_LEN`] or a bitfield longer than [`crate::MAX_BITFIELD_LEN`]); `dst`
/// is then unchanged.
pub fn encode(msg: &Message, dst: &mut BytesMut) -> Result<(), WireError> {
    msg.check_limits()?;
    let frame = pb::Frame::from(msg);
    let len = frame.encoded_len();
    // The limits above keep every frame far below 4 GiB.
    let prefix = u32::try_from(len).map_err(|_| WireError::FrameTooLong {
        len: u32::MAX,
        max: DEFAULT_MAX_FRAME_LEN,
    })?;
    dst.reserve(LENGTH_PREFIX_LEN + len);
    dst.put_u32(prefix);
    // Cannot fail in practice: `BytesMut` grows as needed.
    frame.encode(dst)?;
    Ok(())
}

/// Incremental frame decoder: feed it bytes as they arrive, get whole messages out.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_len: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames longer than `max_frame_len` bytes (not counting the prefix).
    pub fn new(max_frame_len: u32) -> Self {
        Self { max_frame_len }
    }

    /// The maximum frame length this decoder accepts.
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }

    /// Takes one frame off the front of `src` if it is complete.
    ///
    /// Returns `Ok(None)` (consuming nothing) while the frame is incomplete; the caller appends
    /// more bytes and calls again. An oversized length prefix is an error as soon as the prefix
    /// is complete, before anything is allocated for the body. After an error the stream is out
    /// of sync and must be abandoned. Never panics, whatever the input.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Message>, WireError> {
        let Some(prefix) = src.get(..LENGTH_PREFIX_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len > self.max_frame_len {
            return Err(WireError::FrameTooLong {
                len,
                max: self.max_frame_len,
            });
        }
        let total = LENGTH_PREFIX_LEN + len as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX_LEN);
        let body = src.split_to(len as usize).freeze();
        let frame = pb::Frame::decode(body)?;
        Message::try_from(frame).map(Some)
    }
}
