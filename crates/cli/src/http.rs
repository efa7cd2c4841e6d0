//! HTTP plumbing shared by the commands: the client, URLs and error bodies.

use std::time::Duration;

use reqwest::{Client, Response, Url};
use serde::Deserialize;
use shoal_core::RepoName;

use crate::CliError;

/// Most of an error body read to describe a failure.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The HTTP client: no overall timeout (blobs can be huge), but connections and stalled reads
/// give up.
pub(crate) fn client() -> Result<Client, CliError> {
    Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(CliError::http("building the HTTP client"))
}

/// A server base URL (`http://host:port`), without a trailing slash.
pub(crate) fn base_url(flag: &str, raw: &str) -> Result<String, CliError> {
    let ok = Url::parse(raw)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !ok {
        return Err(CliError::Usage(format!(
            "{flag} {raw:?} is not an http(s) URL such as http://127.0.0.1:7100"
        )));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// A validated namespace (OCI repository name).
pub(crate) fn namespace(raw: &str) -> Result<RepoName, CliError> {
    raw.parse()
        .map_err(|e| CliError::Usage(format!("invalid namespace {raw:?}: {e}")))
}

/// The namespace as one URL path segment (`library/app` → `library%2Fapp`). Repository names
/// use only `[a-z0-9._/-]`, so `/` is the only character to encode.
pub(crate) fn ns_segment(ns: &RepoName) -> String {
    ns.as_str().replace('/', "%2F")
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
struct ErrorEntry {
    code: String,
    #[serde(default)]
    message: String,
}

/// Turns an error response into a [`CliError::Server`], showing the codes and messages of an
/// OCI-style JSON error body (`{"errors":[{"code","message"}]}`) or else the body's text.
pub(crate) async fn server_error(context: impl Into<String>, mut resp: Response) -> CliError {
    let status = resp.status();
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    CliError::Server {
        context: context.into(),
        status,
        message: describe(&body),
    }
}

fn describe(body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body)
        && !parsed.errors.is_empty()
    {
        return parsed
            .errors
            .iter()
            .map(|e| {
                if e.message.is_empty() {
                    e.code.clone()
                } else {
                    format!("{}: {}", e.code, e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(no details)".to_owned()
    } else {
        text.chars().take(500).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_described() {
        assert_eq!(
            describe(
                br#"{"errors":[{"code":"DIGEST_INVALID","message":"content does not match"}]}"#
            ),
            "DIGEST_INVALID: content does not match"
        );
        assert_eq!(
            describe(br#"{"errors":[{"code":"A"},{"code":"B","message":"b"}]}"#),
            "A; B: b"
        );
        assert_eq!(describe(b"  upstream down\n"), "upstream down");
        assert_eq!(describe(b""), "(no details)");
        assert_eq!(describe(br#"{"errors":[]}"#), r#"{"errors":[]}"#);
    }

    #[test]
    fn urls_and_namespaces() {
        assert_eq!(
            base_url("--origin", "http://127.0.0.1:7100/").unwrap(),
            "http://127.0.0.1:7100"
        );
        for bad in ["127.0.0.1:7100", "ftp://x", "http://", ""] {
            assert!(base_url("--origin", bad).is_err(), "{bad}");
        }
        assert_eq!(
            ns_segment(&namespace("library/app").unwrap()),
            "library%2Fapp"
        );
        assert!(namespace("Library/App").is_err());
    }
}
