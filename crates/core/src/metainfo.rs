//! The torrent description of a blob and its stable binary encoding.
//!
//! Encoding, version 1 (all integers big-endian; documented in `docs/PROTOCOL.md`):
//!
//! ```text
//! magic        4 bytes  "SHMI"
//! version      u8       1
//! algorithm    u8       1 = sha256, 2 = sha512
//! digest       32 or 64 raw bytes of the blob digest
//! blob length  u64
//! piece length u32
//! piece count  u32      must equal ceil(blob length / piece length)
//! piece hashes 32 bytes each: SHA-256 of every piece, in order
//! ```
//!
//! The encoding is canonical (one byte string per value), so the [`InfoHash`], the SHA-256 of
//! the encoding, identifies a torrent.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::digest::{Algorithm, Digest};
use crate::piece::{PieceIndex, PieceLayout, PieceLayoutError};

const MAGIC: &[u8; 4] = b"SHMI";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1;
const FIXED_TAIL_LEN: usize = 8 + 4 + 4;

/// Why metainfo bytes could not be decoded, or a builder could not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaInfoError {
    /// The bytes do not start with the metainfo magic.
    #[error("not shoal metainfo (bad magic)")]
    BadMagic,
    /// The bytes are of a format version this build does not understand.
    #[error("unsupported metainfo version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    /// The algorithm byte is unknown.
    #[error("unknown digest algorithm code {0}")]
    UnknownAlgorithm(u8),
    /// The byte string is shorter or longer than its own header says.
    #[error("metainfo is {actual} bytes, expected {expected}")]
    Length {
        /// Expected number of bytes.
        expected: usize,
        /// Actual number of bytes.
        actual: usize,
    },
    /// The piece length is invalid or the piece count does not match the layout.
    #[error("invalid piece layout: {0}")]
    Layout(#[from] PieceLayoutError),
    /// The piece count in the bytes contradicts the blob and piece lengths.
    #[error("piece count {actual} does not match the layout's {expected}")]
    PieceCount {
        /// Count implied by the lengths.
        expected: u32,
        /// Count in the bytes.
        actual: u32,
    },
}

/// The SHA-256 of a [`MetaInfo`]'s canonical encoding: the torrent's identity on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash([u8; 32]);

impl InfoHash {
    /// Wraps raw bytes (e.g. from a wire message).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

impl FromStr for InfoHash {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes)?;
        Ok(Self(bytes))
    }
}

/// Everything a peer needs to download and verify a blob piece by piece.
#[derive(Clone, PartialEq, Eq)]
pub struct MetaInfo {
    digest: Digest,
    layout: PieceLayout,
    piece_hashes: Vec<[u8; 32]>,
}

impl MetaInfo {
    /// The format version this build writes.
    pub const VERSION: u8 = VERSION;

    /// The blob's digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The blob's piece layout (length, piece length, piece count).
    pub fn layout(&self) -> PieceLayout {
        self.layout
    }

    /// The SHA-256 of a piece.
    pub fn piece_hash(&self, piece: PieceIndex) -> &[u8; 32] {
        &self.piece_hashes[piece.as_usize()]
    }

    /// Whether `data` is exactly the content of `piece`.
    pub fn verify_piece(&self, piece: PieceIndex, data: &[u8]) -> bool {
        data.len() == self.layout.len_of(piece) as usize
            && sha2::Sha256::digest(data).as_slice() == self.piece_hash(piece)
    }

    /// The canonical binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let alg = self.digest.algorithm();
        let mut out = Vec::with_capacity(encoded_len(alg, self.piece_hashes.len()));
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(algorithm_code(alg));
        out.extend_from_slice(self.digest.raw());
        out.extend_from_slice(&self.layout.blob_len().to_be_bytes());
        out.extend_from_slice(&self.layout.piece_len().to_be_bytes());
        out.extend_from_slice(&self.layout.piece_count().to_be_bytes());
        for h in &self.piece_hashes {
            out.extend_from_slice(h);
        }
        out
    }

    /// Decodes [`Self::encode`]'s output; never panics on arbitrary input.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaInfoError> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(MetaInfoError::BadMagic);
        }
        if bytes[4] != VERSION {
            return Err(MetaInfoError::UnsupportedVersion(bytes[4]));
        }
        let alg = match bytes[5] {
            1 => Algorithm::Sha256,
            2 => Algorithm::Sha512,
            other => return Err(MetaInfoError::UnknownAlgorithm(other)),
        };
        let min = HEADER_LEN + alg.output_len() + FIXED_TAIL_LEN;
        if bytes.len() < min {
            return Err(MetaInfoError::Length {
                expected: min,
                actual: bytes.len(),
            });
        }
        let mut at = HEADER_LEN;
        let digest = Digest::from_raw(alg, &bytes[at..at + alg.output_len()])
            .ok_or(MetaInfoError::UnknownAlgorithm(bytes[5]))?;
        at += alg.output_len();
        let blob_len = u64::from_be_bytes(take::<8>(bytes, &mut at));
        let piece_len = u32::from_be_bytes(take::<4>(bytes, &mut at));
        let count = u32::from_be_bytes(take::<4>(bytes, &mut at));
        let layout = PieceLayout::new(blob_len, piece_len)?;
        if layout.piece_count() != count {
            return Err(MetaInfoError::PieceCount {
                expected: layout.piece_count(),
                actual: count,
            });
        }
        let expected = encoded_len(alg, count as usize);
        if bytes.len() != expected {
            return Err(MetaInfoError::Length {
                expected,
                actual: bytes.len(),
            });
        }
        let piece_hashes = bytes[at..]
            .chunks_exact(32)
            .map(|c| c.try_into().expect("chunks_exact yields 32 bytes"))
            .collect();
        Ok(Self {
            digest,
            layout,
            piece_hashes,
        })
    }

    /// The torrent identity: SHA-256 of the canonical encoding.
    pub fn info_hash(&self) -> InfoHash {
        InfoHash(sha2::Sha256::digest(self.encode()).into())
    }
}

impl fmt::Debug for MetaInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaInfo")
            .field("digest", &self.digest)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

fn take<const N: usize>(bytes: &[u8], at: &mut usize) -> [u8; N] {
    let out = bytes[*at..*at + N]
        .try_into()
        .expect("caller checked the length");
    *at += N;
    out
}

fn algorithm_code(alg: Algorithm) -> u8 {
    match alg {
        Algorithm::Sha256 => 1,
        Algorithm::Sha512 => 2,
    }
}

fn encoded_len(alg: Algorithm, pieces: usize) -> usize {
    HEADER_LEN + alg.output_len() + FIXED_TAIL_LEN + 32 * pieces
}

/// Builds a [`MetaInfo`] from a blob's bytes fed in order, in chunks of any size.
///
/// The blob length need not be known up front (chunked uploads learn it at the end). The
/// builder only hashes pieces; the caller verifies the whole-blob digest (usually in the same
/// pass) before calling [`MetaInfoBuilder::finish`].
#[derive(Debug, Clone)]
pub struct MetaInfoBuilder {
    piece_len: u32,
    piece_hashes: Vec<[u8; 32]>,
    current: sha2::Sha256,
    in_piece: u64,
    fed: u64,
}

impl MetaInfoBuilder {
    /// A builder cutting pieces of `piece_len` bytes.
    pub fn new(piece_len: u32) -> Result<Self, PieceLayoutError> {
        PieceLayout::new(0, piece_len)?;
        Ok(Self {
            piece_len,
            piece_hashes: Vec::new(),
            current: sha2::Sha256::new(),
            in_piece: 0,
            fed: 0,
        })
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.fed
    }

    /// Whether nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.fed == 0
    }

    /// Feeds the next bytes of the blob.
    pub fn update(&mut self, mut data: &[u8]) {
        let piece_len = u64::from(self.piece_len);
        while !data.is_empty() {
            let room = usize::try_from(piece_len - self.in_piece).unwrap_or(usize::MAX);
            let n = room.min(data.len());
            self.current.update(&data[..n]);
            self.in_piece += n as u64;
            self.fed += n as u64;
            data = &data[n..];
            if self.in_piece == piece_len {
                let done = std::mem::replace(&mut self.current, sha2::Sha256::new());
                self.piece_hashes.push(done.finalize().into());
                self.in_piece = 0;
            }
        }
    }

    /// Finishes the metainfo for the blob with `digest`, of the length fed so far.
    pub fn finish(mut self, digest: Digest) -> Result<MetaInfo, MetaInfoError> {
        let layout = PieceLayout::new(self.fed, self.piece_len)?;
        if self.in_piece > 0 {
            self.piece_hashes.push(self.current.finalize().into());
        }
        debug_assert_eq!(self.piece_hashes.len(), layout.piece_count() as usize);
        Ok(MetaInfo {
            digest,
            layout,
            piece_hashes: self.piece_hashes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(data: &[u8], piece_len: u32, chunk: usize) -> MetaInfo {
        let mut b = MetaInfoBuilder::new(piece_len).unwrap();
        for c in data.chunks(chunk.max(1)) {
            b.update(c);
        }
        b.finish(Digest::compute(Algorithm::Sha256, data)).unwrap()
    }

    #[test]
    fn round_trip_and_info_hash_is_stable() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let m = build(&data, 64, 7);
        assert_eq!(m.layout().piece_count(), 16);
        let bytes = m.encode();
        let back = MetaInfo::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.info_hash(), m.info_hash());
        // Chunking does not change the result.
        assert_eq!(build(&data, 64, 1000), m);
        assert_eq!(build(&data, 64, 1), m);
        // Pieces verify; a flipped byte does not.
        let p = m.layout().piece(15).unwrap();
        assert!(m.verify_piece(p, &data[960..]));
        let mut bad = data[960..].to_vec();
        bad[0] ^= 1;
        assert!(!m.verify_piece(p, &bad));
        assert!(!m.verify_piece(p, &data[959..]));
        // The info hash depends on the piece length.
        assert_ne!(build(&data, 128, 7).info_hash(), m.info_hash());
        let parsed: InfoHash = m.info_hash().to_string().parse().unwrap();
        assert_eq!(parsed, m.info_hash());
    }

    #[test]
    fn empty_blob_and_sha512() {
        let m = MetaInfoBuilder::new(4)
            .unwrap()
            .finish(Digest::compute(Algorithm::Sha512, b""))
            .unwrap();
        assert_eq!(m.layout().piece_count(), 0);
        assert_eq!(MetaInfo::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn builder_rejects_zero_piece_length() {
        assert!(MetaInfoBuilder::new(0).is_err());
    }

    #[test]
    fn decode_rejects_bad_input() {
        let m = build(b"hello world", 4, 3);
        let good = m.encode();
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(
            MetaInfo::decode(&v2),
            Err(MetaInfoError::UnsupportedVersion(2))
        );
        assert_eq!(MetaInfo::decode(b"nope"), Err(MetaInfoError::BadMagic));
        assert_eq!(MetaInfo::decode(b""), Err(MetaInfoError::BadMagic));
        let mut alg = good.clone();
        alg[5] = 9;
        assert_eq!(
            MetaInfo::decode(&alg),
            Err(MetaInfoError::UnknownAlgorithm(9))
        );
        assert!(matches!(
            MetaInfo::decode(&good[..good.len() - 1]),
            Err(MetaInfoError::Length { .. })
        ));
        let mut extra = good.clone();
        extra.push(0);
        assert!(matches!(
            MetaInfo::decode(&extra),
            Err(MetaInfoError::Length { .. })
        ));
        // Piece count that contradicts the lengths.
        let mut count = good.clone();
        let at = HEADER_LEN + 32 + 8 + 4;
        count[at + 3] += 1;
        assert!(matches!(
            MetaInfo::decode(&count),
            Err(MetaInfoError::PieceCount { .. })
        ));
        // Zero piece length.
        let mut zero = good;
        zero[HEADER_LEN + 32 + 8..HEADER_LEN + 32 + 12].copy_from_slice(&[0; 4]);
        assert!(matches!(
            MetaInfo::decode(&zero),
            Err(MetaInfoError::Layout(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = MetaInfo::decode(&bytes);
            let mut with_header = b"SHMI\x01\x01".to_vec();
            with_header.extend_from_slice(&bytes);
            let _ = MetaInfo::decode(&with_header);
        }
    }
}
