//! Shoal's shared vocabulary: the types every other crate speaks.
//!
//! * [`Digest`]: an OCI content digest (`sha256:<hex>` or `sha512:<hex>`), parsed and validated
//!   once at the edge; [`DigestHasher`] verifies content against one with its own algorithm.
//! * [`PieceLayout`] and [`PieceIndex`]: how a blob is cut into pieces (4 MiB by default). A
//!   `PieceIndex` can only be obtained from a layout, so it is always in range for that layout.
//! * [`MetaInfo`] and [`InfoHash`]: the torrent description of a blob (its digest, length, piece
//!   length and a hash per piece: for `sha256` blobs a SHA-256 chain whose pieces verify on
//!   their own and together prove the digest, see [`HashScheme`]) with a stable, versioned
//!   binary encoding.
//! * [`RepoName`] and [`Tag`]: repository names and tags per the OCI distribution spec grammar.
//! * [`PeerId`] and [`Bitfield`]: who a peer is and which pieces it has.
//! * [`BufferPool`]: reusable piece-sized buffers, so piece I/O does not map fresh memory for
//!   every piece.
//!
//! This crate is **not** a place for I/O, async code or service configuration: it has no
//! sockets, files, clocks or runtimes, so the simulator and every service can share it.

mod bitfield;
mod buffers;
mod chain;
mod checkpoints;
mod digest;
mod metainfo;
mod name;
mod peer;
mod piece;
mod report;

pub use bitfield::{Bitfield, BitfieldError};
pub use buffers::{BufferPool, PooledBuf};
pub use checkpoints::{HashedBlob, Sha256Checkpoints};
pub use digest::{Algorithm, Digest, DigestError, DigestHasher};
pub use metainfo::{HashScheme, InfoHash, MetaInfo, MetaInfoBuilder, MetaInfoError};
pub use name::{NameError, RepoName, Tag};
pub use peer::PeerId;
pub use piece::{
    DEFAULT_MIN_PIECE_LENGTH, DEFAULT_PIECE_LENGTH, PieceIndex, PieceLayout, PieceLayoutError,
    TARGET_PIECES, piece_length_for,
};
pub use report::error_chain;
