//! `shoal push`: upload a file to an origin with the chunked upload API, hashing as it goes.
//!
//! `POST /v1/namespace/{ns}/uploads`, then one `PATCH` per chunk (with `Content-Range`), then
//! `PUT …?digest=<sha256>`: the file is read once, one chunk at a time, so memory use is one
//! chunk whatever the file size, and the digest is known by the time the commit needs it.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, LOCATION, RANGE};
use reqwest::{Body, Client, StatusCode, Url};
use shoal_core::{Algorithm, Digest, DigestHasher, RepoName};
use tokio::io::AsyncReadExt;

use crate::progress::Progress;
use crate::{CliError, http};

/// Default chunk size: 16 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;

/// Largest chunk size accepted (a chunk is held in memory while it is sent).
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;

/// Bytes handed to the connection at a time (the progress bar's granularity).
const SLICE: usize = 256 << 10;

/// Digest header of the origin's commit response.
const DIGEST_HEADER: &str = "docker-content-digest";

/// What to push where.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// Origin base URL.
    pub origin: String,
    /// Namespace (repository name) to push into.
    pub namespace: String,
    /// Bytes per `PATCH`.
    pub chunk_size: u64,
    /// The file to upload.
    pub file: PathBuf,
}

/// Uploads the file and returns its digest once the origin has committed it (durably).
pub async fn push(req: &PushRequest) -> Result<Digest, CliError> {
    let base = http::base_url("--origin", &req.origin)?;
    let ns = http::namespace(&req.namespace)?;
    if req.chunk_size == 0 || req.chunk_size > MAX_CHUNK_SIZE {
        return Err(CliError::Usage(format!(
            "--chunk-size must be between 1 byte and {MAX_CHUNK_SIZE} bytes"
        )));
    }
    let mut file = tokio::fs::File::open(&req.file)
        .await
        .map_err(|e| CliError::io(&req.file, e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| CliError::io(&req.file, e))?
        .len();
    let client = http::client()?;
    let upload = start(&client, &base, &ns).await?;
    let progress = Progress::new("pushing", Some(size));
    let result = send(&client, &upload, &mut file, req, &progress).await;
    match result {
        Ok((digest, sent)) => {
            progress.finish(&format!("pushed {digest} to {ns}:"), sent);
            Ok(digest)
        }
        Err(e) => {
            progress.abandon();
            // Best effort: the origin also drops idle uploads on its own.
            let _ = client.delete(upload).send().await;
            Err(e)
        }
    }
}

/// Starts an upload; returns its URL.
async fn start(client: &Client, base: &str, ns: &RepoName) -> Result<Url, CliError> {
    let url = format!("{base}/v1/namespace/{}/uploads", http::ns_segment(ns));
    let context = format!("starting an upload at {url}");
    let resp = client
        .post(&url)
        .send()
        .await
        .map_err(CliError::http(&context))?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(http::server_error(context, resp).await);
    }
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| CliError::Protocol(format!("{context}: no Location header")))?;
    // Relative to the origin (as the origin sends it) or absolute.
    Url::parse(&url)
        .and_then(|u| u.join(location))
        .map_err(|e| CliError::Protocol(format!("{context}: bad Location {location:?}: {e}")))
}

/// Sends every chunk and commits; returns the digest and the bytes sent.
async fn send(
    client: &Client,
    upload: &Url,
    file: &mut tokio::fs::File,
    req: &PushRequest,
    progress: &Progress,
) -> Result<(Digest, u64), CliError> {
    let chunk_size = usize::try_from(req.chunk_size).unwrap_or(usize::MAX);
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    let mut offset = 0u64;
    for index in 1.. {
        let chunk = read_chunk(file, &req.file, chunk_size).await?;
        if chunk.is_empty() {
            break;
        }
        hasher.update(&chunk);
        patch(client, upload, index, offset, chunk.clone(), progress).await?;
        offset += chunk.len() as u64;
    }
    let digest = hasher.finalize();
    commit(client, upload, &digest).await?;
    Ok((digest, offset))
}

/// Reads up to `size` bytes: less only at the end of the file.
async fn read_chunk(
    file: &mut tokio::fs::File,
    path: &Path,
    size: usize,
) -> Result<Bytes, CliError> {
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let want = size - buf.len();
        let n = (&mut *file)
            .take(want as u64)
            .read_buf(&mut buf)
            .await
            .map_err(|e| CliError::io(path, e))?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

/// Sends one chunk at `offset`, streamed in slices that advance the progress bar.
async fn patch(
    client: &Client,
    upload: &Url,
    index: usize,
    offset: u64,
    chunk: Bytes,
    progress: &Progress,
) -> Result<(), CliError> {
    let len = chunk.len() as u64;
    let end = offset + len - 1;
    let slices: Vec<Bytes> = (0..chunk.len())
        .step_by(SLICE)
        .map(|at| chunk.slice(at..chunk.len().min(at + SLICE)))
        .collect();
    let bar = progress.clone();
    let body = Body::wrap_stream(futures_util::stream::iter(slices.into_iter().map(
        move |slice| {
            bar.inc(slice.len());
            Ok::<_, std::io::Error>(slice)
        },
    )));
    let context = format!("uploading chunk {index} (bytes {offset}-{end}) to {upload}");
    let resp = client
        .patch(upload.clone())
        .header(CONTENT_RANGE, format!("{offset}-{end}"))
        .header(CONTENT_LENGTH, len)
        .body(body)
        .send()
        .await
        .map_err(CliError::http(&context))?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(http::server_error(context, resp).await);
    }
    let expected = format!("0-{end}");
    match resp.headers().get(RANGE).and_then(|v| v.to_str().ok()) {
        Some(range) if range != expected => Err(CliError::Protocol(format!(
            "{context}: the origin reports {range:?} received, expected {expected:?}"
        ))),
        _ => Ok(()),
    }
}

/// Finishes the upload under `digest`; the origin verifies the content against it.
async fn commit(client: &Client, upload: &Url, digest: &Digest) -> Result<(), CliError> {
    let mut url = upload.clone();
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    let context = format!("committing {digest} at {upload}");
    let resp = client
        .put(url)
        .header(CONTENT_LENGTH, 0)
        .send()
        .await
        .map_err(CliError::http(&context))?;
    if resp.status() != StatusCode::CREATED {
        return Err(http::server_error(context, resp).await);
    }
    let echoed = resp
        .headers()
        .get(DIGEST_HEADER)
        .and_then(|v| v.to_str().ok());
    match echoed {
        Some(d) if d != digest.to_string() => Err(CliError::Protocol(format!(
            "{context}: the origin committed {d}"
        ))),
        _ => Ok(()),
    }
}
