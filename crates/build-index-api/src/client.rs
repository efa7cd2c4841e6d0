//! The build-index HTTP client.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_core::{Digest, RepoName, Tag, error_chain};

use crate::{
    Catalog, ErrorBody, ManifestRecord, PutTagRequest, Referrers, TagList, TagRecord, repo_segment,
};

/// Default timeout of one request, connection included.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a build-index call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not an absolute `http(s)` URL, or the HTTP client could not be built.
    #[error("invalid build-index URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The build-index could not be reached, timed out or answered 5xx: the caller may retry,
    /// here or on another replica.
    #[error("build-index unavailable: {0}")]
    Unavailable(String),
    /// The build-index refused the request (4xx other than the "not found" answers that
    /// methods return as `None`/`false`). Retrying the same request will not help.
    #[error("build-index rejected the request ({status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The error message from the body (or the body itself).
        message: String,
    },
    /// The build-index answered something this client cannot read.
    #[error("unexpected build-index response: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Whether the same call may succeed later or on another replica.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A client of one build-index. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct BuildIndexClient {
    http: reqwest::Client,
    base: Url,
}

impl BuildIndexClient {
    /// A client of the build-index at `base_url` (e.g. `http://10.0.0.1:7400`), with a 10 s
    /// timeout per request. No request is made.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_timeout(base_url, DEFAULT_TIMEOUT)
    }

    /// Like [`Self::new`], with `timeout` per request (connection included).
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let mut base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("not an http(s) URL".into()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, base })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The digest `tag` points at, with its generation; `None` if the tag does not exist (or
    /// was deleted).
    pub async fn get_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<TagRecord>, ClientError> {
        let url = self.url(&tag_path(repo, tag), &[])?;
        self.json_or_none(self.http.get(url)).await
    }

    /// Points `tag` at `digest` (a local write: the build-index assigns the generation, and
    /// replicates the tag to the zones its rules name). Returns the stored record.
    pub async fn put_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<TagRecord, ClientError> {
        let url = self.url(&tag_path(repo, tag), &[])?;
        let body = PutTagRequest { digest: *digest };
        let resp = self.send(with_json(self.http.put(url), &body)?).await?;
        read_json(resp).await
    }

    /// Applies a record replicated from another zone: stored only if it supersedes the current
    /// one ([`TagRecord::supersedes`]); never replicated further. Idempotent.
    pub async fn replicate_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        record: &TagRecord,
    ) -> Result<(), ClientError> {
        let url = self.url(&format!("{}/replica", tag_path(repo, tag)), &[])?;
        self.send(with_json(self.http.put(url), record)?).await?;
        Ok(())
    }

    /// Deletes a tag (a tombstone keeps older replicated writes from resurrecting it). False
    /// if it did not exist.
    pub async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, ClientError> {
        let url = self.url(&tag_path(repo, tag), &[])?;
        self.found(self.http.delete(url)).await
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n` (all without `n`). `None` if
    /// the repository is unknown (no tags, no manifests).
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Option<Vec<Tag>>, ClientError> {
        let n = n.map(|n| n.to_string());
        let query = page_query(last, n.as_deref());
        let url = self.url(
            &format!("v1/repositories/{}/tags", repo_segment(repo)),
            &query,
        )?;
        let list: Option<TagList> = self.json_or_none(self.http.get(url)).await?;
        Ok(list.map(|l| l.tags))
    }

    /// Records a manifest of `repo` (idempotent).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
    ) -> Result<(), ClientError> {
        let url = self.url(&manifest_path(repo, &record.descriptor.digest), &[])?;
        self.send(with_json(self.http.put(url), record)?).await?;
        Ok(())
    }

    /// The record of a manifest of `repo`, if known.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, ClientError> {
        let url = self.url(&manifest_path(repo, digest), &[])?;
        self.json_or_none(self.http.get(url)).await
    }

    /// Forgets a manifest of `repo` and deletes the repository's tags that point at it. False
    /// if the manifest was not known.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, ClientError> {
        let url = self.url(&manifest_path(repo, digest), &[])?;
        self.found(self.http.delete(url)).await
    }

    /// Manifests of `repo` whose `subject` is `subject`, ordered by digest.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, ClientError> {
        let url = self.url(
            &format!("v1/repositories/{}/referrers/{subject}", repo_segment(repo)),
            &[],
        )?;
        let resp = self.send(self.http.get(url)).await?;
        let referrers: Referrers = read_json(resp).await?;
        Ok(referrers.manifests)
    }

    /// Repositories with tags or manifests, in lexical order, after `last`, at most `n` (all
    /// without `n`).
    pub async fn catalog(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<RepoName>, ClientError> {
        let n = n.map(|n| n.to_string());
        let url = self.url("v1/catalog", &page_query(last, n.as_deref()))?;
        let resp = self.send(self.http.get(url)).await?;
        let catalog: Catalog = read_json(resp).await?;
        Ok(catalog.repositories)
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ClientError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| ClientError::Protocol(format!("cannot build a request URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends the request; any status but 2xx is an error.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(transport_error)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(resp).await)
        }
    }

    /// 2xx → the JSON body; 404 → `None`.
    async fn json_or_none<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Option<T>, ClientError> {
        let resp = req.send().await.map_err(transport_error)?;
        match resp.status() {
            s if s.is_success() => read_json(resp).await.map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(resp).await),
        }
    }

    /// 2xx → true; 404 → false.
    async fn found(&self, req: reqwest::RequestBuilder) -> Result<bool, ClientError> {
        let resp = req.send().await.map_err(transport_error)?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(resp).await),
        }
    }
}

fn tag_path(repo: &RepoName, tag: &Tag) -> String {
    format!("v1/repositories/{}/tags/{tag}", repo_segment(repo))
}

fn manifest_path(repo: &RepoName, digest: &Digest) -> String {
    format!("v1/repositories/{}/manifests/{digest}", repo_segment(repo))
}

fn page_query<'a>(last: Option<&'a str>, n: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut query = Vec::new();
    if let Some(last) = last {
        query.push(("last", last));
    }
    if let Some(n) = n {
        query.push(("n", n));
    }
    query
}

fn with_json<T: Serialize>(
    req: reqwest::RequestBuilder,
    body: &T,
) -> Result<reqwest::RequestBuilder, ClientError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ClientError::Protocol(format!("cannot encode the request: {e}")))?;
    Ok(req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes))
}

async fn read_json<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let bytes = resp.bytes().await.map_err(transport_error)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Protocol(format!("cannot decode the response: {e}")))
}

fn transport_error(e: reqwest::Error) -> ClientError {
    ClientError::Unavailable(error_chain(&e))
}

async fn status_error(resp: reqwest::Response) -> ClientError {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ErrorBody>(&text)
        .ok()
        .and_then(|b| b.errors.into_iter().next())
        .map_or_else(
            || text.trim().to_owned(),
            |e| format!("{}: {}", e.code, e.message),
        );
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        ClientError::Unavailable(format!("{status}: {message}"))
    } else {
        ClientError::Rejected {
            status: status.as_u16(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base_urls_are_validated_and_joined() {
        assert!(matches!(
            BuildIndexClient::new("not a url"),
            Err(ClientError::InvalidUrl { .. })
        ));
        assert!(matches!(
            BuildIndexClient::new("ftp://x"),
            Err(ClientError::InvalidUrl { .. })
        ));
        let c = BuildIndexClient::new("http://127.0.0.1:7400").unwrap();
        let repo: RepoName = "library/ubuntu".parse().unwrap();
        let tag: Tag = "latest".parse().unwrap();
        let url = c.url(&tag_path(&repo, &tag), &[]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7400/v1/repositories/library%2Fubuntu/tags/latest"
        );
        let c = BuildIndexClient::new("http://h:1/prefix").unwrap();
        let url = c
            .url("v1/catalog", &page_query(Some("a/b c"), Some("5")))
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:1/prefix/v1/catalog?last=a%2Fb+c&n=5"
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        // A port that was just free: connections are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = BuildIndexClient::with_timeout(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(2),
        )
        .unwrap();
        let repo: RepoName = "a".parse().unwrap();
        let err = c.list_tags(&repo, None, None).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
