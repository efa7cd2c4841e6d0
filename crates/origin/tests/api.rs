//! The origin's HTTP API: uploads (chunked, resumable, monolithic), downloads with ranges,
//! metainfo, and clear errors for bad input.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TestOrigin, config, count_files, data, sha256};
use reqwest::StatusCode;
use serde_json::Value;
use shoal_core::MetaInfo;

async fn error_code(resp: reqwest::Response) -> String {
    let v: Value = resp.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn chunked_upload_then_full_and_ranged_download() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(config(dir.path())).await;
    let http = reqwest::Client::new();
    let blob = data(3 * 1024 * 1024 + 123, 1);
    let d = sha256(&blob);

    let resp = http
        .post(origin.uploads_url("library/app"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/v1/namespace/library%2Fapp/uploads/"));
    let url = format!("{}{location}", origin.base);

    // Three chunks with Content-Range (inclusive ends), the last one sent with the commit.
    let cuts = [0, 1_000_000, 2_500_000, blob.len()];
    for w in cuts[..3].windows(2) {
        let resp = http
            .patch(&url)
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(blob[w[0]..w[1]].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(resp.headers()["range"], format!("0-{}", w[1] - 1).as_str());
    }
    // Status reports progress, so a client can resume.
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["range"], "0-2499999");
    // An out-of-order chunk is refused with 416 and changes nothing.
    let resp = http
        .patch(&url)
        .header("content-range", "10-19")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(error_code(resp).await, "BLOB_UPLOAD_INVALID");

    let resp = http
        .put(format!("{url}?digest={d}"))
        .body(blob[2_500_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["docker-content-digest"],
        d.to_string().as_str()
    );
    // The upload is gone once committed.
    assert_eq!(
        http.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let resp = http
        .head(origin.blob_url("library/app", &d))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-length"],
        blob.len().to_string().as_str()
    );
    assert_eq!(
        resp.headers()["docker-content-digest"],
        d.to_string().as_str()
    );

    let resp = origin.get_blob("library/app", &d).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), blob);

    for (range, want, content_range) in [
        ("bytes=0-0", 0..1, format!("bytes 0-0/{}", blob.len())),
        (
            "bytes=100-2000000",
            100..2_000_001,
            format!("bytes 100-2000000/{}", blob.len()),
        ),
        (
            "bytes=-10",
            blob.len() - 10..blob.len(),
            format!(
                "bytes {}-{}/{}",
                blob.len() - 10,
                blob.len() - 1,
                blob.len()
            ),
        ),
        (
            "bytes=3000000-",
            3_000_000..blob.len(),
            format!("bytes 3000000-{}/{}", blob.len() - 1, blob.len()),
        ),
    ] {
        let resp = http
            .get(origin.blob_url("library/app", &d))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(resp.headers()["content-range"], content_range.as_str());
        assert_eq!(resp.bytes().await.unwrap(), blob[want], "{range}");
    }
    for bad in [
        "bytes=99999999-",
        "bytes=5-1",
        "bytes=0-1,5-6",
        "pages=1-2",
        "bytes=x-",
    ] {
        let resp = http
            .get(origin.blob_url("library/app", &d))
            .header("range", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes */{}", blob.len()).as_str()
        );
        assert_eq!(error_code(resp).await, "RANGE_INVALID");
    }
    origin.stop().await;
}

#[tokio::test]
async fn chunks_without_content_range_append() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(config(dir.path())).await;
    let http = reqwest::Client::new();
    let blob = data(100_000, 2);
    let d = sha256(&blob);
    let resp = http.post(origin.uploads_url("a")).send().await.unwrap();
    let url = format!(
        "{}{}",
        origin.base,
        resp.headers()["location"].to_str().unwrap()
    );
    for part in blob.chunks(30_000) {
        let resp = http.patch(&url).body(part.to_vec()).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let resp = http.put(format!("{url}?digest={d}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(origin.get_blob("a", &d).await.bytes().await.unwrap(), blob);
    origin.stop().await;
}

#[tokio::test]
async fn wrong_digest_is_rejected_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(config(dir.path())).await;
    let http = reqwest::Client::new();
    let blob = data(50_000, 3);
    let claimed = sha256(b"something else");

    // Monolithic.
    let resp = http
        .put(origin.blob_url("a", &claimed))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "DIGEST_INVALID");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("mismatch")
    );

    // Chunked.
    let resp = http.post(origin.uploads_url("a")).send().await.unwrap();
    let url = format!(
        "{}{}",
        origin.base,
        resp.headers()["location"].to_str().unwrap()
    );
    http.patch(&url).body(blob.clone()).send().await.unwrap();
    let resp = http
        .put(format!("{url}?digest={claimed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");

    for d in [claimed, sha256(&blob)] {
        assert_eq!(
            origin.get_blob("a", &d).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(count_files(&dir.path().join("cache/blobs")), 0);
    assert_eq!(count_files(&dir.path().join("cache/tmp")), 0);
    assert_eq!(count_files(&dir.path().join("writeback")), 0);
    assert_eq!(
        origin.metric("shoal_origin_writeback_queue_depth").await,
        0.0
    );
    origin.stop().await;
}

#[tokio::test]
async fn bad_names_digests_and_upload_ids_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(config(dir.path())).await;
    let http = reqwest::Client::new();
    let b = &origin.base;
    let good = sha256(b"x");
    let cases = [
        (
            format!("{b}/v1/namespace/UPPER/blobs/{good}"),
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            format!("{b}/v1/namespace/a..b/blobs/{good}"),
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            format!("{b}/v1/namespace/a/blobs/sha256:abc"),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            format!("{b}/v1/namespace/a/blobs/md5:{}", good.hex()),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            format!(
                "{b}/v1/namespace/a/blobs/{}",
                good.to_string().to_uppercase()
            ),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            format!("{b}/v1/namespace/a/blobs/{good}"),
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        ),
        (
            format!("{b}/v1/namespace/a/uploads/nothex"),
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            format!("{b}/v1/namespace/a/uploads/{}", "0".repeat(32)),
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            format!("{b}/v1/namespace/a/blobs/{good}/metainfo"),
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        ),
    ];
    for (url, status, code) in cases {
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), status, "{url}");
        assert_eq!(error_code(resp).await, code, "{url}");
    }
    // Commit without a digest, and a malformed Content-Range.
    let resp = http.post(origin.uploads_url("a")).send().await.unwrap();
    let url = format!("{b}{}", resp.headers()["location"].to_str().unwrap());
    let resp = http.put(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
    let resp = http.post(origin.uploads_url("a")).send().await.unwrap();
    let url = format!("{b}{}", resp.headers()["location"].to_str().unwrap());
    let resp = http
        .patch(&url)
        .header("content-range", "bytes=zero-ten")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "BLOB_UPLOAD_INVALID");
    // An upload belongs to its namespace.
    let other = url.replace("/namespace/a/", "/namespace/b/");
    assert_eq!(
        http.get(&other).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // Cancel deletes it.
    assert_eq!(
        http.delete(&url).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        http.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    origin.stop().await;
}

#[tokio::test]
async fn metainfo_describes_the_blob_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.piece_length = 64 * 1024;
    let origin = TestOrigin::start(cfg.clone()).await;
    let blob = data(1_000_000, 4);
    let d = origin.put_blob("a", &blob).await;
    let url = format!("{}/metainfo", origin.blob_url("a", &d));
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        shoal_origin::METAINFO_CONTENT_TYPE
    );
    let meta = MetaInfo::decode(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(meta.digest(), d);
    assert_eq!(meta.layout().blob_len(), blob.len() as u64);
    assert_eq!(meta.layout().piece_len(), 64 * 1024);
    assert_eq!(meta.layout().piece_count(), 16);
    for p in meta.layout().pieces() {
        let r = meta.layout().range(p);
        assert!(meta.verify_piece(p, &blob[r.start as usize..r.end as usize]));
    }
    origin.stop().await;

    // After a restart the blob and its cached metainfo are still there.
    let origin = TestOrigin::start(cfg).await;
    let url = format!("{}/metainfo", origin.blob_url("a", &d));
    let again = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(MetaInfo::decode(&again).unwrap(), meta);
    assert_eq!(origin.get_blob("a", &d).await.bytes().await.unwrap(), blob);
    origin.stop().await;
}

/// Where the origin with data dir `dir` caches blob `d` (its metainfo sidecar is next to it).
fn cached_blob(dir: &std::path::Path, d: &shoal_core::Digest) -> std::path::PathBuf {
    let hex = d.hex();
    dir.join("cache/blobs/sha256")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(hex)
}

#[tokio::test]
async fn a_cached_blob_damaged_on_disk_is_fetched_again_for_its_metainfo() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.piece_length = 64 * 1024;
    let origin = TestOrigin::start(cfg.clone()).await;
    let blob = data(1_000_000, 5);
    let d = origin.put_blob("a", &blob).await;
    // The backend (a directory under the data dir by default) has its copy.
    origin
        .wait_metric("shoal_origin_writeback_queue_depth", "write-back", |v| {
            v == 0.0
        })
        .await;
    origin.stop().await;

    // Bit rot in the cached copy, before any metainfo was kept for it.
    let cached = cached_blob(dir.path(), &d);
    let _ = std::fs::remove_file(cached.with_extension("metainfo"));
    let mut bytes = std::fs::read(&cached).unwrap();
    assert_eq!(bytes, blob);
    bytes[700_000] ^= 0x01;
    std::fs::write(&cached, &bytes).unwrap();

    // Building the metainfo (a SHA-256 chain) finds the damage, drops the copy, fetches a
    // good one from the backend and describes that.
    let origin = TestOrigin::start(cfg).await;
    let url = format!("{}/metainfo", origin.blob_url("a", &d));
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let meta = MetaInfo::decode(&resp.bytes().await.unwrap()).unwrap();
    assert!(meta.pieces_prove_digest());
    for p in meta.layout().pieces() {
        let r = meta.layout().range(p);
        assert!(meta.verify_piece(p, &blob[r.start as usize..r.end as usize]));
    }
    assert_eq!(std::fs::read(&cached).unwrap(), blob);
    assert_eq!(origin.get_blob("a", &d).await.bytes().await.unwrap(), blob);
    origin.stop().await;
}

/// The metainfo the origin serves for `d`, and how many metainfos it has built by reading a
/// blob back.
async fn served_metainfo(origin: &TestOrigin, d: &shoal_core::Digest) -> (MetaInfo, f64) {
    let url = format!("{}/metainfo", origin.blob_url("a", d));
    let served = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    let builds = origin
        .metric("shoal_origin_metainfo_builds_from_disk_total")
        .await;
    (MetaInfo::decode(&served).unwrap(), builds)
}

#[tokio::test]
async fn an_upload_brings_its_metainfo_without_a_second_read() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(config(dir.path())).await;
    // Default piece lengths (256 KiB .. 4 MiB): 16 pieces of 256 KiB and a short last one.
    let blob = data(4 * 1024 * 1024 + 4321, 6);
    let d = origin.put_blob("a", &blob).await;
    // The PUT's own hash pass kept the checkpoints: the metainfo is on disk already.
    let sidecar = cached_blob(dir.path(), &d).with_extension("metainfo");
    let kept = MetaInfo::decode(&std::fs::read(&sidecar).unwrap()).unwrap();
    let piece_len = kept.layout().piece_len();
    assert_eq!(piece_len, 256 * 1024);
    let mut b = shoal_core::MetaInfoBuilder::new(shoal_core::Algorithm::Sha256, piece_len).unwrap();
    b.update(&blob);
    assert_eq!(kept, b.finish(d).unwrap());
    // Served as kept, and never built by reading the blob back.
    assert_eq!(served_metainfo(&origin, &d).await, (kept.clone(), 0.0));
    // Without the sidecar, the metainfo is built from the cached copy once more.
    origin.stop().await;
    std::fs::remove_file(&sidecar).unwrap();
    let origin = TestOrigin::start(config(dir.path())).await;
    assert_eq!(served_metainfo(&origin, &d).await, (kept, 1.0));
    origin.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(config(dir.path())).await;
    let resp = reqwest::get(format!("{}/health", origin.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    common::wait_ready(&origin.base).await;
    origin.put_blob("a", b"hello").await;
    assert_eq!(
        origin.metric("shoal_origin_uploads_committed_total").await,
        1.0
    );
    assert_eq!(origin.metric("shoal_origin_store_bytes").await, 5.0);
    origin
        .wait_metric(
            "shoal_origin_writeback_completed_total",
            "write-back done",
            |v| v == 1.0,
        )
        .await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_one_blob_all_succeed() {
    // Two CI jobs pushing the same layer, or every tag push re-uploading its manifest: the
    // commits race to record one write-back task.
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(config(dir.path())).await;
    let body = data(200_000, 9);
    let d = sha256(&body);
    let http = reqwest::Client::new();
    let puts: Vec<_> = (0..16)
        .map(|_| {
            let (http, url, body) = (http.clone(), origin.blob_url("race", &d), body.clone());
            tokio::spawn(async move { http.put(url).body(body).send().await.unwrap().status() })
        })
        .collect();
    for p in puts {
        assert_eq!(p.await.unwrap(), 201);
    }
    let got = http.get(origin.blob_url("race", &d)).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), body);
    origin.stop().await;
}

#[tokio::test]
async fn a_cached_blob_lists_its_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(config(dir.path())).await;
    let blob = data(50_000, 7);
    let d = origin.put_blob("team/a", &blob).await;
    origin.put_blob("team/b", &blob).await;
    let url = |d: &str| format!("{}/v1/blobs/{d}", origin.base);

    let resp = reqwest::get(url(&d.to_string())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let entry: Value = resp.json().await.unwrap();
    assert_eq!(entry["digest"], d.to_string());
    assert_eq!(entry["size"], 50_000);
    let mut namespaces: Vec<&str> = entry["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    namespaces.sort_unstable();
    assert_eq!(namespaces, ["team/a", "team/b"]);

    let absent = sha256(b"never pushed");
    let resp = reqwest::get(url(&absent.to_string())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "BLOB_UNKNOWN");
    let resp = reqwest::get(url("sha256:nothex")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
    origin.stop().await;
}
