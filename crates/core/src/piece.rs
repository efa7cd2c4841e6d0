//! Cutting a blob into pieces.

use std::ops::Range;

/// The default piece length: 4 MiB, as in Kraken and most BitTorrent clients for large content.
pub const DEFAULT_PIECE_LENGTH: u32 = 4 << 20;

/// The smallest piece length [`piece_length_for`] picks by default: 256 KiB.
pub const DEFAULT_MIN_PIECE_LENGTH: u32 = 256 << 10;

/// How many pieces [`piece_length_for`] aims a blob to have at least.
pub const TARGET_PIECES: u64 = 512;

/// The piece length for a blob of `blob_len` bytes: the largest power of two that still cuts
/// it into at least [`TARGET_PIECES`] pieces, within `min..=max` (`max` wins if they cross).
///
/// A swarm needs many pieces: with few, every agent waits on the same few transfers and the
/// uplinks of agents holding nothing new idle. In the simulator a 128 MiB blob pulled by 32
/// capped agents finished at 1.59× the theoretical minimum with 4 MiB pieces (32 pieces) and
/// at 1.12× with 256 KiB pieces (512), while 1.5 GB layers do as well at 2 MiB as at 4 MiB
/// (see `docs/SIMULATIONS.md`). Large blobs keep `max` (4 MiB by default, as Kraken).
pub fn piece_length_for(blob_len: u64, min: u32, max: u32) -> u32 {
    let ideal = (blob_len / TARGET_PIECES).max(1);
    // The largest power of two ≤ ideal.
    let pow2 = 1u64 << (63 - ideal.leading_zeros());
    let len = pow2.max(u64::from(min)).min(u64::from(max.max(1)));
    u32::try_from(len).unwrap_or(max)
}

/// The largest piece length a layout accepts (256 MiB); larger pieces defeat swarming.
const MAX_PIECE_LENGTH: u32 = 256 << 20;

/// Why a layout cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceLayoutError {
    /// Piece length must be between 1 byte and 256 MiB.
    #[error("piece length {0} is out of range (1 ..= {MAX_PIECE_LENGTH})")]
    PieceLength(u32),
    /// The blob would have more than `u32::MAX` pieces.
    #[error("blob of {blob_len} bytes has too many pieces of {piece_len} bytes")]
    TooManyPieces {
        /// Blob length in bytes.
        blob_len: u64,
        /// Piece length in bytes.
        piece_len: u32,
    },
}

/// How a blob of a given length is cut into fixed-length pieces (the last may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PieceLayout {
    blob_len: u64,
    piece_len: u32,
    count: u32,
}

/// The index of a piece, valid for the [`PieceLayout`] that produced it.
///
/// There is no public constructor: indices come from [`PieceLayout::piece`] or
/// [`PieceLayout::pieces`], so code holding one never has to bounds-check it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The index as a number (0-based).
    pub fn get(self) -> u32 {
        self.0
    }

    /// The index as a `usize`, for indexing piece tables.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl PieceLayout {
    /// A layout for `blob_len` bytes in pieces of `piece_len` bytes.
    pub fn new(blob_len: u64, piece_len: u32) -> Result<Self, PieceLayoutError> {
        if piece_len == 0 || piece_len > MAX_PIECE_LENGTH {
            return Err(PieceLayoutError::PieceLength(piece_len));
        }
        let count = blob_len.div_ceil(u64::from(piece_len));
        let count = u32::try_from(count).map_err(|_| PieceLayoutError::TooManyPieces {
            blob_len,
            piece_len,
        })?;
        Ok(Self {
            blob_len,
            piece_len,
            count,
        })
    }

    /// A layout with [`DEFAULT_PIECE_LENGTH`] pieces (fails only beyond 16 PiB).
    pub fn with_default_piece_length(blob_len: u64) -> Result<Self, PieceLayoutError> {
        Self::new(blob_len, DEFAULT_PIECE_LENGTH)
    }

    /// Blob length in bytes.
    pub fn blob_len(&self) -> u64 {
        self.blob_len
    }

    /// Nominal piece length in bytes (every piece but the last has exactly this length).
    pub fn piece_len(&self) -> u32 {
        self.piece_len
    }

    /// Number of pieces; 0 for an empty blob.
    pub fn piece_count(&self) -> u32 {
        self.count
    }

    /// The index `i`, if this layout has such a piece.
    pub fn piece(&self, i: u32) -> Option<PieceIndex> {
        (i < self.count).then_some(PieceIndex(i))
    }

    /// All piece indices in order.
    pub fn pieces(&self) -> impl DoubleEndedIterator<Item = PieceIndex> + ExactSizeIterator {
        (0..self.count).map(PieceIndex)
    }

    /// The byte range of a piece within the blob.
    pub fn range(&self, piece: PieceIndex) -> Range<u64> {
        let start = u64::from(piece.0) * u64::from(self.piece_len);
        let end = (start + u64::from(self.piece_len)).min(self.blob_len);
        start..end
    }

    /// Length of a piece in bytes (the last piece may be shorter than [`Self::piece_len`]).
    pub fn len_of(&self, piece: PieceIndex) -> u32 {
        let r = self.range(piece);
        u32::try_from(r.end - r.start).expect("a piece is at most piece_len long")
    }

    /// The piece holding byte `offset`, if the offset is inside the blob.
    pub fn piece_at(&self, offset: u64) -> Option<PieceIndex> {
        if offset >= self.blob_len {
            return None;
        }
        u32::try_from(offset / u64::from(self.piece_len))
            .ok()
            .map(PieceIndex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blob_has_no_pieces() {
        let l = PieceLayout::new(0, 4).unwrap();
        assert_eq!(l.piece_count(), 0);
        assert_eq!(l.pieces().count(), 0);
        assert!(l.piece(0).is_none());
        assert!(l.piece_at(0).is_none());
    }

    #[test]
    fn exact_multiple() {
        let l = PieceLayout::new(12, 4).unwrap();
        assert_eq!(l.piece_count(), 3);
        let ranges: Vec<_> = l.pieces().map(|p| l.range(p)).collect();
        assert_eq!(ranges, vec![0..4, 4..8, 8..12]);
        assert!(l.piece(3).is_none());
        assert_eq!(l.piece_at(11), l.piece(2));
        assert!(l.piece_at(12).is_none());
    }

    #[test]
    fn one_byte_over() {
        let l = PieceLayout::new(13, 4).unwrap();
        assert_eq!(l.piece_count(), 4);
        let last = l.piece(3).unwrap();
        assert_eq!(l.range(last), 12..13);
        assert_eq!(l.len_of(last), 1);
        assert_eq!(l.len_of(l.piece(0).unwrap()), 4);
    }

    #[test]
    fn one_byte_under_and_single_piece() {
        let l = PieceLayout::new(3, 4).unwrap();
        assert_eq!(l.piece_count(), 1);
        assert_eq!(l.range(l.piece(0).unwrap()), 0..3);
        let l = PieceLayout::new(11, 4).unwrap();
        assert_eq!(l.piece_count(), 3);
        assert_eq!(l.len_of(l.piece(2).unwrap()), 3);
    }

    #[test]
    fn piece_length_follows_blob_size() {
        let (min, max) = (DEFAULT_MIN_PIECE_LENGTH, DEFAULT_PIECE_LENGTH);
        assert_eq!(piece_length_for(0, min, max), 256 << 10);
        assert_eq!(piece_length_for(1024, min, max), 256 << 10);
        assert_eq!(piece_length_for(128 << 20, min, max), 256 << 10);
        assert_eq!(piece_length_for(512 << 20, min, max), 1 << 20);
        assert_eq!(piece_length_for(1_500_000_000, min, max), 2 << 20);
        assert_eq!(piece_length_for(2 << 30, min, max), 4 << 20);
        assert_eq!(piece_length_for(100 << 30, min, max), 4 << 20);
        // A fixed length when min = max; max wins when they cross.
        assert_eq!(piece_length_for(128 << 20, 4 << 20, 4 << 20), 4 << 20);
        assert_eq!(piece_length_for(128 << 20, 8 << 20, 4 << 20), 4 << 20);
        // At least TARGET_PIECES pieces whenever min allows.
        for len in [3 << 20, 700 << 20, 3_000_000_000u64] {
            let p = piece_length_for(len, 1, 1 << 30);
            assert!(len.div_ceil(u64::from(p)) >= TARGET_PIECES, "{len}: {p}");
            assert!(
                len.div_ceil(u64::from(p) * 2) < TARGET_PIECES,
                "largest such: {len}: {p}"
            );
        }
    }

    #[test]
    fn default_piece_length_is_4mib() {
        let l = PieceLayout::with_default_piece_length(10 << 20).unwrap();
        assert_eq!(l.piece_len(), 4 << 20);
        assert_eq!(l.piece_count(), 3);
        assert_eq!(l.len_of(l.piece(2).unwrap()), 2 << 20);
    }

    #[test]
    fn rejects_bad_piece_lengths_and_overflow() {
        assert_eq!(
            PieceLayout::new(10, 0),
            Err(PieceLayoutError::PieceLength(0))
        );
        assert!(PieceLayout::new(10, MAX_PIECE_LENGTH + 1).is_err());
        assert!(matches!(
            PieceLayout::new(u64::MAX, 1),
            Err(PieceLayoutError::TooManyPieces { .. })
        ));
        assert!(PieceLayout::with_default_piece_length(u64::MAX).is_err());
        // The largest blob still representable with 4 MiB pieces (16 PiB).
        let max = u64::from(u32::MAX) * u64::from(DEFAULT_PIECE_LENGTH);
        let l = PieceLayout::with_default_piece_length(max).unwrap();
        assert_eq!(l.range(l.piece(l.piece_count() - 1).unwrap()).end, max);
    }

    proptest::proptest! {
        #[test]
        fn pieces_tile_the_blob(len in 0u64..1_000_000, piece_len in 1u32..70_000) {
            let l = PieceLayout::new(len, piece_len).unwrap();
            let mut next = 0;
            for p in l.pieces() {
                let r = l.range(p);
                proptest::prop_assert_eq!(r.start, next);
                proptest::prop_assert!(r.end > r.start);
                proptest::prop_assert_eq!(l.piece_at(r.start), Some(p));
                proptest::prop_assert_eq!(l.piece_at(r.end - 1), Some(p));
                next = r.end;
            }
            proptest::prop_assert_eq!(next, len);
        }
    }
}
