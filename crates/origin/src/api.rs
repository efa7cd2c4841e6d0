//! The origin's HTTP API (`/v1/…`), documented in `docs/PROTOCOL.md`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shoal_core::{Digest, RepoName};
use shoal_origin_client::{BlobEntry, BlobPage, REPLICA_HEADER};

use crate::blobs::{self, Arrival, Blobs, blocking};
use crate::error::ApiError;
use crate::sink::{self, SinkError};
use crate::uploads::{UploadId, Uploads};
use shoal_runtime::range::{blob_headers, blob_response, parse_content_range};

/// The `Docker-Content-Digest` header, kept for compatibility with registry tooling.
const DIGEST_HEADER: &str = "docker-content-digest";
/// The upload id header on upload responses.
const UPLOAD_ID_HEADER: &str = "upload-id";
/// Bytes an upload has received.
const UPLOAD_OFFSET_HEADER: &str = "shoal-upload-offset";
/// Content type of encoded metainfo.
pub const METAINFO_CONTENT_TYPE: &str = "application/vnd.shoal.metainfo.v2";

/// The metainfo response header naming the origin's peer id (64 hex characters).
pub const PEER_ID_HEADER: &str = "shoal-peer-id";
/// The metainfo response header naming the origin's peer address (`ip:port`).
pub const PEER_ADDR_HEADER: &str = "shoal-peer-addr";

/// Blobs per listing page unless the client asks for fewer.
const DEFAULT_LIST_LIMIT: usize = 1000;
/// The most blobs a listing page returns.
const MAX_LIST_LIMIT: usize = 10_000;

/// Where this origin seeds, when it does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAdvert {
    pub(crate) peer_id: shoal_core::PeerId,
    pub(crate) addr: std::net::SocketAddr,
}

/// State shared by the handlers.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) blobs: Arc<Blobs>,
    pub(crate) uploads: Uploads,
    pub(crate) peer: Option<PeerAdvert>,
}

type S = State<Arc<AppState>>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/blobs", get(list_blobs))
        .route("/v1/blobs/{digest}", get(blob_entry))
        .route("/v1/namespace/{ns}/uploads", post(start_upload))
        .route(
            "/v1/namespace/{ns}/uploads/{id}",
            get(upload_status)
                .patch(upload_chunk)
                .put(upload_commit)
                .delete(upload_cancel),
        )
        .route(
            "/v1/namespace/{ns}/blobs/{digest}",
            get(blob_get)
                .head(blob_head)
                .put(blob_put)
                .delete(blob_delete),
        )
        .route(
            "/v1/namespace/{ns}/blobs/{digest}/metainfo",
            get(metainfo_get),
        )
        .with_state(state)
}

/// Whether a sibling origin sent the request (`Shoal-Replica: 1`).
fn is_replica(headers: &HeaderMap) -> bool {
    headers.get(REPLICA_HEADER).is_some_and(|v| v == "1")
}

fn arrival(headers: &HeaderMap) -> Arrival {
    if is_replica(headers) {
        Arrival::Replica
    } else {
        Arrival::Upload
    }
}

fn namespace(raw: &str) -> Result<RepoName, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::NameInvalid(format!("{e}")))
}

fn digest(raw: &str) -> Result<Digest, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::DigestInvalid(format!("{e}")))
}

/// Percent-encodes a namespace as one path segment.
fn ns_segment(ns: &RepoName) -> String {
    ns.as_str().replace('/', "%2F")
}

fn upload_location(ns: &RepoName, id: UploadId) -> String {
    format!("/v1/namespace/{}/uploads/{id}", ns_segment(ns))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `Range: 0-<last>` as upload responses report progress (`0-0` when empty, as registries do).
fn upload_progress_headers(resp: &mut Response, ns: &RepoName, id: UploadId, size: u64) {
    let h = resp.headers_mut();
    h.insert(header::LOCATION, header_value(&upload_location(ns, id)));
    h.insert(UPLOAD_ID_HEADER, header_value(&id.to_string()));
    h.insert(
        header::RANGE,
        header_value(&format!("0-{}", size.saturating_sub(1))),
    );
    // `Range: 0-0` is ambiguous (0 or 1 byte); this is not.
    h.insert(UPLOAD_OFFSET_HEADER, header_value(&size.to_string()));
}

async fn start_upload(State(st): S, Path(ns): Path<String>) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    st.blobs.check_writable(&ns)?;
    let temp = st.blobs.create_temp().await?;
    let id = st.uploads.start(ns.clone(), temp);
    let mut resp = StatusCode::ACCEPTED.into_response();
    upload_progress_headers(&mut resp, &ns, id, 0);
    Ok(resp)
}

async fn upload_status(
    State(st): S,
    Path((ns, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let id: UploadId = id.parse()?;
    let size = st.uploads.size(id, &ns)?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    upload_progress_headers(&mut resp, &ns, id, size);
    Ok(resp)
}

async fn upload_chunk(
    State(st): S,
    Path((ns, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let id: UploadId = id.parse()?;
    let range = match headers.get(header::CONTENT_RANGE) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(parse_content_range)
                .ok_or_else(|| ApiError::UploadInvalid("malformed Content-Range".into()))?,
        ),
    };
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut checkout = st.uploads.checkout(id, &ns)?;
    let start = checkout.temp.len();
    if let Some(r) = &range {
        let problem = if r.start != start {
            Some(ApiError::ChunkOutOfOrder {
                expected: start,
                got: r.start,
            })
        } else if content_length.is_some_and(|n| n != r.end - r.start) {
            Some(ApiError::UploadInvalid(
                "Content-Range and Content-Length disagree".into(),
            ))
        } else {
            None
        };
        if let Some(e) = problem {
            st.uploads.checkin(checkout);
            return Err(e);
        }
    }
    let (temp, result) = sink::append(checkout.temp, body.into_data_stream()).await;
    let Some(temp) = temp else {
        st.uploads.remove(id);
        return Err(result.err().map_or_else(
            || ApiError::Internal("upload lost".into()),
            |e| ApiError::Internal(e.to_string()),
        ));
    };
    let size = temp.len();
    checkout.temp = temp;
    st.uploads.checkin(checkout);
    if let Err(SinkError::Source(e)) = result {
        return Err(ApiError::UploadInvalid(format!("reading chunk: {e}")));
    }
    if let Some(r) = range
        && size - start != r.end - r.start
    {
        return Err(ApiError::UploadInvalid(format!(
            "Content-Range announced {} bytes, body had {}",
            r.end - r.start,
            size - start
        )));
    }
    let mut resp = StatusCode::ACCEPTED.into_response();
    upload_progress_headers(&mut resp, &ns, id, size);
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct CommitQuery {
    digest: Option<String>,
}

async fn upload_commit(
    State(st): S,
    Path((ns, id)): Path<(String, String)>,
    Query(q): Query<CommitQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let id: UploadId = id.parse()?;
    let raw = q
        .digest
        .ok_or_else(|| ApiError::DigestInvalid("the digest query parameter is required".into()))?;
    let d = digest(&raw)?;
    let checkout = st.uploads.checkout(id, &ns)?;
    let (temp, result) = sink::append(checkout.temp, body.into_data_stream()).await;
    // Whatever happens next, this upload is over: the commit consumes its data.
    st.uploads.remove(id);
    let temp = match (temp, result) {
        (Some(temp), Ok(())) => temp,
        (_, Err(e @ SinkError::Source(_))) => {
            return Err(ApiError::UploadInvalid(format!("reading final chunk: {e}")));
        }
        (_, Err(e)) => return Err(ApiError::Internal(e.to_string())),
        (None, Ok(())) => return Err(ApiError::Internal("upload lost".into())),
    };
    let size = st
        .blobs
        .commit(std::slice::from_ref(&ns), temp, &d, arrival(&headers))
        .await?;
    tracing::info!(namespace = %ns, digest = %d, size, "upload committed");
    Ok(created(&ns, &d))
}

async fn upload_cancel(
    State(st): S,
    Path((ns, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ns = namespace(&ns)?;
    st.uploads.cancel(id.parse()?, &ns)?;
    Ok(StatusCode::NO_CONTENT)
}

fn created(ns: &RepoName, d: &Digest) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v1/namespace/{}/blobs/{d}", ns_segment(ns))),
    );
    h.insert(DIGEST_HEADER, header_value(&d.to_string()));
    resp
}

async fn blob_put(
    State(st): S,
    Path((ns, d)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let d = digest(&d)?;
    st.blobs.check_writable(&ns)?;
    let temp = st.blobs.create_temp().await?;
    let (temp, result) = sink::append(temp, body.into_data_stream()).await;
    let temp = match (temp, result) {
        (Some(temp), Ok(())) => temp,
        (_, Err(e @ SinkError::Source(_))) => {
            return Err(ApiError::UploadInvalid(format!("reading body: {e}")));
        }
        (_, Err(e)) => return Err(ApiError::Internal(e.to_string())),
        (None, Ok(())) => return Err(ApiError::Internal("upload lost".into())),
    };
    let arrival = arrival(&headers);
    let size = st
        .blobs
        .commit(std::slice::from_ref(&ns), temp, &d, arrival)
        .await?;
    tracing::info!(namespace = %ns, digest = %d, size, ?arrival, "blob uploaded");
    Ok(created(&ns, &d))
}

async fn blob_delete(
    State(st): S,
    Path((ns, d)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ns = namespace(&ns)?;
    let d = digest(&d)?;
    if st.blobs.delete(&ns, &d).await? {
        tracing::info!(namespace = %ns, digest = %d, "blob deleted");
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::BlobUnknown)
    }
}

async fn blob_head(
    State(st): S,
    Path((ns, d)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let d = digest(&d)?;
    let size = if is_replica(&headers) {
        st.blobs
            .replica_stat(&ns, &d)
            .await?
            .ok_or(ApiError::BlobUnknown)?
    } else {
        st.blobs.stat(&ns, &d).await?
    };
    let mut resp = StatusCode::OK.into_response();
    blob_headers(resp.headers_mut(), &d.to_string(), size);
    Ok(resp)
}

async fn blob_get(
    State(st): S,
    Path((ns, d)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let d = digest(&d)?;
    let reader = if is_replica(&headers) {
        st.blobs.open_cached(&d).await?
    } else {
        st.blobs.open(&ns, &d).await?
    };
    let size = reader.size();
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    blob_response(range_header, size, &d.to_string(), |range| {
        Body::from_stream(blobs::chunks(reader, range))
    })
    .map_err(|_| ApiError::RangeInvalid { size })
}

async fn metainfo_get(
    State(st): S,
    Path((ns, d)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let d = digest(&d)?;
    let meta = st.blobs.metainfo(&ns, &d).await?;
    let mut resp = (
        [(header::CONTENT_TYPE, METAINFO_CONTENT_TYPE)],
        meta.encode(),
    )
        .into_response();
    // Tell the tracker where this origin seeds the torrent.
    if let Some(peer) = &st.peer {
        let h = resp.headers_mut();
        h.insert(PEER_ID_HEADER, header_value(&peer.peer_id.to_string()));
        h.insert(PEER_ADDR_HEADER, header_value(&peer.addr.to_string()));
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/blobs/{digest}`: a cached blob's size and the namespaces it was stored under
/// (the proxy's mounts without `from`); 404 `BLOB_UNKNOWN` if it is not in the cache.
async fn blob_entry(State(st): S, Path(raw): Path<String>) -> Result<Json<BlobEntry>, ApiError> {
    let digest = digest(&raw)?;
    let store = st.blobs.store.clone();
    let entry = blocking(move || -> Result<Option<BlobEntry>, ApiError> {
        let Some(size) = store.stat(&digest) else {
            return Ok(None);
        };
        Ok(Some(BlobEntry {
            digest,
            size,
            namespaces: store.namespaces(&digest)?,
        }))
    })
    .await??;
    entry.map(Json).ok_or(ApiError::BlobUnknown)
}

/// `GET /v1/blobs?after=&limit=`: a page of the local cache, for sibling origins' repair.
async fn list_blobs(State(st): S, Query(q): Query<ListQuery>) -> Result<Json<BlobPage>, ApiError> {
    let after = q.after.as_deref().map(digest).transpose()?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let store = st.blobs.store.clone();
    let page = blocking(move || -> Result<BlobPage, ApiError> {
        let listed = store.list(after.as_ref(), limit);
        let next = (listed.len() == limit)
            .then(|| listed.last().map(|(d, _)| *d))
            .flatten();
        let mut blobs = Vec::with_capacity(listed.len());
        for (digest, size) in listed {
            blobs.push(BlobEntry {
                digest,
                size,
                namespaces: store.namespaces(&digest)?,
            });
        }
        Ok(BlobPage { blobs, next })
    })
    .await??;
    Ok(Json(page))
}
