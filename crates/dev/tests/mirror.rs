//! The agent as a containerd mirror: `?ns=<registry>` pulls are answered by Shoal first and,
//! when Shoal has no such image, streamed from that registry's allow-listed upstream (here
//! Debian's reference registry, distribution 2.8). Unknown `ns` values never reach an
//! upstream.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Cluster, OCI_MANIFEST, Registry, get_manifest, push_image};
use reqwest::StatusCode;
use shoal_agent::config::MirrorConfig;
use shoal_core::{Algorithm, Digest};
use shoal_dev::DevConfig;
use shoal_testkit::ReferenceRegistry;

const UPSTREAM: &str = "registry.test";

fn mirror(url: String) -> MirrorConfig {
    MirrorConfig {
        registry: UPSTREAM.into(),
        url: Some(url),
        default: false,
        username: None,
        password_file: None,
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ns_pulls_fall_back_to_the_allow_listed_upstream() {
    let Some(upstream) = ReferenceRegistry::start().await else {
        return;
    };
    let c = Cluster::start(DevConfig {
        agent_mirrors: vec![mirror(upstream.base_url())],
        ..DevConfig::new("unused")
    })
    .await;
    let http = reqwest::Client::new();
    let remote = Registry(format!("127.0.0.1:{}", upstream.port()));

    // The same tag in Shoal and upstream: Shoal answers.
    let in_shoal = push_image(&http, &c, "demo/app", "1", b"shoal layer").await;
    let upstream_same_tag = push_image(&http, &remote, "demo/app", "1", b"upstream layer").await;
    assert_ne!(in_shoal, upstream_same_tag);
    let url = c.agent(&format!("demo/app/manifests/1?ns={UPSTREAM}"));
    get_manifest(&http, &url, &in_shoal).await;

    // Only upstream has it: manifest by tag and by digest, then the layer, streamed through.
    let layer: Vec<u8> = shoal_testkit::pseudo_random_bytes(3 << 20, 7);
    let only_upstream = push_image(&http, &remote, "library/tool", "2", &layer).await;
    let url = c.agent(&format!("library/tool/manifests/2?ns={UPSTREAM}"));
    let body = get_manifest(&http, &url, &only_upstream).await;
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(
        layer_digest,
        Digest::compute(Algorithm::Sha256, &layer).to_string()
    );
    let url = c.agent(&format!(
        "library/tool/manifests/{only_upstream}?ns={UPSTREAM}"
    ));
    get_manifest(&http, &url, &only_upstream).await;
    let blob_url = c.agent(&format!("library/tool/blobs/{layer_digest}?ns={UPSTREAM}"));
    let head = http.head(&blob_url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        layer.len().to_string().as_str()
    );
    let got = http.get(&blob_url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), layer.as_slice());

    // No such image upstream either: Shoal's own 404.
    let missing = http
        .get(c.agent(&format!("library/tool/manifests/nope?ns={UPSTREAM}")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");

    // A registry that is not allow-listed, or no ns without a default mirror: Shoal only.
    for query in ["?ns=127.0.0.1", "?ns=evil.example", ""] {
        let resp = http
            .get(c.agent(&format!("library/tool/manifests/2{query}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{query:?}");
    }
    let fetches = shoal_testkit::metric(
        &format!("http://{}", c.addrs.agent),
        "shoal_agent_mirror_upstream_fetches_total",
    )
    .await;
    // The tag, the digest, the blob HEAD and GET, the missing tag.
    assert_eq!(fetches, 5.0);
    c.stop().await;
}
