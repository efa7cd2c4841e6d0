//! `shoal push` against a real in-process origin, and `shoal digest`, `--help`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use common::{args, data, serve, sha256, shoal, start_origin, stderr};

#[tokio::test]
async fn pushes_a_20_mib_file_in_16_mib_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_origin(&dir.path().join("origin")).await;
    let blob = data(20 << 20, 1);
    let file = dir.path().join("blob.bin");
    std::fs::write(&file, &blob).unwrap();
    let d = sha256(&blob);

    let out = shoal(args(&[
        "push",
        "--origin",
        &origin.base(),
        "--namespace",
        "library/app",
        "--chunk-size",
        "16MiB",
        file.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{d}\n"));
    // Not a terminal: no bar, one summary line.
    let err = stderr(&out);
    assert!(err.contains("pushed") && err.contains("20.00 MiB"), "{err}");

    let served = reqwest::get(format!(
        "{}/v1/namespace/library%2Fapp/blobs/{d}",
        origin.base()
    ))
    .await
    .unwrap();
    assert_eq!(served.status(), 200);
    assert!(served.bytes().await.unwrap() == blob);

    // An empty file is a valid blob too (no chunks, just the commit).
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let out = shoal(args(&[
        "push",
        "--origin",
        &origin.base(),
        "-n",
        "demo",
        empty.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        sha256(b"").to_string()
    );
    origin.stop().await;
}

#[tokio::test]
async fn chunks_are_sent_in_order_with_their_ranges() {
    // A fake origin recording each request: 20 MiB in 7 MiB chunks is 3 PATCHes.
    let seen = Arc::new(Log::default());
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(
        move |method: Method,
              headers: axum::http::HeaderMap,
              uri: axum::http::Uri,
              body: axum::body::Bytes| {
            let log = Arc::clone(&log);
            async move {
                let range = headers
                    .get("content-range")
                    .map(|v| v.to_str().unwrap().to_owned());
                log.push(format!("{method} {} {range:?} {}", uri.path(), body.len()));
                match method {
                    Method::POST => (
                        StatusCode::ACCEPTED,
                        [("location", "/v1/namespace/demo/uploads/abc")],
                    )
                        .into_response(),
                    Method::PATCH => StatusCode::ACCEPTED.into_response(),
                    Method::PUT => StatusCode::CREATED.into_response(),
                    _ => StatusCode::NO_CONTENT.into_response(),
                }
            }
        },
    );
    let server = serve(app.layer(axum::extract::DefaultBodyLimit::disable())).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, data(20 << 20, 2)).unwrap();
    let out = shoal(args(&[
        "push",
        "--origin",
        &server.base(),
        "-n",
        "demo",
        "--chunk-size",
        "7MiB",
        file.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let mb = 1 << 20;
    assert_eq!(
        seen.take(),
        [
            "POST /v1/namespace/demo/uploads None 0".to_owned(),
            format!(
                "PATCH /v1/namespace/demo/uploads/abc Some(\"0-{}\") {}",
                7 * mb - 1,
                7 * mb
            ),
            format!(
                "PATCH /v1/namespace/demo/uploads/abc Some(\"{}-{}\") {}",
                7 * mb,
                14 * mb - 1,
                7 * mb
            ),
            format!(
                "PATCH /v1/namespace/demo/uploads/abc Some(\"{}-{}\") {}",
                14 * mb,
                20 * mb - 1,
                6 * mb
            ),
            "PUT /v1/namespace/demo/uploads/abc None 0".to_owned(),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn origin_errors_are_shown_and_fail_the_command() {
    let deletes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&deletes);
    let app = axum::Router::new().fallback(move |method: Method| {
        let counter = Arc::clone(&counter);
        async move {
            match method {
                Method::POST => (
                    StatusCode::ACCEPTED,
                    [("location", "/v1/namespace/demo/uploads/abc")],
                )
                    .into_response(),
                Method::DELETE => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    StatusCode::NO_CONTENT.into_response()
                }
                _ => (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    r#"{"errors":[{"code":"DIGEST_INVALID","message":"content does not match"}]}"#,
                )
                    .into_response(),
            }
        }
    });
    let server = serve(app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"hello").unwrap();
    let out = shoal(args(&[
        "push",
        "--origin",
        &server.base(),
        "-n",
        "demo",
        file.to_str().unwrap(),
    ]))
    .await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("HTTP 400") && err.contains("DIGEST_INVALID: content does not match"),
        "{err}"
    );
    assert_eq!(deletes.load(Ordering::SeqCst), 1, "the upload is cancelled");
    server.stop().await;
}

#[tokio::test]
async fn digest_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    let blob = data(3_000_000, 3);
    std::fs::write(&file, &blob).unwrap();
    let out = shoal(args(&["digest", file.to_str().unwrap()])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", sha256(&blob))
    );

    let out = shoal(args(&["--help"])).await;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("push") && text.contains("fetch") && text.contains("digest"));
    let out = shoal(args(&["push", "--help"])).await;
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("--chunk-size")
    );

    // Usage errors exit 2; missing files exit 1 with the path.
    assert_eq!(shoal(args(&["push"])).await.status.code(), Some(2));
    let out = shoal(args(&["digest", "/nonexistent/x"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/x"));
}

/// The requests a fake origin saw.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}
