//! Blobs being written: hashed as they are written, invisible until committed.

use std::fs;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use bytes::Bytes;
use shoal_core::{
    Algorithm, DEFAULT_MIN_PIECE_LENGTH, Digest, DigestHasher, HashedBlob, Sha256Checkpoints,
};

use crate::{StoreError, io_err};

const WRITE_BUFFER: usize = 1 << 20;
/// Chunks queued for the hashing thread of a [`TempBlob::write_bytes`] stream.
const HASH_QUEUE: usize = 64;
/// Written bytes after which the data is pushed to disk in the background, so the fsync at
/// commit has little left to do.
const FLUSH_EVERY: u64 = 64 << 20;
/// The hash keeps SHA-256's state every this many bytes, so that a chained metainfo for any
/// piece length that is a multiple of it (every length origins cut by default) comes from the
/// upload's own hash pass (see [`crate::VerifiedBlob::chained_metainfo`]).
pub(crate) const CHECKPOINT_STRIDE: u32 = DEFAULT_MIN_PIECE_LENGTH;

/// A blob being written into the store's `tmp/` directory. Content is hashed with SHA-256 as it
/// is written (keeping the chaining state every 256 KiB for the metainfo); dropping an
/// uncommitted `TempBlob` deletes its file.
///
/// [`TempBlob::write_bytes`] hashes on a helper thread while the caller's thread writes the
/// file, and flushes written data to disk in the background every 64 MiB: hashing (~1.5 GB/s
/// per core) and the page-cache copy then run on two cores instead of one.
#[derive(Debug)]
pub struct TempBlob {
    file: Option<BufWriter<fs::File>>,
    path: PathBuf,
    hasher: Hashing,
    flusher: Option<Flusher>,
    unflushed: u64,
    len: u64,
}

#[derive(Debug)]
enum Hashing {
    Inline(Sha256Checkpoints),
    Background {
        tx: mpsc::SyncSender<Bytes>,
        thread: thread::JoinHandle<Sha256Checkpoints>,
    },
    /// The helper thread died; the content can no longer be verified incrementally.
    Failed,
}

/// A thread that `fdatasync`s the file when asked (asks are dropped while it is busy).
#[derive(Debug)]
struct Flusher {
    tx: mpsc::SyncSender<()>,
    thread: thread::JoinHandle<()>,
}

impl TempBlob {
    pub(crate) fn create(tmp_dir: &Path) -> Result<Self, StoreError> {
        let name = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let path = tmp_dir.join(name);
        let file = fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("creating temp blob"))?;
        Ok(Self {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            path,
            hasher: Hashing::Inline(Sha256Checkpoints::new(CHECKPOINT_STRIDE)),
            flusher: None,
            unflushed: 0,
            len: 0,
        })
    }

    /// Appends content, hashing it on the calling thread (for small writes).
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.settle_hasher()?.update(data);
        self.write_file(data)
    }

    /// Appends content, hashing it on a helper thread in parallel with the file write (for
    /// large streams). Blocking.
    pub fn write_bytes(&mut self, data: Bytes) -> Result<(), StoreError> {
        if let Hashing::Inline(_) = self.hasher {
            let Hashing::Inline(mut h) = std::mem::replace(&mut self.hasher, Hashing::Failed)
            else {
                unreachable!("matched above")
            };
            let (tx, rx) = mpsc::sync_channel::<Bytes>(HASH_QUEUE);
            let thread = thread::Builder::new()
                .name("shoal-hash".into())
                .spawn(move || {
                    while let Ok(chunk) = rx.recv() {
                        h.update(&chunk);
                    }
                    h
                })
                .map_err(io_err("starting hash thread"))?;
            self.hasher = Hashing::Background { tx, thread };
        }
        let Hashing::Background { tx, .. } = &self.hasher else {
            return Err(hash_thread_died());
        };
        if tx.send(data.clone()).is_err() {
            self.hasher = Hashing::Failed;
            return Err(hash_thread_died());
        }
        self.write_file(&data)
    }

    fn write_file(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.writer()
            .write_all(data)
            .map_err(io_err("writing temp blob"))?;
        self.len += data.len() as u64;
        self.unflushed += data.len() as u64;
        if self.unflushed >= FLUSH_EVERY {
            self.unflushed = 0;
            self.flush_in_background()?;
        }
        Ok(())
    }

    fn flush_in_background(&mut self) -> Result<(), StoreError> {
        self.writer()
            .flush()
            .map_err(io_err("flushing temp blob"))?;
        if self.flusher.is_none() {
            let file = self
                .writer()
                .get_ref()
                .try_clone()
                .map_err(io_err("cloning temp blob handle"))?;
            let (tx, rx) = mpsc::sync_channel::<()>(1);
            let thread = thread::Builder::new()
                .name("shoal-flush".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        // Best effort: the commit's own fsync is what guarantees durability.
                        let _ = file.sync_data();
                    }
                })
                .map_err(io_err("starting flush thread"))?;
            self.flusher = Some(Flusher { tx, thread });
        }
        if let Some(f) = &self.flusher {
            let _ = f.tx.try_send(());
        }
        Ok(())
    }

    /// Waits for the helper threads and returns the inline hasher state.
    fn settle_hasher(&mut self) -> Result<&mut Sha256Checkpoints, StoreError> {
        if let Some(f) = self.flusher.take() {
            drop(f.tx);
            let _ = f.thread.join();
        }
        match std::mem::replace(&mut self.hasher, Hashing::Failed) {
            Hashing::Inline(h) => self.hasher = Hashing::Inline(h),
            Hashing::Background { tx, thread } => {
                drop(tx);
                let h = thread.join().map_err(|_| hash_thread_died())?;
                self.hasher = Hashing::Inline(h);
            }
            Hashing::Failed => return Err(hash_thread_died()),
        }
        match &mut self.hasher {
            Hashing::Inline(h) => Ok(h),
            _ => unreachable!("just set"),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks the content against `expected` (re-reading the file if `expected` uses another
    /// algorithm than SHA-256). On success returns the flushed file, its path and size, the
    /// SHA-256 pass's checkpoints (for a `sha256` digest), and disarms the delete-on-drop; on a
    /// mismatch the file is deleted.
    pub(crate) fn verify(mut self, expected: &Digest) -> Result<Verified, StoreError> {
        let mut file = self.take_file()?;
        let (actual, hashed) = if expected.algorithm() == Algorithm::Sha256 {
            self.settle_hasher()?;
            let Hashing::Inline(h) = std::mem::replace(&mut self.hasher, Hashing::Failed) else {
                unreachable!("settled above")
            };
            let hashed = h.finish();
            (hashed.digest(), Some(hashed))
        } else {
            let d =
                rehash(&mut file, expected.algorithm()).map_err(io_err("re-hashing temp blob"))?;
            (d, None)
        };
        if actual != *expected {
            // Dropping `self` deletes the file.
            return Err(StoreError::DigestMismatch(Box::new(
                crate::DigestMismatch {
                    expected: *expected,
                    actual,
                },
            )));
        }
        let path = std::mem::take(&mut self.path);
        Ok(Verified {
            file,
            path,
            size: self.len,
            hashed,
        })
    }

    /// The flushed file and its path, without verification; the caller owns the file from now
    /// on (used for sidecar files such as metainfo).
    pub(crate) fn into_parts(mut self) -> Result<(fs::File, PathBuf), StoreError> {
        let file = self.take_file()?;
        Ok((file, std::mem::take(&mut self.path)))
    }

    /// Flushes and takes the file out; the path stays armed for delete-on-drop.
    fn take_file(&mut self) -> Result<fs::File, StoreError> {
        self.file
            .take()
            .expect("file present until consumed")
            .into_inner()
            .map_err(|e| io_err("flushing temp blob")(e.into_error()))
    }

    fn writer(&mut self) -> &mut BufWriter<fs::File> {
        self.file.as_mut().expect("file present until consumed")
    }
}

/// What [`TempBlob::verify`] hands over.
pub(crate) struct Verified {
    pub(crate) file: fs::File,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) hashed: Option<HashedBlob>,
}

fn hash_thread_died() -> StoreError {
    io_err("hashing temp blob")(io::Error::other("hash thread failed"))
}

fn rehash(file: &mut fs::File, algorithm: Algorithm) -> io::Result<Digest> {
    file.seek(io::SeekFrom::Start(0))?;
    let mut hasher = DigestHasher::new(algorithm);
    let mut buf = vec![0u8; WRITE_BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = fs::remove_file(&self.path);
        }
    }
}
