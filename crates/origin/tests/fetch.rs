//! Backend misses: the origin fetches a blob once, however many clients ask, then serves it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Faulty, TestOrigin, config, data, ns, sha256};
use futures_util::StreamExt;
use reqwest::StatusCode;
use shoal_backend::{Backend, ObjectKey};

/// Stores a blob directly in the wrapped backend (not counted as a put through the origin).
async fn put_in_backend(backend: &Faulty, namespace: &str, blob: &[u8]) -> shoal_core::Digest {
    let d = sha256(blob);
    let body = futures_util::stream::iter(vec![Ok(bytes::Bytes::copy_from_slice(blob))]).boxed();
    backend
        .inner
        .put(
            &ns(namespace),
            &ObjectKey::for_blob(&d),
            blob.len() as u64,
            body,
        )
        .await
        .unwrap();
    d
}

#[tokio::test]
async fn miss_fetches_from_backend_once_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Faulty::filesystem(dir.path().join("backend"));
    let origin = TestOrigin::start_with(config(&dir.path().join("origin")), backend.router()).await;
    let blob = data(5 * 1024 * 1024 + 7, 10);
    let d = put_in_backend(backend.as_ref(), "library/x", &blob).await;

    // HEAD answers from the backend without downloading.
    let resp = reqwest::Client::new()
        .head(origin.blob_url("library/x", &d))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-length"],
        blob.len().to_string().as_str()
    );
    assert_eq!(
        backend.gets.load(Ordering::SeqCst),
        0,
        "HEAD must not fetch"
    );

    // Ten concurrent GETs while the backend is held: one fetch, ten identical answers.
    backend.hold_gets();
    let mut clients = Vec::new();
    for _ in 0..10 {
        let url = origin.blob_url("library/x", &d);
        clients.push(tokio::spawn(async move {
            let resp = reqwest::get(url).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.bytes().await.unwrap()
        }));
    }
    shoal_runtime::wait::wait_until(std::time::Duration::from_secs(10), "fetch started", || {
        let n = backend.gets.load(Ordering::SeqCst);
        async move { n >= 1 }
    })
    .await
    .unwrap();
    backend.release_gets();
    for c in clients {
        assert_eq!(c.await.unwrap(), blob);
    }
    assert_eq!(
        backend.gets.load(Ordering::SeqCst),
        1,
        "one backend fetch for ten clients"
    );
    assert_eq!(
        origin.metric("shoal_origin_backend_fetches_total").await,
        1.0
    );

    // Now cached: served without the backend, ranges too.
    let resp = reqwest::Client::new()
        .get(origin.blob_url("library/x", &d))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap(), blob[10..20]);
    assert_eq!(backend.gets.load(Ordering::SeqCst), 1);

    // Metainfo is generated after the fetch.
    let resp = reqwest::get(format!("{}/metainfo", origin.blob_url("library/x", &d)))
        .await
        .unwrap();
    let meta = shoal_core::MetaInfo::decode(&resp.bytes().await.unwrap()).unwrap();
    // 5 MiB: the largest power of two giving ≥ 512 pieces is below the 256 KiB floor.
    assert_eq!(meta.layout().piece_len(), 256 << 10);
    assert_eq!(meta.layout().piece_count(), 21);
    // A fetched blob is not written back again.
    assert_eq!(backend.puts.load(Ordering::SeqCst), 0);
    origin.stop().await;
}

#[tokio::test]
async fn metainfo_request_fetches_a_missing_blob() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Faulty::filesystem(dir.path().join("backend"));
    let origin = TestOrigin::start_with(config(&dir.path().join("origin")), backend.router()).await;
    let blob = data(100_000, 11);
    let d = put_in_backend(backend.as_ref(), "a", &blob).await;
    let resp = reqwest::get(format!("{}/metainfo", origin.blob_url("a", &d)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let meta = shoal_core::MetaInfo::decode(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(meta.digest(), d);
    assert_eq!(backend.gets.load(Ordering::SeqCst), 1);
    origin.stop().await;
}

#[tokio::test]
async fn corrupt_backend_content_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Faulty::filesystem(dir.path().join("backend"));
    let origin = TestOrigin::start_with(config(&dir.path().join("origin")), backend.router()).await;
    // Store content under a digest it does not have.
    let claimed = sha256(b"the real content");
    let body = futures_util::stream::iter(vec![Ok(bytes::Bytes::from_static(b"tampered"))]).boxed();
    backend
        .inner
        .put(&ns("a"), &ObjectKey::for_blob(&claimed), 8, body)
        .await
        .unwrap();
    let resp = origin.get_blob("a", &claimed).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(resp.text().await.unwrap().contains("corrupt"));
    assert_eq!(
        common::count_files(&dir.path().join("origin/cache/blobs")),
        0
    );
    assert_eq!(
        origin
            .metric("shoal_origin_backend_fetch_failures_total")
            .await,
        1.0
    );
    origin.stop().await;
}

#[tokio::test]
async fn unknown_blob_is_404_and_namespaces_route_to_their_backend() {
    let dir = tempfile::tempdir().unwrap();
    common::init_logs();
    let a = Faulty::filesystem(dir.path().join("a"));
    let b = Faulty::filesystem(dir.path().join("b"));
    let mut router = shoal_backend::BackendRouter::default();
    router.push(
        shoal_backend::BackendRouter::anchored("team-a/.*").unwrap(),
        Arc::clone(&a) as Arc<dyn Backend>,
    );
    router.push(
        shoal_backend::BackendRouter::anchored(".*").unwrap(),
        Arc::clone(&b) as Arc<dyn Backend>,
    );
    let origin = TestOrigin::start_with(config(&dir.path().join("origin")), router).await;
    let blob = data(1000, 12);
    let d = put_in_backend(a.as_ref(), "team-a/app", &blob).await;
    assert_eq!(
        origin.get_blob("team-b/app", &d).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.gets.load(Ordering::SeqCst),
        0,
        "team-b is routed to b only"
    );
    assert_eq!(
        origin
            .get_blob("team-a/app", &d)
            .await
            .bytes()
            .await
            .unwrap(),
        blob
    );
    // An upload to team-b is written back to b, not a.
    let d2 = origin.put_blob("team-b/app", b"for b").await;
    origin
        .wait_metric(
            "shoal_origin_writeback_completed_total",
            "write-back",
            |v| v == 1.0,
        )
        .await;
    assert!(
        b.inner
            .stat(&ns("team-b/app"), &ObjectKey::for_blob(&d2))
            .await
            .is_ok()
    );
    assert!(
        a.inner
            .stat(&ns("team-b/app"), &ObjectKey::for_blob(&d2))
            .await
            .is_err()
    );
    origin.stop().await;
}

#[tokio::test]
async fn replica_requests_see_only_the_cache_and_fetches_record_the_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Faulty::filesystem(dir.path().join("backend"));
    let origin = TestOrigin::start_with(config(&dir.path().join("origin")), backend.router()).await;
    let blob = data(70_000, 11);
    let d = put_in_backend(backend.as_ref(), "library/x", &blob).await;
    let http = reqwest::Client::new();
    let replica = |req: reqwest::RequestBuilder| req.header("shoal-replica", "1").send();

    // A sibling origin asking is answered from the cache only: no backend fetch.
    let url = origin.blob_url("library/x", &d);
    assert_eq!(replica(http.head(&url)).await.unwrap().status(), 404);
    assert_eq!(replica(http.get(&url)).await.unwrap().status(), 404);
    assert_eq!(backend.gets.load(Ordering::SeqCst), 0);

    // A client's GET fetches it, recording the namespace it came from.
    assert_eq!(
        origin
            .get_blob("library/x", &d)
            .await
            .bytes()
            .await
            .unwrap(),
        blob
    );
    assert_eq!(replica(http.head(&url)).await.unwrap().status(), 200);
    let resp = replica(http.get(&url)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), blob);
    let other = origin.blob_url("other", &d);
    assert_eq!(
        replica(http.head(&other)).await.unwrap().status(),
        404,
        "not cached as a blob of `other`"
    );
    let listing: serde_json::Value = http
        .get(format!("{}/v1/blobs", origin.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listing,
        serde_json::json!({
            "blobs": [{"digest": d.to_string(), "size": 70_000, "namespaces": ["library/x"]}],
            "next": null
        })
    );
    origin.stop().await;
}
