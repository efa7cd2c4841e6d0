//! The torrent description of a blob and its stable binary encoding.
//!
//! Encoding, version 2 (all integers big-endian; documented in `docs/PROTOCOL.md`):
//!
//! ```text
//! magic        4 bytes  "SHMI"
//! version      u8       2
//! algorithm    u8       1 = sha256, 2 = sha512
//! scheme       u8       1 = independent piece hashes, 2 = SHA-256 chain (see HashScheme)
//! digest       32 or 64 raw bytes of the blob digest
//! blob length  u64
//! piece length u32
//! piece count  u32      must equal ceil(blob length / piece length)
//! piece hashes 32 bytes each, in piece order
//! ```
//!
//! The encoding is canonical (one byte string per value), so the [`InfoHash`], the SHA-256 of
//! the encoding, identifies a torrent.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::chain::{BLOCK, Sha256Chain};
use crate::digest::{Algorithm, Digest};
use crate::piece::{PieceIndex, PieceLayout, PieceLayoutError};

const MAGIC: &[u8; 4] = b"SHMI";
const VERSION: u8 = 2;
/// The previous version: no scheme byte, always [`HashScheme::Independent`]. Still read (and
/// re-encoded as it came, so its info hash stays the same) for one release.
const VERSION_1: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1 + 1;
const FIXED_TAIL_LEN: usize = 8 + 4 + 4;

/// Why metainfo bytes could not be decoded, or a builder could not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaInfoError {
    /// The bytes do not start with the metainfo magic.
    #[error("not shoal metainfo (bad magic)")]
    BadMagic,
    /// The bytes are of a format version this build does not understand.
    #[error("unsupported metainfo version {0} (this build reads versions 1 and {VERSION})")]
    UnsupportedVersion(u8),
    /// The algorithm byte is unknown.
    #[error("unknown digest algorithm code {0}")]
    UnknownAlgorithm(u8),
    /// The hash scheme byte is unknown.
    #[error("unknown piece hash scheme code {0}")]
    UnknownScheme(u8),
    /// A [`HashScheme::Chained`] metainfo that cannot be a SHA-256 chain of its blob.
    #[error("invalid SHA-256 chain: {0}")]
    InvalidChain(&'static str),
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
    /// [`MetaInfoBuilder::finish`] was given a digest of another algorithm than the builder's.
    #[error("the builder hashes for {builder}, the digest is {digest}")]
    AlgorithmMismatch {
        /// The builder's algorithm.
        builder: Algorithm,
        /// The digest's algorithm.
        digest: Algorithm,
    },
    /// A chain-building [`MetaInfoBuilder`] was fed bytes whose SHA-256 is not the digest.
    #[error("the bytes fed do not hash to {0}")]
    DigestMismatch(Digest),
}

/// How a [`MetaInfo`]'s piece hashes relate to the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// Each entry is the SHA-256 of its piece. Verifying every piece does not prove the blob's
    /// digest (the metainfo could describe other bytes), so a downloader hashes the whole blob
    /// once more before publishing it. Used for `sha512` blobs and piece lengths that are not
    /// a multiple of 64 bytes.
    Independent,
    /// A SHA-256 chain (`sha256` blobs, piece length a multiple of 64 bytes). Entry `i` is the
    /// SHA-256 chaining state after the first `i + 1` pieces (eight big-endian 32-bit words);
    /// the last entry is the blob's digest itself. Piece `i` verifies by resuming SHA-256 from
    /// entry `i − 1` (the initial state for piece 0) over the piece's bytes and comparing with
    /// entry `i`; for the last piece that comparison finishes the SHA-256 of the whole blob.
    /// Once every piece has verified, the bytes are exactly those whose SHA-256 is the digest,
    /// whatever the metainfo's source: one hash pass does the work of two.
    Chained,
}

impl HashScheme {
    fn code(self) -> u8 {
        match self {
            Self::Independent => 1,
            Self::Chained => 2,
        }
    }

    /// The scheme [`MetaInfoBuilder`] uses for a blob of `algorithm` cut in `piece_len` pieces.
    pub fn for_blob(algorithm: Algorithm, piece_len: u32) -> Self {
        if algorithm == Algorithm::Sha256 && (piece_len as usize).is_multiple_of(BLOCK) {
            Self::Chained
        } else {
            Self::Independent
        }
    }
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
    /// The encoding version: [`VERSION`] for metainfo built here, 1 for decoded old bytes.
    version: u8,
    digest: Digest,
    layout: PieceLayout,
    scheme: HashScheme,
    piece_hashes: Vec<[u8; 32]>,
}

impl MetaInfo {
    /// The format version this build writes.
    pub const VERSION: u8 = VERSION;

    /// A chained metainfo from its parts (see [`crate::HashedBlob::metainfo`]): `hashes` are
    /// the checkpoints after each piece but the last, then the digest.
    pub(crate) fn chained(digest: Digest, layout: PieceLayout, hashes: Vec<[u8; 32]>) -> Self {
        debug_assert_eq!(hashes.len(), layout.piece_count() as usize);
        Self {
            version: VERSION,
            digest,
            layout,
            scheme: HashScheme::Chained,
            piece_hashes: hashes,
        }
    }

    /// The encoding version of this metainfo: [`Self::VERSION`], or 1 if it was decoded from
    /// version 1 bytes (re-encoded the same way, so its info hash does not change).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The blob's digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The blob's piece layout (length, piece length, piece count).
    pub fn layout(&self) -> PieceLayout {
        self.layout
    }

    /// How the piece hashes relate to the blob.
    pub fn scheme(&self) -> HashScheme {
        self.scheme
    }

    /// Whether pieces that all passed [`Self::verify_piece`] are proven to be the blob of
    /// [`Self::digest`] (a [`HashScheme::Chained`] metainfo), so that a downloader need not
    /// hash the whole blob again. False for an empty blob, which has no pieces to verify.
    pub fn pieces_prove_digest(&self) -> bool {
        self.scheme == HashScheme::Chained
    }

    /// The hash entry of a piece (see [`HashScheme`] for what it is).
    pub fn piece_hash(&self, piece: PieceIndex) -> &[u8; 32] {
        &self.piece_hashes[piece.as_usize()]
    }

    /// Whether `data` is exactly the content of `piece`.
    pub fn verify_piece(&self, piece: PieceIndex, data: &[u8]) -> bool {
        if data.len() != self.layout.len_of(piece) as usize {
            return false;
        }
        match self.scheme {
            HashScheme::Independent => {
                sha2::Sha256::digest(data).as_slice() == self.piece_hash(piece)
            }
            HashScheme::Chained => {
                let i = piece.as_usize();
                let mut chain = match i.checked_sub(1) {
                    None => Sha256Chain::new(),
                    Some(prev) => Sha256Chain::resume_from(
                        &self.piece_hashes[prev],
                        self.layout.range(piece).start,
                    ),
                };
                chain.update(data);
                if i + 1 == self.piece_hashes.len() {
                    chain.finalize() == *self.piece_hash(piece)
                } else {
                    chain.checkpoint().as_ref() == Some(self.piece_hash(piece))
                }
            }
        }
    }

    /// The canonical binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let alg = self.digest.algorithm();
        let mut out = Vec::with_capacity(encoded_len(self.version, alg, self.piece_hashes.len()));
        out.extend_from_slice(MAGIC);
        out.push(self.version);
        out.push(algorithm_code(alg));
        if self.version != VERSION_1 {
            out.push(self.scheme.code());
        }
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
        if bytes.len() < 5 || &bytes[..4] != MAGIC {
            return Err(MetaInfoError::BadMagic);
        }
        let version = bytes[4];
        if version != VERSION && version != VERSION_1 {
            return Err(MetaInfoError::UnsupportedVersion(version));
        }
        let header_len = header_len(version);
        if bytes.len() < header_len {
            return Err(MetaInfoError::Length {
                expected: header_len,
                actual: bytes.len(),
            });
        }
        let alg = match bytes[5] {
            1 => Algorithm::Sha256,
            2 => Algorithm::Sha512,
            other => return Err(MetaInfoError::UnknownAlgorithm(other)),
        };
        let scheme = if version == VERSION_1 {
            HashScheme::Independent
        } else {
            match bytes[6] {
                1 => HashScheme::Independent,
                2 => HashScheme::Chained,
                other => return Err(MetaInfoError::UnknownScheme(other)),
            }
        };
        let min = header_len + alg.output_len() + FIXED_TAIL_LEN;
        if bytes.len() < min {
            return Err(MetaInfoError::Length {
                expected: min,
                actual: bytes.len(),
            });
        }
        let mut at = header_len;
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
        let expected = encoded_len(version, alg, count as usize);
        if bytes.len() != expected {
            return Err(MetaInfoError::Length {
                expected,
                actual: bytes.len(),
            });
        }
        let piece_hashes: Vec<[u8; 32]> = bytes[at..].as_chunks::<32>().0.to_vec();
        if scheme == HashScheme::Chained {
            if HashScheme::for_blob(alg, piece_len) != HashScheme::Chained {
                return Err(MetaInfoError::InvalidChain(
                    "needs a sha256 digest and a piece length that is a multiple of 64",
                ));
            }
            if piece_hashes.last().map(<[u8; 32]>::as_slice) != Some(digest.raw()) {
                return Err(MetaInfoError::InvalidChain(
                    "the last entry must be the blob's digest",
                ));
            }
        }
        Ok(Self {
            version,
            digest,
            layout,
            scheme,
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
            .field("scheme", &self.scheme)
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

fn header_len(version: u8) -> usize {
    if version == VERSION_1 {
        HEADER_LEN - 1
    } else {
        HEADER_LEN
    }
}

fn encoded_len(version: u8, alg: Algorithm, pieces: usize) -> usize {
    header_len(version) + alg.output_len() + FIXED_TAIL_LEN + 32 * pieces
}

/// Builds a [`MetaInfo`] from a blob's bytes fed in order, in chunks of any size.
///
/// The blob length need not be known up front (chunked uploads learn it at the end). The scheme
/// is [`HashScheme::for_blob`]'s: with [`HashScheme::Chained`] the one pass also computes the
/// blob's SHA-256, and [`MetaInfoBuilder::finish`] checks it against the digest; with
/// [`HashScheme::Independent`] the builder only hashes pieces and the caller verifies the
/// whole-blob digest (usually in the same pass).
#[derive(Debug, Clone)]
pub struct MetaInfoBuilder {
    algorithm: Algorithm,
    piece_len: u32,
    piece_hashes: Vec<[u8; 32]>,
    hasher: PieceHasher,
    in_piece: u64,
    fed: u64,
}

#[derive(Debug, Clone)]
enum PieceHasher {
    /// One SHA-256 per piece, restarted at every piece boundary.
    Independent(sha2::Sha256),
    /// One SHA-256 over the whole blob, checkpointed at every piece boundary.
    Chained(Sha256Chain),
}

impl MetaInfoBuilder {
    /// A builder for a blob whose digest uses `algorithm`, cutting pieces of `piece_len` bytes.
    pub fn new(algorithm: Algorithm, piece_len: u32) -> Result<Self, PieceLayoutError> {
        PieceLayout::new(0, piece_len)?;
        let hasher = match HashScheme::for_blob(algorithm, piece_len) {
            HashScheme::Independent => PieceHasher::Independent(sha2::Sha256::new()),
            HashScheme::Chained => PieceHasher::Chained(Sha256Chain::new()),
        };
        Ok(Self {
            algorithm,
            piece_len,
            piece_hashes: Vec::new(),
            hasher,
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
            match &mut self.hasher {
                PieceHasher::Independent(h) => h.update(&data[..n]),
                PieceHasher::Chained(c) => c.update(&data[..n]),
            }
            self.in_piece += n as u64;
            self.fed += n as u64;
            data = &data[n..];
            if self.in_piece == piece_len {
                let entry = match &mut self.hasher {
                    PieceHasher::Independent(h) => std::mem::take(h).finalize().into(),
                    PieceHasher::Chained(c) => c
                        .checkpoint()
                        .expect("piece lengths of a chain are whole blocks"),
                };
                self.piece_hashes.push(entry);
                self.in_piece = 0;
            }
        }
    }

    /// Finishes the metainfo for the blob with `digest`, of the length fed so far. A chain
    /// builder fails with [`MetaInfoError::DigestMismatch`] unless the bytes fed hash to
    /// `digest`.
    pub fn finish(mut self, digest: Digest) -> Result<MetaInfo, MetaInfoError> {
        if digest.algorithm() != self.algorithm {
            return Err(MetaInfoError::AlgorithmMismatch {
                builder: self.algorithm,
                digest: digest.algorithm(),
            });
        }
        let layout = PieceLayout::new(self.fed, self.piece_len)?;
        let scheme = match self.hasher {
            PieceHasher::Independent(h) => {
                if self.in_piece > 0 {
                    self.piece_hashes.push(h.finalize().into());
                }
                HashScheme::Independent
            }
            // An empty blob has no piece to carry the digest: nothing to chain.
            PieceHasher::Chained(_) if self.fed == 0 => HashScheme::Independent,
            PieceHasher::Chained(c) => {
                let whole = c.finalize();
                if whole.as_slice() != digest.raw() {
                    return Err(MetaInfoError::DigestMismatch(digest));
                }
                // The last entry is the digest, not the state before the padding.
                if self.in_piece > 0 {
                    self.piece_hashes.push(whole);
                } else if let Some(last) = self.piece_hashes.last_mut() {
                    *last = whole;
                }
                HashScheme::Chained
            }
        };
        debug_assert_eq!(self.piece_hashes.len(), layout.piece_count() as usize);
        Ok(MetaInfo {
            version: VERSION,
            digest,
            layout,
            scheme,
            piece_hashes: self.piece_hashes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(data: &[u8], piece_len: u32, chunk: usize) -> MetaInfo {
        let mut b = MetaInfoBuilder::new(Algorithm::Sha256, piece_len).unwrap();
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
    fn chained_pieces_verify_alone_and_prove_the_digest() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let m = build(&data, 64, 13);
        assert_eq!(m.scheme(), HashScheme::Chained);
        assert!(m.pieces_prove_digest());
        // The last entry is the digest itself; the others are checkpoints, not piece hashes.
        let last = m.layout().piece(15).unwrap();
        assert_eq!(m.piece_hash(last).as_slice(), m.digest().raw());
        let first = m.layout().piece(0).unwrap();
        assert_ne!(
            m.piece_hash(first).as_slice(),
            sha2::Sha256::digest(&data[..64]).as_slice()
        );
        // Every piece verifies on its own, in any order; its neighbour's bytes do not.
        for p in m.layout().pieces().rev() {
            let r = m.layout().range(p);
            assert!(m.verify_piece(p, &data[r.start as usize..r.end as usize]));
        }
        assert!(!m.verify_piece(m.layout().piece(3).unwrap(), &data[256..320]));
        // A whole number of pieces: the last piece is full and still carries the digest.
        let exact = build(&data[..960], 64, 100);
        assert_eq!(exact.scheme(), HashScheme::Chained);
        let p = exact.layout().piece(14).unwrap();
        assert_eq!(exact.piece_hash(p).as_slice(), exact.digest().raw());
        assert!(exact.verify_piece(p, &data[896..960]));
        // One piece.
        let one = build(&data[..10], 64, 3);
        assert!(one.verify_piece(one.layout().piece(0).unwrap(), &data[..10]));
    }

    #[test]
    fn schemes_follow_the_algorithm_and_piece_length() {
        let data = b"hello world, hello chain";
        assert_eq!(build(data, 4, 3).scheme(), HashScheme::Independent);
        assert!(!build(data, 4, 3).pieces_prove_digest());
        assert_eq!(build(data, 64, 3).scheme(), HashScheme::Chained);
        let mut b = MetaInfoBuilder::new(Algorithm::Sha512, 64).unwrap();
        b.update(data);
        let m = b.finish(Digest::compute(Algorithm::Sha512, data)).unwrap();
        assert_eq!(m.scheme(), HashScheme::Independent);
        assert!(m.verify_piece(m.layout().piece(0).unwrap(), data));
        // An empty blob has no piece to carry the digest.
        let empty = MetaInfoBuilder::new(Algorithm::Sha256, 64)
            .unwrap()
            .finish(Digest::compute(Algorithm::Sha256, b""))
            .unwrap();
        assert_eq!(empty.scheme(), HashScheme::Independent);
    }

    #[test]
    fn chain_builder_checks_the_digest_and_algorithm() {
        let mut b = MetaInfoBuilder::new(Algorithm::Sha256, 64).unwrap();
        b.update(b"some bytes");
        let other = Digest::compute(Algorithm::Sha256, b"other bytes");
        assert_eq!(
            b.clone().finish(other),
            Err(MetaInfoError::DigestMismatch(other))
        );
        assert!(matches!(
            b.finish(Digest::compute(Algorithm::Sha512, b"some bytes")),
            Err(MetaInfoError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn decode_rejects_inconsistent_chains() {
        let data: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let good = build(&data, 64, 50).encode();
        // Last entry not the digest.
        let mut last = good.clone();
        let n = last.len();
        last[n - 1] ^= 1;
        assert!(matches!(
            MetaInfo::decode(&last),
            Err(MetaInfoError::InvalidChain(_))
        ));
        // A chain claimed for an independent-hash layout (piece length 4).
        let mut small = build(&data, 4, 50).encode();
        small[6] = 2;
        assert!(matches!(
            MetaInfo::decode(&small),
            Err(MetaInfoError::InvalidChain(_))
        ));
        // A checkpoint swapped for another value: decodes, but the pieces on either side
        // of it no longer verify, so no bytes can complete the download.
        let mut mid = good;
        let at = HEADER_LEN + 32 + FIXED_TAIL_LEN + 32;
        mid[at] ^= 1;
        let m = MetaInfo::decode(&mid).unwrap();
        let (p1, p2) = (m.layout().piece(1).unwrap(), m.layout().piece(2).unwrap());
        assert!(!m.verify_piece(p1, &data[64..128]));
        assert!(!m.verify_piece(p2, &data[128..192]));
    }

    #[test]
    fn version_1_is_still_read_and_keeps_its_info_hash() {
        // Version 1: no scheme byte, SHA-256 of each piece.
        let data = b"0123456789abcdefghij";
        let digest = Digest::compute(Algorithm::Sha256, data);
        let mut v1 = b"SHMI\x01\x01".to_vec();
        v1.extend_from_slice(digest.raw());
        v1.extend_from_slice(&20u64.to_be_bytes());
        v1.extend_from_slice(&8u32.to_be_bytes());
        v1.extend_from_slice(&3u32.to_be_bytes());
        for piece in data.chunks(8) {
            v1.extend_from_slice(&sha2::Sha256::digest(piece));
        }
        let m = MetaInfo::decode(&v1).unwrap();
        assert_eq!((m.version(), m.scheme()), (1, HashScheme::Independent));
        assert_eq!(m.encode(), v1);
        assert_eq!(m.info_hash(), InfoHash(sha2::Sha256::digest(&v1).into()));
        assert!(m.verify_piece(m.layout().piece(2).unwrap(), b"ghij"));
        assert!(!m.verify_piece(m.layout().piece(2).unwrap(), b"ghiJ"));
        assert!(MetaInfo::decode(&v1[..v1.len() - 1]).is_err());
    }

    #[test]
    fn empty_blob_and_sha512() {
        let m = MetaInfoBuilder::new(Algorithm::Sha512, 4)
            .unwrap()
            .finish(Digest::compute(Algorithm::Sha512, b""))
            .unwrap();
        assert_eq!(m.layout().piece_count(), 0);
        assert_eq!(MetaInfo::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn builder_rejects_zero_piece_length() {
        assert!(MetaInfoBuilder::new(Algorithm::Sha256, 0).is_err());
    }

    #[test]
    fn decode_rejects_bad_input() {
        let m = build(b"hello world", 4, 3);
        let good = m.encode();
        let mut v3 = good.clone();
        v3[4] = 3;
        assert_eq!(
            MetaInfo::decode(&v3),
            Err(MetaInfoError::UnsupportedVersion(3))
        );
        let mut scheme = good.clone();
        scheme[6] = 3;
        assert_eq!(
            MetaInfo::decode(&scheme),
            Err(MetaInfoError::UnknownScheme(3))
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
            for header in [&b"SHMI\x02\x01\x02"[..], b"SHMI\x01\x01"] {
                let mut with_header = header.to_vec();
                with_header.extend_from_slice(&bytes);
                let _ = MetaInfo::decode(&with_header);
            }
        }
    }
}
