//! Test content: digests, pseudo-random blobs, image configs, manifests and indexes.
//!
//! Every run draws a fresh seed, so configs, layers and therefore manifests differ between
//! runs (as in the official suite, where each config gets a random `author`) and reruns
//! against the same registry never collide.

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzipped layer.
pub(crate) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The empty descriptor (`{}`), for artifacts without a config.
pub(crate) const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Docker image manifest, v2 schema 2.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// What every manifest request accepts: all the manifest types the suite pushes (some
/// registries answer 404 for a manifest whose type the client did not list).
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";
/// The annotation key the referrers checks use (as in the official suite).
pub(crate) const ANNOTATION: &str = "org.opencontainers.conformance.test";

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// `sha512:<hex>` of `data`.
pub(crate) fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex(&Sha512::digest(data)))
}

/// Whether `digest` (`<algorithm>:<hex>`) is the digest of `data`, for the algorithms the
/// suite knows. A registry may answer with another algorithm than the one asked for.
pub(crate) fn digest_matches(digest: &str, data: &[u8]) -> bool {
    match digest.split_once(':') {
        Some(("sha256", _)) => digest == sha256(data),
        Some(("sha512", _)) => digest == sha512(data),
        _ => false,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A random 64-bit value: the hasher's per-process random keys, mixed with the time.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// `len` pseudo-random bytes from `seed` (xorshift).
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// A blob and its digest.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) bytes: Vec<u8>,
    pub(crate) digest: String,
}

impl Blob {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        let digest = sha256(&bytes);
        Self { bytes, digest }
    }

    /// A pseudo-random blob.
    pub(crate) fn random(len: usize, seed: u64) -> Self {
        Self::new(random_bytes(len, seed))
    }

    /// The descriptor of this blob with `media_type`.
    pub(crate) fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A manifest (or index): its bytes, digest and media type.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) digest: String,
    pub(crate) media_type: String,
}

impl Manifest {
    /// Serializes `value` (pretty-printed, as registries must keep bytes exactly).
    pub(crate) fn from_json(value: &Value, media_type: &str) -> Self {
        let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        Self::from_bytes(bytes, media_type)
    }

    pub(crate) fn from_bytes(bytes: Vec<u8>, media_type: &str) -> Self {
        let digest = sha256(&bytes);
        Self {
            bytes,
            digest,
            media_type: media_type.to_owned(),
        }
    }

    /// The descriptor of this manifest.
    pub(crate) fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// An image config with a unique `author`.
pub(crate) fn config(author: &str) -> Blob {
    let value = json!({
        "architecture": "amd64",
        "os": "linux",
        "author": author,
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    Blob::new(serde_json::to_vec_pretty(&value).unwrap_or_default())
}

/// What to put in an image manifest besides config and layers.
#[derive(Debug, Default, Clone)]
pub(crate) struct Extras {
    /// `artifactType`.
    pub(crate) artifact_type: Option<String>,
    /// `subject` (a manifest descriptor).
    pub(crate) subject: Option<Value>,
    /// Top-level annotations.
    pub(crate) annotations: Option<Value>,
}

/// An OCI image manifest with `config` (already a descriptor) and `layers`.
pub(crate) fn image(config: Value, layers: Vec<Value>, extras: Extras) -> Manifest {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    if let Some(t) = extras.artifact_type {
        value["artifactType"] = json!(t);
    }
    if let Some(s) = extras.subject {
        value["subject"] = s;
    }
    if let Some(a) = extras.annotations {
        value["annotations"] = a;
    }
    Manifest::from_json(&value, OCI_MANIFEST)
}

/// A plain image: `config` plus `layers`, all of the usual media types.
pub(crate) fn simple_image(config: &Blob, layers: &[&Blob]) -> Manifest {
    image(
        config.descriptor(OCI_CONFIG),
        layers.iter().map(|l| l.descriptor(OCI_LAYER)).collect(),
        Extras::default(),
    )
}

/// An OCI index of `manifests` (descriptors, with platforms when given).
pub(crate) fn index(manifests: Vec<Value>, extras: Extras) -> Manifest {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    if let Some(t) = extras.artifact_type {
        value["artifactType"] = json!(t);
    }
    if let Some(s) = extras.subject {
        value["subject"] = s;
    }
    if let Some(a) = extras.annotations {
        value["annotations"] = a;
    }
    Manifest::from_json(&value, OCI_INDEX)
}

/// A descriptor for `manifest` with a linux platform.
pub(crate) fn platform_descriptor(manifest: &Manifest, arch: &str) -> Value {
    let mut d = manifest.descriptor();
    d["platform"] = json!({"os": "linux", "architecture": arch});
    d
}

/// An image manifest padded with annotations to about `size` bytes.
pub(crate) fn large_image(config: &Blob, size: usize) -> Manifest {
    const VALUE_LEN: usize = 10_000;
    let count = size / (VALUE_LEN + 32);
    let value = "A".repeat(VALUE_LEN);
    let annotations: serde_json::Map<String, Value> = (0..count)
        .map(|i| (format!("large-annotation-{i}"), json!(value)))
        .collect();
    image(
        config.descriptor(OCI_CONFIG),
        Vec::new(),
        Extras {
            annotations: Some(Value::Object(annotations)),
            ..Extras::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_known_content() {
        assert_eq!(
            sha256(b"{}"),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(digest_matches(&sha512(b"x"), b"x"));
        assert!(!digest_matches(&sha256(b"x"), b"y"));
        assert!(!digest_matches("md5:00", b"x"));
    }

    #[test]
    fn random_content_is_reproducible_per_seed() {
        assert_eq!(random_bytes(64, 1), random_bytes(64, 1));
        assert_ne!(random_bytes(64, 1), random_bytes(64, 2));
    }

    #[test]
    fn large_manifests_have_about_the_asked_size() {
        let m = large_image(&config("x"), 4_000_000);
        assert!(
            (3_900_000..4_100_000).contains(&m.bytes.len()),
            "{}",
            m.bytes.len()
        );
    }
}
