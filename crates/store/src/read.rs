//! Reading committed blobs: positioned reads and chunk streams off the async threads.

use std::fs;
use std::io::{self, Read, Seek};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Chunk size of [`BlobReader::into_chunks`]: 1 MiB keeps syscalls and channel hops rare.
pub const READ_CHUNK: usize = 1 << 20;

/// Chunks in flight between the reading thread and the consumer (bounded memory: 4 MiB).
const CHUNKS_IN_FLIGHT: usize = 4;

/// An open, committed blob.
#[derive(Debug)]
pub struct BlobReader {
    file: fs::File,
    size: u64,
}

impl BlobReader {
    pub(crate) fn new(file: fs::File, size: u64) -> Self {
        Self { file, size }
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fills `buf` from `offset` (blocking; short only at the end of the blob).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Streams `range` of the blob (clamped to its size) as chunks read by a blocking thread,
    /// with at most a few chunks buffered. Must be called within a Tokio runtime.
    pub fn into_chunks(self, range: Range<u64>) -> ByteChunks {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let end = range.end.min(self.size);
        let mut offset = range.start.min(end);
        tokio::task::spawn_blocking(move || {
            // Sequential reads through `Read::take(..).read_to_end` fill fresh buffers without
            // zeroing them first.
            let mut file = &self.file;
            if let Err(e) = file.seek(io::SeekFrom::Start(offset)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            while offset < end {
                let n = usize::try_from(end - offset).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
                let mut buf = Vec::with_capacity(n);
                let chunk = match file.take(n as u64).read_to_end(&mut buf) {
                    Ok(got) if got == n => Bytes::from(buf),
                    Ok(got) => {
                        let e = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("blob shorter than indexed: read {got} of {n} at {offset}"),
                        );
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                if tx.blocking_send(Ok(chunk)).is_err() {
                    return;
                }
                offset += n as u64;
            }
        });
        ByteChunks { rx }
    }
}

/// A stream of a blob's chunks (see [`BlobReader::into_chunks`]).
#[derive(Debug)]
pub struct ByteChunks {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl futures_util::Stream for ByteChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
