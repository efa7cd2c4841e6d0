//! Every check's id and one-line description (what `--list` prints and the report shows).

/// `(id, what the check verifies)` for every check, in run order. `end-N` are the spec's
/// endpoint ids.
pub static CATALOG: &[(&str, &str)] = &[
    // Pull.
    ("pull/base", "GET /v2/ is 200 (end-1)"),
    (
        "pull/setup",
        "push the pull content (2 configs, a layer, 2 images, an index)",
    ),
    (
        "pull/blob-head-missing",
        "HEAD of an unknown blob is 404 without a body (end-2)",
    ),
    (
        "pull/blob-head",
        "HEAD of a blob is 200 with Content-Length, digest, no body",
    ),
    (
        "pull/blob-get-missing",
        "GET of an unknown blob is 404 BLOB_UNKNOWN",
    ),
    (
        "pull/blob-get",
        "GET of a blob is 200 with its bytes, length and digest",
    ),
    (
        "pull/blob-range",
        "Range bytes=500-1499 is 206 with Content-Range and the bytes",
    ),
    (
        "pull/blob-range-open-ended",
        "Range bytes=500- is 206 up to the end",
    ),
    (
        "pull/blob-range-suffix",
        "Range bytes=-500 is 206 with the last 500 bytes",
    ),
    (
        "pull/blob-range-clamped",
        "Range past the end is 206, clamped to the blob",
    ),
    (
        "pull/blob-range-unsatisfiable",
        "Range starting past the end is 416",
    ),
    ("pull/blob-range-inverted", "Range bytes=500-0 is 416"),
    (
        "pull/manifest-head-missing",
        "HEAD manifests/.INVALID_MANIFEST_NAME is 404 (official suite)",
    ),
    (
        "pull/manifest-get-missing",
        "GET manifests/.INVALID_MANIFEST_NAME is 404 (official suite)",
    ),
    (
        "pull/manifest-get-missing-tag",
        "GET of an unknown tag is 404 MANIFEST_UNKNOWN (end-3)",
    ),
    (
        "pull/manifest-get-missing-digest",
        "GET of an unknown digest is 404 MANIFEST_UNKNOWN",
    ),
    (
        "pull/manifest-head-digest",
        "HEAD manifest by digest: 200, type, length, digest, no body",
    ),
    (
        "pull/manifest-head-tag",
        "HEAD manifest by tag: 200, type, length, digest, no body",
    ),
    (
        "pull/manifest-get-digest",
        "GET manifest by digest: 200 with the exact bytes and type",
    ),
    (
        "pull/manifest-get-tag",
        "GET manifest by tag: 200 with the exact bytes and type",
    ),
    (
        "pull/manifest-pushed-by-digest",
        "a manifest pushed by digest is served by digest",
    ),
    (
        "pull/index-get",
        "an image index is served with the index media type",
    ),
    (
        "pull/error-code",
        "GET manifests/sha256:totallywrong is 400 (spec error) or 404",
    ),
    // Push.
    (
        "push/post-session",
        "POST blobs/uploads/ is 202 with a Location (end-4a)",
    ),
    (
        "push/streamed-patch",
        "PATCH without Content-Range (streamed) is 202 with Location",
    ),
    (
        "push/streamed-put",
        "closing PUT ?digest= with no body is 201, Location serves it",
    ),
    (
        "push/monolithic-post",
        "POST ?digest= with the blob is 201 (or 202 then PUT) (end-4b)",
    ),
    (
        "push/post-put",
        "POST then PUT ?digest= with the blob is 201 (end-6)",
    ),
    (
        "push/upload-cancel",
        "DELETE of an upload session is 204, then it is 404",
    ),
    (
        "push/upload-unknown",
        "GET of an unknown upload session is 404 (end-13)",
    ),
    (
        "push/put-digest-mismatch",
        "PUT with a digest the body does not have is 400 DIGEST_INVALID",
    ),
    (
        "push/monolithic-post-digest-mismatch",
        "POST ?digest= with other content is 400 DIGEST_INVALID",
    ),
    (
        "push/empty-blob",
        "a zero-byte blob uploads and is served with Content-Length 0",
    ),
    (
        "push/blob-sha512",
        "a blob pushed with a sha512 digest is served by that digest",
    ),
    (
        "push/chunk-out-of-order",
        "a first chunk not starting at 0 is 416 (end-5)",
    ),
    (
        "push/chunk-first",
        "PATCH of the first chunk is 202 with Range 0-<end> and Location",
    ),
    (
        "push/upload-status",
        "GET of the session is 204 with Location and Range (end-13)",
    ),
    (
        "push/chunk-second",
        "PATCH of the next chunk is 202 with the grown Range",
    ),
    (
        "push/chunk-close",
        "closing PUT ?digest= after the chunks is 201",
    ),
    (
        "push/chunk-retry",
        "the first chunk again at the first Location is 416; GET is 204",
    ),
    (
        "push/chunk-final-in-put",
        "the last chunk in the closing PUT (Content-Range) is 201",
    ),
    (
        "push/chunk-out-of-order-recover",
        "after 416 chunks (ahead, overlap), GET gives the offset, upload ends",
    ),
    (
        "push/chunk-out-of-order-put",
        "a closing PUT with an out-of-order last chunk is 416",
    ),
    (
        "push/chunked-digest-mismatch",
        "closing a chunked upload with a wrong digest is 400 DIGEST_INVALID",
    ),
    (
        "push/mount-without-from",
        "POST ?mount= without from is 202 with a session",
    ),
    (
        "push/mount",
        "POST ?mount=&from= is 201 at the blob's Location (or 202) (end-11)",
    ),
    (
        "push/mount-anonymous",
        "POST ?mount= without from, of a blob another repository has: 201 at the blob (an \
         anonymous mount) or 202 with a session",
    ),
    (
        "push/mount-missing",
        "mounting a blob the source lacks is 202 with a session",
    ),
    ("push/setup", "push the manifests' blobs"),
    (
        "push/manifest-put-tag",
        "PUT manifest by tag is 201, Location serves it (end-7)",
    ),
    (
        "push/manifest-put-digest",
        "PUT manifest by digest is 201 with Docker-Content-Digest",
    ),
    (
        "push/manifest-no-layers",
        "an image manifest with no layers is accepted",
    ),
    (
        "push/manifest-custom-fields",
        "data fields and unknown fields are kept byte for byte",
    ),
    (
        "push/manifest-docker-v2",
        "a Docker schema 2 manifest is accepted and served as such",
    ),
    (
        "push/index",
        "an image index of pushed manifests is accepted",
    ),
    ("push/index-nested", "an index of an index is accepted"),
    (
        "push/manifest-unknown-blob",
        "a manifest with an unknown layer: 201 or MANIFEST_BLOB_UNKNOWN",
    ),
    (
        "push/index-unknown-child",
        "an index with an unknown child: 201 or MANIFEST_BLOB_UNKNOWN",
    ),
    (
        "push/manifest-large",
        "a manifest of about 4,000,000 bytes is accepted (spec: 4 MiB)",
    ),
    (
        "push/manifest-subject-missing",
        "a manifest whose subject does not exist is accepted (MUST)",
    ),
    (
        "push/index-empty",
        "an image index with no manifests is accepted",
    ),
    (
        "push/manifest-nondistributable",
        "non-distributable layers (urls, not pushed) are accepted",
    ),
    (
        "push/manifest-sha512",
        "a manifest with sha512 digests is pushed and pulled by sha512",
    ),
    (
        "push/manifest-tag-param",
        "PUT manifests/<sha512 digest>?tag=a&tag=b applies both tags (OCI-Tag headers), \
         and each serves the manifest with that digest",
    ),
    (
        "push/error-code",
        "PUT of a bad manifest to sha256:totallywrong is 400 with a spec code",
    ),
    (
        "push/read-only-upload",
        "read-only registry: POST blobs/uploads/ is 405/400 UNSUPPORTED",
    ),
    (
        "push/read-only-manifest",
        "read-only registry: PUT manifest is 405/400 UNSUPPORTED",
    ),
    // Content discovery.
    (
        "discovery/setup",
        "push the discovery content (4 tags, referrer blobs)",
    ),
    (
        "discovery/tags-list",
        "tags/list is 200 {name, tags} with every tag, in order (end-8a)",
    ),
    (
        "discovery/tags-list-n",
        "?n=2 returns exactly the first 2 tags (end-8b)",
    ),
    (
        "discovery/tags-list-last",
        "?n=2&last=test1 returns the 2 tags after test1",
    ),
    (
        "discovery/tags-list-last-only",
        "?last=test1 returns every tag after test1",
    ),
    (
        "discovery/tags-list-n-zero",
        "?n=0 returns an empty list and no Link",
    ),
    (
        "discovery/tags-list-pagination",
        "paging with n=1 (Link rel=\"next\" or last) gives all tags",
    ),
    (
        "discovery/tags-list-unknown-repo",
        "tags/list of an unknown repository is 404 NAME_UNKNOWN",
    ),
    (
        "discovery/referrers-empty",
        "referrers of an unknown digest: 200, empty OCI index (end-12a)",
    ),
    (
        "discovery/referrers-push-before-subject",
        "referrers pushed before their subject: 201, OCI-Subject",
    ),
    (
        "discovery/referrers-push-after-subject",
        "referrers pushed after their subject: 201, OCI-Subject",
    ),
    (
        "discovery/referrers-push-missing-subject",
        "a referrer of a missing subject: 201, OCI-Subject",
    ),
    (
        "discovery/referrers-list",
        "referrers lists all 5 with type, size, artifactType, annotations",
    ),
    (
        "discovery/referrers-filter",
        "?artifactType= filters, with OCI-Filters-Applied (end-12b)",
    ),
    (
        "discovery/referrers-missing-subject",
        "referrers of a subject never pushed lists its referrer",
    ),
    (
        "discovery/referrers-invalid-digest",
        "referrers of an invalid digest is 400",
    ),
    // Content management.
    (
        "management/setup",
        "push the management content (2 tags, a subject)",
    ),
    (
        "management/delete-tag",
        "DELETE of a tag is 202; the tag is 404, the manifest stays (end-9)",
    ),
    (
        "management/delete-manifest",
        "DELETE by digest is 202; manifest and its tags are 404",
    ),
    (
        "management/delete-manifest-unknown",
        "DELETE of a deleted manifest is 404 MANIFEST_UNKNOWN",
    ),
    (
        "management/delete-referrer",
        "deleting a referrer removes it from the referrers list",
    ),
    (
        "management/delete-blob",
        "DELETE of a blob is 202, then HEAD/GET are 404 (end-10)",
    ),
    (
        "management/delete-blob-unknown",
        "DELETE of a deleted blob is 404 BLOB_UNKNOWN",
    ),
    (
        "management/read-only-delete",
        "read-only registry: deletes are 400/405, content stays",
    ),
    // Bad input.
    ("bad-input/setup", "push the bad-input content"),
    (
        "bad-input/manifest-malformed-json",
        "a manifest that is not JSON is 400 MANIFEST_INVALID",
    ),
    (
        "bad-input/manifest-invalid-schema",
        "JSON of the wrong shape is 400 MANIFEST_INVALID",
    ),
    (
        "bad-input/manifest-unknown-media-type",
        "an unknown manifest media type is 400/415 with a spec code",
    ),
    (
        "bad-input/manifest-content-type-mismatch",
        "Content-Type unlike mediaType is 400 MANIFEST_INVALID",
    ),
    (
        "bad-input/manifest-oversized",
        "a 5 MiB manifest is 413 (or 400) with a spec error",
    ),
    (
        "bad-input/manifest-oversized-chunked",
        "the same, streamed without Content-Length",
    ),
    (
        "bad-input/manifest-digest-mismatch",
        "PUT by a digest the manifest lacks is 400 DIGEST_INVALID",
    ),
    (
        "bad-input/manifest-invalid-reference-digest",
        "PUT manifests/sha256:baddigeststring is 400 (or 404)",
    ),
    (
        "bad-input/upload-invalid-digest",
        "closing PUT ?digest=sha256:nothex is 400 DIGEST_INVALID",
    ),
    (
        "bad-input/upload-missing-digest",
        "closing PUT without ?digest= is 400 DIGEST_INVALID",
    ),
    (
        "bad-input/upload-other-repo",
        "an upload session used through another repository is 404",
    ),
    (
        "bad-input/chunk-malformed-range",
        "a malformed Content-Range is 400 or 416",
    ),
    (
        "bad-input/manifest-invalid-tag",
        "invalid tags are 400 TAG_INVALID/MANIFEST_INVALID (or 404)",
    ),
    (
        "bad-input/blob-invalid-digest",
        "invalid digests are 400 DIGEST_INVALID (or 404)",
    ),
    (
        "bad-input/name-invalid",
        "invalid repository names are 400 NAME_INVALID (or 404)",
    ),
    (
        "bad-input/name-too-long",
        "a 301-character repository name is 400 NAME_INVALID (or 404)",
    ),
    (
        "bad-input/path-traversal",
        "../, %2e%2e, %2f and // paths are refused, never served",
    ),
];

/// The description of check `id`.
pub(crate) fn title(id: &str) -> Option<&'static str> {
    CATALOG.iter().find(|(i, _)| *i == id).map(|(_, t)| *t)
}
