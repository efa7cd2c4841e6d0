//! Reusable piece-sized byte buffers.
//!
//! A buffer of a few MiB that is allocated and freed per piece is a fresh memory mapping every
//! time: a page fault and a zeroed page for each 4 KiB on first touch, and a TLB shootdown
//! when it is unmapped. On a VM that hands freed memory back to its host, the first touch
//! costs several times more. A [`BufferPool`] keeps a bounded number of idle buffers mapped
//! and hands them out again; a buffer goes back to its pool when the last reference to it is
//! dropped, including the last [`Bytes`] made from it (so a buffer handed to a QUIC stream
//! returns once the stream has no more use for it).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// A bounded pool of reusable byte buffers. Cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub struct BufferPool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    idle: Mutex<Idle>,
    max_idle_bytes: usize,
}

#[derive(Debug, Default)]
struct Idle {
    buffers: Vec<Vec<u8>>,
    /// Capacity of `buffers`, summed.
    bytes: usize,
}

impl BufferPool {
    /// A pool that keeps at most `max_idle_bytes` of idle buffer capacity; buffers returned
    /// beyond that are freed.
    pub fn new(max_idle_bytes: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(Idle::default()),
                max_idle_bytes,
            }),
        }
    }

    /// An empty buffer with room for at least `capacity` bytes: the smallest idle one that
    /// fits, else a new one.
    pub fn take(&self, capacity: usize) -> PooledBuf {
        let reused = {
            let mut idle = self.shared.lock();
            let best = idle
                .buffers
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= capacity)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            best.map(|i| {
                let b = idle.buffers.swap_remove(i);
                idle.bytes -= b.capacity();
                b
            })
        };
        let mut buf = reused.unwrap_or_else(|| Vec::with_capacity(capacity));
        buf.clear();
        PooledBuf {
            buf,
            pool: Arc::clone(&self.shared),
        }
    }

    /// A buffer of exactly `len` zeroed bytes to read into. Zeroing memory that is already
    /// mapped is a small fraction of what a fresh allocation's page faults cost.
    pub fn take_len(&self, len: usize) -> PooledBuf {
        let mut b = self.take(len);
        b.buf.resize(len, 0);
        b
    }

    /// Idle bytes the pool holds now.
    pub fn idle_bytes(&self) -> usize {
        self.shared.lock().bytes
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give_back(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 {
            return;
        }
        let mut idle = self.lock();
        if idle.bytes + cap <= self.max_idle_bytes {
            idle.bytes += cap;
            idle.buffers.push(buf);
        }
    }
}

/// A buffer from a [`BufferPool`]; it goes back to the pool when dropped. Use it as a `Vec<u8>`
/// and turn it into [`Bytes`] with [`Self::freeze`].
#[derive(Debug)]
pub struct PooledBuf {
    buf: Vec<u8>,
    pool: Arc<Shared>,
}

impl PooledBuf {
    /// The buffer as shared, immutable bytes; it returns to the pool once the last `Bytes`
    /// (or slice of it) is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl std::ops::Deref for PooledBuf {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl std::ops::DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_handed_out_again() {
        let pool = BufferPool::new(8 << 20);
        let mut a = pool.take(1 << 20);
        a.extend_from_slice(b"piece");
        let ptr = a.as_ptr();
        drop(a);
        assert_eq!(pool.idle_bytes(), 1 << 20);
        let b = pool.take(1000);
        assert_eq!(b.as_ptr(), ptr, "the idle buffer is reused");
        assert!(b.is_empty(), "a reused buffer starts empty");
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn the_smallest_buffer_that_fits_is_chosen() {
        let pool = BufferPool::new(64 << 20);
        let (big, small) = (pool.take(4 << 20), pool.take(1 << 20));
        let (big_ptr, small_ptr) = (big.as_ptr(), small.as_ptr());
        drop((big, small));
        assert_eq!(pool.take(100).as_ptr(), small_ptr);
        assert_eq!(pool.take(2 << 20).as_ptr(), big_ptr);
        // Nothing idle fits: a new buffer.
        assert!(pool.take(8 << 20).capacity() >= 8 << 20);
    }

    #[test]
    fn frozen_bytes_return_the_buffer_when_the_last_slice_drops() {
        let pool = BufferPool::new(8 << 20);
        let mut a = pool.take(1 << 20);
        a.extend_from_slice(&[7u8; 1000]);
        let bytes = a.freeze();
        let tail = bytes.slice(500..);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds the buffer");
        assert_eq!(&tail[..], &[7u8; 500][..]);
        drop(tail);
        assert_eq!(pool.idle_bytes(), 1 << 20);
    }

    #[test]
    fn idle_capacity_is_bounded() {
        let pool = BufferPool::new(3 << 20);
        let bufs: Vec<_> = (0..4).map(|_| pool.take(1 << 20)).collect();
        drop(bufs);
        assert!(pool.idle_bytes() <= 3 << 20);
        assert!(pool.idle_bytes() >= 2 << 20);
    }

    #[test]
    fn take_len_gives_exactly_that_many_zeroed_bytes_the_first_time() {
        let pool = BufferPool::new(8 << 20);
        let a = pool.take_len(4096);
        assert_eq!(a.len(), 4096);
        assert!(a.iter().all(|&b| b == 0));
        drop(a);
        let mut b = pool.take_len(10);
        assert_eq!(b.len(), 10);
        b[0] = 1;
    }
}
