//! Durable write-back against a real S3-compatible server (moto): uploads are acknowledged
//! while S3 is down, retried, and land once it is back, including across an origin restart.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TestOrigin, data, ns};
use shoal_backend::{Backend, ObjectKey, ObjectStoreBackend, S3Config};
use shoal_core::Digest;
use shoal_origin::OriginConfig;
use shoal_testkit::Moto;

const BUCKET: &str = "shoal-blobs";

fn origin_config(data_dir: &std::path::Path, port: u16) -> OriginConfig {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{}"
[p2p.transport]
listen = "127.0.0.1:0"
[writeback]
initial_backoff = "50ms"
max_backoff = "300ms"
[[backends]]
namespace = ".*"
kind = "s3"
bucket = "{BUCKET}"
region = "us-east-1"
endpoint = "http://127.0.0.1:{port}"
path_style = true
allow_http = true
access_key_id = "testing"
secret_access_key = "testing"
prefix = "shoal"
timeout_secs = 5
max_retries = 0
"#,
        data_dir.display()
    );
    shoal_runtime::config::parse(&text).unwrap()
}

fn s3(port: u16) -> ObjectStoreBackend {
    ObjectStoreBackend::s3(&S3Config {
        bucket: BUCKET.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        path_style: true,
        allow_http: true,
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        session_token: None,
        prefix: Some("shoal".into()),
        timeout_secs: 5,
        max_retries: 0,
    })
    .unwrap()
}

async fn in_s3(port: u16, namespace: &str, d: &Digest) -> Option<u64> {
    s3(port)
        .stat(&ns(namespace), &ObjectKey::for_blob(d))
        .await
        .ok()
        .map(|m| m.size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writeback_rides_out_s3_outages_and_origin_restarts() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket(BUCKET).await;
    let port = moto.port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = origin_config(dir.path(), port);
    let origin = TestOrigin::start(cfg.clone()).await;

    // Healthy: an upload is written back.
    let a = data(6 * 1024 * 1024, 40); // above the multipart threshold
    let da = origin.put_blob("library/app", &a).await;
    origin
        .wait_metric(
            "shoal_origin_writeback_queue_depth",
            "first write-back",
            |v| v == 0.0,
        )
        .await;
    assert_eq!(in_s3(port, "library/app", &da).await, Some(a.len() as u64));

    // S3 goes down: the upload is still acknowledged, write-back retries.
    moto.stop();
    let b = data(300_000, 41);
    let db = origin.put_blob("library/app", &b).await;
    origin
        .wait_metric(
            "shoal_origin_writeback_failures_total",
            "retries while down",
            |v| v >= 2.0,
        )
        .await;
    assert_eq!(
        origin.metric("shoal_origin_writeback_queue_depth").await,
        1.0
    );
    // S3 comes back (empty: moto keeps nothing): the pending blob lands.
    let moto = Moto::start_on(port).await.unwrap();
    moto.create_bucket(BUCKET).await;
    origin
        .wait_metric(
            "shoal_origin_writeback_queue_depth",
            "drained after S3 restart",
            |v| v == 0.0,
        )
        .await;
    assert_eq!(in_s3(port, "library/app", &db).await, Some(b.len() as u64));

    // S3 down again, and the origin restarts before S3 returns.
    moto.stop();
    let c = data(500_000, 42);
    let dc = origin.put_blob("library/app", &c).await;
    origin
        .wait_metric(
            "shoal_origin_writeback_failures_total",
            "retries while down",
            |v| v >= 3.0,
        )
        .await;
    origin.stop().await;
    let moto = Moto::start_on(port).await.unwrap();
    moto.create_bucket(BUCKET).await;
    let origin = TestOrigin::start(cfg).await;
    origin
        .wait_metric(
            "shoal_origin_writeback_queue_depth",
            "drained after origin restart",
            |v| v == 0.0,
        )
        .await;
    assert_eq!(in_s3(port, "library/app", &dc).await, Some(c.len() as u64));
    // The blob acknowledged during the outage is still served.
    assert_eq!(
        origin
            .get_blob("library/app", &dc)
            .await
            .bytes()
            .await
            .unwrap(),
        c
    );
    origin.stop().await;
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_is_fetched_from_s3() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket(BUCKET).await;
    let blob = data(9 * 1024 * 1024, 43);
    let d = common::sha256(&blob);
    let body = futures_util::stream::iter(
        blob.chunks(1 << 20)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    s3(moto.port())
        .put(
            &ns("x/y"),
            &ObjectKey::for_blob(&d),
            blob.len() as u64,
            Box::pin(body),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(origin_config(dir.path(), moto.port())).await;
    let resp = origin.get_blob("x/y", &d).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), blob);
    assert_eq!(
        origin.metric("shoal_origin_backend_fetches_total").await,
        1.0
    );
    origin.stop().await;
}
