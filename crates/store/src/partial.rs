//! Blobs downloaded piece by piece from peers: see [`PartialBlob`].

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use shoal_core::{Bitfield, BufferPool, Digest, DigestHasher, MetaInfo, PieceIndex, PieceLayout};

use crate::{BlobStore, DigestMismatch, StoreError, VerifiedBlob, io_err};

/// Status byte of a piece not (yet) stored.
const STATUS_MISSING: u8 = 0;
/// Status byte of a piece written and verified.
const STATUS_VERIFIED: u8 = 1;
/// Read size when hashing the whole blob at the end.
const HASH_CHUNK: usize = 1 << 20;

/// The partial blobs open in one store, so that every [`BlobStore::partial`] call for a digest
/// shares one set of files and one bookkeeping state.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<Digest, Weak<Shared>>>,
}

/// The outcome of [`PartialBlob::write_piece`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum PieceWrite {
    /// The piece verified and is now stored (and persisted in the status file).
    Stored,
    /// The piece is already stored, or another call is storing it right now; nothing was
    /// written. (A concurrent writer that then fails leaves the piece missing.)
    Duplicate,
    /// The data is not this piece (wrong length or hash) or the index is not one of this
    /// blob's pieces; nothing was written.
    Corrupt,
}

/// A blob being downloaded piece by piece. Cheap to clone: clones (and every
/// [`BlobStore::partial`] handle for the same digest) share the files and the state.
///
/// A partial blob lives in two files under the store's `partial/` directory:
///
/// ```text
/// partial/<alg>/<hex>          the content, pre-sized to the blob length (sparse until written)
/// partial/<alg>/<hex>.status   one byte per piece: 0 = missing, 1 = written and verified
/// ```
///
/// Pieces arrive in any order and from several connections at once: their data is written with
/// positioned writes on a shared file, and a mutex guards only the bookkeeping (which pieces are
/// present or being written), never piece I/O. Nothing under `partial/` is visible as a blob:
/// [`PartialBlob::finish`] makes sure the whole blob matches its digest (for a SHA-256 chain,
/// the piece checks already did) and publishes it into `blobs/` through
/// [`BlobStore::publish`], the same path as any other commit.
///
/// **Resume policy: re-verify.** Piece writes are not fsynced, so after a power loss the status
/// file may claim pieces whose data never reached the disk (or the file system may have
/// reordered the two writes). When [`BlobStore::partial`] finds existing files, it therefore
/// hashes every piece the status file marks as verified and keeps only those that still match
/// their piece hash; the others are reset to missing. This costs one read and SHA-256 of the
/// pieces already downloaded (about 0.7 s per GiB) on restart, in exchange for no fsync per
/// piece while downloading, and it also catches data changed behind the store's back. Files of
/// the wrong length (or a status byte other than 0 or 1) are never trusted: the download starts
/// over, or that piece is reset.
///
/// All methods do blocking file I/O: call them from `spawn_blocking` or a blocking thread.
/// Dropping every handle keeps the files, so a later [`BlobStore::partial`] resumes.
#[derive(Debug, Clone)]
pub struct PartialBlob {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    store: BlobStore,
    meta: MetaInfo,
    layout: PieceLayout,
    data_path: PathBuf,
    status_path: PathBuf,
    data: fs::File,
    status: fs::File,
    state: Mutex<State>,
    /// Serializes [`PartialBlob::finish`] and [`PartialBlob::abandon`] (held during their I/O;
    /// piece writers never take it).
    finish_lock: Mutex<()>,
}

#[derive(Debug)]
struct State {
    have: Bitfield,
    /// Pieces a `write_piece` call is writing right now.
    writing: HashSet<u32>,
    /// Pieces `0..prefix` are all present.
    prefix: u32,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Downloading.
    Open,
    /// Published into `blobs/`; the handle still reads the (same) content.
    Committed,
    /// Abandoned, or failed its whole-blob verification: the files are gone.
    Discarded,
}

impl BlobStore {
    /// Opens, or creates, the partial download of `meta`'s blob (see [`PartialBlob`] for the
    /// files and the resume policy). Resuming re-verifies the pieces already downloaded, which
    /// reads them: this may take a while for a large blob (other `partial` calls wait for it).
    ///
    /// While a handle for the digest is alive, further calls return a handle to the same
    /// download; with a *different* metainfo for the same digest they fail.
    pub fn partial(&self, meta: &MetaInfo) -> Result<PartialBlob, StoreError> {
        let digest = meta.digest();
        let mut open = self.inner.partials.open.lock();
        if let Some(shared) = open.get(&digest).and_then(Weak::upgrade) {
            if shared.meta != *meta {
                return Err(StoreError::Io {
                    context: format!("opening partial blob {digest}"),
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a download of this blob with different metainfo is in progress",
                    ),
                });
            }
            return Ok(PartialBlob { shared });
        }
        open.retain(|_, w| w.strong_count() > 0);
        let shared = Arc::new(Shared::open(self.clone(), meta)?);
        open.insert(digest, Arc::downgrade(&shared));
        Ok(PartialBlob { shared })
    }
}

impl Shared {
    fn open(store: BlobStore, meta: &MetaInfo) -> Result<Self, StoreError> {
        let digest = meta.digest();
        let layout = meta.layout();
        let dir = store.inner.partial_dir.join(digest.algorithm().name());
        fs::create_dir_all(&dir).map_err(io_err("creating partial dir"))?;
        let hex = digest.hex();
        let status_path = dir.join(format!("{hex}.status"));
        let data_path = dir.join(hex);
        let data = open_rw(&data_path)?;
        let status = open_rw(&status_path)?;
        let data_len = data.metadata().map_err(io_err("stat partial blob"))?.len();
        let status_len = status
            .metadata()
            .map_err(io_err("stat partial status"))?
            .len();
        let mut have = Bitfield::for_layout(&layout);
        if data_len == layout.blob_len() && status_len == u64::from(layout.piece_count()) {
            resume(&data, &status, meta, &mut have)?;
            if have.count_ones() > 0 {
                tracing::info!(
                    %digest,
                    have = have.count_ones(),
                    pieces = layout.piece_count(),
                    "resuming partial blob"
                );
            }
        } else {
            if data_len != 0 || status_len != 0 {
                tracing::warn!(
                    %digest,
                    data_len,
                    status_len,
                    "partial blob files have the wrong length; starting over"
                );
            }
            status
                .set_len(0)
                .and_then(|()| status.set_len(u64::from(layout.piece_count())))
                .map_err(io_err("resetting partial status"))?;
            // The blob's blocks are reserved before the first piece: pieces landing in random
            // order then only fill them in (see `alloc`), and a full disk fails here, before
            // anything is served, rather than half-way through a reader's stream.
            crate::alloc::preallocate(&data, layout.blob_len())
                .map_err(io_err("reserving disk space for the download"))?;
        }
        let mut state = State {
            have,
            writing: HashSet::new(),
            prefix: 0,
            phase: Phase::Open,
        };
        state.advance_prefix(&layout);
        Ok(Self {
            store,
            meta: meta.clone(),
            layout,
            data_path,
            status_path,
            data,
            status,
            state: Mutex::new(state),
            finish_lock: Mutex::new(()),
        })
    }

    fn not_found(&self) -> StoreError {
        StoreError::NotFound(self.meta.digest())
    }

    /// Marks the download dead and deletes its files.
    fn discard(self: &Arc<Self>) -> Result<(), StoreError> {
        self.state.lock().phase = Phase::Discarded;
        self.unregister();
        for p in [&self.status_path, &self.data_path] {
            match fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing partial blob")(e)),
            }
        }
        Ok(())
    }

    fn unregister(self: &Arc<Self>) {
        let mut open = self.store.inner.partials.open.lock();
        let digest = self.meta.digest();
        if open
            .get(&digest)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(self)))
        {
            open.remove(&digest);
        }
    }
}

impl State {
    fn advance_prefix(&mut self, layout: &PieceLayout) {
        while let Some(p) = layout.piece(self.prefix) {
            if !self.have.has(p) {
                break;
            }
            self.prefix += 1;
        }
    }
}

/// Loads the status file into `have`, keeping only marked pieces that still verify.
fn resume(
    data: &fs::File,
    status: &fs::File,
    meta: &MetaInfo,
    have: &mut Bitfield,
) -> Result<(), StoreError> {
    let layout = meta.layout();
    let mut marks = vec![0u8; layout.piece_count() as usize];
    status
        .read_exact_at(&mut marks, 0)
        .map_err(io_err("reading partial status"))?;
    let mut buf = Vec::new();
    for piece in layout.pieces() {
        let mark = marks[piece.as_usize()];
        if mark == STATUS_MISSING {
            continue;
        }
        if mark == STATUS_VERIFIED {
            let range = layout.range(piece);
            buf.resize(layout.len_of(piece) as usize, 0);
            data.read_exact_at(&mut buf, range.start)
                .map_err(io_err("re-verifying partial blob"))?;
            if meta.verify_piece(piece, &buf) {
                have.set(piece);
                continue;
            }
        }
        tracing::warn!(
            digest = %meta.digest(),
            %piece,
            mark,
            "partial blob piece does not verify; downloading it again"
        );
        status
            .write_all_at(&[STATUS_MISSING], u64::from(piece.get()))
            .map_err(io_err("resetting partial status"))?;
    }
    Ok(())
}

impl PartialBlob {
    /// The metainfo being downloaded.
    pub fn meta(&self) -> &MetaInfo {
        &self.shared.meta
    }

    /// A snapshot of the pieces present.
    pub fn have(&self) -> Bitfield {
        self.shared.state.lock().have.clone()
    }

    /// Whether every piece is present (always true for an empty blob).
    pub fn is_complete(&self) -> bool {
        self.shared.state.lock().have.is_complete()
    }

    /// Bytes from the start of the blob covered by present pieces: the part that can already
    /// be streamed in order.
    pub fn contiguous_prefix_len(&self) -> u64 {
        let prefix = self.shared.state.lock().prefix;
        let layout = &self.shared.layout;
        layout
            .piece(prefix)
            .map_or(layout.blob_len(), |p| layout.range(p).start)
    }

    /// Verifies `data` as `piece` and stores it (see [`PieceWrite`]). Safe to call
    /// concurrently for different pieces; the piece data is written without holding a lock.
    ///
    /// After a successful [`Self::finish`] every piece is a duplicate; after
    /// [`Self::abandon`] or a failed `finish` this fails with [`StoreError::NotFound`].
    pub fn write_piece(&self, piece: PieceIndex, data: &[u8]) -> Result<PieceWrite, StoreError> {
        let s = &*self.shared;
        if piece.get() >= s.layout.piece_count() || !s.meta.verify_piece(piece, data) {
            return Ok(PieceWrite::Corrupt);
        }
        {
            let mut st = s.state.lock();
            if st.phase == Phase::Discarded {
                return Err(s.not_found());
            }
            if st.have.has(piece) || !st.writing.insert(piece.get()) {
                return Ok(PieceWrite::Duplicate);
            }
        }
        let claim = Claim {
            shared: s,
            piece: piece.get(),
        };
        s.data
            .write_all_at(data, s.layout.range(piece).start)
            .map_err(io_err("writing piece"))?;
        s.status
            .write_all_at(&[STATUS_VERIFIED], u64::from(piece.get()))
            .map_err(io_err("writing partial status"))?;
        {
            let mut st = s.state.lock();
            if st.phase == Phase::Discarded {
                return Err(s.not_found());
            }
            st.have.set(piece);
            st.advance_prefix(&s.layout);
        }
        // Releasing the claim now that the piece is present (a caller racing in between sees
        // it as present anyway).
        drop(claim);
        Ok(PieceWrite::Stored)
    }

    /// The content of `piece`, or `None` if it is not present (yet), e.g. to seed it to other
    /// peers while the download goes on.
    pub fn read_piece(
        &self,
        piece: PieceIndex,
        buffers: &BufferPool,
    ) -> Result<Option<Bytes>, StoreError> {
        let s = &*self.shared;
        {
            let st = s.state.lock();
            if st.phase == Phase::Discarded {
                return Err(s.not_found());
            }
            if !st.have.has(piece) {
                return Ok(None);
            }
        }
        let mut buf = buffers.take_len(s.layout.len_of(piece) as usize);
        s.data
            .read_exact_at(&mut buf, s.layout.range(piece).start)
            .map_err(io_err("reading piece"))?;
        Ok(Some(buf.freeze()))
    }

    /// Fills `buf` from `offset` with content of present pieces. Short at the end of the blob
    /// and at the first missing piece: returns 0 if the piece holding `offset` is missing.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let s = &*self.shared;
        let layout = &s.layout;
        let want_end = offset
            .saturating_add(buf.len() as u64)
            .min(layout.blob_len());
        let mut end = offset;
        {
            let st = s.state.lock();
            if st.phase == Phase::Discarded {
                return Err(s.not_found());
            }
            while end < want_end {
                match layout.piece_at(end) {
                    Some(p) if st.have.has(p) => end = layout.range(p).end,
                    _ => break,
                }
            }
        }
        let n = usize::try_from(end.min(want_end).saturating_sub(offset)).unwrap_or(0);
        s.data
            .read_exact_at(&mut buf[..n], offset)
            .map_err(io_err("reading partial blob"))?;
        Ok(n)
    }

    /// Commits the completed download: fsyncs, makes sure the whole blob matches its digest,
    /// publishes it into `blobs/` via
    /// [`BlobStore::publish`] (so it becomes visible only now and counts towards eviction),
    /// stores its metainfo next to it and removes the status file. Returns the blob size.
    ///
    /// The whole-blob check costs nothing for a [`shoal_core::HashScheme::Chained`] metainfo
    /// (every `sha256` blob the origins describe): its piece checks are the SHA-256 of the
    /// whole blob, computed as the pieces landed, and the last one compared it with the
    /// digest. Otherwise the blob is read back and hashed with the digest's own algorithm.
    ///
    /// Fails with [`StoreError::Incomplete`] (and changes nothing) while pieces are missing.
    /// On a whole-blob [`StoreError::DigestMismatch`] (independent piece hashes that contradict
    /// the digest) the partial files are deleted, so a new download starts over. Existing
    /// handles keep reading the content after a successful finish; calling it again returns the
    /// size again.
    pub fn finish(&self) -> Result<u64, StoreError> {
        let s = &self.shared;
        let digest = s.meta.digest();
        let size = s.layout.blob_len();
        let _serial = s.finish_lock.lock();
        {
            let st = s.state.lock();
            match st.phase {
                Phase::Committed => return Ok(size),
                Phase::Discarded => return Err(s.not_found()),
                Phase::Open => {}
            }
            if !st.have.is_complete() {
                return Err(StoreError::Incomplete {
                    digest,
                    have: st.have.count_ones(),
                    pieces: st.have.len(),
                });
            }
        }
        s.data.sync_all().map_err(io_err("syncing partial blob"))?;
        // With a SHA-256 chain the pieces' verification already computed the whole blob's
        // SHA-256 (the last piece's check finishes it against the digest); otherwise the
        // blob is read back and hashed once more.
        let actual = if s.meta.pieces_prove_digest() {
            digest
        } else {
            hash_file(&s.data, size, digest).map_err(io_err("hashing partial blob"))?
        };
        if actual != digest {
            tracing::warn!(%digest, %actual, "downloaded blob does not match its digest");
            s.discard()?;
            return Err(StoreError::DigestMismatch(Box::new(DigestMismatch {
                expected: digest,
                actual,
            })));
        }
        let file = s.data.try_clone().map_err(io_err("cloning partial blob"))?;
        let verified = VerifiedBlob {
            file: Some(file),
            path: s.data_path.clone(),
            size,
            digest,
            hashed: None,
        };
        if let Err(e) = s.store.publish(verified) {
            // The verified blob deleted its file when dropped: the rest goes too.
            let _ = s.discard();
            return Err(e);
        }
        s.state.lock().phase = Phase::Committed;
        s.unregister();
        if let Err(e) = s.store.write_metainfo(&s.meta) {
            tracing::warn!(%digest, "storing metainfo of downloaded blob: {e}");
        }
        match fs::remove_file(&s.status_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(%digest, "removing partial status file: {e}"),
        }
        Ok(size)
    }

    /// Gives the download up and deletes its files. Concurrent and later writes and reads on
    /// any handle fail with [`StoreError::NotFound`]. No-op after a successful
    /// [`Self::finish`].
    pub fn abandon(&self) -> Result<(), StoreError> {
        let s = &self.shared;
        let _serial = s.finish_lock.lock();
        if s.state.lock().phase == Phase::Committed {
            return Ok(());
        }
        s.discard()
    }
}

/// A piece being written by one `write_piece` call; released if the call fails.
struct Claim<'a> {
    shared: &'a Shared,
    piece: u32,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.shared.state.lock().writing.remove(&self.piece);
    }
}

fn open_rw(path: &Path) -> Result<fs::File, StoreError> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(format!("opening {}", path.display())))
}

/// The digest (with `like`'s algorithm) of the first `len` bytes of `file`.
fn hash_file(file: &fs::File, len: u64, like: Digest) -> io::Result<Digest> {
    let mut hasher = DigestHasher::new(like.algorithm());
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut offset = 0;
    while offset < len {
        let n = usize::try_from(len - offset).map_or(HASH_CHUNK, |r| r.min(HASH_CHUNK));
        file.read_exact_at(&mut buf[..n], offset)?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests;
