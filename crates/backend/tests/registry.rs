//! The registry backend against an in-process registry that demands bearer tokens, serves blobs
//! through a redirect and supports ranges; and, when installed, against the real reference
//! registry (Debian's `docker-registry`; set `SHOAL_SKIP_REGISTRY=1` to skip without it).

#![allow(clippy::unwrap_used)]

mod conformance;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use conformance::{collect, ns};
use shoal_backend::{Backend, BackendError, ObjectKey, RegistryBackend, RegistryConfig};
use shoal_core::{Algorithm, Digest};
use shoal_testkit::ReferenceRegistry;

const TOKEN: &str = "secret-token";

struct Registry {
    base: String,
    blob: Bytes,
    digest: Digest,
    token_requests: AtomicUsize,
    scopes: std::sync::Mutex<Vec<String>>,
    unauthorized: AtomicUsize,
}

async fn token(
    State(reg): State<Arc<Registry>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    reg.token_requests.fetch_add(1, Ordering::SeqCst);
    reg.scopes.lock().unwrap().push(format!(
        "{}|{}",
        query.get("service").cloned().unwrap_or_default(),
        query.get("scope").cloned().unwrap_or_default()
    ));
    axum::Json(serde_json::json!({ "token": TOKEN, "expires_in": 300 })).into_response()
}

async fn v2(
    State(reg): State<Arc<Registry>>,
    method: Method,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        reg.unauthorized.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!(
                    r#"Bearer realm="{}/token",service="test-registry",scope="repository:x:pull""#,
                    reg.base
                ),
            )],
        )
            .into_response();
    }
    let Some((repo, digest)) = path.split_once("/blobs/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if repo != "mirror/conformance/repo" || digest != reg.digest.to_string() {
        return StatusCode::NOT_FOUND.into_response();
    }
    if method == Method::HEAD {
        return conformance::serve::range(&reg.blob, &headers, true);
    }
    // Blobs are served elsewhere, like a CDN.
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, format!("/cdn/{digest}"))],
    )
        .into_response()
}

async fn cdn(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Response {
    if digest != reg.digest.to_string() {
        return StatusCode::NOT_FOUND.into_response();
    }
    conformance::serve::range(&reg.blob, &headers, false)
}

async fn start_registry() -> Arc<Registry> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let blob = conformance::data(300_000, 7);
    let reg = Arc::new(Registry {
        base,
        digest: Digest::compute(Algorithm::Sha256, &blob),
        blob,
        token_requests: AtomicUsize::new(0),
        scopes: std::sync::Mutex::new(Vec::new()),
        unauthorized: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/token", get(token))
        .route("/v2/{*path}", any(v2))
        .route("/cdn/{digest}", get(cdn))
        .with_state(reg.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    reg
}

fn backend(url: &str, prefix: &str) -> RegistryBackend {
    RegistryBackend::new(&RegistryConfig {
        url: url.to_string(),
        username: None,
        password: None,
        repository_prefix: prefix.to_string(),
        timeout_secs: 10,
    })
    .unwrap()
}

#[tokio::test]
async fn pulls_blobs_with_a_cached_bearer_token() {
    let reg = start_registry().await;
    let backend = backend(&reg.base, "mirror/");
    let k = ObjectKey::for_blob(&reg.digest);

    assert_eq!(backend.stat(&ns(), &k).await.unwrap().size, 300_000);
    assert_eq!(
        collect(backend.get(&ns(), &k, None).await.unwrap()).await,
        reg.blob
    );
    for r in [0..1, 1000..2000, 299_999..300_000, 0..300_000, 5..5] {
        let got = collect(backend.get(&ns(), &k, Some(r.clone())).await.unwrap()).await;
        assert_eq!(got, &reg.blob[r.start as usize..r.end as usize], "{r:?}");
    }
    for r in [299_000..300_001, 300_000..300_001, 400_000..400_010] {
        match backend.get(&ns(), &k, Some(r.clone())).await {
            Err(BackendError::InvalidRange { size: 300_000, .. }) => {}
            Err(e) => panic!("{r:?}: {e:?}"),
            Ok(_) => panic!("{r:?}: expected InvalidRange"),
        }
    }
    let missing = ObjectKey::for_blob(&Digest::compute(Algorithm::Sha256, b"missing"));
    conformance::assert_not_found(&backend, &missing).await;

    // One token for all of that, requested for the mapped repository, and only the very first
    // request went out without it.
    assert_eq!(reg.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(reg.unauthorized.load(Ordering::SeqCst), 1);
    assert_eq!(
        reg.scopes.lock().unwrap().as_slice(),
        ["test-registry|repository:mirror/conformance/repo:pull"]
    );
}

#[tokio::test]
async fn is_read_only_and_blob_only() {
    let reg = start_registry().await;
    let backend = backend(&reg.base, "mirror/");
    let k = ObjectKey::for_blob(&reg.digest);
    conformance::assert_read_only(&backend, &k).await;
    let other = ObjectKey::new("tags/latest").unwrap();
    assert!(matches!(
        backend.stat(&ns(), &other).await,
        Err(BackendError::UnsupportedKey(_))
    ));
    let list = backend
        .list(
            &ns(),
            shoal_backend::ListRequest {
                prefix: String::new(),
                after: None,
                limit: 10,
            },
        )
        .await;
    assert!(matches!(list, Err(BackendError::Permanent(_))));
    // None of this needed the network.
    assert_eq!(reg.token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unreachable_registry_is_transient() {
    let port = shoal_testkit::free_port();
    let backend = backend(&format!("http://127.0.0.1:{port}"), "");
    let k = ObjectKey::for_blob(&Digest::compute(Algorithm::Sha256, b"x"));
    let err = backend.stat(&ns(), &k).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

/// Pushes `blob` to `repo` with the plain OCI monolithic upload API.
async fn push_blob(base: &str, repo: &str, blob: &Bytes, digest: &Digest) {
    let client = reqwest::Client::new();
    let started = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let mut url = url::Url::parse(&format!("{base}/"))
        .unwrap()
        .join(&location)
        .unwrap();
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    let done = client
        .put(url)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status(),
        StatusCode::CREATED,
        "{:?}",
        done.text().await
    );
}

#[tokio::test]
async fn pulls_from_the_reference_registry() {
    let Some(registry) = ReferenceRegistry::start().await else {
        return;
    };
    let base = registry.base_url();
    let blob = conformance::data(2_500_000, 11);
    let digest = Digest::compute(Algorithm::Sha256, &blob);
    push_blob(&base, "upstream/conformance/repo", &blob, &digest).await;

    let backend = backend(&base, "upstream/");
    let k = ObjectKey::for_blob(&digest);
    assert_eq!(backend.stat(&ns(), &k).await.unwrap().size, 2_500_000);
    assert_eq!(
        collect(backend.get(&ns(), &k, None).await.unwrap()).await,
        blob
    );
    let r = 1_000_000..1_500_000;
    let got = collect(backend.get(&ns(), &k, Some(r.clone())).await.unwrap()).await;
    assert_eq!(got, &blob[r.start as usize..r.end as usize]);
    assert!(matches!(
        backend.get(&ns(), &k, Some(2_000_000..3_000_000)).await,
        Err(BackendError::InvalidRange {
            size: 2_500_000,
            ..
        })
    ));
    let missing = ObjectKey::for_blob(&Digest::compute(Algorithm::Sha256, b"missing"));
    conformance::assert_not_found(&backend, &missing).await;
    // A repository that does not exist upstream is NotFound too.
    let other = backend_for_missing_repo(&base);
    assert!(matches!(
        other.stat(&ns(), &k).await,
        Err(BackendError::NotFound)
    ));
}

fn backend_for_missing_repo(base: &str) -> RegistryBackend {
    backend(base, "elsewhere/")
}
