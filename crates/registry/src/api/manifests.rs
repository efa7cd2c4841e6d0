//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use shoal_core::{Algorithm, Digest, RepoName, Tag};

use super::{
    ApiError, ApiResult, DIGEST_HEADER, Reference, Req, build, builder, ensure_writable,
    parse_reference, parse_repo,
};
use crate::error::RegistryError;
use crate::manifest::{Descriptor, MAX_MANIFEST_BYTES, Manifest, ManifestError, detect_media_type};
use crate::store::{ManifestRecord, RegistryStore};

/// `OCI-Subject`: the subject of a pushed manifest.
const SUBJECT_HEADER: &str = "oci-subject";
/// `OCI-Tag`: one per tag a push applied from its `tag` query parameters.
const TAG_HEADER: &str = "oci-tag";
/// Most `tag` query parameters one push may carry.
const MAX_TAG_PARAMS: usize = 64;
/// How many referenced blobs and manifests a push checks at once.
const CHECK_CONCURRENCY: usize = 8;

/// `GET`/`HEAD`: the manifest by tag or digest, with `Content-Type` (its media type),
/// `Docker-Content-Digest` and `Content-Length`.
pub(super) async fn get<S: RegistryStore>(
    store: &S,
    name: &str,
    reference: &str,
    head: bool,
) -> ApiResult {
    let repo = parse_repo(name)?;
    // A reference that is not a valid tag names no manifest: 404, as the spec's and the
    // official suite's pulls of `.INVALID_MANIFEST_NAME` expect (pushes answer TAG_INVALID).
    let reference = match parse_reference(reference) {
        Err(RegistryError::TagInvalid(_)) => return Err(RegistryError::ManifestUnknown.into()),
        other => other?,
    };
    let digest = match reference {
        Reference::Digest(d) => d,
        Reference::Tag(tag) => store
            .resolve_tag(&repo, &tag)
            .await?
            .ok_or(RegistryError::ManifestUnknown)?,
    };
    let bytes = store
        .manifest(&repo, &digest)
        .await?
        .ok_or(RegistryError::ManifestUnknown)?;
    if Digest::compute(digest.algorithm(), &bytes) != digest {
        return Err(RegistryError::Internal(format!(
            "the stored manifest {digest} of {repo} does not match its digest"
        ))
        .into());
    }
    let builder = builder(StatusCode::OK)
        .header(header::CONTENT_TYPE, detect_media_type(&bytes))
        .header(header::CONTENT_LENGTH, bytes.len())
        .header(DIGEST_HEADER, digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""));
    build(
        builder,
        if head {
            Body::empty()
        } else {
            Body::from(bytes)
        },
    )
}

/// `PUT`: validates and stores a manifest (by tag, or by a digest it must hash to). Every blob
/// and child manifest it references must exist (`MANIFEST_BLOB_UNKNOWN`); its subject need
/// not. 201 with `Location`, `Docker-Content-Digest` and, with a subject, `OCI-Subject`.
///
/// `?tag=<tag>` (repeatable, at most [`MAX_TAG_PARAMS`]) also points those tags at the
/// manifest, which keeps a digest chosen by the client (say `sha512:…`) for its tags; each
/// applied tag comes back in an `OCI-Tag` header. An invalid one fails the whole push with
/// `TAG_INVALID` before anything is stored.
pub(super) async fn put<S: RegistryStore>(
    store: &S,
    name: &str,
    reference: &str,
    req: &Req<'_>,
    body: Body,
) -> ApiResult {
    ensure_writable(store)?;
    let repo = parse_repo(name)?;
    let reference = parse_reference(reference)?;
    let tag_params = tag_params(req)?;
    if req
        .content_length()
        .is_some_and(|len| len > MAX_MANIFEST_BYTES as u64)
    {
        drain(body.into_data_stream()).await;
        return Err(too_large());
    }
    let bytes = match read_limited(body).await? {
        Ok(bytes) => bytes,
        Err(rest) => {
            drain(rest).await;
            return Err(too_large());
        }
    };
    let (digest, reference_tag) = match reference {
        Reference::Digest(expected) => {
            let actual = Digest::compute(expected.algorithm(), &bytes);
            if actual != expected {
                return Err(RegistryError::DigestInvalid(format!(
                    "the manifest's digest is {actual}, not {expected}"
                ))
                .into());
            }
            (expected, None)
        }
        Reference::Tag(tag) => (Digest::compute(Algorithm::Sha256, &bytes), Some(tag)),
    };
    let manifest = match Manifest::parse(req.header(header::CONTENT_TYPE), &bytes) {
        Ok(m) => m,
        Err(ManifestError::Invalid(msg)) => return Err(RegistryError::ManifestInvalid(msg).into()),
        Err(ManifestError::Unsupported(mt)) => {
            return Err(RegistryError::UnsupportedMediaType(mt).into());
        }
        Err(ManifestError::TooLarge(_)) => return Err(too_large()),
    };
    check_references(store, &repo, &manifest).await?;
    let subject = manifest.subject.as_ref().map(|s| s.digest);
    let mut tags: Vec<Tag> = reference_tag.into_iter().collect();
    for tag in &tag_params {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    let record = ManifestRecord {
        descriptor: Descriptor {
            media_type: manifest.media_type,
            digest,
            size: bytes.len() as u64,
            artifact_type: manifest.artifact_type,
            annotations: manifest.annotations,
            platform: None,
            urls: None,
        },
        subject,
    };
    store.put_manifest(&repo, bytes, record, &tags).await?;
    let mut builder = builder(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/manifests/{digest}"))
        .header(DIGEST_HEADER, digest.to_string())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = subject {
        builder = builder.header(SUBJECT_HEADER, subject.to_string());
    }
    for tag in &tag_params {
        builder = builder.header(TAG_HEADER, tag.as_str());
    }
    build(builder, Body::empty())
}

/// The distinct tags named by `tag` query parameters, in order.
fn tag_params(req: &Req<'_>) -> Result<Vec<Tag>, ApiError> {
    let mut tags: Vec<Tag> = Vec::new();
    for (key, value) in req.query_pairs()? {
        if key != "tag" {
            continue;
        }
        let tag: Tag = value
            .parse()
            .map_err(|e| RegistryError::TagInvalid(format!("tag parameter {value:?}: {e}")))?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
        if tags.len() > MAX_TAG_PARAMS {
            return Err(RegistryError::TagInvalid(format!(
                "at most {MAX_TAG_PARAMS} tag parameters per push"
            ))
            .into());
        }
    }
    Ok(tags)
}

/// `DELETE`: by digest removes the manifest, by tag only the tag; 202, or 404
/// `MANIFEST_UNKNOWN`.
pub(super) async fn delete<S: RegistryStore>(store: &S, name: &str, reference: &str) -> ApiResult {
    ensure_writable(store)?;
    let repo = parse_repo(name)?;
    let found = match parse_reference(reference)? {
        Reference::Digest(d) => store.delete_manifest(&repo, &d).await?,
        Reference::Tag(t) => store.delete_tag(&repo, &t).await?,
    };
    if !found {
        return Err(RegistryError::ManifestUnknown.into());
    }
    build(
        builder(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0),
        Body::empty(),
    )
}

/// Checks that every blob and child manifest `manifest` references is in `repo`, a few at a
/// time.
async fn check_references<S: RegistryStore>(
    store: &S,
    repo: &RepoName,
    manifest: &Manifest,
) -> Result<(), RegistryError> {
    let blobs = manifest.blobs().into_iter().map(|d| (d, false));
    let children = manifest.children().into_iter().map(|d| (d, true));
    let mut checks = stream::iter(blobs.chain(children))
        .map(|(digest, is_manifest)| async move {
            let present = if is_manifest {
                store.manifest(repo, &digest).await?.is_some()
            } else {
                store.stat_blob(repo, &digest).await?.is_some()
            };
            Ok::<_, RegistryError>((digest, is_manifest, present))
        })
        .buffer_unordered(CHECK_CONCURRENCY);
    while let Some(check) = checks.next().await {
        let (digest, is_manifest, present) = check?;
        if !present {
            let what = if is_manifest { "manifest" } else { "blob" };
            return Err(RegistryError::ManifestBlobUnknown(format!(
                "{what} {digest} is not in {repo}"
            )));
        }
    }
    Ok(())
}

/// 413 with a spec error body.
fn too_large() -> ApiError {
    ApiError {
        error: RegistryError::ManifestInvalid(format!(
            "the manifest is larger than {MAX_MANIFEST_BYTES} bytes"
        )),
        status: Some(StatusCode::PAYLOAD_TOO_LARGE),
    }
}

/// The unread rest of a request body.
type BodyRest = axum::body::BodyDataStream;

/// Reads a manifest body whole; more than [`MAX_MANIFEST_BYTES`] gives back the unread rest
/// (`Ok(Err(rest))`) so that it can be drained.
async fn read_limited(body: Body) -> Result<Result<Bytes, BodyRest>, RegistryError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::ManifestInvalid(format!("reading the request body: {e}"))
        })?;
        if buf.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Ok(Err(stream));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(buf.freeze()))
}

/// Most bytes of an oversized body read (and dropped) before answering 413, so that the client
/// gets to read the answer instead of a connection reset. Beyond this the connection closes.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads and drops up to [`DRAIN_LIMIT`] more bytes of a refused body.
async fn drain(mut rest: BodyRest) {
    let mut seen = 0;
    while let Some(Ok(chunk)) = rest.next().await {
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}
