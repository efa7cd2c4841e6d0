//! `shoal fetch` against a tiny fake agent serving `/v1/namespaces/{ns}/blobs/{digest}`.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use common::{Running, args, data, entries, serve, sha256, shoal, stderr};
use shoal_core::Digest;

/// A fake agent answering `path` with `body` (200) and anything else with a JSON 404.
async fn fake_agent(ns_segment: &str, digest: &Digest, body: Vec<u8>) -> Running {
    let path = format!("/v1/namespaces/{ns_segment}/blobs/{digest}");
    let app = axum::Router::new().fallback(move |uri: Uri| async move {
        if uri.path() == path {
            (StatusCode::OK, body).into_response()
        } else {
            (
                StatusCode::NOT_FOUND,
                r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            )
                .into_response()
        }
    });
    serve(app).await
}

#[tokio::test]
async fn fetches_verifies_and_writes_the_file() {
    let blob = data(5 << 20, 1);
    let d = sha256(&blob);
    // The namespace travels as one percent-encoded segment.
    let agent = fake_agent("library%2Fapp", &d, blob.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("blob.bin");
    let out = shoal(args(&[
        "fetch",
        "--agent",
        &agent.base(),
        "--namespace",
        "library/app",
        &d.to_string(),
        "-o",
        out_path.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(&out_path).unwrap() == blob);
    assert_eq!(entries(dir.path()), ["blob.bin"], "no temporary file left");
    assert!(stderr(&out).contains("fetched"), "{}", stderr(&out));

    // To stdout.
    let out = shoal(args(&[
        "fetch",
        "--agent",
        &agent.base(),
        "-n",
        "library/app",
        &d.to_string(),
        "-o",
        "-",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == blob);

    // Unknown blob: the agent's error is shown, nothing is written.
    let other = sha256(b"other");
    let missing = dir.path().join("missing");
    let out = shoal(args(&[
        "fetch",
        "--agent",
        &agent.base(),
        "-n",
        "library/app",
        &other.to_string(),
        "-o",
        missing.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("HTTP 404") && err.contains("BLOB_UNKNOWN"),
        "{err}"
    );
    assert_eq!(entries(dir.path()), ["blob.bin"]);
    agent.stop().await;
}

#[tokio::test]
async fn wrong_bytes_fail_and_write_nothing() {
    let blob = data(1 << 20, 2);
    let d = sha256(&blob);
    let mut corrupt = blob.clone();
    corrupt[12345] ^= 1;
    let agent = fake_agent("demo", &d, corrupt.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("blob.bin");
    let out = shoal(args(&[
        "fetch",
        "--agent",
        &agent.base(),
        "-n",
        "demo",
        &d.to_string(),
        "-o",
        out_path.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(!out_path.exists());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    // An existing file is left as it was.
    std::fs::write(&out_path, b"old").unwrap();
    let out = shoal(args(&[
        "fetch",
        "--agent",
        &agent.base(),
        "-n",
        "demo",
        &d.to_string(),
        "-o",
        out_path.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&out_path).unwrap(), b"old");

    // To stdout the bytes are already out: the command says so and fails.
    let out = shoal(args(&[
        "fetch",
        "--agent",
        &agent.base(),
        "-n",
        "demo",
        &d.to_string(),
        "-o",
        "-",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout == corrupt);
    let err = stderr(&out);
    assert!(
        err.contains("digest mismatch") && err.contains("stdout"),
        "{err}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn bad_arguments_are_rejected_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("x");
    for (ns, digest) in [("demo", "sha256:abc"), ("Demo", &*sha256(b"x").to_string())] {
        let out = shoal(args(&[
            "fetch",
            "--agent",
            "http://127.0.0.1:1",
            "-n",
            ns,
            digest,
            "-o",
            out_path.to_str().unwrap(),
        ]))
        .await;
        assert_eq!(out.status.code(), Some(1), "{ns} {digest}");
        assert!(stderr(&out).contains("invalid"), "{}", stderr(&out));
    }
    assert!(entries(dir.path()).is_empty());
}
