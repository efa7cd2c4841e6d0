//! Push: blob uploads (streamed, monolithic, POST+PUT, chunked in and out of order, cancel,
//! digest mismatches, empty and sha512 blobs), cross-repository mounts and manifest pushes
//! (tags, digests, indexes, unknown blobs, large manifests, unknown fields kept byte for
//! byte; see `push_manifests`), as in the official suite's `02_push_test.go` and the newer
//! runner. Against a read-only registry: every push is refused.

use super::{
    Ctx, Recorder, blob_path, check_blob, check_digest_header, cleanup, push_blobs, put_manifest,
    start_upload, uploads_path,
};
use crate::data::{self, Blob, sha256, sha512};
use crate::http::{Endpoint, Resp, path_and_query, with_query};

/// Bytes of the chunked-upload blob (the official runner's minimum chunk is 1024).
const CHUNKED_LEN: usize = 3 * 1024 - 5;

pub(super) async fn run(ctx: &Ctx, rec: &mut Recorder<'_>) {
    if ctx.read_only {
        return read_only(ctx, rec).await;
    }
    let repo = ctx.repo("push");
    let repo = repo.as_str();
    let target = ctx.repo("push-mount");
    let target = target.as_str();

    blob_uploads(ctx, rec, repo).await;
    chunked_uploads(ctx, rec, repo).await;
    mounts(ctx, rec, repo, target).await;

    super::push_manifests::run(ctx, rec, repo).await;
}

/// Streamed, monolithic and POST+PUT uploads, cancel, unknown sessions, digest mismatches,
/// empty and sha512 blobs.
async fn blob_uploads(ctx: &Ctx, rec: &mut Recorder<'_>, repo: &str) {
    let t = &ctx.target;
    rec.check("push/post-session", async {
        let resp = t
            .send(t.post(&uploads_path(repo)).header("content-length", "0"))
            .await?;
        resp.expect(&[202])?;
        resp.required_header("location")?;
        Ok(())
    })
    .await;

    let streamed = Blob::random(42, ctx.seed(10));
    let mut location = None;
    rec.check("push/streamed-patch", async {
        let start = start_upload(t, repo).await?;
        let resp = t
            .send(
                t.patch(&start)
                    .header("content-type", "application/octet-stream")
                    .body(streamed.bytes.clone()),
            )
            .await?;
        resp.expect(&[202])?;
        check_upload_range(&resp, streamed.bytes.len(), false)?;
        location = Some(resp.required_header("location")?.to_owned());
        Ok(())
    })
    .await;
    rec.check("push/streamed-put", async {
        let location = location.ok_or("needs push/streamed-patch")?;
        let resp = t
            .send(
                t.put(&with_query(&location, "digest", &streamed.digest))
                    .header("content-type", "application/octet-stream")
                    .header("content-length", "0"),
            )
            .await?;
        check_blob_created(t, &resp, &streamed).await
    })
    .await;

    let mono = Blob::new(ctx.config("push-monolithic").bytes);
    rec.check("push/monolithic-post", async {
        let resp = t
            .send(
                t.post(&with_query(&uploads_path(repo), "digest", &mono.digest))
                    .header("content-type", "application/octet-stream")
                    .body(mono.bytes.clone()),
            )
            .await?;
        resp.expect(&[201, 202])?;
        let location = resp.required_header("location")?;
        if resp.status == 201 {
            return check_blob_created(t, &resp, &mono).await;
        }
        // Single-POST uploads are optional: the 202 is a session, and nothing is stored yet.
        let get = t.send(t.get(&blob_path(repo, &mono.digest))).await?;
        get.expect(&[404])?;
        let resp = t
            .send(
                t.put(&with_query(location, "digest", &mono.digest))
                    .header("content-type", "application/octet-stream")
                    .body(mono.bytes.clone()),
            )
            .await?;
        check_blob_created(t, &resp, &mono).await
    })
    .await;
    let post_put = Blob::random(1234, ctx.seed(11));
    rec.check("push/post-put", async {
        let location = start_upload(t, repo).await?;
        let resp = t
            .send(
                t.put(&with_query(&location, "digest", &post_put.digest))
                    .header("content-type", "application/octet-stream")
                    .body(post_put.bytes.clone()),
            )
            .await?;
        check_blob_created(t, &resp, &post_put).await
    })
    .await;
    rec.check("push/upload-cancel", async {
        let location = start_upload(t, repo).await?;
        let resp = t
            .send(t.delete(&location).header("content-length", "0"))
            .await?;
        resp.expect(&[204])?;
        let resp = t.send(t.get(&location)).await?;
        resp.expect_error(&[404], &["BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"])
    })
    .await;
    rec.check("push/upload-unknown", async {
        let path = format!(
            "{}{:08x}-0000-4000-8000-{:012x}",
            uploads_path(repo),
            ctx.seed as u32,
            ctx.seed >> 16
        );
        let resp = t.send(t.get(&path)).await?;
        resp.expect_error(&[404], &["BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"])
    })
    .await;
    rec.check("push/put-digest-mismatch", async {
        let wrong = sha256(format!("not the content {}", ctx.seed).as_bytes());
        let location = start_upload(t, repo).await?;
        let resp = t
            .send(
                t.put(&with_query(&location, "digest", &wrong))
                    .header("content-type", "application/octet-stream")
                    .body(b"the content".to_vec()),
            )
            .await?;
        resp.expect_error(&[400], &["DIGEST_INVALID"])?;
        let resp = t.send(t.head(&blob_path(repo, &wrong))).await?;
        resp.expect(&[404]).map(|_| ())
    })
    .await;
    rec.check("push/monolithic-post-digest-mismatch", async {
        let wrong = sha256(format!("not the content either {}", ctx.seed).as_bytes());
        let resp = t
            .send(
                t.post(&with_query(&uploads_path(repo), "digest", &wrong))
                    .header("content-type", "application/octet-stream")
                    .body(b"the content".to_vec()),
            )
            .await?;
        if resp.status == 202 {
            let location = resp.required_header("location")?;
            let resp = t
                .send(
                    t.put(&with_query(location, "digest", &wrong))
                        .header("content-type", "application/octet-stream")
                        .body(b"the content".to_vec()),
                )
                .await?;
            return resp.expect_error(&[400], &["DIGEST_INVALID"]);
        }
        resp.expect_error(&[400], &["DIGEST_INVALID"])
    })
    .await;
    let empty = Blob::new(Vec::new());
    rec.check("push/empty-blob", async {
        let location = start_upload(t, repo).await?;
        let resp = t
            .send(
                t.put(&with_query(&location, "digest", &empty.digest))
                    .header("content-type", "application/octet-stream")
                    .header("content-length", "0"),
            )
            .await?;
        check_blob_created(t, &resp, &empty).await?;
        let resp = t.send(t.head(&blob_path(repo, &empty.digest))).await?;
        check_blob(&resp, &empty, true)
    })
    .await;
    let big = data::random_bytes(777, ctx.seed(12));
    let digest512 = sha512(&big);
    rec.check("push/blob-sha512", async {
        let location = start_upload(t, repo).await?;
        let resp = t
            .send(
                t.put(&with_query(&location, "digest", &digest512))
                    .header("content-type", "application/octet-stream")
                    .body(big.clone()),
            )
            .await?;
        resp.expect(&[201])?;
        resp.required_header("location")?;
        check_digest_header(&resp, &big)?;
        let blob = Blob {
            bytes: big.clone(),
            digest: digest512.clone(),
        };
        for head in [true, false] {
            let path = blob_path(repo, &digest512);
            let rb = if head { t.head(&path) } else { t.get(&path) };
            check_blob(&t.send(rb).await?, &blob, head)?;
        }
        Ok(())
    })
    .await;
    cleanup(
        t,
        repo,
        &[],
        &[
            &streamed.digest,
            &mono.digest,
            &post_put.digest,
            &empty.digest,
            &digest512,
        ],
    )
    .await;
}

/// Chunked uploads: out of order (416), in order with status queries, the last chunk in the
/// closing `PUT`, recovery after a refused chunk.
async fn chunked_uploads(ctx: &Ctx, rec: &mut Recorder<'_>, repo: &str) {
    let t = &ctx.target;
    let blob = Blob::random(CHUNKED_LEN, ctx.seed(13));
    let split = CHUNKED_LEN / 2 + 1;
    let (chunk1, chunk2) = blob.bytes.split_at(split);
    let range1 = format!("0-{}", split - 1);
    let range2 = format!("{split}-{}", CHUNKED_LEN - 1);
    let patch = |location: &str, chunk: &[u8], range: &str| {
        t.patch(location)
            .header("content-type", "application/octet-stream")
            .header("content-range", range)
            .body(chunk.to_vec())
    };

    rec.check("push/chunk-out-of-order", async {
        let location = start_upload(t, repo).await?;
        let resp = t.send(patch(&location, chunk2, &range2)).await?;
        resp.expect(&[416]).map(|_| ())
    })
    .await;
    let mut after_first = None;
    rec.check("push/chunk-first", async {
        let location = start_upload(t, repo).await?;
        let resp = t.send(patch(&location, chunk1, &range1)).await?;
        resp.expect(&[202])?;
        check_upload_range(&resp, split, true)?;
        after_first = Some(resp.required_header("location")?.to_owned());
        Ok(())
    })
    .await;
    let mut after_status = None;
    rec.check("push/upload-status", async {
        let location = after_first.ok_or("needs push/chunk-first")?;
        let resp = t.send(t.get(&location)).await?;
        resp.expect(&[204])?;
        check_upload_range(&resp, split, true)?;
        after_status = Some(resp.required_header("location")?.to_owned());
        Ok(())
    })
    .await;
    let mut after_second = None;
    rec.check("push/chunk-second", async {
        let location = after_status.ok_or("needs push/upload-status")?;
        let resp = t.send(patch(&location, chunk2, &range2)).await?;
        resp.expect(&[202])?;
        check_upload_range(&resp, CHUNKED_LEN, true)?;
        after_second = Some(resp.required_header("location")?.to_owned());
        Ok(())
    })
    .await;
    rec.check("push/chunk-close", async {
        let location = after_second.ok_or("needs push/chunk-second")?;
        let resp = t
            .send(
                t.put(&with_query(&location, "digest", &blob.digest))
                    .header("content-type", "application/octet-stream")
                    .header("content-length", "0"),
            )
            .await?;
        check_blob_created(t, &resp, &blob).await
    })
    .await;
    rec.check("push/chunk-retry", async {
        // As in the official suite: the first chunk again, at the session's first location.
        let start = start_upload(t, repo).await?;
        t.send(patch(&start, chunk1, &range1))
            .await?
            .expect(&[202])?;
        let resp = t.send(patch(&start, chunk1, &range1)).await?;
        resp.expect(&[416])?;
        let resp = t.send(t.get(&start)).await?;
        resp.expect(&[204])?;
        resp.required_header("location")?;
        check_upload_range(&resp, split, true)
    })
    .await;
    let last_in_put = Blob::random(CHUNKED_LEN, ctx.seed(14));
    rec.check("push/chunk-final-in-put", async {
        let (c1, c2) = last_in_put.bytes.split_at(split);
        let start = start_upload(t, repo).await?;
        let resp = t.send(patch(&start, c1, &range1)).await?;
        resp.expect(&[202])?;
        let location = resp.required_header("location")?;
        let resp = t
            .send(
                t.put(&with_query(location, "digest", &last_in_put.digest))
                    .header("content-type", "application/octet-stream")
                    .header("content-range", range2.as_str())
                    .body(c2.to_vec()),
            )
            .await?;
        check_blob_created(t, &resp, &last_in_put).await
    })
    .await;
    let recovered = Blob::random(CHUNKED_LEN, ctx.seed(15));
    rec.check("push/chunk-out-of-order-recover", async {
        let (c1, c2) = recovered.bytes.split_at(split);
        let start = start_upload(t, repo).await?;
        let resp = t.send(patch(&start, c1, &range1)).await?;
        resp.expect(&[202])?;
        let location = resp.required_header("location")?.to_owned();
        // Skip ahead by one byte: refused, and nothing is appended.
        let ahead = format!("{}-{}", split + 1, CHUNKED_LEN - 1);
        let resp = t.send(patch(&location, &c2[1..], &ahead)).await?;
        resp.expect(&[416])?;
        // Starting over from 0 (an overlap) is out of order too.
        let resp = t.send(patch(&location, c1, &range1)).await?;
        resp.expect(&[416])?;
        let resp = t.send(t.get(&location)).await?;
        resp.expect(&[204])?;
        check_upload_range(&resp, split, true)?;
        let location = resp.required_header("location")?;
        let resp = t.send(patch(location, c2, &range2)).await?;
        resp.expect(&[202])?;
        let location = resp.required_header("location")?;
        let resp = t
            .send(
                t.put(&with_query(location, "digest", &recovered.digest))
                    .header("content-type", "application/octet-stream")
                    .header("content-length", "0"),
            )
            .await?;
        check_blob_created(t, &resp, &recovered).await
    })
    .await;
    let put_recovered = Blob::random(CHUNKED_LEN, ctx.seed(17));
    rec.check("push/chunk-out-of-order-put", async {
        // The last chunk in the closing PUT, first skipping ahead: 416, then done right.
        let (c1, c2) = put_recovered.bytes.split_at(split);
        let start = start_upload(t, repo).await?;
        let resp = t.send(patch(&start, c1, &range1)).await?;
        resp.expect(&[202])?;
        let location = resp.required_header("location")?.to_owned();
        let ahead = format!("{}-{}", split + 1, CHUNKED_LEN - 1);
        let resp = t
            .send(
                t.put(&with_query(&location, "digest", &put_recovered.digest))
                    .header("content-type", "application/octet-stream")
                    .header("content-range", ahead.as_str())
                    .body(c2[1..].to_vec()),
            )
            .await?;
        resp.expect(&[416])?;
        let resp = t.send(t.get(&location)).await?;
        resp.expect(&[204])?;
        check_upload_range(&resp, split, true)?;
        let location = resp.required_header("location")?;
        let resp = t
            .send(
                t.put(&with_query(location, "digest", &put_recovered.digest))
                    .header("content-type", "application/octet-stream")
                    .header("content-range", range2.as_str())
                    .body(c2.to_vec()),
            )
            .await?;
        check_blob_created(t, &resp, &put_recovered).await
    })
    .await;
    rec.check("push/chunked-digest-mismatch", async {
        let wrong = sha256(format!("not the chunks {}", ctx.seed).as_bytes());
        let start = start_upload(t, repo).await?;
        let resp = t.send(patch(&start, chunk1, &range1)).await?;
        resp.expect(&[202])?;
        let location = resp.required_header("location")?;
        let resp = t
            .send(
                t.put(&with_query(location, "digest", &wrong))
                    .header("content-type", "application/octet-stream")
                    .header("content-length", "0"),
            )
            .await?;
        resp.expect_error(&[400], &["DIGEST_INVALID"])?;
        t.send(t.head(&blob_path(repo, &wrong)))
            .await?
            .expect(&[404])?;
        Ok(())
    })
    .await;
    cleanup(
        t,
        repo,
        &[],
        &[
            &blob.digest,
            &last_in_put.digest,
            &recovered.digest,
            &put_recovered.digest,
        ],
    )
    .await;
}

/// Cross-repository mounts: without `from`, from a repository holding the blob, of a blob
/// the source does not hold.
async fn mounts(ctx: &Ctx, rec: &mut Recorder<'_>, repo: &str, target: &str) {
    let t = &ctx.target;
    let blob = Blob::random(4321, ctx.seed(16));
    let uploads = uploads_path(target);
    let anonymous = ctx.repo("push-mount-anonymous");
    rec.check("push/mount-without-from", async {
        let missing = sha256(format!("hello world {}", ctx.seed).as_bytes());
        let resp = t
            .send(t.post(&with_query(&uploads, "mount", &missing)))
            .await?;
        resp.expect(&[202])?;
        check_location_under(t, &resp, &uploads)
    })
    .await;
    rec.check("push/mount", async {
        push_blobs(t, repo, &[&blob]).await?;
        let query = format!("mount={}&from={repo}", blob.digest);
        let resp = t.send(t.post(&format!("{uploads}?{query}"))).await?;
        check_mounted(t, &resp, target, &blob).await
    })
    .await;
    rec.check("push/mount-anonymous", async {
        // The blob exists (in `repo`); no `from` names it. Registries MAY mount it (201 at
        // the blob) or open an upload (202).
        let uploads = uploads_path(&anonymous);
        let resp = t
            .send(t.post(&with_query(&uploads, "mount", &blob.digest)))
            .await?;
        check_mounted(t, &resp, &anonymous, &blob).await
    })
    .await;
    rec.check("push/mount-missing", async {
        let absent = sha256(format!("not in the source {}", ctx.seed).as_bytes());
        let query = format!("mount={absent}&from={repo}");
        let resp = t.send(t.post(&format!("{uploads}?{query}"))).await?;
        resp.expect(&[202])?;
        check_location_under(t, &resp, &uploads)
    })
    .await;
    cleanup(t, target, &[], &[&blob.digest]).await;
    cleanup(t, &anonymous, &[], &[&blob.digest]).await;
    cleanup(t, repo, &[], &[&blob.digest]).await;
}

/// A mount into `target`: 201 at the blob's location in `target`, serving it (with a matching
/// digest header, if any), or 202 with an upload session under `target`.
async fn check_mounted(t: &Endpoint, resp: &Resp, target: &str, blob: &Blob) -> Result<(), String> {
    resp.expect(&[201, 202])?;
    if resp.status == 202 {
        return check_location_under(t, resp, &uploads_path(target));
    }
    let location = resp.required_header("location")?;
    let path = path_and_query(&t.resolve(location)?);
    if path != blob_path(target, &blob.digest) {
        return Err(format!(
            "{}: Location {location}, expected {}",
            resp.what,
            blob_path(target, &blob.digest)
        ));
    }
    check_digest_header(resp, &blob.bytes)?;
    let get = t.send(t.get(location)).await?;
    check_blob(&get, blob, false)
}

/// Against a read-only registry: uploads and manifest pushes are refused.
async fn read_only(ctx: &Ctx, rec: &mut Recorder<'_>) {
    let t = &ctx.target;
    let repo = ctx.repo("push");
    rec.check("push/read-only-upload", async {
        let resp = t
            .send(t.post(&uploads_path(&repo)).header("content-length", "0"))
            .await?;
        refused(&resp)
    })
    .await;
    rec.check("push/read-only-manifest", async {
        let m = data::simple_image(&ctx.config("read-only"), &[]);
        refused(&put_manifest(t, &repo, "latest", &m).await?)
    })
    .await;
}

/// A refused write: 405 (or 400) with `UNSUPPORTED`.
pub(super) fn refused(resp: &Resp) -> Result<(), String> {
    resp.expect_error(&[405, 400], &["UNSUPPORTED"])
}

/// A `PATCH` or status answer's `Range` is `0-<len-1>` (`required`: it must be there).
fn check_upload_range(resp: &Resp, len: usize, required: bool) -> Result<(), String> {
    let want = format!("0-{}", len.saturating_sub(1));
    match resp.header("range") {
        Some(r) if r == want => Ok(()),
        Some(r) => Err(format!("{}: Range {r:?}, expected {want:?}", resp.what)),
        None if required => Err(format!("{}: no Range header, expected {want:?}", resp.what)),
        None => Ok(()),
    }
}

/// A finished upload: 201 with a `Location` that serves the blob, and a matching digest
/// header if any.
pub(super) async fn check_blob_created(
    t: &Endpoint,
    resp: &Resp,
    blob: &Blob,
) -> Result<(), String> {
    resp.expect(&[201])?;
    check_digest_header(resp, &blob.bytes)?;
    let location = resp.required_header("location")?;
    let get = t.send(t.get(location)).await?;
    check_blob(&get, blob, false).map_err(|e| format!("the returned Location: {e}"))
}

/// A session `Location` under `prefix` (`/v2/<name>/blobs/uploads/`).
fn check_location_under(t: &Endpoint, resp: &Resp, prefix: &str) -> Result<(), String> {
    let location = resp.required_header("location")?;
    let path = path_and_query(&t.resolve(location)?);
    if path.starts_with(prefix) && path.len() > prefix.len() {
        Ok(())
    } else {
        Err(format!(
            "{}: Location {location} is not under {prefix}",
            resp.what
        ))
    }
}
