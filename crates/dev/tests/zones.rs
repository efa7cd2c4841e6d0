//! Replication between zones, end to end: an image index pushed to zone A's proxy while zone
//! B is down is delivered once B comes up, and B's agent pulls every platform of it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Cluster, OCI_MANIFEST, push_image, push_manifest};
use reqwest::{Client, StatusCode};
use serde_json::json;
use shoal_build_index::config::ReplicationRule;
use shoal_core::{Algorithm, Digest};
use shoal_dev::DevConfig;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_pushed_in_zone_a_is_pulled_in_zone_b_after_an_outage() {
    // Zone B's origin and build-index addresses, reserved now; B starts later.
    let b_origin = format!("127.0.0.1:{}", shoal_testkit::free_port())
        .parse()
        .unwrap();
    let b_index = format!("127.0.0.1:{}", shoal_testkit::free_port())
        .parse()
        .unwrap();
    let a = Cluster::start(DevConfig {
        replication: vec![ReplicationRule {
            repository: "zoned/.*".into(),
            build_index: format!("http://{b_index}"),
            origins: vec![format!("http://{b_origin}")],
        }],
        replication_backoff: Duration::from_millis(200),
        ..DevConfig::new("")
    })
    .await;
    let http = Client::new();

    // Two platform images and an index over them, pushed to zone A.
    let layers = [
        shoal_testkit::pseudo_random_bytes(5 << 20, 31),
        shoal_testkit::pseudo_random_bytes(3 << 20, 32),
    ];
    let mut children = Vec::new();
    for (arch, layer) in ["amd64", "arm64"].into_iter().zip(&layers) {
        let d = push_image(&http, &a, "zoned/app", &format!("v1-{arch}"), layer).await;
        let size = http
            .get(a.proxy(&format!("zoned/app/manifests/{d}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len();
        children.push(json!({
            "mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": size,
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).to_string();
    let index_digest = push_manifest(&http, &a, "zoned/app", "v1", OCI_INDEX, &index).await;

    // Zone B is down: deliveries fail and are retried.
    let a_index = format!("http://{}", a.addrs.build_index);
    shoal_runtime::wait::wait_until(Duration::from_secs(20), "a failed delivery", || {
        let a_index = a_index.clone();
        async move {
            shoal_testkit::metric(&a_index, "shoal_build_index_replication_failures_total").await
                >= 1.0
        }
    })
    .await
    .unwrap();

    // Zone B comes up on the addresses zone A replicates to.
    let b = Cluster::start(DevConfig {
        origin_listen: b_origin,
        build_index_listen: b_index,
        ..DevConfig::new("")
    })
    .await;
    let (client, url) = (http.clone(), b.agent("zoned/app/manifests/v1"));
    shoal_runtime::wait::wait_until(Duration::from_secs(30), "zone B resolves the tag", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .head(url)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        }
    })
    .await
    .unwrap();

    // B's agent pulls the index, both platform manifests and every layer, all verified.
    let body = http
        .get(b.agent("zoned/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(body.headers()["content-type"], OCI_INDEX);
    let body = body.bytes().await.unwrap();
    assert_eq!(Digest::compute(Algorithm::Sha256, &body), index_digest);
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for (child, layer) in parsed["manifests"].as_array().unwrap().iter().zip(&layers) {
        let d = child["digest"].as_str().unwrap();
        let m: serde_json::Value = http
            .get(b.agent(&format!("zoned/app/manifests/{d}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let layer_digest = m["layers"][0]["digest"].as_str().unwrap();
        let got = http
            .get(b.agent(&format!("zoned/app/blobs/{layer_digest}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got == layer[..], "layer of {d} differs");
        let config_digest = m["config"]["digest"].as_str().unwrap();
        let resp = http
            .get(b.agent(&format!("zoned/app/blobs/{config_digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    b.stop().await;
    a.stop().await;
}
