//! `Range` (downloads) and `Content-Range` (upload chunks) header parsing.

use std::ops::Range;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

/// What a download's `Range` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No `Range` header: the whole blob, 200.
    Full,
    /// One satisfiable byte range: 206.
    Partial(Range<u64>),
}

/// The header cannot be satisfied for this size (or is malformed): 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Parses a single-range `bytes=` header (`a-b`, `a-`, `-n`) against a blob of `size` bytes.
/// Multiple ranges are not supported and are refused like a malformed header.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<RangeRequest, Unsatisfiable> {
    let Some(header) = header else {
        return Ok(RangeRequest::Full);
    };
    let spec = header.trim().strip_prefix("bytes=").ok_or(Unsatisfiable)?;
    if spec.contains(',') {
        return Err(Unsatisfiable);
    }
    let (first, last) = spec.trim().split_once('-').ok_or(Unsatisfiable)?;
    let num = |s: &str| -> Result<u64, Unsatisfiable> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Unsatisfiable);
        }
        s.parse().map_err(|_| Unsatisfiable)
    };
    let range = if first.is_empty() {
        // Suffix: the last n bytes.
        let n = num(last)?;
        if n == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        size.saturating_sub(n)..size
    } else {
        let start = num(first)?;
        let end_inclusive = if last.is_empty() {
            size.checked_sub(1).ok_or(Unsatisfiable)?
        } else {
            num(last)?.min(size.saturating_sub(1))
        };
        if start >= size || (!last.is_empty() && num(last)? < start) {
            return Err(Unsatisfiable);
        }
        start..end_inclusive + 1
    };
    Ok(RangeRequest::Partial(range))
}

/// Parses an upload chunk's `Content-Range`: `<start>-<end>` (inclusive, as in the OCI
/// distribution spec), optionally written `bytes <start>-<end>/<total or *>`. Returns the
/// half-open range.
pub fn parse_content_range(header: &str) -> Option<Range<u64>> {
    let h = header.trim();
    let h = h.strip_prefix("bytes ").unwrap_or(h);
    let h = h.split_once('/').map_or(h, |(r, _)| r);
    let (a, b) = h.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (start, end): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    if end < start {
        return None;
    }
    Some(start..end.checked_add(1)?)
}

/// Sets the headers of a blob response or HEAD answer: `Content-Length: len`,
/// `application/octet-stream`, `Accept-Ranges: bytes`, and the digest as
/// `Docker-Content-Digest` and (quoted) `ETag`.
pub fn blob_headers(headers: &mut HeaderMap, digest: &str, len: u64) {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(digest) {
        headers.insert("docker-content-digest", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        headers.insert(header::ETAG, v);
    }
}

/// The response to a `GET` of a blob of `size` bytes: 200 with the whole blob, or 206 with
/// `Content-Range` for a satisfiable `Range` header. `body` streams the chosen byte range.
pub fn blob_response(
    range_header: Option<&str>,
    size: u64,
    digest: &str,
    body: impl FnOnce(Range<u64>) -> Body,
) -> Result<Response, Unsatisfiable> {
    let (status, range) = match parse_range(range_header, size)? {
        RangeRequest::Full => (StatusCode::OK, 0..size),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
    };
    let mut resp = Response::new(body(range.clone()));
    *resp.status_mut() = status;
    blob_headers(resp.headers_mut(), digest, range.end - range.start);
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
    {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Ok(Full));
        assert_eq!(parse_range(Some("bytes=0-0"), 10), Ok(Partial(0..1)));
        assert_eq!(parse_range(Some("bytes=2-5"), 10), Ok(Partial(2..6)));
        assert_eq!(parse_range(Some("bytes=2-"), 10), Ok(Partial(2..10)));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Ok(Partial(5..10)));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Partial(7..10)));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Ok(Partial(0..10)));
        for bad in [
            "bytes=10-",
            "bytes=10-12",
            "bytes=5-2",
            "bytes=-0",
            "bytes=a-b",
            "bytes=1-2,4-5",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "0-1",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_range(Some(bad), 10), Err(Unsatisfiable), "{bad}");
        }
        assert_eq!(parse_range(Some("bytes=0-"), 0), Err(Unsatisfiable));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9"), Some(0..10));
        assert_eq!(parse_content_range("bytes 10-19/100"), Some(10..20));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some(10..20));
        for bad in [
            "",
            "5-4",
            "a-b",
            "-1",
            "1-",
            "1-2-3",
            "18446744073709551615-18446744073709551615",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
