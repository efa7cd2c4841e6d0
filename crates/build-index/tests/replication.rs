//! Replication between two zones, each with an in-process origin and build-index: zone A
//! replicates `demo/.*` to zone B.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{TestIndex, TestOrigin, index_config, push_image, repo, rule, tag, wait_replicated};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn a_tag_is_replicated_with_every_manifest_and_blob_it_needs() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let origin_a = TestOrigin::start(dirs[0].path(), any_port()).await;
    let origin_b = TestOrigin::start(dirs[1].path(), any_port()).await;
    let index_b = TestIndex::start(index_config(dirs[2].path())).await;
    let mut config_a = index_config(dirs[3].path());
    config_a.origins = shoal_cluster::ClusterConfig::with_members([origin_a.base.clone()]);
    config_a.replication = vec![rule("^demo/.*", &index_b.base, &[&origin_b.base])];
    let index_a = TestIndex::start(config_a).await;

    let r = repo("demo/app");
    let image = push_image(&origin_a, &r, 1).await;
    let t = tag("v1");
    let rec = index_a.client.put_tag(&r, &t, &image.index).await.unwrap();
    wait_replicated(&index_b, &origin_b, &r, &t, &image.index, &image).await;
    // The generation travels with the tag.
    assert_eq!(index_b.client.get_tag(&r, &t).await.unwrap(), Some(rec));
    // Records derived from the manifests: the index's media type and size.
    let index_record = index_b
        .client
        .get_manifest(&r, &image.index)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index_record.descriptor.media_type, common::OCI_INDEX);
    index_a
        .wait_metric("shoal_build_index_replication_queue_depth", |v| v == 0.0)
        .await;
    assert_eq!(index_a.queued_files(), 0);
    let copied = index_a
        .metric("shoal_build_index_replication_blobs_copied_total")
        .await;
    assert_eq!(copied, image.all().len() as f64);

    // Re-pushing the tag to another image moves it in zone B too (last writer wins), and
    // content B already has is not copied again.
    let image2 = push_image(&origin_a, &r, 2).await;
    let rec2 = index_a.client.put_tag(&r, &t, &image2.index).await.unwrap();
    assert!(rec2.generation > rec.generation);
    wait_replicated(&index_b, &origin_b, &r, &t, &image2.index, &image2).await;
    // A tag pointing straight at an image manifest works as well; its blobs are all there.
    let t_child = tag("amd64");
    index_a
        .client
        .put_tag(&r, &t_child, &image2.children[0])
        .await
        .unwrap();
    wait_replicated(
        &index_b,
        &origin_b,
        &r,
        &t_child,
        &image2.children[0],
        &image2,
    )
    .await;
    index_a
        .wait_metric("shoal_build_index_replication_delivered_total", |v| {
            v >= 3.0
        })
        .await;
    let copied2 = index_a
        .metric("shoal_build_index_replication_blobs_copied_total")
        .await;
    assert_eq!(copied2, copied + image2.all().len() as f64);

    // Replicating again is harmless: a duplicate delivery of an older generation is ignored.
    index_b.client.replicate_tag(&r, &t, &rec).await.unwrap();
    assert_eq!(index_b.client.get_tag(&r, &t).await.unwrap(), Some(rec2));

    // Repositories outside the rule stay local.
    let other = repo("other/app");
    index_a
        .client
        .put_tag(&other, &t, &image.index)
        .await
        .unwrap();
    assert_eq!(index_a.queued_files(), 0);
    assert_eq!(index_b.client.get_tag(&other, &t).await.unwrap(), None);
    // Zone B has no rules: what it received is not sent anywhere.
    assert_eq!(index_b.queued_files(), 0);

    index_a.stop().await;
    index_b.stop().await;
    origin_a.stop().await;
    origin_b.stop().await;
}

#[tokio::test]
async fn a_remote_outage_delays_but_does_not_lose_replication_across_a_restart() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    // Zone B exists (we learn its addresses), then goes down.
    let origin_b = TestOrigin::start(dirs[1].path(), any_port()).await;
    let index_b = TestIndex::start(index_config(dirs[2].path())).await;
    let (origin_b_addr, index_b_addr) = (origin_b.addr, index_b.addr);
    let (origin_b_url, index_b_url) = (origin_b.base.clone(), index_b.base.clone());
    origin_b.stop().await;
    index_b.stop().await;

    let origin_a = TestOrigin::start(dirs[0].path(), any_port()).await;
    let mut config_a = index_config(dirs[3].path());
    config_a.origins = shoal_cluster::ClusterConfig::with_members([origin_a.base.clone()]);
    config_a.replication = vec![rule("demo/.*", &index_b_url, &[&origin_b_url])];
    let index_a = TestIndex::start(config_a.clone()).await;

    let r = repo("demo/app");
    let image = push_image(&origin_a, &r, 7).await;
    let t = tag("stable");
    // Acknowledged while zone B is down: the task is on disk before the answer.
    let rec = index_a.client.put_tag(&r, &t, &image.index).await.unwrap();
    assert_eq!(index_a.queued_files(), 1);
    index_a
        .wait_metric("shoal_build_index_replication_failures_total", |v| v >= 2.0)
        .await;
    assert_eq!(
        index_a
            .metric("shoal_build_index_replication_queue_depth")
            .await,
        1.0
    );

    // Build-index A restarts mid-queue: the task is still there and resumes.
    index_a.stop().await;
    assert_eq!(common::queued_files(dirs[3].path()), 1);
    let index_a = TestIndex::start(config_a).await;
    assert_eq!(
        index_a
            .metric("shoal_build_index_replication_queue_depth")
            .await,
        1.0
    );
    index_a
        .wait_metric("shoal_build_index_replication_failures_total", |v| v >= 1.0)
        .await;

    // Zone B comes back where A expects it; the replication completes.
    let origin_b = TestOrigin::start(dirs[1].path(), origin_b_addr).await;
    let index_b = TestIndex::start({
        let mut c = index_config(dirs[2].path());
        c.listen = index_b_addr;
        c
    })
    .await;
    wait_replicated(&index_b, &origin_b, &r, &t, &image.index, &image).await;
    assert_eq!(index_b.client.get_tag(&r, &t).await.unwrap(), Some(rec));
    index_a
        .wait_metric("shoal_build_index_replication_queue_depth", |v| v == 0.0)
        .await;
    assert_eq!(index_a.queued_files(), 0);

    index_a.stop().await;
    index_b.stop().await;
    origin_a.stop().await;
    origin_b.stop().await;
}

#[tokio::test]
async fn pushes_during_an_outage_coalesce_to_the_latest_generation() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let origin_b = TestOrigin::start(dirs[1].path(), any_port()).await;
    let index_b = TestIndex::start(index_config(dirs[2].path())).await;
    let (origin_b_addr, index_b_addr) = (origin_b.addr, index_b.addr);
    let (origin_b_url, index_b_url) = (origin_b.base.clone(), index_b.base.clone());
    origin_b.stop().await;
    index_b.stop().await;

    let origin_a = TestOrigin::start(dirs[0].path(), any_port()).await;
    let mut config_a = index_config(dirs[3].path());
    config_a.origins = shoal_cluster::ClusterConfig::with_members([origin_a.base.clone()]);
    config_a.replication = vec![rule("demo/.*", &index_b_url, &[&origin_b_url])];
    let index_a = TestIndex::start(config_a).await;
    let r = repo("demo/app");
    let t = tag("latest");
    let mut last = None;
    let mut images = Vec::new();
    for seed in 20..23 {
        let image = push_image(&origin_a, &r, seed).await;
        last = Some(index_a.client.put_tag(&r, &t, &image.index).await.unwrap());
        images.push(image);
    }
    let last = last.unwrap();
    // One task per (remote, repository, tag), at the newest generation (an older file goes
    // as soon as its failing delivery, if one was running, ends).
    shoal_runtime::wait::wait_until(common::WAIT, "tasks coalesce", || async {
        index_a.queued_files() == 1
    })
    .await
    .unwrap();
    assert_eq!(
        index_a
            .metric("shoal_build_index_replication_queue_depth")
            .await,
        1.0
    );

    let origin_b = TestOrigin::start(dirs[1].path(), origin_b_addr).await;
    let index_b = TestIndex::start({
        let mut c = index_config(dirs[2].path());
        c.listen = index_b_addr;
        c
    })
    .await;
    let newest = images.last().unwrap();
    wait_replicated(&index_b, &origin_b, &r, &t, &newest.index, newest).await;
    assert_eq!(index_b.client.get_tag(&r, &t).await.unwrap(), Some(last));
    index_a
        .wait_metric("shoal_build_index_replication_queue_depth", |v| v == 0.0)
        .await;
    assert_eq!(index_a.queued_files(), 0);

    index_a.stop().await;
    index_b.stop().await;
    origin_a.stop().await;
    origin_b.stop().await;
}
