//! GetMetaInfo against a real in-process origin: fetch, cache, failover, single flight,
//! not found, validation.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    Proxy, blob, client, dead_addr, metric, start_origin, start_tracker, tracker_config, upload,
};
use shoal_core::MetaInfo;
use shoal_runtime::wait::wait_until;
use shoal_tracker::TrackerConfig;
use shoal_tracker::proto::MetaInfoRequest;
use tonic::Code;

fn request(ns: &str, d: &shoal_core::Digest) -> MetaInfoRequest {
    MetaInfoRequest {
        namespace: ns.into(),
        digest: d.to_string(),
    }
}

#[tokio::test]
async fn fetches_from_the_origin_then_serves_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin(dir.path()).await;
    let (data, d) = blob(300_000, 1);
    upload(&origin, "library/app", &data, &d).await;
    let proxy = Proxy::start(origin.base(), true).await;
    let tracker = start_tracker(TrackerConfig {
        origins: shoal_cluster::ClusterConfig::with_members([proxy.running.base()]),
        ..tracker_config()
    })
    .await;
    let mut c = client(&tracker).await;

    let bytes = c
        .get_meta_info(request("library/app", &d))
        .await
        .unwrap()
        .into_inner()
        .metainfo;
    let meta = MetaInfo::decode(&bytes).unwrap();
    assert_eq!(meta.digest(), d);
    assert_eq!(
        meta.layout().piece_count(),
        5,
        "300 000 bytes in 64 KiB pieces"
    );
    assert_eq!(proxy.hits(), 1);

    // Cached: the origin is not asked again, and the bytes are identical.
    let again = c
        .get_meta_info(request("library/app", &d))
        .await
        .unwrap()
        .into_inner()
        .metainfo;
    assert_eq!(again, bytes);
    assert_eq!(proxy.hits(), 1);
    assert_eq!(
        metric(&tracker, "shoal_tracker_metainfo_cache_hits_total").await,
        1
    );
    assert_eq!(metric(&tracker, "shoal_tracker_metainfo_cached").await, 1);

    // Still served with the origin gone.
    origin.stop().await;
    let third = c.get_meta_info(request("library/app", &d)).await.unwrap();
    assert_eq!(third.into_inner().metainfo, bytes);
    tracker.stop().await;
    proxy.running.stop().await;
}

#[tokio::test]
async fn fails_over_from_a_dead_origin() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin(dir.path()).await;
    let (data, d) = blob(1000, 2);
    upload(&origin, "demo", &data, &d).await;
    let tracker = start_tracker(TrackerConfig {
        origins: shoal_cluster::ClusterConfig::with_members([
            format!("http://{}", dead_addr().await),
            origin.base(),
        ]),
        ..tracker_config()
    })
    .await;
    let mut c = client(&tracker).await;
    let bytes = c
        .get_meta_info(request("demo", &d))
        .await
        .unwrap()
        .into_inner()
        .metainfo;
    assert_eq!(MetaInfo::decode(&bytes).unwrap().digest(), d);
    // Whichever origin the ring ranks first for this digest, the dead one is asked once and
    // fails: on the lookup itself (then the live one answers), or when the tracker asks the
    // blob's other owners for their peer addresses in the background.
    // Every request but the live origin's answer failed.
    wait_until(
        Duration::from_secs(5),
        "the dead origin was tried",
        || async {
            let failures = metric(&tracker, "shoal_tracker_metainfo_origin_failures_total").await;
            let requests = metric(&tracker, "shoal_tracker_metainfo_origin_requests_total").await;
            failures >= 1 && requests == failures + 1
        },
    )
    .await
    .unwrap();
    tracker.stop().await;
    origin.stop().await;
}

#[tokio::test]
async fn concurrent_lookups_share_one_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin(dir.path()).await;
    let (data, d) = blob(200_000, 3);
    upload(&origin, "library/app", &data, &d).await;
    // The proxy holds every request until released.
    let proxy = Proxy::start(origin.base(), false).await;
    let tracker = start_tracker(TrackerConfig {
        origins: shoal_cluster::ClusterConfig::with_members([proxy.running.base()]),
        ..tracker_config()
    })
    .await;
    let c = client(&tracker).await;
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let mut c = c.clone();
            tokio::spawn(async move { c.get_meta_info(request("library/app", &d)).await })
        })
        .collect();
    // All 16 lookups missed the cache (and so joined the flight) while the one fetch is held.
    wait_until(Duration::from_secs(10), "all lookups waiting", || async {
        metric(&tracker, "shoal_tracker_metainfo_cache_misses_total").await == 16
    })
    .await
    .unwrap();
    assert_eq!(proxy.hits(), 1);
    proxy.release();
    let mut first = None;
    for call in calls {
        let bytes = call.await.unwrap().unwrap().into_inner().metainfo;
        assert_eq!(first.get_or_insert_with(|| bytes.clone()), &bytes);
    }
    assert_eq!(proxy.hits(), 1, "one origin request for 16 lookups");
    tracker.stop().await;
    proxy.running.stop().await;
    origin.stop().await;
}

#[tokio::test]
async fn unknown_blobs_are_not_found_and_dead_origins_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin(dir.path()).await;
    let (_, d) = blob(100, 4);
    let tracker = start_tracker(TrackerConfig {
        origins: shoal_cluster::ClusterConfig::with_members([origin.base()]),
        ..tracker_config()
    })
    .await;
    let mut c = client(&tracker).await;
    let err = c
        .get_meta_info(request("library/app", &d))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    tracker.stop().await;

    let tracker = start_tracker(TrackerConfig {
        origins: shoal_cluster::ClusterConfig::with_members([format!(
            "http://{}",
            dead_addr().await
        )]),
        ..tracker_config()
    })
    .await;
    let mut c = client(&tracker).await;
    let err = c
        .get_meta_info(request("library/app", &d))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    tracker.stop().await;

    // No origins configured at all.
    let tracker = start_tracker(tracker_config()).await;
    let mut c = client(&tracker).await;
    let err = c
        .get_meta_info(request("library/app", &d))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    tracker.stop().await;
    origin.stop().await;
}

#[tokio::test]
async fn bad_names_and_digests_are_invalid() {
    let tracker = start_tracker(tracker_config()).await;
    let mut c = client(&tracker).await;
    let (_, d) = blob(10, 5);
    for (ns, digest) in [
        ("Library/App", d.to_string()),
        ("", d.to_string()),
        ("../etc", d.to_string()),
        ("library/app", "sha256:abc".to_owned()),
        ("library/app", d.hex()),
        ("library/app", String::new()),
    ] {
        let err = c
            .get_meta_info(MetaInfoRequest {
                namespace: ns.into(),
                digest: digest.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{ns} {digest}: {err}");
    }
    tracker.stop().await;
}
