//! OCI distribution error codes and their JSON bodies.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error the registry answers with, mapped to the spec's codes and statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// `BLOB_UNKNOWN` (404).
    #[error("blob unknown to registry")]
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID` (400 or 416 for out-of-order chunks; see [`Self::RangeInvalid`]).
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// `BLOB_UPLOAD_UNKNOWN` (404).
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    /// `DIGEST_INVALID` (400).
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    /// `MANIFEST_BLOB_UNKNOWN` (400): a manifest references a blob or manifest not present.
    #[error("manifest references unknown content: {0}")]
    ManifestBlobUnknown(String),
    /// `MANIFEST_INVALID` (400).
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// `MANIFEST_UNKNOWN` (404).
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    /// `NAME_INVALID` (400).
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    /// `NAME_UNKNOWN` (404).
    #[error("repository name not known to registry")]
    NameUnknown,
    /// `SIZE_INVALID` (400).
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    /// `TAG_INVALID` (400) — used for malformed tags in references.
    #[error("invalid tag: {0}")]
    TagInvalid(String),
    /// `UNSUPPORTED` (405 for operations a read-only registry refuses, 415 for media types).
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    /// `UNSUPPORTED` with 415: a manifest media type this registry does not store.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// `RANGE_INVALID` (416), with the current upload offset or blob size for the
    /// `Range`/`Content-Range` header.
    #[error("invalid range")]
    RangeInvalid {
        /// For uploads: bytes received so far; for blob reads: the blob size.
        size: u64,
        /// Whether this is an upload (`Range: 0-<end>`) or a read (`Content-Range: bytes */size`).
        upload: bool,
    },
    /// `DENIED` (403).
    #[error("requested access to the resource is denied")]
    Denied,
    /// `TOOMANYREQUESTS` (429).
    #[error("too many requests")]
    TooManyRequests,
    /// A dependency (origin, build-index, tracker) is unavailable (503).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl RegistryError {
    /// The spec code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid(_) => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid(_) => "DIGEST_INVALID",
            Self::ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid(_) => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid(_) => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid(_) => "SIZE_INVALID",
            Self::TagInvalid(_) => "TAG_INVALID",
            Self::Unsupported(_) | Self::UnsupportedMediaType(_) => "UNSUPPORTED",
            Self::RangeInvalid { .. } => "RANGE_INVALID",
            Self::Denied => "DENIED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "UNKNOWN",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BlobUnknown
            | Self::BlobUploadUnknown
            | Self::ManifestUnknown
            | Self::NameUnknown => StatusCode::NOT_FOUND,
            Self::BlobUploadInvalid(_)
            | Self::DigestInvalid(_)
            | Self::ManifestBlobUnknown(_)
            | Self::ManifestInvalid(_)
            | Self::NameInvalid(_)
            | Self::SizeInvalid(_)
            | Self::TagInvalid(_) => StatusCode::BAD_REQUEST,
            Self::Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RangeInvalid { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::Denied => StatusCode::FORBIDDEN,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), "{self}");
        }
        let body = Body {
            errors: [Entry {
                code: self.code(),
                message: self.to_string(),
            }],
        };
        let mut resp = (status, Json(body)).into_response();
        if let Self::RangeInvalid { size, upload } = self {
            let value = if upload {
                // The upload's current progress, as in a 202/204 upload response.
                format!("0-{}", size.saturating_sub(1))
            } else {
                format!("bytes */{size}")
            };
            let name = if upload {
                header::RANGE
            } else {
                header::CONTENT_RANGE
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}
