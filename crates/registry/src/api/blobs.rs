//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use shoal_runtime::range::{blob_headers, blob_response};

use super::{ApiResult, Req, build, builder, ensure_writable, parse_digest, parse_repo};
use crate::error::RegistryError;
use crate::store::RegistryStore;

/// `GET`: the blob, whole (200) or one byte range (206); an unsatisfiable `Range` is 416
/// `RANGE_INVALID` with `Content-Range: bytes */<size>`.
pub(super) async fn get<S: RegistryStore>(
    store: &S,
    name: &str,
    digest: &str,
    req: &Req<'_>,
) -> ApiResult {
    let repo = parse_repo(name)?;
    let digest = parse_digest(digest)?;
    let blob = store
        .open_blob(&repo, &digest)
        .await?
        .ok_or(RegistryError::BlobUnknown)?;
    let size = blob.size;
    let read = blob.read;
    let resp = blob_response(
        req.header(header::RANGE),
        size,
        &digest.to_string(),
        |range| Body::from_stream(read(range)),
    )
    .map_err(|_| RegistryError::RangeInvalid {
        size,
        upload: false,
    })?;
    Ok(resp)
}

/// `HEAD`: the blob's headers, from [`RegistryStore::stat_blob`] (never opens the blob).
pub(super) async fn head<S: RegistryStore>(store: &S, name: &str, digest: &str) -> ApiResult {
    let repo = parse_repo(name)?;
    let digest = parse_digest(digest)?;
    let size = store
        .stat_blob(&repo, &digest)
        .await?
        .ok_or(RegistryError::BlobUnknown)?;
    let mut resp = Response::new(Body::empty());
    blob_headers(resp.headers_mut(), &digest.to_string(), size);
    Ok(resp)
}

/// `DELETE`: 202, or 404 `BLOB_UNKNOWN`.
pub(super) async fn delete<S: RegistryStore>(store: &S, name: &str, digest: &str) -> ApiResult {
    ensure_writable(store)?;
    let repo = parse_repo(name)?;
    let digest = parse_digest(digest)?;
    if !store.delete_blob(&repo, &digest).await? {
        return Err(RegistryError::BlobUnknown.into());
    }
    build(
        builder(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0),
        Body::empty(),
    )
}
