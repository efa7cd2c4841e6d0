//! The `/v2/` HTTP API: routing, path parsing and the helpers the handlers share.
//!
//! Repository names contain slashes, so every request under `/v2/` goes to one handler that
//! parses the raw (still percent-encoded) path from its right end: the last segments say what
//! is addressed (`manifests/<ref>`, `blobs/<digest>`, `blobs/uploads/[<id>]`, `tags/list`,
//! `referrers/<digest>`) and everything before them is the repository name, validated by
//! [`RepoName`]. Percent-encoded or empty segments never validate, so no path can escape its
//! repository.

mod blobs;
mod discovery;
mod manifests;
mod uploads;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, response};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::TryStreamExt;
use shoal_core::{Digest, RepoName, Tag};

use crate::error::RegistryError;
use crate::store::{ByteStream, RegistryStore};

/// `Docker-Distribution-API-Version`, on every response.
const API_VERSION_HEADER: &str = "docker-distribution-api-version";
/// `Docker-Content-Digest`.
const DIGEST_HEADER: &str = "docker-content-digest";
/// `Docker-Upload-UUID`.
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";

/// The result of a handler: a response, or a spec error.
type ApiResult = Result<Response, ApiError>;

/// A spec error, answered with its usual status or, for the few cases the spec gives another
/// one (an invalid parameter is 400 `UNSUPPORTED`, an oversized manifest 413), that status.
#[derive(Debug)]
struct ApiError {
    error: RegistryError,
    status: Option<StatusCode>,
}

impl ApiError {
    /// 400 `UNSUPPORTED`: a query parameter that cannot be used.
    fn bad_parameter(message: String) -> Self {
        Self {
            error: RegistryError::Unsupported(message),
            status: Some(StatusCode::BAD_REQUEST),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        Self {
            error,
            status: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.error.into_response();
        if let Some(status) = self.status {
            *resp.status_mut() = status;
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                // The rest of the body may be unread: say the connection ends here, so a client
                // does not send its next request into it (RFC 9112 §9.6).
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        resp
    }
}

/// The OCI Distribution Spec v1.1 API (`/v2/…`) over `store`.
///
/// Every response, errors included, carries `Docker-Distribution-API-Version: registry/2.0`;
/// errors have the spec's JSON body. The router only claims `/v2` paths and sets no fallback,
/// so it can be [merged](Router::merge) with a service's own routes. Authentication is not
/// handled here: wrap the router in whatever layer the deployment needs.
pub fn router<S: RegistryStore>(store: Arc<S>) -> Router {
    router_with_stats(store, Arc::default())
}

/// Counts of the registry's answers, for a service's metrics (and tests that must see no
/// server errors).
#[derive(Debug, Default)]
pub struct RegistryStats {
    /// Requests answered.
    pub responses: std::sync::atomic::AtomicU64,
    /// Requests answered with a 5xx status.
    pub server_errors: std::sync::atomic::AtomicU64,
}

impl RegistryStats {
    /// Exposes the counts as `<prefix>_registry_responses` and
    /// `<prefix>_registry_server_errors` gauges of `metrics`, refreshed on every scrape.
    pub fn register(self: &Arc<Self>, metrics: &shoal_runtime::metrics::Metrics) {
        use prometheus_client::metrics::gauge::Gauge;
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let responses = metrics.register(
            "registry_responses",
            "Registry API requests answered",
            Gauge::<u64, AtomicU64>::default(),
        );
        let errors = metrics.register(
            "registry_server_errors",
            "Registry API requests answered with a 5xx status",
            Gauge::<u64, AtomicU64>::default(),
        );
        let this = Arc::clone(self);
        metrics.on_scrape(move || {
            responses.set(this.responses.load(Relaxed));
            errors.set(this.server_errors.load(Relaxed));
        });
    }
}

/// [`router`], counting every answer in `stats`.
pub fn router_with_stats<S: RegistryStore>(store: Arc<S>, stats: Arc<RegistryStats>) -> Router {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*rest}", any(dispatch::<S>))
        .with_state(store)
        .layer(axum::middleware::map_response(add_api_version))
        .layer(axum::middleware::map_response(move |resp: Response| {
            let stats = Arc::clone(&stats);
            async move {
                use std::sync::atomic::Ordering::Relaxed;
                stats.responses.fetch_add(1, Relaxed);
                if resp.status().is_server_error() {
                    stats.server_errors.fetch_add(1, Relaxed);
                }
                resp
            }
        }))
}

async fn add_api_version(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        HeaderName::from_static(API_VERSION_HEADER),
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

/// `GET /v2/`: the API version check.
async fn base(method: Method) -> Response {
    match method {
        Method::GET | Method::HEAD => json_response(StatusCode::OK, Body::from("{}")),
        _ => method_not_allowed(&[Method::GET, Method::HEAD]),
    }
}

/// What a `/v2/<rest>` path addresses; the strings are still unvalidated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route<'a> {
    /// `_catalog`
    Catalog,
    /// `<name>/tags/list`
    Tags(&'a str),
    /// `<name>/manifests/<reference>`
    Manifest(&'a str, &'a str),
    /// `<name>/blobs/<digest>`
    Blob(&'a str, &'a str),
    /// `<name>/blobs/uploads/`
    StartUpload(&'a str),
    /// `<name>/blobs/uploads/<id>`
    Upload(&'a str, &'a str),
    /// `<name>/referrers/<digest>`
    Referrers(&'a str, &'a str),
}

/// Splits `rest` (the path after `/v2/`) from its right end. `None`: no API path.
fn parse_route(rest: &str) -> Option<Route<'_>> {
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::StartUpload(name));
    }
    let (before, last) = rest.rsplit_once('/')?;
    let (name, kind) = before.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        "uploads" => {
            let name = name.strip_suffix("/blobs")?;
            Some(Route::Upload(name, last))
        }
        _ => None,
    }
}

/// Routes every `/v2/<rest>` request.
async fn dispatch<S: RegistryStore>(State(store): State<Arc<S>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let rest = parts.uri.path().strip_prefix("/v2/").unwrap_or_default();
    let Some(route) = parse_route(rest) else {
        return RegistryError::NameUnknown.into_response();
    };
    let store = store.as_ref();
    let method = parts.method.clone();
    let req = Req {
        headers: &parts.headers,
        uri: &parts.uri,
    };
    let result = match route {
        Route::Catalog => match method {
            Method::GET | Method::HEAD => discovery::catalog(store, &req).await,
            _ => return method_not_allowed(&[Method::GET, Method::HEAD]),
        },
        Route::Tags(name) => match method {
            Method::GET | Method::HEAD => discovery::tags(store, name, &req).await,
            _ => return method_not_allowed(&[Method::GET, Method::HEAD]),
        },
        Route::Referrers(name, digest) => match method {
            Method::GET | Method::HEAD => discovery::referrers(store, name, digest, &req).await,
            _ => return method_not_allowed(&[Method::GET, Method::HEAD]),
        },
        Route::Manifest(name, reference) => match method {
            Method::GET => manifests::get(store, name, reference, false).await,
            Method::HEAD => manifests::get(store, name, reference, true).await,
            Method::PUT => manifests::put(store, name, reference, &req, body).await,
            Method::DELETE => manifests::delete(store, name, reference).await,
            _ => {
                return method_not_allowed(&[
                    Method::GET,
                    Method::HEAD,
                    Method::PUT,
                    Method::DELETE,
                ]);
            }
        },
        Route::Blob(name, digest) => match method {
            Method::GET => blobs::get(store, name, digest, &req).await,
            Method::HEAD => blobs::head(store, name, digest).await,
            Method::DELETE => blobs::delete(store, name, digest).await,
            _ => return method_not_allowed(&[Method::GET, Method::HEAD, Method::DELETE]),
        },
        Route::StartUpload(name) => match method {
            Method::POST => uploads::start(store, name, &req, body).await,
            _ => return method_not_allowed(&[Method::POST]),
        },
        Route::Upload(name, id) => match method {
            Method::GET => uploads::status(store, name, id).await,
            Method::PATCH => uploads::patch(store, name, id, &req, body).await,
            Method::PUT => uploads::finish(store, name, id, &req, body).await,
            Method::DELETE => uploads::cancel(store, name, id).await,
            _ => {
                return method_not_allowed(&[
                    Method::GET,
                    Method::PATCH,
                    Method::PUT,
                    Method::DELETE,
                ]);
            }
        },
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The parts of a request handlers read.
struct Req<'a> {
    headers: &'a HeaderMap,
    uri: &'a axum::http::Uri,
}

impl Req<'_> {
    /// A header's value, if present and visible ASCII.
    fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The query parameters (decoded). A malformed query string is 400 `UNSUPPORTED`.
    fn query(&self) -> Result<HashMap<String, String>, ApiError> {
        Query::<HashMap<String, String>>::try_from_uri(self.uri)
            .map(|Query(q)| q)
            .map_err(|e| ApiError::bad_parameter(format!("invalid query string: {e}")))
    }

    /// The query parameters in order, repeated names included (`?tag=a&tag=b`). A malformed
    /// query string is 400 `UNSUPPORTED`.
    fn query_pairs(&self) -> Result<Vec<(String, String)>, ApiError> {
        Query::<Vec<(String, String)>>::try_from_uri(self.uri)
            .map(|Query(q)| q)
            .map_err(|e| ApiError::bad_parameter(format!("invalid query string: {e}")))
    }

    /// Whether the request carries a body: a non-zero `Content-Length` or a chunked
    /// `Transfer-Encoding`.
    fn has_body(&self) -> bool {
        match self.header(header::CONTENT_LENGTH) {
            Some(len) => len.trim() != "0",
            None => self.headers.contains_key(header::TRANSFER_ENCODING),
        }
    }

    /// `Content-Length`, if present and a number.
    fn content_length(&self) -> Option<u64> {
        self.header(header::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse().ok())
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone)]
enum Reference {
    Tag(Tag),
    Digest(Digest),
}

fn parse_repo(name: &str) -> Result<RepoName, RegistryError> {
    name.parse()
        .map_err(|e| RegistryError::NameInvalid(format!("{e}")))
}

fn parse_digest(digest: &str) -> Result<Digest, RegistryError> {
    digest
        .parse()
        .map_err(|e| RegistryError::DigestInvalid(format!("{e}")))
}

/// A reference with a `:` is a digest, anything else a tag.
fn parse_reference(reference: &str) -> Result<Reference, RegistryError> {
    if reference.contains(':') {
        parse_digest(reference).map(Reference::Digest)
    } else {
        reference
            .parse()
            .map(Reference::Tag)
            .map_err(|e| RegistryError::TagInvalid(format!("{e}")))
    }
}

/// Pushes and deletes are refused (405 `UNSUPPORTED`) by read-only stores.
fn ensure_writable<S: RegistryStore>(store: &S) -> Result<(), RegistryError> {
    if store.writable() {
        Ok(())
    } else {
        Err(RegistryError::Unsupported(
            "this registry is read-only".into(),
        ))
    }
}

/// A request body as a stream of chunks for the store (never buffered whole).
fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

/// A response builder that turns a bad header value into an internal error instead of a
/// panic.
fn build(builder: response::Builder, body: Body) -> ApiResult {
    builder
        .body(body)
        .map_err(|e| RegistryError::Internal(format!("building a response: {e}")).into())
}

/// A response builder with `status`.
fn builder(status: StatusCode) -> response::Builder {
    response::Builder::new().status(status)
}

/// A response with a JSON body.
fn json_response(status: StatusCode, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// 405 with a spec error body and `Allow`.
fn method_not_allowed(allowed: &[Method]) -> Response {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut resp =
        RegistryError::Unsupported("method not allowed on this path".into()).into_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

/// The `Range` value of an upload that has received `offset` bytes (`0-<offset-1>`).
fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_from_the_right() {
        use Route::*;
        let cases = [
            ("_catalog", Some(Catalog)),
            ("a/b/tags/list", Some(Tags("a/b"))),
            ("a/manifests/latest", Some(Manifest("a", "latest"))),
            (
                "a/manifests/b/manifests/c",
                Some(Manifest("a/manifests/b", "c")),
            ),
            ("a/b/blobs/sha256:x", Some(Blob("a/b", "sha256:x"))),
            ("a/blobs/uploads/", Some(StartUpload("a"))),
            ("a/blobs/uploads", Some(StartUpload("a"))),
            ("a/b/blobs/uploads/xyz", Some(Upload("a/b", "xyz"))),
            (
                "a/blobs/uploads/blobs/sha256:x",
                Some(Blob("a/blobs/uploads", "sha256:x")),
            ),
            ("a/referrers/sha256:x", Some(Referrers("a", "sha256:x"))),
            ("a/uploads/xyz", None),
            ("a/foo/bar", None),
            ("manifests/x", None),
            ("a", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(parse_route(path), want, "{path}");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert!(matches!(parse_reference("v1.0"), Ok(Reference::Tag(_))));
        assert!(matches!(
            parse_reference(
                "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
            ),
            Ok(Reference::Digest(_))
        ));
        assert_eq!(
            parse_reference("sha256:nope")
                .map(|_| ())
                .map_err(|e| e.code()),
            Err("DIGEST_INVALID")
        );
        assert_eq!(
            parse_reference(".bad").map(|_| ()).map_err(|e| e.code()),
            Err("TAG_INVALID")
        );
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(10), "0-9");
    }
}
