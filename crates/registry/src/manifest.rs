//! Manifests: parsing, validation and the references a manifest makes.
//!
//! Accepted kinds (OCI image spec v1.1 and Docker's v2 schema 2):
//! - image manifests: OCI `application/vnd.oci.image.manifest.v1+json` and Docker
//!   `application/vnd.docker.distribution.manifest.v2+json` (config + layers, optional subject);
//! - indexes: OCI `application/vnd.oci.image.index.v1+json` and Docker manifest lists
//!   `application/vnd.docker.distribution.manifest.list.v2+json` (child manifests).
//!
//! Docker schema 1 (signed or not) is refused as `UNSUPPORTED` by the caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_core::Digest;

/// The largest manifest accepted (the spec suggests registries accept at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker v2 schema 1 (refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker v2 schema 1, signed (refused).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// The empty descriptor's media type (artifacts without a config).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {0} bytes; the limit is {MAX_MANIFEST_BYTES}")]
    TooLarge(usize),
    /// Not JSON, or JSON of the wrong shape.
    #[error("manifest is not valid: {0}")]
    Invalid(String),
    /// A media type this registry does not store (e.g. Docker schema 1).
    #[error("unsupported manifest media type {0:?}")]
    Unsupported(String),
}

/// Whether a manifest is an image manifest or an index of manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// Config plus layers.
    Image,
    /// A list of child manifests (multi-platform images).
    Index,
}

/// A content descriptor: what a manifest says about a blob or a child manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// The artifact type (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform of a child manifest in an index (kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    /// Where a non-distributable ("foreign") layer can be fetched instead of this registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// Whether the content lives outside the registry: a non-distributable (OCI) or foreign
    /// (Docker) layer with `urls`. Registries do not require such blobs to be pushed.
    pub fn is_foreign(&self) -> bool {
        let foreign_type = self
            .media_type
            .starts_with("application/vnd.oci.image.layer.nondistributable.")
            || self.media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
        foreign_type && self.urls.as_ref().is_some_and(|u| !u.is_empty())
    }
}

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's media type (from its `mediaType` field, the request's `Content-Type`, or
    /// its shape).
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// The config blob (image manifests).
    pub config: Option<Descriptor>,
    /// Layer blobs (image manifests).
    pub layers: Vec<Descriptor>,
    /// Child manifests (indexes).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for image manifests without one, the config's media type.
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<u64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
    // Docker schema 1 fields, to recognise and refuse it.
    fs_layers: Option<serde_json::Value>,
}

impl Manifest {
    /// Parses and validates `bytes`. `content_type` is the request's `Content-Type` (pushes) or
    /// `None` (reads: the type comes from the body).
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty() && *c != "application/json" && *c != "*/*");
        if let Some(ct) = content_type
            && (ct == DOCKER_SCHEMA1 || ct == DOCKER_SCHEMA1_SIGNED)
        {
            return Err(ManifestError::Unsupported(ct.to_owned()));
        }
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::Invalid(format!("not a JSON manifest: {e}")))?;
        if raw.fs_layers.is_some() || raw.schema_version == Some(1) {
            return Err(ManifestError::Unsupported(DOCKER_SCHEMA1.to_owned()));
        }
        if raw.schema_version != Some(2) {
            return Err(ManifestError::Invalid("schemaVersion must be 2".into()));
        }
        if let (Some(ct), Some(mt)) = (content_type, raw.media_type.as_deref())
            && ct != mt
        {
            return Err(ManifestError::Invalid(format!(
                "Content-Type {ct:?} does not match the manifest's mediaType {mt:?}"
            )));
        }
        let media_type = match raw.media_type.as_deref().or(content_type) {
            Some(mt) => mt.to_owned(),
            None if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            None if raw.config.is_some() => OCI_MANIFEST.to_owned(),
            None => {
                return Err(ManifestError::Invalid(
                    "manifest has neither config nor manifests".into(),
                ));
            }
        };
        let kind = match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => ManifestKind::Image,
            OCI_INDEX | DOCKER_MANIFEST_LIST => ManifestKind::Index,
            DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => {
                return Err(ManifestError::Unsupported(media_type));
            }
            other => return Err(ManifestError::Unsupported(other.to_owned())),
        };
        let manifest = match kind {
            ManifestKind::Image => {
                let config = raw.config.ok_or_else(|| {
                    ManifestError::Invalid("image manifest without config".into())
                })?;
                let layers = raw.layers.ok_or_else(|| {
                    ManifestError::Invalid("image manifest without layers".into())
                })?;
                if raw.manifests.is_some() {
                    return Err(ManifestError::Invalid(
                        "image manifest with a manifests list".into(),
                    ));
                }
                let artifact_type = raw
                    .artifact_type
                    .clone()
                    .or_else(|| Some(config.media_type.clone()));
                Self {
                    media_type,
                    kind,
                    config: Some(config),
                    layers,
                    manifests: Vec::new(),
                    subject: raw.subject,
                    artifact_type,
                    annotations: raw.annotations,
                }
            }
            ManifestKind::Index => {
                let manifests = raw
                    .manifests
                    .ok_or_else(|| ManifestError::Invalid("index without manifests".into()))?;
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(ManifestError::Invalid("index with config or layers".into()));
                }
                Self {
                    media_type,
                    kind,
                    config: None,
                    layers: Vec::new(),
                    manifests,
                    subject: raw.subject,
                    artifact_type: raw.artifact_type,
                    annotations: raw.annotations,
                }
            }
        };
        Ok(manifest)
    }

    /// Blobs this manifest references (config then layers), without duplicates, leaving out
    /// foreign layers ([`Descriptor::is_foreign`]) that live outside the registry.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut out = Vec::new();
        for d in self
            .config
            .iter()
            .chain(&self.layers)
            .filter(|d| !d.is_foreign())
        {
            if !out.contains(&d.digest) {
                out.push(d.digest);
            }
        }
        out
    }

    /// Child manifests (indexes), without duplicates.
    pub fn children(&self) -> Vec<Digest> {
        let mut out = Vec::new();
        for d in &self.manifests {
            if !out.contains(&d.digest) {
                out.push(d.digest);
            }
        }
        out
    }
}

/// The media type of stored manifest bytes, for `Content-Type` on reads: the `mediaType`
/// field, else guessed from the shape (OCI index or OCI manifest).
pub fn detect_media_type(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe {
            media_type: Some(mt),
            ..
        }) => mt,
        Ok(Probe {
            manifests: Some(_), ..
        }) => OCI_INDEX.to_owned(),
        _ => OCI_MANIFEST.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const D1: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    const D2: &str = "sha256:4aa5b1d8fc3ae1b1e7b4e8a0a5b47b6a4d2f1b8d0fa2dbc1f10a73a31b0f9c1e";

    fn image(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":3}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":3}}]}}"#
        )
    }

    #[test]
    fn image_manifest_references_config_and_layers_once() {
        let m = Manifest::parse(Some(OCI_MANIFEST), image(Some(OCI_MANIFEST)).as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(
            m.blobs(),
            vec![D1.parse::<Digest>().unwrap(), D2.parse().unwrap()]
        );
        assert!(m.children().is_empty());
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn media_type_comes_from_content_type_or_shape() {
        let m = Manifest::parse(Some(DOCKER_MANIFEST), image(None).as_bytes()).unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        let m = Manifest::parse(None, image(None).as_bytes()).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(detect_media_type(image(None).as_bytes()), OCI_MANIFEST);
    }

    #[test]
    fn mismatched_content_type_is_invalid() {
        let err = Manifest::parse(Some(DOCKER_MANIFEST), image(Some(OCI_MANIFEST)).as_bytes())
            .unwrap_err();
        assert!(matches!(err, ManifestError::Invalid(_)), "{err}");
    }

    #[test]
    fn foreign_layers_are_not_required_blobs() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"{D2}","size":3,"urls":["https://example.com/layer"]}}]}}"#
        );
        let m = Manifest::parse(None, body.as_bytes()).unwrap();
        assert_eq!(m.blobs(), vec![D1.parse::<Digest>().unwrap()]);
        assert!(m.layers[0].is_foreign());
    }

    #[test]
    fn index_lists_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":7,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let m = Manifest::parse(None, body.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.children(), vec![D1.parse::<Digest>().unwrap()]);
        assert!(m.blobs().is_empty());
        assert_eq!(detect_media_type(body.as_bytes()), OCI_INDEX);
    }

    #[test]
    fn bad_manifests_are_refused() {
        for (ct, body) in [
            (None, "not json".to_owned()),
            (None, r#"{"schemaVersion":2}"#.to_owned()),
            (None, r#"{"schemaVersion":3,"config":{}}"#.to_owned()),
            (
                Some(OCI_MANIFEST),
                r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#
                    .to_owned(),
            ),
            (
                Some(OCI_MANIFEST),
                format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D1}","size":-1}},"layers":[]}}"#
                ),
            ),
            (
                Some(OCI_MANIFEST),
                format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D1}","size":1}}}}"#
                ),
            ),
        ] {
            let err = Manifest::parse(ct, body.as_bytes()).unwrap_err();
            assert!(matches!(err, ManifestError::Invalid(_)), "{body}: {err}");
        }
        let schema1 = r#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}"#;
        assert!(matches!(
            Manifest::parse(None, schema1.as_bytes()),
            Err(ManifestError::Unsupported(_))
        ));
        assert!(matches!(
            Manifest::parse(Some("application/vnd.example+json"), image(None).as_bytes()),
            Err(ManifestError::Unsupported(_))
        ));
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            Manifest::parse(None, &huge),
            Err(ManifestError::TooLarge(_))
        ));
    }
}
