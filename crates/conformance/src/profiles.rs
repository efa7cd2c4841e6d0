//! Skip rules for known registries: what the reference implementation (distribution 2.8)
//! does not support or gets wrong, and what currently fails against Shoal.
//!
//! Every rule names the behaviour observed and, where the spec is clear, the spec text it
//! departs from, so that a rule can be dropped as soon as the registry is fixed.

use crate::SkipRule;

/// Checks distribution 2.8 (Debian's `docker-registry`, the CNCF reference registry that
/// predates Distribution Spec v1.1) does not pass, and why. Everything else in the suite
/// passes against it; a disagreement outside this list means the suite is wrong.
pub const DISTRIBUTION_2_8: &[(&str, &str)] = &[
    (
        "discovery/referrers-*",
        "the referrers API is v1.1; 2.8 answers 404 for /v2/<name>/referrers/<digest> and \
         sends no OCI-Subject on manifest pushes",
    ),
    (
        "management/delete-referrer",
        "needs the referrers API (v1.1), which 2.8 lacks",
    ),
    (
        "discovery/tags-list",
        "2.8 lists tags in storage order, not lexical order as the spec requires",
    ),
    (
        "discovery/tags-list-n",
        "2.8 ignores n and last on tags/list (pagination came with distribution 3)",
    ),
    (
        "discovery/tags-list-last",
        "2.8 ignores n and last on tags/list",
    ),
    (
        "discovery/tags-list-last-only",
        "2.8 ignores last on tags/list",
    ),
    (
        "discovery/tags-list-n-zero",
        "2.8 ignores n on tags/list (n=0 must give an empty list)",
    ),
    (
        "discovery/tags-list-pagination",
        "2.8 ignores n and last on tags/list",
    ),
    (
        "management/delete-tag",
        "2.8 cannot delete tags: DELETE manifests/<tag> is 400 DIGEST_INVALID (the spec \
         allows refusing, but the official suite wants UNSUPPORTED with the 400)",
    ),
    (
        "push/chunk-out-of-order",
        "2.8 ignores Content-Range on PATCH: an out-of-order chunk is appended (202), not 416",
    ),
    (
        "push/chunk-retry",
        "2.8 ignores Content-Range, and a request with a stale upload Location cancels the \
         session (404 BLOB_UPLOAD_INVALID) instead of answering 416",
    ),
    (
        "push/chunk-out-of-order-recover",
        "2.8 ignores Content-Range on PATCH: the skipped-ahead chunk is appended (202)",
    ),
    (
        "push/chunk-out-of-order-put",
        "2.8 ignores Content-Range on the closing PUT: the skipped-ahead chunk is appended and \
         the digest check fails (400 DIGEST_INVALID), not 416",
    ),
    (
        "push/manifest-sha512",
        "2.8 computes manifest digests with sha256 only: PUT manifests/sha512:<digest> is 400 \
         DIGEST_INVALID (the image spec registers sha512, and the official runner tests it)",
    ),
    (
        "push/manifest-nondistributable",
        "2.8 exempts only Docker foreign layers from the blob check: OCI non-distributable \
         layers with urls get 500 UNKNOWN + MANIFEST_BLOB_UNKNOWN (a 500 is not a spec error; \
         the official runner expects 201)",
    ),
    (
        "push/manifest-tag-param",
        "the check pushes a sha512 manifest, which 2.8 refuses (400 DIGEST_INVALID, as in \
         push/manifest-sha512); 2.8 also predates tag query parameters (no OCI-Tag)",
    ),
    (
        "bad-input/chunk-malformed-range",
        "2.8 ignores Content-Range on PATCH: a malformed one is accepted (202)",
    ),
    (
        "pull/error-code",
        "2.8 answers 500 UNKNOWN to GET manifests/sha256:totallywrong (it looks the string up \
         as a tag in storage)",
    ),
    (
        "bad-input/name-too-long",
        "2.8 answers 500 UNKNOWN to a repository name longer than 255 characters",
    ),
    (
        "bad-input/manifest-invalid-reference-digest",
        "2.8 answers 500 UNKNOWN to PUT manifests/sha256:baddigeststring",
    ),
];

/// Checks that fail against Shoal (proxy, and agent where it shares the router) today, with
/// the bug. The default run includes them; set `SHOAL_CONFORMANCE_SKIP=known` to filter them
/// out temporarily while they are being fixed, and drop an entry with its fix.
pub const SHOAL_KNOWN_BUGS: &[(&str, &str)] = &[];

/// `profile` as skip rules.
pub fn rules(profile: &[(&str, &str)]) -> Vec<SkipRule> {
    profile
        .iter()
        .map(|(pattern, reason)| SkipRule::new(*pattern, *reason))
        .collect()
}

/// Skip rules from a `SHOAL_CONFORMANCE_SKIP`-style list: comma-separated patterns, where
/// `known` stands for [`SHOAL_KNOWN_BUGS`].
pub fn parse_skip_list(list: &str) -> Vec<SkipRule> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            if p == "known" {
                rules(SHOAL_KNOWN_BUGS)
            } else {
                vec![SkipRule::new(p, "skipped on request")]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CATALOG;

    #[test]
    fn every_rule_matches_a_check() {
        for (pattern, _) in DISTRIBUTION_2_8.iter().chain(SHOAL_KNOWN_BUGS) {
            let rule = SkipRule::new(*pattern, "");
            assert!(
                CATALOG.iter().any(|(id, _)| rule.matches(id)),
                "{pattern} matches no check"
            );
        }
    }

    #[test]
    fn skip_lists_parse() {
        let rules = parse_skip_list(" pull/blob-range, discovery/* ,");
        assert_eq!(rules.len(), 2);
        assert!(rules[1].matches("discovery/tags-list"));
        assert_eq!(parse_skip_list("known").len(), SHOAL_KNOWN_BUGS.len());
    }
}
