//! Request streams: one bidirectional stream per piece request.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use quinn::{Connection, RecvStream, SendStream};
use shoal_core::InfoHash;
use shoal_wire::{ErrorCode, FrameDecoder, Message, encode};

use crate::bandwidth::SLICE_BYTES;
use crate::endpoint::Inner;
use crate::error::{RequestError, RespondError};
use crate::io::{FrameReadError, FrameReader, REQUEST_STREAM_MAX_FRAME};

impl RequestError {
    fn from_frame(e: FrameReadError, expected: u32) -> Self {
        match e {
            FrameReadError::Read(e) => Self::Read(e),
            FrameReadError::Wire(e) => Self::Wire(e),
            FrameReadError::Truncated => Self::Truncated {
                received: 0,
                expected,
            },
        }
    }
}

/// The requesting side: see [`crate::SessionSender::request`].
pub(crate) async fn request(
    inner: &Inner,
    conn: &Connection,
    info_hash: InfoHash,
    piece: u32,
    expected_len: u32,
) -> Result<Bytes, RequestError> {
    let max = inner.limits.max_piece_len;
    if expected_len > max {
        return Err(RequestError::TooLarge {
            length: expected_len,
            max,
        });
    }
    let (mut send, recv) = conn.open_bi().await?;
    let mut frame = BytesMut::new();
    encode(&Message::Request { piece, info_hash }, &mut frame)?;
    send.write_chunk(frame.freeze()).await?;
    // Only fails if the peer already reset the stream; the read below reports that.
    let _ = send.finish();

    let mut reader = FrameReader::new(recv, FrameDecoder::new(REQUEST_STREAM_MAX_FRAME));
    let header = reader
        .next()
        .await
        .map_err(|e| RequestError::from_frame(e, expected_len))?;
    let length = match header {
        Some(Message::Piece { piece: got, length }) => {
            if got != piece {
                return Err(RequestError::WrongPiece {
                    requested: piece,
                    got,
                });
            }
            if length > max {
                return Err(RequestError::TooLarge { length, max });
            }
            if length != expected_len {
                return Err(RequestError::LengthMismatch {
                    expected: expected_len,
                    announced: length,
                });
            }
            length
        }
        Some(Message::Error { code, message }) => {
            return Err(RequestError::Rejected { code, message });
        }
        Some(other) => return Err(RequestError::Unexpected(other.kind())),
        None => {
            return Err(RequestError::Truncated {
                received: 0,
                expected: expected_len,
            });
        }
    };
    // The reader stops exactly at the end of the header: the rest of the stream is data.
    let mut recv = reader.into_inner();
    read_data(inner, &mut recv, length).await
}

/// Reads exactly `length` bytes and the end of the stream, into one buffer.
async fn read_data(
    inner: &Inner,
    recv: &mut RecvStream,
    length: u32,
) -> Result<Bytes, RequestError> {
    let total = length as usize;
    let mut data = inner.recv_buffers.take(total);
    while data.len() < total {
        let Some(chunk) = recv.read_chunk(total - data.len(), true).await? else {
            return Err(RequestError::Truncated {
                received: data.len(),
                expected: length,
            });
        };
        if let Some(ingress) = &inner.ingress {
            ingress.acquire(chunk.bytes.len() as u64).await;
        }
        data.extend_from_slice(&chunk.bytes);
    }
    match recv.read_chunk(1, true).await? {
        None => Ok(data.freeze()),
        Some(_) => Err(RequestError::TrailingData),
    }
}

/// A peer's request for a piece of this session's torrent. Answer with [`Self::respond`] or
/// [`Self::reject`]; dropping it answers nothing (the peer sees the stream end without data).
#[derive(Debug)]
pub struct IncomingRequest {
    inner: Arc<Inner>,
    piece: u32,
    send: SendStream,
    /// Kept so the requester's (already finished) send side is not stopped early.
    _recv: RecvStream,
}

impl IncomingRequest {
    pub(crate) fn new(inner: Arc<Inner>, piece: u32, send: SendStream, recv: RecvStream) -> Self {
        Self {
            inner,
            piece,
            send,
            _recv: recv,
        }
    }

    /// The piece requested (not checked against any layout: that is the caller's job).
    pub fn piece(&self) -> u32 {
        self.piece
    }

    /// Resolves when the requester cancelled (stopped the stream) or the connection is gone;
    /// use it to abandon work for a request nobody waits for any more.
    pub async fn cancelled(&mut self) {
        // Either way the answer is no longer wanted.
        let _ = self.send.stopped().await;
    }

    /// Sends the piece: a `Piece` header, then the data, through the egress limiter if one is
    /// configured (in slices of at most 64 KiB, so concurrent answers share it fairly). Fails
    /// with [`RespondError::Cancelled`] if the requester cancelled.
    pub async fn respond(mut self, data: Bytes) -> Result<(), RespondError> {
        let length = u32::try_from(data.len()).map_err(|_| RespondError::TooLong(data.len()))?;
        let mut header = BytesMut::new();
        encode(
            &Message::Piece {
                piece: self.piece,
                length,
            },
            &mut header,
        )?;
        self.write(header.freeze()).await?;
        match self.inner.egress.clone() {
            None => self.write(data).await?,
            Some(egress) => {
                let mut rest = data;
                while !rest.is_empty() {
                    let slice = rest.split_to(rest.len().min(SLICE_BYTES as usize));
                    egress.acquire(slice.len() as u64).await;
                    self.write(slice).await?;
                }
            }
        }
        self.send.finish().map_err(|_| RespondError::Closed)
    }

    /// Refuses the request with an `Error` frame (e.g. [`ErrorCode::PieceUnavailable`]).
    pub async fn reject(
        mut self,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), RespondError> {
        let mut frame = BytesMut::new();
        encode(&Message::error(code, message), &mut frame)?;
        self.write(frame.freeze()).await?;
        self.send.finish().map_err(|_| RespondError::Closed)
    }

    async fn write(&mut self, bytes: Bytes) -> Result<(), RespondError> {
        self.send
            .write_chunk(bytes)
            .await
            .map_err(RespondError::from_write)
    }

    #[cfg(test)]
    pub(crate) async fn send_raw(mut self, bytes: Bytes) -> Result<(), RespondError> {
        self.write(bytes).await?;
        self.send.finish().map_err(|_| RespondError::Closed)
    }
}
