//! Content management: deleting tags, manifests (and with them their tags and referrers
//! entries) and blobs, then `GET` is 404; deleting again is 404. As in the official suite's
//! `04_management_test.go`, but with deletes required to work (202) unless the registry is
//! read-only, where every delete must be refused (400 or 405).

use super::{
    Ctx, Recorder, blob_path, cleanup, fetch_manifest, manifest_path, push_blobs, push_manifest,
};
use crate::data::{self, Blob, Extras, OCI_EMPTY};
use crate::http::Endpoint;

pub(super) async fn run(ctx: &Ctx, rec: &mut Recorder<'_>) {
    if ctx.read_only {
        return read_only(ctx, rec).await;
    }
    let t = &ctx.target;
    let repo = ctx.repo("management");
    let repo = repo.as_str();
    let config = ctx.config("management");
    let layer = Blob::random(300, ctx.seed(40));
    let image = data::simple_image(&config, &[&layer]);
    let subject_config = ctx.config("management-subject");
    let subject = data::simple_image(&subject_config, &[&layer]);
    let empty = Blob::new(b"{}".to_vec());
    let referrer = data::image(
        empty.descriptor(OCI_EMPTY),
        vec![layer.descriptor("application/vnd.shoal.conformance.note")],
        Extras {
            artifact_type: Some("application/vnd.shoal.conformance.note".into()),
            subject: Some(subject.descriptor()),
            annotations: None,
        },
    );

    let ok = rec
        .check("management/setup", async {
            push_blobs(t, repo, &[&config, &layer, &empty, &subject_config]).await?;
            for tag in ["tagtest0", "tagtest1"] {
                push_manifest(t, repo, tag, &image).await?;
            }
            push_manifest(t, repo, "subject", &subject).await?;
            Ok(())
        })
        .await;
    if !ok {
        return;
    }

    rec.check("management/delete-tag", async {
        let resp = t.send(t.delete(&manifest_path(repo, "tagtest0"))).await?;
        resp.expect(&[202])?;
        let resp = fetch_manifest(t, repo, "tagtest0", false).await?;
        resp.expect_error(&[404], &["MANIFEST_UNKNOWN"])?;
        let resp = fetch_manifest(t, repo, &image.digest, false).await?;
        resp.expect(&[200])
            .map_err(|e| format!("deleting a tag must keep the manifest: {e}"))?;
        check_tags(t, repo, &["tagtest1"], &["tagtest0"]).await
    })
    .await;
    rec.check("management/delete-manifest", async {
        let resp = t
            .send(t.delete(&manifest_path(repo, &image.digest)))
            .await?;
        resp.expect(&[202])?;
        for head in [false, true] {
            let resp = fetch_manifest(t, repo, &image.digest, head).await?;
            if head {
                resp.expect(&[404])?;
            } else {
                resp.expect_error(&[404], &["MANIFEST_UNKNOWN"])?;
            }
        }
        // Tags pointing at a deleted manifest are gone with it.
        let resp = fetch_manifest(t, repo, "tagtest1", false).await?;
        resp.expect_error(&[404], &["MANIFEST_UNKNOWN"])?;
        check_tags(t, repo, &["subject"], &["tagtest0", "tagtest1"]).await
    })
    .await;
    rec.check("management/delete-manifest-unknown", async {
        let resp = t
            .send(t.delete(&manifest_path(repo, &image.digest)))
            .await?;
        resp.expect_error(&[404], &["MANIFEST_UNKNOWN"])
    })
    .await;
    rec.check("management/delete-referrer", async {
        push_manifest(t, repo, &referrer.digest, &referrer).await?;
        let referrers = format!("/v2/{repo}/referrers/{}", subject.digest);
        let listed = referrer_count(t, &referrers).await?;
        if listed != 1 {
            return Err(format!(
                "{referrers}: {listed} referrers before the delete, expected 1"
            ));
        }
        let resp = t
            .send(t.delete(&manifest_path(repo, &referrer.digest)))
            .await?;
        resp.expect(&[202])?;
        match referrer_count(t, &referrers).await? {
            0 => Ok(()),
            n => Err(format!(
                "{referrers}: {n} referrers after deleting the only one"
            )),
        }
    })
    .await;
    rec.check("management/delete-blob", async {
        let path = blob_path(repo, &config.digest);
        let resp = t.send(t.delete(&path)).await?;
        resp.expect(&[202])?;
        t.send(t.head(&path)).await?.expect(&[404])?;
        let resp = t.send(t.get(&path)).await?;
        resp.expect_error(&[404], &["BLOB_UNKNOWN"])
    })
    .await;
    rec.check("management/delete-blob-unknown", async {
        let resp = t.send(t.delete(&blob_path(repo, &config.digest))).await?;
        resp.expect_error(&[404], &["BLOB_UNKNOWN"])
    })
    .await;

    cleanup(
        t,
        repo,
        &[&referrer.digest, &subject.digest],
        &[&layer.digest, &empty.digest, &subject_config.digest],
    )
    .await;
}

/// The tags list has every tag of `present` and none of `absent` (a repository left without
/// tags may also be unknown: 404 `NAME_UNKNOWN`).
async fn check_tags(
    t: &Endpoint,
    repo: &str,
    present: &[&str],
    absent: &[&str],
) -> Result<(), String> {
    let resp = t.send(t.get(&format!("/v2/{repo}/tags/list"))).await?;
    if resp.status == 404 && present.is_empty() {
        return resp.expect_error(&[404], &["NAME_UNKNOWN"]);
    }
    resp.expect(&[200])?;
    let body = resp.json()?;
    let tags: Vec<&str> = body["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    for tag in present {
        if !tags.contains(tag) {
            return Err(format!("{}: tag {tag} is missing from {tags:?}", resp.what));
        }
    }
    for tag in absent {
        if tags.contains(tag) {
            return Err(format!(
                "{}: deleted tag {tag} is still listed in {tags:?}",
                resp.what
            ));
        }
    }
    Ok(())
}

/// How many manifests the referrers index at `path` lists.
async fn referrer_count(t: &Endpoint, path: &str) -> Result<usize, String> {
    let resp = t.send(t.get(path)).await?;
    resp.expect(&[200])?;
    Ok(resp.json()?["manifests"].as_array().map_or(0, Vec::len))
}

/// Against a read-only registry: deleting a tag, a manifest or a blob is refused (the spec:
/// 400 or 405 when deletes are disabled), and the content stays.
async fn read_only(ctx: &Ctx, rec: &mut Recorder<'_>) {
    let (t, s) = (&ctx.target, &ctx.setup);
    let repo = ctx.repo("management");
    let repo = repo.as_str();
    let config = ctx.config("management-read-only");
    let image = data::simple_image(&config, &[]);
    rec.check("management/read-only-delete", async {
        push_blobs(s, repo, &[&config]).await?;
        push_manifest(s, repo, "keep", &image).await?;
        for path in [
            manifest_path(repo, "keep"),
            manifest_path(repo, &image.digest),
            blob_path(repo, &config.digest),
        ] {
            let resp = t.send(t.delete(&path)).await?;
            resp.expect(&[400, 405])?;
        }
        let resp = fetch_manifest(t, repo, "keep", false).await?;
        resp.expect(&[200])
            .map_err(|e| format!("a refused delete must keep the manifest: {e}"))?;
        Ok(())
    })
    .await;
    cleanup(s, repo, &[&image.digest], &[&config.digest]).await;
}
