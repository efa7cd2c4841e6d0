//! Streaming request bodies and backend downloads into temporary blobs.
//!
//! The async side only moves `Bytes` handles into a bounded channel; hashing and file writes
//! happen on one blocking thread per stream, so neither stalls the async workers.

use std::io;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use shoal_store::{StoreError, TempBlob};
use tokio::sync::mpsc;

/// Chunks in flight between the network and the writing thread.
const CHUNKS_IN_FLIGHT: usize = 64;

/// Why streaming into a temporary blob stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    /// The source stream failed (client disconnected, backend connection reset, …). The bytes
    /// received before the failure were written.
    #[error("reading body: {0}")]
    Source(String),
    /// Writing the temporary file failed; the temporary blob is unusable and was deleted.
    #[error("writing blob: {0}")]
    Store(#[from] StoreError),
}

/// Appends everything `source` yields to `temp`. Returns the blob (unless a write failed) and
/// the outcome.
pub(crate) async fn append<S, E>(
    temp: TempBlob,
    source: S,
) -> (Option<TempBlob>, Result<(), SinkError>)
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || {
        let mut temp = temp;
        while let Some(chunk) = rx.blocking_recv() {
            temp.write_bytes(chunk)?;
        }
        Ok(temp)
    });
    let mut source = std::pin::pin!(source);
    let mut source_error = None;
    while let Some(item) = source.next().await {
        match item {
            Ok(chunk) => {
                if chunk.is_empty() {
                    continue;
                }
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Err(e) => {
                source_error = Some(SinkError::Source(e.to_string()));
                break;
            }
        }
    }
    drop(tx);
    match writer.await {
        Ok(Ok(temp)) => (Some(temp), source_error.map_or(Ok(()), Err)),
        Ok(Err(e)) => (None, Err(SinkError::Store(e))),
        Err(e) => (
            None,
            Err(SinkError::Store(StoreError::Io {
                context: "blob writer task".into(),
                source: io::Error::other(e.to_string()),
            })),
        ),
    }
}
