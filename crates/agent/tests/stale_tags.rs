//! Tags under a build-index outage: the agent resolves a tag through a real build-index and
//! pulls the manifest through the swarm (real origin and tracker); the build-index then stops,
//! and the agent keeps serving the tag it knows (stale-if-error) while a tag it never resolved
//! answers `503 UNAVAILABLE`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use shoal_agent::{Agent, AgentConfig};
use shoal_build_index::{BuildIndex, BuildIndexConfig};
use shoal_build_index_api::BuildIndexClient;
use shoal_cluster::ClusterConfig;
use shoal_core::{Algorithm, Digest, RepoName, Tag};
use shoal_origin::{Origin, OriginConfig};
use shoal_testkit::metric;
use shoal_tracker::{Tracker, TrackerConfig};
use shoal_transport::TransportConfig;
use tokio_util::sync::CancellationToken;

const REPO: &str = "outage/app";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_tags_survive_a_build_index_outage() {
    let dir = tempfile::tempdir().unwrap();
    let root = CancellationToken::new();

    let mut origin_config = OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("origin"),
        ..OriginConfig::default()
    };
    origin_config.p2p.transport = TransportConfig::localhost();
    let origin = Origin::bind(origin_config).await.unwrap();
    let origin_url = format!("http://{}", origin.local_addr());
    tokio::spawn(origin.run(root.child_token()));

    let tracker = Tracker::bind(TrackerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        origins: ClusterConfig::with_members([origin_url.clone()]),
        ..TrackerConfig::default()
    })
    .await
    .unwrap();
    let tracker_addr = tracker.local_addr().to_string();
    tokio::spawn(tracker.run(root.child_token()));

    let index = BuildIndex::bind(BuildIndexConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("build-index"),
        origins: ClusterConfig::with_members([origin_url.clone()]),
        ..BuildIndexConfig::default()
    })
    .await
    .unwrap();
    let index_url = format!("http://{}", index.local_addr());
    let index_token = root.child_token();
    let index_running = tokio::spawn(index.run(index_token.clone()));

    let agent = Agent::bind(AgentConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("agent"),
        trackers: ClusterConfig::with_members([tracker_addr]),
        build_index: Some(index_url.clone()),
        // Every pull asks the build-index: only the outage rule keeps the tag alive.
        tag_ttl: Duration::ZERO,
        tag_stale_if_error: Duration::from_secs(3600),
        transport: TransportConfig::localhost(),
        ..AgentConfig::default()
    })
    .await
    .unwrap();
    let agent_url = format!("http://{}", agent.local_addr());
    tokio::spawn(agent.run(root.child_token()));

    // A manifest (as a blob at the origin) and two tags naming it.
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\
         \"application/vnd.oci.empty.v1+json\",\"digest\":\"{}\",\"size\":2}},\"layers\":[]}}",
        Digest::compute(Algorithm::Sha256, b"{}")
    );
    let digest = Digest::compute(Algorithm::Sha256, manifest.as_bytes());
    let http = reqwest::Client::new();
    let resp = http
        .put(format!(
            "{origin_url}/v1/namespace/{}/blobs/{digest}",
            REPO.replace('/', "%2F")
        ))
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let client = BuildIndexClient::new(&index_url).unwrap();
    let repo: RepoName = REPO.parse().unwrap();
    for tag in ["v1", "never-pulled"] {
        let tag: Tag = tag.parse().unwrap();
        client.put_tag(&repo, &tag, &digest).await.unwrap();
    }

    let pull = |tag: &'static str| {
        let (http, url) = (
            http.clone(),
            format!("{agent_url}/v2/{REPO}/manifests/{tag}"),
        );
        async move {
            http.get(url)
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = pull("v1").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );

    // The build-index goes away.
    index_token.cancel();
    tokio::time::timeout(Duration::from_secs(30), index_running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let resp = pull("v1").await;
    assert_eq!(
        resp.status(),
        200,
        "a known tag is served during the outage"
    );
    assert_eq!(
        resp.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );
    assert_eq!(resp.bytes().await.unwrap(), manifest.as_bytes());
    assert_eq!(
        metric(&agent_url, "shoal_agent_registry_stale_tags_served_total").await,
        1.0
    );
    let resp = pull("never-pulled").await;
    assert_eq!(
        resp.status(),
        503,
        "a tag this agent never resolved cannot be served"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    root.cancel();
}
