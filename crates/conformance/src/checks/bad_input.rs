//! Bad input: malformed and mismatched manifests, unknown media types, oversized bodies,
//! invalid names, tags and digests, foreign upload sessions, malformed chunk ranges and path
//! traversal. Each must get a spec error (not a 2xx, not a 5xx), and after each the registry
//! must still answer `GET /v2/`.

use std::future::Future;

use serde_json::json;

use super::{
    Ctx, Recorder, blob_path, cleanup, fetch_manifest, manifest_path, push_blobs, start_upload,
    still_serving,
};
use crate::data::{self, Blob, DOCKER_MANIFEST, Manifest, OCI_CONFIG, OCI_MANIFEST, sha256};
use crate::http::{Endpoint, Resp, path_and_query, with_query};

/// Larger than the 4 MiB every registry should accept, small enough to send quickly.
const OVERSIZED: usize = 5 * 1024 * 1024 + 100_000;
/// A media type no registry knows.
const UNKNOWN_TYPE: &str = "application/vnd.shoal.conformance.unknown.v1+json";

/// Checks that need to push: not applicable against a read-only registry.
const PUSHING: [&str; 11] = [
    "bad-input/manifest-malformed-json",
    "bad-input/manifest-invalid-schema",
    "bad-input/manifest-unknown-media-type",
    "bad-input/manifest-content-type-mismatch",
    "bad-input/manifest-oversized",
    "bad-input/manifest-oversized-chunked",
    "bad-input/manifest-digest-mismatch",
    "bad-input/manifest-invalid-reference-digest",
    "bad-input/upload-invalid-digest",
    "bad-input/upload-missing-digest",
    "bad-input/upload-other-repo",
];

pub(super) async fn run(ctx: &Ctx, rec: &mut Recorder<'_>) {
    let (t, s) = (&ctx.target, &ctx.setup);
    let repo = ctx.repo("bad-input");
    let repo = repo.as_str();
    let secret_repo = ctx.repo("bad-input-secret");
    let config = ctx.config("bad-input");
    let secret = Blob::random(64, ctx.seed(50));

    let ok = rec
        .check("bad-input/setup", async {
            push_blobs(s, repo, &[&config]).await?;
            push_blobs(s, &secret_repo, &[&secret]).await
        })
        .await;
    if !ok {
        return;
    }

    if ctx.read_only {
        for id in PUSHING {
            rec.not_applicable(id, "the registry under test is read-only");
        }
        rec.not_applicable(
            "bad-input/chunk-malformed-range",
            "the registry under test is read-only",
        );
    } else {
        manifest_checks(ctx, rec, repo, &config).await;
        upload_checks(ctx, rec, repo).await;
    }

    rec.check(
        "bad-input/manifest-invalid-tag",
        serving(ctx, async {
            let too_long = "t".repeat(129);
            for tag in ["-badtag", ".badtag", too_long.as_str()] {
                let resp = if ctx.read_only {
                    fetch_manifest(t, repo, tag, false).await?
                } else {
                    let m = data::simple_image(&config, &[]);
                    put(t, repo, tag, &m, &m.media_type).await?
                };
                resp.expect_error_or_404(
                    &[400],
                    &["TAG_INVALID", "MANIFEST_INVALID", "NAME_INVALID"],
                )?;
            }
            Ok(())
        }),
    )
    .await;
    rec.check(
        "bad-input/blob-invalid-digest",
        serving(ctx, async {
            for digest in ["sha256:abc", "md5:abc", "notadigest", "sha256:ZZZZ"] {
                let resp = t.send(t.get(&blob_path(repo, digest))).await?;
                resp.expect_error_or_404(&[400], &["DIGEST_INVALID"])?;
            }
            Ok(())
        }),
    )
    .await;
    rec.check(
        "bad-input/name-invalid",
        serving(ctx, async {
            for name in ["Upper/case", "a/-b", "a/b_", "a..b/c"] {
                let resp = t.send(t.get(&format!("/v2/{name}/tags/list"))).await?;
                resp.expect_error_or_404(&[400], &["NAME_INVALID"])?;
            }
            Ok(())
        }),
    )
    .await;
    rec.check(
        "bad-input/name-too-long",
        serving(ctx, async {
            let name = format!("{}/{}", "a".repeat(200), "b".repeat(100));
            let resp = t.send(t.get(&format!("/v2/{name}/tags/list"))).await?;
            resp.expect_error_or_404(&[400], &["NAME_INVALID"])
        }),
    )
    .await;
    rec.check(
        "bad-input/path-traversal",
        serving(ctx, async {
            let (ns, d) = (&ctx.ns, &secret.digest);
            let paths = [
                format!("/v2/{ns}/bad-input/../bad-input-secret/blobs/{d}"),
                format!("/v2/{ns}/bad-input/%2e%2e/bad-input-secret/blobs/{d}"),
                format!("/v2/{ns}/bad-input/%2E%2E/bad-input-secret/blobs/{d}"),
                format!("/v2/{ns}/bad-input%2f..%2fbad-input-secret/blobs/{d}"),
                format!("/v2/{ns}//bad-input-secret/blobs/{d}"),
                format!("/v2/./{ns}/bad-input-secret/blobs/{d}"),
                "/v2/../../../etc/passwd".to_owned(),
                "/v2/%2e%2e/%2e%2e/etc/passwd".to_owned(),
            ];
            for path in paths {
                let (status, location) = t.raw_get(&path).await?;
                traversal_refused(&path, status, location.as_deref())?;
            }
            Ok(())
        }),
    )
    .await;

    cleanup(s, repo, &[], &[&config.digest]).await;
    cleanup(s, &secret_repo, &[], &[&secret.digest]).await;
}

async fn manifest_checks(ctx: &Ctx, rec: &mut Recorder<'_>, repo: &str, config: &Blob) {
    let t = &ctx.target;
    let good = data::simple_image(config, &[]);
    rec.check(
        "bad-input/manifest-malformed-json",
        serving(ctx, async {
            let m = Manifest::from_bytes(b"blablabla".to_vec(), OCI_MANIFEST);
            let resp = put(t, repo, "malformed", &m, OCI_MANIFEST).await?;
            resp.expect_error(&[400], &["MANIFEST_INVALID"])?;
            not_stored(t, repo, "malformed").await
        }),
    )
    .await;
    rec.check("bad-input/manifest-invalid-schema", serving(ctx, async {
        let m = Manifest::from_json(
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": "nope", "layers": {}}),
            OCI_MANIFEST,
        );
        let resp = put(t, repo, "invalid-schema", &m, OCI_MANIFEST).await?;
        resp.expect_error(&[400], &["MANIFEST_INVALID"])?;
        not_stored(t, repo, "invalid-schema").await
    }))
    .await;
    rec.check(
        "bad-input/manifest-unknown-media-type",
        serving(ctx, async {
            let m = Manifest::from_json(
                &json!({
                    "schemaVersion": 2,
                    "mediaType": UNKNOWN_TYPE,
                    "config": config.descriptor(OCI_CONFIG),
                    "layers": [],
                }),
                UNKNOWN_TYPE,
            );
            let resp = put(t, repo, "unknown-type", &m, UNKNOWN_TYPE).await?;
            resp.expect_error(&[400, 415], &["MANIFEST_INVALID", "UNSUPPORTED"])?;
            not_stored(t, repo, "unknown-type").await
        }),
    )
    .await;
    rec.check(
        "bad-input/manifest-content-type-mismatch",
        serving(ctx, async {
            let resp = put(t, repo, "mismatch", &good, DOCKER_MANIFEST).await?;
            resp.expect_error(&[400], &["MANIFEST_INVALID"])?;
            not_stored(t, repo, "mismatch").await
        }),
    )
    .await;
    let oversized = data::large_image(config, OVERSIZED);
    rec.check(
        "bad-input/manifest-oversized",
        serving(ctx, async {
            let resp = put(t, repo, "oversized", &oversized, OCI_MANIFEST).await?;
            too_large(&resp)?;
            not_stored(t, repo, "oversized").await
        }),
    )
    .await;
    rec.check(
        "bad-input/manifest-oversized-chunked",
        serving(ctx, async {
            // No Content-Length: the registry can only tell by reading.
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = oversized
                .bytes
                .chunks(64 * 1024)
                .map(|c| Ok(c.to_vec()))
                .collect();
            let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
            let resp = t
                .send(
                    t.put(&manifest_path(repo, "oversized-chunked"))
                        .header("content-type", OCI_MANIFEST)
                        .body(body),
                )
                .await?;
            too_large(&resp)?;
            not_stored(t, repo, "oversized-chunked").await
        }),
    )
    .await;
    rec.check(
        "bad-input/manifest-digest-mismatch",
        serving(ctx, async {
            let other = sha256(format!("another manifest {}", ctx.seed).as_bytes());
            let resp = put(t, repo, &other, &good, OCI_MANIFEST).await?;
            resp.expect_error(&[400], &["DIGEST_INVALID"])?;
            let resp = fetch_manifest(t, repo, &other, false).await?;
            resp.expect(&[404]).map(|_| ())
        }),
    )
    .await;
    rec.check(
        "bad-input/manifest-invalid-reference-digest",
        serving(ctx, async {
            let resp = put(t, repo, "sha256:baddigeststring", &good, OCI_MANIFEST).await?;
            resp.expect_error_or_404(&[400], &["DIGEST_INVALID", "MANIFEST_INVALID"])
        }),
    )
    .await;
}

async fn upload_checks(ctx: &Ctx, rec: &mut Recorder<'_>, repo: &str) {
    let t = &ctx.target;
    let octets = "application/octet-stream";
    rec.check(
        "bad-input/upload-invalid-digest",
        serving(ctx, async {
            let location = start_upload(t, repo).await?;
            let resp = t
                .send(
                    t.put(&with_query(&location, "digest", "sha256:nothex"))
                        .header("content-type", octets)
                        .body(b"abc".to_vec()),
                )
                .await?;
            resp.expect_error(&[400], &["DIGEST_INVALID"])
        }),
    )
    .await;
    rec.check(
        "bad-input/upload-missing-digest",
        serving(ctx, async {
            let location = start_upload(t, repo).await?;
            let resp = t
                .send(
                    t.put(&location)
                        .header("content-type", octets)
                        .body(b"abc".to_vec()),
                )
                .await?;
            resp.expect_error(&[400], &["DIGEST_INVALID"])
        }),
    )
    .await;
    rec.check(
        "bad-input/upload-other-repo",
        serving(ctx, async {
            let location = start_upload(t, repo).await?;
            let own = path_and_query(&t.resolve(&location)?);
            let other_repo = format!("{repo}-other");
            let foreign = own.replacen(&format!("/v2/{repo}/"), &format!("/v2/{other_repo}/"), 1);
            if foreign == own {
                return Err(format!(
                    "the session Location {location} is not under /v2/{repo}/"
                ));
            }
            let resp = t.send(t.get(&foreign)).await?;
            resp.expect_error(&[404], &["BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"])?;
            let resp = t.send(t.get(&location)).await?;
            resp.expect(&[204])
                .map(|_| ())
                .map_err(|e| format!("the session must survive a foreign access: {e}"))
        }),
    )
    .await;
    rec.check(
        "bad-input/chunk-malformed-range",
        serving(ctx, async {
            let location = start_upload(t, repo).await?;
            for range in ["garbage", "5-2", "bytes=0-2"] {
                let resp = t
                    .send(
                        t.patch(&location)
                            .header("content-type", octets)
                            .header("content-range", range)
                            .body(b"abc".to_vec()),
                    )
                    .await?;
                resp.expect(&[400, 416])
                    .map_err(|e| format!("{e} (Content-Range: {range})"))?;
            }
            Ok(())
        }),
    )
    .await;
}

/// Runs `check`, then checks that the registry still serves; both failures are reported.
async fn serving(ctx: &Ctx, check: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    let result = check.await;
    match (result, still_serving(ctx).await) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(e), Err(s)) => Err(format!("{e}\n{s}")),
    }
}

/// `PUT`s `manifest`'s bytes under `reference` with `content_type`.
async fn put(
    t: &Endpoint,
    repo: &str,
    reference: &str,
    manifest: &Manifest,
    content_type: &str,
) -> Result<Resp, String> {
    t.send(
        t.put(&manifest_path(repo, reference))
            .header("content-type", content_type)
            .body(manifest.bytes.clone()),
    )
    .await
}

/// A refused manifest left nothing under `tag`.
async fn not_stored(t: &Endpoint, repo: &str, tag: &str) -> Result<(), String> {
    let resp = fetch_manifest(t, repo, tag, false).await.map_err(|e| {
        format!(
            "the request after the refusal failed (a connection closed without \
             `Connection: close` after an unread body breaks the client's pool): {e}"
        )
    })?;
    resp.expect(&[404])
        .map(|_| ())
        .map_err(|e| format!("a refused manifest must not be stored: {e}"))
}

/// An oversized manifest: 413 (what the spec says a registry SHOULD answer) or 400, with a
/// spec error body.
fn too_large(resp: &Resp) -> Result<(), String> {
    resp.expect(&[413, 400])?;
    match resp.error_codes() {
        Some(codes) if !codes.is_empty() => Ok(()),
        _ => Err(resp.fail("413 or 400 with a spec error body")),
    }
}

/// A request through a non-canonical path was refused (4xx) or redirected to a path without
/// dot segments; never served (2xx) and never a server error.
fn traversal_refused(path: &str, status: u16, location: Option<&str>) -> Result<(), String> {
    let clean = |l: &str| {
        let lower = l.to_ascii_lowercase();
        !lower.contains("/../") && !lower.contains("%2e") && !lower.contains("%2f")
    };
    match status {
        400..=499 => Ok(()),
        301 | 302 | 307 | 308 if location.is_some_and(clean) => Ok(()),
        _ => Err(format!(
            "GET {path} (raw): expected 4xx (or a redirect to a normalized path), got {status}{}",
            location
                .map(|l| format!(" Location {l}"))
                .unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_outcomes() {
        assert!(traversal_refused("/x", 400, None).is_ok());
        assert!(traversal_refused("/x", 404, None).is_ok());
        assert!(traversal_refused("/x", 301, Some("/v2/a/b")).is_ok());
        assert!(traversal_refused("/x", 301, Some("/v2/a/%2E%2E/b")).is_err());
        assert!(traversal_refused("/x", 200, None).is_err());
        assert!(traversal_refused("/x", 500, None).is_err());
    }
}
