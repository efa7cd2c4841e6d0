//! Content discovery: the tags list (order, `n`, `last`, `Link`, unknown repositories) and
//! the referrers API (`OCI-Subject` on push, the index it answers, `artifactType` filtering
//! with `OCI-Filters-Applied`, subjects that do not exist), as in the official suite's
//! `03_discovery_test.go`.

use serde_json::{Value, json};

use super::{Ctx, Recorder, cleanup, push_blobs, push_manifest};
use crate::data::{self, ANNOTATION, Blob, Extras, Manifest, OCI_EMPTY, OCI_INDEX, sha256};
use crate::http::{Endpoint, Resp};

const TAGS: [&str; 4] = ["test0", "test1", "test2", "test3"];
const TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
const TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";
const TYPE_INDEX: &str = "application/vnd.food.stand";

/// A referrer: its manifest, and the `artifactType` and annotation value the referrers API
/// must report for it.
struct Referrer {
    manifest: Manifest,
    artifact_type: &'static str,
    annotation: Option<&'static str>,
}

/// The referrers setup of the official suite: two artifacts whose config media type is the
/// artifact type, two with `artifactType` and an empty config, an index artifact, all with
/// the same subject, and one artifact whose subject is never pushed.
struct Referrers {
    subject: Manifest,
    missing_subject: Manifest,
    before: Vec<Referrer>,
    after: Vec<Referrer>,
    orphan: Referrer,
    blobs: Vec<Blob>,
}

fn referrers(ctx: &Ctx, layer: &Blob) -> Referrers {
    let empty = Blob::new(b"{}".to_vec());
    let blob_a = Blob::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
    let blob_b = Blob::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
    let config = ctx.config("discovery-subject");
    let subject = data::simple_image(&config, &[layer]);
    let missing_subject = data::simple_image(&ctx.config("discovery-missing-subject"), &[layer]);
    let annotations = |v: &str| Some(json!({ ANNOTATION: v }));
    let with_config = |blob: &Blob, t: &str, note: &str| {
        data::image(
            blob.descriptor(t),
            vec![empty.descriptor(OCI_EMPTY)],
            Extras {
                subject: Some(subject.descriptor()),
                annotations: annotations(note),
                ..Extras::default()
            },
        )
    };
    let with_type = |blob: &Blob, t: &str, subj: &Manifest, note: Option<&str>| {
        data::image(
            empty.descriptor(OCI_EMPTY),
            vec![blob.descriptor(t)],
            Extras {
                artifact_type: Some(t.to_owned()),
                subject: Some(subj.descriptor()),
                annotations: note.and_then(annotations),
            },
        )
    };
    let a_config = with_config(&blob_a, TYPE_A, "test config a");
    let a_layer = with_type(&blob_a, TYPE_A, &subject, Some("test layer a"));
    let index = data::index(
        vec![a_config.descriptor(), a_layer.descriptor()],
        Extras {
            artifact_type: Some(TYPE_INDEX.to_owned()),
            subject: Some(subject.descriptor()),
            annotations: annotations("test index"),
        },
    );
    let b_config = with_config(&blob_b, TYPE_B, "test config b");
    let b_layer = with_type(&blob_b, TYPE_B, &subject, Some("test layer b"));
    let orphan = with_type(&blob_b, TYPE_B, &missing_subject, None);
    let r = |manifest, artifact_type, annotation| Referrer {
        manifest,
        artifact_type,
        annotation,
    };
    Referrers {
        subject,
        missing_subject,
        before: vec![
            r(a_config, TYPE_A, Some("test config a")),
            r(a_layer, TYPE_A, Some("test layer a")),
            r(index, TYPE_INDEX, Some("test index")),
        ],
        after: vec![
            r(b_config, TYPE_B, Some("test config b")),
            r(b_layer, TYPE_B, Some("test layer b")),
        ],
        orphan: r(orphan, TYPE_B, None),
        blobs: vec![empty, blob_a, blob_b, config],
    }
}

pub(super) async fn run(ctx: &Ctx, rec: &mut Recorder<'_>) {
    let t = &ctx.target;
    let s = &ctx.setup;
    let repo = ctx.repo("discovery");
    let repo = repo.as_str();
    let config = ctx.config("discovery-tags");
    let layer = Blob::random(500, ctx.seed(30));
    let image = data::simple_image(&config, &[&layer]);
    let refs = referrers(ctx, &layer);

    let ok = rec
        .check("discovery/setup", async {
            push_blobs(s, repo, &[&config, &layer]).await?;
            for tag in TAGS {
                push_manifest(s, repo, tag, &image).await?;
            }
            let blobs: Vec<&Blob> = refs.blobs.iter().collect();
            push_blobs(s, repo, &blobs).await
        })
        .await;
    if !ok {
        return;
    }

    tag_checks(ctx, rec, repo).await;

    rec.check("discovery/referrers-empty", async {
        let missing = sha256(format!("no referrers {}", ctx.seed).as_bytes());
        let (_, index) = list_referrers(t, repo, &missing, None).await?;
        match index["manifests"].as_array() {
            Some(m) if m.is_empty() => Ok(()),
            _ => Err(format!("expected an empty manifests list, got {index}")),
        }
    })
    .await;
    let before: Vec<&Referrer> = refs.before.iter().collect();
    let after: Vec<&Referrer> = refs.after.iter().collect();
    rec.check(
        "discovery/referrers-push-before-subject",
        push_referrers(ctx, repo, &refs.subject, &before),
    )
    .await;
    rec.check("discovery/referrers-push-after-subject", async {
        push_manifest(s, repo, "tagtest0", &refs.subject).await?;
        push_referrers(ctx, repo, &refs.subject, &after).await
    })
    .await;
    rec.check(
        "discovery/referrers-push-missing-subject",
        push_referrers(ctx, repo, &refs.missing_subject, &[&refs.orphan]),
    )
    .await;
    rec.check("discovery/referrers-list", async {
        let (_, index) = list_referrers(t, repo, &refs.subject.digest, None).await?;
        let want: Vec<&Referrer> = refs.before.iter().chain(&refs.after).collect();
        check_referrers(&index, &want)
    })
    .await;
    rec.check("discovery/referrers-filter", async {
        let (resp, index) = list_referrers(t, repo, &refs.subject.digest, Some(TYPE_A)).await?;
        let applied = resp
            .header("oci-filters-applied")
            .is_some_and(|h| h.split(',').any(|f| f.trim() == "artifactType"));
        let all: Vec<&Referrer> = refs.before.iter().chain(&refs.after).collect();
        if applied {
            let filtered: Vec<&Referrer> = all
                .into_iter()
                .filter(|r| r.artifact_type == TYPE_A)
                .collect();
            check_referrers(&index, &filtered)
        } else {
            // Filtering is a SHOULD: without OCI-Filters-Applied the list is unfiltered.
            check_referrers(&index, &all)
                .map_err(|e| format!("{e} (no OCI-Filters-Applied: expected the unfiltered list)"))
        }
    })
    .await;
    rec.check("discovery/referrers-missing-subject", async {
        let (_, index) = list_referrers(t, repo, &refs.missing_subject.digest, None).await?;
        check_referrers(&index, &[&refs.orphan])
    })
    .await;
    rec.check("discovery/referrers-invalid-digest", async {
        let resp = t
            .send(t.get(&format!("/v2/{repo}/referrers/sha256:not-a-digest")))
            .await?;
        resp.expect(&[400]).map(|_| ())
    })
    .await;

    let mut manifests: Vec<&str> = refs
        .before
        .iter()
        .chain(&refs.after)
        .chain([&refs.orphan])
        .map(|r| r.manifest.digest.as_str())
        .collect();
    manifests.extend([refs.subject.digest.as_str(), image.digest.as_str()]);
    let mut blobs: Vec<&str> = refs.blobs.iter().map(|b| b.digest.as_str()).collect();
    blobs.extend([config.digest.as_str(), layer.digest.as_str()]);
    cleanup(s, repo, &manifests, &blobs).await;
}

async fn tag_checks(ctx: &Ctx, rec: &mut Recorder<'_>, repo: &str) {
    let t = &ctx.target;
    let list = format!("/v2/{repo}/tags/list");
    let list = list.as_str();
    let expect = |query: &'static str, want: &'static [&'static str]| async move {
        let (tags, link, resp) = tags_page(t, repo, &format!("{list}{query}")).await?;
        if tags != want {
            return Err(format!("{}: tags {tags:?}, expected {want:?}", resp.what));
        }
        if let Some(link) = link {
            check_link(t, &resp, &link, list)?;
        }
        Ok(())
    };
    rec.check("discovery/tags-list", expect("", &TAGS)).await;
    rec.check("discovery/tags-list-n", expect("?n=2", &TAGS[..2]))
        .await;
    rec.check(
        "discovery/tags-list-last",
        expect("?n=2&last=test1", &TAGS[2..]),
    )
    .await;
    rec.check(
        "discovery/tags-list-last-only",
        expect("?last=test1", &TAGS[2..]),
    )
    .await;
    rec.check("discovery/tags-list-n-zero", async {
        let (tags, link, resp) = tags_page(t, repo, &format!("{list}?n=0")).await?;
        if !tags.is_empty() || link.is_some() {
            return Err(format!(
                "{}: n=0 must answer an empty list without Link, got {tags:?} and Link {link:?}",
                resp.what
            ));
        }
        Ok(())
    })
    .await;
    rec.check("discovery/tags-list-pagination", async {
        // One tag per page, following `Link` when given, else `last`.
        let mut all = Vec::new();
        let mut next = format!("{list}?n=1");
        for _ in 0..=TAGS.len() {
            let (tags, link, resp) = tags_page(t, repo, &next).await?;
            if tags.len() > 1 {
                return Err(format!("{}: {} tags for n=1", resp.what, tags.len()));
            }
            let Some(last) = tags.last().cloned() else {
                break;
            };
            all.extend(tags);
            next = match link {
                Some(link) => check_link(t, &resp, &link, list)?,
                None => format!("{list}?n=1&last={last}"),
            };
        }
        if all != TAGS {
            return Err(format!(
                "paging one tag at a time gave {all:?}, expected {TAGS:?}"
            ));
        }
        Ok(())
    })
    .await;
    rec.check("discovery/tags-list-unknown-repo", async {
        let other = ctx.repo("never-pushed");
        let resp = t.send(t.get(&format!("/v2/{other}/tags/list"))).await?;
        if resp.status == 200 {
            let tags = resp.json()?["tags"].clone();
            return match tags.as_array() {
                Some(t) if t.is_empty() => Ok(()),
                None if tags.is_null() => Ok(()),
                _ => Err(resp.fail("404 NAME_UNKNOWN or an empty list")),
            };
        }
        resp.expect_error(&[404], &["NAME_UNKNOWN"])
    })
    .await;
}

/// One page of the tags list: 200, `{"name": <repo>, "tags": [...]}`, and the `Link` header.
async fn tags_page(
    t: &Endpoint,
    repo: &str,
    path: &str,
) -> Result<(Vec<String>, Option<String>, Resp), String> {
    let resp = t.send(t.get(path)).await?;
    resp.expect(&[200])?;
    let body = resp.json()?;
    if body["name"] != repo {
        return Err(format!(
            "{}: name {}, expected {repo:?}",
            resp.what, body["name"]
        ));
    }
    let tags = match &body["tags"] {
        Value::Array(tags) => tags
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{}: tags are not all strings: {body}", resp.what))?,
        // An empty page may say `null`.
        Value::Null => Vec::new(),
        other => return Err(format!("{}: tags is {other}, not a list", resp.what)),
    };
    let link = resp.header("link").map(str::to_owned);
    Ok((tags, link, resp))
}

/// A `Link: <url>; rel="next"` header pointing at the tags list; the URL.
fn check_link(t: &Endpoint, resp: &Resp, link: &str, list: &str) -> Result<String, String> {
    let bad = || format!("{}: malformed Link {link:?}", resp.what);
    let (target, params) = link.split_once(';').ok_or_else(bad)?;
    let url = target
        .trim()
        .strip_prefix('<')
        .and_then(|u| u.strip_suffix('>'))
        .ok_or_else(bad)?;
    if !params.replace(' ', "").contains("rel=\"next\"") {
        return Err(format!("{}: Link {link:?} is not rel=\"next\"", resp.what));
    }
    if t.resolve(url)?.path() != list {
        return Err(format!(
            "{}: Link {link:?} does not point at {list}",
            resp.what
        ));
    }
    Ok(url.to_owned())
}

/// `GET /v2/<repo>/referrers/<digest>[?artifactType=]`: 200, an OCI index.
async fn list_referrers(
    t: &Endpoint,
    repo: &str,
    digest: &str,
    artifact_type: Option<&str>,
) -> Result<(Resp, Value), String> {
    let mut path = format!("/v2/{repo}/referrers/{digest}");
    if let Some(at) = artifact_type {
        path = format!("{path}?artifactType={at}");
    }
    let resp = t.send(t.get(&path)).await?;
    resp.expect(&[200])?;
    if resp.content_type() != Some(OCI_INDEX) {
        return Err(format!(
            "{}: Content-Type {:?}, expected {OCI_INDEX}",
            resp.what,
            resp.content_type()
        ));
    }
    let index = resp.json()?;
    if index["schemaVersion"] != 2 || index["mediaType"] != OCI_INDEX {
        return Err(format!("{}: not an OCI image index: {index}", resp.what));
    }
    Ok((resp, index))
}

/// The index lists exactly `want`, each with its media type, size, artifact type and
/// annotations.
fn check_referrers(index: &Value, want: &[&Referrer]) -> Result<(), String> {
    let got = index["manifests"]
        .as_array()
        .ok_or_else(|| format!("no manifests list in {index}"))?;
    if got.len() != want.len() {
        let digests: Vec<&Value> = got.iter().map(|d| &d["digest"]).collect();
        return Err(format!(
            "{} referrers {digests:?}, expected {}",
            got.len(),
            want.len()
        ));
    }
    for r in want {
        let m = &r.manifest;
        let d = got
            .iter()
            .find(|d| d["digest"] == m.digest.as_str())
            .ok_or_else(|| format!("referrer {} is missing", m.digest))?;
        let annotations = d.get("annotations").filter(|a| !a.is_null());
        let want_annotations = r.annotation.map(|v| json!({ ANNOTATION: v }));
        let annotations_ok = match (&want_annotations, annotations) {
            (Some(w), Some(a)) => w == a,
            (None, None) => true,
            (None, Some(a)) => a.as_object().is_some_and(serde_json::Map::is_empty),
            (Some(_), None) => false,
        };
        if d["mediaType"] != m.media_type.as_str()
            || d["size"] != m.bytes.len()
            || d["artifactType"] != r.artifact_type
            || !annotations_ok
        {
            return Err(format!(
                "descriptor {d} for referrer {}: expected mediaType {}, size {}, artifactType \
                 {}, annotations {}",
                m.digest,
                m.media_type,
                m.bytes.len(),
                r.artifact_type,
                want_annotations.unwrap_or(Value::Null)
            ));
        }
    }
    Ok(())
}

/// Pushes `referrers` (by digest) to the setup registry; each push must answer
/// `OCI-Subject: <subject>` (unless the target is read-only: content then goes to another
/// registry, whose headers are not the target's).
async fn push_referrers(
    ctx: &Ctx,
    repo: &str,
    subject: &Manifest,
    referrers: &[&Referrer],
) -> Result<(), String> {
    for r in referrers {
        let resp = push_manifest(&ctx.setup, repo, &r.manifest.digest, &r.manifest).await?;
        if !ctx.read_only {
            check_subject_header(&resp, subject)?;
        }
    }
    Ok(())
}

/// A manifest pushed with a subject: `OCI-Subject: <subject digest>`.
fn check_subject_header(resp: &Resp, subject: &Manifest) -> Result<(), String> {
    match resp.header("oci-subject") {
        Some(s) if s == subject.digest => Ok(()),
        other => Err(format!(
            "{}: OCI-Subject {other:?}, expected {}",
            resp.what, subject.digest
        )),
    }
}
