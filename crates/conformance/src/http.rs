//! The HTTP side of the suite: an endpoint (a registry base URL and a client that never
//! follows redirects), responses read whole, and the expectations checks make on them.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder, Url};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one request may take (the largest is a ~5 MiB manifest).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a response body a failure message quotes.
const BODY_EXCERPT: usize = 300;

/// A registry to send requests to.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    http: Client,
    base: Url,
}

impl Endpoint {
    /// An endpoint for `base` (`http://host:port`, any path is ignored).
    pub(crate) fn new(base: &str) -> Result<Self, String> {
        let base = Url::parse(base).map_err(|e| format!("invalid registry URL {base:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(format!("registry URL {base} must be http(s)://host[:port]"));
        }
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self { http, base })
    }

    /// `path_or_url` resolved against the base: a path (`/v2/…`) or a `Location` value,
    /// relative or absolute.
    pub(crate) fn resolve(&self, path_or_url: &str) -> Result<Url, String> {
        self.base
            .join(path_or_url)
            .map_err(|e| format!("cannot resolve {path_or_url:?}: {e}"))
    }

    /// A request builder; an unresolvable URL surfaces when the request is sent.
    pub(crate) fn request(&self, method: Method, path_or_url: &str) -> RequestBuilder {
        let url = self
            .resolve(path_or_url)
            .unwrap_or_else(|_| self.base.clone());
        self.http.request(method, url)
    }

    pub(crate) fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub(crate) fn head(&self, path: &str) -> RequestBuilder {
        self.request(Method::HEAD, path)
    }

    pub(crate) fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    pub(crate) fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    pub(crate) fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    pub(crate) fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// Sends a request and reads the whole response.
    pub(crate) async fn send(&self, rb: RequestBuilder) -> Result<Resp, String> {
        let req = rb.build().map_err(|e| format!("building a request: {e}"))?;
        let what = format!("{} {}", req.method(), path_and_query(req.url()));
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| format!("{what}: request failed: {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        // A body that cannot be read (e.g. shorter than its Content-Length) is kept as an
        // error: checks on the status and headers still apply, checks on the body fail.
        let (body, body_error) = match resp.bytes().await {
            Ok(b) => (b.to_vec(), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        Ok(Resp {
            what,
            status,
            headers,
            body,
            body_error,
        })
    }

    /// Sends `GET <raw_path>` over a fresh connection with the path exactly as given (no
    /// normalization of `..`, `%2e` or `//`, which URL libraries do). Returns the status and
    /// the `Location` header. Plain `http` only.
    pub(crate) async fn raw_get(&self, raw_path: &str) -> Result<(u16, Option<String>), String> {
        if self.base.scheme() != "http" {
            return Err("raw requests need a plain http:// registry URL".into());
        }
        let host = self.base.host_str().unwrap_or("127.0.0.1");
        let port = self.base.port_or_known_default().unwrap_or(80);
        let what = format!("GET {raw_path} (raw)");
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
            let request = format!(
                "GET {raw_path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{what}: timed out"))?
            .map_err(|e| format!("{what}: {e}"))?;
        let text = String::from_utf8_lossy(&buf);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{what}: no HTTP status line in {:?}", excerpt(&buf)))?;
        let location = lines.find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        });
        Ok((status, location))
    }
}

/// The path and query of `url`, for messages and comparisons.
pub(crate) fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// `location` with `name=value` added to its query.
pub(crate) fn with_query(location: &str, name: &str, value: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{name}={value}")
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    /// `METHOD /path?query`, for messages.
    pub(crate) what: String,
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    /// Why the body could not be read, if it could not.
    pub(crate) body_error: Option<String>,
}

impl Resp {
    /// A header's value (the first, if repeated), if present and text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header the spec requires.
    pub(crate) fn required_header(&self, name: &str) -> Result<&str, String> {
        self.header(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{}: no {name} header ({})", self.what, self.summary()))
    }

    /// `Content-Type` without parameters.
    pub(crate) fn content_type(&self) -> Option<&str> {
        self.header("content-type")
            .map(|c| c.split(';').next().unwrap_or_default().trim())
    }

    /// `-> <status> <body excerpt>`.
    pub(crate) fn summary(&self) -> String {
        if let Some(e) = &self.body_error {
            format!("got {} with an unreadable body ({e})", self.status)
        } else if self.body.is_empty() {
            format!("got {}", self.status)
        } else {
            format!("got {} {}", self.status, excerpt(&self.body))
        }
    }

    /// A failure message about this response.
    pub(crate) fn fail(&self, expected: impl std::fmt::Display) -> String {
        format!("{}: expected {expected}, {}", self.what, self.summary())
    }

    /// The status is one of `statuses`.
    pub(crate) fn expect(&self, statuses: &[u16]) -> Result<&Self, String> {
        if statuses.contains(&self.status) {
            Ok(self)
        } else {
            Err(self.fail(alternatives(statuses)))
        }
    }

    /// The error codes of a spec error body (`{"errors":[{"code":…},…]}`), or `None` if the
    /// body is not one.
    pub(crate) fn error_codes(&self) -> Option<Vec<String>> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        let errors = v.get("errors")?.as_array()?;
        errors
            .iter()
            .map(|e| e.get("code")?.as_str().map(str::to_owned))
            .collect()
    }

    /// The status is one of `statuses` and the body is a spec error whose first code is one
    /// of `codes`.
    pub(crate) fn expect_error(&self, statuses: &[u16], codes: &[&str]) -> Result<(), String> {
        let want = || {
            format!(
                "{} with error code {}",
                alternatives(statuses),
                alternatives(codes)
            )
        };
        if !statuses.contains(&self.status) {
            return Err(self.fail(want()));
        }
        match self.error_codes() {
            Some(found) if found.first().is_some_and(|c| codes.contains(&c.as_str())) => Ok(()),
            _ => Err(self.fail(want())),
        }
    }

    /// Like [`Self::expect_error`], but a 404 without a spec body (the registry does not
    /// route the path at all) is accepted too.
    pub(crate) fn expect_error_or_404(
        &self,
        statuses: &[u16],
        codes: &[&str],
    ) -> Result<(), String> {
        if self.status == 404 {
            return Ok(());
        }
        self.expect_error(statuses, codes)
            .map_err(|e| format!("{e} (or 404)"))
    }

    /// The body parsed as JSON.
    pub(crate) fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "{}: body is not JSON ({e}): {}",
                self.what,
                excerpt(&self.body)
            )
        })
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// `a`, `a or b`, `a, b or c`.
pub(crate) fn alternatives<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The start of a body, as text.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]);
    let text = text.trim().replace('\n', " ");
    if body.len() > BODY_EXCERPT {
        format!("{text}… ({} bytes)", body.len())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Resp {
        Resp {
            what: "GET /v2/x".into(),
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
            body_error: None,
        }
    }

    #[test]
    fn error_bodies_and_expectations() {
        let r = resp(404, r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"x"}]}"#);
        assert_eq!(r.error_codes(), Some(vec!["BLOB_UNKNOWN".to_owned()]));
        assert!(r.expect_error(&[404], &["BLOB_UNKNOWN"]).is_ok());
        let err = r.expect_error(&[400], &["DIGEST_INVALID"]).unwrap_err();
        assert!(
            err.contains("expected 400 with error code DIGEST_INVALID"),
            "{err}"
        );
        assert!(
            resp(404, "404 page not found")
                .expect_error(&[404], &["X"])
                .is_err()
        );
        assert!(resp(404, "").expect_error_or_404(&[400], &["X"]).is_ok());
        assert!(resp(200, "").expect(&[200, 201]).is_ok());
        assert_eq!(alternatives(&[400, 404, 405]), "400, 404 or 405");
    }

    #[test]
    fn queries_are_appended() {
        assert_eq!(with_query("/u/1", "digest", "d"), "/u/1?digest=d");
        assert_eq!(
            with_query("/u/1?_state=x", "digest", "d"),
            "/u/1?_state=x&digest=d"
        );
        let ep = Endpoint::new("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            ep.resolve("http://other:1/v2/a?b=c").unwrap().as_str(),
            "http://other:1/v2/a?b=c"
        );
        assert_eq!(
            ep.resolve("/v2/a").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/a"
        );
        assert!(Endpoint::new("ftp://x").is_err());
    }
}
