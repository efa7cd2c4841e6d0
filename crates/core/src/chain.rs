//! SHA-256 as a chain of resumable states: the hash behind [`crate::HashScheme::Chained`].
//!
//! SHA-256 runs its compression function over the message in 64-byte blocks, carrying a
//! 32-byte chaining state from block to block; the digest is the state after the padded last
//! block. When every piece but the last is a whole number of blocks, the state after each piece
//! is a checkpoint from which the hash of the rest can be resumed. A metainfo that lists those
//! checkpoints lets a peer verify any piece on its own (resume from the previous checkpoint,
//! compare with the next), and verifying the last piece finishes the SHA-256 of the whole blob.
//! One pass over the bytes then does both jobs that independent piece hashes need two passes
//! for.

use sha2::block_api::compress256;

/// SHA-256's initial chaining state (FIPS 180-4, 5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256's block length.
pub(crate) const BLOCK: usize = 64;

/// A SHA-256 computation that exposes its chaining state at block boundaries.
#[derive(Debug, Clone)]
pub(crate) struct Sha256Chain {
    state: [u32; 8],
    /// Bytes of an incomplete block, waiting for the rest.
    pending: [u8; BLOCK],
    pending_len: usize,
    /// Bytes hashed so far, including `pending`.
    len: u64,
}

impl Sha256Chain {
    /// A hash of the empty message.
    pub(crate) fn new() -> Self {
        Self::resume(INITIAL, 0)
    }

    /// Resumes from a checkpoint: `state` after the first `len` bytes (a multiple of 64).
    pub(crate) fn resume_from(checkpoint: &[u8; 32], len: u64) -> Self {
        debug_assert!(len.is_multiple_of(BLOCK as u64));
        let mut state = [0u32; 8];
        for (word, bytes) in state.iter_mut().zip(checkpoint.as_chunks::<4>().0) {
            *word = u32::from_be_bytes(*bytes);
        }
        Self::resume(state, len)
    }

    fn resume(state: [u32; 8], len: u64) -> Self {
        Self {
            state,
            pending: [0; BLOCK],
            pending_len: 0,
            len,
        }
    }

    /// Hashes the next bytes of the message.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.pending_len > 0 {
            let n = (BLOCK - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + n].copy_from_slice(&data[..n]);
            self.pending_len += n;
            data = &data[n..];
            if self.pending_len < BLOCK {
                return;
            }
            compress256(&mut self.state, &[self.pending]);
            self.pending_len = 0;
        }
        let (blocks, rest) = data.as_chunks::<BLOCK>();
        compress256(&mut self.state, blocks);
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// The checkpoint: the chaining state, big-endian. `None` unless the bytes hashed so far
    /// are a whole number of blocks.
    pub(crate) fn checkpoint(&self) -> Option<[u8; 32]> {
        (self.pending_len == 0).then(|| {
            let mut out = [0u8; 32];
            for (bytes, word) in out.as_chunks_mut::<4>().0.iter_mut().zip(self.state) {
                *bytes = word.to_be_bytes();
            }
            out
        })
    }

    /// The SHA-256 of everything hashed (including what came before the checkpoint resumed
    /// from).
    pub(crate) fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut tail = [0u8; 2 * BLOCK];
        tail[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        tail[self.pending_len] = 0x80;
        let tail_len = if self.pending_len < BLOCK - 8 {
            BLOCK
        } else {
            2 * BLOCK
        };
        tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
        compress256(&mut self.state, tail[..tail_len].as_chunks::<BLOCK>().0);
        self.pending_len = 0;
        self.checkpoint()
            .expect("no pending bytes after the padding")
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest as _;

    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn matches_sha256_for_every_padding_case_and_split() {
        for n in (0..200).chain([1000, 4096, 65_536 + 63]) {
            let data = bytes(n);
            let want: [u8; 32] = sha2::Sha256::digest(&data).into();
            let mut one = Sha256Chain::new();
            one.update(&data);
            assert_eq!(one.finalize(), want, "length {n}");
            for split in [1, 7, 63, 64, 65, 130] {
                let mut c = Sha256Chain::new();
                for part in data.chunks(split) {
                    c.update(part);
                }
                assert_eq!(c.finalize(), want, "length {n}, split {split}");
            }
        }
    }

    #[test]
    fn resuming_from_a_checkpoint_gives_the_same_hash() {
        let data = bytes(10_000);
        let want: [u8; 32] = sha2::Sha256::digest(&data).into();
        let mut c = Sha256Chain::new();
        c.update(&data[..640]);
        let at = c.checkpoint().unwrap();
        let mut resumed = Sha256Chain::resume_from(&at, 640);
        resumed.update(&data[640..]);
        assert_eq!(resumed.finalize(), want);
        // No checkpoint mid-block.
        c.update(&data[640..641]);
        assert_eq!(c.checkpoint(), None);
        // The empty message's checkpoint is the initial state.
        assert_eq!(
            Sha256Chain::resume_from(&Sha256Chain::new().checkpoint().unwrap(), 0).finalize(),
            <[u8; 32]>::from(sha2::Sha256::digest(b""))
        );
    }
}
