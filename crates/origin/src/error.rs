//! API errors and their OCI-style JSON bodies.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shoal_backend::BackendError;
use shoal_store::StoreError;

/// An error answered to an API client: an HTTP status plus an OCI distribution error code.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ApiError {
    /// The blob is neither in the cache nor in the backend.
    #[error("blob unknown")]
    BlobUnknown,
    /// No upload with that id (finished, cancelled, expired or never started).
    #[error("upload unknown")]
    UploadUnknown,
    /// Another request is writing to this upload right now.
    #[error("upload is busy with another request")]
    UploadBusy,
    /// A chunk does not start where the upload stands.
    #[error("chunk starts at {got}, upload is at {expected}")]
    ChunkOutOfOrder {
        /// The upload's current size.
        expected: u64,
        /// The chunk's start.
        got: u64,
    },
    /// The upload request is malformed (bad `Content-Range`, length mismatch, …).
    #[error("{0}")]
    UploadInvalid(String),
    /// The digest is malformed, unsupported, or does not match the content.
    #[error("{0}")]
    DigestInvalid(String),
    /// The namespace is not a valid repository name.
    #[error("{0}")]
    NameInvalid(String),
    /// The requested range cannot be served.
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeInvalid {
        /// The blob's size, for `Content-Range: bytes */size`.
        size: u64,
    },
    /// The operation is not possible here (e.g. deleting from a read-only backend).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A backend failed in a way that may pass; the client should retry.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The cached copy of a blob does not hash to its digest (damaged on disk); it was
    /// dropped unless pinned, so a retry fetches it again.
    #[error("cached copy of {0} is corrupt")]
    CorruptCache(shoal_core::Digest),
    /// Something failed on our side.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            Self::UploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            Self::UploadBusy => (StatusCode::CONFLICT, "BLOB_UPLOAD_INVALID"),
            Self::ChunkOutOfOrder { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID")
            }
            Self::UploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            Self::DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            Self::NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            Self::RangeInvalid { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
            Self::Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            Self::Unavailable(_) | Self::CorruptCache(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!("request failed: {self}");
        }
        let body = json!({ "errors": [{ "code": code, "message": self.to_string() }] });
        let mut resp = (status, Json(body)).into_response();
        match self {
            Self::RangeInvalid { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            Self::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DigestMismatch(_) | StoreError::SizeMismatch { .. } => {
                Self::DigestInvalid(e.to_string())
            }
            StoreError::NotFound(_) => Self::BlobUnknown,
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotFound => Self::BlobUnknown,
            e if e.is_transient() => Self::Unavailable(e.to_string()),
            e => Self::Internal(e.to_string()),
        }
    }
}
