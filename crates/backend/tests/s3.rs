//! The S3 backend against a real S3-compatible server: moto's standalone server, started per
//! test on a free port. Set `SHOAL_SKIP_S3=1` to skip when `moto_server` is not installed
//! (`pip install 'moto[server]'`); without it a missing server fails the test.

#![allow(clippy::unwrap_used)]

mod conformance;

use bytes::Bytes;
use conformance::{body, key, ns};
use shoal_backend::{Backend, BackendError, ObjectStoreBackend, S3Config};

use std::time::{Duration, Instant};

use shoal_testkit::Moto;

async fn start_moto() -> Option<Moto> {
    Moto::start().await
}

async fn create_bucket(moto: &Moto, bucket: &str) {
    moto.create_bucket(bucket).await;
}

fn config(port: u16, bucket: &str, prefix: Option<&str>) -> S3Config {
    S3Config {
        bucket: bucket.to_string(),
        region: Some("us-east-1".into()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        path_style: true,
        allow_http: true,
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        session_token: None,
        prefix: prefix.map(str::to_string),
        timeout_secs: 30,
        max_retries: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_moto() {
    let Some(moto) = start_moto().await else {
        return;
    };
    create_bucket(&moto, "shoal").await;

    let backend = ObjectStoreBackend::s3(&config(moto.port(), "shoal", Some("root/dir"))).unwrap();
    conformance::run_all(&backend, 12 << 20).await;

    // Keys are relative to the configured prefix: the same objects seen from the bucket's top
    // level carry it, and a sibling prefix does not see them.
    let top = ObjectStoreBackend::s3(&config(moto.port(), "shoal", None)).unwrap();
    let k = key("prefixed", "obj");
    backend
        .put(&ns(), &k, 2, body(&Bytes::from_static(b"hi"), 1))
        .await
        .unwrap();
    assert_eq!(
        conformance::list_all(&top, "root/dir/prefixed/", 10).await,
        ["root/dir/prefixed/obj"]
    );
    assert_eq!(
        conformance::list_all(&backend, "prefixed/", 10).await,
        ["prefixed/obj"]
    );
    let sibling = ObjectStoreBackend::s3(&config(moto.port(), "shoal", Some("root/di"))).unwrap();
    assert!(conformance::list_all(&sibling, "", 10).await.is_empty());
    assert!(matches!(
        sibling.stat(&ns(), &k).await,
        Err(BackendError::NotFound)
    ));

    // The refused multipart uploads of the conformance run were aborted, not left behind.
    assert_eq!(in_progress_uploads(moto.port(), "shoal").await, 0);
}

/// Multipart uploads in progress in `bucket`, from S3's ListMultipartUploads.
async fn in_progress_uploads(port: u16, bucket: &str) -> usize {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/{bucket}?uploads"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.text().await.unwrap().matches("<Upload>").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_multipart_upload_is_aborted() {
    let Some(moto) = start_moto().await else {
        return;
    };
    create_bucket(&moto, "cancel").await;
    let backend = ObjectStoreBackend::s3(&config(moto.port(), "cancel", None)).unwrap();

    // A body that delivers 9 MiB (more than one part) and then stalls forever.
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
    let first = conformance::data(9 << 20, 8);
    let mut sent_tx = Some(sent_tx);
    let stalled = futures_util::StreamExt::chain(
        body(&first, 64 << 10),
        futures_util::stream::poll_fn(move |_| {
            if let Some(tx) = sent_tx.take() {
                let _ = tx.send(());
            }
            std::task::Poll::Pending
        }),
    );
    let put = tokio::spawn(async move {
        backend
            .put(&ns(), &key("x", "cancelled"), 20 << 20, Box::pin(stalled))
            .await
    });
    sent_rx.await.unwrap();
    assert_eq!(in_progress_uploads(moto.port(), "cancel").await, 1);
    put.abort();
    assert!(put.await.unwrap_err().is_cancelled());

    let deadline = Instant::now() + Duration::from_secs(20);
    while in_progress_uploads(moto.port(), "cancel").await != 0 {
        assert!(
            Instant::now() < deadline,
            "cancelled upload was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_not_transient() {
    let Some(moto) = start_moto().await else {
        return;
    };
    let backend = ObjectStoreBackend::s3(&config(moto.port(), "no-such-bucket", None)).unwrap();
    let err = backend
        .put(&ns(), &key("x", "y"), 1, body(&Bytes::from_static(b"x"), 1))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn connection_refused_is_transient() {
    // Nothing listens on a port we just released.
    let port = shoal_testkit::free_port();
    let backend = ObjectStoreBackend::s3(&config(port, "shoal", None)).unwrap();
    let small = conformance::data(1000, 1);
    let err = backend
        .put(&ns(), &key("x", "small"), 1000, body(&small, 100))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let large = conformance::data(6 << 20, 1);
    let err = backend
        .put(&ns(), &key("x", "large"), 6 << 20, body(&large, 64 << 10))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = backend.stat(&ns(), &key("x", "small")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = backend
        .get(&ns(), &key("x", "small"), Some(0..10))
        .await
        .err()
        .unwrap();
    assert!(err.is_transient(), "{err:?}");
}
