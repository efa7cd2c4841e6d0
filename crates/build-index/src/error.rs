//! API errors and their OCI-style JSON bodies.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shoal_build_index_api::{ErrorBody, ErrorEntry};

use crate::index::IndexError;

/// An error answered to a client: an HTTP status plus an error code.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ApiError {
    /// The repository name is invalid.
    #[error("{0}")]
    NameInvalid(String),
    /// The tag is invalid.
    #[error("{0}")]
    TagInvalid(String),
    /// The digest is invalid or does not match the body.
    #[error("{0}")]
    DigestInvalid(String),
    /// The request body is not the expected JSON.
    #[error("{0}")]
    BodyInvalid(String),
    /// `n` or `last` is malformed.
    #[error("{0}")]
    PaginationInvalid(String),
    /// No such tag (or it was deleted).
    #[error("tag unknown")]
    TagUnknown,
    /// No such manifest record.
    #[error("manifest unknown")]
    ManifestUnknown,
    /// The repository has neither tags nor manifests.
    #[error("repository unknown")]
    NameUnknown,
    /// The storage backend failed in a way that may pass.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Something failed on our side.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            Self::TagInvalid(_) => (StatusCode::BAD_REQUEST, "TAG_INVALID"),
            Self::DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            Self::BodyInvalid(_) => (StatusCode::BAD_REQUEST, "BODY_INVALID"),
            Self::PaginationInvalid(_) => (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
            Self::TagUnknown => (StatusCode::NOT_FOUND, "TAG_UNKNOWN"),
            Self::ManifestUnknown => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            Self::NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
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
        let body = ErrorBody {
            errors: vec![ErrorEntry {
                code: code.to_owned(),
                message: self.to_string(),
            }],
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, Self::Unavailable(_)) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match &e {
            IndexError::Store(s) if s.is_transient() => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}
