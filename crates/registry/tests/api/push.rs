//! Pushes: blobs (monolithic, POST+PUT, chunked, upload sessions, cross-repository mounts)
//! and manifests pushed by digest with `tag` parameters.

use reqwest::{Method, Response, StatusCode};
use shoal_core::{Algorithm, Digest};

use crate::support::{OCI_MANIFEST, Registry, assert_error, header, sha256};

const REPO: &str = "shoal/push-test";

#[tokio::test]
async fn monolithic_post_with_digest_creates_the_blob() {
    let reg = Registry::start().await;
    let data = b"monolithic blob".to_vec();
    let digest = sha256(&data);
    let resp = reg
        .request(
            Method::POST,
            &format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/{REPO}/blobs/{digest}")
    );
    assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );

    let resp = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), data);

    // A body that does not hash to the digest is refused and stores nothing.
    let wrong = sha256(b"something else");
    let resp = reg
        .request(
            Method::POST,
            &format!("/v2/{REPO}/blobs/uploads/?digest={wrong}"),
        )
        .body(data)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(!reg.store.has_blob(REPO, &wrong));
}

#[tokio::test]
async fn post_then_put_uploads_a_blob() {
    let reg = Registry::start().await;
    let resp = reg
        .request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = header(&resp, "location");
    let id = header(&resp, "docker-upload-uuid");
    assert_eq!(location, format!("/v2/{REPO}/blobs/uploads/{id}"));
    assert_eq!(header(&resp, "range"), "0-0");

    let data = b"put in one go".to_vec();
    let digest = sha256(&data);
    let resp = reg
        .request(Method::PUT, &format!("{location}?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/{REPO}/blobs/{digest}")
    );
    assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
    assert!(reg.store.has_blob(REPO, &digest));

    // The session is gone once finished.
    let resp = reg.get(&location).await;
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn chunked_upload_with_two_patches_then_put() {
    let reg = Registry::start().await;
    let location = reg.start_upload(REPO).await;
    let (a, b) = (b"0123456789".to_vec(), b"abcdefghij".to_vec());
    let whole = [a.clone(), b.clone()].concat();
    let digest = sha256(&whole);

    let resp = reg
        .request(Method::PATCH, &location)
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-9")
        .header("content-length", "10")
        .body(a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-9");
    let location = header(&resp, "location");
    assert!(location.starts_with(&format!("/v2/{REPO}/blobs/uploads/")));
    assert!(!header(&resp, "docker-upload-uuid").is_empty());

    // The `bytes a-b/total` form is accepted too.
    let resp = reg
        .request(Method::PATCH, &location)
        .header("content-range", "bytes 10-19/*")
        .body(b)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-19");

    let resp = reg
        .request(Method::PUT, &format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
    let resp = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert_eq!(resp.bytes().await.unwrap(), whole);
}

#[tokio::test]
async fn streamed_patch_and_final_chunk_on_put() {
    let reg = Registry::start().await;
    let location = reg.start_upload(REPO).await;
    // A PATCH without Content-Range (a streamed upload).
    let resp = reg
        .request(Method::PATCH, &location)
        .body(b"first part,".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-10");
    // The last chunk comes with the PUT, with a Content-Range as the conformance suite sends.
    let digest = sha256(b"first part,last part");
    let resp = reg
        .request(Method::PUT, &format!("{location}?digest={digest}"))
        .header("content-range", "11-19")
        .body(b"last part".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(reg.store.has_blob(REPO, &digest));
}

#[tokio::test]
async fn out_of_order_chunks_are_416_with_the_upload_range() {
    let reg = Registry::start().await;
    let location = reg.start_upload(REPO).await;

    // The first chunk must start at 0.
    let resp = reg
        .request(Method::PATCH, &location)
        .header("content-range", "5-9")
        .body(b"56789".to_vec())
        .send()
        .await
        .unwrap();
    let headers = assert_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    assert_eq!(headers["range"], "0-0");

    let resp = reg
        .request(Method::PATCH, &location)
        .header("content-range", "0-4")
        .body(b"01234".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    // A gap, an overlap and a malformed range are all refused with the current progress.
    for range in ["10-14", "3-7", "garbage"] {
        let resp = reg
            .request(Method::PATCH, &location)
            .header("content-range", range)
            .body(b"xxxxx".to_vec())
            .send()
            .await
            .unwrap();
        let headers = assert_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
        assert_eq!(headers["range"], "0-4", "{range}");
    }
    // A final chunk on PUT is checked the same way.
    let resp = reg
        .request(
            Method::PUT,
            &format!("{location}?digest={}", sha256(b"0123456789")),
        )
        .header("content-range", "6-10")
        .body(b"56789".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;

    // A Content-Range that disagrees with Content-Length is SIZE_INVALID.
    let resp = reg
        .request(Method::PATCH, &location)
        .header("content-range", "5-14")
        .body(b"56789".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;

    // Nothing was appended by the refused chunks.
    let resp = reg.get(&location).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-4");
}

#[tokio::test]
async fn upload_status_and_cancel() {
    let reg = Registry::start().await;
    let location = reg.start_upload(REPO).await;
    let resp = reg
        .request(Method::PATCH, &location)
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let resp = reg.get(&location).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-2");
    assert_eq!(header(&resp, "location"), location);
    assert!(location.ends_with(&header(&resp, "docker-upload-uuid")));

    let resp = reg.delete(&location).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_error(
        reg.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        reg.delete(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    // Ids that are not even well-formed, and sessions of another repository, are unknown too.
    let id = location.rsplit('/').next().unwrap();
    for path in [
        format!("/v2/{REPO}/blobs/uploads/bad%20id"),
        format!("/v2/other/blobs/uploads/{id}"),
    ] {
        assert_error(
            reg.get(&path).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
    }
}

#[tokio::test]
async fn finishing_with_a_wrong_or_missing_digest_is_digest_invalid() {
    let reg = Registry::start().await;
    let location = reg.start_upload(REPO).await;
    let resp = reg
        .request(Method::PATCH, &location)
        .body(b"payload".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let resp = reg.request(Method::PUT, &location).send().await.unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

    let resp = reg
        .request(Method::PUT, &format!("{location}?digest=sha256:1234"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

    let wrong = sha256(b"not the payload");
    let resp = reg
        .request(Method::PUT, &format!("{location}?digest={wrong}"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(!reg.store.has_blob(REPO, &wrong));
}

#[tokio::test]
async fn cross_repository_mount_and_its_fallback() {
    let reg = Registry::start().await;
    let digest = reg.push_blob("source/repo", b"shared layer").await;

    assert_mounted(
        &reg,
        REPO,
        &format!("mount={digest}&from=source/repo"),
        &digest,
    )
    .await;
    let resp = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), &b"shared layer"[..]);

    // A repository without the blob, an invalid `from`, or no `from` for a blob nobody has:
    // a new upload session.
    let missing = sha256(b"not anywhere");
    for query in [
        format!("mount={missing}&from=source/repo"),
        format!("mount={digest}&from=elsewhere"),
        format!("mount={digest}&from=Not..Valid"),
        format!("mount={missing}"),
    ] {
        let resp = reg
            .request(Method::POST, &format!("/v2/other/blobs/uploads/?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{query}");
        assert!(header(&resp, "location").starts_with("/v2/other/blobs/uploads/"));
        assert_eq!(header(&resp, "range"), "0-0");
        assert!(!header(&resp, "docker-upload-uuid").is_empty());
    }
    assert!(!reg.store.has_blob("other", &digest));

    // No `from` (an anonymous mount): any repository holding the blob will do.
    assert_mounted(&reg, "other", &format!("mount={digest}"), &digest).await;
    assert!(reg.store.has_blob("other", &digest));
}

/// `POST /v2/<repo>/blobs/uploads/?<query>` mounts `digest`: 201 at the blob's location.
async fn assert_mounted(reg: &Registry, repo: &str, query: &str, digest: &Digest) {
    let resp = reg
        .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "{query}");
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/{repo}/blobs/{digest}")
    );
    assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
}

#[tokio::test]
async fn push_by_digest_with_tag_parameters() {
    let reg = Registry::start().await;
    let (manifest, _) = reg.push_image(REPO, "base", "tagparam").await;
    // The client picks sha512: the tags must name that digest, not a sha256 of the bytes.
    let digest = Digest::compute(Algorithm::Sha512, &manifest);
    let resp = put_tagged(&reg, &digest, "tag=v1&tag=latest&tag=v1", &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
    let applied: Vec<&str> = resp
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(applied, ["v1", "latest"], "one OCI-Tag per distinct tag");
    for tag in ["v1", "latest"] {
        let resp = reg.get(&format!("/v2/{REPO}/manifests/{tag}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "docker-content-digest"), digest.to_string());
        assert_eq!(resp.bytes().await.unwrap(), manifest);
    }

    // One bad tag refuses the whole push, before anything is stored.
    let (other, _) = reg.push_image(REPO, "other", "tagparam-2").await;
    let other_digest = Digest::compute(Algorithm::Sha512, &other);
    let resp = put_tagged(&reg, &other_digest, "tag=ok&tag=-bad", &other).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
    assert_error(
        reg.get(&format!("/v2/{REPO}/manifests/ok")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        reg.get(&format!("/v2/{REPO}/manifests/{other_digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // The number of tags per push is bounded.
    let many: String = (0..=64).map(|i| format!("tag=t{i}&")).collect();
    let resp = put_tagged(&reg, &other_digest, &many, &other).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
}

/// `PUT` of an image manifest by `digest` with the query string `query`.
async fn put_tagged(reg: &Registry, digest: &Digest, query: &str, manifest: &[u8]) -> Response {
    reg.request(
        Method::PUT,
        &format!("/v2/{REPO}/manifests/{digest}?{query}"),
    )
    .header("content-type", OCI_MANIFEST)
    .body(manifest.to_vec())
    .send()
    .await
    .unwrap()
}
