//! Nothing acknowledged is lost: eviction never drops blobs awaiting write-back, write-back
//! retries through a backend outage, and the queue survives an origin restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;

use common::{Faulty, TestOrigin, config, count_files, data, ns};
use reqwest::StatusCode;
use shoal_backend::ObjectKey;

#[tokio::test]
async fn eviction_respects_watermarks_and_pending_writebacks() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Faulty::filesystem(dir.path().join("backend"));
    backend.fail_puts.store(true, Ordering::SeqCst);
    let mut cfg = config(&dir.path().join("origin"));
    cfg.store.capacity_bytes = 1_000_000;
    cfg.store.high_watermark = 0.9;
    cfg.store.low_watermark = 0.5;
    let origin = TestOrigin::start_with(cfg, backend.router()).await;

    // 4 × 300 kB = 1.2 MB, over capacity: every upload still succeeds, and nothing is evicted
    // because nothing is written back yet.
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| data(300_000, 20 + i)).collect();
    let mut digests = Vec::new();
    for b in &blobs {
        digests.push(origin.put_blob("a", b).await);
    }
    assert_eq!(origin.metric("shoal_origin_store_bytes").await, 1_200_000.0);
    assert_eq!(
        origin.metric("shoal_origin_writeback_queue_depth").await,
        4.0
    );
    origin
        .wait_metric("shoal_origin_writeback_failures_total", "retries", |v| {
            v >= 8.0
        })
        .await;
    assert_eq!(origin.metric("shoal_origin_store_evictions").await, 0.0);

    // The backend comes back: the queue drains, then eviction brings usage under the low
    // watermark (0.5 MB): three of the four blobs go, least recently used first.
    backend.fail_puts.store(false, Ordering::SeqCst);
    origin
        .wait_metric("shoal_origin_writeback_queue_depth", "queue drained", |v| {
            v == 0.0
        })
        .await;
    origin
        .wait_metric(
            "shoal_origin_store_bytes",
            "evicted to low watermark",
            |v| v <= 500_000.0,
        )
        .await;
    assert_eq!(origin.metric("shoal_origin_store_evictions").await, 3.0);
    for d in &digests {
        let key = ObjectKey::for_blob(d);
        assert!(
            backend.inner.stat(&ns("a"), &key).await.is_ok(),
            "{d} written back"
        );
    }
    // Evicted blobs are still served: fetched back from the backend.
    for (d, b) in digests.iter().zip(&blobs) {
        let resp = origin.get_blob("a", d).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(&resp.bytes().await.unwrap()[..], &b[..]);
    }
    origin.stop().await;
}

#[tokio::test]
async fn writeback_queue_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let backend_dir = dir.path().join("backend");
    let cfg = config(&dir.path().join("origin"));
    let down = Faulty::filesystem(backend_dir.clone());
    down.fail_puts.store(true, Ordering::SeqCst);
    let origin = TestOrigin::start_with(cfg.clone(), down.router()).await;
    let blob = data(200_000, 30);
    let d = origin.put_blob("team/app", &blob).await;
    origin
        .wait_metric(
            "shoal_origin_writeback_failures_total",
            "a failed attempt",
            |v| v >= 1.0,
        )
        .await;
    origin.stop().await;
    assert_eq!(count_files(&dir.path().join("origin/writeback")), 1);

    // Restart with the backend healthy: the task resumes and completes.
    let up = Faulty::filesystem(backend_dir);
    let origin = TestOrigin::start_with(cfg, up.router()).await;
    origin
        .wait_metric("shoal_origin_writeback_queue_depth", "queue drained", |v| {
            v == 0.0
        })
        .await;
    let key = ObjectKey::for_blob(&d);
    assert_eq!(
        up.inner.stat(&ns("team/app"), &key).await.unwrap().size,
        200_000
    );
    assert_eq!(count_files(&dir.path().join("origin/writeback")), 0);
    origin.stop().await;
}

#[tokio::test]
async fn task_for_a_blob_that_never_landed_is_dropped_on_start() {
    // A crash after the write-back task was recorded but before the blob was published (the
    // client was never acknowledged) leaves a task without a blob.
    let dir = tempfile::tempdir().unwrap();
    let wb = dir.path().join("origin/writeback");
    std::fs::create_dir_all(&wb).unwrap();
    let d = common::sha256(b"never published");
    std::fs::write(
        wb.join("0000.task"),
        format!(r#"{{"namespace":"a","digest":"{d}"}}"#),
    )
    .unwrap();
    std::fs::write(wb.join("garbage.task"), "not json").unwrap();
    std::fs::write(wb.join("half-written.tmp"), "{").unwrap();
    let backend = Faulty::filesystem(dir.path().join("backend"));
    let origin = TestOrigin::start_with(config(&dir.path().join("origin")), backend.router()).await;
    origin
        .wait_metric("shoal_origin_writeback_queue_depth", "queue empty", |v| {
            v == 0.0
        })
        .await;
    assert_eq!(count_files(&wb), 0);
    assert_eq!(backend.puts.load(Ordering::SeqCst), 0);
    origin.stop().await;
}
