//! Which pieces of a torrent a peer has.

use crate::piece::{PieceIndex, PieceLayout};

/// One bit per piece; bit `i` is set when piece `i` is present.
///
/// The wire form ([`Bitfield::to_bytes`]) is `ceil(n / 8)` bytes, most significant bit first,
/// spare bits zero, as in BitTorrent.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bitfield {
    words: Vec<u64>,
    len: u32,
    ones: u32,
}

/// Why wire bytes are not a valid bitfield for a layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    /// Wrong number of bytes for the piece count.
    #[error("bitfield has {actual} bytes, expected {expected}")]
    Length {
        /// Expected bytes.
        expected: usize,
        /// Actual bytes.
        actual: usize,
    },
    /// A bit beyond the last piece is set.
    #[error("bitfield has bits set beyond the last piece")]
    SpareBits,
}

/// The set bits of one word, as piece indices.
struct Bits {
    word: u64,
    base: u32,
}

impl Bits {
    fn new(word: u64, index: usize) -> Self {
        Self {
            word,
            base: u32::try_from(index * 64).unwrap_or(u32::MAX),
        }
    }
}

impl Iterator for Bits {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.word == 0 {
            return None;
        }
        let bit = self.word.trailing_zeros();
        self.word &= self.word - 1;
        Some(self.base + bit)
    }
}

impl Bitfield {
    /// No pieces, for a torrent of `len` pieces.
    pub fn empty(len: u32) -> Self {
        Self {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
            ones: 0,
        }
    }

    /// Every piece.
    pub fn full(len: u32) -> Self {
        let mut b = Self::empty(len);
        for i in 0..len {
            b.set_raw(i);
        }
        b
    }

    /// An empty bitfield sized for `layout`.
    pub fn for_layout(layout: &PieceLayout) -> Self {
        Self::empty(layout.piece_count())
    }

    /// Number of pieces the bitfield covers.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the bitfield covers no pieces at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pieces present.
    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    /// Whether every piece is present.
    pub fn is_complete(&self) -> bool {
        self.ones == self.len
    }

    /// Whether piece `p` is present.
    pub fn has(&self, p: PieceIndex) -> bool {
        self.has_raw(p.get())
    }

    /// Whether piece number `i` is present (false when out of range).
    pub fn has_index(&self, i: u32) -> bool {
        self.has_raw(i)
    }

    fn has_raw(&self, i: u32) -> bool {
        i < self.len && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Marks piece `p` present; returns false if it already was (or is out of range).
    pub fn set(&mut self, p: PieceIndex) -> bool {
        self.set_raw(p.get())
    }

    fn set_raw(&mut self, i: u32) -> bool {
        if i >= self.len || self.has_raw(i) {
            return false;
        }
        self.words[(i / 64) as usize] |= 1 << (i % 64);
        self.ones += 1;
        true
    }

    /// Indices of present pieces, in order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(i, &w)| Bits::new(w, i))
    }

    /// Indices of pieces present here and absent from `other`, in order, a word at a time
    /// (what a peer has that we lack). `other` is expected to have the same length; words it
    /// lacks count as empty.
    pub fn difference<'a>(&'a self, other: &'a Self) -> impl Iterator<Item = u32> + 'a {
        self.words.iter().enumerate().flat_map(move |(i, &w)| {
            let theirs = other.words.get(i).copied().unwrap_or(0);
            Bits::new(w & !theirs, i)
        })
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; (self.len as usize).div_ceil(8)];
        for i in self.ones() {
            out[(i / 8) as usize] |= 0x80 >> (i % 8);
        }
        out
    }

    /// Parses the wire form for a torrent of `len` pieces; never panics.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = (len as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::Length {
                expected,
                actual: bytes.len(),
            });
        }
        let mut b = Self::empty(len);
        for (byte_index, &byte) in bytes.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (0x80 >> bit) != 0 {
                    let i = byte_index as u32 * 8 + bit;
                    if i >= len {
                        return Err(BitfieldError::SpareBits);
                    }
                    b.set_raw(i);
                }
            }
        }
        Ok(b)
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_count_and_wire_round_trip() {
        let layout = PieceLayout::new(100, 10).unwrap();
        let mut b = Bitfield::for_layout(&layout);
        assert_eq!(b.len(), 10);
        assert!(b.set(layout.piece(0).unwrap()));
        assert!(!b.set(layout.piece(0).unwrap()));
        assert!(b.set(layout.piece(9).unwrap()));
        assert_eq!(b.count_ones(), 2);
        assert_eq!(b.to_bytes(), vec![0x80, 0x40]);
        assert_eq!(Bitfield::from_bytes(&b.to_bytes(), 10).unwrap(), b);
        assert!(!b.is_complete());
        assert!(Bitfield::full(10).is_complete());
        assert_eq!(Bitfield::full(10).to_bytes(), vec![0xff, 0xc0]);
        assert!(Bitfield::empty(0).is_complete());
    }

    #[test]
    fn rejects_bad_wire_bytes() {
        assert_eq!(
            Bitfield::from_bytes(&[0xff], 10),
            Err(BitfieldError::Length {
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0xe0], 10),
            Err(BitfieldError::SpareBits)
        );
    }

    proptest::proptest! {
        #[test]
        fn from_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40), len in 0u32..300) {
            if let Ok(b) = Bitfield::from_bytes(&bytes, len) {
                proptest::prop_assert_eq!(b.to_bytes(), bytes);
            }
        }
    }
}
