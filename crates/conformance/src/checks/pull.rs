//! Pull: the base endpoint, blobs (`HEAD`/`GET`, ranges, 404s) and manifests (by tag and by
//! digest, images and indexes, 404s), as in the official suite's `01_pull_test.go` and the
//! newer runner's blob range tests.

use std::ops::Range;

use super::{
    Ctx, Recorder, blob_path, check_blob, check_manifest, cleanup, fetch_manifest, push_blobs,
    push_manifest,
};
use crate::data::{self, Blob, Extras, Manifest, sha256};

/// The official suite's name for a manifest that does not exist (an invalid tag, which the
/// suite nevertheless expects a plain 404 for).
const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
/// The range tests' blob size (as in the official runner).
const RANGE_BLOB_LEN: usize = 2048;

struct Content {
    repo: String,
    config: Blob,
    layer: Blob,
    by_tag: Manifest,
    by_digest: Manifest,
    index: Manifest,
}

async fn setup(ctx: &Ctx) -> Result<Content, String> {
    let repo = ctx.repo("pull");
    let config = ctx.config("pull-0");
    let config1 = ctx.config("pull-1");
    let layer = Blob::random(RANGE_BLOB_LEN, ctx.seed(1));
    push_blobs(&ctx.setup, &repo, &[&config, &config1, &layer]).await?;
    let by_tag = data::simple_image(&config, &[&layer]);
    let by_digest = data::simple_image(&config1, &[&layer]);
    push_manifest(&ctx.setup, &repo, "tagtest0", &by_tag).await?;
    push_manifest(&ctx.setup, &repo, &by_digest.digest, &by_digest).await?;
    let index = data::index(
        vec![
            data::platform_descriptor(&by_tag, "amd64"),
            data::platform_descriptor(&by_digest, "arm64"),
        ],
        Extras::default(),
    );
    push_manifest(&ctx.setup, &repo, "index", &index).await?;
    Ok(Content {
        repo,
        config,
        layer,
        by_tag,
        by_digest,
        index,
    })
}

pub(super) async fn run(ctx: &Ctx, rec: &mut Recorder<'_>) {
    let t = &ctx.target;
    rec.check("pull/base", async {
        t.send(t.get("/v2/")).await?.expect(&[200]).map(|_| ())
    })
    .await;

    let mut content = None;
    rec.check("pull/setup", async {
        content = Some(setup(ctx).await?);
        Ok(())
    })
    .await;
    let Some(c) = content else { return };
    let repo = c.repo.as_str();
    let missing = sha256(format!("missing {}", ctx.seed).as_bytes());

    rec.check("pull/blob-head-missing", async {
        let resp = t.send(t.head(&blob_path(repo, &missing))).await?;
        resp.expect(&[404])?;
        super::check_no_body(&resp)
    })
    .await;
    rec.check("pull/blob-head", async {
        let resp = t.send(t.head(&blob_path(repo, &c.config.digest))).await?;
        check_blob(&resp, &c.config, true)
    })
    .await;
    rec.check("pull/blob-get-missing", async {
        let resp = t.send(t.get(&blob_path(repo, &missing))).await?;
        resp.expect_error(&[404], &["BLOB_UNKNOWN"])
    })
    .await;
    rec.check("pull/blob-get", async {
        for blob in [&c.config, &c.layer] {
            let resp = t.send(t.get(&blob_path(repo, &blob.digest))).await?;
            check_blob(&resp, blob, false)?;
        }
        Ok(())
    })
    .await;

    let n = RANGE_BLOB_LEN;
    let ranges: [(&'static str, String, Option<Range<usize>>); 6] = [
        ("pull/blob-range", "bytes=500-1499".into(), Some(500..1500)),
        (
            "pull/blob-range-open-ended",
            "bytes=500-".into(),
            Some(500..n),
        ),
        (
            "pull/blob-range-suffix",
            "bytes=-500".into(),
            Some(n - 500..n),
        ),
        (
            "pull/blob-range-clamped",
            "bytes=2000-5000".into(),
            Some(2000..n),
        ),
        (
            "pull/blob-range-unsatisfiable",
            "bytes=5000-10000".into(),
            None,
        ),
        ("pull/blob-range-inverted", "bytes=500-0".into(), None),
    ];
    for (id, header, want) in ranges {
        rec.check(id, ranged_get(ctx, repo, &c.layer, &header, want))
            .await;
    }

    for (id, head) in [
        ("pull/manifest-head-missing", true),
        ("pull/manifest-get-missing", false),
    ] {
        rec.check(id, async move {
            let resp = fetch_manifest(t, repo, NONEXISTENT_MANIFEST, head).await?;
            resp.expect(&[404]).map(|_| ())
        })
        .await;
    }
    rec.check("pull/manifest-get-missing-tag", async {
        let tag = format!("missing-{:08x}", ctx.seed as u32);
        let resp = fetch_manifest(t, repo, &tag, false).await?;
        resp.expect_error(&[404], &["MANIFEST_UNKNOWN"])
    })
    .await;
    rec.check("pull/manifest-get-missing-digest", async {
        let resp = fetch_manifest(t, repo, &missing, false).await?;
        resp.expect_error(&[404], &["MANIFEST_UNKNOWN"])
    })
    .await;
    let by_tag = &c.by_tag;
    let cases = [
        ("pull/manifest-head-digest", by_tag.digest.as_str(), true),
        ("pull/manifest-head-tag", "tagtest0", true),
        ("pull/manifest-get-digest", by_tag.digest.as_str(), false),
        ("pull/manifest-get-tag", "tagtest0", false),
    ];
    for (id, reference, head) in cases {
        rec.check(id, async move {
            let resp = fetch_manifest(t, repo, reference, head).await?;
            check_manifest(&resp, by_tag, head)
        })
        .await;
    }
    rec.check("pull/manifest-pushed-by-digest", async {
        for head in [true, false] {
            let resp = fetch_manifest(t, repo, &c.by_digest.digest, head).await?;
            check_manifest(&resp, &c.by_digest, head)?;
        }
        Ok(())
    })
    .await;
    rec.check("pull/index-get", async {
        for (reference, head) in [("index", false), (c.index.digest.as_str(), true)] {
            let resp = fetch_manifest(t, repo, reference, head).await?;
            check_manifest(&resp, &c.index, head)?;
        }
        Ok(())
    })
    .await;
    rec.check("pull/error-code", async {
        // As in the official suite: an invalid digest reference is 400 (with a spec error
        // body) or 404.
        let resp = fetch_manifest(t, repo, "sha256:totallywrong", false).await?;
        resp.expect(&[400, 404])?;
        if resp.status == 400 && resp.error_codes().is_none_or(|c| c.is_empty()) {
            return Err(resp.fail("a spec error body with the 400"));
        }
        Ok(())
    })
    .await;

    cleanup(
        &ctx.setup,
        repo,
        &[&c.index.digest, &c.by_tag.digest, &c.by_digest.digest],
        &[&c.config.digest, &c.layer.digest],
    )
    .await;
}

/// A ranged `GET` of `blob`: 206 with `Content-Range`, `Content-Length` and the bytes of
/// `want`, or (`None`) 416 with, if any, `Content-Range: bytes */<size>`.
async fn ranged_get(
    ctx: &Ctx,
    repo: &str,
    blob: &Blob,
    header: &str,
    want: Option<Range<usize>>,
) -> Result<(), String> {
    let t = &ctx.target;
    let resp = t
        .send(
            t.get(&blob_path(repo, &blob.digest))
                .header("range", header),
        )
        .await?;
    let size = blob.bytes.len();
    let Some(want) = want else {
        resp.expect(&[416])?;
        return match resp.header("content-range") {
            Some(cr) if cr != format!("bytes */{size}") => Err(format!(
                "{}: Content-Range {cr:?} on a 416, expected \"bytes */{size}\"",
                resp.what
            )),
            _ => Ok(()),
        };
    };
    resp.expect(&[206])
        .map_err(|e| format!("{e} (Range: {header})"))?;
    let (first, last) = (want.start, want.end - 1);
    let cr = resp.required_header("content-range")?;
    if cr != format!("bytes {first}-{last}/{size}") && cr != format!("bytes {first}-{last}/*") {
        return Err(format!(
            "{}: Content-Range {cr:?}, expected \"bytes {first}-{last}/{size}\"",
            resp.what
        ));
    }
    super::check_length(&resp, want.len())?;
    if resp.body != blob.bytes[want.clone()] {
        return Err(format!(
            "{}: the body is not bytes {first}-{last} of the blob",
            resp.what
        ));
    }
    Ok(())
}
