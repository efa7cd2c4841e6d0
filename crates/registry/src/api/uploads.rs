//! Blob pushes: `POST /v2/<name>/blobs/uploads/` (session, monolithic `?digest=`, or
//! `?mount=&from=`), and `GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use futures_util::Stream;
use shoal_core::{Digest, RepoName};
use shoal_runtime::range::parse_content_range;

use super::{
    ApiResult, DIGEST_HEADER, Req, UPLOAD_UUID_HEADER, body_stream, build, builder,
    ensure_writable, parse_digest, parse_repo, upload_range,
};
use crate::error::RegistryError;
use crate::store::{ByteStream, RegistryStore, UploadId};

/// `POST /v2/<name>/blobs/uploads/`.
///
/// - `?mount=<digest>&from=<repo>`: 201 if the store mounts the blob, else a new session as
///   below; without `from`, the store may mount it from any repository (anonymous mount);
/// - `?digest=<digest>`: the body is the whole blob, 201;
/// - otherwise: a new session, 202 with its `Location`.
pub(super) async fn start<S: RegistryStore>(
    store: &S,
    name: &str,
    req: &Req<'_>,
    body: Body,
) -> ApiResult {
    ensure_writable(store)?;
    let repo = parse_repo(name)?;
    let query = req.query()?;
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest(mount)?;
        // A `from` that is not a valid name cannot hold the blob: fall back to an upload, as
        // for any mount the registry cannot do.
        let from = match query.get("from") {
            Some(f) => f.parse::<RepoName>().ok().map(Some),
            None => Some(None),
        };
        if let Some(from) = from
            && store.mount_blob(&repo, from.as_ref(), &digest).await?
        {
            return blob_created(&repo, &digest);
        }
    } else if let Some(digest) = query.get("digest") {
        let digest = parse_digest(digest)?;
        let (stream, overrun) = checked_body(body, req.content_length());
        let result = store.put_blob(&repo, &digest, stream).await;
        overrun.check()?;
        result?;
        return blob_created(&repo, &digest);
    }
    let id = store.start_upload(&repo).await?;
    session_response(&repo, &id, 0, StatusCode::ACCEPTED)
}

/// `GET …/uploads/<id>`: 204 with the session's progress in `Range`.
pub(super) async fn status<S: RegistryStore>(store: &S, name: &str, id: &str) -> ApiResult {
    ensure_writable(store)?;
    let repo = parse_repo(name)?;
    let id = UploadId::parse(id)?;
    let offset = store.upload_offset(&repo, &id).await?;
    session_response(&repo, &id, offset, StatusCode::NO_CONTENT)
}

/// `PATCH …/uploads/<id>`: appends a chunk. A `Content-Range` (`<start>-<end>`, or
/// `bytes <start>-<end>/<total>`) that does not start at the session's offset is 416 with the
/// session's `Range`.
pub(super) async fn patch<S: RegistryStore>(
    store: &S,
    name: &str,
    id: &str,
    req: &Req<'_>,
    body: Body,
) -> ApiResult {
    ensure_writable(store)?;
    let repo = parse_repo(name)?;
    let id = UploadId::parse(id)?;
    let offset = store.upload_offset(&repo, &id).await?;
    let len = chunk_len(req, offset)?;
    let (stream, overrun) = checked_body(body, len);
    let result = store.upload_chunk(&repo, &id, offset, stream).await;
    overrun.check()?;
    let offset = result?;
    session_response(&repo, &id, offset, StatusCode::ACCEPTED)
}

/// `PUT …/uploads/<id>?digest=<digest>`: appends the optional last chunk, verifies the whole
/// blob and makes it available; 201 with the blob's `Location`.
pub(super) async fn finish<S: RegistryStore>(
    store: &S,
    name: &str,
    id: &str,
    req: &Req<'_>,
    body: Body,
) -> ApiResult {
    ensure_writable(store)?;
    let repo = parse_repo(name)?;
    let id = UploadId::parse(id)?;
    let query = req.query()?;
    let digest = query
        .get("digest")
        .ok_or_else(|| {
            RegistryError::DigestInvalid("the digest query parameter is required".into())
        })
        .and_then(|d| parse_digest(d))?;
    let (last_chunk, overrun) = if req.has_body() {
        let len = if req.header(header::CONTENT_RANGE).is_some() {
            let offset = store.upload_offset(&repo, &id).await?;
            chunk_len(req, offset)?
        } else {
            req.content_length()
        };
        let (stream, overrun) = checked_body(body, len);
        (Some(stream), overrun)
    } else {
        (None, Overrun::default())
    };
    let result = store.finish_upload(&repo, &id, &digest, last_chunk).await;
    overrun.check()?;
    result?;
    blob_created(&repo, &digest)
}

/// `DELETE …/uploads/<id>`: 204.
pub(super) async fn cancel<S: RegistryStore>(store: &S, name: &str, id: &str) -> ApiResult {
    ensure_writable(store)?;
    let repo = parse_repo(name)?;
    let id = UploadId::parse(id)?;
    store.cancel_upload(&repo, &id).await?;
    build(builder(StatusCode::NO_CONTENT), Body::empty())
}

/// 201 for a blob now available at `/v2/<name>/blobs/<digest>`.
fn blob_created(repo: &RepoName, digest: &Digest) -> ApiResult {
    build(
        builder(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
            .header(DIGEST_HEADER, digest.to_string())
            .header(header::CONTENT_LENGTH, 0),
        Body::empty(),
    )
}

/// 202 (or 204) describing a session that has received `offset` bytes.
fn session_response(repo: &RepoName, id: &UploadId, offset: u64, status: StatusCode) -> ApiResult {
    let mut builder = builder(status)
        .header(
            header::LOCATION,
            format!("/v2/{repo}/blobs/uploads/{}", id.as_str()),
        )
        .header(header::RANGE, upload_range(offset))
        .header(UPLOAD_UUID_HEADER, id.as_str());
    if status != StatusCode::NO_CONTENT {
        builder = builder.header(header::CONTENT_LENGTH, 0);
    }
    build(builder, Body::empty())
}

/// The length a chunk must have: from `Content-Range` (which must start at `offset`), else
/// `Content-Length`, else unknown.
fn chunk_len(req: &Req<'_>, offset: u64) -> Result<Option<u64>, RegistryError> {
    let content_length = req.content_length();
    let Some(range) = req.header(header::CONTENT_RANGE) else {
        return Ok(content_length);
    };
    let out_of_order = RegistryError::RangeInvalid {
        size: offset,
        upload: true,
    };
    let range = parse_content_range(range).ok_or_else(|| out_of_order.clone())?;
    if range.start != offset {
        return Err(out_of_order);
    }
    let len = range.end - range.start;
    if let Some(cl) = content_length
        && cl != len
    {
        return Err(RegistryError::SizeInvalid(format!(
            "Content-Range covers {len} bytes but Content-Length is {cl}"
        )));
    }
    Ok(Some(len))
}

/// Set when a body did not have the length its headers declared.
#[derive(Debug, Default, Clone)]
struct Overrun(Arc<AtomicBool>);

impl Overrun {
    /// `SIZE_INVALID` if the body had the wrong length (whatever the store made of the failed
    /// stream).
    fn check(&self) -> Result<(), RegistryError> {
        if self.0.load(Ordering::Relaxed) {
            Err(RegistryError::SizeInvalid(
                "the body's length differs from the declared length".into(),
            ))
        } else {
            Ok(())
        }
    }
}

/// The body as a stream for the store; with a declared length, a body that is longer or
/// shorter ends in an error (and sets the returned flag).
fn checked_body(body: Body, len: Option<u64>) -> (ByteStream, Overrun) {
    let overrun = Overrun::default();
    let stream = body_stream(body);
    let stream = match len {
        Some(remaining) => Box::pin(ExactLen {
            inner: stream,
            remaining,
            done: false,
            overrun: overrun.clone(),
        }) as ByteStream,
        None => stream,
    };
    (stream, overrun)
}

/// Passes a stream through, failing it if it is not exactly `remaining` bytes long.
struct ExactLen {
    inner: ByteStream,
    remaining: u64,
    done: bool,
    overrun: Overrun,
}

impl ExactLen {
    fn fail(&mut self, msg: &'static str) -> Poll<Option<io::Result<Bytes>>> {
        self.done = true;
        self.overrun.0.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, msg))))
    }
}

impl Stream for ExactLen {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(self.inner.as_mut().poll_next(cx)) {
            Some(Ok(chunk)) => {
                let n = chunk.len() as u64;
                if n > self.remaining {
                    return self.fail("request body is longer than declared");
                }
                self.remaining -= n;
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            None if self.remaining > 0 => self.fail("request body is shorter than declared"),
            None => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures_util::StreamExt;

    use super::*;

    async fn drain(body: &'static [u8], len: u64) -> (Vec<u8>, bool, bool) {
        let (mut s, overrun) = checked_body(Body::from(body), Some(len));
        let mut out = Vec::new();
        let mut failed = false;
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => failed = true,
            }
        }
        (out, failed, overrun.check().is_err())
    }

    #[tokio::test]
    async fn bodies_must_have_the_declared_length() {
        assert_eq!(drain(b"abc", 3).await, (b"abc".to_vec(), false, false));
        let (_, failed, flagged) = drain(b"abcd", 3).await;
        assert!(failed && flagged);
        let (_, failed, flagged) = drain(b"ab", 3).await;
        assert!(failed && flagged);
    }
}
