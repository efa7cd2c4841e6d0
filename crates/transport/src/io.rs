//! Reading frames off QUIC streams.

use bytes::BytesMut;
use quinn::RecvStream;
use shoal_wire::{FrameDecoder, Message, WireError};

/// Frames on request streams (a `Request`, a `Piece` header or an `Error`) are tiny; anything
/// longer than this is a protocol violation.
pub(crate) const REQUEST_STREAM_MAX_FRAME: u32 = 4096;

/// How much one read takes off a control stream.
const CONTROL_READ: usize = 64 << 10;

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum FrameReadError {
    Read(quinn::ReadError),
    Wire(WireError),
    /// The stream ended in the middle of a frame.
    Truncated,
}

/// A receive stream with a frame decoder. Cancel-safe: a `next` future dropped before it
/// completes loses nothing.
#[derive(Debug)]
pub(crate) struct FrameReader {
    recv: RecvStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameReader {
    pub(crate) fn new(recv: RecvStream, decoder: FrameDecoder) -> Self {
        Self {
            recv,
            buf: BytesMut::new(),
            decoder,
        }
    }

    /// The next frame; `Ok(None)` when the stream ended cleanly between frames.
    pub(crate) async fn next(&mut self) -> Result<Option<Message>, FrameReadError> {
        loop {
            if let Some(msg) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(FrameReadError::Wire)?
            {
                return Ok(Some(msg));
            }
            // Read no further than the end of the current frame if its length is known, so the
            // bytes after a piece header stay in the stream (they are raw data).
            let want = match self.buf.get(..4) {
                Some(p) => {
                    let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
                    (4 + len).saturating_sub(self.buf.len()).max(1)
                }
                None => 4 - self.buf.len(),
            };
            match self
                .recv
                .read_chunk(want.min(CONTROL_READ), true)
                .await
                .map_err(FrameReadError::Read)?
            {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(FrameReadError::Truncated),
            }
        }
    }

    /// The stream, positioned right after the last frame returned.
    pub(crate) fn into_inner(self) -> RecvStream {
        self.recv
    }
}
