//! The agent's local HTTP API: `GET|HEAD /v1/namespaces/{ns}/blobs/{digest}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shoal_core::{Digest, RepoName};
use shoal_runtime::range::{blob_headers, blob_response};

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

/// Answers from the cache or the blob's metainfo: a HEAD never starts a download.
async fn blob_head(
    State(downloads): S,
    Path((ns, d)): Path<(String, String)>,
) -> Result<Response, AgentError> {
    let (ns, d) = parse(&ns, &d)?;
    let size = downloads.stat(&ns, &d).await?;
    let mut resp = StatusCode::OK.into_response();
    blob_headers(resp.headers_mut(), &d.to_string(), size);
    Ok(resp)
}

async fn blob_get(
    State(downloads): S,
    Path((ns, d)): Path<(String, String)>,
    request_headers: HeaderMap,
) -> Result<Response, AgentError> {
    let (ns, d) = parse(&ns, &d)?;
    // Streams from the cache, or from the download as its leading pieces are verified.
    let (size, read) = downloads.open(&ns, &d).await?;
    let range = request_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    blob_response(range, size, &d.to_string(), |range| {
        Body::from_stream(read(range))
    })
    .map_err(|_| AgentError::Range(size))
}
