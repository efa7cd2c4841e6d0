//! Blobs being written: hashed as they are written, invisible until committed.

use std::fs;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use shoal_core::{Algorithm, Digest, DigestHasher};

use crate::{StoreError, io_err};

const WRITE_BUFFER: usize = 1 << 20;

/// A blob being written into the store's `tmp/` directory. Content is hashed with SHA-256 as it
/// is written; dropping an uncommitted `TempBlob` deletes its file.
#[derive(Debug)]
pub struct TempBlob {
    file: Option<BufWriter<fs::File>>,
    path: PathBuf,
    hasher: DigestHasher,
    len: u64,
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
            hasher: DigestHasher::new(Algorithm::Sha256),
            len: 0,
        })
    }

    /// Appends content.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(data);
        self.writer()
            .write_all(data)
            .map_err(io_err("writing temp blob"))?;
        self.len += data.len() as u64;
        Ok(())
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
    /// algorithm than SHA-256). On success returns the flushed file, its path and size, and
    /// disarms the delete-on-drop; on a mismatch the file is deleted.
    pub(crate) fn verify(
        mut self,
        expected: &Digest,
    ) -> Result<(fs::File, PathBuf, u64), StoreError> {
        let mut file = self.take_file()?;
        let actual = if expected.algorithm() == Algorithm::Sha256 {
            self.hasher.clone().finalize()
        } else {
            rehash(&mut file, expected.algorithm()).map_err(io_err("re-hashing temp blob"))?
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
        Ok((file, path, self.len))
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
