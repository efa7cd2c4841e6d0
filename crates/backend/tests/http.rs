//! The read-only HTTP backend against an in-process file server with range support.

#![allow(clippy::unwrap_used)]

mod conformance;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
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
    conformance::serve::range(&blob, &headers, method == Method::HEAD)
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
    conformance::assert_not_found(&backend, &ObjectKey::new("a/c").unwrap()).await;
    conformance::assert_read_only(&backend, &k).await;
}
