//! Serving a blob over HTTP with `Range` support, for the in-process servers of the read-only
//! backends' tests.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Answers a `GET` (or, with `head`, a `HEAD`) for `blob`: the whole of it, or the one range
/// `bytes=A-B` asks for (`206`, clamped to the end; `416` when it starts past the end).
pub fn range(blob: &Bytes, headers: &HeaderMap, head: bool) -> Response {
    let size = blob.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size),
        Some((a, _)) if a >= size => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response();
        }
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, (b + 1).min(size)),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, end - start);
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    let body = if head {
        axum::body::Body::empty()
    } else {
        axum::body::Body::from(blob.slice(start as usize..end as usize))
    };
    builder.body(body).unwrap()
}
