//! Tags, generations, tombstones, manifest records, listings and persistence, through the
//! HTTP client against an in-process build-index.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestIndex, index_config, repo, sha256, tag};
use shoal_build_index_api::{ClientError, ManifestRecord, TagRecord};
use shoal_core::Digest;
use shoal_registry::manifest::Descriptor;

fn manifest_record(d: Digest, subject: Option<Digest>) -> ManifestRecord {
    ManifestRecord {
        descriptor: Descriptor {
            media_type: common::OCI_MANIFEST.into(),
            digest: d,
            size: 123,
            artifact_type: Some("application/vnd.example.sbom".into()),
            annotations: None,
            platform: None,
            urls: None,
        },
        subject,
    }
}

/// Two digests ordered by their string form.
fn ordered_pair() -> (Digest, Digest) {
    let (a, b) = (sha256(b"first"), sha256(b"second"));
    if a.to_string() < b.to_string() {
        (a, b)
    } else {
        (b, a)
    }
}

#[tokio::test]
async fn put_get_list_paginate_and_delete_tags() {
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::start(index_config(dir.path())).await;
    let c = &index.client;
    let ubuntu = repo("library/ubuntu");
    let library = repo("library");
    let d = sha256(b"manifest");

    assert_eq!(c.get_tag(&ubuntu, &tag("latest")).await.unwrap(), None);
    assert_eq!(c.list_tags(&ubuntu, None, None).await.unwrap(), None);

    for t in ["v2", "latest", "v1", "Zeta", "v10"] {
        let rec = c.put_tag(&ubuntu, &tag(t), &d).await.unwrap();
        assert_eq!(rec.digest, d);
        assert_eq!(c.get_tag(&ubuntu, &tag(t)).await.unwrap(), Some(rec));
    }
    // A repository whose name is a prefix of another keeps its own tags.
    c.put_tag(&library, &tag("only"), &d).await.unwrap();

    let all = c.list_tags(&ubuntu, None, None).await.unwrap().unwrap();
    let names: Vec<&str> = all.iter().map(|t| t.as_str()).collect();
    assert_eq!(names, ["Zeta", "latest", "v1", "v10", "v2"]);
    let lib = c.list_tags(&library, None, None).await.unwrap().unwrap();
    assert_eq!(lib, vec![tag("only")]);

    // Pagination: n and last.
    let p1 = c.list_tags(&ubuntu, None, Some(2)).await.unwrap().unwrap();
    assert_eq!(p1, vec![tag("Zeta"), tag("latest")]);
    let p2 = c
        .list_tags(&ubuntu, Some("latest"), Some(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p2, vec![tag("v1"), tag("v10")]);
    let p3 = c
        .list_tags(&ubuntu, Some("v10"), Some(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p3, vec![tag("v2")]);
    let p4 = c
        .list_tags(&ubuntu, Some("v2"), None)
        .await
        .unwrap()
        .unwrap();
    assert!(p4.is_empty());

    // Delete: gone from get and list, and the page still fills past the tombstone.
    assert!(c.delete_tag(&ubuntu, &tag("latest")).await.unwrap());
    assert!(!c.delete_tag(&ubuntu, &tag("latest")).await.unwrap());
    assert!(!c.delete_tag(&ubuntu, &tag("never")).await.unwrap());
    assert_eq!(c.get_tag(&ubuntu, &tag("latest")).await.unwrap(), None);
    let p1 = c.list_tags(&ubuntu, None, Some(2)).await.unwrap().unwrap();
    assert_eq!(p1, vec![tag("Zeta"), tag("v1")]);

    // The catalog lists both repositories, in lexical order, paginated.
    let cat = c.catalog(None, None).await.unwrap();
    assert_eq!(cat, vec![library.clone(), ubuntu.clone()]);
    assert_eq!(
        c.catalog(None, Some(1)).await.unwrap(),
        vec![library.clone()]
    );
    assert_eq!(
        c.catalog(Some("library"), Some(5)).await.unwrap(),
        vec![ubuntu.clone()]
    );
    assert!(
        c.catalog(Some("library/ubuntu"), None)
            .await
            .unwrap()
            .is_empty()
    );

    index.stop().await;
}

#[tokio::test]
async fn generations_order_local_and_replicated_writes() {
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::start(index_config(dir.path())).await;
    let c = &index.client;
    let r = repo("demo/app");
    let t = tag("v1");
    let (lo, hi) = ordered_pair();

    // Re-pushing a tag takes effect, with a higher generation.
    let first = c.put_tag(&r, &t, &lo).await.unwrap();
    let second = c.put_tag(&r, &t, &hi).await.unwrap();
    assert!(second.generation > first.generation);
    assert_eq!(c.get_tag(&r, &t).await.unwrap(), Some(second));
    let third = c.put_tag(&r, &t, &lo).await.unwrap();
    assert!(third.generation > second.generation);
    assert_eq!(c.get_tag(&r, &t).await.unwrap().unwrap().digest, lo);

    // An older replicated generation is ignored; a duplicate is harmless.
    c.replicate_tag(&r, &t, &second).await.unwrap();
    assert_eq!(c.get_tag(&r, &t).await.unwrap(), Some(third));
    c.replicate_tag(&r, &t, &third).await.unwrap();
    assert_eq!(c.get_tag(&r, &t).await.unwrap(), Some(third));

    // A newer one is applied, and applying it again changes nothing.
    let newer = TagRecord {
        digest: hi,
        generation: third.generation + 10,
    };
    c.replicate_tag(&r, &t, &newer).await.unwrap();
    c.replicate_tag(&r, &t, &newer).await.unwrap();
    assert_eq!(c.get_tag(&r, &t).await.unwrap(), Some(newer));

    // Equal generations: the higher digest string wins, whatever the arrival order.
    let t2 = tag("tie");
    let g = newer.generation;
    let low = TagRecord {
        digest: lo,
        generation: g,
    };
    let high = TagRecord {
        digest: hi,
        generation: g,
    };
    c.replicate_tag(&r, &t2, &high).await.unwrap();
    c.replicate_tag(&r, &t2, &low).await.unwrap();
    assert_eq!(c.get_tag(&r, &t2).await.unwrap(), Some(high));
    let t3 = tag("tie2");
    c.replicate_tag(&r, &t3, &low).await.unwrap();
    c.replicate_tag(&r, &t3, &high).await.unwrap();
    assert_eq!(c.get_tag(&r, &t3).await.unwrap(), Some(high));

    // A local write after a replicated one from the future still takes effect.
    let future = TagRecord {
        digest: lo,
        generation: u64::MAX / 2,
    };
    c.replicate_tag(&r, &t, &future).await.unwrap();
    let local = c.put_tag(&r, &t, &hi).await.unwrap();
    assert_eq!(local.generation, future.generation + 1);
    assert_eq!(c.get_tag(&r, &t).await.unwrap(), Some(local));

    // A tombstone keeps a late, older replicated write from resurrecting the tag...
    let t4 = tag("doomed");
    let before = c.put_tag(&r, &t4, &lo).await.unwrap();
    assert!(c.delete_tag(&r, &t4).await.unwrap());
    c.replicate_tag(&r, &t4, &before).await.unwrap();
    assert_eq!(c.get_tag(&r, &t4).await.unwrap(), None);
    assert!(
        !c.list_tags(&r, None, None)
            .await
            .unwrap()
            .unwrap()
            .contains(&t4)
    );
    // ...while a newer write (local or replicated) brings it back.
    let again = c.put_tag(&r, &t4, &hi).await.unwrap();
    assert!(again.generation > before.generation);
    assert_eq!(c.get_tag(&r, &t4).await.unwrap(), Some(again));

    // Replicated writes are counted as applied or ignored.
    assert!(
        index
            .metric("shoal_build_index_tags_replicated_ignored_total")
            .await
            >= 3.0
    );
    assert!(
        index
            .metric("shoal_build_index_tags_replicated_total")
            .await
            >= 4.0
    );
    index.stop().await;
}

#[tokio::test]
async fn manifest_records_referrers_and_manifest_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::start(index_config(dir.path())).await;
    let c = &index.client;
    let r = repo("team/svc");
    let other = repo("team/other");
    let image = sha256(b"image");
    let sbom = sha256(b"sbom");
    let sig = sha256(b"signature");

    assert_eq!(c.get_manifest(&r, &image).await.unwrap(), None);
    // A repository with only manifests is known and listed.
    c.put_manifest(&r, &manifest_record(image, None))
        .await
        .unwrap();
    assert_eq!(c.list_tags(&r, None, None).await.unwrap(), Some(vec![]));
    assert_eq!(c.catalog(None, None).await.unwrap(), vec![r.clone()]);
    for (d, s) in [(sbom, image), (sig, image)] {
        c.put_manifest(&r, &manifest_record(d, Some(s)))
            .await
            .unwrap();
    }
    // Idempotent.
    c.put_manifest(&r, &manifest_record(sig, Some(image)))
        .await
        .unwrap();
    assert_eq!(
        c.get_manifest(&r, &sbom).await.unwrap(),
        Some(manifest_record(sbom, Some(image)))
    );
    let mut want = vec![
        manifest_record(sbom, Some(image)),
        manifest_record(sig, Some(image)),
    ];
    want.sort_by_key(|m| m.descriptor.digest.to_string());
    assert_eq!(c.referrers(&r, &image).await.unwrap(), want);
    assert!(c.referrers(&other, &image).await.unwrap().is_empty());
    assert!(c.referrers(&r, &sbom).await.unwrap().is_empty());

    // Deleting a manifest deletes the tags pointing at it (in this repository only).
    for t in ["a", "b"] {
        c.put_tag(&r, &tag(t), &image).await.unwrap();
    }
    c.put_tag(&r, &tag("c"), &sbom).await.unwrap();
    c.put_tag(&other, &tag("a"), &image).await.unwrap();
    assert!(c.delete_manifest(&r, &sig).await.unwrap());
    assert!(!c.delete_manifest(&r, &sig).await.unwrap());
    assert_eq!(
        c.referrers(&r, &image).await.unwrap(),
        vec![manifest_record(sbom, Some(image))]
    );
    assert!(c.delete_manifest(&r, &image).await.unwrap());
    assert_eq!(c.get_manifest(&r, &image).await.unwrap(), None);
    assert_eq!(
        c.list_tags(&r, None, None).await.unwrap(),
        Some(vec![tag("c")])
    );
    assert!(c.get_tag(&other, &tag("a")).await.unwrap().is_some());
    index.stop().await;
}

#[tokio::test]
async fn records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::start(index_config(dir.path())).await;
    let r = repo("library/ubuntu");
    let d = sha256(b"m");
    let rec = index.client.put_tag(&r, &tag("latest"), &d).await.unwrap();
    let old = index.client.put_tag(&r, &tag("old"), &d).await.unwrap();
    assert!(index.client.delete_tag(&r, &tag("old")).await.unwrap());
    index
        .client
        .put_manifest(&r, &manifest_record(d, None))
        .await
        .unwrap();
    index.stop().await;

    let index = TestIndex::start(index_config(dir.path())).await;
    let c = &index.client;
    assert_eq!(c.get_tag(&r, &tag("latest")).await.unwrap(), Some(rec));
    assert_eq!(c.get_tag(&r, &tag("old")).await.unwrap(), None);
    // The tombstone survived too.
    c.replicate_tag(&r, &tag("old"), &old).await.unwrap();
    assert_eq!(c.get_tag(&r, &tag("old")).await.unwrap(), None);
    assert_eq!(
        c.list_tags(&r, None, None).await.unwrap(),
        Some(vec![tag("latest")])
    );
    assert_eq!(
        c.get_manifest(&r, &d).await.unwrap(),
        Some(manifest_record(d, None))
    );
    assert_eq!(c.catalog(None, None).await.unwrap(), vec![r.clone()]);
    // Generations keep growing after a restart.
    let next = c.put_tag(&r, &tag("latest"), &d).await.unwrap();
    assert!(next.generation > rec.generation);
    index.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::start(index_config(dir.path())).await;
    let http = reqwest::Client::new();
    let d = sha256(b"x");
    let cases = [
        (
            http.get(format!("{}/v1/repositories/Bad%2FName/tags/x", index.base)),
            400,
            "NAME_INVALID",
        ),
        (
            http.get(format!("{}/v1/repositories/a/tags/-x", index.base)),
            400,
            "TAG_INVALID",
        ),
        (
            http.get(format!(
                "{}/v1/repositories/a/manifests/sha256:00",
                index.base
            )),
            400,
            "DIGEST_INVALID",
        ),
        (
            http.put(format!("{}/v1/repositories/a/tags/x", index.base))
                .body("{\"digest\":\"nope\"}"),
            400,
            "BODY_INVALID",
        ),
        (
            http.put(format!("{}/v1/repositories/a/manifests/{d}", index.base))
                .body(serde_json::to_vec(&manifest_record(sha256(b"y"), None)).unwrap()),
            400,
            "DIGEST_INVALID",
        ),
        (
            http.get(format!("{}/v1/repositories/a/tags?n=many", index.base)),
            400,
            "PAGINATION_NUMBER_INVALID",
        ),
        (
            http.get(format!("{}/v1/repositories/a/tags", index.base)),
            404,
            "NAME_UNKNOWN",
        ),
        (
            http.get(format!("{}/v1/repositories/a/tags/x", index.base)),
            404,
            "TAG_UNKNOWN",
        ),
    ];
    for (req, status, code) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body = resp.text().await.unwrap();
        assert!(body.contains(code), "{body}");
    }
    // The client reports refusals as rejections, not outages.
    let bad =
        shoal_build_index_api::BuildIndexClient::new(&format!("{}/nowhere", index.base)).unwrap();
    let err = bad.catalog(None, None).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Rejected { status: 404, .. }),
        "{err}"
    );
    index.stop().await;
}
