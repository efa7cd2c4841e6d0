//! Manifest GET latency at the agent (warm and cold) and, for reference, at distribution.
//!
//! A small image (config + 4 KiB layer) is pushed to the proxy with the OCI API, then:
//! - **warm**: after one priming GET (tag cached, manifest in the agent's store), N sequential
//!   GETs by tag, then N by digest;
//! - **cold tag**: N tags pushed beforehand, all naming the primed manifest, each requested
//!   once: every GET resolves its tag at the build-index, the manifest comes from the local
//!   store;
//! - **cold manifest by digest**: N distinct manifests (differing in an annotation) pushed
//!   beforehand by digest, each requested once: the agent downloads each through the swarm;
//! - **cold tag + cold manifest**: N more distinct manifests pushed by tag, each requested once
//!   by tag: a build-index lookup plus a swarm download, as on the first pull of a new image.
//!
//! Every request is sequential on one keep-alive HTTP/1.1 connection and carries Docker's
//! `Accept` headers; its time runs from sending to the last body byte.

use std::time::Duration;

use anyhow::Context;
use futures_util::{StreamExt as _, TryStreamExt as _};

use crate::oci::{self, Registry};
use crate::procs::{Distribution, ShoalDev};

const REPO: &str = "bench/manifests";
/// Pushes in flight while preparing the cold sets.
const PUSH_CONCURRENCY: usize = 8;

/// One row of the latency table.
#[derive(Debug)]
pub(crate) struct Latency {
    pub(crate) label: &'static str,
    pub(crate) samples: Vec<Duration>,
    /// The p99 target, in ms.
    pub(crate) target_p99_ms: Option<f64>,
}

/// Latency rows, in table order.
#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) warm_tag: Latency,
    pub(crate) warm_digest: Latency,
    pub(crate) cold_tag: Latency,
    pub(crate) cold_digest: Latency,
    pub(crate) cold_both: Latency,
    pub(crate) distribution: Latency,
    /// Seconds spent pushing the 3 × cold sets to the proxy.
    pub(crate) push_secs: f64,
}

impl Results {
    pub(crate) fn rows(&self) -> [&Latency; 6] {
        [
            &self.warm_tag,
            &self.warm_digest,
            &self.cold_tag,
            &self.cold_digest,
            &self.cold_both,
            &self.distribution,
        ]
    }
}

/// Runs the manifest phase: `warm` requests per warm row, `cold` per cold row.
pub(crate) async fn run(
    http: &reqwest::Client,
    shoal: &mut ShoalDev,
    dist: &mut Distribution,
    warm: u64,
    cold: u64,
) -> anyhow::Result<Results> {
    let proxy = Registry::new(http, &shoal.proxy);
    let agent = Registry::new(http, &shoal.agent);
    let reference = Registry::new(http, &dist.addr);

    // The image: a config and one small layer, in both registries.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let layer: Vec<u8> = (0..4096u32)
        .map(|i| (u128::from(i).wrapping_mul(seed | 1) >> 7) as u8)
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [oci::sha256(&layer)]},
        "config": {},
    })
    .to_string()
    .into_bytes();
    let mut blobs = Vec::new();
    for r in [&proxy, &reference] {
        let c = r.push_blob(REPO, &config).await?;
        let l = r.push_blob(REPO, &layer).await?;
        blobs.push((c, l));
    }
    let (config_d, layer_d) = blobs.swap_remove(0);
    let make =
        |n: Option<u64>| oci::manifest((&config_d, config.len()), (&layer_d, layer.len()), n);
    let base = make(None);
    let base_digest = proxy.push_manifest(REPO, "warm", &base).await?;
    reference.push_manifest(REPO, "warm", &base).await?;

    // The cold sets, pushed before any is requested.
    let started = std::time::Instant::now();
    eprintln!("pushing {} manifests and tags to the proxy", 3 * cold);
    let pushes = futures_util::stream::iter(0..cold)
        .map(|i| {
            let proxy = &proxy;
            let base = &base;
            async move {
                // Concurrent pushes of one manifest under many tags: each re-uploads the same
                // blob to the origin at once.
                proxy.push_manifest(REPO, &format!("t{i}"), base).await?;
                let m = make(Some(i));
                let d = oci::sha256(&m);
                proxy.push_manifest(REPO, &d, &m).await?;
                let m2 = make(Some(cold + i));
                let d2 = proxy.push_manifest(REPO, &format!("m{i}"), &m2).await?;
                anyhow::Ok((d, d2))
            }
        })
        .buffered(PUSH_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .context("pushing the cold sets")?;
    let push_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "pushed in {push_secs:.1}s ({:.0} pushes/s)",
        3.0 * cold as f64 / push_secs
    );
    // Let the origin finish the background work the pushes started (metainfo).
    tokio::time::sleep(Duration::from_secs(2)).await;
    shoal.check_running()?;

    let accept = oci::docker_accept();
    let timed = |r: &Registry, reference: String, want: String| {
        let (r, accept) = (r.clone(), accept.clone());
        async move { r.timed_get_manifest(&accept, REPO, &reference, &want).await }
    };

    // Warm: prime, then N by tag (within the 5 s tag TTL) and N by digest.
    let prime = timed(&agent, "warm".into(), base_digest.clone()).await?;
    eprintln!("priming GET (tag lookup + swarm download): {prime:.2?}");
    let mut warm_tag = Vec::new();
    for _ in 0..warm {
        warm_tag.push(timed(&agent, "warm".into(), base_digest.clone()).await?);
    }
    let mut warm_digest = Vec::new();
    for _ in 0..warm {
        warm_digest.push(timed(&agent, base_digest.clone(), base_digest.clone()).await?);
    }

    // Cold.
    let mut cold_tag = Vec::new();
    for i in 0..cold {
        cold_tag.push(timed(&agent, format!("t{i}"), base_digest.clone()).await?);
    }
    let mut cold_digest = Vec::new();
    for (d, _) in &pushes {
        cold_digest.push(timed(&agent, d.clone(), d.clone()).await?);
    }
    let mut cold_both = Vec::new();
    for (i, (_, d2)) in pushes.iter().enumerate() {
        cold_both.push(timed(&agent, format!("m{i}"), d2.clone()).await?);
    }
    shoal.check_running()?;

    // distribution, warm by tag.
    timed(&reference, "warm".into(), base_digest.clone()).await?;
    let mut distribution = Vec::new();
    for _ in 0..warm {
        distribution.push(timed(&reference, "warm".into(), base_digest.clone()).await?);
    }
    dist.check_running()?;

    Ok(Results {
        warm_tag: Latency {
            label: "Shoal agent, warm, by tag",
            samples: warm_tag,
            target_p99_ms: Some(2.0),
        },
        warm_digest: Latency {
            label: "Shoal agent, warm, by digest",
            samples: warm_digest,
            target_p99_ms: Some(2.0),
        },
        cold_tag: Latency {
            label: "Shoal agent, cold tag (build-index), manifest cached",
            samples: cold_tag,
            target_p99_ms: Some(20.0),
        },
        cold_digest: Latency {
            label: "Shoal agent, cold manifest by digest (swarm)",
            samples: cold_digest,
            target_p99_ms: None,
        },
        cold_both: Latency {
            label: "Shoal agent, cold tag + cold manifest (build-index + swarm)",
            samples: cold_both,
            target_p99_ms: None,
        },
        distribution: Latency {
            label: "distribution, warm, by tag (reference)",
            samples: distribution,
            target_p99_ms: None,
        },
        push_secs,
    })
}
