//! Content management: deleting tags, manifests and blobs.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{OCI_MANIFEST, Registry, assert_error, header};

const REPO: &str = "management/test";

async fn tags(reg: &Registry) -> Vec<Value> {
    let resp = reg.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["tags"].as_array().unwrap().clone()
}

#[tokio::test]
async fn deleting_a_tag_then_the_manifest() {
    let reg = Registry::start().await;
    let (manifest, digest) = reg.push_image(REPO, "tagtest0", "img").await;
    let resp = reg
        .put_manifest(REPO, "tagtest1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(tags(&reg).await.len(), 2);

    // Deleting a tag removes only the tag.
    let resp = reg.delete(&format!("/v2/{REPO}/manifests/tagtest0")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(tags(&reg).await, ["tagtest1"]);
    assert_error(
        reg.get(&format!("/v2/{REPO}/manifests/tagtest0")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        reg.get(&format!("/v2/{REPO}/manifests/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_error(
        reg.delete(&format!("/v2/{REPO}/manifests/tagtest0")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;

    // Deleting by digest removes the manifest and the tags pointing at it.
    let resp = reg.delete(&format!("/v2/{REPO}/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(tags(&reg).await.is_empty());
    for reference in [digest.to_string(), "tagtest1".to_owned()] {
        assert_error(
            reg.get(&format!("/v2/{REPO}/manifests/{reference}")).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
    }
    assert_error(
        reg.delete(&format!("/v2/{REPO}/manifests/{digest}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn deleting_a_blob() {
    let reg = Registry::start().await;
    let digest = reg.push_blob(REPO, b"to be deleted").await;
    let path = format!("/v2/{REPO}/blobs/{digest}");

    let resp = reg.delete(&path).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_error(reg.get(&path).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    assert_eq!(reg.head(&path).await.status(), StatusCode::NOT_FOUND);
    assert_error(
        reg.delete(&path).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let reg = Registry::start().await;
    let digest = reg.push_blob(REPO, b"x").await;
    let cases = [
        (
            Method::PUT,
            format!("/v2/{REPO}/blobs/{digest}"),
            "GET, HEAD, DELETE",
        ),
        (
            Method::POST,
            format!("/v2/{REPO}/manifests/latest"),
            "GET, HEAD, PUT, DELETE",
        ),
        (Method::GET, format!("/v2/{REPO}/blobs/uploads/"), "POST"),
        (
            Method::POST,
            format!("/v2/{REPO}/blobs/uploads/abc"),
            "GET, PATCH, PUT, DELETE",
        ),
        (
            Method::PUT,
            format!("/v2/{REPO}/referrers/{digest}"),
            "GET, HEAD",
        ),
        (Method::POST, "/v2/_catalog".to_owned(), "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let resp = reg.request(method, &path).send().await.unwrap();
        let headers = assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
        assert_eq!(headers["allow"], allow, "{path}");
    }
}
