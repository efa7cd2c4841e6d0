//! The local filesystem backend.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use shoal_core::RepoName;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{Backend, BackendError, ByteStream, ListPage, ListRequest, ObjectKey, ObjectMeta};

/// Directory under the root that holds in-progress uploads. Keys whose first segment is this
/// name are rejected with [`BackendError::UnsupportedKey`] and never listed.
pub const TEMP_DIR: &str = ".shoal-tmp";

/// Size of the chunks that [`FilesystemBackend::get`](Backend::get) streams.
const READ_CHUNK: usize = 1 << 20;

/// Makes temp file names unique within the process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Stores each object as a file at `<root>/<key>`.
///
/// Uploads are written to `<root>/.shoal-tmp/`, fsynced, checked against the announced length
/// and renamed into place, so readers never see a partial object. The namespace is ignored.
#[derive(Debug, Clone)]
pub struct FilesystemBackend {
    root: PathBuf,
}

impl FilesystemBackend {
    /// A backend rooted at `root`. The directory is created on the first write if missing.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> Result<PathBuf, BackendError> {
        if key.as_str().split('/').next() == Some(TEMP_DIR) {
            return Err(BackendError::UnsupportedKey(key.clone()));
        }
        // ObjectKey guarantees a relative path without `.`/`..` segments, so this stays
        // inside the root.
        Ok(self.root.join(key.as_str()))
    }

    async fn open_file(&self, key: &ObjectKey) -> Result<(tokio::fs::File, u64), BackendError> {
        let path = self.path_of(key)?;
        let file = tokio::fs::File::open(&path).await.map_err(io_error)?;
        let meta = file.metadata().await.map_err(io_error)?;
        if !meta.is_file() {
            return Err(BackendError::NotFound);
        }
        Ok((file, meta.len()))
    }
}

/// Maps a local I/O error: missing files are [`BackendError::NotFound`], denied access is
/// permanent, anything else (full disk, I/O errors) may go away.
fn io_error(e: io::Error) -> BackendError {
    match e.kind() {
        io::ErrorKind::NotFound => BackendError::NotFound,
        io::ErrorKind::PermissionDenied
        | io::ErrorKind::ReadOnlyFilesystem
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::AlreadyExists
        | io::ErrorKind::InvalidInput => BackendError::Permanent(Box::new(e)),
        _ => BackendError::Unavailable(Box::new(e)),
    }
}

/// Removes the temp file when dropped unless disarmed.
struct TempFile {
    path: Option<PathBuf>,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Best effort: a leftover temp file is invisible to readers and listings.
            let _ = std::fs::remove_file(path);
        }
    }
}

#[async_trait::async_trait]
impl Backend for FilesystemBackend {
    async fn stat(
        &self,
        _namespace: &RepoName,
        key: &ObjectKey,
    ) -> Result<ObjectMeta, BackendError> {
        let path = self.path_of(key)?;
        let meta = tokio::fs::metadata(&path).await.map_err(io_error)?;
        if !meta.is_file() {
            return Err(BackendError::NotFound);
        }
        Ok(ObjectMeta { size: meta.len() })
    }

    async fn get(
        &self,
        _namespace: &RepoName,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BackendError> {
        let (mut file, size) = self.open_file(key).await?;
        let range = range.unwrap_or(0..size);
        if range.start > range.end || range.end > size {
            return Err(BackendError::InvalidRange {
                start: range.start,
                end: range.end,
                size,
            });
        }
        if range.start > 0 {
            file.seek(io::SeekFrom::Start(range.start))
                .await
                .map_err(io_error)?;
        }
        let reader = file.take(range.end - range.start);
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK);
        Ok(stream.boxed())
    }

    async fn put(
        &self,
        _namespace: &RepoName,
        key: &ObjectKey,
        len: u64,
        mut body: ByteStream,
    ) -> Result<(), BackendError> {
        let dest = self.path_of(key)?;
        let temp_dir = self.root.join(TEMP_DIR);
        tokio::fs::create_dir_all(&temp_dir)
            .await
            .map_err(io_error)?;
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let temp_path = temp_dir.join(name);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .await
            .map_err(io_error)?;
        let mut guard = TempFile {
            path: Some(temp_path.clone()),
        };

        let mut written: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BackendError::Unavailable(Box::new(e)))?;
            written += chunk.len() as u64;
            if written > len {
                return Err(BackendError::BodyLength {
                    expected: len,
                    actual: written,
                });
            }
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        if written != len {
            return Err(BackendError::BodyLength {
                expected: len,
                actual: written,
            });
        }
        file.flush().await.map_err(io_error)?;
        file.sync_all().await.map_err(io_error)?;
        drop(file);

        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io_error)?;
        }
        tokio::fs::rename(&temp_path, &dest)
            .await
            .map_err(io_error)?;
        guard.path = None;
        // Make the rename durable; best effort, as not every platform can fsync a directory.
        if let Some(parent) = dest.parent()
            && let Ok(dir) = tokio::fs::File::open(parent).await
        {
            let _ = dir.sync_all().await;
        }
        Ok(())
    }

    async fn delete(&self, _namespace: &RepoName, key: &ObjectKey) -> Result<(), BackendError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    /// Walks the tree under the root, pruning directories that cannot match the prefix. Matching
    /// keys are collected and sorted before the page is cut, so a listing costs memory
    /// proportional to the number of keys under the prefix.
    async fn list(
        &self,
        _namespace: &RepoName,
        request: ListRequest,
    ) -> Result<ListPage, BackendError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || list_blocking(&root, &request))
            .await
            .map_err(|e| BackendError::Unavailable(Box::new(e)))?
    }
}

fn list_blocking(root: &Path, request: &ListRequest) -> Result<ListPage, BackendError> {
    let mut keys = Vec::new();
    let after = request.after.as_ref().map(ObjectKey::as_str);
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error)?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(path = %entry.path().display(), "skipping non-UTF-8 file name");
                continue;
            };
            if rel.is_empty() && name == TEMP_DIR {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let file_type = entry.file_type().map_err(io_error)?;
            if file_type.is_dir() {
                // Descend only if some key below could start with the prefix.
                let dir_prefix = format!("{key}/");
                if dir_prefix.starts_with(&request.prefix)
                    || request.prefix.starts_with(&dir_prefix)
                {
                    stack.push((entry.path(), key));
                }
            } else if file_type.is_file()
                && key.starts_with(&request.prefix)
                && after.is_none_or(|after| key.as_str() > after)
            {
                match ObjectKey::new(key) {
                    Ok(key) => keys.push(key),
                    Err(e) => tracing::warn!(path = %entry.path().display(), error = %e,
                        "skipping file whose name is not a valid key"),
                }
            }
        }
    }
    keys.sort_unstable();
    let limit = request.limit.max(1);
    let next = if keys.len() > limit {
        keys.truncate(limit);
        keys.last().cloned()
    } else {
        None
    };
    Ok(ListPage { keys, next })
}
