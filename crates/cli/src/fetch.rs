//! `shoal fetch`: download a blob through an agent, verify it, then publish it.
//!
//! The body is streamed to a temporary file next to the output and hashed on the way; only
//! content that matches the digest is renamed into place, so the output path never holds a
//! partial or corrupt blob. With `-o -` the content goes to stdout as it arrives and is
//! verified at the end (a mismatch is reported on stderr and fails the command).

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use shoal_core::Digest;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::progress::Progress;
use crate::{CliError, http};

/// What to fetch from where, to where.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Agent base URL.
    pub agent: String,
    /// The blob's namespace.
    pub namespace: String,
    /// The blob's digest (`sha256:<hex>`).
    pub digest: String,
    /// Output file, or `-` for stdout.
    pub output: PathBuf,
}

/// Downloads and verifies the blob; returns the bytes received.
pub async fn fetch(req: &FetchRequest) -> Result<u64, CliError> {
    let base = http::base_url("--agent", &req.agent)?;
    let ns = http::namespace(&req.namespace)?;
    let digest: Digest = req
        .digest
        .parse()
        .map_err(|e| CliError::Usage(format!("invalid digest {:?}: {e}", req.digest)))?;
    let url = format!(
        "{base}/v1/namespaces/{}/blobs/{digest}",
        http::ns_segment(&ns)
    );
    let context = format!("fetching {url}");
    let client = http::client()?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(CliError::http(&context))?;
    if resp.status() != StatusCode::OK {
        return Err(http::server_error(context, resp).await);
    }
    let progress = Progress::new("fetching", resp.content_length());
    let result = if req.output.as_os_str() == "-" {
        to_stdout(resp, &digest, &context, &progress).await
    } else {
        to_file(resp, &digest, &req.output, &context, &progress).await
    };
    match &result {
        Ok(n) => progress.finish(&format!("fetched {digest}:"), *n),
        Err(_) => progress.abandon(),
    }
    result
}

async fn to_stdout(
    resp: reqwest::Response,
    digest: &Digest,
    context: &str,
    progress: &Progress,
) -> Result<u64, CliError> {
    let mut out = tokio::io::stdout();
    let (n, actual) = copy(resp, &mut out, digest, "-".as_ref(), context, progress).await?;
    out.flush().await.map_err(|e| CliError::io("-", e))?;
    if actual != *digest {
        return Err(CliError::Mismatch {
            expected: digest.to_string(),
            actual: actual.to_string(),
            outcome: "the data already written to stdout is NOT the blob asked for",
        });
    }
    Ok(n)
}

async fn to_file(
    resp: reqwest::Response,
    digest: &Digest,
    output: &Path,
    context: &str,
    progress: &Progress,
) -> Result<u64, CliError> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = output
        .file_name()
        .ok_or_else(|| CliError::Usage(format!("-o {}: not a file name", output.display())))?;
    // Deleted on drop: every early return below leaves nothing behind.
    let temp = create_temp(dir, name).map_err(|e| CliError::io(dir, e))?;
    let io = |e| CliError::io(temp.path(), e);
    let std_file = temp.as_file().try_clone().map_err(io)?;
    let mut file = tokio::fs::File::from_std(std_file);
    let (n, actual) = copy(resp, &mut file, digest, temp.path(), context, progress).await?;
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    if actual != *digest {
        return Err(CliError::Mismatch {
            expected: digest.to_string(),
            actual: actual.to_string(),
            outcome: "nothing was written",
        });
    }
    temp.persist(output)
        .map_err(|e| CliError::io(output, e.error))?;
    Ok(n)
}

/// Creates a hidden temporary file in `dir` named after the output, permissioned as a normal
/// new file would be (the umask applies).
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> std::io::Result<tempfile::NamedTempFile> {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".shoal-partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// Streams the body into `out`, hashing it with `digest`'s algorithm, and checks its length
/// against `Content-Length`. Returns the bytes copied and their digest.
async fn copy(
    mut resp: reqwest::Response,
    out: &mut (impl AsyncWrite + Unpin),
    digest: &Digest,
    path: &Path,
    context: &str,
    progress: &Progress,
) -> Result<(u64, Digest), CliError> {
    let expected_len = resp.content_length();
    let mut hasher = digest.hasher();
    let mut n = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(CliError::http(context))? {
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| CliError::io(path, e))?;
        n += chunk.len() as u64;
        progress.inc(chunk.len());
    }
    if let Some(len) = expected_len
        && len != n
    {
        return Err(CliError::Protocol(format!(
            "{context}: Content-Length was {len} but {n} bytes arrived"
        )));
    }
    Ok((n, hasher.finalize()))
}
