//! The build-index's wire types and HTTP client.
//!
//! The build-index maps `(repository, tag)` to a manifest digest and keeps a small record per
//! manifest (its descriptor and `subject`, for the referrers API). The proxy, the agents and
//! other build-indexes (replication between zones) talk to it through [`BuildIndexClient`];
//! the HTTP API itself is documented in `docs/PROTOCOL.md` ("Build-index API").
//!
//! * [`TagRecord`]: what a tag points at, with the `generation` that orders mutations (a
//!   higher generation wins; ties are broken by the digest string).
//! * [`ManifestRecord`]: a manifest's descriptor and subject.
//! * [`BuildIndexClient`] and [`ClientError`]: the client, which separates failures worth
//!   retrying on another replica ([`ClientError::Unavailable`]) from refusals.
//!
//! Readers ignore unknown fields, so later versions can add fields without breaking older
//! clients.
//!
//! This crate is **not** the service (that is `shoal-build-index`) and stores nothing; it never
//! touches manifest bytes or blobs (those live on origins).

mod client;

use serde::{Deserialize, Serialize};
use shoal_core::{Digest, RepoName, Tag};
use shoal_registry::manifest::Descriptor;

pub use client::{BuildIndexClient, ClientError};

/// What a tag points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// The manifest digest.
    pub digest: Digest,
    /// Orders mutations of the tag: the record with the higher generation wins, ties broken
    /// by the higher digest string. A local write assigns
    /// `max(now in µs since the Unix epoch, current generation + 1)`.
    pub generation: u64,
}

impl TagRecord {
    /// Whether this record wins over `other`: a higher generation, or the same generation and
    /// a higher digest string. Deterministic, so every replica picks the same winner.
    pub fn supersedes(&self, other: &Self) -> bool {
        (self.generation, self.digest.to_string()) > (other.generation, other.digest.to_string())
    }
}

/// What the build-index records about a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    /// The manifest's own descriptor: media type, digest, size, artifact type, annotations.
    pub descriptor: Descriptor,
    /// The manifest it refers to (`subject`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

impl From<shoal_registry::ManifestRecord> for ManifestRecord {
    fn from(r: shoal_registry::ManifestRecord) -> Self {
        Self {
            descriptor: r.descriptor,
            subject: r.subject,
        }
    }
}

impl From<ManifestRecord> for shoal_registry::ManifestRecord {
    fn from(r: ManifestRecord) -> Self {
        Self {
            descriptor: r.descriptor,
            subject: r.subject,
        }
    }
}

impl From<ClientError> for shoal_registry::RegistryError {
    /// For registry front ends: an unreachable build-index is `503`, anything else a `500`.
    fn from(e: ClientError) -> Self {
        if e.is_retryable() {
            Self::Unavailable(format!("build-index: {e}"))
        } else {
            Self::Internal(format!("build-index: {e}"))
        }
    }
}

/// Body of a local tag write (`PUT /v1/repositories/{repo}/tags/{tag}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutTagRequest {
    /// The manifest the tag should point at.
    pub digest: Digest,
}

/// Answer to a replicated tag write (`PUT /v1/repositories/{repo}/tags/{tag}/replica`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateResponse {
    /// Whether the record was applied (false: the stored record already supersedes it or is
    /// the same record).
    pub applied: bool,
}

/// A page of tags (`GET /v1/repositories/{repo}/tags`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagList {
    /// The repository.
    pub name: RepoName,
    /// Tags in lexical order.
    pub tags: Vec<Tag>,
}

/// A page of repositories (`GET /v1/catalog`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Repository names in lexical order.
    pub repositories: Vec<RepoName>,
}

/// Manifests that refer to a subject (`GET /v1/repositories/{repo}/referrers/{digest}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referrers {
    /// Their records, ordered by digest.
    pub manifests: Vec<ManifestRecord>,
}

/// An OCI-distribution-style error body: `{"errors":[{"code":…,"message":…}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The errors (the build-index always sends exactly one).
    pub errors: Vec<ErrorEntry>,
}

/// One entry of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// A code such as `TAG_UNKNOWN` or `NAME_INVALID`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// A repository name as one URL path segment: `/` is percent-encoded (`library%2Fubuntu`), as
/// in every Shoal HTTP API. Valid names contain nothing else that needs encoding.
pub fn repo_segment(repo: &RepoName) -> String {
    repo.as_str().replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use shoal_core::Algorithm;

    #[test]
    fn records_serialize_as_documented() {
        let d = Digest::compute(Algorithm::Sha256, b"m");
        let t = TagRecord {
            digest: d,
            generation: 7,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!(r#"{{"digest":"{d}","generation":7}}"#));
        assert_eq!(serde_json::from_str::<TagRecord>(&json).unwrap(), t);

        let m = ManifestRecord {
            descriptor: Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: d,
                size: 3,
                artifact_type: None,
                annotations: None,
                platform: None,
                urls: None,
            },
            subject: Some(d),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"descriptor":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":3}},"subject":"{d}"}}"#
            )
        );
        assert_eq!(serde_json::from_str::<ManifestRecord>(&json).unwrap(), m);
    }

    #[test]
    fn supersedes_orders_by_generation_then_digest() {
        let a = Digest::compute(Algorithm::Sha256, b"a");
        let b = Digest::compute(Algorithm::Sha256, b"b");
        let (lo, hi) = if a.to_string() < b.to_string() {
            (a, b)
        } else {
            (b, a)
        };
        let rec = |digest, generation| TagRecord { digest, generation };
        assert!(rec(lo, 2).supersedes(&rec(hi, 1)));
        assert!(!rec(hi, 1).supersedes(&rec(lo, 2)));
        assert!(rec(hi, 1).supersedes(&rec(lo, 1)));
        assert!(!rec(lo, 1).supersedes(&rec(hi, 1)));
        assert!(!rec(lo, 1).supersedes(&rec(lo, 1)));
    }

    #[test]
    fn repo_segments_encode_slashes() {
        let r: RepoName = "library/ubuntu".parse().unwrap();
        assert_eq!(repo_segment(&r), "library%2Fubuntu");
    }
}
