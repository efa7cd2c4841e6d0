//! An HTTP client of an upstream OCI registry that answers its authentication challenges:
//! anonymous or basic-credential bearer tokens (the `WWW-Authenticate: Bearer realm=…`
//! flow Docker Hub uses), cached per scope, or basic auth. Used by [`RegistryBackend`]
//! (blobs) and by the agent's pull-through mirror (manifests and blobs).
//!
//! [`RegistryBackend`]: crate::RegistryBackend

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode, header};
use serde::Deserialize;
use url::Url;

use crate::{BackendError, RegistryConfig, RegistryConfigError};

/// Token lifetime assumed when the token endpoint does not say (per the distribution spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are considered expired this long before they really do.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

/// A client of one upstream registry (its base URL and credentials), with a token cache.
pub struct UpstreamRegistry {
    client: reqwest::Client,
    base: String,
    username: Option<String>,
    password: Option<String>,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// Set once the registry asked for basic auth; then credentials are sent up front.
    basic: AtomicBool,
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

impl fmt::Debug for UpstreamRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamRegistry")
            .field("base", &self.base)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

enum Auth {
    None,
    Bearer(String),
    Basic,
}

impl UpstreamRegistry {
    /// Builds the client from `config`'s `url`, credentials and timeout (its
    /// `repository_prefix` is the caller's business); no request is made until the first call.
    pub fn new(config: &RegistryConfig) -> Result<Self, RegistryConfigError> {
        let url =
            Url::parse(&config.url).map_err(|_| RegistryConfigError::Url(config.url.clone()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(RegistryConfigError::Url(config.url.clone()));
        }
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RegistryConfigError::Client)?;
        Ok(Self {
            client,
            base: url.as_str().trim_end_matches('/').to_string(),
            username: config.username.clone(),
            password: config.password.clone(),
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
        })
    }

    /// The registry's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `<base>/v2/<repo>/<rest>`, e.g. `rest` = `blobs/sha256:…` or `manifests/latest`.
    pub fn url(&self, repo: &str, rest: &str) -> Result<Url, BackendError> {
        Url::parse(&format!("{}/v2/{repo}/{rest}", self.base))
            .map_err(|e| BackendError::Permanent(Box::new(e)))
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(scope)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.token.clone())
    }

    fn with_basic(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.username {
            Some(user) => request.basic_auth(user, self.password.as_deref()),
            None => request,
        }
    }

    /// Sends `method url` with `headers` for a pull of `repo`, answering one authentication
    /// challenge if the registry asks. Any status other than an unanswerable `401` is the
    /// caller's to interpret (see [`status_error`]).
    pub async fn send(
        &self,
        method: Method,
        repo: &str,
        url: &Url,
        headers: &header::HeaderMap,
    ) -> Result<Response, BackendError> {
        let scope = format!("repository:{repo}:pull");
        let build = |auth: Auth| {
            let request = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            match auth {
                Auth::None => request,
                Auth::Bearer(token) => request.bearer_auth(token),
                Auth::Basic => self.with_basic(request),
            }
        };
        let initial = if let Some(token) = self.cached_token(&scope) {
            Auth::Bearer(token)
        } else if self.basic.load(Ordering::Relaxed) {
            Auth::Basic
        } else {
            Auth::None
        };
        let response = build(initial).send().await.map_err(request_error)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge);
        let retry = match challenge {
            Some(Challenge::Bearer { realm, service }) => {
                let token = self.fetch_token(&realm, service.as_deref(), &scope).await?;
                Auth::Bearer(token)
            }
            Some(Challenge::Basic) if self.username.is_some() => {
                self.basic.store(true, Ordering::Relaxed);
                Auth::Basic
            }
            _ => return Err(status_error(response.status(), url)),
        };
        build(retry).send().await.map_err(request_error)
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, BackendError> {
        let mut url = Url::parse(realm).map_err(|e| {
            BackendError::Permanent(format!("bad token realm {realm:?}: {e}").into())
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let response = self
            .with_basic(self.client.get(url.clone()))
            .send()
            .await
            .map_err(request_error)?;
        if !response.status().is_success() {
            return Err(status_error(response.status(), &url));
        }
        let body: TokenResponse = response.json().await.map_err(|e| {
            if e.is_decode() {
                BackendError::Permanent(Box::new(e))
            } else {
                request_error(e)
            }
        })?;
        let token = body.token.or(body.access_token).ok_or_else(|| {
            BackendError::Permanent("token response has neither token nor access_token".into())
        })?;
        let lifetime = body
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs)
            .saturating_sub(TOKEN_MARGIN);
        tracing::debug!(scope, ?lifetime, "fetched registry token");
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                scope.to_string(),
                CachedToken {
                    token: token.clone(),
                    expires: Instant::now() + lifetime,
                },
            );
        Ok(token)
    }
}

/// Parses one challenge such as `Bearer realm="https://auth/token",service="registry"`.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

/// Parses `key="value", key=value` pairs; quoted values may contain commas and `\"`.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    params
}

fn request_error(e: reqwest::Error) -> BackendError {
    if e.is_builder() {
        BackendError::Permanent(Box::new(e))
    } else {
        BackendError::Unavailable(Box::new(e))
    }
}

/// The error a non-success `status` from `url` stands for: `404` is [`BackendError::NotFound`],
/// timeouts, throttling and 5xx are transient, anything else permanent.
pub fn status_error(status: StatusCode, url: &Url) -> BackendError {
    let message = format!("{url} answered {status}");
    match status {
        StatusCode::NOT_FOUND => BackendError::NotFound,
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
            BackendError::Unavailable(message.into())
        }
        s if s.is_server_error() => BackendError::Unavailable(message.into()),
        _ => BackendError::Permanent(message.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        let params = parse_params(r#"realm="a,b", scope="x:y:pull,push",service=svc"#);
        assert_eq!(params["realm"], "a,b");
        assert_eq!(params["scope"], "x:y:pull,push");
        assert_eq!(params["service"], "svc");
    }

    #[test]
    fn parses_basic_and_unknown_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
    }
}
