//! The agent's local HTTP API: `GET|HEAD /v1/namespaces/{ns}/blobs/{digest}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use shoal_core::{Digest, RepoName};
use shoal_runtime::range::{RangeRequest, parse_range};

use crate::downloads::Downloads;
use crate::error::AgentError;

type S = State<Arc<Downloads>>;

pub(crate) fn router(downloads: Arc<Downloads>) -> Router {
    Router::new()
        .route(
            "/v1/namespaces/{ns}/blobs/{digest}",
            get(blob_get).head(blob_head),
        )
        .with_state(downloads)
}

fn parse(ns: &str, digest: &str) -> Result<(RepoName, Digest), AgentError> {
    let ns = ns
        .parse()
        .map_err(|e| AgentError::BadRequest(format!("{e}")))?;
    let digest = digest
        .parse()
        .map_err(|e| AgentError::BadRequest(format!("{e}")))?;
    Ok((ns, digest))
}

fn headers(resp: &mut Response, d: &Digest, len: u64) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&d.to_string()) {
        h.insert("docker-content-digest", v);
    }
}

/// Answers from the cache or the blob's metainfo: a HEAD never starts a download.
async fn blob_head(
    State(downloads): S,
    Path((ns, d)): Path<(String, String)>,
) -> Result<Response, AgentError> {
    let (ns, d) = parse(&ns, &d)?;
    let size = downloads.stat(&ns, &d).await?;
    let mut resp = StatusCode::OK.into_response();
    headers(&mut resp, &d, size);
    Ok(resp)
}

async fn blob_get(
    State(downloads): S,
    Path((ns, d)): Path<(String, String)>,
    request_headers: HeaderMap,
) -> Result<Response, AgentError> {
    let (ns, d) = parse(&ns, &d)?;
    downloads.fetch(&ns, &d).await?;
    let store = downloads.store.clone();
    let reader = tokio::task::spawn_blocking(move || store.open_blob(&d))
        .await
        .map_err(|e| AgentError::Internal(e.to_string()))?
        .map_err(|e| AgentError::Internal(format!("opening blob: {e}")))?;
    let size = reader.size();
    let range = request_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, range) = match parse_range(range, size).map_err(|_| AgentError::Range(size))? {
        RangeRequest::Full => (StatusCode::OK, 0..size),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
    };
    let body = Body::from_stream(reader.into_chunks(range.clone()).boxed());
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    headers(&mut resp, &d, range.end - range.start);
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
    {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}
