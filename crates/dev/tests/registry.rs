//! The registry end to end over HTTP, without Docker: push an image to the proxy with the OCI
//! API, pull it from the agent (tags through the build-index, bytes through the swarm).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, OCI_MANIFEST, get_manifest, push_image};
use reqwest::{Client, StatusCode};
use serde_json::json;
use shoal_core::{Algorithm, Digest};
use shoal_dev::DevConfig;
use shoal_transport::BandwidthConfig;

async fn resolve(http: &Client, url: String) -> Option<String> {
    let resp = http
        .head(url)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    (resp.status() == StatusCode::OK).then(|| {
        resp.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_to_proxy_pull_from_agent() {
    let c = Cluster::start(DevConfig::new("")).await;
    let http = Client::new();
    let layer = shoal_testkit::pseudo_random_bytes(9 << 20, 11);
    let manifest_digest = push_image(&http, &c, "team/app", "v1", &layer).await;
    let layer_digest = Digest::compute(Algorithm::Sha256, &layer);

    // The agent resolves the tag through the build-index and serves the manifest.
    let body = get_manifest(&http, &c.agent("team/app/manifests/v1"), &manifest_digest).await;
    assert_eq!(Digest::compute(Algorithm::Sha256, &body), manifest_digest);

    // A HEAD answers the size without downloading anything.
    let agent_base = format!("http://{}", c.addrs.agent);
    let before = shoal_testkit::metric(&agent_base, "shoal_agent_p2p_downloaded_bytes").await;
    let resp = http
        .head(c.agent(&format!("team/app/blobs/{layer_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-length"],
        layer.len().to_string().as_str()
    );
    let after = shoal_testkit::metric(&agent_base, "shoal_agent_p2p_downloaded_bytes").await;
    assert_eq!(before, after, "a HEAD must not download");

    // A ranged GET, then the whole layer, through the swarm.
    let resp = http
        .get(c.agent(&format!("team/app/blobs/{layer_digest}")))
        .header("range", "bytes=5000000-5000999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        &resp.bytes().await.unwrap()[..],
        &layer[5_000_000..5_001_000]
    );
    let resp = http
        .get(c.agent(&format!("team/app/blobs/{layer_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), layer);

    // Unknown content is a spec 404; pushes to the agent are refused.
    let resp = http
        .get(c.agent("team/app/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = http
        .post(c.agent("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

    // Tags list through both.
    for url in [c.proxy("team/app/tags/list"), c.agent("team/app/tags/list")] {
        let v: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["tags"], json!(["v1"]));
    }

    // Re-pushing the tag to another image takes effect on the agent within its tag TTL (5 s).
    let other = shoal_testkit::pseudo_random_bytes(1000, 12);
    let new_digest = push_image(&http, &c, "team/app", "v1", &other).await;
    assert_ne!(new_digest, manifest_digest);
    assert_eq!(
        resolve(&http, c.proxy("team/app/manifests/v1")).await,
        Some(new_digest.to_string())
    );
    let ttl = Duration::from_secs(5);
    let pushed = Instant::now();
    let (http2, url, want) = (
        http.clone(),
        c.agent("team/app/manifests/v1"),
        new_digest.to_string(),
    );
    shoal_runtime::wait::wait_until(
        ttl + Duration::from_secs(2),
        "agent sees the re-pushed tag",
        || {
            let (http, url, want) = (http2.clone(), url.clone(), want.clone());
            async move { resolve(&http, url).await == Some(want) }
        },
    )
    .await
    .unwrap();
    eprintln!("agent saw the re-pushed tag after {:?}", pushed.elapsed());
    c.stop().await;
}

/// The agent streams a layer while it downloads: with the agent's ingress capped, the first
/// bytes reach the client long before the last piece arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_streams_before_the_download_completes() {
    let c = Cluster::start(DevConfig {
        agent_bandwidth: BandwidthConfig {
            ingress_bytes_per_sec: Some(8 << 20),
            egress_bytes_per_sec: None,
        },
        ..DevConfig::new("")
    })
    .await;
    let http = Client::new();
    let layer = shoal_testkit::pseudo_random_bytes(40 << 20, 21);
    push_image(&http, &c, "stream", "v1", &layer).await;
    let layer_digest = Digest::compute(Algorithm::Sha256, &layer);
    let agent_base = format!("http://{}", c.addrs.agent);

    let mut resp = http
        .get(c.agent(&format!("stream/blobs/{layer_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let first = resp.chunk().await.unwrap().unwrap();
    let received_then =
        shoal_testkit::metric(&agent_base, "shoal_agent_p2p_downloaded_bytes").await;
    assert!(
        received_then < layer.len() as f64,
        "first bytes came only after the whole layer ({received_then} bytes received)"
    );
    let mut body = first.to_vec();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body.len(), layer.len());
    assert!(body == layer, "streamed content differs");
    c.stop().await;
}

/// A mount without `from` (an anonymous mount): the proxy finds a namespace that holds the
/// blob at its owning origin and mounts it from there; the blob is then pullable from the new
/// repository at both the proxy and the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_mount_through_the_proxy() {
    let c = Cluster::start(DevConfig::new("unused")).await;
    let http = Client::new();
    let data = b"a layer pushed to one repository and mounted into another".repeat(1000);
    let digest = common::push_blob(&http, &c, "mount/source", &data).await;

    let resp = http
        .post(c.proxy(&format!("mount/target/blobs/uploads/?mount={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["location"],
        format!("/v2/mount/target/blobs/{digest}").as_str()
    );
    for url in [
        c.proxy(&format!("mount/target/blobs/{digest}")),
        c.agent(&format!("mount/target/blobs/{digest}")),
    ] {
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        assert_eq!(resp.bytes().await.unwrap(), data, "{url}");
    }
    // A blob no repository has: an upload session, as before.
    let missing = Digest::compute(Algorithm::Sha256, b"nowhere");
    let resp = http
        .post(c.proxy(&format!("mount/target/blobs/uploads/?mount={missing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    c.stop().await;
}
