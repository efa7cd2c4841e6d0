//! The read-only HTTP backend against an in-process file server with range support.

#![allow(clippy::unwrap_used)]

mod conformance;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use conformance::{collect, ns};
use shoal_backend::{Backend, BackendError, HttpConfig, ObjectKey, ObjectStoreBackend};

async fn file(
    State(blob): State<Arc<Bytes>>,
    method: Method,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    if path != "mirror/objects/a/b" {
        return StatusCode::NOT_FOUND.into_response();
    }
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
    let body = if method == Method::HEAD {
        axum::body::Body::empty()
    } else {
        axum::body::Body::from(blob.slice(start as usize..end as usize))
    };
    builder.body(body).unwrap()
}

#[tokio::test]
async fn reads_ranges_and_refuses_writes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let blob = Arc::new(conformance::data(50_000, 3));
    let app = axum::Router::new()
        .route("/{*path}", any(file))
        .with_state(blob.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let backend = ObjectStoreBackend::http(&HttpConfig {
        url: base,
        prefix: Some("/mirror/objects/".into()),
        timeout_secs: 10,
        max_retries: 0,
    })
    .unwrap();
    let k = ObjectKey::new("a/b").unwrap();
    assert_eq!(backend.stat(&ns(), &k).await.unwrap().size, 50_000);
    assert_eq!(
        collect(backend.get(&ns(), &k, None).await.unwrap()).await,
        **blob
    );
    let got = collect(backend.get(&ns(), &k, Some(100..20_000)).await.unwrap()).await;
    assert_eq!(got, &blob[100..20_000]);
    for r in [49_000..50_001, 60_000..60_001] {
        assert!(
            matches!(
                backend.get(&ns(), &k, Some(r.clone())).await,
                Err(BackendError::InvalidRange { size: 50_000, .. })
            ),
            "{r:?}"
        );
    }
    let missing = ObjectKey::new("a/c").unwrap();
    assert!(matches!(
        backend.stat(&ns(), &missing).await,
        Err(BackendError::NotFound)
    ));
    assert!(matches!(
        backend.get(&ns(), &missing, None).await,
        Err(BackendError::NotFound)
    ));
    let put = backend
        .put(
            &ns(),
            &k,
            1,
            conformance::body(&Bytes::from_static(b"x"), 1),
        )
        .await;
    assert!(matches!(put, Err(BackendError::ReadOnly)));
    assert!(matches!(
        backend.delete(&ns(), &k).await,
        Err(BackendError::ReadOnly)
    ));
}
