//! Manifest pushes and pulls (by tag and digest, validation) and blob reads with ranges.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{
    CONFIG_TYPE, OCI_INDEX, OCI_MANIFEST, Registry, assert_error, header, image_manifest, index,
    sha256,
};

const REPO: &str = "library/pull-test";

fn assert_manifest_headers(resp: &reqwest::Response, digest: &str, len: usize, media_type: &str) {
    assert_eq!(resp.status(), StatusCode::OK, "{resp:?}");
    assert_eq!(header(resp, "docker-content-digest"), digest);
    assert_eq!(header(resp, "content-type"), media_type);
    assert_eq!(header(resp, "content-length"), len.to_string());
    assert_eq!(
        header(resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
}

#[tokio::test]
async fn manifest_put_by_tag_then_get_and_head_by_tag_and_digest() {
    let reg = Registry::start().await;
    let config = reg.push_blob(REPO, b"{}").await;
    let layer = reg.push_blob(REPO, b"layer bytes").await;
    let manifest = image_manifest((CONFIG_TYPE, &config, 2), &[(&layer, 11)], None, None, None);
    let digest = sha256(&manifest).to_string();

    let resp = reg.put_manifest(REPO, "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/{REPO}/manifests/{digest}")
    );
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert!(resp.headers().get("oci-subject").is_none());

    for reference in ["v1", digest.as_str()] {
        let resp = reg
            .request(Method::GET, &format!("/v2/{REPO}/manifests/{reference}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_manifest_headers(&resp, &digest, manifest.len(), OCI_MANIFEST);
        assert_eq!(resp.bytes().await.unwrap(), manifest);

        let resp = reg.head(&format!("/v2/{REPO}/manifests/{reference}")).await;
        assert_manifest_headers(&resp, &digest, manifest.len(), OCI_MANIFEST);
        assert!(resp.bytes().await.unwrap().is_empty());
    }

    // Pushing the same manifest under more tags.
    for tag in ["test0", "test1"] {
        let resp = reg.put_manifest(REPO, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "docker-content-digest"), digest);
    }
}

#[tokio::test]
async fn manifest_put_by_digest_must_match_the_body() {
    let reg = Registry::start().await;
    let config = reg.push_blob(REPO, b"{\"a\":1}").await;
    let manifest = image_manifest((CONFIG_TYPE, &config, 7), &[], None, None, None);
    let digest = sha256(&manifest);

    let wrong = sha256(b"other");
    let resp = reg
        .put_manifest(REPO, &wrong.to_string(), OCI_MANIFEST, &manifest)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

    let resp = reg
        .put_manifest(REPO, &digest.to_string(), OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/{REPO}/manifests/{digest}")
    );
    let resp = reg.get(&format!("/v2/{REPO}/manifests/{digest}")).await;
    assert_manifest_headers(&resp, &digest.to_string(), manifest.len(), OCI_MANIFEST);
    // No tag was created.
    let resp = reg.get(&format!("/v2/{REPO}/tags/list")).await;
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["tags"], json!([]));
}

#[tokio::test]
async fn manifests_referencing_missing_content_are_manifest_blob_unknown() {
    let reg = Registry::start().await;
    let config = reg.push_blob(REPO, b"{}").await;
    let missing = sha256(b"never pushed");
    let manifest = image_manifest(
        (CONFIG_TYPE, &config, 2),
        &[(&missing, 12)],
        None,
        None,
        None,
    );
    let resp = reg
        .put_manifest(REPO, "broken", OCI_MANIFEST, &manifest)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    // A config that is missing counts as well.
    let manifest = image_manifest((CONFIG_TYPE, &missing, 12), &[], None, None, None);
    let resp = reg
        .put_manifest(REPO, "broken", OCI_MANIFEST, &manifest)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    // Blobs of another repository do not count.
    let elsewhere = reg.push_blob("other/repo", b"layer elsewhere").await;
    let manifest = image_manifest(
        (CONFIG_TYPE, &config, 2),
        &[(&elsewhere, 15)],
        None,
        None,
        None,
    );
    let resp = reg
        .put_manifest(REPO, "broken", OCI_MANIFEST, &manifest)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert_error(
        reg.get(&format!("/v2/{REPO}/manifests/broken")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn invalid_manifests_are_refused_with_their_codes() {
    let reg = Registry::start().await;
    let config = reg.push_blob(REPO, b"{}").await;
    let no_layers = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": config.to_string(), "size": 2}
    }))
    .unwrap();
    for body in [
        b"this is not json".to_vec(),
        b"{\"schemaVersion\":2}".to_vec(),
        no_layers,
    ] {
        let resp = reg.put_manifest(REPO, "bad", OCI_MANIFEST, &body).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    // A Content-Type that contradicts the manifest's mediaType.
    let manifest = image_manifest((CONFIG_TYPE, &config, 2), &[], None, None, None);
    let resp = reg.put_manifest(REPO, "bad", OCI_INDEX, &manifest).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;

    // Docker schema 1, by Content-Type or by shape.
    let schema1 = br#"{"schemaVersion":1,"name":"a","tag":"b","architecture":"amd64","fsLayers":[],"history":[]}"#;
    for ct in [
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/json",
    ] {
        let resp = reg.put_manifest(REPO, "old", ct, schema1).await;
        assert_error(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED").await;
    }

    // Larger than the limit: 413 with a spec body.
    let huge = vec![b' '; shoal_registry::manifest::MAX_MANIFEST_BYTES + 1];
    let resp = reg.put_manifest(REPO, "huge", OCI_MANIFEST, &huge).await;
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID").await;
}

#[tokio::test]
async fn indexes_need_their_children() {
    let reg = Registry::start().await;
    let (child, child_digest) = reg.push_image(REPO, "amd64", "child").await;
    let missing = sha256(b"no such manifest");

    let bad = index(&[(&child_digest, child.len()), (&missing, 10)]);
    let resp = reg.put_manifest(REPO, "multi", OCI_INDEX, &bad).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;

    // A blob with the child's digest is not a manifest.
    let blob_digest = reg.push_blob(REPO, b"a blob, not a manifest").await;
    let bad = index(&[(&blob_digest, 22)]);
    let resp = reg.put_manifest(REPO, "multi", OCI_INDEX, &bad).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;

    let good = index(&[(&child_digest, child.len())]);
    let resp = reg.put_manifest(REPO, "multi", OCI_INDEX, &good).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = reg.get(&format!("/v2/{REPO}/manifests/multi")).await;
    assert_manifest_headers(&resp, &sha256(&good).to_string(), good.len(), OCI_INDEX);
    assert_eq!(resp.bytes().await.unwrap(), good);
}

#[tokio::test]
async fn docker_media_types_are_kept() {
    let reg = Registry::start().await;
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let config = reg.push_blob(REPO, b"{}").await;
    // Reads answer with the media type the manifest was pushed with.
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": docker,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": config.to_string(), "size": 2},
        "layers": []
    }))
    .unwrap();
    let resp = reg.put_manifest(REPO, "docker", docker, &body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = reg.head(&format!("/v2/{REPO}/manifests/docker")).await;
    assert_manifest_headers(&resp, &sha256(&body).to_string(), body.len(), docker);
}

#[tokio::test]
async fn unknown_and_corrupt_manifests() {
    let reg = Registry::start().await;
    let digest = sha256(b"nothing");
    for path in [
        format!("/v2/{REPO}/manifests/latest"),
        format!("/v2/{REPO}/manifests/{digest}"),
        format!("/v2/never/pushed/manifests/{digest}"),
    ] {
        assert_error(
            reg.get(&path).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
        let resp = reg.head(&path).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            header(&resp, "docker-distribution-api-version"),
            "registry/2.0"
        );
    }
    // Bytes that do not hash to the digest they are stored under are never served.
    reg.store
        .insert_corrupt_manifest(REPO, digest, "corrupt", b"{\"schemaVersion\":2}");
    for path in [
        format!("/v2/{REPO}/manifests/corrupt"),
        format!("/v2/{REPO}/manifests/{digest}"),
    ] {
        assert_error(
            reg.get(&path).await,
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
        )
        .await;
    }
}

#[tokio::test]
async fn blob_reads_whole_by_range_and_head() {
    let reg = Registry::start().await;
    let data: Vec<u8> = (0..100u8).collect();
    let digest = reg.push_blob(REPO, &data).await;
    let path = format!("/v2/{REPO}/blobs/{digest}");

    let resp = reg.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), "100");
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
    assert_eq!(header(&resp, "etag"), format!("\"{digest}\""));
    assert_eq!(resp.bytes().await.unwrap(), data);

    for (range, content_range, want) in [
        ("bytes=10-19", "bytes 10-19/100", &data[10..20]),
        ("bytes=90-", "bytes 90-99/100", &data[90..]),
        ("bytes=-5", "bytes 95-99/100", &data[95..]),
        ("bytes=95-500", "bytes 95-99/100", &data[95..]),
    ] {
        let resp = reg
            .request(Method::GET, &path)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&resp, "content-range"), content_range);
        assert_eq!(header(&resp, "content-length"), want.len().to_string());
        assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
        assert_eq!(resp.bytes().await.unwrap(), want);
    }
    for range in ["bytes=100-", "bytes=50-40", "bytes=0-1,5-6", "pages=1-2"] {
        let resp = reg
            .request(Method::GET, &path)
            .header("range", range)
            .send()
            .await
            .unwrap();
        let headers = assert_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
        assert_eq!(headers["content-range"], "bytes */100", "{range}");
    }

    // HEAD answers from stat_blob alone.
    let opens = reg.store.opens();
    let resp = reg.head(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), "100");
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
    assert_eq!(header(&resp, "etag"), format!("\"{digest}\""));
    assert_eq!(reg.store.opens(), opens);

    let unknown = format!("/v2/{REPO}/blobs/{}", sha256(b"unknown"));
    assert_error(
        reg.get(&unknown).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    let resp = reg.head(&unknown).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(reg.store.opens(), opens + 1);
}
