//! Content discovery: `GET /v2/<name>/tags/list`, `GET /v2/_catalog` and
//! `GET /v2/<name>/referrers/<digest>`.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{StatusCode, header};
use serde::Serialize;

use super::{ApiError, ApiResult, Req, build, builder, parse_digest, parse_repo};
use crate::error::RegistryError;
use crate::manifest::{Descriptor, OCI_INDEX};
use crate::store::RegistryStore;

/// The most entries one page returns, whatever `n` asks for (the `Link` header then points to
/// the rest).
const MAX_PAGE: usize = 10_000;
/// `OCI-Filters-Applied`.
const FILTERS_APPLIED_HEADER: &str = "oci-filters-applied";

/// `n` and `last` of a paginated listing.
struct Page {
    /// `n` as requested.
    requested: Option<usize>,
    /// How many entries to return at most (`n`, capped).
    limit: Option<usize>,
    last: Option<String>,
}

impl Page {
    /// Reads `n` and `last`; a non-numeric `n` is 400 `UNSUPPORTED` (an invalid parameter).
    fn from_query(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let requested = match query.get("n") {
            None => None,
            Some(n) => Some(
                n.parse::<usize>()
                    .map_err(|_| ApiError::bad_parameter(format!("invalid page size n={n:?}")))?,
            ),
        };
        Ok(Self {
            requested,
            limit: requested.map(|n| n.min(MAX_PAGE)),
            last: query.get("last").filter(|l| !l.is_empty()).cloned(),
        })
    }

    /// Trims `entries` to the page size and returns the `Link` to the next page when the page
    /// is full (`path` is the listing's path).
    fn finish<T: AsRef<str>>(&self, entries: &mut Vec<T>, path: &str) -> Option<String> {
        let (requested, limit) = (self.requested?, self.limit?);
        entries.truncate(limit);
        if limit == 0 || entries.len() < limit {
            return None;
        }
        let last = entries.last()?.as_ref();
        Some(format!("<{path}?n={requested}&last={last}>; rel=\"next\""))
    }
}

#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<String>,
}

#[derive(Serialize)]
struct Catalog {
    repositories: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

/// `GET /v2/<name>/tags/list[?n=&last=]`: `{"name":…,"tags":[…]}`; 404 `NAME_UNKNOWN` for an
/// unknown repository.
pub(super) async fn tags<S: RegistryStore>(store: &S, name: &str, req: &Req<'_>) -> ApiResult {
    let repo = parse_repo(name)?;
    let page = Page::from_query(&req.query()?)?;
    let mut tags: Vec<String> = store
        .list_tags(&repo, page.last.as_deref(), page.limit)
        .await?
        .ok_or(RegistryError::NameUnknown)?
        .into_iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    let link = page.finish(&mut tags, &format!("/v2/{repo}/tags/list"));
    json_listing(
        &TagList {
            name: repo.as_str(),
            tags,
        },
        link,
    )
}

/// `GET /v2/_catalog[?n=&last=]`: `{"repositories":[…]}`.
pub(super) async fn catalog<S: RegistryStore>(store: &S, req: &Req<'_>) -> ApiResult {
    let page = Page::from_query(&req.query()?)?;
    let mut repositories: Vec<String> = store
        .catalog(page.last.as_deref(), page.limit)
        .await?
        .into_iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    let link = page.finish(&mut repositories, "/v2/_catalog");
    json_listing(&Catalog { repositories }, link)
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=]`: always 200 with an image index of the
/// manifests whose subject is `digest` (filtered by artifact type when asked, which
/// `OCI-Filters-Applied` then says).
pub(super) async fn referrers<S: RegistryStore>(
    store: &S,
    name: &str,
    digest: &str,
    req: &Req<'_>,
) -> ApiResult {
    let repo = parse_repo(name)?;
    let digest = parse_digest(digest)?;
    let query = req.query()?;
    let filter = query
        .get("artifactType")
        .map(String::as_str)
        .filter(|f| !f.is_empty());
    let manifests = store
        .referrers(&repo, &digest)
        .await?
        .into_iter()
        .filter(|r| filter.is_none_or(|f| r.descriptor.artifact_type.as_deref() == Some(f)))
        .map(|r| r.descriptor)
        .collect();
    let body = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests,
    })
    .map_err(|e| RegistryError::Internal(format!("encoding referrers: {e}")))?;
    let mut builder = builder(StatusCode::OK)
        .header(header::CONTENT_TYPE, OCI_INDEX)
        .header(header::CONTENT_LENGTH, body.len());
    if filter.is_some() {
        builder = builder.header(FILTERS_APPLIED_HEADER, "artifactType");
    }
    build(builder, Body::from(body))
}

fn json_listing<T: Serialize>(value: &T, link: Option<String>) -> ApiResult {
    let body = serde_json::to_vec(value)
        .map_err(|e| RegistryError::Internal(format!("encoding a listing: {e}")))?;
    let mut builder = builder(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(link) = link {
        builder = builder.header(header::LINK, link);
    }
    build(builder, Body::from(body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn page(n: Option<&str>, last: Option<&str>) -> Page {
        let mut q = HashMap::new();
        if let Some(n) = n {
            q.insert("n".to_owned(), n.to_owned());
        }
        if let Some(last) = last {
            q.insert("last".to_owned(), last.to_owned());
        }
        Page::from_query(&q).unwrap()
    }

    #[test]
    fn pages_link_to_the_next_one_when_full() {
        let mut v = vec!["a", "b", "c"];
        assert_eq!(
            page(Some("2"), None).finish(&mut v, "/v2/x/tags/list"),
            Some("</v2/x/tags/list?n=2&last=b>; rel=\"next\"".to_owned())
        );
        assert_eq!(v, ["a", "b"]);
        let mut v = vec!["a"];
        assert_eq!(page(Some("2"), Some("z")).finish(&mut v, "/p"), None);
        let mut v = vec!["a"];
        assert_eq!(page(Some("0"), None).finish(&mut v, "/p"), None);
        assert!(v.is_empty());
        let mut v = vec!["a"];
        assert_eq!(page(None, None).finish(&mut v, "/p"), None);
        assert_eq!(v, ["a"]);
        assert!(Page::from_query(&HashMap::from([("n".into(), "x".into())])).is_err());
    }
}
