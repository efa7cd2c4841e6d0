//! Errors answered by the agent's HTTP API.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to a client, with an OCI-style code.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum AgentError {
    /// No origin has the blob.
    #[error("blob unknown")]
    BlobUnknown,
    /// The name or digest is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The requested range cannot be served.
    #[error("range not satisfiable for a blob of {0} bytes")]
    Range(u64),
    /// The tracker or swarm could not be reached; retry.
    #[error("{0}")]
    Unavailable(String),
    /// The download failed (e.g. the assembled blob did not verify).
    #[error("{0}")]
    Download(String),
    /// Something failed locally.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "INVALID"),
            Self::Range(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
            Self::Unavailable(_) | Self::Download(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        };
        if status.is_server_error() {
            tracing::warn!("request failed: {self}");
        }
        let mut resp = (
            status,
            Json(json!({"errors": [{"code": code, "message": self.to_string()}]})),
        )
            .into_response();
        if let Self::Range(size) = self
            && let Ok(v) = format!("bytes */{size}").parse()
        {
            resp.headers_mut()
                .insert(axum::http::header::CONTENT_RANGE, v);
        }
        resp
    }
}
