//! The build-index's HTTP API (`/v1/…`), documented in `docs/PROTOCOL.md`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use shoal_build_index_api::{
    Catalog, ManifestRecord, PutTagRequest, Referrers, ReplicateResponse, TagList, TagRecord,
};
use shoal_core::{Digest, RepoName, Tag};

use crate::error::ApiError;
use crate::index::Index;

/// Request counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiMetrics {
    pub(crate) tags_put: Counter,
    pub(crate) tags_replicated: Counter,
    pub(crate) tags_replicated_ignored: Counter,
}

/// State shared by the handlers.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) index: Index,
    pub(crate) metrics: ApiMetrics,
}

type S = State<Arc<AppState>>;

/// Largest request body: records for manifests up to 4 MiB, plus JSON overhead.
const RECORD_BODY_LIMIT: usize = 8 * 1024 * 1024;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/repositories/{repo}/tags", get(tags_list))
        .route(
            "/v1/repositories/{repo}/tags/{tag}",
            get(tag_get).put(tag_put).delete(tag_delete),
        )
        .route(
            "/v1/repositories/{repo}/tags/{tag}/replica",
            put(tag_replicate),
        )
        .route(
            "/v1/repositories/{repo}/manifests/{digest}",
            get(manifest_get).put(manifest_put).delete(manifest_delete),
        )
        .route(
            "/v1/repositories/{repo}/referrers/{digest}",
            get(referrers_get),
        )
        .route("/v1/catalog", get(catalog_get))
        // Manifest records carry the manifest's annotations: a 4 MiB manifest (the size
        // registries must accept) can make a record of about that size.
        .layer(axum::extract::DefaultBodyLimit::max(RECORD_BODY_LIMIT))
        .with_state(state)
}

fn repo(raw: &str) -> Result<RepoName, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::NameInvalid(format!("{e}")))
}

fn tag(raw: &str) -> Result<Tag, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::TagInvalid(format!("{e}")))
}

fn digest(raw: &str) -> Result<Digest, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::DigestInvalid(format!("{e}")))
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BodyInvalid(format!("request body: {e}")))
}

/// `?last=&n=` of the listing requests.
#[derive(Debug, Deserialize)]
struct Page {
    last: Option<String>,
    n: Option<String>,
}

impl Page {
    fn n(&self) -> Result<Option<usize>, ApiError> {
        self.n
            .as_deref()
            .map(|n| {
                n.parse()
                    .map_err(|_| ApiError::PaginationInvalid(format!("n={n:?} is not a count")))
            })
            .transpose()
    }

    /// `last`, parsed (an empty `last` means none).
    fn last<T: std::str::FromStr>(&self) -> Result<Option<T>, ApiError> {
        self.last
            .as_deref()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.parse()
                    .map_err(|_| ApiError::PaginationInvalid(format!("last={l:?} is invalid")))
            })
            .transpose()
    }
}

async fn tag_get(
    State(st): S,
    Path((r, t)): Path<(String, String)>,
) -> Result<Json<TagRecord>, ApiError> {
    let (r, t) = (repo(&r)?, tag(&t)?);
    st.index
        .get_tag(&r, &t)
        .await?
        .map(Json)
        .ok_or(ApiError::TagUnknown)
}

async fn tag_put(
    State(st): S,
    Path((r, t)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<TagRecord>, ApiError> {
    let (r, t) = (repo(&r)?, tag(&t)?);
    let req: PutTagRequest = body(&bytes)?;
    let record = st.index.put_tag(&r, &t, req.digest).await?;
    st.metrics.tags_put.inc();
    tracing::info!(repository = %r, tag = %t, digest = %record.digest,
        generation = record.generation, "tag written");
    Ok(Json(record))
}

async fn tag_replicate(
    State(st): S,
    Path((r, t)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<ReplicateResponse>, ApiError> {
    let (r, t) = (repo(&r)?, tag(&t)?);
    let record: TagRecord = body(&bytes)?;
    let applied = st.index.replicate_tag(&r, &t, record).await?;
    if applied {
        st.metrics.tags_replicated.inc();
        tracing::info!(repository = %r, tag = %t, digest = %record.digest,
            generation = record.generation, "replicated tag applied");
    } else {
        st.metrics.tags_replicated_ignored.inc();
        tracing::debug!(repository = %r, tag = %t, generation = record.generation,
            "replicated tag ignored: not newer");
    }
    Ok(Json(ReplicateResponse { applied }))
}

async fn tag_delete(
    State(st): S,
    Path((r, t)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (r, t) = (repo(&r)?, tag(&t)?);
    if st.index.delete_tag(&r, &t).await? {
        tracing::info!(repository = %r, tag = %t, "tag deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::TagUnknown)
    }
}

async fn tags_list(
    State(st): S,
    Path(r): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<TagList>, ApiError> {
    let r = repo(&r)?;
    let (last, n) = (page.last::<Tag>()?, page.n()?);
    let tags = st
        .index
        .list_tags(&r, last.as_ref(), n)
        .await?
        .ok_or(ApiError::NameUnknown)?;
    Ok(Json(TagList { name: r, tags }))
}

async fn manifest_put(
    State(st): S,
    Path((r, d)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<StatusCode, ApiError> {
    let (r, d) = (repo(&r)?, digest(&d)?);
    let record: ManifestRecord = body(&bytes)?;
    if record.descriptor.digest != d {
        return Err(ApiError::DigestInvalid(format!(
            "the record describes {}, not {d}",
            record.descriptor.digest
        )));
    }
    st.index.put_manifest(&r, &record).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn manifest_get(
    State(st): S,
    Path((r, d)): Path<(String, String)>,
) -> Result<Json<ManifestRecord>, ApiError> {
    let (r, d) = (repo(&r)?, digest(&d)?);
    st.index
        .get_manifest(&r, &d)
        .await?
        .map(Json)
        .ok_or(ApiError::ManifestUnknown)
}

async fn manifest_delete(
    State(st): S,
    Path((r, d)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (r, d) = (repo(&r)?, digest(&d)?);
    if st.index.delete_manifest(&r, &d).await? {
        tracing::info!(repository = %r, digest = %d, "manifest deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::ManifestUnknown)
    }
}

async fn referrers_get(
    State(st): S,
    Path((r, d)): Path<(String, String)>,
) -> Result<Json<Referrers>, ApiError> {
    let (r, d) = (repo(&r)?, digest(&d)?);
    let manifests = st.index.referrers(&r, &d).await?;
    Ok(Json(Referrers { manifests }))
}

async fn catalog_get(State(st): S, Query(page): Query<Page>) -> Result<Json<Catalog>, ApiError> {
    let (last, n) = (page.last::<RepoName>()?, page.n()?);
    let repositories = st.index.catalog(last.as_ref(), n).await?;
    Ok(Json(Catalog { repositories }))
}
