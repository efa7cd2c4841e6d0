//! Where records live in the backend.
//!
//! Every key that belongs to a repository embeds the name followed by [`END`] (`!`):
//!
//! | key | value |
//! |---|---|
//! | `tags/<repo>!/<tag>` | the tag's record or tombstone |
//! | `manifests/<repo>!/<alg>/<hex>` | a manifest record |
//! | `referrers/<repo>!/<subject alg>/<subject hex>/<alg>/<hex>` | a copy of the record of a manifest whose subject is the subject |
//! | `repositories/<repo>!` | marker: the repository has had tags or manifests |
//!
//! The terminator keeps `a`'s keys apart from `a/b`'s (on a filesystem `tags/a` could not be
//! both a directory and a file) and, because `!` sorts below every character allowed in a
//! name, key order is name order: `repositories/a!` < `repositories/a-b!` <
//! `repositories/a/b!`, exactly as `a` < `a-b` < `a/b`. Listings page through keys directly.

use shoal_backend::{KeyError, ObjectKey};
use shoal_core::{Digest, RepoName, Tag};

/// Ends a repository name inside a key.
pub(crate) const END: char = '!';

/// Prefix of the repository markers.
pub(crate) const REPOSITORIES: &str = "repositories/";

pub(crate) fn tags_prefix(repo: &RepoName) -> String {
    format!("tags/{repo}{END}/")
}

pub(crate) fn tag(repo: &RepoName, tag: &Tag) -> Result<ObjectKey, KeyError> {
    ObjectKey::new(format!("{}{tag}", tags_prefix(repo)))
}

/// The tag of a key under [`tags_prefix`], if it is one.
pub(crate) fn tag_of(prefix: &str, key: &ObjectKey) -> Option<Tag> {
    key.as_str().strip_prefix(prefix)?.parse().ok()
}

pub(crate) fn manifests_prefix(repo: &RepoName) -> String {
    format!("manifests/{repo}{END}/")
}

pub(crate) fn manifest(repo: &RepoName, digest: &Digest) -> Result<ObjectKey, KeyError> {
    ObjectKey::new(format!(
        "{}{}/{}",
        manifests_prefix(repo),
        digest.algorithm(),
        digest.hex()
    ))
}

pub(crate) fn referrers_prefix(repo: &RepoName, subject: &Digest) -> String {
    format!(
        "referrers/{repo}{END}/{}/{}/",
        subject.algorithm(),
        subject.hex()
    )
}

pub(crate) fn referrer(
    repo: &RepoName,
    subject: &Digest,
    digest: &Digest,
) -> Result<ObjectKey, KeyError> {
    ObjectKey::new(format!(
        "{}{}/{}",
        referrers_prefix(repo, subject),
        digest.algorithm(),
        digest.hex()
    ))
}

pub(crate) fn repository(repo: &RepoName) -> Result<ObjectKey, KeyError> {
    ObjectKey::new(format!("{REPOSITORIES}{repo}{END}"))
}

/// The repository of a marker key, if it is one.
pub(crate) fn repository_of(key: &ObjectKey) -> Option<RepoName> {
    key.as_str()
        .strip_prefix(REPOSITORIES)?
        .strip_suffix(END)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn r(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn keys_round_trip_and_do_not_collide() {
        let t: Tag = "latest".parse().unwrap();
        let k = tag(&r("a/b"), &t).unwrap();
        assert_eq!(k.as_str(), "tags/a/b!/latest");
        assert_eq!(tag_of(&tags_prefix(&r("a/b")), &k), Some(t.clone()));
        // `a`'s tags are not under `a/b`'s prefix and vice versa.
        assert!(!k.as_str().starts_with(&tags_prefix(&r("a"))));
        let d = Digest::compute(shoal_core::Algorithm::Sha256, b"x");
        let m = manifest(&r("a"), &d).unwrap();
        assert_eq!(m.as_str(), format!("manifests/a!/sha256/{}", d.hex()));
        assert!(referrer(&r("a"), &d, &d).is_ok());
        let marker = repository(&r("a/b")).unwrap();
        assert_eq!(repository_of(&marker), Some(r("a/b")));
        assert_eq!(
            repository_of(&ObjectKey::new("repositories/a").unwrap()),
            None
        );
    }

    #[test]
    fn marker_order_is_name_order() {
        let mut names = vec!["a/b", "a-b", "a", "a.b", "a/b/c", "ab", "a0", "a_b"];
        let mut keys: Vec<String> = names
            .iter()
            .map(|n| repository(&r(n)).unwrap().into_string())
            .collect();
        names.sort_unstable();
        keys.sort_unstable();
        let from_keys: Vec<String> = keys
            .iter()
            .map(|k| {
                repository_of(&ObjectKey::new(k.clone()).unwrap())
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(from_keys, names);
    }
}
