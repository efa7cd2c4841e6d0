//! A blob's SHA-256 with its chaining state kept at regular offsets: the digest and a chained
//! [`MetaInfo`] from one pass over the bytes.
//!
//! An origin hashes every upload to check its digest. If that pass also keeps SHA-256's
//! chaining state every `stride` bytes, the checkpoints of a chained metainfo (see
//! [`crate::HashScheme::Chained`]) for any piece length that is a multiple of `stride` are
//! among them, and the metainfo needs no second read of the blob. This is not a verifier of
//! pieces (that is [`MetaInfo::verify_piece`]).

use crate::chain::{BLOCK, Sha256Chain};
use crate::metainfo::MetaInfo;
use crate::{Digest, PieceLayout};

/// SHA-256 over a stream, recording the chaining state after every `stride` bytes.
#[derive(Debug, Clone)]
pub struct Sha256Checkpoints {
    chain: Sha256Chain,
    stride: u64,
    /// Bytes hashed since the last recorded state.
    into_stride: u64,
    states: Vec<[u8; 32]>,
}

impl Sha256Checkpoints {
    /// Records a state every `stride` bytes, rounded up to a whole number of SHA-256 blocks
    /// (64 bytes). 32 bytes of memory per stride: 128 KiB per GiB at 256 KiB.
    pub fn new(stride: u32) -> Self {
        let stride = u64::from(stride.max(1)).next_multiple_of(BLOCK as u64);
        Self {
            chain: Sha256Chain::new(),
            stride,
            into_stride: 0,
            states: Vec::new(),
        }
    }

    /// Hashes the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = usize::try_from(self.stride - self.into_stride).unwrap_or(usize::MAX);
            let n = room.min(data.len());
            self.chain.update(&data[..n]);
            self.into_stride += n as u64;
            data = &data[n..];
            if self.into_stride == self.stride {
                self.states
                    .push(self.chain.checkpoint().expect("strides are whole blocks"));
                self.into_stride = 0;
            }
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.states.len() as u64 * self.stride + self.into_stride
    }

    /// Whether nothing was hashed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The digest, and the states to build metainfo from.
    pub fn finish(self) -> HashedBlob {
        let len = self.len();
        HashedBlob {
            digest: Digest::sha256(self.chain.finalize()),
            len,
            stride: self.stride,
            states: self.states,
        }
    }
}

/// A finished [`Sha256Checkpoints`]: the blob's digest, and what its chained metainfo needs.
#[derive(Debug, Clone)]
pub struct HashedBlob {
    digest: Digest,
    len: u64,
    stride: u64,
    states: Vec<[u8; 32]>,
}

impl HashedBlob {
    /// The SHA-256 digest of the bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Their length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chained metainfo with pieces of `piece_len` bytes, equal to what
    /// [`crate::MetaInfoBuilder`] makes from the same bytes. `None` when `piece_len` is not a
    /// multiple of the stride, or not a valid piece length, or the blob is empty (those need
    /// the builder).
    pub fn metainfo(&self, piece_len: u32) -> Option<MetaInfo> {
        let per_piece = u64::from(piece_len);
        if self.len == 0 || per_piece == 0 || !per_piece.is_multiple_of(self.stride) {
            return None;
        }
        let layout = PieceLayout::new(self.len, piece_len).ok()?;
        let strides_per_piece = usize::try_from(per_piece / self.stride).ok()?;
        let pieces = layout.piece_count() as usize;
        let mut hashes = Vec::with_capacity(pieces);
        for i in 1..pieces {
            hashes.push(*self.states.get(i * strides_per_piece - 1)?);
        }
        let mut last = [0u8; 32];
        last.copy_from_slice(self.digest.raw());
        hashes.push(last);
        Some(MetaInfo::chained(self.digest, layout, hashes))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{Algorithm, MetaInfoBuilder};

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 131 % 251) as u8).collect()
    }

    fn built(data: &[u8], piece_len: u32) -> MetaInfo {
        let mut b = MetaInfoBuilder::new(Algorithm::Sha256, piece_len).unwrap();
        b.update(data);
        b.finish(Digest::compute(Algorithm::Sha256, data)).unwrap()
    }

    #[test]
    fn same_metainfo_as_the_builder_for_multiples_of_the_stride() {
        let stride = 256;
        for n in [1, 255, 256, 257, 1024, 1025, 4096, 5000] {
            let data = bytes(n);
            for split in [1, 63, 256, 1000, n] {
                let mut h = Sha256Checkpoints::new(stride);
                for part in data.chunks(split) {
                    h.update(part);
                }
                assert_eq!(h.len(), n as u64);
                let hashed = h.finish();
                assert_eq!(hashed.digest(), Digest::compute(Algorithm::Sha256, &data));
                for piece_len in [256, 512, 1024, 4096] {
                    let meta = hashed.metainfo(piece_len).unwrap();
                    assert_eq!(
                        meta,
                        built(&data, piece_len),
                        "{n} bytes in parts of {split}, pieces of {piece_len}"
                    );
                    assert_eq!(meta.encode(), built(&data, piece_len).encode());
                }
            }
        }
    }

    #[test]
    fn lengths_it_cannot_serve_are_none() {
        let mut h = Sha256Checkpoints::new(256);
        h.update(&bytes(3000));
        let hashed = h.finish();
        assert!(hashed.metainfo(128).is_none(), "below the stride");
        assert!(hashed.metainfo(384).is_none(), "not a multiple");
        assert!(hashed.metainfo(0).is_none());
        assert!(Sha256Checkpoints::new(256).finish().metainfo(256).is_none());
    }

    #[test]
    fn stride_rounds_up_to_whole_blocks() {
        let mut h = Sha256Checkpoints::new(100);
        h.update(&bytes(1000));
        let hashed = h.finish();
        // Stride 128: pieces of 256 bytes are served, and verify.
        let meta = hashed.metainfo(256).unwrap();
        let data = bytes(1000);
        for (i, piece) in data.chunks(256).enumerate() {
            assert!(meta.verify_piece(meta.layout().piece(i as u32).unwrap(), piece));
        }
    }
}
