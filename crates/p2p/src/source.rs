//! Where a torrent's pieces live.

use bytes::Bytes;
use shoal_core::{Bitfield, BufferPool, MetaInfo, PieceIndex};
use shoal_store::{BlobReader, PartialBlob, PieceWrite, StoreError};

/// The pieces of one torrent: a download in progress (also seeded from while it runs), or a
/// complete blob that is only seeded.
#[derive(Debug, Clone)]
pub enum Source {
    /// A blob being downloaded piece by piece.
    Partial(PartialBlob),
    /// A complete, verified blob (origins, and agents seeding what they have).
    Complete(std::sync::Arc<BlobReader>),
}

impl Source {
    /// Pieces present now.
    pub(crate) fn have(&self, meta: &MetaInfo) -> Bitfield {
        match self {
            Self::Partial(p) => p.have(),
            Self::Complete(_) => Bitfield::full(meta.layout().piece_count()),
        }
    }

    /// Verifies and stores a received piece (blocking).
    pub(crate) fn write_piece(
        &self,
        piece: PieceIndex,
        data: &[u8],
    ) -> Result<PieceWrite, StoreError> {
        match self {
            Self::Partial(p) => p.write_piece(piece, data),
            Self::Complete(_) => Ok(PieceWrite::Duplicate),
        }
    }

    /// A piece's bytes if present (blocking).
    pub(crate) fn read_piece(
        &self,
        meta: &MetaInfo,
        piece: PieceIndex,
        buffers: &BufferPool,
    ) -> Result<Option<Bytes>, StoreError> {
        match self {
            Self::Partial(p) => p.read_piece(piece, buffers),
            Self::Complete(reader) => {
                let range = meta.layout().range(piece);
                let len = usize::try_from(range.end - range.start).unwrap_or(0);
                let mut buf = buffers.take_len(len);
                let n = reader
                    .read_at(range.start, &mut buf)
                    .map_err(|source| StoreError::Io {
                        context: "reading piece".into(),
                        source,
                    })?;
                Ok((n == len).then(|| buf.freeze()))
            }
        }
    }

    /// Whole-blob check and publication (blocking); the blob's size.
    pub(crate) fn finish(&self) -> Result<u64, StoreError> {
        match self {
            Self::Partial(p) => p.finish(),
            Self::Complete(reader) => Ok(reader.size()),
        }
    }

    /// Bytes from the start of the blob that are present.
    pub(crate) fn contiguous_prefix_len(&self) -> u64 {
        match self {
            Self::Partial(p) => p.contiguous_prefix_len(),
            Self::Complete(reader) => reader.size(),
        }
    }
}
