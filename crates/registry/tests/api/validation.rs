//! The base endpoint, name/digest/tag validation, path traversal, 404s and read-only stores.

use reqwest::{Method, StatusCode};

use crate::mem::MemStore;
use crate::support::{
    CONFIG_TYPE, OCI_MANIFEST, Registry, assert_error, header, image_manifest, oneshot_error,
    sha256,
};

const REPO: &str = "shoal/validation-test";

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let reg = Registry::start().await;
    for path in ["/v2/", "/v2"] {
        let resp = reg.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header(&resp, "docker-distribution-api-version"),
            "registry/2.0"
        );
        assert_eq!(header(&resp, "content-type"), "application/json");
        assert_eq!(resp.text().await.unwrap(), "{}");
    }
    let resp = reg.head("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = reg.request(Method::POST, "/v2/").send().await.unwrap();
    let headers = assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    assert_eq!(headers["allow"], "GET, HEAD");

    // Unknown paths under /v2/: 404 with a spec body and the version header.
    for path in ["/v2/foo", "/v2/a/b/unknown/x", "/v2/_catalog/x"] {
        assert_error(reg.get(path).await, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    }
}

#[tokio::test]
async fn the_router_merges_with_a_services_own_routes() {
    // Paths outside /v2 are left to the service (the agent and the proxy merge the router
    // with their own API and admin routes, which may have a fallback of their own).
    let store = std::sync::Arc::new(MemStore::new());
    let service = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback(|| async { (StatusCode::IM_A_TEAPOT, "service fallback") });
    let app = service.merge(shoal_registry::router(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let resp = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()
            .get("docker-distribution-api-version")
            .is_none()
    );
    let resp = client
        .get(format!("{base}/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT);
    let resp = client.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let resp = client.get(format!("{base}/v2/nope")).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

#[tokio::test]
async fn bad_names_digests_and_tags_are_400_with_their_codes() {
    let reg = Registry::start().await;
    let digest = sha256(b"x");
    let cases = [
        (
            Method::GET,
            format!("/v2/Upper/blobs/{digest}"),
            "NAME_INVALID",
        ),
        (
            Method::POST,
            "/v2/a_/blobs/uploads/".to_owned(),
            "NAME_INVALID",
        ),
        (Method::GET, "/v2/-a/tags/list".to_owned(), "NAME_INVALID"),
        (
            Method::GET,
            "/v2/a/blobs/sha256:abc".to_owned(),
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/a/blobs/md5:abc".to_owned(),
            "DIGEST_INVALID",
        ),
        (Method::HEAD, "/v2/a/blobs/notadigest".to_owned(), ""),
        (
            Method::GET,
            "/v2/a/referrers/sha256:zz".to_owned(),
            "DIGEST_INVALID",
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/?mount=sha256:abc&from=b".to_owned(),
            "DIGEST_INVALID",
        ),
    ];
    for (method, path, code) in cases {
        let resp = reg.request(method.clone(), &path).send().await.unwrap();
        if method == Method::HEAD {
            // No body on HEAD: the status and version header still say it.
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(
                header(&resp, "docker-distribution-api-version"),
                "registry/2.0"
            );
        } else {
            assert_error(resp, StatusCode::BAD_REQUEST, code).await;
        }
    }
    // A pull by a reference that is not a valid tag names no manifest: 404, as the official
    // suite's pulls of `.INVALID_MANIFEST_NAME` expect; a push by one is TAG_INVALID.
    for path in [
        "/v2/a/manifests/-tag".to_owned(),
        "/v2/a/manifests/.INVALID_MANIFEST_NAME".to_owned(),
        format!("/v2/a/manifests/{}", "t".repeat(129)),
    ] {
        let resp = reg.request(Method::GET, &path).send().await.unwrap();
        assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    }
    // As in the conformance suite's error-code test.
    let resp = reg
        .put_manifest("a", "sha256:totallywrong", OCI_MANIFEST, b"{}")
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let resp = reg.put_manifest("a", "bad:tag:", OCI_MANIFEST, b"{}").await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let resp = reg.put_manifest("a", ".tag", OCI_MANIFEST, b"{}").await;
    assert_error(resp, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
}

#[tokio::test]
async fn traversal_and_empty_segments_never_reach_the_store() {
    let reg = Registry::start().await;
    let digest = reg.store.insert_blob("a/b", b"secret");
    for path in [
        format!("/v2/a/../a/b/blobs/{digest}"),
        format!("/v2/a/%2e%2e/a/b/blobs/{digest}"),
        format!("/v2/a/%2E%2E/b/blobs/{digest}"),
        format!("/v2/a//b/blobs/{digest}"),
        format!("/v2//a/b/blobs/{digest}"),
        format!("/v2/a%2fb/blobs/{digest}"),
        format!("/v2/./a/b/blobs/{digest}"),
    ] {
        let resp = reg.oneshot("GET", &path).await;
        assert_eq!(
            resp.headers()["docker-distribution-api-version"],
            "registry/2.0"
        );
        assert_eq!(
            oneshot_error(resp).await,
            (400, "NAME_INVALID".to_owned()),
            "{path}"
        );
    }
    let resp = reg.oneshot("POST", "/v2//blobs/uploads/").await;
    assert_eq!(oneshot_error(resp).await, (400, "NAME_INVALID".to_owned()));
    assert_eq!(reg.store.opens(), 0);
    // The well-formed path does reach it.
    let resp = reg.oneshot("GET", &format!("/v2/a/b/blobs/{digest}")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(reg.store.opens(), 1);
}

#[tokio::test]
async fn read_only_stores_refuse_every_push_and_delete() {
    let reg = Registry::with_store(MemStore::read_only()).await;
    let digest = reg.store.insert_blob(REPO, b"present");
    let manifest = image_manifest((CONFIG_TYPE, &digest, 7), &[], None, None, None);
    let puts = [
        (Method::POST, format!("/v2/{REPO}/blobs/uploads/")),
        (
            Method::POST,
            format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
        ),
        (
            Method::POST,
            format!("/v2/{REPO}/blobs/uploads/?mount={digest}&from=x"),
        ),
        (Method::PATCH, format!("/v2/{REPO}/blobs/uploads/some-id")),
        (
            Method::PUT,
            format!("/v2/{REPO}/blobs/uploads/some-id?digest={digest}"),
        ),
        (Method::GET, format!("/v2/{REPO}/blobs/uploads/some-id")),
        (Method::DELETE, format!("/v2/{REPO}/blobs/uploads/some-id")),
        (Method::PUT, format!("/v2/{REPO}/manifests/latest")),
        (Method::DELETE, format!("/v2/{REPO}/manifests/latest")),
        (Method::DELETE, format!("/v2/{REPO}/blobs/{digest}")),
    ];
    for (method, path) in puts {
        let resp = reg
            .request(method, &path)
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    }
    // Reads still work.
    assert!(reg.store.has_blob(REPO, &digest));
    let resp = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(reg.get("/v2/").await.status(), StatusCode::OK);
}
